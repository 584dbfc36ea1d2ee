"""`pv4fad llm align sample | solve | realise | report`: MAP from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from federation.cli import emit, progress
from federation.errors import DataError, Pv4fadError
from llm_modules.alignment.map.dual import NORMALISATIONS
from llm_modules.alignment.map.finetune import FINETUNE_METHODS, FinetuneSettings

DEFAULT_VALUES = "positiveness,harmlessness,coherence"
REALISE_METHODS = ("decode", *FINETUNE_METHODS)


def register_llm(commands: argparse._SubParsersAction) -> None:
    align = commands.add_parser("align", help="MAP: align an LM to a palette of value levels")
    steps = align.add_subparsers(dest="align_command", required=True, metavar="STEP")
    _add_sample(steps.add_parser("sample", help="reference samples and their rewards"))
    _add_solve(steps.add_parser("solve", help="lambda and feasibility of a palette"))
    _add_realise(steps.add_parser("realise", help="decode or fine-tune toward the palette"))
    _add_report(steps.add_parser("report", help="table and plots of a solved palette"))


def _add_sample(run: argparse.ArgumentParser) -> None:
    run.add_argument("--model", default="builtin", help="causal LM directory, or builtin")
    run.add_argument("--prompts", default="builtin", help="text file (one per line) or builtin")
    run.add_argument("--prompt-count", type=int, default=200, help="builtin prompts to draw")
    run.add_argument("--prompt-seed", type=int, default=1)
    run.add_argument("--values", default=DEFAULT_VALUES, help="comma-separated built-in values")
    run.add_argument("--reward-model", action="append", default=[], metavar="SPEC",
                     help="name=NAME;path=DIR[;read=raw|logit:K|prob:K][;format=pair|TEMPLATE]")
    run.add_argument("--n", type=int, default=16, help="continuations per prompt")
    run.add_argument("--max-new-tokens", type=int, default=24)
    run.add_argument("--temperature", type=float, default=1.0)
    run.add_argument("--top-p", type=float, default=1.0)
    run.add_argument("--top-k", type=int, default=0)
    run.add_argument("--batch-size", type=int, default=512)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", required=True, help="samples file to write (JSON lines)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_sample)


def _add_solve(run: argparse.ArgumentParser) -> None:
    run.add_argument("--samples", required=True)
    run.add_argument("--palette", required=True, help="name=LEVEL or name=qQUANTILE, ...")
    run.add_argument("--normalise", default="pooled", choices=NORMALISATIONS)
    run.add_argument("--tol", type=float, default=1e-9, help="level gap, in reward sd")
    run.add_argument("--max-iter", type=int, default=200)
    run.add_argument("--sequential-rounds", type=int, default=0)
    run.add_argument("--random-lambdas", type=int, default=0)
    run.add_argument("--raise", dest="raise_value", metavar="VALUE",
                     help="largest reachable level of VALUE, the others kept")
    run.add_argument("--toward", metavar="PALETTE", help="how far toward PALETTE stays reachable")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", help="write the solution (JSON) here")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_solve)


def _add_realise(run: argparse.ArgumentParser) -> None:
    run.add_argument("--samples", required=True)
    run.add_argument("--solution", required=True)
    run.add_argument("--method", required=True, choices=REALISE_METHODS)
    run.add_argument("--model", help="reference model directory (default: the samples' model)")
    run.add_argument("--prompts", default="builtin", help="fresh prompts: file or builtin")
    run.add_argument("--prompt-count", type=int, default=500)
    run.add_argument("--prompt-seed", type=int, default=2)
    run.add_argument("--m", type=int, help="decode: candidates per prompt (default: samples' n)")
    run.add_argument("--eval-n", type=int, default=4, help="fine-tune: fresh outputs per prompt")
    defaults = FinetuneSettings()
    run.add_argument("--epochs", type=int, default=defaults.epochs)
    run.add_argument("--lr", type=float, default=defaults.lr)
    run.add_argument("--beta", type=float, default=defaults.beta)
    run.add_argument("--batch-size", type=int, default=defaults.batch_size)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", required=True, help="directory for outputs (and the model)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_realise)


def _add_report(run: argparse.ArgumentParser) -> None:
    run.add_argument("--solution", required=True)
    run.add_argument("--samples", required=True)
    run.add_argument("--realised", help="summary.json written by `align realise`")
    run.add_argument("--pareto", metavar="A,B", help="two palette values (default: the first two)")
    run.add_argument("--out", required=True, help="directory for table.md and the plots")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_report)


def read_json(path: str, role: str, required: tuple[str, ...]) -> dict[str, Any]:
    where = Path(path)
    if not where.is_file():
        raise DataError(f"{role} file {path!r} does not exist")
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{role} file {path!r}: not JSON ({exc.msg}, line {exc.lineno})") from exc
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise DataError(f"{role} file {path!r}: missing field {missing[0]!r}")
    return data


def cmd_sample(args: argparse.Namespace) -> int:
    from llm_modules.alignment.map.model_rewards import RewardModelSpec
    from llm_modules.alignment.map.rewards import ScoringContext, build_scorers
    from llm_modules.alignment.map.sampling import (
        GenerationSettings,
        load_prompts,
        resolve_model,
        sample_reference,
    )

    settings = GenerationSettings(args.n, args.max_new_tokens, args.temperature, args.top_p,
                                  args.top_k, args.batch_size, args.seed)
    settings.check()
    specs = [RewardModelSpec.parse(text) for text in args.reward_model]
    names = [n.strip() for n in args.values.split(",") if n.strip()]
    prompts = load_prompts(args.prompts, args.prompt_count, args.prompt_seed)
    context = ScoringContext()
    scorers = build_scorers(names, context, specs)  # bad values fail before any model work
    model_dir = context.reference = resolve_model(args.model, log=progress)
    context.reference_model()  # a bad model path fails here, before any generation
    progress(f"sampling {settings.n_per_prompt} continuations for each of {len(prompts)} "
             f"prompts from {model_dir}")
    source = {"prompt_source": args.prompts, "prompt_seed": args.prompt_seed}
    path, rewards = sample_reference(model_dir, prompts, scorers, context, settings, args.out,
                                     source, log=progress)
    result = {"out": str(path), "samples": len(rewards), "values": [s.name for s in scorers],
              "mean": rewards.mean(axis=0).tolist(), "model": str(model_dir)}
    human = "\n".join(f"{s.name:16s} mean {m:9.4f}" for s, m in zip(scorers, result["mean"],
                                                                     strict=True))
    emit(result, args.json, f"{human}\n{len(rewards)} samples written to {path}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    from llm_modules.alignment.map.palette import analyse, parse_palette, raise_value, solve, toward
    from llm_modules.alignment.map.samples import read_samples
    from llm_modules.alignment.map.solver import SolverSettings

    if args.tol <= 0 or args.max_iter < 1 or args.sequential_rounds < 0 or args.random_lambdas < 0:
        raise Pv4fadError("need --tol > 0, --max-iter >= 1 and non-negative counts")
    samples = read_samples(args.samples)
    palette = parse_palette(args.palette, samples)
    other = parse_palette(args.toward, samples, "--toward") if args.toward else None
    if args.raise_value and args.raise_value not in palette.values:
        raise Pv4fadError(f"--raise {args.raise_value!r} is not in the palette "
                          f"({', '.join(palette.values)})")
    if other is not None and other.values != palette.values:
        raise Pv4fadError("--toward must name the same values in the same order as --palette "
                          f"({', '.join(palette.values)})")
    settings = SolverSettings(args.tol, args.max_iter)
    solution = solve(samples, palette, args.normalise, settings)
    result = {"samples_file": args.samples, **solution.to_json(),
              **analyse(samples, palette, solution, args.normalise, args.sequential_rounds,
                        args.random_lambdas, args.seed)}
    if args.raise_value:
        result["raise"] = raise_value(samples, palette, args.raise_value, args.normalise,
                                      settings)
    if other is not None:
        result["toward"] = toward(samples, palette, other, args.normalise, settings)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    emit(result, args.json, _solve_text(result))
    return 0 if solution.feasible else 1


def _solve_text(result: dict[str, Any]) -> str:
    lines = [f"{'value':16s} {'palette':>10s} {'lambda':>10s} {'level':>10s} {'p0':>10s}"]
    for i, name in enumerate(result["values"]):
        lam = "-" if result["lambda"] is None else f"{result['lambda'][i]:.4g}"
        level = "-" if result["levels"] is None else f"{result['levels'][i]:.4g}"
        lines.append(f"{name:16s} {result['palette'][i]:10.4g} {lam:>10s} {level:>10s} "
                     f"{result['reference_levels'][i]:10.4g}")
    lines.append(("feasible: " if result["feasible"] else "INFEASIBLE: ")
                 + result["verdict"]["reason"])
    if result["feasible"]:
        lines.append(f"KL {result['kl']:.4f} nats, ESS {result['ess']:.0f}/{result['samples']}, "
                     f"{result['iterations']} iterations, {result['seconds'] * 1000:.1f} ms")
    for row in result.get("sequential", []):
        lines.append(f"sequential round {row['round']}: missed {row['missed'] or 'none'}, "
                     f"KL - MAP's {row['kl_minus_map']:+.4f}")
    return "\n".join(lines)


def cmd_realise(args: argparse.Namespace) -> int:
    from llm_modules.alignment.map.realisation import RealiseRequest, realise

    solution = read_json(args.solution, "solution", ("values", "palette", "lambda", "feasible",
                                                     "verdict", "normalise"))
    if not solution["feasible"]:
        raise Pv4fadError(f"solution {args.solution!r} is infeasible "
                          f"({solution['verdict']['reason']}): nothing to realise")
    if args.prompt_count < 1 or args.eval_n < 1 or (args.m is not None and args.m < 1):
        raise Pv4fadError("--prompt-count, --eval-n and --m must be at least 1")
    finetune = FinetuneSettings(args.method, args.epochs, args.lr, args.batch_size, args.beta,
                                seed=args.seed)
    if args.method != "decode":
        finetune.check()
    request = RealiseRequest(args.samples, args.method, args.out, args.model, args.prompts,
                             args.prompt_count, args.prompt_seed, args.m, args.eval_n,
                             args.seed)
    summary = realise(request, solution, finetune, log=progress)
    after = summary["after"]
    human = "\n".join(
        f"{name:16s} target {t:9.4g}  before {b:9.4g}  after {a:9.4g} ± {ci:.2g}  "
        f"{'reached' if ok else 'NOT reached'}"
        for name, t, b, a, ci, ok in zip(after["values"], after["target"],
                                         summary["before"]["mean"], after["mean"],
                                         after["ci95"], after["reached"], strict=True))
    emit(summary, args.json, f"{human}\nwritten to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from llm_modules.alignment.map.report import pareto_frontier, write_report
    from llm_modules.alignment.map.samples import read_samples

    solution = read_json(args.solution, "solution", ("values", "palette", "lambda", "levels",
                                                     "levels_ci95", "reference_levels",
                                                     "feasible", "verdict", "normalise"))
    realised = read_json(args.realised, "realised summary", ("before", "after")) \
        if args.realised else None
    samples = read_samples(args.samples)
    names = solution["values"]
    pair = tuple(p.strip() for p in args.pareto.split(",")) if args.pareto else tuple(names[:2])
    frontier = None
    if len(pair) == 2 and len(set(pair)) == 2 and set(pair) <= set(names):
        groups = samples.prompt_index if solution["normalise"] == "per-prompt" else None
        lam = None if solution["lambda"] is None else np.asarray(solution["lambda"])
        frontier = pareto_frontier(samples.columns(names), np.asarray(solution["palette"]),
                                   (names.index(pair[0]), names.index(pair[1])), lam,
                                   solution.get("kl"), groups)
    elif args.pareto:
        raise Pv4fadError(f"--pareto {args.pareto!r}: name two different palette values "
                          f"({', '.join(names)})")
    files = write_report(args.out, solution, realised, frontier,
                         pair if frontier is not None else None)
    emit({"files": files, "pareto": list(pair) if frontier else None}, args.json,
         "\n".join(f"{key:12s} {path}" for key, path in files.items()))
    return 0
