"""A real deployment on loopback (deploy/run_local.sh): a SuperLink with TLS and SuperNode
authentication, three SuperNode processes (PNS + 2 banks) and two `flwr run`s (train,
then test on the saved state). Slow: each message starts a fresh ClientApp process."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import threading
from pathlib import Path

import pytest

from federation.transcript import read_ledger

REPO = Path(__file__).resolve().parents[1]
PARTIES = {"swift", "bank01", "bank02"}


@pytest.mark.slow
def test_local_deployment_trains_scores_and_leaves_ledgers(tmp_path: Path) -> None:
    out = tmp_path / "deployment"
    proc = subprocess.Popen([str(REPO / "deploy" / "run_local.sh"), "--deadline", "840", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM lets the script stop every process it started
        proc.communicate(timeout=60)
        raise
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["tls"] and summary["supernode_auth"] and len(summary["run_ids"]) == 2
    assert set(summary["run_seconds"]) == {"train", "test"}
    assert set(summary["parties"]) == PARTIES

    assert _left_running(out, stderr) == []

    run = out / "run"
    with (run / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    from federation.data.loader import load_transactions

    expected = load_transactions(out / "data", summary["scenario"], "test")
    assert {r["MessageId"] for r in rows} == set(expected["MessageId"].astype(str))
    assert all(math.isfinite(float(r["Score"])) for r in rows)

    # Each party kept its own ledger in its own state directory, for both stages.
    for party in PARTIES:
        entries = list(read_ledger(run / "parties" / party / "ledger.jsonl"))
        stages = {e.message_type.split(".")[0] for e in entries if e.direction != "release"}
        assert stages == {"train", "test"}
        assert all(party in (e.sender, e.receiver) for e in entries
                   if e.direction in ("sent", "received"))
    merged = list(read_ledger(run / "ledger.jsonl"))
    assert {e.recorder for e in merged} == PARTIES | {"coordinator"}
    audit = json.loads((out / "audit.json").read_text())
    assert audit["traffic"] and audit["releases"]
    assert summary["audit_checks_pass"], audit["checks"]


def _left_running(out: Path, stderr: str) -> list[str]:
    """Processes that still name the deployment's directory or its SuperLink address
    (the SuperLink's SuperExec and ServerApp children name only the address)."""
    patterns = [str(out)] + re.findall(r"SuperLink up on (127\.0\.0\.1:\d+)", stderr)
    found = []
    for pattern in patterns:
        done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
        found += [line for line in done.stdout.splitlines() if "pgrep" not in line]
    return found


def test_local_deployment_stops_every_process_when_interrupted(tmp_path: Path) -> None:
    """SIGTERM while a run is in flight: the launcher stops the SuperLink, the SuperNodes
    and their children, and exits non-zero."""
    from federation.data.generate import generate

    generate(tmp_path / "data", "tiny", 0)  # the launcher validates the data first
    out = tmp_path / "deployment"
    proc = subprocess.Popen([str(REPO / "deploy" / "run_local.sh"), "--insecure", "--data",
                             str(tmp_path / "data"), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.terminate)
    watchdog.start()
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "submitting the train run" in line:
                break
        proc.terminate()
        _, rest = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
    stderr = "".join(seen) + rest
    assert "submitting the train run" in stderr, stderr[-2000:]
    assert proc.returncode != 0
    assert _left_running(out, stderr) == []
