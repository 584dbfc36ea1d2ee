"""SISA over Flower: shards on simulated SuperNodes, a deletion queued while its host is
down and applied when it returns, and the result equal to training without the ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from federation.sisa.data import load_dataset
from federation.sisa.partition import deal_partitions
from federation.transcript import read_ledger
from server.sisa import LocalTransport, SisaConfig, SisaCoordinator
from server.sisa_flower import run_sisa_federation

CONFIG = SisaConfig(dataset="german", shards=3, slices=3, clients=2, learner="sgd", epochs=2)


def test_forget_over_flower_with_a_host_down(tmp_path: Path) -> None:
    data = load_dataset("german")
    rows = data.features[data.split(CONFIG.split_seed)["test"]]
    run = tmp_path / "run"
    deal_partitions(run, CONFIG)
    deal_partitions(tmp_path / "ref", CONFIG)

    def train(coordinator: SisaCoordinator) -> dict[str, Any]:
        coordinator.train(CONFIG)
        return coordinator.registry

    registry = run_sisa_federation(run, CONFIG.clients, train)
    assert registry["hosts"] == {"0": "client00", "1": "client01", "2": "client00"}
    ids = registry["shard_ids"]["1"][:2] + registry["shard_ids"]["2"][:1]

    def forget(coordinator: SisaCoordinator) -> tuple[dict[str, Any], list[int], np.ndarray]:
        report = coordinator.forget(ids, query="calib")  # votes on calib come back
        fresh = coordinator.predict(coordinator.owned("calib").features)
        return report, fresh.shards, fresh.proba[:, fresh.shards.index(2)]

    report, used, fresh = run_sisa_federation(run, CONFIG.clients, forget, down=["client01"])
    assert [a["shard"] for a in report["applied"]] == [2]
    assert np.array_equal(report["applied"][0]["query_proba"], fresh)
    assert [(q["shard"], q["ids"]) for q in report["queued"]] == [(1, ids[:2])]
    assert used == [0, 2]  # shard 1 is down and still holds ids it must forget

    def come_back(coordinator: SisaCoordinator) -> tuple[list[dict[str, Any]], np.ndarray]:
        return coordinator.flush_pending(), coordinator.predict(rows).proba

    applied, proba = run_sisa_federation(run, CONFIG.clients, come_back)
    assert [(a["shard"], a["forgotten"]) for a in applied] == [(1, ids[:2])]

    reference = SisaCoordinator(tmp_path / "ref", LocalTransport(tmp_path / "ref", CONFIG.clients))
    reference.train(CONFIG, exclude=ids)
    assert np.array_equal(proba, reference.predict(rows).proba)

    # Both sides recorded every message; only the prediction exchange carries plaintext.
    coordinator_view = list(read_ledger(run / "coordinator/transcript.jsonl"))
    host_views = [e for host in ("client00", "client01")
                  for e in read_ledger(run / "clients" / host / "transcript.jsonl")]
    assert len(coordinator_view) == len(host_views) > 0
    plaintext = {(e.phase, f) for e in coordinator_view + host_views
                 for f, c in e.fields.items() if c == "plaintext"}
    assert plaintext == {("predict", "features"), ("predict", "proba"),
                         ("forget", "features"), ("forget", "proba")}
    # A forget without query rows carries none: no plaintext field is recorded for it.
    plain_forgets = [e for e in coordinator_view if e.phase == "forget"
                     and "features" not in e.fields and "proba" not in e.fields]
    assert plain_forgets  # the queued deletion applied by flush_pending
