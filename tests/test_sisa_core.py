"""SISA core without Flower: exact unlearning, retraining cost, queued deletions, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federation.cli import main
from federation.errors import ProtocolError, Pv4fadError
from federation.sisa.data import load_dataset
from federation.sisa.partition import deal_partitions, partition_file, write_shard_partition
from federation.sisa.shard import ShardSpec, ShardStore
from server.sisa import LocalTransport, SisaConfig, SisaCoordinator, make_plan
from server.sisa_cli import parse_ids

CONFIG = SisaConfig(dataset="german", shards=3, slices=4, clients=2, learner="sgd", epochs=3)


def _test_rows() -> np.ndarray:
    data = load_dataset("german")
    return data.features[data.split(CONFIG.split_seed)["test"]]


def _coordinator(root: Path, down: tuple[str, ...] = ()) -> SisaCoordinator:
    deal_partitions(root, CONFIG)  # the parties' own rows (kept when dealt already)
    return SisaCoordinator(root, LocalTransport(root, CONFIG.clients, down))


def _store(root: Path, dataset: str, slices: list[list[int]], shard: int = 0) -> ShardStore:
    """A host holding only shard `shard`'s rows."""
    write_shard_partition(root, shard, dataset, [i for s in slices for i in s])
    return ShardStore(root, shard)


def _checkpoint_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("ckpt_*.pkl"))}


@pytest.mark.parametrize("learner", ["sgd", "mlp", "logreg", "forest"])
def test_shard_forget_equals_training_without_the_ids(tmp_path: Path, learner: str) -> None:
    data = load_dataset("german")
    slices = [list(map(int, s)) for s in np.array_split(np.arange(120), 4)]
    gone = [slices[1][5], slices[3][0]]
    spec = ShardSpec("german", learner, 3, 11, 0)
    store = _store(tmp_path / "a", spec.dataset, slices)
    trained = store.train(spec, slices)
    update = store.forget(gone)
    reference = _store(tmp_path / "b", spec.dataset, slices)
    reference.train(spec, [[i for i in s if i not in gone] for s in slices])
    rows = data.features[500:700]
    assert np.array_equal(store.predict_proba(rows), reference.predict_proba(rows))
    assert update.first_slice == 2 and update.forgotten == sorted(gone)
    assert 0 < update.samples < trained.samples
    # Asking again is harmless: nothing left to forget, nothing retrained.
    assert store.forget(gone).samples == 0
    with pytest.raises(Pv4fadError, match="does not hold ids"):
        store.forget([999])


def test_tiny_transformer_shard_forget_is_exact(tmp_path: Path) -> None:
    data = load_dataset("text")
    slices = [list(range(0, 24)), list(range(24, 48))]
    spec = ShardSpec("text", "tiny-bert", 1, 3, 0)
    store = _store(tmp_path / "a", spec.dataset, slices)
    store.train(spec, slices)
    update = store.forget([30])
    reference = _store(tmp_path / "b", spec.dataset, slices)
    reference.train(spec, [slices[0], [i for i in slices[1] if i != 30]])
    rows = data.features[100:140]
    assert update.first_slice == 2
    assert np.array_equal(store.predict_proba(rows), reference.predict_proba(rows))


def test_coordinator_forget_matches_scratch_and_touches_one_shard(tmp_path: Path) -> None:
    coordinator = _coordinator(tmp_path / "run")
    coordinator.train(CONFIG)
    before = _checkpoint_bytes(tmp_path / "run")
    ids = coordinator.registry["shard_ids"]["1"][:2]
    report = coordinator.forget(ids)
    after = _checkpoint_bytes(tmp_path / "run")
    changed = {path.split("/")[2] for path in before if before[path] != after[path]}
    assert changed == {"shard_1"}
    assert [a["shard"] for a in report["applied"]] == [1] and report["queued"] == []
    assert 0 < report["samples"] < report["full_retrain_samples"]

    reference = _coordinator(tmp_path / "ref")
    reference.train(CONFIG, exclude=ids)
    ours, theirs = coordinator.predict(_test_rows()), reference.predict(_test_rows())
    assert np.array_equal(ours.proba, theirs.proba)
    assert np.array_equal(ours.majority, theirs.majority)
    again = coordinator.forget(ids)
    assert again["already_forgotten"] == sorted(ids) and again["samples"] == 0


