"""Features of a payment: what the payment network can compute, and what a bank can.

`PNSFeaturizer` turns the PNS's own transactions into a float32 matrix (vectorised; fitted
statistics come from training rows only). `beneficiary_status` is the bank's side: a pure
function of its own account records and the PNS's query that only tests equality, so it
works unchanged when both sides hold keyed hashes (HMAC) instead of the strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from federation.config import REPORTED_STATUSES, STATUS_NAMES  # noqa: F401  (re-exported)

# Query columns of a transaction, and the matching account-record columns.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "BeneficiaryAccount",
    "BeneficiaryName",
    "BeneficiaryStreet",
    "BeneficiaryCountryCityZip",
)
ACCOUNT_IDENTITY: tuple[str, ...] = ("Account", "Name", "Street", "CountryCityZip")
# STATUS_NAMES (what a bank can say about a beneficiary) and REPORTED_STATUSES (what it
# reports in the protocol) live with the run configuration (imported above).
# Flags under which an account cannot legitimately receive a payment.
BLOCK_FLAGS: frozenset[str] = frozenset({"01", "06", "07", "09"})
FEATURE_NAMES: tuple[str, ...] = (
    "interim_days",
    "weekday",
    "currency_mismatch",
    "fx_amount_ratio",
    "amount_norm",
    "amount_z",
    "ordering_fx_rate",
    "ordering_log_count",
    "beneficiary_log_count",
    "pair_log_count",
    "corridor_log_count",
    "leg_pair_log_count",
    "receiver_log_count",
    "legs",
    "leg_index",
)
_SHRINK = 2.0  # pseudo-observations pulling thin account histories to the global value
# Rows featurized at a time (bounds the float64 intermediates: about 130 bytes a row).
CHUNK_ROWS = 250_000


def final_receiver(tx: pd.DataFrame) -> pd.Series:
    """Per row, the bank holding the beneficiary account: Receiver of its UETR's latest leg."""
    last = _leg_structure(tx).last
    return pd.Series(tx["Receiver"].array.take(last), index=tx.index, name="FinalReceiver")


@dataclass(frozen=True)
class _Legs:
    """Per row: legs of its UETR, its position among them, and the rows of its first and
    latest legs."""

    legs: np.ndarray
    index: np.ndarray
    first: np.ndarray
    last: np.ndarray


def _leg_structure(tx: pd.DataFrame) -> _Legs:
    codes, uniques = pd.factorize(tx["UETR"])
    ts = tx["Timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    span = int(ts.max() - ts.min()) + 1
    order = np.argsort(codes.astype(np.int64) * span + (ts - ts.min()), kind="stable")
    del ts
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    index = np.empty(len(order), dtype=np.int32)
    index[order] = np.arange(len(order)) - np.repeat(starts, counts)
    group = np.empty(len(uniques), dtype=np.int64)
    group[sorted_codes[starts]] = np.arange(len(starts))
    g = group[codes]
    return _Legs(counts[g].astype(np.int32), index, order[starts][g], order[starts + counts - 1][g])


def _strings(values: pd.Series | np.ndarray) -> pa.ChunkedArray:
    """A string column as Arrow strings: no copy, and no Python object per row, when the
    column is Arrow-backed (as the loader's are)."""
    arr = pa.array(values)
    if isinstance(arr, pa.Array):
        arr = pa.chunked_array([arr])
    return arr.cast(pa.large_string())


class _Vocabulary:
    """Integer codes of string values seen in training (-1 for unseen)."""

    def __init__(self, values: pa.ChunkedArray) -> None:
        self.values = pc.unique(values)

    def __len__(self) -> int:
        return len(self.values)

    def codes(self, values: pa.ChunkedArray) -> np.ndarray:
        found = pc.index_in(values, value_set=self.values).fill_null(-1)
        return found.to_numpy().astype(np.int32, copy=False)


def _pair_keys(a: np.ndarray, b: np.ndarray, size_b: int) -> np.ndarray:
    return (a.astype(np.int64) + 1) * (size_b + 1) + (b.astype(np.int64) + 1)


@dataclass
class _CountTable:
    """How often each integer key occurred in training."""

    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def fit(cls, keys: np.ndarray) -> _CountTable:
        uniq, counts = np.unique(keys, return_counts=True)
        return cls(uniq, counts)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.counts[pos], 0)


