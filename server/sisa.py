"""The SISA coordinator: plans shards and slices, asks the hosting parties to train them,
routes deletion requests to the shards holding the ids (queueing them, on disk, while a
host is down), and aggregates the shards' outputs into the ensemble.

State under `<run>/coordinator/`: `plan.json` (shard -> host and slice id lists, as the
parties dealt them: ids only), `calib.npz` / `test.npz` (the query rows the coordinator
owns), `registry.json` (configuration, shard -> host, id -> shard, training cost),
`requests.jsonl` (every deletion request and what became of it) and `pending.json`
(deletions not yet applied). The coordinator never holds the hosts' rows or models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from clients.sisa_shard import ShardHost
from federation.errors import ProtocolError, Pv4fadError
from federation.sisa.data import DATASETS
from federation.sisa.learners import check_learner, full_retrain_samples
from federation.sisa.partition import PLAN, OwnedRows, client_name, make_plan
from federation.sisa.shard import ShardSpec, ShardUpdate

ShardProba = dict[int, np.ndarray]  # shard -> P(y = 1) per query row


@dataclass(frozen=True)
class SisaConfig:
    """A SISA run: S shards of R slices over the dataset's training split, on C hosts."""

    dataset: str = "german"
    shards: int = 5
    slices: int = 4
    clients: int = 2
    learner: str = "sgd"
    epochs: int = 5
    seed: int = 0
    split_seed: int = 0

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise Pv4fadError(f"SISA dataset {self.dataset!r}: expected one of {DATASETS}")
        check_learner(self.learner)
        for name in ("shards", "slices", "clients", "epochs"):
            if getattr(self, name) < 1:
                raise Pv4fadError(f"SISA {name} must be at least 1 (got {getattr(self, name)})")


__all__ = ["client_name", "make_plan"]  # re-exported: callers plan runs through this module


class ShardTransport(Protocol):
    """How the coordinator reaches shard hosts (in-process, or Flower messages)."""

    def online(self) -> set[str]: ...

    def train(
        self, client: str, specs: list[ShardSpec], slices: list[list[list[int]]]
    ) -> list[ShardUpdate]: ...

    def forget(
        self, client: str, shard: int, ids: list[int], query: np.ndarray | None = None
    ) -> tuple[ShardUpdate, np.ndarray | None]: ...

    def predict(self, client: str, shards: list[int], features: np.ndarray) -> ShardProba: ...


class LocalTransport:
    """Hosts as in-process objects, each with its own directory; `down` hosts are unreachable."""

    def __init__(self, run_dir: Path, clients: int, down: Sequence[str] = ()) -> None:
        names = [client_name(i) for i in range(clients)]
        root = Path(run_dir) / "clients"
        self.hosts = {n: ShardHost(n, root / n) for n in names if n not in down}
        # (host, operation, what was sent): the in-process stand-in for a message log.
        self.messages: list[tuple[str, str, Any]] = []

    def online(self) -> set[str]:
        return set(self.hosts)

    def train(
        self, client: str, specs: list[ShardSpec], slices: list[list[list[int]]]
    ) -> list[ShardUpdate]:
        self.messages.append((client, "train", [s.shard for s in specs]))
        return self.hosts[client].train(specs, slices)

    def forget(
        self, client: str, shard: int, ids: list[int], query: np.ndarray | None = None
    ) -> tuple[ShardUpdate, np.ndarray | None]:
        sent: tuple[Any, ...] = (shard, list(ids))
        if query is not None:
            sent += (("query rows", len(query)),)
        self.messages.append((client, "forget", sent))
        return self.hosts[client].forget(shard, ids, query)

    def predict(self, client: str, shards: list[int], features: np.ndarray) -> ShardProba:
        self.messages.append((client, "predict", list(shards)))
        return self.hosts[client].predict(shards, features)


@dataclass
class EnsembleOutput:
    """Per-shard probabilities (rows x used shards) and the ensemble's aggregates."""

    shards: list[int]
    proba: np.ndarray
    excluded: dict[int, str] = field(default_factory=dict)

    @property
    def votes(self) -> np.ndarray:
        return (self.proba >= 0.5).astype(np.int64)

    @property
    def majority(self) -> np.ndarray:
        """Strict majority of positive votes (a tie is negative)."""
        return (2 * self.votes.sum(axis=1) > self.votes.shape[1]).astype(np.int64)

    @property
    def mean_proba(self) -> np.ndarray:
        return self.proba.mean(axis=1)


