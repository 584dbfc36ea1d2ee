"""Pieces of the PV4FAD protocol that need no federation: wire format, ledger, audit
checks, the status-aware table and the run configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from federation import wire
from federation.audit import privacy_checks, traffic
from federation.config import ProtocolConfig
from federation.errors import ProtocolError, Pv4fadError
from federation.status_model import (
    EVIDENCE_BOUND,
    EXPLAINED,
    NORMAL,
    UNEXPLAINED,
    ForestCalibration,
    StatusCells,
    StatusTable,
    anomaly_classes,
    beneficiary_keys,
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
    labels[(features[:, 0] > 2.0) & (rng.random(n) < 0.3)] = 1
    votes = np.where(features[:, 0] > 2.0, 0.0, 0.6)
    return features, anomaly_classes(labels, votes)


def test_anomaly_classes_split_anomalies_by_the_forest_votes():
    classes = anomaly_classes(np.array([0, 0, 1, 1, 1]), np.array([0.9, 0.0, 0.3, 0.05, 0.01]))
    assert classes.tolist() == [NORMAL, NORMAL, EXPLAINED, EXPLAINED, UNEXPLAINED]


def test_status_cells_split_off_the_unexplained_anomalies():
    features, classes = _unexplained_anomalies_at_high_amounts(np.random.default_rng(0))
    cells = StatusCells(features, classes, depth=1, seed=0)
    assigned = cells(features)
    assert set(np.unique(assigned)) == {0, 1}
    high = assigned[features[:, 0] > 2.1]
    assert (high == high[0]).all() and (assigned[features[:, 0] < 1.5] != high[0]).all()
    assert np.bincount(assigned).min() >= 0.01 * len(classes)  # cells stay large


def test_status_cells_fall_back_to_one_cell():
    features, classes = _unexplained_anomalies_at_high_amounts(np.random.default_rng(1))
    assert np.all(StatusCells(features, classes, depth=0, seed=0)(features) == 0)
    explained = np.where(classes == UNEXPLAINED, EXPLAINED, classes)
    assert np.all(StatusCells(features, explained, depth=2, seed=0)(features) == 0)


def _one_cell_table():
    """One cell, statuses ok / not ok. 10 000 normal rows (10 not ok); 100 explained
    anomalies (5 not ok); 100 unexplained anomalies (95 not ok)."""
    classes = np.repeat([NORMAL, EXPLAINED, UNEXPLAINED], [10_000, 100, 100])
    noisy = np.array([[[10.0], [5.0], [95.0]]])
    cells = np.zeros(len(classes), dtype=int)
    return StatusTable.from_noisy_counts(noisy, cells, classes, np.arange(len(classes)))


def test_status_evidence_follows_the_class_the_forest_expects():
    table = _one_cell_table()
    cells = np.zeros(3, dtype=int)
    # P(explained), P(unexplained): an unexplained-looking row, an explained-looking row
    # with the same total anomaly probability, and a row that looks normal.
    scores = np.array([[0.001, 0.02], [0.02, 0.001], [0.0005, 0.0005]])
    evidence = table.status_evidence(scores, cells)
    forest = table.forest_log_odds(scores, cells)
    assert forest[0] == pytest.approx(forest[1])
    # "Not ok" raises every row, much more where the anomalies the forest expects are the
    # ones a bank explains; "ok" lowers that row most.
    assert evidence[0, 1] > evidence[1, 1] + 2.0 > 2.0
    assert evidence[0, 0] < evidence[1, 0] < 0.1
    scores_final = combined_scores(forest[:, None], evidence)
    assert scores_final[0, 1] > scores_final[1, 1] > scores_final[2, 1] > scores_final[2, 0]
    assert np.all((scores_final > 0) & (scores_final < 1))
    assert np.abs(evidence).max() <= EVIDENCE_BOUND


def test_forest_calibration_maps_scores_to_rates_and_keeps_the_ranking():
    rng = np.random.default_rng(3)
    raw = rng.random((20_000, 3))
    # True rates: explained = score cubed (column 1); unexplained = half its score (column 2).
    u = rng.random(20_000)
    classes = np.where(u < raw[:, 1] ** 3, EXPLAINED,
                       np.where(u > 1 - raw[:, 2] / 2, UNEXPLAINED, NORMAL))
    calibration = ForestCalibration(raw, classes)
    grid = np.array([0.2, 0.5, 0.9, 0.95])
    probe = np.column_stack([1 - grid, grid, grid])
    calibrated = calibration(probe)
    assert calibrated[:, 0] == pytest.approx(grid**3, abs=0.05)
    assert calibrated[:, 1] == pytest.approx(grid / 2, abs=0.05)
    assert np.all(np.diff(calibrated, axis=0) > 0)
    plateau = calibration(np.array([[0.5, 0.5, 0.5], [0.5, 0.5 + 1e-9, 0.5 + 1e-9]]))
    assert np.all(plateau[1] > plateau[0])


def test_capped_rows_keeps_at_most_cap_rows_per_account():
    rows = np.arange(10)
    accounts = np.array(list("aaaaabbbcd"))
    kept = capped_rows(rows, accounts, 2, np.random.default_rng(1))
    assert sorted(np.unique(accounts[kept], return_counts=True)[1]) == [1, 1, 2, 2]


def test_beneficiary_keys_equal_exactly_where_bank_and_account_are():
    banks = pd.Series(["B1", "B1", "B2", "B1", "B2"], dtype=pd.StringDtype("pyarrow"))
    accounts = np.array(["a", "b", "a", "a", "a"], dtype=object)
    keys = beneficiary_keys(banks, accounts)
    assert keys.dtype == np.int64
    assert [[int(keys[i] == keys[j]) for j in range(5)] for i in range(5)] == [
        [1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [1, 0, 0, 1, 0], [0, 0, 1, 0, 1]]


def test_status_table_recovers_rates_from_exact_counts():
    table = _one_cell_table()
    t = table.table()
    assert t[0, EXPLAINED, 1] == pytest.approx(5.5 / 101) and t[0, UNEXPLAINED, 1] > 0.9
    # One cell: between its own rate and the pooled one with its half pseudo-row.
    assert 10 / 10_000 < t[0, NORMAL, 1] < 10.5 / 10_001
    assert table.class_rates[0] == pytest.approx([10_000 / 10_201, 100 / 10_201,
                                                  100 / 10_201], rel=1e-3)
    again = StatusTable.from_json(table.to_json())
    assert np.array_equal(again.table(), t)
    noised = StatusTable(table.counts, table.class_rates, noise_variance=20.0)
    assert StatusTable.from_json(noised.to_json()).noise_variance == 20.0


def test_normal_status_rate_is_pooled_as_far_as_the_noise_requires():
    # Two cells of 10 000 normal rows with 3 and 17 "not ok"; the anomaly classes are
    # empty. Exact counts: the cells keep most of their own difference. DP noise of
    # variance 400 on each count (standard deviation 20, above both counts) pulls them
    # almost onto the pooled rate 20 / 20 000.
    classes = np.zeros(20_000, dtype=int)
    cells = np.repeat([0, 1], 10_000)
    noisy = np.array([[[3.0], [0.0], [0.0]], [[17.0], [0.0], [0.0]]])
    exact, noised = (StatusTable.from_noisy_counts(noisy, cells, classes, np.arange(20_000),
                                                   variance).table()
                     for variance in (0.0, 400.0))
    assert 3 / 10_000 < exact[0, NORMAL, 1] < exact[1, NORMAL, 1] < 17 / 10_000
    assert exact[1, NORMAL, 1] - exact[0, NORMAL, 1] > 0.6 * 14 / 10_000
    assert noised[1, NORMAL, 1] - noised[0, NORMAL, 1] < 0.1 * 14 / 10_000
    assert noised[0, NORMAL, 1] == pytest.approx(20 / 20_000, rel=0.1)


def test_status_evidence_keeps_a_cell_where_not_ok_is_rare_among_normal_rows():
    # The status explains anomalies only in cell 0 (an amount band): there 10 of 20 000
    # normal rows are "not ok" against 200 of 40 000 in cell 1, where non-ok statuses are
    # ordinary. The anomalies are "not ok" in both cells. A row's "not ok" must count for
    # nearly log(5 / 0.5) more in cell 0 than in cell 1; a rate pooled over the cells with
    # a fixed 10 000 pseudo-rows cut that difference to about half.
    n0, n1 = 20_000, 40_000
    classes = np.concatenate([np.zeros(n0 + n1, dtype=int), [UNEXPLAINED] * 100])
    cells = np.concatenate([np.repeat([0, 1], [n0, n1]), [0] * 50 + [1] * 50])
    noisy = np.array([[[10.0], [0.0], [45.0]], [[200.0], [0.0], [45.0]]])
    table = StatusTable.from_noisy_counts(noisy, cells, classes, np.arange(len(classes)),
                                          noise_variance=20.0)
    assert table.table()[0, NORMAL, 1] == pytest.approx(10 / n0, rel=0.3)
    scores = np.array([[0.0, 0.01], [0.0, 0.01]])
    evidence = table.status_evidence(scores, np.array([0, 1]))
    assert 0.85 * np.log(10.0) < evidence[0, 1] - evidence[1, 1] < np.log(10.0)


def test_config_round_trips_and_rejects_bad_values():
    cfg = ProtocolConfig(epsilon=0.5, inference_epsilon=None)
    assert ProtocolConfig.from_record(cfg.to_record()) == cfg
    with pytest.raises(Pv4fadError, match="--epsilon"):
        ProtocolConfig(epsilon=0)
    with pytest.raises(Pv4fadError, match="--status-detail"):
        ProtocolConfig(status_detail="some")
    with pytest.raises(Pv4fadError, match="--cell-depth"):
        ProtocolConfig(cell_depth=4)
    with pytest.raises(Pv4fadError, match="--inference-mode"):
        ProtocolConfig(inference_mode="bits")
    with pytest.raises(Pv4fadError, match="--label-threshold"):
        ProtocolConfig(label_threshold=1.0)


def test_coarse_status_releases_one_count_per_changed_record():
    from federation.config import training_noise
    from federation.features import STATUS_NAMES, reported_status

    full = np.arange(len(STATUS_NAMES), dtype=np.int8)
    assert reported_status(full, "coarse").tolist() == [0, 1, 1, 1, 1]
    assert reported_status(full, "full").tolist() == full.tolist()
    coarse = training_noise(ProtocolConfig(status_detail="coarse"))
    full_noise = training_noise(ProtocolConfig(status_detail="full"))
    assert (coarse.l2, coarse.l1) == (1.0, 1.0)
    assert (full_noise.l2, full_noise.l1) == (pytest.approx(np.sqrt(2.0)), 2.0)
    assert full_noise.variance > 1.9 * coarse.variance
    capped = training_noise(ProtocolConfig(max_rows_per_account=3))
    assert (capped.l2, capped.l1) == (3.0, 3.0) and capped.variance > 8 * coarse.variance
