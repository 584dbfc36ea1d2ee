"""World variants: presets and random draws validate and load, are deterministic, leave the
default world as it was, and their parameters change the data as documented."""

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
from federation.data.cli import VARIANT_NAMES
from federation.data.mechanisms import (
    BANK_MECHANISMS,
    STATUS_DECOY_KINDS,
    apply_flags,
    region_of,
    simulate_variant_stage,
)
from federation.data.payments import MECH, StageSpec
from federation.data.variants import (
    PRESETS,
    Variant,
    generate_variant,
    random_variant,
    resolve,
    world_shape,
)
from federation.data.world import BLOCK_FLAGS, COUNTRIES, bank_accounts_table, build_world
from federation.errors import DataError
from federation.features import FEATURE_NAMES, STATUS_NAMES, PNSFeaturizer, status_in_the_clear

SMALL = 6_000  # training rows of the data sets written to disk


def _simulate(variant: Variant, seed: int = 3, rows: int = 20_000, rate: float = 0.03):
    """One stage in memory: transactions, per-row mechanism, decoy kind and status, and
    the world (shaped for 50 k rows, so that accounts and mules are as at scale)."""
    variant = dataclasses.replace(variant, train_rows=40_000, test_rows=10_000)
    rng = np.random.default_rng(seed)
    world = build_world(rng, world_shape(variant))
    apply_flags(rng, world, variant)
    region = region_of(rng, world, variant)
    table, mech, kind = simulate_variant_stage(rng, world, StageSpec(rows, 0, 30, rate, 0),
                                               variant, region)
    tx = table.to_pandas()
    accounts = pa.concat_tables(
        bank_accounts_table(world, b) for b in range(len(world.bank_code))).to_pandas()
    status = np.array(STATUS_NAMES)[status_in_the_clear(tx, accounts)]
    return tx, mech, kind, status, world, region


def _bank_side(mech: np.ndarray) -> np.ndarray:
    return np.isin(mech, [MECH[m] for m in BANK_MECHANISMS])


def _log_usd(tx: pd.DataFrame) -> np.ndarray:
    rate = {c[1]: c[2] for c in COUNTRIES}
    return np.log(tx["SettlementAmount"].to_numpy() / tx["SettlementCurrency"].map(rate).to_numpy())


def test_cli_names_every_variant() -> None:
    assert VARIANT_NAMES == tuple(sorted([*PRESETS, "random"]))


def test_default_preset_is_the_default_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    scale = gen.SCALES["default"]
    default = PRESETS["default"]
    assert (default.train_rows, default.test_rows, default.n_banks, default.anomaly_rate,
            default.train_days, default.test_days) == (
        scale.train_rows, scale.test_rows, scale.n_banks, scale.anomaly_rate,
        scale.train_days, scale.test_days)
    assert world_shape(default) == gen._world_shape(scale, default.mix)
    assert default.decoys() == gen.Decoys()
    calls = []
    monkeypatch.setattr(gen, "generate", lambda out, s, seed: calls.append((s, seed)) or out)
    generate_variant("unused", resolve("default", 5), 5)
    assert calls == [("default", 5)]  # the default preset is the default generator itself


def test_variant_code_reproduces_the_default_generator(tmp_path: Path) -> None:
    """With the default world's parameters the variant code writes the same bytes."""
    tiny = gen.SCALES["tiny"]
    variant = Variant(name="tiny", train_rows=tiny.train_rows, test_rows=tiny.test_rows,
                      n_banks=tiny.n_banks, anomaly_rate=tiny.anomaly_rate,
                      train_days=tiny.train_days, test_days=tiny.test_days)
    a = gen.generate(tmp_path / "a", "tiny", 11)
    b = generate_variant(tmp_path / "b", variant, 11, force_variant_code=True)
    for name in ("centralized/train/swift_transaction_train_dataset.csv",
                 "centralized/test/swift_transaction_test_dataset.csv",
                 "centralized/test/bank_dataset.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("name,seed", [*((n, 0) for n in PRESETS), ("random", 1),
                                       ("random", 2), ("random", 3)])