class SisaCoordinator:
    """The coordinator of one SISA run, with its state under `<run_dir>/coordinator/`."""

    def __init__(self, run_dir: Path, transport: ShardTransport) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "coordinator"
        self.transport = transport

    # -- persisted state -------------------------------------------------------
    def _load(self, name: str, default: Any) -> Any:
        path = self.dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default

    def _save(self, name: str, value: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")
        tmp.replace(self.dir / name)

    def _log(self, event: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "requests.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), **event}, sort_keys=True) + "\n")

    @property
    def registry(self) -> dict[str, Any]:
        registry = self._load("registry.json", None)
        if registry is None:
            raise Pv4fadError(f"no SISA run in {self.run_dir} (run `pv4fad sisa train` first)")
        return registry

    @property
    def pending(self) -> list[dict[str, Any]]:
        return list(self._load("pending.json", []))

    # -- protocol ----------------------------------------------------------------
    def train(self, config: SisaConfig, exclude: Sequence[int] = ()) -> dict[str, Any]:
        """Plan shards and slices, and have every host train its shards from scratch.
        Ids forgotten earlier in this run (and `exclude`) stay out of the plan."""
        config.validate()
        dealt = self._load(PLAN, None)
        if dealt is None:
            raise Pv4fadError(
                f"no data plan in {self.dir}: the parties' rows are dealt first "
                "(federation.sisa.partition.deal_partitions in a simulation)"
            )
        fields = ("dataset", "shards", "slices", "clients", "seed", "split_seed")
        if dealt["dealt"] != {f: getattr(config, f) for f in fields}:
            raise Pv4fadError(
                f"the run in {self.run_dir} was dealt for {dealt['dealt']}; the configuration "
                "asks for another split: use a new run directory"
            )
        previous = self._load("registry.json", {})
        gone = set(previous.get("forgotten", [])) | set(map(int, exclude))
        hosts = {int(s): h for s, h in dealt["hosts"].items()}
        missing = sorted(set(hosts.values()) - self.transport.online())
        if missing:
            raise ProtocolError(f"cannot train: shard hosts {missing} are not connected")
        plan = [
            [[i for i in sl if i not in gone] for sl in dealt["slices"][str(s)]]
            for s in range(config.shards)
        ]
        samples = 0
        for client in sorted(set(hosts.values())):
            mine = [s for s, c in hosts.items() if c == client]
            specs = [
                ShardSpec(config.dataset, config.learner, config.epochs, config.seed, s)
                for s in mine
            ]
            updates = self.transport.train(client, specs, [plan[s] for s in mine])
            samples += sum(u.samples for u in updates)
        self._save("registry.json", {
            "config": asdict(config),
            "hosts": {str(s): c for s, c in hosts.items()},
            "shard_ids": {str(s): sorted(i for sl in plan[s] for i in sl) for s in hosts},
            "forgotten": sorted(gone),
            "train_samples": samples,
        })
        self._save("pending.json", [])
        self._log({"event": "trained", "config": asdict(config), "samples": samples})
        return {"config": asdict(config), "train_samples": samples, "hosts": hosts}

    def forget(self, ids: Sequence[int], query: str | None = None) -> dict[str, Any]:
        """Route a deletion request to the shards holding `ids`; queue what cannot be
        applied now. Unknown ids reject the whole request before anything changes.

        `query` ("calib" or "test") sends the coordinator's own rows of that name (after
        deleting any of them named in `ids`) with each forget: every shard retrained now
        answers with its new P(y = 1) on them (`query_proba` in its `applied` entry, with
        the host's scoring time in `query_seconds`), so a post-processor fitted on those rows
        can be refit without querying the shard again."""
        if query not in (None, "calib", "test"):
            raise Pv4fadError(f"forget query {query!r}: expected 'calib' or 'test'")
        registry = self.registry
        owner = {i: int(s) for s, members in registry["shard_ids"].items() for i in members}
        forgotten = set(registry["forgotten"])
        wanted = sorted(set(map(int, ids)))
        calib = self.owned("calib") if (self.dir / "calib.npz").is_file() else None
        mine = set(calib.ids.tolist()) if calib is not None else set()
        unknown = [i for i in wanted if i not in owner and i not in forgotten and i not in mine]
        if unknown:
            raise Pv4fadError(
                f"ids {unknown[:20]} are not in any shard of the SISA run in {self.run_dir} "
                f"nor in its calibration rows (its shards hold {len(owner)} training ids; "
                "nothing was changed)"
            )
        # Calibration rows are the coordinator's own: deleted here, no host is involved.
        calibration = sorted(set(wanted) & mine)
        if calibration and calib is not None:
            calib.delete(calibration)
        todo = [i for i in wanted if i in owner]
        request = 1 + max([r["request"] for r in self._requests()] + [0])
        by_shard: dict[int, list[int]] = {}
        for i in todo:
            by_shard.setdefault(owner[i], []).append(i)
        self._log({"event": "received", "request": request, "ids": wanted})
        pending = self.pending + [
            {"request": request, "shard": s, "client": registry["hosts"][str(s)], "ids": members}
            for s, members in sorted(by_shard.items())
        ]
        self._save("pending.json", pending)
        self._move_forgotten(todo)
        rows = None
        if query is not None:
            rows = calib if query == "calib" and calib is not None else self.owned(query)
        applied = self.flush_pending(None if rows is None else rows.features)
        samples = sum(a["samples"] for a in applied)
        config = registry["config"]
        remaining = sum(len(m) for m in registry["shard_ids"].values()) - len(todo)
        # The baseline is one model retrained from scratch on the remaining rows, not the
        # sliced ensemble's own training cost (which cumulative slices inflate).
        full = full_retrain_samples(config["learner"], config["epochs"], remaining)
        return {
            "request": request, "ids": wanted,
            "already_forgotten": sorted(set(wanted) & forgotten),
            "calibration_forgotten": calibration,
            "applied": applied, "queued": self.pending, "samples": samples,
            "full_retrain_samples": full,
            "sisa_train_samples": registry["train_samples"],
            "fraction_of_full": samples / max(full, 1),
        }

    def _move_forgotten(self, ids: list[int]) -> None:
        """The registry stops listing `ids` in shards once the request is accepted (it is
        then either applied or durably queued)."""
        registry = self.registry
        gone = set(ids)
        registry["shard_ids"] = {
            s: [i for i in members if i not in gone] for s, members in registry["shard_ids"].items()
        }
        registry["forgotten"] = sorted(set(registry["forgotten"]) | gone)
        self._save("registry.json", registry)

    def _requests(self) -> list[dict[str, Any]]:
        path = self.dir / "requests.jsonl"
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == "received"]

    def flush_pending(self, query: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Apply every queued deletion whose host is connected; keep the rest queued. With
        `query` rows, each applied entry also holds the retrained shard's `query_proba`."""
        online = self.transport.online()
        applied, still = [], []
        for entry in self.pending:
            if entry["client"] not in online:
                still.append(entry)
                continue
            try:
                update, proba = self.transport.forget(
                    entry["client"], entry["shard"], entry["ids"], query
                )
            except ProtocolError as exc:
                still.append({**entry, "last_error": str(exc)})
                continue
            done: dict[str, Any] = {"request": entry["request"], **asdict(update)}
            self._log({"event": "applied", **done})
            if proba is not None:  # an array, not logged: the caller's to use
                done["query_proba"] = proba
            applied.append(done)
        for entry in still:
            self._log({"event": "queued", **entry})
        self._save("pending.json", still)
        return applied

    def owned(self, name: str) -> OwnedRows:
        """The query rows the coordinator owns: "calib" or "test"."""
        return OwnedRows(self.dir / f"{name}.npz")

    def predict(self, features: np.ndarray) -> EnsembleOutput:
        """Ensemble output from every shard that is reachable and has no queued deletion
        (a shard with one would still answer with data it was asked to forget)."""
        registry = self.registry
        online = self.transport.online()
        blocked = {int(e["shard"]) for e in self.pending}
        excluded: dict[int, str] = {}
        by_client: dict[str, list[int]] = {}
        for s_text, client in registry["hosts"].items():
            s = int(s_text)
            if client not in online:
                excluded[s] = f"host {client} not connected"
            elif s in blocked:
                excluded[s] = "deletion queued"
            else:
                by_client.setdefault(client, []).append(s)
        if not by_client:
            raise ProtocolError(f"no shard can answer: {excluded}")
        proba: dict[int, np.ndarray] = {}
        for client, shards in sorted(by_client.items()):
            proba.update(self.transport.predict(client, shards, features))
        used = sorted(proba)
        return EnsembleOutput(used, np.stack([proba[s] for s in used], axis=1), excluded)

    def status(self) -> dict[str, Any]:
        registry = self.registry
        return {
            "config": registry["config"], "hosts": registry["hosts"],
            "forgotten": len(registry["forgotten"]), "pending": self.pending,
            "train_samples": registry["train_samples"],
        }
