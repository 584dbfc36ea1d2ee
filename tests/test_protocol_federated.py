"""The PV4FAD protocol end to end through Flower's simulation runtime, on tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federation.audit import load_run_ledger, privacy_checks
from federation.config import ProtocolConfig, training_noise
from federation.simulate import outcome, simulate
from federation.transcript import read_ledger

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from federation.data.generate import generate

    return generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", 0)


# What the default simulate path did besides its results: calls of Flower's deprecated
# `run_simulation`, Python warnings and Flower's log records (see the private_run fixture).
OBSERVED: dict[str, list] = {}


@pytest.fixture(scope="module")
def private_run(tiny_data, tmp_path_factory):
    import importlib
    import logging
    import warnings

    # Imported before observing: importing Flower makes its CLI library (typer) warn
    # about click's API, third-party noise that Python's default filters hide anyway.
    import flwr.simulation

    # The module (flwr.simulation's attribute of that name is the function itself).
    flower_simulation = importlib.import_module("flwr.simulation.run_simulation")

    run_dir = tmp_path_factory.mktemp("private")
    config = ProtocolConfig(epsilon=1.0, inference_epsilon=8.0, timeout_s=TIMEOUT)
    calls, records = [], []
    deprecated = flower_simulation.run_simulation

    def counted(*args, **kwargs):
        calls.append(args)
        return deprecated(*args, **kwargs)

    handler = logging.Handler()
    handler.emit = records.append
    flower_log = logging.getLogger("flwr")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        patch.setattr(flower_simulation, "run_simulation", counted)
        patch.setattr(flwr.simulation, "run_simulation", counted)
        flower_log.addHandler(handler)
        try:
            summary = simulate(run_dir, data_root=tiny_data, scenario="scenario01",
                               config=config)
        finally:
            flower_log.removeHandler(handler)
    OBSERVED.update(calls=calls, warnings=list(seen), records=records)
    return run_dir, summary


def test_the_default_path_uses_no_deprecated_flower_api(private_run):
    """`pv4fad simulate` runs Flower's simulation engine without its deprecated wrapper:
    no call, no deprecation notice in Flower's log, no DeprecationWarning."""
    assert OBSERVED["calls"] == []
    notices = [r.getMessage() for r in OBSERVED["records"] if "DEPRECATED" in r.getMessage()]
    assert notices == []
    deprecations = [f"{w.filename}:{w.lineno}: {w.message}" for w in OBSERVED["warnings"]
                    if issubclass(w.category, DeprecationWarning)]
    assert deprecations == []


def test_private_run_writes_predictions_summary_and_ledger(private_run, tiny_data):
    run_dir, summary = private_run
    predictions = pd.read_csv(run_dir / "predictions.csv")
    test_ids = pd.read_csv(next((tiny_data / "scenario01" / "test" / "swift").glob("*.csv")),
                           usecols=["MessageId"])
    assert list(predictions.columns) == ["MessageId", "Score"]
    assert set(predictions["MessageId"]) == set(test_ids["MessageId"])
    assert summary["training_epsilon"] == pytest.approx(1.0, abs=1e-3)
    assert summary["inference_epsilon_per_account"] >= 8.0 - 1e-6
    for party in ("swift", "bank01", "bank02"):
        assert summary["traffic_bytes"][party]["sent"] > 0
    assert set(summary["stages"]["train"]["phase_seconds"]) >= {"setup", "noise", "aggregate"}
    assert all(s["failed_parties"] == {} for s in summary["stages"].values())
    # The status model weighs the released counts against the noise they carry.
    table = json.loads((run_dir / "parties" / "swift" / "status_table.json").read_text())
    assert table["noise_variance"] == pytest.approx(
        training_noise(ProtocolConfig(epsilon=1.0)).variance)


