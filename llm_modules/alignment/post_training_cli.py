"""`pv4fad llm post-train | post-training-task | bench-post-training`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from federation.cli import emit, progress
from llm_modules.alignment.post_training import METHODS, SCHEDULES, PostTrainConfig
from llm_modules.alignment.post_training_run import (
    LoraSettings,
    PostTrainingData,
    run_post_training,
)


def register_llm(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("post-train", help="SFT and DPO post-training, joint or sequential")
    run.add_argument("--model", required=True, help="saved Hugging Face causal LM directory")
    run.add_argument("--sft", required=True, help="SFT examples (JSON lines: prompt, response)")
    run.add_argument("--preference", required=True,
                     help="preference pairs (JSON lines: prompt, chosen, rejected)")
    run.add_argument("--sft-eval", help="held-out SFT examples (with --preference-eval)")
    run.add_argument("--preference-eval", help="held-out preference pairs")
    run.add_argument("--method", default="alright", choices=list(METHODS))
    run.add_argument("--lambda", dest="lam", type=float, default=0.5,
                     help="weight on DPO in (1 - lambda) f_SFT + lambda f_DPO")
    run.add_argument("--steps", type=int, default=300, help="optimizer steps in all")
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--beta", type=float, default=0.1, help="DPO inverse temperature")
    run.add_argument("--schedule", default="constant", choices=SCHEDULES)
    run.add_argument("--warmup-steps", type=int, default=0)
    run.add_argument("--refresh-every", type=int, default=10,
                     help="MAXRIGHT: re-evaluate both gaps every this many steps")
    run.add_argument("--sft-opt", type=float, default=0.0, help="f_SFT* for MAXRIGHT (0: unknown)")
    run.add_argument("--dpo-opt", type=float, default=0.0, help="f_DPO* for MAXRIGHT (0: unknown)")
    run.add_argument("--ref-model", help="reference model for DPO (default: the starting model)")
    run.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of this rank")
    run.add_argument("--lora-alpha", type=float, default=16.0)
    run.add_argument("--eval-every", type=int, default=0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", help="directory for the post-trained model")
    run.add_argument("--federated", action="store_true",
                     help="run as a one-node Flower federation: the data owner trains and keeps "
                          "the data and the model; the coordinator gets metrics and a digest")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_post_train)

    task = commands.add_parser("post-training-task",
                               help="write the built-in task's data files and base model")
    task.add_argument("--out", required=True)
    task.add_argument("--seed", type=int, default=0)
    task.add_argument("--quick", action="store_true", help="the quick benchmark's smaller task")
    task.add_argument("--json", action="store_true")
    task.set_defaults(func=cmd_task)

    bench = commands.add_parser("bench-post-training",
                                help="built-in benchmark: every method at lambda 0.25/0.5/0.75")
    bench.add_argument("--quick", action="store_true", help="1 seed, shorter runs")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3, quick 1)")
    bench.add_argument("--out", help="directory for result.json and trajectories.png")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)


def _config(args: argparse.Namespace) -> PostTrainConfig:
    config = PostTrainConfig(
        method=args.method, lam=args.lam, steps=args.steps, lr=args.lr,
        batch_size=args.batch_size, beta=args.beta, schedule=args.schedule,
        warmup_steps=args.warmup_steps, refresh_every=args.refresh_every,
        sft_opt=args.sft_opt, dpo_opt=args.dpo_opt, eval_every=args.eval_every, seed=args.seed,
    )
    config.check()  # before any file is read or model loaded
    return config


def cmd_post_train(args: argparse.Namespace) -> int:
    config = _config(args)
    data = PostTrainingData.from_files(args.sft, args.preference, args.sft_eval,
                                       args.preference_eval)
    lora = LoraSettings(args.lora_rank, args.lora_alpha) if args.lora_rank else None
    if args.federated:
        from server.post_training import FederatedPostTrainingConfig, run_federated_post_training

        federated = FederatedPostTrainingConfig(
            str(args.model), config, reference_path=args.ref_model or "",
            lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        )
        progress("starting a one-node federation: the data owner trains locally")
        result = run_federated_post_training(data, federated, args.out or "")
    else:
        def on_eval(step: int, f_sft: float, f_dpo: float) -> None:
            progress(f"step {step}/{config.steps}: held-out f_SFT {f_sft:.4f} f_DPO {f_dpo:.4f}")

        result = run_post_training(args.model, data, config, reference_path=args.ref_model,
                                   lora=lora, out_dir=args.out, on_eval=on_eval)
    emit(result, args.json, _human(result))
    return 0


def _human(result: dict) -> str:
    lines = [f"{result['method']} (lambda {result['lambda']}), {result['steps']} steps: "
             f"{result['updates']['sft']} SFT and {result['updates']['dpo']} DPO gradients"]
    for split in ("train", "held_out"):
        if result.get(split):
            lines.append(f"{split:9s} f_SFT {result[split]['f_sft']:.4f}  "
                         f"f_DPO {result[split]['f_dpo']:.4f}")
    lines.append(f"model digest {result['digest']}")
    if result.get("out"):
        lines.append(f"model written to {result['out']}")
    return "\n".join(lines)


def cmd_task(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from llm_modules.alignment.post_training_bench import build_base, settings
    from llm_modules.alignment.post_training_data import save_jsonl
    from llm_modules.models import save_causal_lm

    progress(f"generating the task for seed {args.seed} and training its base model")
    bench = settings(args.quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more intra-op threads only add contention
    try:
        model, tokenizer, task, loss = build_base(args.seed, replace(bench, seeds=(args.seed,)))
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out)
    files = {
        "sft": task.sft_train, "preference": task.preference_train,
        "sft_eval": task.sft_eval, "preference_eval": task.preference_eval,
    }
    written = {name: str(save_jsonl(rows, out / f"{name}.jsonl")) for name, rows in files.items()}
    written["model"] = str(save_causal_lm(model, tokenizer, out / "base"))
    result = {"files": written, "base_loss": loss, "seed": args.seed}
    emit(result, args.json, "\n".join(f"{k:16s} {v}" for k, v in written.items()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from llm_modules.alignment.post_training_bench import run_benchmark
    from llm_modules.alignment.post_training_report import plot_trajectories, summary_tables

    out = Path(args.out) if args.out else None

    def keep(result: dict) -> None:
        if out is not None:  # after every seed, so an interrupted run keeps what it finished
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.json").write_text(json.dumps(result, indent=1))

    result = run_benchmark(args.quick, args.seeds, log=progress, on_seed=keep)
    if out is not None:
        plot_trajectories(result, out / "trajectories.png")
    emit(result, args.json, summary_tables(result))
    return 0
