"""The PV4FAD protocol end to end through Flower's simulation runtime, on tiny data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federation.audit import load_run_ledger, privacy_checks
from federation.config import ProtocolConfig
from federation.simulate import simulate
from federation.transcript import read_ledger

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from federation.data.generate import generate

    return generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", 0)


@pytest.fixture(scope="module")
def private_run(tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("private")
    config = ProtocolConfig(epsilon=1.0, inference_epsilon=8.0, timeout_s=TIMEOUT)
    summary = simulate(run_dir, data_root=tiny_data, scenario="scenario01", config=config)
    return run_dir, summary


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
    assert list(summary["stages"]) == ["test"]
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


def test_failing_banks_are_named_and_the_run_degrades(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    bad = sorted((data / "scenario02" / "train" / "bank02").glob("*.csv"))[0]
    frame = pd.read_csv(bad, dtype=str)
    frame.drop(columns=["Flags"]).to_csv(bad, index=False)
    config = ProtocolConfig(inference_epsilon=8.0, timeout_s=TIMEOUT)
    summary = simulate(tmp_path / "run", data_root=data, scenario="scenario02", config=config,
                       faults={"bank03": "status"})
    failed = summary["stages"]["train"]["failed_parties"]
    assert set(failed) == {"bank02", "bank03"}
    assert "Flags" in failed["bank02"] and bad.name in failed["bank02"]
    assert "crashed in phase status" in failed["bank03"]
    results = summary["stages"]["train"]["results"]
    assert sorted(results["banks_in_table"]) == ["bank01", "bank04"]
    test = summary["stages"]["test"]["results"]
    assert 0 < test["rows_without_bank_answer"] < test["rows"]
    assert np.isfinite(summary["auprc"])


def _bank_status_call(run_dir: Path, data: Path, blob: bytes, run_id: str = "run-a"):
    """Deliver `blob` to bank01 as the PNS's linkage request and run its status phase."""
    from clients.bank import Bank
    from clients.party import NodeSettings, encode_peers
    from crypto.channel import E2EIdentity
    from federation.messages import Envelope

    parties = run_dir / "parties"
    peers = {p: E2EIdentity.load(parties / p / "identity.key").public_bytes()
             for p in ("swift", "bank01", "bank02")}
    meta = {**ProtocolConfig().to_record(), "phase": "status", "stage": "train",
            "run_id": run_id, "round": 0}
    settings = NodeSettings(role="bank", party_id="bank01", data_root=str(data),
                            scenario="scenario01", state_dir=str(tmp_state(run_dir)))
    envelope = Envelope(meta=meta, public=encode_peers(peers), sealed={"swift": blob})
    return Bank(settings, envelope).status()


def tmp_state(run_dir: Path) -> Path:
    state = run_dir / "tamper-bank01"
    if not state.exists():
        shutil.copytree(run_dir / "parties" / "bank01", state)
    return state


def _linkage_blob(run_dir: Path, sender_key: Path | None = None, run_id: str = "run-a") -> bytes:
    from crypto.channel import E2EIdentity, MessageHeader, seal
    from crypto.linkage import keyed_hashes, linkage_key
    from federation import wire

    parties = run_dir / "parties"
    pns = E2EIdentity.load(sender_key or parties / "swift" / "identity.key")
    bank_pub = E2EIdentity.load(parties / "bank01" / "identity.key").public_bytes()
    key = linkage_key(pns, bank_pub, "swift", "bank01", run_id)
    request = {c: keyed_hashes(["x", "y"], key, c)
               for c in ("Account", "Name", "Street", "CountryCityZip")}
    header = MessageHeader(run_id=run_id, phase="linkage", round=0, sender="swift",
                           receiver="bank01", message_type="train.linkage")
    return seal(pns, bank_pub, wire.pack(request), header)


def test_bank_accepts_an_authentic_request_once(private_run, tiny_data):
    from federation.errors import CryptoError

    run_dir, _ = private_run
    blob = _linkage_blob(run_dir)
    reply = _bank_status_call(run_dir, tiny_data, blob)
    assert "swift" in reply.sealed and reply.public["n_queries"] == 2
    with pytest.raises(CryptoError, match="replayed"):
        _bank_status_call(run_dir, tiny_data, blob)


def test_bank_rejects_tampered_replayed_and_miskeyed_requests(private_run, tiny_data, tmp_path):
    from crypto.channel import E2EIdentity
    from federation.errors import CryptoError

    run_dir, _ = private_run
    blob = bytearray(_linkage_blob(run_dir))
    blob[-20] ^= 0x01
    with pytest.raises(CryptoError, match="swift.*linkage.*authentication failed"):
        _bank_status_call(run_dir, tiny_data, bytes(blob))
    other_run = _linkage_blob(run_dir, run_id="run-b")
    with pytest.raises(CryptoError, match="header mismatch: run_id"):
        _bank_status_call(run_dir, tiny_data, other_run, run_id="run-a")
    stranger = tmp_path / "stranger.key"
    E2EIdentity.generate().save(stranger)
    with pytest.raises(CryptoError, match="authentication failed"):
        _bank_status_call(run_dir, tiny_data, _linkage_blob(run_dir, sender_key=stranger))


def _cli(*args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "federation.cli", *args],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_audit_cli_prints_one_json_object(private_run):
    import json

    run_dir, _ = private_run
    code, out, _ = _cli("audit", str(run_dir), "--json")
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
