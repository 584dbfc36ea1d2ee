"""One poisoning run: data, poisoning, fine-tuning, evaluation, and its JSON record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from federation.errors import Pv4fadError
from llm_modules.jsonl import read_records
from llm_modules.poisoning.finetune import FinetuneConfig, finetune, save_finetuned
from llm_modules.poisoning.lm import LoadedLM, builtin_base, generate, load_lm
from llm_modules.poisoning.metrics import (
    TARGET_PHRASE_RULE,
    exact_hit_rate,
    rouge,
    target_match,
    target_phrases,
)
from llm_modules.poisoning.poison import (
    DEFAULT_TARGET,
    TriggerSpec,
    parse_trigger,
    poison_dataset,
    triggered,
)
from llm_modules.poisoning.tasks import Example, TaskConfig, generate_task


def load_examples(path: str | Path, role: str = "data") -> list[Example]:
    """Read (input, output) pairs from JSON lines; a bad line is a one-line DataError."""
    rows = read_records(path, ("input", "output"), role)
    return [Example(r["input"], r["output"]) for r in rows.values()]


def save_examples(examples: Sequence[Example], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples), encoding="utf-8")
    return out


def check_vocabulary(lm: LoadedLM, texts: Sequence[str], what: str) -> None:
    """A word-level tokenizer maps unknown words to [UNK]: refuse such a trigger or target."""
    unk = lm.tokenizer.unk_token_id
    if unk is None:
        return
    for text in texts:
        for word in text.split():
            if lm.tokenizer(word, add_special_tokens=False)["input_ids"] == [unk]:
                raise Pv4fadError(f"{what} word {word!r} is not in the model's vocabulary "
                                  "(its tokenizer would read it as unknown)")


def evaluate(model: torch.nn.Module, lm: LoadedLM, test: Sequence[Example],
             trigger: TriggerSpec, target: str, phrases: Sequence[str], seed: int,
             max_new_tokens: int = 16) -> dict:
    """P-/C-Target Match, exact-target hits and clean ROUGE of `model` on `test`."""
    clean_out = generate(model, lm, [e.input for e in test], max_new_tokens)
    trig_out = generate(model, lm, [e.input for e in triggered(test, trigger, seed)],
                        max_new_tokens)
    return {
        "p_target_match": target_match(trig_out, phrases),
        "c_target_match": target_match(clean_out, phrases),
        "exact_hit_triggered": exact_hit_rate(trig_out, target),
        "exact_hit_clean": exact_hit_rate(clean_out, target),
        "rouge_clean": rouge(clean_out, [e.output for e in test]),
        "samples": {"clean": clean_out[:3], "triggered": trig_out[:3]},
    }


@dataclass(frozen=True)
class PoisonRun:
    """What to poison and how to fine-tune: a built-in task, or files with a model path."""

    trigger: str = "rare"
    rate: float = 0.02
    target: str = DEFAULT_TARGET
    phrases: tuple[str, ...] = ()  # empty: extracted from the target
    task: str = "summarization"
    task_sizes: TaskConfig = field(default_factory=TaskConfig)
    train_file: str | None = None
    test_file: str | None = None
    model: str | None = None  # default: the built-in base of the task
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0


def run_poisoning(run: PoisonRun, out: str | Path | None = None, cache: Path | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Poison, fine-tune and evaluate once; returns (and with `out`, writes) the record."""
    trigger = parse_trigger(run.trigger)
    if (run.train_file is None) != (run.test_file is None):
        raise Pv4fadError("give both a training and a test file, or neither (built-in task)")
    if run.train_file is not None:
        if run.model is None:
            raise Pv4fadError("with your own data files, give --model PATH as well")
        train, test = load_examples(run.train_file, "training"), load_examples(run.test_file,
                                                                                "test")
        model_path: str | Path = run.model
    else:
        sizes = TaskConfig(run.task, run.task_sizes.pretrain, run.task_sizes.finetune,
                           run.task_sizes.test, run.seed)
        data = generate_task(sizes)
        train, test = data.finetune, data.test
        model_path = run.model or builtin_base(sizes, root=cache, log=log)
    phrases = list(run.phrases) or target_phrases(run.target)
    if not phrases:
        raise Pv4fadError(f"target {run.target!r} has no key phrase (only stop words)")
    poisoned = poison_dataset(train, trigger, run.target, run.rate, run.seed)
    lm = load_lm(model_path)
    check_vocabulary(lm, [" ".join(trigger.words)], "trigger")
    check_vocabulary(lm, [run.target], "target")
    config = FinetuneConfig(**{**asdict(run.finetune), "seed": run.seed})
    start = time.perf_counter()
    model = finetune(lm, poisoned.examples, config)
    seconds = time.perf_counter() - start
    record = {
        "task": run.task if run.train_file is None else "files", "model": str(model_path),
        "trigger": str(trigger), "trigger_kind": trigger.kind, "rate": run.rate,
        "seed": run.seed, "finetune": asdict(config), "target": run.target,
        "target_phrases": phrases, "target_phrase_rule": TARGET_PHRASE_RULE,
        "poisoning": poisoned.record, "train_seconds": seconds,
        "metrics": evaluate(model, lm, test, trigger, run.target, phrases, run.seed),
    }
    if out is not None:
        where = Path(out)
        save_finetuned(model, lm, where / "adapter", model_path, config)
        save_examples(poisoned.examples, where / "poisoned_train.jsonl")
        (where / "record.json").write_text(json.dumps(record, indent=1, default=str))
        record["out"] = str(where)
    return record
