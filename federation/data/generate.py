"""Synthetic challenge-format data: the exact PETs Prize layout, at any scale, per seed.

`generate(out_dir, scale, seed)` writes train and test stages (split in time, a payment
never split across stages), three scenarios with 2, 4 and 9 bank clients, and the
centralized files. Identical files are hard-linked rather than copied. See docs/data.md
for the layout and for every anomaly mechanism with its share.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from federation.data import schema
from federation.data.payments import AnomalyMix, Decoys, StageSpec, simulate_stage
from federation.data.world import World, WorldShape, bank_accounts_table, build_world
from federation.errors import DataError


@dataclass(frozen=True)
class Scale:
    """Size of a generated data set; `anomaly_rate` is per payment."""

    name: str
    train_rows: int
    test_rows: int
    n_banks: int
    anomaly_rate: float
    train_days: int
    test_days: int


SCALES: dict[str, Scale] = {
    # Unit tests of whole federated runs: small, with a raised anomaly rate (2 %).
    "tiny": Scale("tiny", 4_000, 2_000, 12, 0.02, 21, 7),
    "default": Scale("default", 1_000_000, 500_000, 40, 0.0012, 42, 21),
    "challenge": Scale("challenge", 3_000_000, 1_000_000, 80, 0.0012, 63, 21),
}
SCENARIO_BANK_CLIENTS: dict[str, int] = {"scenario01": 2, "scenario02": 4, "scenario03": 9}
GENERATOR_INFO = "generator.json"
DEFAULT_SEED = 2022


def _world_shape(scale: Scale, mix: AnomalyMix) -> WorldShape:
    rows = scale.train_rows + scale.test_rows
    flagged = rows * scale.anomaly_rate * mix.flagged_account
    return WorldShape(
        n_banks=scale.n_banks,
        n_accounts=max(20 * scale.n_banks, rows // 4),
        n_orderers=max(50, rows // 50),
        n_mules=max(2 * scale.n_banks, int(1.5 * flagged)),
        partners_per_bank=8,
        fx_account_share=0.005,
        watch_flag_share=0.0005,
    )


def generate(out_dir: str | Path, scale: str, seed: int) -> Path:
    """Write a complete challenge-format data set under `out_dir`; return `out_dir`."""
    if scale not in SCALES:
        raise DataError(f"scale {scale!r}: expected one of {', '.join(SCALES)}")
    if seed < 0:
        raise DataError(f"seed {seed}: expected an integer >= 0")
    spec, mix, decoys = SCALES[scale], AnomalyMix(), Decoys()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: expected an empty or new directory, found existing files")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)  # data only; keys, masks and noise use secure sources
    world = build_world(rng, _world_shape(spec, mix))
    bank_files = _write_banks(out / ".accounts", world)
    stages = {
        "train": StageSpec(spec.train_rows, 0, spec.train_days, spec.anomaly_rate, 0),
        "test": StageSpec(
            spec.test_rows, spec.train_days, spec.test_days, spec.anomaly_rate, spec.train_rows
        ),
    }
    counts: dict[str, dict[str, int]] = {}
    for stage, stage_spec in stages.items():
        table, mechanism = simulate_stage(rng, world, stage_spec, mix, decoys)
        per = np.bincount(mechanism[mechanism >= 0], minlength=len(mix.names()))
        counts[stage] = {"rows": table.num_rows, "anomalous_rows": int(per.sum())}
        counts[stage] |= dict(zip(mix.names(), per.tolist(), strict=True))
        _write_stage(out, stage, table, world, bank_files)
        del table
    (out / schema.SCENARIOS_FILE).write_text("\n".join(SCENARIO_BANK_CLIENTS) + "\n")
    info = {
        "scale": asdict(spec),
        "seed": seed,
        "anomaly_mix": asdict(mix),
        "decoys": asdict(decoys),
        "anomalous_rows_by_mechanism": counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / GENERATOR_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out


def _write_csv(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def _link(source: Path, target: Path) -> None:
    """Hard-link an identical file into place (copy where links are not supported)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_banks(store: Path, world: World) -> list[Path]:
    """One account file per bank, written once and linked wherever a client holds it."""
    files = []
    for bank, code in enumerate(world.bank_code):
        path = store / f"{code}.csv"
        _write_csv(bank_accounts_table(world, bank), path)
        files.append(path)
    return files


def _write_stage(out: Path, stage: str, table: pa.Table, world: World, banks: list[Path]) -> None:
    central = out / schema.CENTRALIZED_DIR / stage
    tx_path = central / f"swift_transaction_{stage}_dataset.csv"
    _write_csv(table, tx_path)
    bank_path = central / "bank_dataset.csv"
    all_banks = pa.concat_tables(bank_accounts_table(world, b) for b in range(len(banks)))
    _write_csv(all_banks, bank_path)
    index = {schema.SWIFT_PATH_KEY: tx_path.name, schema.BANK_PATH_KEY: bank_path.name}
    (central / schema.CENTRALIZED_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    for scenario, n_clients in SCENARIO_BANK_CLIENTS.items():
        stage_dir = out / scenario / stage
        _link(tx_path, stage_dir / schema.PNS_CLIENT_ID / f"{stage}.csv")
        parts: dict[str, dict[str, object]] = {
            schema.PNS_CLIENT_ID: {schema.SWIFT_PATH_KEY: f"{schema.PNS_CLIENT_ID}/{stage}.csv"}
        }
        for c in range(n_clients):
            cid = schema.bank_client_id(c + 1)
            held = [banks[b] for b in range(c, len(banks), n_clients)]  # round-robin
            for path in held:
                _link(path, stage_dir / cid / path.name)
            parts[cid] = {schema.BANK_PATH_KEY: [f"{cid}/{p.name}" for p in held]}
        (stage_dir / schema.PARTITIONS_FILE).write_text(json.dumps(parts, indent=2) + "\n")


def generator_digest() -> str:
    """Short digest of the generator's code: names cached data sets, so none goes stale."""
    import hashlib

    digest = hashlib.sha256()
    for module in ("schema.py", "world.py", "payments.py", "generate.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:12]


def default_data_dir() -> Path:
    """The embedded default data set: generated on first use (seconds), reused after.

    Lives under `$PV4FAD_CACHE` (default `~/.cache/pv4fad`), named by seed and by a digest
    of the generator's code, so that a changed generator never serves stale data.
    """
    cache = Path(os.environ.get("PV4FAD_CACHE") or Path.home() / ".cache" / "pv4fad")
    target = cache / f"data-default-seed{DEFAULT_SEED}-{generator_digest()}"
    if (target / GENERATOR_INFO).is_file():
        return target
    # Generate beside the target and rename, so that a crash never leaves half a data set.
    partial = cache / f".partial-{os.getpid()}-{time.time_ns()}"
    generate(partial, "default", DEFAULT_SEED)
    try:
        partial.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return target
