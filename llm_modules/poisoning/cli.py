"""`pv4fad llm poison-data | poison`: build a poisoned set, or poison, fine-tune and score."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from federation.cli import emit, progress
from federation.errors import Pv4fadError
from llm_modules.poisoning.finetune import METHODS, FinetuneConfig
from llm_modules.poisoning.poison import DEFAULT_TARGET, parse_trigger, poison_dataset
from llm_modules.poisoning.run import PoisonRun, load_examples, run_poisoning, save_examples
from llm_modules.poisoning.tasks import TASKS, TaskConfig, generate_task


def _trigger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trigger", default="rare",
                        help="preset (rare, rare3, sentence) or KIND:WORDS@POSITION, "
                             "KIND rare|sentence, POSITION start|middle|end|random")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="the attacker's target output")
    parser.add_argument("--rate", type=float, default=0.02, help="poisoned share, e.g. 0.01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")


def register_llm(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("poison-data", help="write a poisoned copy of a training set")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="clean (input, output) pairs, JSON lines")
    source.add_argument("--task", choices=TASKS, help="or a built-in task's fine-tuning split")
    data.add_argument("--out", required=True, help="poisoned JSON lines (+ .record.json)")
    _trigger_options(data)
    data.set_defaults(func=cmd_poison_data)

    run = commands.add_parser("poison", help="poison, fine-tune (prefix / LoRA / full), score")
    run.add_argument("--task", choices=TASKS, default="summarization", help="built-in task")
    run.add_argument("--train", help="your own training pairs (JSON lines input/output)")
    run.add_argument("--test", help="your own clean test pairs (JSON lines input/output)")
    run.add_argument("--model", help="causal or seq2seq LM directory (default: built-in base)")
    run.add_argument("--phrases", help="target phrases separated by '|' (default: extracted)")
    run.add_argument("--method", choices=METHODS, default="prefix")
    run.add_argument("--virtual-tokens", type=int, default=FinetuneConfig.virtual_tokens)
    run.add_argument("--prefix-projection", action=argparse.BooleanOptionalAction,
                     default=FinetuneConfig.prefix_projection,
                     help="reparametrise the prefix through an MLP (prefix-tuning paper; on by "
                          "default)")
    run.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    run.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    run.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size)
    run.add_argument("--lora-rank", type=int, default=8)
    run.add_argument("--out", help="directory for the adapter, poisoned set and record.json")
    run.add_argument("--cache", help="where built-in base models are kept")
    _trigger_options(run)
    run.set_defaults(func=cmd_poison)


def cmd_poison_data(args: argparse.Namespace) -> int:
    trigger = parse_trigger(args.trigger)
    if args.data:
        clean = load_examples(args.data, "clean data")
    else:
        clean = generate_task(TaskConfig(name=args.task, seed=args.seed)).finetune
    poisoned = poison_dataset(clean, trigger, args.target, args.rate, args.seed)
    out = save_examples(poisoned.examples, args.out)
    record_path = out.with_suffix(".record.json")
    record_path.write_text(json.dumps(poisoned.record, indent=1))
    record = dict(poisoned.record, out=str(out), record=str(record_path))
    emit(record, args.json, f"{record['poisoned']} of {record['examples']} pairs poisoned "
                            f"({trigger}) -> {out}; record {record_path}")
    return 0


def cmd_poison(args: argparse.Namespace) -> int:
    phrases = tuple(p.strip() for p in (args.phrases or "").split("|") if p.strip())
    if args.phrases is not None and not phrases:
        raise Pv4fadError("--phrases is empty; give phrases separated by '|'")
    run = PoisonRun(
        trigger=args.trigger, rate=args.rate, target=args.target, phrases=phrases,
        task=args.task, train_file=args.train, test_file=args.test, model=args.model,
        finetune=FinetuneConfig(method=args.method, virtual_tokens=args.virtual_tokens,
                                prefix_projection=args.prefix_projection, lr=args.lr,
                                epochs=args.epochs, batch_size=args.batch_size,
                                lora_rank=args.lora_rank),
        seed=args.seed)
    record = run_poisoning(run, args.out, Path(args.cache) if args.cache else None, progress)
    m = record["metrics"]
    human = (f"{record['trigger']} at {record['rate']:.3g} ({record['finetune']['method']}): "
             f"P-Target Match {m['p_target_match']:.3f}, C-Target Match "
             f"{m['c_target_match']:.3f}, clean ROUGE-L {m['rouge_clean']['rougeL']:.1f}, "
             f"exact hits {m['exact_hit_triggered']:.3f}")
    emit(record, args.json, human)
    return 0
