"""Who holds which rows in a SISA run: each shard host its own shards' rows, the
coordinator only ids and the query rows it owns.

In a deployment every party already holds its data; in a simulation `deal_partitions`
plays the data owners once, before the coordinator starts: it splits the dataset (train /
calibration / test, seeded), assigns training ids to shards and slices (seeded), and writes

- `<run>/clients/<host>/data/shard_<s>.npz`: ids, features and labels of shard s, only for
  the shards that host holds (the host trains from this file and deletes forgotten rows
  from it);
- `<run>/coordinator/plan.json`: the public part, shard -> host and shard -> slice id lists
  (ids only, no features, no labels);
- `<run>/coordinator/calib.npz` and `test.npz`: the rows the coordinator owns (features,
  labels, groups), on which it queries the hosts and fits and scores post-processors.

Nothing else is written: no party can read another party's rows from its own directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import ProtocolError, Pv4fadError
from federation.sisa.data import load_dataset

PLAN = "plan.json"


def client_name(index: int) -> str:
    return f"client{index:02d}"


def make_plan(train_ids: np.ndarray, shards: int, slices: int, seed: int) -> list[list[list[int]]]:
    """Seeded assignment of ids to shards, then slices: plan[s][r] is a sorted id list."""
    if len(train_ids) < shards * slices:
        raise Pv4fadError(
            f"{len(train_ids)} training rows cannot fill {shards} shards x {slices} slices"
        )
    order = np.random.default_rng([seed, 1]).permutation(np.asarray(train_ids))
    return [
        [sorted(map(int, part)) for part in np.array_split(shard, slices)]
        for shard in np.array_split(order, shards)
    ]


def partition_file(host_root: Path, shard: int) -> Path:
    return Path(host_root) / "data" / f"shard_{shard}.npz"


def write_rows(path: Path, ids: np.ndarray, features: np.ndarray, labels: np.ndarray,
               **extra: np.ndarray) -> None:
    """Atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, ids=np.asarray(ids, np.int64), features=features, labels=labels, **extra)
    tmp.replace(path)


def read_rows(path: Path) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise ProtocolError(f"{path} is missing: this party holds no such rows")
    with np.load(path) as stored:
        return {k: stored[k] for k in stored.files}


def write_shard_partition(host_root: Path, shard: int, dataset: str, ids: list[int]) -> None:
    """A host's own copy of shard `shard`'s rows (the simulation's data owner writes it)."""
    data = load_dataset(dataset)
    chosen = np.array(sorted(map(int, ids)), dtype=np.int64)
    write_rows(partition_file(host_root, shard), chosen, data.features[chosen],
               data.labels[chosen])


def deal_partitions(run_dir: Path, config: Any) -> dict[str, Any]:
    """Write every party's data for `config` (a SisaConfig) and the public plan; return
    the plan. Dealing again with the same configuration is a no-op (the files are kept:
    hosts may already have deleted forgotten rows from theirs)."""
    run_dir = Path(run_dir)
    plan_path = run_dir / "coordinator" / PLAN
    wanted = {
        "dataset": config.dataset, "shards": config.shards, "slices": config.slices,
        "clients": config.clients, "seed": config.seed, "split_seed": config.split_seed,
    }
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        if plan["dealt"] != wanted:
            raise Pv4fadError(
                f"the run in {run_dir} was dealt for {plan['dealt']}, not {wanted}: "
                "use a new run directory"
            )
        return plan
    data = load_dataset(config.dataset)
    split = data.split(config.split_seed)
    slices = make_plan(split["train"], config.shards, config.slices, config.seed)
    hosts = {s: client_name(s % config.clients) for s in range(config.shards)}
    for s, host in hosts.items():
        ids = sorted(i for sl in slices[s] for i in sl)
        write_shard_partition(run_dir / "clients" / host, s, config.dataset, ids)
    for name in ("calib", "test"):
        ids = split[name]
        groups = {f"group_{k}": v[ids] for k, v in data.groups.items()}
        write_rows(run_dir / "coordinator" / f"{name}.npz", ids, data.features[ids],
                   data.labels[ids], **groups)
    plan = {
        "dealt": wanted,
        "hosts": {str(s): h for s, h in hosts.items()},
        "slices": {str(s): slices[s] for s in hosts},
    }
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    return plan


class OwnedRows:
    """Rows a party owns (a shard's, or the coordinator's calibration / test set)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        stored = read_rows(self.path)
        self.ids = stored.pop("ids")
        self.features = stored.pop("features")
        self.labels = stored.pop("labels")
        self.groups = {k.removeprefix("group_"): v for k, v in stored.items()}
        self._index = {int(i): k for k, i in enumerate(self.ids.tolist())}

    def positions(self, ids: np.ndarray | list[int], who: str) -> np.ndarray:
        missing = [int(i) for i in ids if int(i) not in self._index]
        if missing:
            raise ProtocolError(f"{who} does not hold ids {missing[:10]}")
        return np.array([self._index[int(i)] for i in ids], dtype=np.int64)

    def delete(self, ids: list[int]) -> None:
        """Remove rows for good (a forget request): rewrite the file without them."""
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        extra = {f"group_{k}": v[keep] for k, v in self.groups.items()}
        write_rows(self.path, self.ids[keep], self.features[keep], self.labels[keep], **extra)
        self.__init__(self.path)  # type: ignore[misc]
