"""`pv4fad sisa train | forget | status | fairness`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federation.cli import emit, progress, renamed_option
from federation.errors import ProtocolError, Pv4fadError
from federation.sisa.data import DATASETS
from federation.sisa.partition import deal_partitions

if TYPE_CHECKING:
    from server.sisa import SisaCoordinator

# Named here, not imported: the learners and the fairness solver import scikit-learn and
# torch, which `pv4fad sisa --help` must not wait for (tests/test_operator.py checks that
# these match federation.sisa.learners.LEARNERS and equalized_odds.OBJECTIVES).
LEARNERS = ("sgd", "mlp", "logreg", "forest", "tiny-bert", "minilm")
OBJECTIVES = ("accuracy", "balanced_accuracy")
LEARNER_HELP = f"{', '.join(LEARNERS)}, or sklearn:<module>.<Class> (default sgd)"


def register(subparsers: Any) -> None:
    sisa = subparsers.add_parser("sisa", help="federated SISA: train, forget, FairSISA")
    actions = sisa.add_subparsers(dest="sisa_command", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train S shards of R slices on the shard hosts")
    _run_options(train)
    train.add_argument("--data", choices=DATASETS, default="german")
    train.add_argument("--shards", type=int, default=5)
    train.add_argument("--slices", type=int, default=4)
    train.add_argument("--clients", type=int, default=2, help="shard hosts (ClientApps)")
    train.add_argument("--learner", default="sgd", help=LEARNER_HELP)
    train.add_argument("--epochs", type=int, default=5, help="passes per slice")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)

    forget = actions.add_parser("forget", help="delete ids: retrain only the shards holding them")
    _run_options(forget)
    forget.add_argument("--ids", required=True, help="comma-separated row ids")
    forget.set_defaults(func=_forget)

    status = actions.add_parser("status", help="configuration and queued deletions of a run")
    _run_dir(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_status)

    fair = actions.add_parser("fairness", help="FairSISA comparison on held-out data")
    fair.add_argument("--data", choices=DATASETS, default="german")
    fair.add_argument("--shards", type=int, default=5)
    fair.add_argument("--slices", type=int, default=4)
    fair.add_argument(
        "--sensitive", default="sex", help="group attribute (german: sex, age; adult: sex, race)"
    )
    fair.add_argument("--learner", default="sgd", help=LEARNER_HELP)
    fair.add_argument("--epochs", type=int, default=5)
    fair.add_argument("--objective", choices=OBJECTIVES, default="accuracy")
    fair.add_argument("--seeds", type=int, default=5, help="repetitions (seeds 0..n-1)")
    fair.add_argument("--json", action="store_true", help="print one JSON object")
    fair.set_defaults(func=_fairness)


def _run_dir(parser: argparse.ArgumentParser) -> None:
    # --out RUN, as for `pv4fad simulate`; --run is the old spelling.
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, dest="run", metavar="RUN", help="SISA run directory")
    renamed_option(group, "--run", "--out", type=Path, dest="run")


def _run_options(parser: argparse.ArgumentParser) -> None:
    _run_dir(parser)
    parser.add_argument(
        "--down", default="", help="simulate these hosts as unreachable (comma-separated names)"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="call the hosts in-process instead of Flower"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def parse_ids(text: str) -> list[int]:
    """'3,5, 8' -> [3, 5, 8]; anything else is a one-line error naming the bad item."""
    ids = []
    for item in (t.strip() for t in text.split(",")):
        if not item.lstrip("-").isdigit() or int(item) < 0:
            raise Pv4fadError(f"--ids: {item!r} is not a non-negative integer row id")
        ids.append(int(item))
    return ids


def _with_coordinator(args: argparse.Namespace, clients: int, action: Any) -> Any:
    """Run `action(coordinator)` over Flower (default) or in-process."""
    from server.sisa import LocalTransport, SisaCoordinator

    down = [d.strip() for d in args.down.split(",") if d.strip()]
    if args.in_process:
        return action(SisaCoordinator(args.run, LocalTransport(args.run, clients, down)))
    from server.sisa_flower import run_sisa_federation

    up = clients - len(set(down))
    progress(f"starting {up} shard hosts as Flower SuperNodes" if up > 0 else
             "no shard host is up: requests will be queued")
    return run_sisa_federation(args.run, clients, action, down=down)


def evaluate(coordinator: SisaCoordinator) -> dict[str, Any]:
    """The ensemble's test-split accuracy (majority vote and mean probability)."""
    test = coordinator.owned("test")  # query rows the coordinator owns
    output = coordinator.predict(test.features)
    y = test.labels
    return {
        "shards_used": output.shards,
        "excluded": {str(s): why for s, why in output.excluded.items()},
        "accuracy_majority": float(np.mean(output.majority == y)),
        "accuracy_mean_proba": float(np.mean((output.mean_proba >= 0.5) == y)),
    }


