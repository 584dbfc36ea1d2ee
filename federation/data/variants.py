"""World variants: the generator with its mechanisms as parameters (docs/data.md).

`Variant` names everything the default world fixes: size, banks and accounts, the anomaly
mix, decoy rates, flag semantics, how much of the bank-side anomalies the payment network
can see, and whether the bank status matters everywhere or only in an amount band or in
some corridors. `PRESETS` are named variants (`default` is the embedded default world);
`random_variant(seed)` draws one from the documented `RANDOM_RANGES`. `generate_variant`
writes the same challenge layout as `generate.generate`, with the variant's parameters in
generator.json, so that any run is reproducible from that file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from federation.data import generate as gen
from federation.data import schema
from federation.data.payments import AnomalyMix, Decoys, StageSpec
from federation.data.world import WorldShape, build_world
from federation.errors import DataError

INTERACTIONS = ("none", "amount", "corridor")
MIN_ROWS = 1_000  # tests use small sets; benchmarks use 200 k training rows and more
RANDOM_ROWS = 300_000


@dataclass(frozen=True)
class Variant:
    """One world. Field defaults are the default world's (generate.py, scale `default`)."""

    name: str = "default"
    train_rows: int = 1_000_000
    test_rows: int = 500_000
    train_days: int = 42
    test_days: int = 21
    n_banks: int = 40
    anomaly_rate: float = 0.0012  # per payment
    rows_per_account: int = 4  # accounts = rows / this
    rows_per_orderer: int = 50  # ordering customers = rows / this
    partners_per_bank: int = 8  # usual correspondents of each bank
    fx_account_share: float = 0.005
    mix: AnomalyMix = field(default_factory=AnomalyMix)
    decoy_scale: float = 1.0  # multiplies every Decoys rate (not the FX accounts' habit)
    # Flag semantics.
    mule_block_share: float = 0.65  # flagged-account anomalies' accounts: blocking flag
    mule_unflagged_share: float = 0.0  # ... carrying no flag at all (missing flags)
    watch_flag_share: float = 0.0005  # ordinary accounts with a flag (normal receivers)
    normal_block_share: float = 0.0  # ... of which with a blocking flag
    # How much of the bank-side anomalies the payment network sees.
    bank_trace: tuple[float, float] = (2.0, 3.5)  # amount, sd above the orderer's profile
    bank_traceless_share: float = 0.0  # bank-side anomalies with an ordinary amount
    outlier_z: tuple[float, float] = (6.0, 9.0)  # amount_outlier, sd above the profile
    # Where the bank status explains anomalies.
    interaction: str = "none"  # none | amount | corridor
    amount_band: tuple[float, float] = (6.0, 8.0)  # log USD (about 400 to 3,000 USD)
    corridor_share: float = 0.3  # share of banks whose statuses matter
    status_decoy_rate: float = 0.0  # normal payments with a non-ok status (outside)

    def check(self) -> Variant:
        """Raise DataError naming the first parameter out of range; return self."""
        problems = [
            ("train_rows", self.train_rows >= MIN_ROWS, f">= {MIN_ROWS}"),
            ("test_rows", self.test_rows >= MIN_ROWS // 2, f">= {MIN_ROWS // 2}"),
            ("n_banks", self.n_banks >= self.partners_per_bank + 3, "partners_per_bank + 3"),
            ("partners_per_bank", self.partners_per_bank >= 1, ">= 1"),
            ("anomaly_rate", 0 < self.anomaly_rate < 0.5, "in (0, 0.5)"),
            ("rows_per_account", self.rows_per_account >= 1, ">= 1"),
            ("rows_per_orderer", self.rows_per_orderer >= 1, ">= 1"),
            ("mix", min(asdict(self.mix).values()) >= 0 < sum(asdict(self.mix).values()),
             "shares >= 0, not all 0"),
            ("interaction", self.interaction in INTERACTIONS, " | ".join(INTERACTIONS)),
            ("amount_band", self.amount_band[0] < self.amount_band[1], "low < high"),
            ("bank_trace", self.bank_trace[0] <= self.bank_trace[1], "low <= high"),
            ("outlier_z", self.outlier_z[0] <= self.outlier_z[1], "low <= high"),
            ("decoy_scale", self.decoy_scale >= 0, ">= 0"),
        ]
        for name in ("fx_account_share", "mule_block_share", "mule_unflagged_share",
                     "watch_flag_share", "normal_block_share", "bank_traceless_share",
                     "corridor_share", "status_decoy_rate"):
            problems.append((name, 0 <= getattr(self, name) <= 1, "in [0, 1]"))
        for name, ok, expected in problems:
            if not ok:
                raise DataError(f"variant {self.name!r}: {name}={getattr(self, name)!r}, "
                                f"expected {expected}")
        return self

    def decoys(self) -> Decoys:
        base = Decoys()
        return dataclasses.replace(base, **{
            f.name: getattr(base, f.name) * self.decoy_scale
            for f in dataclasses.fields(Decoys) if f.name != "fx_instructed"})

    def flag_semantics(self) -> tuple[float, float, float]:
        return (self.mule_block_share, self.mule_unflagged_share, self.normal_block_share)

    def with_rows(self, train_rows: int | None) -> Variant:
        """The same world at another size (test rows half the training rows)."""
        if train_rows is None:
            return self
        return dataclasses.replace(self, train_rows=train_rows, test_rows=train_rows // 2)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variant:
        values = dict(data)
        values["mix"] = AnomalyMix(**values["mix"])
        for name in ("bank_trace", "outlier_z", "amount_band"):
            values[name] = tuple(values[name])
        return cls(**values).check()


DEFAULT_FLAGS = Variant().flag_semantics()
_SMALL = {"train_rows": RANDOM_ROWS, "test_rows": RANDOM_ROWS // 2}
PRESETS: dict[str, Variant] = {
    "default": Variant(),
    # Flags are a weak, noisy signal: many flagged accounts are ordinary customers, a
    # quarter of the mule accounts were never flagged, blocking and watch flags mixed.
    "noisy_flags": Variant(name="noisy_flags", **_SMALL, mule_block_share=0.3,
                           mule_unflagged_share=0.25, watch_flag_share=0.004,
                           normal_block_share=0.4),
    # Most anomalies are bank-side and leave no trace the payment network can see.
    "bank_only": Variant(name="bank_only", **_SMALL, bank_traceless_share=0.8,
                         mix=AnomalyMix(0.06, 0.06, 0.06, 0.04, 0.02, 0.25, 0.25, 0.255, 0.005)),
    # The status explains anomalies only in one amount band; outside it, non-ok statuses
    # are ordinary (stale records, typos, flagged but legitimate receivers).
    "amount_interaction": Variant(name="amount_interaction", **_SMALL, interaction="amount",
                                  amount_band=(6.5, 8.0), status_decoy_rate=0.002,
                                  bank_traceless_share=0.5),
    # The status explains anomalies only for payments into a third of the banks.
    "corridor_interaction": Variant(name="corridor_interaction", **_SMALL,
                                    interaction="corridor", corridor_share=0.3,
                                    status_decoy_rate=0.002, bank_traceless_share=0.5),
    # Many banks and thin account histories, more anomalies, PNS-heavy mix, more decoys.
    "many_banks": Variant(name="many_banks", **_SMALL, n_banks=100, rows_per_account=2,
                          rows_per_orderer=20, partners_per_bank=14, anomaly_rate=0.003,
                          decoy_scale=4.0,
                          mix=AnomalyMix(0.2, 0.2, 0.15, 0.1, 0.05, 0.1, 0.1, 0.09, 0.01)),
}

# What `random_variant` draws from (uniform unless marked log, i.e. log-uniform).
RANDOM_RANGES: dict[str, Any] = {
    "n_banks": (12, 100),
    "anomaly_rate": ("log", 0.0008, 0.004),
    "rows_per_account": (2, 10),
    "rows_per_orderer": (15, 100),
    "partners_per_bank": (3, 14),
    "fx_account_share": (0.001, 0.02),
    "mix": "Dirichlet(0.8) over the 8 explained mechanisms; unexplained U(0, 0.02)",
    "decoy_scale": ("log", 0.3, 5.0),
    "mule_block_share": (0.0, 1.0),
    "mule_unflagged_share": (0.0, 0.3),
    "watch_flag_share": ("log", 0.0001, 0.005),
    "normal_block_share": (0.0, 0.5),
    "bank_trace": "low U(0, 2.5), high = low + U(0.5, 1.5)",
    "bank_traceless_share": (0.0, 0.7),
    "outlier_z": "low U(3.5, 6.5), high = low + U(1, 3)",
    "interaction": INTERACTIONS,
    "amount_band": "low U(5.5, 7.5), high = low + U(1, 2.5)",
    "corridor_share": (0.2, 0.6),
    "status_decoy_rate": ("log", 0.0001, 0.003),
}


def _uniform(rng: np.random.Generator, name: str) -> float:
    spec = RANDOM_RANGES[name]
    if spec[0] == "log":
        return float(np.exp(rng.uniform(np.log(spec[1]), np.log(spec[2]))))
    if isinstance(spec[0], int):
        return int(rng.integers(spec[0], spec[1] + 1))
    return float(rng.uniform(spec[0], spec[1]))


def random_variant(seed: int, train_rows: int = RANDOM_ROWS) -> Variant:
    """A world drawn from RANDOM_RANGES; the same seed always gives the same variant."""
    rng = np.random.default_rng([seed, 0x7A21])  # apart from the data's stream (seed)
    values: dict[str, Any] = {name: _uniform(rng, name) for name in (
        "n_banks", "anomaly_rate", "rows_per_account", "rows_per_orderer",
        "partners_per_bank", "fx_account_share", "decoy_scale", "mule_block_share",
        "mule_unflagged_share", "watch_flag_share", "normal_block_share",
        "bank_traceless_share", "corridor_share", "status_decoy_rate")}
    values["n_banks"] = max(values["n_banks"], values["partners_per_bank"] + 3)
    explained = rng.dirichlet(np.full(8, 0.8))
    unexplained = rng.uniform(0.0, 0.02)
    values["mix"] = AnomalyMix(*(float(s) for s in explained * (1 - unexplained)),
                               unexplained=float(unexplained))
    low = rng.uniform(0.0, 2.5)
    values["bank_trace"] = (float(low), float(low + rng.uniform(0.5, 1.5)))
    low = rng.uniform(3.5, 6.5)
    values["outlier_z"] = (float(low), float(low + rng.uniform(1.0, 3.0)))
    values["interaction"] = INTERACTIONS[int(rng.integers(0, len(INTERACTIONS)))]
    low = rng.uniform(5.5, 7.5)
    values["amount_band"] = (float(low), float(low + rng.uniform(1.0, 2.5)))
    return Variant(name=f"random-{seed}", train_rows=train_rows, test_rows=train_rows // 2,
                   **values).check()


def resolve(name: str, seed: int, train_rows: int | None = None) -> Variant:
    """A preset by name, or `random` drawn from `seed`; at `train_rows` if given."""
    if name == "random":
        return random_variant(seed, train_rows or RANDOM_ROWS)
    if name not in PRESETS:
        raise DataError(f"variant {name!r}: expected random or one of {', '.join(PRESETS)}")
    return PRESETS[name].with_rows(train_rows).check()


def world_shape(v: Variant) -> WorldShape:
    """As generate._world_shape, from the variant's parameters."""
    rows = v.train_rows + v.test_rows
    shares = asdict(v.mix)
    flagged = rows * v.anomaly_rate * shares["flagged_account"] / sum(shares.values())
    return WorldShape(
        n_banks=v.n_banks,
        n_accounts=max(20 * v.n_banks, rows // v.rows_per_account),
        n_orderers=max(50, rows // v.rows_per_orderer),
        n_mules=max(2 * v.n_banks, int(1.5 * flagged)),
        partners_per_bank=v.partners_per_bank,
        fx_account_share=v.fx_account_share,
        watch_flag_share=v.watch_flag_share,
    )


def variant_digest(v: Variant, seed: int) -> str:
    """Names a variant's data set: the generator's code, the variant and the seed."""
    digest = hashlib.sha256(gen.generator_digest().encode())
    for module in ("variants.py", "mechanisms.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    digest.update(json.dumps([v.to_json(), seed], sort_keys=True).encode())
    return digest.hexdigest()[:12]


def generate_variant(out_dir: str | Path, variant: Variant, seed: int,
                     force_variant_code: bool = False) -> Path:
    """Write the variant's data set under `out_dir` (new or empty); return `out_dir`.

    The default preset at its own size is the default scale itself (same bytes, same
    generator.json); `force_variant_code` runs it through this module instead (tests).
    """
    from federation.data.mechanisms import apply_flags, region_of, simulate_variant_stage

    variant.check()
    if seed < 0:
        raise DataError(f"seed {seed}: expected an integer >= 0")
    if variant == PRESETS["default"] and not force_variant_code:
        return gen.generate(out_dir, "default", seed)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: expected an empty or new directory, found existing files")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    world = build_world(rng, world_shape(variant))
    apply_flags(rng, world, variant)
    region = region_of(rng, world, variant)
    bank_files = gen._write_banks(out / ".accounts", world)
    stages = {
        "train": StageSpec(variant.train_rows, 0, variant.train_days, variant.anomaly_rate, 0),
        "test": StageSpec(variant.test_rows, variant.train_days, variant.test_days,
                          variant.anomaly_rate, variant.train_rows),
    }
    counts: dict[str, dict[str, int]] = {}
    for stage, spec in stages.items():
        table, mechanism, kind = simulate_variant_stage(rng, world, spec, variant, region)
        per = np.bincount(mechanism[mechanism >= 0], minlength=len(variant.mix.names()))
        counts[stage] = {"rows": table.num_rows, "anomalous_rows": int(per.sum()),
                         "status_decoy_rows": int((kind > 0).sum())}
        counts[stage] |= dict(zip(variant.mix.names(), per.tolist(), strict=True))
        gen._write_stage(out, stage, table, world, bank_files)
        del table
    (out / schema.SCENARIOS_FILE).write_text("\n".join(gen.SCENARIO_BANK_CLIENTS) + "\n")
    info = {
        "variant": variant.to_json(),
        "seed": seed,
        "variant_digest": variant_digest(variant, seed),
        "generator_digest": gen.generator_digest(),
        "status_banks": [str(c) for c in world.bank_code[region["status_banks"]]],
        "decoys": asdict(variant.decoys()),
        "anomalous_rows_by_mechanism": counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / gen.GENERATOR_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out