class PNSFeaturizer:
    """The payment network's features (names in `feature_names`), float32.

    `fit(train)` learns counts and per-account amount statistics from training rows only;
    `transform(tx)` applies them. For the training rows themselves use `fit_transform`,
    which leaves each row out of its own statistics so that train and test features have
    the same distribution. Rows are featurized `chunk_rows` at a time into the float32
    result, so the float64 intermediates stay bounded whatever the number of rows (the
    result does not depend on the chunk size).
    """

    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows {chunk_rows}: expected an integer >= 1")
        self.chunk_rows = chunk_rows

    def fit(self, train_tx: pd.DataFrame) -> PNSFeaturizer:
        self._fit(train_tx, _leg_structure(train_tx))
        return self

    def fit_transform(self, train_tx: pd.DataFrame) -> np.ndarray:
        legs = _leg_structure(train_tx)
        codes = self._fit(train_tx, legs)
        return self._transform(train_tx, legs, codes, leave_one_out=True)

    def transform(self, tx: pd.DataFrame) -> np.ndarray:
        legs = _leg_structure(tx)
        return self._transform(tx, legs, self._codes(tx, legs), leave_one_out=False)

    def _fit(self, tx: pd.DataFrame, legs: _Legs) -> dict[str, np.ndarray]:
        """Learn the vocabularies, counts and account statistics; the training rows' codes."""
        banks = _strings(tx["Sender"])
        banks = pa.chunked_array(banks.chunks + _strings(tx["Receiver"]).chunks)
        self._vocab = {"ord": _Vocabulary(_strings(tx["OrderingAccount"])),
                       "ben": _Vocabulary(_strings(tx["BeneficiaryAccount"])),
                       "bank": _Vocabulary(banks),
                       "currency": _Vocabulary(_strings(tx["SettlementCurrency"]))}
        del banks
        codes = self._codes(tx, legs)
        log_amount = np.log1p(tx["SettlementAmount"].to_numpy(dtype=float))
        mismatch = _mismatch(tx)
        currency = codes["currency"]
        self._median = (pd.Series(log_amount).groupby(currency).median()
                        .reindex(range(len(self._vocab["currency"]))).to_numpy())
        norm = log_amount - self._median[currency]
        del log_amount
        n_ord = len(self._vocab["ord"])
        self._n = np.bincount(codes["ord"], minlength=n_ord).astype(float)
        self._sum = np.bincount(codes["ord"], weights=norm, minlength=n_ord)
        self._sumsq = np.bincount(codes["ord"], weights=norm**2, minlength=n_ord)
        self._fx = np.bincount(codes["ord"], weights=mismatch, minlength=n_ord)
        self._global = (norm.mean(), norm.var() + 1e-6, mismatch.mean())
        self._tables = {k: _CountTable.fit(v) for k, v in self._keys(codes).items()}
        return codes

    def _codes(self, tx: pd.DataFrame, legs: _Legs) -> dict[str, np.ndarray]:
        v = self._vocab
        sender = v["bank"].codes(_strings(tx["Sender"]))
        receiver = v["bank"].codes(_strings(tx["Receiver"]))
        return {
            "ord": v["ord"].codes(_strings(tx["OrderingAccount"])),
            "ben": v["ben"].codes(_strings(tx["BeneficiaryAccount"])),
            "currency": v["currency"].codes(_strings(tx["SettlementCurrency"])),
            "sender": sender,
            "receiver": receiver,
            "first": sender[legs.first],
            "final": receiver[legs.last],
        }

    def _keys(self, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n_ben, n_bank = len(self._vocab["ben"]), len(self._vocab["bank"])
        return {
            "ord": codes["ord"].astype(np.int64),
            "ben": codes["ben"].astype(np.int64),
            "pair": _pair_keys(codes["ord"], codes["ben"], n_ben),
            "corridor": _pair_keys(codes["first"], codes["final"], n_bank),
            "leg_pair": _pair_keys(codes["sender"], codes["receiver"], n_bank),
            "receiver": codes["final"].astype(np.int64),
        }

    def _transform(self, tx: pd.DataFrame, legs: _Legs, codes: dict[str, np.ndarray],
                   leave_one_out: bool) -> np.ndarray:
        out = np.empty((len(tx), len(FEATURE_NAMES)), dtype=np.float32)
        for start in range(0, len(tx), self.chunk_rows):
            part = slice(start, start + self.chunk_rows)
            out[part] = self._transform_rows(
                tx.iloc[part], legs.legs[part], legs.index[part],
                {k: v[part] for k, v in codes.items()}, leave_one_out)
        return out

    def _transform_rows(self, tx: pd.DataFrame, legs: np.ndarray, leg_index: np.ndarray,
                        codes: dict[str, np.ndarray], leave_one_out: bool) -> np.ndarray:
        self_count = 1.0 if leave_one_out else 0.0
        counts = {
            k: np.maximum(t.lookup(v) - self_count, 0)
            for k, v in self._keys(codes).items()
            for t in [self._tables[k]]
        }
        currency = codes["currency"]
        median = np.where(currency >= 0, self._median[np.maximum(currency, 0)], np.nan)
        median = np.where(np.isnan(median), self._global[0], median)
        settle_amount = tx["SettlementAmount"].to_numpy(dtype=float)
        norm = np.log1p(settle_amount) - median
        mismatch = _mismatch(tx)
        z, fx_rate = self._account_stats(codes["ord"], norm, mismatch, leave_one_out)
        day = tx["Timestamp"].to_numpy().astype("datetime64[s]").astype("datetime64[D]")
        columns = [
            (_settlement_day(tx) - day).astype(np.int64).astype(float),
            ((day.astype(np.int64) + 3) % 7).astype(float),  # Monday = 0
            mismatch,
            np.log1p(tx["InstructedAmount"].to_numpy(dtype=float)) - np.log1p(settle_amount),
            norm,
            z,
            fx_rate,
            *(np.log1p(counts[k]) for k in ("ord", "ben", "pair", "corridor", "leg_pair")),
            np.log1p(counts["receiver"]),
            legs.astype(float),
            leg_index.astype(float),
        ]
        return np.column_stack(columns).astype(np.float32)

    def _account_stats(
        self, code: np.ndarray, norm: np.ndarray, mismatch: np.ndarray, leave_one_out: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Amount z-score and FX rate against the ordering account's (shrunk) history."""
        seen = code >= 0
        safe = np.where(seen, code, 0)
        n = np.where(seen, self._n[safe], 0.0)
        s = np.where(seen, self._sum[safe], 0.0)
        ss = np.where(seen, self._sumsq[safe], 0.0)
        fx = np.where(seen, self._fx[safe], 0.0)
        if leave_one_out:
            n, s, ss, fx = n - 1, s - norm, ss - norm**2, fx - mismatch
        g_mean, g_var, g_fx = self._global
        mean = (s + _SHRINK * g_mean) / (n + _SHRINK)
        var = (np.maximum(ss - n * (s / np.maximum(n, 1)) ** 2, 0) + _SHRINK * g_var) / (
            n + _SHRINK
        )
        z = (norm - mean) / np.sqrt(var)
        return z, (fx + _SHRINK * g_fx) / (n + _SHRINK)


def _mismatch(tx: pd.DataFrame) -> np.ndarray:
    """1.0 where the settlement and instructed currencies differ."""
    return (tx["SettlementCurrency"] != tx["InstructedCurrency"]).to_numpy(dtype=float)


def _settlement_day(tx: pd.DataFrame) -> np.ndarray:
    sd = tx["SettlementDate"].to_numpy().astype(np.int64)
    return (
        pd.to_datetime(
            pd.DataFrame({"year": 2000 + sd // 10000, "month": sd // 100 % 100, "day": sd % 100})
        )
        .to_numpy()
        .astype("datetime64[D]")
    )


def beneficiary_status(accounts: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
    """Status code (index into STATUS_NAMES) of each queried beneficiary, from one bank's records.

    `accounts` has Account, Name, Street, CountryCityZip, Flags; `queries` has Account, Name,
    Street, CountryCityZip. Values are only compared for equality (they may be HMACs).
    Precedence: missing, then a blocking flag, then mismatching details, then any other
    non-00 flag. An account listed twice counts by its first record.
    """
    records = accounts.drop_duplicates("Account", keep="first")
    pos = pd.Index(records["Account"].to_numpy(dtype=object)).get_indexer(
        queries["Account"].to_numpy(dtype=object)
    )
    found = pos >= 0
    safe = np.where(found, pos, 0)
    match = np.ones(len(queries), dtype=bool)
    for col in ACCOUNT_IDENTITY[1:]:
        match &= records[col].to_numpy(dtype=object)[safe] == queries[col].to_numpy(dtype=object)
    flags = records["Flags"].to_numpy(dtype=object)[safe]
    block = np.isin(flags, list(BLOCK_FLAGS))
    watch = flags != "00"
    status = np.select(
        [~found, block, ~match, watch],
        [STATUS_NAMES.index(s) for s in ("missing", "flag_block", "mismatch", "flag_watch")],
        default=0,
    )
    return status.astype(np.int8)


def reported_status(status: np.ndarray, detail: str) -> np.ndarray:
    """`status` (codes into STATUS_NAMES) as codes into REPORTED_STATUSES[detail]."""
    return status if detail == "full" else (status != 0).astype(status.dtype)


def beneficiary_queries(tx: pd.DataFrame) -> pd.DataFrame:
    """The identity columns of transactions, renamed to the account-record names."""
    return pd.DataFrame(
        {
            a: tx[q].to_numpy(dtype=object)
            for q, a in zip(IDENTITY_COLUMNS, ACCOUNT_IDENTITY, strict=True)
        }
    )


def status_in_the_clear(tx: pd.DataFrame, accounts: pd.DataFrame) -> np.ndarray:
    """Each row's beneficiary status from the final receiver's records (centralized ceiling).

    The federated protocol computes the same thing without anyone seeing both sides.
    """
    receiver = final_receiver(tx).to_numpy(dtype=object)
    queries = beneficiary_queries(tx)
    status = np.full(len(tx), STATUS_NAMES.index("missing"), dtype=np.int8)
    held = pd.Series(np.arange(len(accounts))).groupby(accounts["Bank"].to_numpy(dtype=object))
    held_rows = held.indices
    for bank, rows in pd.Series(np.arange(len(tx))).groupby(receiver).indices.items():
        if bank in held_rows:
            status[rows] = beneficiary_status(accounts.iloc[held_rows[bank]], queries.iloc[rows])
    return status


def status_onehot(status: np.ndarray) -> np.ndarray:
    """One-hot float32 matrix (rows x len(STATUS_NAMES)) of status codes."""
    return np.eye(len(STATUS_NAMES), dtype=np.float32)[status]
