"""Label-probability files: what `pv4fad llm calibrate probs` writes and `fit` / `evaluate`
read. One JSON object: the model, the prompt (template, label words, scoring), the
demonstrations, the class names, p_cf, and per example its text, label and probabilities."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_modules.calibration.calibrators import CalibrationError
from llm_modules.calibration.data import Example
from llm_modules.calibration.prompts import PromptError, PromptSpec, prompt_from_json


@dataclass(frozen=True)
class ProbabilityFile:
    model: str
    prompt: PromptSpec
    demonstrations: tuple[Example, ...]
    p_cf: np.ndarray
    examples: tuple[Example, ...]
    probs: np.ndarray  # [examples, K], not normalised

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.prompt.classes.index(e.label) for e in self.examples])


def save_probabilities(path: str | Path, model: str, prompt: PromptSpec,
                       demonstrations: Sequence[Example], p_cf: np.ndarray,
                       examples: Sequence[Example], probs: np.ndarray) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model, "prompt": prompt.to_json(), "classes": list(prompt.classes),
        "demonstrations": [[d.text, d.label] for d in demonstrations],
        "p_cf": [float(v) for v in p_cf],
        "examples": [{"text": e.text, "label": e.label, "probs": [float(v) for v in row]}
                     for e, row in zip(examples, probs, strict=True)],
    }
    out.write_text(json.dumps(record, indent=1))
    return out


def load_probabilities(path: str | Path) -> ProbabilityFile:
    """Read a probability file; anything missing or inconsistent is a one-line error."""
    where = Path(path)
    if not where.is_file():
        raise CalibrationError(f"probability file {str(path)!r} does not exist")
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
        prompt = prompt_from_json(record["prompt"], f"{where}: prompt")
        examples = tuple(Example(str(e["text"]), str(e["label"])) for e in record["examples"])
        probs = np.array([e["probs"] for e in record["examples"]], dtype=np.float64)
        demos = tuple(Example(str(t), str(lab)) for t, lab in record["demonstrations"])
        p_cf = np.array(record["p_cf"], dtype=np.float64)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{where}: not valid JSON ({exc.msg})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: not a probability file ({type(exc).__name__}: "
                               f"{exc})") from exc
    except PromptError as exc:
        raise CalibrationError(str(exc)) from exc
    k = len(prompt.classes)
    if not examples or probs.shape != (len(examples), k) or p_cf.shape != (k,):
        raise CalibrationError(f"{where}: expected at least one example and {k} probabilities "
                               f"per example and in p_cf")
    unknown = sorted({e.label for e in examples} - set(prompt.classes))
    if unknown:
        raise CalibrationError(f"{where}: labels {unknown} are not among {list(prompt.classes)}")
    return ProbabilityFile(str(record.get("model", "")), prompt, demos, p_cf, examples, probs)
