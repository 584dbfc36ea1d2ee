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


def final_receiver(tx: pd.DataFrame) -> pd.Series:
    """Per row, the bank holding the beneficiary account: Receiver of its UETR's latest leg."""
    return pd.Series(_leg_structure(tx)[3], index=tx.index, name="FinalReceiver")


def _leg_structure(tx: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Per row: legs of its UETR, its position among them, first sender, final receiver."""
    codes, uniques = pd.factorize(tx["UETR"])
    ts = tx["Timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    span = int(ts.max() - ts.min()) + 1
    order = np.argsort(codes.astype(np.int64) * span + (ts - ts.min()), kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    index = np.empty(len(order), dtype=np.int64)
    index[order] = np.arange(len(order)) - np.repeat(starts, counts)
    first = order[starts]
    last = order[starts + counts - 1]
    group = np.empty(len(uniques), dtype=np.int64)
    group[sorted_codes[starts]] = np.arange(len(starts))
    g = group[codes]
    return counts[g], index, tx["Sender"].to_numpy()[first[g]], tx["Receiver"].to_numpy()[last[g]]


class _Vocabulary:
    """Integer codes of string values seen in training (-1 for unseen)."""

    def __init__(self, values: np.ndarray) -> None:
        self.index = pd.Index(pd.unique(values))

    def codes(self, values: np.ndarray) -> np.ndarray:
        return self.index.get_indexer(values)


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
    the same distribution.
    """

    feature_names: tuple[str, ...] = FEATURE_NAMES

    def fit(self, train_tx: pd.DataFrame) -> PNSFeaturizer:
        c = _columns(train_tx)
        self._vocab = {k: _Vocabulary(c[k]) for k in ("ord", "ben", "bank")}
        codes = self._codes(c)
        self._median = pd.Series(c["log_amount"]).groupby(c["currency"]).median().to_dict()
        norm = c["log_amount"] - pd.Series(c["currency"]).map(self._median).to_numpy()
        n_ord = len(self._vocab["ord"].index)
        self._n = np.bincount(codes["ord"], minlength=n_ord).astype(float)
        self._sum = np.bincount(codes["ord"], weights=norm, minlength=n_ord)
        self._sumsq = np.bincount(codes["ord"], weights=norm**2, minlength=n_ord)
        self._fx = np.bincount(codes["ord"], weights=c["mismatch"], minlength=n_ord)
        self._global = (norm.mean(), norm.var() + 1e-6, c["mismatch"].mean())
        self._tables = {k: _CountTable.fit(v) for k, v in self._keys(codes).items()}
        return self

    def fit_transform(self, train_tx: pd.DataFrame) -> np.ndarray:
        return self.fit(train_tx)._transform(train_tx, leave_one_out=True)

    def transform(self, tx: pd.DataFrame) -> np.ndarray:
        return self._transform(tx, leave_one_out=False)

    def _codes(self, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        v = self._vocab
        return {
            "ord": v["ord"].codes(c["ord"]),
            "ben": v["ben"].codes(c["ben"]),
            "sender": v["bank"].codes(c["sender"]),
            "receiver": v["bank"].codes(c["receiver"]),
            "first": v["bank"].codes(c["first"]),
            "final": v["bank"].codes(c["final"]),
        }

    def _keys(self, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n_ben, n_bank = len(self._vocab["ben"].index), len(self._vocab["bank"].index)
        return {
            "ord": codes["ord"].astype(np.int64),
            "ben": codes["ben"].astype(np.int64),
            "pair": _pair_keys(codes["ord"], codes["ben"], n_ben),
            "corridor": _pair_keys(codes["first"], codes["final"], n_bank),
            "leg_pair": _pair_keys(codes["sender"], codes["receiver"], n_bank),
            "receiver": codes["final"].astype(np.int64),
        }

    def _transform(self, tx: pd.DataFrame, leave_one_out: bool) -> np.ndarray:
        c = _columns(tx)
        codes = self._codes(c)
        self_count = 1.0 if leave_one_out else 0.0
        counts = {
            k: np.maximum(t.lookup(v) - self_count, 0)
            for k, v in self._keys(codes).items()
            for t in [self._tables[k]]
        }
        median = pd.Series(c["currency"]).map(self._median).fillna(self._global[0]).to_numpy()
        norm = c["log_amount"] - median
        z, fx_rate = self._account_stats(codes["ord"], norm, c["mismatch"], leave_one_out)
        columns = [
            c["interim_days"],
            c["weekday"],
            c["mismatch"],
            c["fx_ratio"],
            norm,
            z,
            fx_rate,
            *(np.log1p(counts[k]) for k in ("ord", "ben", "pair", "corridor", "leg_pair")),
            np.log1p(counts["receiver"]),
            c["legs"],
            c["leg_index"],
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


def _columns(tx: pd.DataFrame) -> dict[str, np.ndarray]:
    """Raw per-row values that the features are built from."""
    legs, leg_index, first, final = _leg_structure(tx)
    ts = tx["Timestamp"].to_numpy().astype("datetime64[s]")
    day = ts.astype("datetime64[D]")
    sd = tx["SettlementDate"].to_numpy().astype(np.int64)
    settle = (
        pd.to_datetime(
            pd.DataFrame({"year": 2000 + sd // 10000, "month": sd // 100 % 100, "day": sd % 100})
        )
        .to_numpy()
        .astype("datetime64[D]")
    )
    settle_amount = tx["SettlementAmount"].to_numpy(dtype=float)
    instructed = tx["InstructedAmount"].to_numpy(dtype=float)
    mismatch = (tx["SettlementCurrency"] != tx["InstructedCurrency"]).to_numpy(dtype=float)
    return {
        "interim_days": (settle - day).astype(np.int64).astype(float),
        "weekday": ((day.astype(np.int64) + 3) % 7).astype(float),  # Monday = 0
        "mismatch": mismatch,
        "fx_ratio": np.log1p(instructed) - np.log1p(settle_amount),
        "log_amount": np.log1p(settle_amount),
        "currency": tx["SettlementCurrency"].to_numpy(dtype=object),
        "ord": tx["OrderingAccount"].to_numpy(dtype=object),
        "ben": tx["BeneficiaryAccount"].to_numpy(dtype=object),
        "bank": np.concatenate(
            [tx["Sender"].to_numpy(dtype=object), tx["Receiver"].to_numpy(dtype=object)]
        ),
        "sender": tx["Sender"].to_numpy(dtype=object),
        "receiver": tx["Receiver"].to_numpy(dtype=object),
        "first": first,
        "final": final,
        "legs": legs.astype(float),
        "leg_index": leg_index.astype(float),
    }


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
