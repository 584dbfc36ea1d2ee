"""One SISA shard as kept by the party that hosts it: its rows, its slices, a checkpoint
after each slice, and the ids it has forgotten, all on that party's disk.

The rows are the host's own partition file `<root>/data/shard_<s>.npz` (see
federation/sisa/partition.py); the host reads no other data. A forget deletes the rows from
that file as well as retraining without them.

A forget may carry query rows (the coordinator's calibration rows, the same rows a
prediction query sends): the host then scores them with the retrained model while it is
still in memory and returns the probabilities with the update, so the coordinator's
post-processor can be refit without a second query (which would reload the checkpoint).
The query rows are used for that one reply and not kept.

Layout of `<root>/shard_<s>/`: `spec.json` (dataset, learner, epochs, seed), `slices.json`
(current ids per slice), `forgotten.json`, and `ckpt_<r>.pkl` for r = 0..R (ckpt_0 is the
untrained model). Checkpoints are this party's own files, read back only by it.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import ProtocolError, Pv4fadError
from federation.sisa.learners import SliceLearner, make_learner
from federation.sisa.partition import OwnedRows, partition_file


@dataclass(frozen=True)
class ShardSpec:
    """How one shard is trained."""

    dataset: str
    learner: str
    epochs: int
    seed: int
    shard: int


@dataclass(frozen=True)
class ShardUpdate:
    """What a train or forget did: the first slice retrained and the samples processed
    (and, for a forget, the host's wall seconds for it, `retrain_seconds`: reading the
    shard, retraining from the checkpoint, writing checkpoints and files; for a forget that
    carried query rows, the seconds spent scoring them apart, `query_seconds`). The
    `*_cpu_seconds` are the same spans in the host thread's CPU time, which other load on
    the machine inflates less (both run on one thread)."""

    shard: int
    first_slice: int
    samples: int
    forgotten: list[int]
    query_seconds: float = 0.0
    retrain_seconds: float = 0.0
    query_cpu_seconds: float = 0.0
    retrain_cpu_seconds: float = 0.0


class ShardStore:
    """A shard's files under `root` and the operations on them."""

    def __init__(self, root: Path, shard: int) -> None:
        self.root = Path(root)
        self.dir = self.root / f"shard_{shard}"
        self.shard = shard

    # -- files ---------------------------------------------------------------
    def _read(self, name: str) -> Any:
        path = self.dir / name
        if not path.is_file():
            raise ProtocolError(f"shard {self.shard}: {path} is missing (train the shard first)")
        return json.loads(path.read_text(encoding="utf-8"))

    def _write(self, name: str, value: Any) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(value), encoding="utf-8")
        tmp.replace(self.dir / name)  # atomic: a crash never leaves half a file

    def _save_checkpoint(self, index: int, state: Any) -> None:
        tmp = self.dir / f".ckpt_{index}.tmp"
        with tmp.open("wb") as fh:
            pickle.dump(state, fh)
        tmp.replace(self.dir / f"ckpt_{index}.pkl")

    def _load_checkpoint(self, index: int) -> Any:
        with (self.dir / f"ckpt_{index}.pkl").open("rb") as fh:
            return pickle.load(fh)

    @property
    def spec(self) -> ShardSpec:
        return ShardSpec(**self._read("spec.json"))

    @property
    def slices(self) -> list[list[int]]:
        return [list(map(int, s)) for s in self._read("slices.json")]

    # -- operations ----------------------------------------------------------
    def train(self, spec: ShardSpec, slices: list[list[int]]) -> ShardUpdate:
        """Train from scratch on `slices`, checkpointing after each one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write("spec.json", asdict(spec))
        self._write("slices.json", [sorted(map(int, s)) for s in slices])
        self._write("forgotten.json", [])
        learner = make_learner(spec.learner, spec.epochs)
        self._save_checkpoint(0, learner.initial_state([spec.seed, spec.shard]))
        samples, _ = self._train_from(1, learner, spec, self.slices)
        return ShardUpdate(spec.shard, 1, samples, [])

    def forget(self, ids: list[int]) -> ShardUpdate:
        """Remove `ids` and retrain from the checkpoint before the first slice holding one.
        Ids this shard already forgot are skipped, so a repeated request is harmless."""
        return self._forget(ids)[0]

    def forget_and_score(self, ids: list[int], query: np.ndarray) -> tuple[ShardUpdate, np.ndarray]:
        """`forget`, then P(y = 1) of the resulting model on `query`, scored with the model
        still in memory (no checkpoint reload). The scoring time is reported apart, in
        `query_seconds`, so that it is not hidden in the retraining cost."""
        update, state, learner = self._forget(ids)
        started, cpu = time.perf_counter(), time.thread_time()
        if state is None:  # nothing was retrained: the current model is the last checkpoint
            spec = self.spec
            learner = make_learner(spec.learner, spec.epochs)
            state = self._load_checkpoint(len(self.slices))
        proba = learner.predict_proba(state, query)
        timed = replace(update, query_seconds=time.perf_counter() - started,
                        query_cpu_seconds=time.thread_time() - cpu)
        return timed, proba

    def _forget(self, ids: list[int]) -> tuple[ShardUpdate, Any, Any]:
        """The forget, timed; also the retrained model and its learner (None, None when
        nothing was retrained)."""
        started, cpu = time.perf_counter(), time.thread_time()
        update, state, learner = self._forget_untimed(ids)
        timed = replace(update, retrain_seconds=time.perf_counter() - started,
                        retrain_cpu_seconds=time.thread_time() - cpu)
        return timed, state, learner

    def _forget_untimed(self, ids: list[int]) -> tuple[ShardUpdate, Any, Any]:
        forgotten = set(self._read("forgotten.json"))
        rows = self.rows()
        leftover = sorted(forgotten & set(rows.ids.tolist()))
        if leftover:  # a crash after the checkpoints, before the rows were deleted
            rows.delete(leftover)
        todo = sorted(set(map(int, ids)) - forgotten)
        slices = self.slices
        held = {i for s in slices for i in s}
        strangers = [i for i in todo if i not in held]
        if strangers:
            raise Pv4fadError(f"shard {self.shard} does not hold ids {strangers[:10]}")
        if not todo:
            return ShardUpdate(self.shard, 0, 0, []), None, None
        gone = set(todo)
        first = min(r for r, s in enumerate(slices, start=1) if gone & set(s))
        kept = [[i for i in s if i not in gone] for s in slices]
        spec = self.spec
        learner = make_learner(spec.learner, spec.epochs)
        samples, state = self._train_from(first, learner, spec, kept)
        # Recorded only after the checkpoints: a crash mid-way leaves the ids pending.
        self._write("slices.json", kept)
        self._write("forgotten.json", sorted(forgotten | gone))
        rows.delete(todo)
        return ShardUpdate(self.shard, first, samples, todo), state, learner

    def rows(self) -> OwnedRows:
        """This shard's rows, from the host's own partition file."""
        return OwnedRows(partition_file(self.root, self.shard))

    def _train_from(
        self, first: int, learner: SliceLearner, spec: ShardSpec, slices: list[list[int]]
    ) -> tuple[int, Any]:
        """Retrain slices first..R from checkpoint first-1; returns the samples processed
        and the final model (checkpoint R, still in memory)."""
        rows = self.rows()
        state = self._load_checkpoint(first - 1)
        samples = 0
        for r in range(first, len(slices) + 1):
            # A learner that accumulates statistics takes slice r alone (see learners.py).
            fed = slices[:r] if getattr(learner, "cumulative", True) else slices[r - 1 : r]
            ids = np.array(sorted(i for s in fed for i in s), dtype=np.int64)
            at = rows.positions(ids, f"the host of shard {self.shard}")
            state, used = learner.train_slice(
                state, rows.features[at], rows.labels[at], [spec.seed, spec.shard, r]
            )
            samples += used
            self._save_checkpoint(r, state)
        return samples, state

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(y = 1) from the shard's final checkpoint."""
        spec = self.spec
        learner = make_learner(spec.learner, spec.epochs)
        return learner.predict_proba(self._load_checkpoint(len(self.slices)), features)