def _train(args: argparse.Namespace) -> int:
    from server.sisa import SisaConfig

    config = SisaConfig(
        args.data, args.shards, args.slices, args.clients, args.learner, args.epochs, args.seed
    )
    config.validate()

    # The simulation's data owners deal each party its rows (kept on a rerun).
    deal_partitions(args.run, config)

    def action(coordinator: SisaCoordinator) -> dict[str, Any]:
        report = coordinator.train(config)
        return {**report, "evaluation": evaluate(coordinator)}

    result = _with_coordinator(args, config.clients, action)
    ev = result["evaluation"]
    emit(result, args.json, (
        f"trained {config.shards} shards x {config.slices} slices on {config.clients} hosts: "
        f"{result['train_samples']} samples processed; test accuracy "
        f"{ev['accuracy_majority']:.3f} (majority vote), {ev['accuracy_mean_proba']:.3f} "
        "(mean probability)"
    ))
    return 0


def _forget(args: argparse.Namespace) -> int:
    from server.sisa import LocalTransport, SisaCoordinator

    ids = parse_ids(args.ids)
    clients = SisaCoordinator(args.run, LocalTransport(args.run, 0)).registry["config"]["clients"]

    def action(coordinator: SisaCoordinator) -> dict[str, Any]:
        report = coordinator.forget(ids)
        try:
            evaluation = evaluate(coordinator)
        except ProtocolError as exc:  # every shard down or waiting: the request still stands
            evaluation = {"unavailable": str(exc)}
        return {**report, "evaluation": evaluation}

    result = _with_coordinator(args, clients, action)
    queued = result["queued"]
    emit(result, args.json, (
        f"request {result['request']}: {len(result['applied'])} shard retrain(s), "
        f"{result['samples']} samples ({100 * result['fraction_of_full']:.1f} % of "
        f"retraining one model from scratch); {len(queued)} deletion(s) queued"
        + "".join(
            f"\n  applied: shard {a['shard']} (request {a['request']}) from slice "
            f"{a['first_slice']}, {a['samples']} samples"
            for a in result["applied"]
        )
        + "".join(f"\n  queued: shard {q['shard']} on {q['client']} ids {q['ids']}" for q in queued)
    ))
    return 0


def _status(args: argparse.Namespace) -> int:
    from server.sisa import LocalTransport, SisaCoordinator

    status = SisaCoordinator(args.run, LocalTransport(args.run, 0)).status()
    emit(status, args.json, (
        f"{status['config']['shards']} shards on hosts {sorted(set(status['hosts'].values()))}; "
        f"{status['forgotten']} ids forgotten; {len(status['pending'])} deletion(s) queued"
    ))
    return 0


def _fairness(args: argparse.Namespace) -> int:
    from server.sisa_fairness import FairnessSetup, render_table, run_fairness

    if args.seeds < 1:
        raise Pv4fadError(f"--seeds must be at least 1 (got {args.seeds})")
    setup = FairnessSetup(
        args.data, args.sensitive, args.shards, args.slices, args.learner, args.epochs,
        args.objective, tuple(range(args.seeds)),
    )
    progress(f"FairSISA comparison: {args.seeds} seeds, {args.shards} shards")
    result = run_fairness(setup)
    emit(result, args.json, (
        f"medians over {args.seeds} seeds (test split), {args.data} / {args.sensitive}:\n"
        + render_table(result)
    ))
    return 0
