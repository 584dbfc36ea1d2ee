"""The synthetic world behind generated payments: banks, corridors and account records.

Everything is drawn once per seed and shared by the train and test stages, so that the
test stage sees the same customers, banks and correspondent relations as training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# (country, settlement currency, units per USD, cities)
COUNTRIES: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("US", "USD", 1.0, ("NEW YORK", "CHICAGO", "MIAMI", "DALLAS")),
    ("GB", "GBP", 0.79, ("LONDON", "LEEDS", "BRISTOL")),
    ("DE", "EUR", 0.92, ("FRANKFURT", "BERLIN", "MUNICH")),
    ("FR", "EUR", 0.92, ("PARIS", "LYON")),
    ("CH", "CHF", 0.88, ("ZURICH", "GENEVA")),
    ("JP", "JPY", 150.0, ("TOKYO", "OSAKA")),
    ("CA", "CAD", 1.36, ("TORONTO", "MONTREAL")),
    ("AU", "AUD", 1.52, ("SYDNEY", "MELBOURNE")),
    ("SG", "SGD", 1.35, ("SINGAPORE",)),
    ("HK", "HKD", 7.8, ("HONG KONG",)),
    ("IN", "INR", 83.0, ("MUMBAI", "DELHI")),
    ("BR", "BRL", 5.0, ("SAO PAULO", "RIO")),
    ("ZA", "ZAR", 18.5, ("JOHANNESBURG",)),
    ("MX", "MXN", 17.0, ("MEXICO CITY",)),
    ("SE", "SEK", 10.5, ("STOCKHOLM",)),
)
CURRENCIES: tuple[str, ...] = tuple(sorted({c[1] for c in COUNTRIES}))
FIRST_NAMES = (
    "JAMES MARY JOHN PATRICIA ROBERT JENNIFER MICHAEL LINDA WILLIAM ELIZABETH DAVID BARBARA "
    "RICHARD SUSAN JOSEPH JESSICA THOMAS SARAH CHARLES KAREN LUCAS EMMA HUGO LEA NOAH MIA "
    "LIAM SOFIA YUKI HARU AARAV PRIYA ANA PEDRO SIPHO THANDI LARS INGRID WEI MEI OMAR LAYLA"
).split()
LAST_NAMES = (
    "SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS MARTIN BERNARD DUBOIS MULLER "
    "SCHMIDT SCHNEIDER FISCHER WEBER ROSSI RUSSO SATO SUZUKI TANAKA WATANABE PATEL SHARMA "
    "SINGH KUMAR SILVA SANTOS OLIVEIRA NKOSI DLAMINI LARSSON NILSSON WANG LI ZHANG CHEN "
    "HERNANDEZ LOPEZ GONZALEZ TAYLOR WILSON EVANS THOMAS ROBERTS WALKER WRIGHT HALL"
).split()
COMPANY_WORDS = (
    "ACME GLOBAL NORTHERN PACIFIC ATLAS SUMMIT HARBOR UNITED PIONEER VERTEX ORION DELTA "
    "CRESCENT MERIDIAN EVEREST BLUE GREEN RED SILVER GOLDEN"
).split()
COMPANY_SUFFIX = ("LTD", "INC", "GMBH", "SA", "LLC", "PLC", "TRADING CO")
STREETS = (
    "MAIN ST;HIGH ST;PARK AVE;OAK RD;STATION RD;CHURCH LN;KING ST;QUEEN ST;MARKET SQ;"
    "RIVER RD;HILL ST;BRIDGE ST;MILL LN;VICTORIA RD;GARDEN WAY;LAKE DR;CEDAR AVE;ELM ST"
).split(";")
ACCOUNT_DIGITS = 10
BLOCK_FLAGS = ("01", "06", "07", "09")  # the account cannot legitimately receive
WATCH_FLAGS = ("03", "04", "05", "08", "10", "11")  # it may, but warrants attention


@dataclass(frozen=True)
class WorldShape:
    """Sizes of the world, from the scale (see generate.SCALES)."""

    n_banks: int
    n_accounts: int
    n_orderers: int
    n_mules: int
    partners_per_bank: int
    fx_account_share: float
    watch_flag_share: float


@dataclass
class World:
    """Banks, corridors and accounts; accounts are sorted by bank (see `bank_start`)."""

    bank_code: np.ndarray  # str, BIC-like
    bank_country: np.ndarray  # index into COUNTRIES
    hubs: np.ndarray  # large banks that act as intermediaries
    partners: np.ndarray  # (n_banks, k): each bank's usual correspondent banks
    account_bank: np.ndarray
    bank_start: np.ndarray  # accounts of bank b are bank_start[b]:bank_start[b + 1]
    receive_cum: np.ndarray  # cumulative popularity as beneficiary (mules get 0)
    orderers: np.ndarray
    orderer_cum: np.ndarray
    mules: np.ndarray  # accounts reserved for flagged-account anomalies, sorted by bank
    mule_start: np.ndarray
    amount_mu: np.ndarray  # log-amount profile of each account, in USD
    amount_sigma: np.ndarray
    fx_account: np.ndarray  # routinely instructs in its home currency
    flags: np.ndarray  # str codes
    account_number: np.ndarray  # the digits of account_id
    account_id: pa.Array
    name: pa.Array
    street: pa.Array
    country_city_zip: pa.Array


def fixed_width_codes(rng: np.random.Generator, n: int, alphabet: str, width: int) -> np.ndarray:
    """n random codes of `width` characters from `alphabet`, as a uint8 matrix."""
    chars = np.frombuffer(alphabet.encode(), dtype=np.uint8)
    return chars[rng.integers(0, len(chars), size=(n, width))]


def to_strings(matrix: np.ndarray) -> pa.Array:
    """uint8 character matrix -> Arrow string array, one row per string."""
    flat = np.ascontiguousarray(matrix).view(f"S{matrix.shape[1]}").ravel()
    array = pa.array(flat).cast(pa.string())
    # Arrow converts large inputs in chunks; callers expect one contiguous array.
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def serial_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded decimal numbers, e.g. AC000012345."""
    digits = (numbers[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10 + ord("0")
    head = np.broadcast_to(
        np.frombuffer(prefix.encode(), dtype=np.uint8), (len(numbers), len(prefix))
    )
    return to_strings(np.hstack([head, digits.astype(np.uint8)]))


def _pick(rng: np.random.Generator, pool: tuple[str, ...] | list[str], n: int) -> pa.Array:
    return pa.array(np.asarray(pool, dtype=object)[rng.integers(0, len(pool), n)], pa.string())


def _identities(rng: np.random.Generator, country: np.ndarray) -> tuple[pa.Array, ...]:
    """Name, street and 'COUNTRY CITY ZIP' for each account."""
    n = len(country)
    person = pc.binary_join_element_wise(_pick(rng, FIRST_NAMES, n), _pick(rng, LAST_NAMES, n), " ")
    company = pc.binary_join_element_wise(
        _pick(rng, COMPANY_WORDS, n), _pick(rng, LAST_NAMES, n), _pick(rng, COMPANY_SUFFIX, n), " "
    )
    name = pc.if_else(pa.array(rng.random(n) < 0.25), company, person)
    number = pa.array(rng.integers(1, 400, n)).cast(pa.string())
    street = pc.binary_join_element_wise(number, _pick(rng, STREETS, n), " ")
    city_index = rng.integers(0, 4, n)
    cities = np.array([c[3][i % len(c[3])] for c in COUNTRIES for i in range(4)], dtype=object)
    codes = np.array([c[0] for c in COUNTRIES], dtype=object)
    zip_code = pa.array(rng.integers(10000, 99999, n)).cast(pa.string())
    ccz = pc.binary_join_element_wise(
        pa.array(codes[country], pa.string()),
        pa.array(cities[country * 4 + city_index], pa.string()),
        zip_code,
        " ",
    )
    return name, street, ccz


def _banks(rng: np.random.Generator, shape: WorldShape) -> tuple[np.ndarray, ...]:
    n = shape.n_banks
    country = rng.integers(0, len(COUNTRIES), n)
    letters = fixed_width_codes(rng, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4)
    cc = np.array([list(COUNTRIES[c][0].encode()) for c in country], dtype=np.uint8)
    loc = fixed_width_codes(rng, n, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 2)
    code = np.asarray(to_strings(np.hstack([letters, cc, loc])).to_pylist())
    size = 1.0 / np.arange(1, n + 1) ** 0.8  # a few large banks, many small ones
    k = min(shape.partners_per_bank, n - 1)
    partners = np.empty((n, k), dtype=np.int64)
    for b in range(n):  # one draw per bank (at most ~100 banks)
        w = size.copy()
        w[b] = 0.0
        partners[b] = rng.choice(n, size=k, replace=False, p=w / w.sum())
    hubs = np.arange(max(2, n // 5))
    return code, country, size, partners, hubs


def build_world(rng: np.random.Generator, shape: WorldShape) -> World:
    """Draw banks, corridors and accounts for one seed."""
    code, country, size, partners, hubs = _banks(rng, shape)
    n_b, n_a = shape.n_banks, shape.n_accounts
    # Every bank gets at least two accounts, the rest follow bank size.
    extra = rng.choice(n_b, size=n_a - 2 * n_b, p=size / size.sum())
    account_bank = np.sort(np.concatenate([np.arange(n_b), np.arange(n_b), extra]))
    bank_start = np.searchsorted(account_bank, np.arange(n_b + 1))
    # The second account of each bank and a few more are mules: never used by normal traffic.
    # The first account of each bank stays ordinary, so every bank can receive payments.
    mule = np.zeros(n_a, dtype=bool)
    mule[bank_start[:-1] + 1] = True
    free = np.setdiff1d(np.flatnonzero(~mule), bank_start[:-1])
    mule[rng.choice(free, size=max(0, shape.n_mules - n_b), replace=False)] = True
    mules = np.flatnonzero(mule)
    mule_start = np.searchsorted(account_bank[mules], np.arange(n_b + 1))
    popularity = np.where(mule, 0.0, rng.lognormal(0.0, 1.2, n_a))
    candidates = np.flatnonzero(~mule)
    orderers = np.sort(rng.choice(candidates, size=shape.n_orderers, replace=False))
    activity = rng.lognormal(0.0, 0.8, len(orderers))
    flags = np.full(n_a, "00", dtype="<U2")
    flags[mules] = np.where(
        rng.random(len(mules)) < 0.65,
        rng.choice(BLOCK_FLAGS, len(mules)),
        rng.choice(WATCH_FLAGS, len(mules)),
    )
    watch = ~mule & (rng.random(n_a) < shape.watch_flag_share)
    flags[watch] = rng.choice(WATCH_FLAGS, int(watch.sum()))
    name, street, ccz = _identities(rng, country[account_bank])
    numbers = rng.choice(10**ACCOUNT_DIGITS, size=n_a, replace=False)
    return World(
        bank_code=code,
        bank_country=country,
        hubs=hubs,
        partners=partners,
        account_bank=account_bank,
        bank_start=bank_start,
        receive_cum=np.cumsum(popularity),
        orderers=orderers,
        orderer_cum=np.cumsum(activity),
        mules=mules,
        mule_start=mule_start,
        amount_mu=rng.normal(6.5, 1.3, n_a),
        amount_sigma=rng.uniform(0.25, 0.7, n_a),
        fx_account=rng.random(n_a) < shape.fx_account_share,
        flags=flags,
        account_number=numbers,
        account_id=serial_ids("AC", numbers, ACCOUNT_DIGITS),
        name=name,
        street=street,
        country_city_zip=ccz,
    )


def bank_accounts_table(world: World, bank: int) -> pa.Table:
    """The account records of one bank, in the challenge's bank file columns."""
    lo, hi = int(world.bank_start[bank]), int(world.bank_start[bank + 1])
    return pa.table(
        {
            "Bank": pa.array([world.bank_code[bank]] * (hi - lo), pa.string()),
            "Account": world.account_id[lo:hi],
            "Name": world.name[lo:hi],
            "Street": world.street[lo:hi],
            "CountryCityZip": world.country_city_zip[lo:hi],
            "Flags": pa.array(world.flags[lo:hi], pa.string()),
        }
    )
