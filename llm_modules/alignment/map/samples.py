"""Reference samples with their reward matrix, stored as JSON lines.

The first line is the header: `{"header": {"format": "pv4fad-map-samples", "version": 1,
"model", "prompts", "generation", "seed", "values", ...}}`. Every later line is one sample:
`{"prompt_index", "prompt", "continuation", "rewards": {value: float}}`. A malformed line, a
missing field or a missing or non-finite reward is a one-line DataError naming file and line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import DataError

FORMAT = "pv4fad-map-samples"
VERSION = 1


@dataclass(frozen=True)
class SampleSet:
    """Samples y_j ~ p0(.|x_j) and their rewards r_j, one row per sample."""

    header: dict[str, Any]
    prompts: tuple[str, ...]
    prompt_index: np.ndarray  # [n] index into `prompts`
    continuations: tuple[str, ...]
    values: tuple[str, ...]
    rewards: np.ndarray  # [n, k] float64, columns in `values` order

    def __len__(self) -> int:
        return len(self.continuations)

    def columns(self, names: Sequence[str], where: str = "samples") -> np.ndarray:
        """The reward columns of `names`, in that order."""
        missing = [name for name in names if name not in self.values]
        if missing:
            raise DataError(
                f"{where}: no rewards for {', '.join(map(repr, missing))} "
                f"(the samples carry {', '.join(self.values)})"
            )
        return self.rewards[:, [self.values.index(name) for name in names]]


def write_samples(
    path: str | Path,
    header: dict[str, Any],
    prompts: Sequence[str],
    prompt_index: Sequence[int],
    continuations: Sequence[str],
    values: Sequence[str],
    rewards: np.ndarray,
) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, **header, "prompts": list(prompts),
              "values": header.get("values", list(values))}
    with out.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"header": header}) + "\n")
        for index, continuation, row in zip(prompt_index, continuations, rewards, strict=True):
            record = {
                "prompt_index": int(index),
                "prompt": prompts[index],
                "continuation": continuation,
                "rewards": {name: float(v) for name, v in zip(values, row, strict=True)},
            }
            handle.write(json.dumps(record) + "\n")
    return out


def value_names(header: dict[str, Any]) -> tuple[str, ...]:
    """Value names from the header's `values` (names or {"name": ...} specs)."""
    return tuple(v["name"] if isinstance(v, dict) else str(v) for v in header["values"])


def _read_header(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:1: not JSON ({exc.msg}); expected the samples header") from exc
    header = record.get("header") if isinstance(record, dict) else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f"{where}:1: not a {FORMAT} header (write it with `pv4fad llm align "
                        "sample`)")
    for key in ("prompts", "values"):
        if not isinstance(header.get(key), list) or not header[key]:
            raise DataError(f"{where}:1: header field {key!r} is missing or empty")
    return header


def _read_row(line: str, where: str, values: tuple[str, ...], n_prompts: int):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key in ("prompt_index", "continuation", "rewards"):
        if key not in record:
            raise DataError(f"{where}: missing field {key!r}")
    index, rewards = record["prompt_index"], record["rewards"]
    if not isinstance(index, int) or not 0 <= index < n_prompts:
        raise DataError(f"{where}: prompt_index {index!r} is not in 0..{n_prompts - 1}")
    if not isinstance(rewards, dict):
        raise DataError(f"{where}: 'rewards' must be an object of value -> number")
    row = []
    for name in values:
        value = rewards.get(name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise DataError(f"{where}: reward {name!r} is missing or not a finite number "
                            f"(found {value!r})")
        row.append(float(value))
    return index, str(record["continuation"]), row


def read_samples(path: str | Path) -> SampleSet:
    """Read and check a samples file written by `write_samples`."""
    where = Path(path)
    if not where.is_file():
        raise DataError(f"samples file {str(path)!r} does not exist")
    with where.open(encoding="utf-8") as handle:
        first = handle.readline()
        if not first.strip():
            raise DataError(f"{path}:1: empty file; expected the samples header")
        header = _read_header(first, str(path))
        values = value_names(header)
        indices, continuations, rows = [], [], []
        for line_no, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            index, text, row = _read_row(line, f"{path}:{line_no}", values,
                                         len(header["prompts"]))
            indices.append(index)
            continuations.append(text)
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: the header is followed by no samples")
    return SampleSet(header, tuple(header["prompts"]), np.asarray(indices),
                     tuple(continuations), values, np.asarray(rows, dtype=np.float64))
