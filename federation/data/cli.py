"""`pv4fad data generate | validate | parties` and `pv4fad baseline`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from federation.cli import emit, progress

# The generator's scales, named here so that the parser does not import the generator
# (numpy, pyarrow); tests/test_operator.py checks that both lists agree.
SCALE_NAMES = ("challenge", "default", "tiny")
# The generator's world variants (federation.data.variants.PRESETS, plus random).
VARIANT_NAMES = ("amount_interaction", "bank_only", "corridor_interaction", "default",
                 "many_banks", "noisy_flags", "random")


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="generate or validate challenge-format data")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    gen = actions.add_parser("generate", help="write a synthetic data set in the challenge layout")
    gen.add_argument("--out", required=True, type=Path, help="new or empty directory")
    gen.add_argument("--scale", choices=SCALE_NAMES,
                     help="tiny (seconds, for tests), default (the demo's), challenge "
                          "(the PETs Prize Challenge's size; default: default)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--variant", choices=VARIANT_NAMES,
                     help="a world variant instead of a scale: a named preset, or random "
                          "(drawn from --seed); see docs/data.md")
    gen.add_argument("--rows", type=int,
                     help="with --variant: training rows (test rows: half as many; "
                          "default: the variant's own, 300,000 for random)")
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.set_defaults(func=_generate)

    val = actions.add_parser("validate", help="check a data set against the challenge format")
    val.add_argument("--data", required=True, type=Path, help="data root (with scenarios.txt)")
    val.add_argument("--scenario", help="only this scenario (default: all, plus centralized)")
    val.add_argument("--json", action="store_true", help="print one JSON object")
    val.set_defaults(func=_validate)

    parties = actions.add_parser(
        "parties", help="print a scenario's name and its training parties (the PNS first)")
    parties.add_argument("--data", required=True, type=Path, help="data root (with scenarios.txt)")
    parties.add_argument("--scenario", help="scenario name (default: the first listed)")
    parties.set_defaults(func=_parties)

    base = subparsers.add_parser("baseline", help="plaintext baselines: ceiling, floor, boosting")
    base.add_argument("--data", type=Path, help="data root (default: the embedded default data)")
    base.add_argument("--scenario", default="scenario01", help="scenario name (default scenario01)")
    base.add_argument("--seed", type=int, default=0, help="model seed")
    base.add_argument("--json", action="store_true", help="print one JSON object")
    base.set_defaults(func=_baseline)


def _generate(args: argparse.Namespace) -> int:
    from federation.errors import DataError

    if args.variant is not None:
        if args.scale is not None:
            raise DataError("--scale and --variant: give one (a variant has its own size)")
        return _generate_variant(args)
    if args.rows is not None:
        raise DataError("--rows: only with --variant (a scale has its own size)")
    args.scale = args.scale or "default"
    from federation.data.generate import generate

    progress(f"generating {args.scale} data (seed {args.seed}) into {args.out}")
    started = time.perf_counter()
    out = generate(args.out, args.scale, args.seed)
    seconds = time.perf_counter() - started
    result = {"out": str(out), "scale": args.scale, "seed": args.seed, "seconds": round(seconds, 2)}
    emit(result, args.json, f"wrote {args.scale} data set to {out} in {seconds:.1f} s")
    return 0


def _generate_variant(args: argparse.Namespace) -> int:
    from federation.data.variants import generate_variant, resolve

    variant = resolve(args.variant, args.seed, args.rows)
    progress(f"generating variant {variant.name} ({variant.train_rows} + {variant.test_rows} "
             f"rows, seed {args.seed}) into {args.out}")
    started = time.perf_counter()
    out = generate_variant(args.out, variant, args.seed)
    seconds = time.perf_counter() - started
    result = {"out": str(out), "variant": variant.name, "seed": args.seed,
              "train_rows": variant.train_rows, "test_rows": variant.test_rows,
              "seconds": round(seconds, 2)}
    emit(result, args.json, f"wrote variant {variant.name} to {out} in {seconds:.1f} s")
    return 0


def _validate(args: argparse.Namespace) -> int:
    """Read every file of the selected scenarios (and the centralized layout) once."""
    from federation.data import loader, schema

    scenarios = [args.scenario] if args.scenario else loader.list_scenarios(args.data)
    summary: dict[str, Any] = {}
    for scenario in scenarios:
        for stage in schema.STAGES:
            progress(f"validating {scenario}/{stage}")
            parts = loader.partitions(args.data, scenario, stage)
            tx = loader.load_transactions(args.data, scenario, stage)
            banks = {
                cid: len(loader.load_bank_client(args.data, scenario, stage, cid))
                for cid in parts
                if cid != schema.PNS_CLIENT_ID
            }
            summary[f"{scenario}/{stage}"] = {"transactions": len(tx), "bank_accounts": banks}
    if not args.scenario and (Path(args.data) / schema.CENTRALIZED_DIR).is_dir():
        for stage in schema.STAGES:
            progress(f"validating centralized/{stage}")
            tx, accounts = loader.load_centralized(args.data, stage)
            summary[f"centralized/{stage}"] = {"transactions": len(tx), "accounts": len(accounts)}
    emit({"valid": True, "checked": summary}, args.json, f"valid: {', '.join(summary)}")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from federation.baselines import format_results, run_baselines
    from federation.data.generate import default_data_dir

    root = args.data if args.data is not None else default_data_dir()
    result = run_baselines(root, args.scenario, seed=args.seed)
    emit(result, args.json, format_results(result))
    return 0


def _parties(args: argparse.Namespace) -> int:
    """One line, `SCENARIO PNS,BANK,...`: what the deployment scripts start one SuperNode
    for."""
    from federation.data.loader import list_scenarios, partitions
    from federation.errors import DataError
    from federation.messages import PNS_ID

    names = list_scenarios(args.data)
    scenario = args.scenario or names[0]
    if scenario not in names:
        raise DataError(f"scenario {scenario!r} is not in {args.data}/scenarios.txt")
    ids = sorted(partitions(args.data, scenario, "train"))  # refuses one without the PNS
    print(scenario, ",".join([PNS_ID] + [i for i in ids if i != PNS_ID]))
    return 0
