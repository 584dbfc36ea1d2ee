"""The loader accepts the challenge layout and rejects each kind of bad input in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from federation.cli import main
from federation.data import loader, schema
from federation.data.generate import generate
from federation.errors import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("tiny") / "data", "tiny", seed=3)


@pytest.fixture
def data(tiny: Path, tmp_path: Path) -> Path:
    """A private copy (links broken) that a test may damage."""
    return Path(shutil.copytree(tiny, tmp_path / "data"))


def _swift(root: Path) -> Path:
    return root / "scenario01" / "train" / "swift" / "train.csv"


def _bank_file(root: Path) -> Path:
    return sorted((root / "scenario01" / "train" / "bank01").glob("*.csv"))[0]


def _rewrite(path: Path, edit) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(df)
    path.unlink()  # may be a hard link shared with other scenarios
    df.to_csv(path, index=False)


def _error(fn, *args) -> str:
    with pytest.raises(DataError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reads_valid_layout(tiny: Path) -> None:
    assert loader.list_scenarios(tiny) == ["scenario01", "scenario02", "scenario03"]
    for scenario, n_banks in [("scenario01", 2), ("scenario02", 4), ("scenario03", 9)]:
        parts = loader.partitions(tiny, scenario, "train")
        assert sorted(parts) == [schema.bank_client_id(i + 1) for i in range(n_banks)] + ["swift"]
    tx = loader.load_transactions(tiny, "scenario01", "train")
    assert list(tx.columns) == list(schema.TRANSACTION_COLUMNS)
    assert tx["MessageId"].is_unique and len(tx) == 4000
    assert str(tx["Timestamp"].dtype).startswith("datetime64")
    accounts = loader.load_bank_client(tiny, "scenario02", "test", "bank03")
    assert accounts["Bank"].nunique() >= 2  # a client may hold several banks
    assert set(accounts["Flags"]) <= set(schema.FLAG_CODES)
    assert accounts["Flags"].str.len().eq(2).all()


def test_centralized_matches_scenarios(tiny: Path) -> None:
    tx, accounts = loader.load_centralized(tiny, "test")
    assert tx.equals(loader.load_transactions(tiny, "scenario03", "test"))
    clients = [
        loader.load_bank_client(tiny, "scenario03", "test", schema.bank_client_id(i + 1))
        for i in range(9)
    ]
    assert sum(len(c) for c in clients) == len(accounts)


def test_missing_column(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.drop(columns=["SettlementDate"], inplace=True))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "train.csv" in msg and "missing column(s) ['SettlementDate']" in msg


def test_unexpected_column(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.insert(3, "Extra", "x"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "unexpected column(s) ['Extra']" in msg


def test_wrong_amount_type(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((6, "InstructedAmount"), "12,5x"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 8" in msg and "InstructedAmount" in msg and "'12,5x'" in msg and "double" in msg


def test_a_column_subset_is_read_and_checked(data: Path) -> None:
    kept = ["MessageId", "InstructedAmount", "Label"]
    tx = loader.load_transactions(data, "scenario01", "train", columns=kept)
    assert list(tx.columns) == kept and len(tx) == 4000
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((6, "InstructedAmount"), "12,5x"))
    # A column not kept is not converted.
    assert len(loader.load_transactions(data, "scenario01", "train", ["Sender", "Label"])) == 4000
    msg = _error(loader.load_transactions, data, "scenario01", "train", kept)
    assert "line 8" in msg and "InstructedAmount" in msg and "'12,5x'" in msg


def test_a_column_subset_names_an_unknown_column(data: Path) -> None:
    msg = _error(loader.load_transactions, data, "scenario01", "train", ["Label", "Nope"])
    assert "no transaction column Nope" in msg


def test_bad_timestamp(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((10, "Timestamp"), "2022/01/05 10:00"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 12" in msg and "column Timestamp" in msg and "%Y-%m-%d %H:%M:%S" in msg


def test_bad_settlement_date(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((4, "SettlementDate"), "221341"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 6" in msg and "SettlementDate" in msg and "yymmdd" in msg and "221341" in msg


def test_unparsable_settlement_date(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((2, "SettlementDate"), "2022-01-03"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 4" in msg and "SettlementDate" in msg and "int64" in msg


def test_duplicate_message_id(data: Path) -> None:
    def dup(df: pd.DataFrame) -> None:
        df.loc[20, "MessageId"] = df.loc[3, "MessageId"]

    _rewrite(_swift(data), dup)
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 22" in msg and "unique MessageId" in msg


def test_bad_label(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((0, "Label"), "2"))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 2" in msg and "Label" in msg and "0 or 1" in msg


def test_missing_required_value(data: Path) -> None:
    _rewrite(_swift(data), lambda df: df.loc.__setitem__((9, "Receiver"), ""))
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 11" in msg and "Receiver" in msg


def test_unknown_flag(data: Path) -> None:
    _rewrite(_bank_file(data), lambda df: df.loc.__setitem__((1, "Flags"), "02"))
    msg = _error(loader.load_bank_client, data, "scenario01", "train", "bank01")
    assert "line 3" in msg and "Flags" in msg and "'02'" in msg


def test_flag_without_leading_zero(data: Path) -> None:
    _rewrite(_bank_file(data), lambda df: df.loc.__setitem__((0, "Flags"), "6"))
    msg = _error(loader.load_bank_client, data, "scenario01", "train", "bank01")
    assert "line 2" in msg and "'6'" in msg and "'06'" in msg


def test_duplicate_account(data: Path) -> None:
    def dup(df: pd.DataFrame) -> None:
        df.loc[1, "Account"] = df.loc[0, "Account"]

    _rewrite(_bank_file(data), dup)
    msg = _error(loader.load_bank_client, data, "scenario01", "train", "bank01")
    assert "(Bank, Account)" in msg


def test_empty_file(data: Path) -> None:
    path = _swift(data)
    path.unlink()
    path.write_text("")
    assert "empty file" in _error(loader.load_transactions, data, "scenario01", "train")


def test_header_only(data: Path) -> None:
    path = _bank_file(data)
    path.unlink()
    path.write_text(",".join(schema.ACCOUNT_COLUMNS) + "\n")
    msg = _error(loader.load_bank_client, data, "scenario01", "train", "bank01")
    assert "no data rows" in msg


def test_ragged_row(data: Path) -> None:
    path = _swift(data)
    lines = path.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:-2])
    path.unlink()
    path.write_text("\n".join(lines) + "\n")
    msg = _error(loader.load_transactions, data, "scenario01", "train")
    assert "line 6" in msg and "expected 20 fields, found 18" in msg


def test_partitions_names_missing_file(data: Path) -> None:
    _bank_file(data).unlink()
    msg = _error(loader.partitions, data, "scenario01", "train")
    assert "partitions.json" in msg and "bank01" in msg and "missing file" in msg


def test_partitions_invalid_json(data: Path) -> None:
    (data / "scenario02" / "test" / "partitions.json").write_text("{not json")
    msg = _error(loader.partitions, data, "scenario02", "test")
    assert "invalid JSON" in msg


def test_partitions_without_swift(data: Path) -> None:
    path = data / "scenario01" / "test" / "partitions.json"
    parts = json.loads(path.read_text())
    del parts["swift"]
    path.write_text(json.dumps(parts))
    assert "no 'swift' client" in _error(loader.partitions, data, "scenario01", "test")


def test_scenario_not_listed(data: Path) -> None:
    (data / "scenarios.txt").write_text("scenario01\nscenario02\n")
    msg = _error(loader.partitions, data, "scenario03", "train")
    assert "scenarios.txt" in msg and "'scenario03' not listed" in msg


def test_unknown_bank_client_and_stage(tiny: Path) -> None:
    assert "no bank client 'bank07'" in _error(
        loader.load_bank_client, tiny, "scenario02", "train", "bank07"
    )
    assert "stage 'dev'" in _error(loader.partitions, tiny, "scenario01", "dev")


def test_test_stage_may_omit_label(data: Path) -> None:
    _rewrite(
        data / "scenario01" / "test" / "swift" / "test.csv",
        lambda df: df.drop(columns=["Label"], inplace=True),
    )
    assert "Label" not in loader.load_transactions(data, "scenario01", "test")
    _rewrite(_swift(data), lambda df: df.drop(columns=["Label"], inplace=True))
    assert "['Label']" in _error(loader.load_transactions, data, "scenario01", "train")


def test_centralized_missing_key(data: Path) -> None:
    (data / "centralized" / "train" / "data.json").write_text('{"swift_data_path": "x.csv"}')
    assert "missing file" in _error(loader.load_centralized, data, "train")
    (data / "centralized" / "train" / "data.json").write_text('{"bank_data_path": "x.csv"}')
    assert "missing key 'swift_data_path'" in _error(loader.load_centralized, data, "train")


def test_cli_validate_ok_and_error(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only this command group: other groups' imports are irrelevant here and slow.
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    assert main(["data", "validate", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and out["checked"]["scenario03/test"]["transactions"] == 2000
    _rewrite(_bank_file(data), lambda df: df.loc.__setitem__((0, "Flags"), "99"))
    assert main(["data", "validate", "--data", str(data), "--scenario", "scenario01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pv4fad: error: ") and "Flags" in err


def test_a_party_needs_only_its_own_files(data: Path) -> None:
    """A deployed party holds its own partition only; the others' files are not there."""
    stage = data / "scenario01" / "train"
    for other in ("bank02", "swift"):
        for f in (stage / other).glob("*.csv"):
            f.unlink()
    assert len(loader.load_bank_client(data, "scenario01", "train", "bank01")) > 0
    assert "swift" in _error(loader.load_transactions, data, "scenario01", "train")


def test_parties_lists_a_scenarios_training_parties_pns_first(data: Path, capsys) -> None:
    assert main(["data", "parties", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "scenario01 swift,bank01,bank02\n"
    assert main(["data", "parties", "--data", str(data), "--scenario", "scenario03"]) == 0
    scenario, ids = capsys.readouterr().out.split()
    assert scenario == "scenario03" and ids.split(",")[0] == "swift" and len(ids.split(",")) == 10
    assert main(["data", "parties", "--data", str(data), "--scenario", "nope"]) == 2
    assert "scenario 'nope' is not in" in capsys.readouterr().err
    partitions = data / "scenario01" / "train" / "partitions.json"
    entries = json.loads(partitions.read_text())
    partitions.unlink()  # may be a hard link shared with other scenarios
    partitions.write_text(json.dumps({k: v for k, v in entries.items() if k != "swift"}))
    assert main(["data", "parties", "--data", str(data)]) == 2
    assert "no 'swift' client" in capsys.readouterr().err
