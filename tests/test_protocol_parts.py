"""Pieces of the PV4FAD protocol that need no federation: wire format, ledger, audit
checks, the status-aware table and the run configuration."""

from __future__ import annotations

import numpy as np
import pytest

from federation import wire
from federation.audit import privacy_checks, traffic
from federation.config import ProtocolConfig
from federation.errors import ProtocolError, Pv4fadError
from federation.status_model import (
    ForestCalibration,
    StatusCells,
    StatusTable,
    capped_rows,
    combined_scores,
)
from federation.transcript import PayloadClass, TranscriptLedger, read_ledger


def test_wire_round_trip_keeps_arrays_bytes_and_json():
    fields = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": b"\x00\xff", "c": [1, "x"]}
    out = wire.unpack(wire.pack(fields))
    assert out["a"].dtype == np.int16 and out["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["b"] == b"\x00\xff" and out["c"] == [1, "x"]


@pytest.mark.parametrize("mangle", [lambda b: b[:-3], lambda b: b[:2], lambda b: b"\x00" * 8])
def test_wire_rejects_truncated_or_garbage(mangle):
    blob = wire.pack({"a": np.zeros(10)})
    with pytest.raises(ProtocolError, match="malformed status payload"):
        wire.unpack(mangle(blob), what="status payload")


def _ledger(tmp_path, party, entries):
    ledger = TranscriptLedger(party, "run1", tmp_path / f"{party}.jsonl")
    for direction, sender, receiver, fields in entries:
        ledger.record(direction=direction, round=0, phase="p", sender=sender,
                      receiver=receiver, message_type="train.p", nbytes=10, fields=fields)
    return ledger


def test_ledger_persists_and_reloads(tmp_path):
    _ledger(tmp_path, "swift", [("sent", "swift", "bank01", {"x": PayloadClass.KEYED_HASH})])
    again = TranscriptLedger("swift", "run1", tmp_path / "swift.jsonl")
    assert [e.fields for e in again.entries] == [{"x": "keyed_hash"}]
    assert len(list(read_ledger(tmp_path / "swift.jsonl"))) == 1


def test_privacy_checks_flag_each_kind_of_violation(tmp_path):
    clean = _ledger(tmp_path, "swift", [
        ("received", "bank01", "swift", {"status": PayloadClass.CIPHERTEXT}),
        ("received", "coordinator", "swift", {"meta": PayloadClass.PUBLIC}),
    ]).entries
    assert not any(privacy_checks(clean).values())
    leaky = _ledger(tmp_path, "swift2", [
        ("received", "bank01", "swift", {"status": PayloadClass.PLAINTEXT}),
    ]).entries
    leaky = [e.__class__(**{**e.__dict__, "recorder": "swift"}) for e in leaky]
    checks = privacy_checks(leaky)
    assert checks["no_plaintext_crosses_a_boundary"]
    assert checks["pns_receives_only_protected_bank_values"]
    masked = _ledger(tmp_path, "coordinator", [
        ("received", "bank01", "coordinator", {"table": PayloadClass.MASKED}),
    ]).entries
    assert privacy_checks(masked)["coordinator_receives_nothing_it_can_read"]
    assert traffic(clean)["swift"]["received"] == 20


def _unexplained_anomalies_at_high_amounts(rng, n=20_000):
    """Column 0: an amount; column 1: noise. Anomalies at amount > 2 get no forest votes
    (the forest cannot explain them); the others are explained."""
    features = np.column_stack([rng.normal(size=n), rng.normal(size=n)])
    labels = (rng.random(n) < 0.02).astype(int)
    votes = np.where(features[:, 0] > 2.0, 0.0, 0.6) * labels
    labels[(features[:, 0] > 2.0) & (rng.random(n) < 0.3)] = 1
    return features, labels, votes


def test_status_cells_split_off_the_unexplained_anomalies():
    features, labels, votes = _unexplained_anomalies_at_high_amounts(np.random.default_rng(0))
    cells = StatusCells(features, labels, votes, depth=1, seed=0)
    assigned = cells(features)
    assert set(np.unique(assigned)) == {0, 1}
    high = assigned[features[:, 0] > 2.1]
    assert (high == high[0]).all() and (assigned[features[:, 0] < 1.5] != high[0]).all()
    assert np.bincount(assigned).min() >= 0.01 * len(labels)  # cells stay large


def test_status_cells_fall_back_to_one_cell():
    features, labels, votes = _unexplained_anomalies_at_high_amounts(np.random.default_rng(1))
    assert np.all(StatusCells(features, labels, votes, depth=0, seed=0)(features) == 0)
    explained = np.ones(len(labels))  # every anomaly has the forest's votes
    assert np.all(StatusCells(features, labels, explained, depth=2, seed=0)(features) == 0)


def test_combined_score_adds_status_evidence_to_the_forest_score():
    # One cell; 1000 ok rows (2 positive) and 20 "missing" rows (15 positive).
    cells = np.zeros(1020, dtype=int)
    labels = np.array([1] * 2 + [0] * 998 + [1] * 15 + [0] * 5)
    noisy = np.zeros((1, 2, 1))
    noisy[0, :, 0] = [5, 15]
    table = StatusTable.from_noisy_counts(noisy, cells, labels, np.arange(1020))
    ratio = table.status_log_ratio()
    assert ratio[0, 1] > 3.0 > 0.0 > ratio[0, 0]  # "missing" multiplies the odds, ok lowers
    forest = table.forest_log_odds(np.array([0.0, 0.0, 0.5]), np.zeros(3, dtype=int))
    scores = combined_scores(forest, np.array([ratio[0, 0], ratio[0, 1], ratio[0, 0]]))
    # A low forest score with a "missing" status outranks it with "ok"; the forest's own
    # evidence still counts (0.5 with "ok" outranks 0 with "ok").
    assert scores[1] > scores[0] and scores[2] > scores[0]
    assert np.all((scores > 0) & (scores < 1))


def test_forest_calibration_maps_scores_to_rates_and_keeps_the_ranking():
    rng = np.random.default_rng(3)
    scores = rng.random(20_000)
    labels = (rng.random(20_000) < scores**3).astype(int)  # true rate: score cubed
    calibrated = ForestCalibration(scores, labels)(np.array([0.2, 0.5, 0.9, 0.95]))
    assert calibrated == pytest.approx([0.008, 0.125, 0.729, 0.857], abs=0.05)
    assert np.all(np.diff(calibrated) > 0)
    same_plateau = ForestCalibration(scores, labels)(np.array([0.5, 0.5 + 1e-9]))
    assert same_plateau[1] > same_plateau[0]


def test_capped_rows_keeps_at_most_cap_rows_per_account():
    rows = np.arange(10)
    accounts = np.array(list("aaaaabbbcd"))
    kept = capped_rows(rows, accounts, 2, np.random.default_rng(1))
    assert sorted(np.unique(accounts[kept], return_counts=True)[1]) == [1, 1, 2, 2]


def test_status_table_recovers_rates_from_exact_counts():
    # 2 cells; rows: cell 0 all ok and negative; cell 1 status 1 ("missing") all positive.
    cells = np.array([0] * 100 + [1] * 20)
    labels = np.array([0] * 100 + [1] * 10 + [0] * 10)
    noisy = np.zeros((2, 2, 1))
    noisy[1, 1, 0] = 10  # the 10 positives in cell 1 are "missing"
    table = StatusTable.from_noisy_counts(noisy, cells, labels, np.arange(120))
    t = table.table()
    assert t[1, 1] > 0.8 and t[1, 0] < 0.2
    assert table.fallback[1] == pytest.approx(10 / 21, rel=1e-3)
    # A reported "missing" under randomized response is weaker evidence than a true one.
    reported = table.table(reported_epsilon=1.0)
    assert t[1, 0] < reported[1, 1] < t[1, 1]
    again = StatusTable.from_json(table.to_json())
    assert np.array_equal(again.table(), t)


def test_config_round_trips_and_rejects_bad_values():
    cfg = ProtocolConfig(epsilon=0.5, inference_epsilon=None)
    assert ProtocolConfig.from_record(cfg.to_record()) == cfg
    with pytest.raises(Pv4fadError, match="--epsilon"):
        ProtocolConfig(epsilon=0)
    with pytest.raises(Pv4fadError, match="--status-detail"):
        ProtocolConfig(status_detail="some")
    with pytest.raises(Pv4fadError, match="--cell-depth"):
        ProtocolConfig(cell_depth=4)


def test_coarse_status_releases_one_count_per_changed_record():
    from federation.features import STATUS_NAMES, reported_status
    from server.privacy import training_noise

    full = np.arange(len(STATUS_NAMES), dtype=np.int8)
    assert reported_status(full, "coarse").tolist() == [0, 1, 1, 1, 1]
    assert reported_status(full, "full").tolist() == full.tolist()
    sigma_coarse, sens_coarse = training_noise(ProtocolConfig(status_detail="coarse"))
    sigma_full, sens_full = training_noise(ProtocolConfig(status_detail="full"))
    assert sens_coarse == 1.0 and sens_full == pytest.approx(np.sqrt(2.0))
    assert sigma_full == pytest.approx(np.sqrt(2.0) * sigma_coarse)