def test_ledger_shows_no_boundary_violation(private_run):
    run_dir, summary = private_run
    entries = load_run_ledger(run_dir)
    assert not any(privacy_checks(entries).values())
    assert summary["privacy_checks"] == {k: 0 for k in summary["privacy_checks"]}
    # Both ends record every party-to-party payload, with the same size and field classes.
    def view(direction):
        return {(e.message_type, e.sender, e.receiver, e.nbytes, tuple(sorted(e.fields.items())))
                for e in entries
                if e.direction == direction and "coordinator" not in (e.sender, e.receiver)}

    sent, got = view("sent"), view("received")
    assert sent and sent == got
    releases = [e for e in entries if e.direction == "release"]
    assert {e.recorder for e in releases} == {"swift", "bank01", "bank02"}


def test_test_stage_reruns_from_saved_state(private_run):
    run_dir, first = private_run
    model = run_dir / "parties" / "swift" / "pns_model.pkl"
    before = model.stat().st_mtime_ns
    summary = simulate(run_dir, stages=("test",))
    # The summary of a test stage alone still describes the training it scored.
    assert list(summary["stages"]) == ["train", "test"]
    assert summary["stages"]["train"]["run_id"] == first["stages"]["train"]["run_id"]
    assert summary["training_epsilon"] == first["training_epsilon"]
    assert model.stat().st_mtime_ns == before
    # The run's ledger is its training stage plus the new test stage; the first test
    # stage stays in the parties' own ledgers only.
    runs = {e.run for e in load_run_ledger(run_dir)}
    assert runs == {first["stages"]["train"]["run_id"], summary["stages"]["test"]["run_id"]}
    party_runs = {e.run for e in read_ledger(run_dir / "parties" / "swift" / "ledger.jsonl")}
    assert first["stages"]["test"]["run_id"] in party_runs
    assert summary["stages"]["test"]["failed_parties"] == {}
    assert len(pd.read_csv(run_dir / "predictions.csv")) == summary["stages"]["test"][
        "results"]["rows"]


def test_label_mode_gives_the_pns_exactly_the_thresholded_scores(private_run):
    """On the same trained state (and the banks' same kept answers), label mode's flags
    are the score mode's scores above the threshold; the PNS received no status."""
    run_dir, first = private_run
    scores = pd.read_csv(run_dir / "predictions.csv")
    summary = simulate(run_dir, stages=("test",), config=ProtocolConfig(
        inference_epsilon=8.0, timeout_s=TIMEOUT, inference_mode="labels",
        label_threshold=0.3))
    flags = pd.read_csv(run_dir / "predictions.csv")
    assert list(flags.columns) == ["MessageId", "Flag"]
    merged = scores.merge(flags, on="MessageId")
    clear = (merged["Score"] - 0.3).abs() > 1e-3
    assert (merged["Flag"][clear] == (merged["Score"][clear] > 0.3)).all()
    results = summary["stages"]["test"]["results"]
    assert 0 < results["precision"] <= 1 and 0 < results["recall"] <= 1
    entries = load_run_ledger(run_dir)
    assert not any(privacy_checks(entries).values())
    assert not [e for e in entries if e.message_type == "test.status"]
    assert {e.recorder for e in entries if e.direction == "exchanged"} == {
        "swift", "bank01", "bank02"}
    assert summary["traffic_bytes"]["swift"]["exchanged"] > 0


def test_encrypted_protocol_computes_what_the_plaintext_pipeline_computes(tiny_data, tmp_path):
    """With negligible DP noise and no output privacy, CKKS + masks + secure aggregation
    give the plaintext pipeline's scores; the audit flags the plaintext run."""
    config = ProtocolConfig(epsilon=1e4, inference_epsilon=None, timeout_s=TIMEOUT)
    private = simulate(tmp_path / "private", data_root=tiny_data, scenario="scenario01",
                       config=config)
    plain = simulate(tmp_path / "plain", data_root=tiny_data, scenario="scenario01",
                     config=ProtocolConfig(**{**config.__dict__, "plaintext": True}))
    a = pd.read_csv(tmp_path / "private" / "predictions.csv")
    b = pd.read_csv(tmp_path / "plain" / "predictions.csv")
    assert a["MessageId"].tolist() == b["MessageId"].tolist()
    assert np.abs(a["Score"] - b["Score"]).max() < 0.02
    assert private["auprc"] == pytest.approx(plain["auprc"], abs=0.01)
    assert private["privacy_checks"]["coordinator_receives_nothing_it_can_read"] == 0
    assert plain["privacy_checks"]["coordinator_receives_nothing_it_can_read"] > 0
    assert plain["privacy_checks"]["no_plaintext_crosses_a_boundary"] > 0
    assert outcome(plain, tmp_path / "plain", allow_degraded=True) == 1  # the CLI's exit code
    # What --seed fixes (README.md): the PNS's own model, bit for bit, across two runs;
    # the banks' privacy noise is fresh in each.
    assert private["auprc_pns_only"] == plain["auprc_pns_only"]