def test_request_for_a_down_host_is_queued_then_applied(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _coordinator(run).train(CONFIG)
    down = _coordinator(run, down=("client01",))
    ids = down.registry["shard_ids"]["1"][:1] + down.registry["shard_ids"]["0"][:1]
    report = down.forget(ids)
    assert [a["shard"] for a in report["applied"]] == [0]
    assert [(q["shard"], q["client"], q["ids"]) for q in report["queued"]] == [
        (1, "client01", ids[:1])
    ]
    # The queue is on disk: a fresh coordinator (after a restart) still sees it.
    assert _coordinator(run, down=("client01",)).pending == report["queued"]
    assert 1 not in down.predict(_test_rows()).shards  # it still holds the id
    back = _coordinator(run)
    applied = back.flush_pending()
    assert [(a["shard"], a["request"]) for a in applied] == [(1, report["request"])]
    assert back.pending == []
    events = [json.loads(line)["event"] for line in (run / "coordinator/requests.jsonl").open()]
    assert events == ["trained", "received", "applied", "queued", "applied"]
    reference = _coordinator(tmp_path / "ref")
    reference.train(CONFIG, exclude=ids)
    assert np.array_equal(back.predict(_test_rows()).proba, reference.predict(_test_rows()).proba)


def test_unknown_ids_are_rejected_before_anything_changes(tmp_path: Path) -> None:
    coordinator = _coordinator(tmp_path)
    coordinator.train(CONFIG)
    held = coordinator.registry["shard_ids"]["0"][0]
    with pytest.raises(Pv4fadError, match=r"ids \[99999\] are not in any shard"):
        coordinator.forget([held, 99999])
    assert coordinator.registry["forgotten"] == [] and coordinator.pending == []


def test_training_needs_every_host_and_valid_settings(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="client01"):
        _coordinator(tmp_path, down=("client01",)).train(CONFIG)
    with pytest.raises(Pv4fadError, match="shards must be at least 1"):
        SisaConfig(shards=0).validate()
    with pytest.raises(Pv4fadError, match="cannot fill"):
        make_plan(np.arange(10), 5, 4, 0)


def test_plan_is_disjoint_and_covers_the_training_ids() -> None:
    plan = make_plan(np.arange(100), 5, 4, seed=3)
    flat = [i for shard in plan for sl in shard for i in sl]
    assert sorted(flat) == list(range(100))
    assert plan == make_plan(np.arange(100), 5, 4, seed=3)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Pv4fadError, match="'x' is not"):
        parse_ids("1,x")
    assert main(["sisa", "forget", "--out", str(tmp_path), "--ids", "1", "--in-process"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pv4fad: error: no SISA run") and "\n" not in err
    assert main(["sisa", "train", "--run", str(tmp_path), "--in-process", "--json",
                 "--shards", "3", "--slices", "2", "--epochs", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluation"]["accuracy_majority"] > 0.6
    assert main(["sisa", "forget", "--run", str(tmp_path), "--ids", "99999", "--in-process"]) == 2
    assert "not in any shard" in capsys.readouterr().err
    # Every host down: the request is queued and reported, not lost.
    held = SisaCoordinator(tmp_path, LocalTransport(tmp_path, 2)).registry["shard_ids"]["0"][:1]
    argv = ["sisa", "forget", "--run", str(tmp_path), "--ids", str(held[0]), "--in-process",
            "--down", "client00,client01", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert [q["ids"] for q in result["queued"]] == [held] and "unavailable" in result["evaluation"]
    assert main(["sisa", "status", "--run", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == result["queued"]


@pytest.mark.slow
def test_minilm_shard_forget_is_exact(tmp_path: Path) -> None:
    data = load_dataset("text")
    slices = [list(range(0, 16)), list(range(16, 32))]
    spec = ShardSpec("text", "minilm", 1, 5, 0)
    store = _store(tmp_path / "a", spec.dataset, slices)
    store.train(spec, slices)
    store.forget([20])
    reference = _store(tmp_path / "b", spec.dataset, slices)
    reference.train(spec, [slices[0], [i for i in slices[1] if i != 20]])
    rows = data.features[100:120]
    assert np.array_equal(store.predict_proba(rows), reference.predict_proba(rows))


def test_any_sklearn_classifier_by_name(tmp_path: Path) -> None:
    learner = "sklearn:sklearn.naive_bayes.GaussianNB"
    config = SisaConfig(shards=2, slices=2, clients=1, learner=learner)
    deal_partitions(tmp_path, config)
    deal_partitions(tmp_path / "ref", config)
    coordinator = SisaCoordinator(tmp_path, LocalTransport(tmp_path, 1))
    coordinator.train(config)
    ids = coordinator.registry["shard_ids"]["0"][:3]
    coordinator.forget(ids)
    reference = SisaCoordinator(tmp_path / "ref", LocalTransport(tmp_path / "ref", 1))
    reference.train(config, exclude=ids)
    ours, theirs = coordinator.predict(_test_rows()), reference.predict(_test_rows())
    assert np.array_equal(ours.proba, theirs.proba)
    for bad in ("sklearn:sklearn.naive_bayes.Nope", "sklearn:os.path", "xgboost"):
        with pytest.raises(Pv4fadError, match="learner"):
            SisaConfig(learner=bad).validate()


def test_accumulating_learner_counts_each_row_once(tmp_path: Path) -> None:
    data = load_dataset("german")
    slices = [list(map(int, s)) for s in np.array_split(np.arange(200), 4)]
    spec = ShardSpec("german", "sklearn:sklearn.naive_bayes.GaussianNB", 5, 0, 0)
    store = _store(tmp_path, spec.dataset, slices)
    update = store.train(spec, slices)
    model = store._load_checkpoint(4)
    truth = np.bincount(data.labels[:200], minlength=2)
    assert model.class_count_.tolist() == truth.tolist()
    assert update.samples == 200  # each row fed once, not epochs x cumulative


def test_each_host_holds_only_its_rows_and_a_forget_reaches_only_the_holder(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    coordinator = _coordinator(run)
    coordinator.train(CONFIG)
    registry = coordinator.registry
    held: dict[str, set[int]] = {}
    for shard, host in registry["hosts"].items():
        rows = np.load(partition_file(run / "clients" / host, int(shard)))
        assert sorted(rows["ids"].tolist()) == registry["shard_ids"][shard]
        held.setdefault(host, set()).update(rows["ids"].tolist())
        # No host has a file for a shard it does not host.
        for other in set(registry["hosts"].values()) - {host}:
            assert not partition_file(run / "clients" / other, int(shard)).exists()
    assert held["client00"].isdisjoint(held["client01"])
    data_files = {p.relative_to(run).as_posix() for p in run.rglob("*.npz")}
    assert data_files == {
        "coordinator/calib.npz", "coordinator/test.npz",
        *(f"clients/{h}/data/shard_{s}.npz" for s, h in registry["hosts"].items()),
    }
    # The coordinator's own rows never include a training row.
    train_ids = held["client00"] | held["client01"]
    for name in ("calib", "test"):
        assert train_ids.isdisjoint(coordinator.owned(name).ids.tolist())

    transport = coordinator.transport
    assert isinstance(transport, LocalTransport)
    transport.messages.clear()
    ids = registry["shard_ids"]["1"][:2]  # shard 1 lives on client01
    coordinator.forget(ids)
    assert transport.messages == [("client01", "forget", (1, ids))]
    remaining = np.load(partition_file(run / "clients/client01", 1))["ids"].tolist()
    assert set(ids).isdisjoint(remaining) and len(remaining) == len(registry["shard_ids"]["1"]) - 2

    # A calibration row is the coordinator's own: deleted there, no host hears of it.
    transport.messages.clear()
    calib_id = int(coordinator.owned("calib").ids[0])
    report = coordinator.forget([calib_id])
    assert report["calibration_forgotten"] == [calib_id] and report["applied"] == []
    assert transport.messages == [] and calib_id not in coordinator.owned("calib").ids


def test_forget_reply_carries_the_retrained_shards_votes_on_the_query_rows(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    coordinator = _coordinator(run)
    coordinator.train(CONFIG)
    transport = coordinator.transport
    assert isinstance(transport, LocalTransport)
    calib = coordinator.owned("calib")
    gone_calib = int(calib.ids[3])
    ids = coordinator.registry["shard_ids"]["1"][:1]
    transport.messages.clear()
    report = coordinator.forget(ids + [gone_calib], query="calib")
    # Only the holder hears of it; it gets the calibration rows left after the deletion.
    rows = len(calib.ids) - 1
    assert transport.messages == [("client01", "forget", (1, ids, ("query rows", rows)))]
    (applied,) = report["applied"]
    assert applied["shard"] == 1 and applied["query_seconds"] > 0
    # The reply's probabilities are exactly a fresh query of the retrained shard.
    fresh = coordinator.predict(coordinator.owned("calib").features)
    assert np.array_equal(applied["query_proba"], fresh.proba[:, fresh.shards.index(1)])
    # Nothing to retrain (already forgotten): the current model scores the rows.
    again = transport.hosts["client01"].forget(1, ids, coordinator.owned("calib").features)
    assert again[0].samples == 0 and np.array_equal(again[1], applied["query_proba"])
    # The log stays JSON (the arrays are the caller's, not logged).
    logged = (run / "coordinator" / "requests.jsonl").read_text().splitlines()
    assert all("query_proba" not in json.loads(line) for line in logged)
    with pytest.raises(Pv4fadError, match="forget query 'train'"):
        coordinator.forget(ids, query="train")


def test_logistic_scoring_shortcut_gives_scikit_learns_bits() -> None:
    from federation.sisa.learners import make_learner, one_blas_thread

    data = load_dataset("german")
    learner = make_learner("sgd", 2)
    state, _ = learner.train_slice(learner.initial_state([0, 1]), data.features[:300],
                                   data.labels[:300], [0, 1, 1])
    rows = data.features[300:700]
    with one_blas_thread():
        reference = state.predict_proba(rows)[:, 1]
    assert np.array_equal(learner.predict_proba(state, rows), reference)
    # Rows of another width take scikit-learn's own path and its error.
    with pytest.raises(ValueError, match="features"):
        learner.predict_proba(state, rows[:, :5])


def test_a_host_trains_only_on_rows_it_holds(tmp_path: Path) -> None:
    store = _store(tmp_path, "german", [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ProtocolError, match=r"does not hold ids \[7\]"):
        store.train(ShardSpec("german", "sgd", 1, 0, 0), [[1, 2, 3], [4, 5, 7]])
    with pytest.raises(ProtocolError, match="holds no such rows"):
        ShardStore(tmp_path, 3).train(ShardSpec("german", "sgd", 1, 0, 3), [[1], [2]])


def test_fairsisa_predicts_with_a_shard_left_out(tmp_path: Path) -> None:
    from llm_modules.fairness import FairSISA, equalized_odds_difference

    run = tmp_path / "run"
    _coordinator(run).train(CONFIG)
    full = _coordinator(run)
    cal = full.owned("calib")
    group = cal.groups["sex"]
    post = FairSISA("votes").fit(full.predict(cal.features).proba, cal.labels, group)
    down = _coordinator(run, down=("client01",))  # hosts shard 1
    output = down.predict(cal.features)
    assert output.shards == [0, 2] and 1 in output.excluded
    voters = [full.predict(cal.features).shards.index(s) for s in output.shards]
    decided = post.predict_proba(output.proba, group, voters=voters)
    # Refit on the answering shards' calibration votes: equalized odds holds again there.
    assert equalized_odds_difference(cal.labels, decided, group) < 1e-7