def test_variant_validates_and_loads(
    name: str, seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    variant = resolve(name, seed, SMALL)
    out = generate_variant(tmp_path / "d", variant, seed, force_variant_code=True)
    assert main(["data", "validate", "--data", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    train, accounts = loader.load_centralized(out, "train")
    test, _ = loader.load_centralized(out, "test")
    assert (len(train), len(test)) == (SMALL, SMALL // 2)
    assert accounts["Bank"].nunique() == variant.n_banks
    info = json.loads((out / gen.GENERATOR_INFO).read_text())
    assert Variant.from_json(info["variant"]) == variant  # reproducible from the record
    assert info["anomalous_rows_by_mechanism"]["train"]["anomalous_rows"] == train["Label"].sum()


def test_random_variant_is_deterministic_per_seed(tmp_path: Path) -> None:
    assert random_variant(4) == random_variant(4)
    assert random_variant(4) != random_variant(5)
    drawn = [random_variant(s) for s in range(30)]
    assert {v.interaction for v in drawn} == {"none", "amount", "corridor"}
    assert len({v.n_banks for v in drawn}) > 10
    name = "centralized/train/swift_transaction_train_dataset.csv"
    a = generate_variant(tmp_path / "a", resolve("random", 4, 3_000), 4)
    b = generate_variant(tmp_path / "b", resolve("random", 4, 3_000), 4)
    c = generate_variant(tmp_path / "c", resolve("random", 5, 3_000), 5)
    assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()


def test_flag_noise_flags_normal_accounts_and_drops_flags_of_mules() -> None:
    tx, mech, _, status, world, _ = _simulate(PRESETS["default"])
    ntx, nmech, _, nstatus, nworld, _ = _simulate(PRESETS["noisy_flags"])

    def ordinary_flags(w):
        ordinary = np.ones(len(w.flags), dtype=bool)
        ordinary[w.mules] = False
        return w.flags[ordinary & (w.flags != "00")], ordinary.sum()

    flags, n = ordinary_flags(world)
    nflags, nn = ordinary_flags(nworld)
    assert len(nflags) / nn > 4 * len(flags) / n
    # Blocking flags on ordinary accounts only where the variant asks for them.
    assert not np.isin(flags, BLOCK_FLAGS).any() and np.isin(nflags, BLOCK_FLAGS).mean() > 0.2
    flag = np.isin(status, ["flag_watch", "flag_block"])
    nflag = np.isin(nstatus, ["flag_watch", "flag_block"])
    assert nflag[nmech < 0].mean() > 3 * flag[mech < 0].mean()
    # Missing flags: some flagged-account anomalies look ok to their bank.
    assert (status[mech == MECH["flagged_account"]] != "ok").all()
    assert (nstatus[nmech == MECH["flagged_account"]] == "ok").mean() > 0.1


def test_amount_interaction_confines_status_explained_anomalies() -> None:
    variant = PRESETS["amount_interaction"]
    lo, hi = variant.amount_band
    tx, mech, kind, status, _, _ = _simulate(variant)
    log = _log_usd(tx)
    inside = (log >= lo - 1e-3) & (log <= hi + 1e-3)
    bank = _bank_side(mech)
    assert bank.sum() > 100 and inside[bank].all()
    decoys = kind > 0
    assert decoys.sum() > 10 and not inside[decoys].any()
    assert (status[decoys] != "ok").all() and (mech[decoys] < 0).all()
    # Without the interaction, the same anomalies have amounts everywhere.
    tx0, mech0, _, _, _, _ = _simulate(dataclasses.replace(variant, interaction="none"))
    log0 = _log_usd(tx0)
    assert not ((log0 >= lo) & (log0 <= hi))[_bank_side(mech0)].all()


def test_corridor_interaction_confines_status_explained_anomalies() -> None:
    variant = PRESETS["corridor_interaction"]
    tx, mech, kind, status, world, region = _simulate(variant)
    # The final receiver (the bank that holds the beneficiary) is the last leg's Receiver.
    last = tx.sort_values("Timestamp").groupby("UETR")["Receiver"].transform("last")
    allowed = set(world.bank_code[region["status_banks"]])
    assert 0 < len(allowed) < len(world.bank_code)
    in_region = last.isin(allowed).to_numpy()
    bank = _bank_side(mech)
    assert bank.sum() > 100 and in_region[bank].all()
    decoys = kind > 0
    assert decoys.sum() > 10 and not in_region[decoys].any()
    assert set(np.unique(kind[decoys])) == {1, 2, 3}  # every decoy kind occurs
    assert len(STATUS_DECOY_KINDS) == 3
    assert (status[decoys] != "ok").all()
    tx0, mech0, _, _, _, _ = _simulate(dataclasses.replace(variant, interaction="none"))
    last0 = tx0.sort_values("Timestamp").groupby("UETR")["Receiver"].transform("last")
    assert not last0.isin(allowed).to_numpy()[_bank_side(mech0)].all()


def test_bank_only_anomalies_lose_their_amount_trace() -> None:
    def median_z(variant: Variant) -> float:
        tx, mech, *_ = _simulate(variant)
        z = PNSFeaturizer().fit_transform(tx)[:, FEATURE_NAMES.index("amount_z")]
        return float(np.median(z[_bank_side(mech)]))

    traced = median_z(PRESETS["default"])
    traceless = median_z(dataclasses.replace(PRESETS["default"], bank_traceless_share=1.0))
    assert traced > 1.5 and traceless < 0.8


def test_bad_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="variant 'nope'"):
        resolve("nope", 0)
    with pytest.raises(DataError, match="corridor_share=2"):
        Variant(corridor_share=2).check()
    with pytest.raises(DataError, match="train_rows=10"):
        resolve("bank_only", 0, 10)
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    out = str(tmp_path / "x")
    assert main(["data", "generate", "--out", out, "--rows", "5000"]) == 2
    assert "--rows: only with --variant" in capsys.readouterr().err
    assert main(["data", "generate", "--out", out, "--variant", "random", "--scale", "tiny"]) == 2
    assert "give one" in capsys.readouterr().err


def test_cli_generate_random_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("federation.cli.COMMAND_MODULES", ("federation.data.cli",))
    out = tmp_path / "r"
    args = ["data", "generate", "--out", str(out), "--variant", "random", "--seed", "7",
            "--rows", "3000", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["variant"], result["train_rows"], result["test_rows"]) == ("random-7", 3000,
                                                                             1500)
    info = json.loads((out / gen.GENERATOR_INFO).read_text())
    assert Variant.from_json(info["variant"]) == random_variant(7, 3000)
    assert len(loader.load_transactions(out, "scenario03", "test")) == 1500
