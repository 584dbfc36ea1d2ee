"""The synthetic generator: layout, determinism, time split, and each mechanism's signal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from federation.cli import main
from federation.data import generate as gen
from federation.data import loader
from federation.data.payments import MECH, AnomalyMix, Decoys, StageSpec, simulate_stage
from federation.data.world import bank_accounts_table, build_world
from federation.errors import DataError
from federation.features import (
    FEATURE_NAMES,
    STATUS_NAMES,
    PNSFeaturizer,
    status_in_the_clear,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(tmp_path_factory.mktemp("gen") / "data", "tiny", seed=11)


def test_deterministic_for_a_seed(tiny: Path, tmp_path: Path) -> None:
    again = gen.generate(tmp_path / "again", "tiny", seed=11)
    other = gen.generate(tmp_path / "other", "tiny", seed=12)
    name = "centralized/train/swift_transaction_train_dataset.csv"
    assert (tiny / name).read_bytes() == (again / name).read_bytes()
    assert (tiny / name).read_bytes() != (other / name).read_bytes()
    bank = "centralized/test/bank_dataset.csv"
    assert (tiny / bank).read_bytes() == (again / bank).read_bytes()


def test_stages_split_in_time_and_never_split_a_payment(tiny: Path) -> None:
    train = loader.load_transactions(tiny, "scenario02", "train")
    test = loader.load_transactions(tiny, "scenario02", "test")
    assert len(train) == gen.SCALES["tiny"].train_rows
    assert len(test) == gen.SCALES["tiny"].test_rows
    assert set(train["UETR"]).isdisjoint(set(test["UETR"]))
    assert set(train["MessageId"]).isdisjoint(set(test["MessageId"]))
    assert train["Timestamp"].max() < test["Timestamp"].min()
    # Raised rate for tiny (2 % of payments) so that unit tests see enough anomalies.
    assert 0.01 < train["Label"].mean() < 0.05
    # All legs of a payment carry the same label.
    assert train.groupby("UETR")["Label"].nunique().max() == 1


def test_every_mechanism_occurs_and_is_recorded(tiny: Path) -> None:
    info = json.loads((tiny / gen.GENERATOR_INFO).read_text())
    counts = info["anomalous_rows_by_mechanism"]
    total = counts["train"]["anomalous_rows"] + counts["test"]["anomalous_rows"]
    mix = AnomalyMix()
    for name in mix.names():
        if getattr(mix, name) * total >= 5:  # the rarest (label noise) is checked at scale
            assert counts["train"][name] + counts["test"][name] > 0, name
    tx = loader.load_transactions(tiny, "scenario01", "train")
    assert counts["train"]["anomalous_rows"] == tx["Label"].sum()


def test_scenarios_partition_all_banks(tiny: Path) -> None:
    _, accounts = loader.load_centralized(tiny, "train")
    for scenario, n_clients in gen.SCENARIO_BANK_CLIENTS.items():
        parts = loader.partitions(tiny, scenario, "train")
        assert len(parts) == n_clients + 1
        held = [
            set(loader.load_bank_client(tiny, scenario, "train", cid)["Bank"])
            for cid in parts
            if cid != "swift"
        ]
        assert set().union(*held) == set(accounts["Bank"])
        assert sum(len(h) for h in held) == accounts["Bank"].nunique()  # disjoint


def test_mechanisms_leave_their_signals() -> None:
    """Simulate in memory, with each row's mechanism, and check what it must show."""
    rng = np.random.default_rng(5)
    # A world shaped for 200 k rows, so that the rare decoys (FX accounts) surely occur.
    scale = dataclasses.replace(gen.SCALES["tiny"], train_rows=150_000, test_rows=50_000)
    mix = AnomalyMix()
    world = build_world(rng, gen._world_shape(scale, mix))
    spec = StageSpec(20_000, 0, 30, 0.05, 0)
    table, mech = simulate_stage(rng, world, spec, mix, Decoys())
    tx = table.to_pandas()
    accounts = pa.concat_tables(
        bank_accounts_table(world, b) for b in range(len(world.bank_code))
    ).to_pandas()
    status = np.array(STATUS_NAMES)[status_in_the_clear(tx, accounts)]
    x = PNSFeaturizer().fit(tx).transform(tx)
    interim = x[:, FEATURE_NAMES.index("interim_days")]
    legs = x[:, FEATURE_NAMES.index("legs")]
    mismatch = tx["InstructedCurrency"] != tx["SettlementCurrency"]

    def rows(name: str) -> np.ndarray:
        selected = mech == MECH[name]
        assert selected.any(), name
        return selected

    assert mismatch[rows("currency_mismatch")].all()
    gap = interim[rows("settlement_gap")]
    assert ((gap < 0) | (gap >= 6)).all()
    assert (legs[rows("layering")] >= 4).all()
    assert (status[rows("missing_account")] == "missing").all()
    assert (status[rows("details_mismatch")] == "mismatch").all()
    assert np.isin(status[rows("flagged_account")], ["flag_watch", "flag_block"]).all()
    normal = mech < 0
    # Decoys exist but are rare: no single rule is perfect, and none floods the data.
    assert 0 < (status[normal] != "ok").mean() < 0.01
    assert 0 < mismatch[normal].mean() < 0.02
    assert (legs[normal] >= 4).mean() < 0.001
    assert tx["Label"].to_numpy().tolist() == (mech >= 0).astype(int).tolist()


def test_bad_arguments(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="scale 'huge'"):
        gen.generate(tmp_path / "x", "huge", 1)
    with pytest.raises(DataError, match="empty or new directory"):
        gen.generate(tiny, "tiny", 1)


def test_default_data_dir_generates_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PV4FAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(gen.SCALES, "default", gen.SCALES["tiny"])  # keep the test fast
    first = gen.default_data_dir()
    stamp = (first / gen.GENERATOR_INFO).stat().st_mtime_ns
    assert gen.default_data_dir() == first
    assert (first / gen.GENERATOR_INFO).stat().st_mtime_ns == stamp
    assert loader.list_scenarios(first) == list(gen.SCENARIO_BANK_CLIENTS)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]


def test_cli_generate_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    out = tmp_path / "d"
    args = ["data", "generate", "--out", str(out), "--scale", "tiny", "--seed", "4", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scale"] == "tiny" and Path(result["out"]) == out
    assert main(args) == 2  # the directory is no longer empty
    assert "empty or new directory" in capsys.readouterr().err
    assert isinstance(pd.read_csv(out / "scenarios.txt", header=None), pd.DataFrame)