def test_a_bad_bank_reply_costs_only_that_bank(tiny_data, tmp_path):
    """A bank whose training reply arrives corrupted is named; the others' counts are
    summed in a new round without it (fresh noise and masks); the run goes on."""
    config = ProtocolConfig(inference_epsilon=8.0, timeout_s=TIMEOUT)
    summary = simulate(tmp_path / "run", data_root=tiny_data, scenario="scenario02",
                       config=config, faults={"bank02": "noise:garbage"})
    train = summary["stages"]["train"]
    assert set(train["failed_parties"]) == {"bank02"}
    assert "reply refused by the PNS" in train["failed_parties"]["bank02"]
    assert "authentication failed" in train["failed_parties"]["bank02"]
    assert sorted(train["results"]["banks_in_table"]) == ["bank01", "bank03", "bank04"]
    assert np.isfinite(summary["auprc"])


def test_failing_banks_are_named_and_the_run_degrades(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    bad = sorted((data / "scenario02" / "train" / "bank02").glob("*.csv"))[0]
    frame = pd.read_csv(bad, dtype=str)
    frame.drop(columns=["Flags"]).to_csv(bad, index=False)
    config = ProtocolConfig(inference_epsilon=8.0, timeout_s=TIMEOUT)
    summary = simulate(tmp_path / "run", data_root=data, scenario="scenario02", config=config,
                       faults={"bank03": "noise", "bank04": "status"})
    failed = summary["stages"]["train"]["failed_parties"]
    assert set(failed) == {"bank02", "bank03"}
    assert "Flags" in failed["bank02"] and bad.name in failed["bank02"]
    assert "crashed in phase noise" in failed["bank03"]
    results = summary["stages"]["train"]["results"]
    assert sorted(results["banks_in_table"]) == ["bank01", "bank04"]
    assert set(summary["stages"]["test"]["failed_parties"]) == {"bank04"}
    test = summary["stages"]["test"]["results"]
    assert 0 < test["rows_without_bank_answer"] < test["rows"]
    assert np.isfinite(summary["auprc"])
    assert outcome(summary, tmp_path / "run", allow_degraded=False) == 3
    assert outcome(summary, tmp_path / "run", allow_degraded=True) == 0


def _cli(*args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "federation.cli", *args],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_audit_cli_prints_one_json_object(private_run):
    import json

    run_dir, _ = private_run
    code, out, _ = _cli("audit", "--out", str(run_dir), "--json")
    report = json.loads(out)
    assert code == 0 and not any(report["checks"].values())
    assert report["traffic"]["swift"]["received"] > 0


def test_simulate_cli_names_bad_input_in_one_line(tiny_data, tmp_path):
    code, _, err = _cli("simulate", "--data", str(tiny_data), "--scenario", "nope",
                        "--out", str(tmp_path / "x"))
    assert code == 2 and "scenario 'nope'" in err and "scenarios.txt" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _cli("simulate", "--stage", "test", "--out", str(tmp_path / "empty"))
    assert code == 2 and "no trained run" in err


def test_audit_merges_party_ledgers_as_a_deployment_would(private_run):
    import json

    run_dir, _ = private_run
    ledgers = [str(p) for p in sorted((run_dir / "parties").glob("*/ledger.jsonl"))]
    code, out, _ = _cli("audit", "--ledger", *ledgers, "--json")
    assert code == 0 and set(json.loads(out)["traffic"]) >= {"swift", "bank01", "bank02"}
    code, _, err = _cli("audit", "--ledger", str(run_dir / "nope.jsonl"))
    assert code == 2 and "nope.jsonl" in err
