"""PNS features and the bank-side beneficiary status."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pytest

from federation.features import (
    FEATURE_NAMES,
    STATUS_NAMES,
    PNSFeaturizer,
    beneficiary_queries,
    beneficiary_status,
    final_receiver,
    status_in_the_clear,
    status_onehot,
)


def _tx(rows: list[dict]) -> pd.DataFrame:
    base = {
        "OrderingAccount": "A1",
        "BeneficiaryAccount": "B1",
        "BeneficiaryName": "ANN",
        "BeneficiaryStreet": "1 MAIN ST",
        "BeneficiaryCountryCityZip": "GB LONDON 1",
        "SettlementDate": 220104,
        "SettlementCurrency": "GBP",
        "SettlementAmount": 100.0,
        "InstructedCurrency": "GBP",
        "InstructedAmount": 100.0,
    }
    df = pd.DataFrame([base | r for r in rows])
    df["Timestamp"] = pd.to_datetime(df["Timestamp"])
    return df


LEGS = _tx(
    [  # rows deliberately out of time order
        {"UETR": "u1", "Timestamp": "2022-01-03 10:30:00", "Sender": "X", "Receiver": "Z"},
        {"UETR": "u1", "Timestamp": "2022-01-03 10:00:00", "Sender": "S", "Receiver": "X"},
        {"UETR": "u2", "Timestamp": "2022-01-03 09:00:00", "Sender": "S", "Receiver": "Y"},
        {"UETR": "u1", "Timestamp": "2022-01-03 11:00:00", "Sender": "Z", "Receiver": "R"},
    ]
)


def test_final_receiver_is_receiver_of_latest_leg() -> None:
    assert final_receiver(LEGS).tolist() == ["R", "R", "Y", "R"]


def test_leg_features_and_interim() -> None:
    x = PNSFeaturizer().fit(LEGS).transform(LEGS)
    col = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert x.dtype == np.float32 and x.shape == (4, len(FEATURE_NAMES))
    assert col["legs"].tolist() == [3, 3, 1, 3]
    assert col["leg_index"].tolist() == [1, 0, 0, 2]
    assert col["interim_days"].tolist() == [1, 1, 1, 1]  # 2022-01-03 -> 220104
    assert col["weekday"].tolist() == [0, 0, 0, 0]  # a Monday


def test_currency_mismatch_and_fx_ratio() -> None:
    tx = LEGS.copy()
    tx.loc[2, ["InstructedCurrency", "InstructedAmount"]] = ["USD", 127.0]
    x = PNSFeaturizer().fit(tx).transform(tx)
    mismatch = x[:, FEATURE_NAMES.index("currency_mismatch")]
    assert mismatch.tolist() == [0, 0, 1, 0]
    assert x[2, FEATURE_NAMES.index("fx_amount_ratio")] > 0.2


def test_statistics_come_from_training_rows_only() -> None:
    train = LEGS
    test = LEGS.assign(BeneficiaryAccount=["B1", "NEW", "NEW", "B1"])
    featurizer = PNSFeaturizer().fit(train)
    x = featurizer.transform(test)
    ben = x[:, FEATURE_NAMES.index("beneficiary_log_count")]
    assert ben[1] == 0 and ben[2] == 0  # never seen in training
    assert ben[0] == pytest.approx(np.log1p(4))
    # Transforming other data does not change what was fitted.
    featurizer.transform(test.assign(OrderingAccount="A9"))
    assert np.array_equal(featurizer.transform(test), x)


def test_fit_transform_leaves_each_row_out() -> None:
    x = PNSFeaturizer().fit_transform(LEGS)
    assert x[:, FEATURE_NAMES.index("beneficiary_log_count")].tolist() == pytest.approx(
        [np.log1p(3)] * 4
    )


ACCOUNTS = pd.DataFrame(
    {
        "Account": ["a-ok", "a-watch", "a-block", "a-dup"],
        "Name": ["ANN", "BOB", "CY", "DEE"],
        "Street": ["1 ST", "2 ST", "3 ST", "4 ST"],
        "CountryCityZip": ["GB L 1", "GB L 2", "GB L 3", "GB L 4"],
        "Flags": ["00", "03", "07", "00"],
    }
)
QUERIES = pd.DataFrame(
    {
        "Account": ["a-ok", "a-ok", "a-watch", "a-block", "nope", "a-watch", "a-block"],
        "Name": ["ANN", "ANN", "BOB", "CY", "ANN", "BOB", "XX"],
        "Street": ["1 ST", "1 ST", "2 ST", "3 ST", "1 ST", "9 ST", "3 ST"],
        "CountryCityZip": ["GB L 1", "GB L 9", "GB L 2", "GB L 3", "GB L 1", "GB L 2", "GB L 3"],
    }
)
EXPECTED = ["ok", "mismatch", "flag_watch", "flag_block", "missing", "mismatch", "flag_block"]


def test_beneficiary_status_each_category_and_precedence() -> None:
    status = beneficiary_status(ACCOUNTS, QUERIES)
    assert status.dtype == np.int8
    assert [STATUS_NAMES[s] for s in status] == EXPECTED
    assert STATUS_NAMES[0] == "ok" and len(STATUS_NAMES) <= 6


def test_beneficiary_status_only_needs_equality() -> None:
    key = b"pairwise key"

    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        for col in ("Account", "Name", "Street", "CountryCityZip"):
            out[col] = [hmac.new(key, v.encode(), hashlib.sha256).digest() for v in df[col]]
        return out

    assert beneficiary_status(keyed(ACCOUNTS), keyed(QUERIES)).tolist() == (
        beneficiary_status(ACCOUNTS, QUERIES).tolist()
    )


def test_status_in_the_clear_routes_to_final_receiver() -> None:
    tx = LEGS.assign(BeneficiaryAccount="a-ok", BeneficiaryName="ANN", BeneficiaryStreet="1 ST")
    tx["BeneficiaryCountryCityZip"] = "GB L 1"
    # Bank R holds the account; bank Y does not hold anything, so u2 is "missing".
    accounts = ACCOUNTS.assign(Bank="R")
    status = status_in_the_clear(tx, accounts)
    assert [STATUS_NAMES[s] for s in status] == ["ok", "ok", "missing", "ok"]
    assert list(beneficiary_queries(tx).columns) == ["Account", "Name", "Street", "CountryCityZip"]
    onehot = status_onehot(status)
    assert onehot.shape == (4, len(STATUS_NAMES)) and onehot.sum(axis=1).tolist() == [1] * 4


@pytest.fixture(scope="module")
def tiny_stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    from federation.data.generate import generate
    from federation.data.loader import load_transactions

    root = generate(tmp_path_factory.mktemp("features") / "data", "tiny", seed=3)
    return (load_transactions(root, "scenario01", "train"),
            load_transactions(root, "scenario01", "test"))


def test_features_do_not_depend_on_the_chunk_size(tiny_stages) -> None:
    train, test = tiny_stages
    whole = PNSFeaturizer(chunk_rows=len(train))
    chunked = PNSFeaturizer(chunk_rows=7)  # chunks that split UETRs and accounts
    assert np.array_equal(chunked.fit_transform(train), whole.fit_transform(train))
    assert np.array_equal(chunked.transform(test), whole.transform(test))
    assert np.isfinite(whole.transform(test)).all()


def test_features_same_for_arrow_and_object_columns(tiny_stages) -> None:
    train, test = tiny_stages
    assert train["OrderingAccount"].dtype == pd.StringDtype("pyarrow")  # the loader's
    def objects(tx: pd.DataFrame) -> pd.DataFrame:
        return tx.astype({c: object for c in tx.columns if tx[c].dtype == "string"})

    plain = PNSFeaturizer().fit(objects(train))
    assert np.array_equal(plain.transform(objects(test)),
                          PNSFeaturizer().fit(train).transform(test))
    assert final_receiver(objects(train)).tolist() == final_receiver(train).tolist()


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_rows 0"):
        PNSFeaturizer(chunk_rows=0)
