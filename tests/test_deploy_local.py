"""A real deployment on loopback (deploy/run_local.sh): a SuperLink with TLS and SuperNode
authentication, three SuperNode processes (PNS + 2 banks) and two `flwr run`s (train,
then test on the saved state). Slow: each message starts a fresh ClientApp process."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest

from federation.transcript import read_ledger

REPO = Path(__file__).resolve().parents[1]
PARTIES = {"swift", "bank01", "bank02"}


@pytest.mark.slow
def test_local_deployment_trains_scores_and_leaves_ledgers(tmp_path: Path) -> None:
    out = tmp_path / "deployment"
    done = subprocess.run([str(REPO / "deploy" / "run_local.sh"), "--timeout", "840", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["tls"] and summary["supernode_auth"] and len(summary["run_ids"]) == 2
    assert set(summary["parties"]) == PARTIES

    # Nothing left running: no process still names this deployment's directory.
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left running: {left.stdout}"

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
