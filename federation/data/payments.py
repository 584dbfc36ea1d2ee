"""Simulate one stage of payments (train or test) in a synthetic world.

A payment has one or more legs (messages) through intermediary banks; all legs share its
UETR and its label. Each anomalous payment is produced by exactly one mechanism; normal
payments carry rare decoy traits that look like a mechanism. See docs/data.md.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from federation.data.world import (
    ACCOUNT_DIGITS,
    COUNTRIES,
    World,
    fixed_width_codes,
    serial_ids,
    to_strings,
)

EPOCH = np.datetime64("2022-01-03")  # a Monday
Rng = np.random.Generator
Arrays = dict[str, np.ndarray]
Traits = dict[str, Any]  # decoy masks per trait, plus the FX accounts' rate
DAY = 86_400


@dataclass(frozen=True)
class AnomalyMix:
    """Share of anomalous payments produced by each mechanism (they sum to 1)."""

    currency_mismatch: float = 0.15
    settlement_gap: float = 0.13
    amount_outlier: float = 0.12
    rare_corridor: float = 0.08
    layering: float = 0.03  # 5-7 legs each, so about 13 % of anomalous rows
    missing_account: float = 0.15
    details_mismatch: float = 0.15
    flagged_account: float = 0.185
    unexplained: float = 0.005

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))


MECH = {name: i for i, name in enumerate(AnomalyMix().names())}


@dataclass(frozen=True)
class Decoys:
    """Rates, among normal payments, of traits that resemble an anomaly mechanism."""

    fx_instructed: float = 0.6  # share of an FX account's payments instructed in home currency
    long_gap: float = 0.0001
    big_amount: float = 0.00005
    off_corridor: float = 0.0001
    long_route: float = 0.0001
    stale_account: float = 0.00005
    details_typo: float = 0.0002


@dataclass(frozen=True)
class StageSpec:
    """What to simulate: rows, time window (days from EPOCH) and MessageId numbering."""

    rows: int
    first_day: int
    days: int
    anomaly_rate: float
    id_offset: int


def _pick_in_bank(rng: np.random.Generator, world: World, bank: np.ndarray) -> np.ndarray:
    """One account of each given bank, by popularity as a beneficiary (mules excluded)."""
    cum = world.receive_cum
    start, end = world.bank_start[bank], world.bank_start[bank + 1]
    base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    target = base + rng.random(len(bank)) * (cum[end - 1] - base)
    return np.clip(np.searchsorted(cum, target, side="right"), start, end - 1)


def _off_corridor(rng: np.random.Generator, world: World, obank: np.ndarray) -> np.ndarray:
    """A beneficiary bank that is neither the ordering bank nor one of its partners."""
    n = len(world.bank_code)
    out = rng.integers(0, n, len(obank))
    for _ in range(50):  # rejection sampling; partners are a small share of banks
        bad = (out == obank) | (world.partners[obank] == out[:, None]).any(axis=1)
        if not bad.any():
            break
        out[bad] = rng.integers(0, n, int(bad.sum()))
    return out


def _parties(rng: Rng, world: World, mech: np.ndarray, decoy: Traits) -> Arrays:
    """Ordering account, beneficiary bank and account of each payment."""
    p = len(mech)
    pick = np.searchsorted(world.orderer_cum, rng.random(p) * world.orderer_cum[-1], side="right")
    orderer = world.orderers[np.minimum(pick, len(world.orderers) - 1)]
    obank = world.account_bank[orderer]
    bbank = world.partners[obank, rng.integers(0, world.partners.shape[1], p)]
    off = (mech == MECH["rare_corridor"]) | decoy["off_corridor"]
    bbank[off] = _off_corridor(rng, world, obank[off])
    ben = _pick_in_bank(rng, world, bbank)
    flagged = mech == MECH["flagged_account"]
    b = bbank[flagged]
    count = world.mule_start[b + 1] - world.mule_start[b]
    ben[flagged] = world.mules[world.mule_start[b] + (rng.random(len(b)) * count).astype(int)]
    return {"orderer": orderer, "obank": obank, "bbank": bbank, "ben": ben}


def _settlement(rng: Rng, mech: np.ndarray, decoy: Traits, day: np.ndarray) -> np.ndarray:
    """SettlementDate as yymmdd, counted from `day`, the day of the payment's last leg.

    Normally the same or one of the next business days; abnormal for the gap mechanism.
    """
    gap = rng.choice([0, 1, 2], size=len(day), p=[0.6, 0.37, 0.03])
    sday = day + gap
    weekday = sday % 7  # EPOCH is a Monday
    sday += np.where(weekday == 5, 2, np.where(weekday == 6, 1, 0))
    long = decoy["long_gap"]
    sday[long] = day[long] + rng.integers(4, 7, int(long.sum()))
    odd = mech == MECH["settlement_gap"]
    odd_gap = rng.choice([-3, -2, -1, 6, 7, 8, 9, 10, 11, 12], size=int(odd.sum()))
    sday[odd] = day[odd] + odd_gap
    dates = pd.DatetimeIndex(EPOCH + sday.astype("timedelta64[D]"))
    return (dates.year % 100) * 10000 + dates.month * 100 + dates.day


def _amounts(rng: Rng, world: World, mech: np.ndarray, decoy: Traits, who: Arrays) -> Arrays:
    """Instructed and settlement currency and amount of each payment."""
    o = who["orderer"]
    z = rng.standard_normal(len(mech))
    bank_side = np.isin(mech, [MECH[m] for m in ("missing_account", "details_mismatch")])
    bank_side |= np.isin(mech, [MECH["flagged_account"], MECH["rare_corridor"]])
    z[bank_side] = rng.uniform(2.0, 3.5, int(bank_side.sum()))
    outlier = mech == MECH["amount_outlier"]
    z[outlier] = rng.uniform(6.0, 9.0, int(outlier.sum()))
    z[decoy["big_amount"]] = rng.uniform(3.5, 5.5, int(decoy["big_amount"].sum()))
    usd = np.exp(world.amount_mu[o] + world.amount_sigma[o] * z)
    return currencies(rng, world, who, mech, decoy, usd)


def currencies(rng: Rng, world: World, who: Arrays, mech: np.ndarray, decoy: Traits,
               usd: np.ndarray) -> Arrays:
    """Instructed and settlement currency and amount of payments worth `usd`: settled in
    the beneficiary bank's currency, instructed in it too except for FX accounts' home
    currency and the currency-mismatch mechanism."""
    o = who["orderer"]
    cur_of_country = np.array([c[1] for c in COUNTRIES])
    rate_of = dict(zip(cur_of_country, [c[2] for c in COUNTRIES], strict=True))
    settle = cur_of_country[world.bank_country[who["bbank"]]]
    instr = settle.copy()
    home = world.fx_account[o] & (rng.random(len(mech)) < decoy["fx_instructed"])
    instr[home] = cur_of_country[world.bank_country[who["obank"][home]]]
    odd = np.flatnonzero(mech == MECH["currency_mismatch"])
    other = rng.choice(sorted(rate_of), size=len(odd))
    same = other == settle[odd]
    other[same] = np.where(settle[odd][same] == "USD", "EUR", "USD")
    instr[odd] = other
    rate = np.vectorize(rate_of.get, otypes=[float])
    return {
        "InstructedCurrency": instr,
        "InstructedAmount": np.round(usd * rate(instr), 2),
        "SettlementCurrency": settle,
        "SettlementAmount": np.round(usd * rate(settle), 2),
    }


def _beneficiary(
    rng: Rng, world: World, mech: np.ndarray, decoy: Traits, ben: np.ndarray
) -> dict[str, pa.Array]:
    """Beneficiary account and identity strings as written in the payment message."""
    p = len(mech)
    n_acc = len(world.amount_mu)
    fresh = (mech == MECH["missing_account"]) | decoy["stale_account"]
    # Accounts that the receiving bank does not hold: same format, never issued.
    ids = pa.concat_arrays(
        [world.account_id, serial_ids("AC", _unissued(rng, world, p), ACCOUNT_DIGITS)]
    )
    account = ids.take(pa.array(np.where(fresh, n_acc + np.arange(p), ben)))
    other = rng.integers(0, n_acc, p)
    field = rng.choice(3, size=p, p=[0.5, 0.25, 0.25])
    wrong = mech == MECH["details_mismatch"]
    out = {"BeneficiaryAccount": account}
    cols = (
        ("BeneficiaryName", world.name),
        ("BeneficiaryStreet", world.street),
        ("BeneficiaryCountryCityZip", world.country_city_zip),
    )
    for i, (col, source) in enumerate(cols):
        swap = fresh | (wrong & (field == i))
        out[col] = source.take(pa.array(np.where(swap, other, ben)))
    typo = pa.array(decoy["details_typo"])
    dotted = pc.binary_join_element_wise(out["BeneficiaryName"], ".", "")
    out["BeneficiaryName"] = pc.if_else(typo, dotted, out["BeneficiaryName"])
    return out


def _unissued(rng: np.random.Generator, world: World, n: int) -> np.ndarray:
    numbers = rng.integers(0, 10**ACCOUNT_DIGITS, n)
    for _ in range(50):  # collisions with issued numbers are rare at any scale
        clash = np.isin(numbers, world.account_number)
        if not clash.any():
            break
        numbers[clash] = rng.integers(0, 10**ACCOUNT_DIGITS, int(clash.sum()))
    return numbers


def _cut(rng: Rng, mech: np.ndarray, decoy: Traits, rows: int) -> np.ndarray:
    """Legs per payment, with the last kept payment trimmed so the stage has `rows` rows."""
    legs = rng.choice([1, 2, 3], size=len(mech), p=[0.80, 0.17, 0.03])
    legs[decoy["long_route"]] = 4
    layer = mech == MECH["layering"]
    legs[layer] = rng.integers(5, 8, int(layer.sum()))
    cum = np.cumsum(legs)
    last = int(np.searchsorted(cum, rows))
    legs = legs[: last + 1]
    legs[-1] -= int(cum[last]) - rows
    return legs


def draw_mechanisms(rng: Rng, spec: StageSpec, mix: AnomalyMix, decoys: Decoys
                    ) -> tuple[np.ndarray, Traits]:
    """Each payment's mechanism (-1 normal) and the normal payments' decoy traits; spec.rows
    payments, an upper bound (every payment has at least one leg)."""
    p = spec.rows
    shares = np.array(astuple(mix), dtype=float)
    mech = np.where(
        rng.random(p) < spec.anomaly_rate,
        rng.choice(len(shares), size=p, p=shares / shares.sum()),
        -1,
    )
    normal = mech < 0
    decoy = {
        f.name: normal & (rng.random(p) < getattr(decoys, f.name))
        for f in fields(decoys)
        if f.name != "fx_instructed"
    }
    return mech, decoy


def simulate_stage(
    rng: np.random.Generator, world: World, spec: StageSpec, mix: AnomalyMix, decoys: Decoys
) -> tuple[pa.Table, np.ndarray]:
    """One stage as a challenge-format transactions table, and each row's mechanism.

    The mechanism is an index into `AnomalyMix().names()`, or -1 for a normal payment; it is
    ground truth for analysis and is not written to the data set.
    """
    mech, decoy = draw_mechanisms(rng, spec, mix, decoys)
    legs = _cut(rng, mech, decoy, spec.rows)
    p = len(legs)
    mech = mech[:p]
    decoy = {k: v[:p] for k, v in decoy.items()} | {"fx_instructed": decoys.fx_instructed}
    who = _parties(rng, world, mech, decoy)
    hop = rng.integers(60, 1800, p)  # seconds between consecutive legs
    # Whole payments (all legs) fall inside the stage's window: stages split in time.
    room = spec.days * DAY - (legs - 1) * hop
    start = spec.first_day * DAY + (rng.random(p) * room).astype(np.int64)
    columns = _amounts(rng, world, mech, decoy, who)
    columns["SettlementDate"] = _settlement(rng, mech, decoy, (start + (legs - 1) * hop) // DAY)
    columns |= _beneficiary(rng, world, mech, decoy, who["ben"])
    return _legs(rng, world, spec, mech, legs, who, start, hop, columns)


def _uetrs(rng: np.random.Generator, p: int) -> pa.Array:
    hexes = fixed_width_codes(rng, p, "0123456789abcdef", 32)
    dash = np.full((p, 1), ord("-"), dtype=np.uint8)
    parts = [
        hexes[:, :8],
        dash,
        hexes[:, 8:12],
        dash,
        hexes[:, 12:16],
        dash,
        hexes[:, 16:20],
        dash,
        hexes[:, 20:],
    ]
    return to_strings(np.hstack(parts))


def _legs(
    rng: Rng,
    world: World,
    spec: StageSpec,
    mech: np.ndarray,
    legs: np.ndarray,
    who: Arrays,
    start: np.ndarray,
    hop: np.ndarray,
    columns: dict[str, Any],
) -> tuple[pa.Table, np.ndarray]:
    """Expand payments into time-ordered leg messages in the challenge's column order."""
    p, n = len(legs), int(legs.sum())
    pay = np.repeat(np.arange(p), legs)
    leg = np.arange(n) - np.repeat(np.cumsum(legs) - legs, legs)
    ts = start[pay] + leg * hop[pay]
    order = np.argsort(ts, kind="stable")
    pay, leg, ts = pay[order], leg[order], ts[order]
    width = int(legs.max()) + 1
    chain = world.hubs[rng.integers(0, len(world.hubs), (p, width))]
    layer = mech == MECH["layering"]
    chain[layer] = rng.integers(0, len(world.bank_code), (int(layer.sum()), width))
    chain[:, 0] = who["obank"]
    sender = chain[pay, leg]
    receiver = np.where(
        leg == legs[pay] - 1, who["bbank"][pay], chain[pay, np.minimum(leg + 1, width - 1)]
    )
    take = pa.array(pay)
    orderer = pa.array(who["orderer"][pay])
    out = {
        "MessageId": serial_ids("M", rng.permutation(n) + spec.id_offset, 10),
        "UETR": _uetrs(rng, p).take(take),
        "TransactionReference": to_strings(
            fixed_width_codes(rng, p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 12)
        ).take(take),
        "Timestamp": pa.array((EPOCH.astype("datetime64[s]") + ts).astype("datetime64[s]")),
        "Sender": pa.array(world.bank_code[sender], pa.string()),
        "Receiver": pa.array(world.bank_code[receiver], pa.string()),
        "OrderingAccount": world.account_id.take(orderer),
        "OrderingName": world.name.take(orderer),
        "OrderingStreet": world.street.take(orderer),
        "OrderingCountryCityZip": world.country_city_zip.take(orderer),
    }
    for col in (
        "BeneficiaryAccount",
        "BeneficiaryName",
        "BeneficiaryStreet",
        "BeneficiaryCountryCityZip",
    ):
        out[col] = columns[col].take(take)
    out["SettlementDate"] = pa.array(np.asarray(columns["SettlementDate"])[pay])
    for col in ("SettlementCurrency", "SettlementAmount", "InstructedCurrency", "InstructedAmount"):
        out[col] = pa.array(columns[col][pay])
    out["Label"] = pa.array((mech[pay] >= 0).astype(np.int64))
    return pa.table(out), mech[pay].astype(np.int8)
