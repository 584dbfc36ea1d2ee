"""Labelled text examples and their files (JSON lines or CSV with a text and a label column).

Files are validated once, here: a missing file, a malformed line, a missing field or a label
outside the declared classes is a one-line `DataError` naming the file and the line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.errors import DataError


@dataclass(frozen=True)
class Example:
    """One input text and its class name."""

    text: str
    label: str


def load_examples(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    text_field: str = "text",
    label_field: str = "label",
    role: str = "examples",
) -> list[Example]:
    """Read `.jsonl` or `.csv` examples; labels must be among `classes` when given."""
    where = Path(path)
    if not where.is_file():
        raise DataError(f"{role} file {str(path)!r} does not exist")
    if where.suffix.lower() == ".csv":
        rows = _csv_rows(where, text_field, label_field)
    else:
        rows = _jsonl_rows(where, text_field, label_field)
    known = set(classes) if classes is not None else None
    examples = []
    for location, text, label in rows:
        if known is not None and label not in known:
            raise DataError(
                f"{location}: label {label!r} is not one of the classes {sorted(known)}"
            )
        examples.append(Example(text, label))
    if not examples:
        raise DataError(f"{role} file {str(path)!r} is empty: it has no examples")
    return examples


def _jsonl_rows(where: Path, text_field: str, label_field: str) -> list[tuple[str, str, str]]:
    rows = []
    with where.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{where}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{location}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{location}: expected a JSON object per line")
            rows.append((location, *_fields(record, location, text_field, label_field)))
    return rows


def _csv_rows(where: Path, text_field: str, label_field: str) -> list[tuple[str, str, str]]:
    with where.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in (text_field, label_field) if name not in header]
        if missing:
            raise DataError(
                f"{where}: no column(s) {', '.join(missing)} in the header {header} "
                f"(choose them with --text-field / --label-field)"
            )
        return [
            (f"{where}:{line_no}", *_fields(row, f"{where}:{line_no}", text_field, label_field))
            for line_no, row in enumerate(reader, start=2)
        ]


def _fields(record: dict, location: str, text_field: str, label_field: str) -> tuple[str, str]:
    missing = [name for name in (text_field, label_field) if record.get(name) in (None, "")]
    if missing:
        raise DataError(f"{location}: missing field(s) {', '.join(missing)}")
    return str(record[text_field]), str(record[label_field])


def save_examples(examples: Sequence[Example], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({"text": example.text, "label": example.label}) + "\n")
    return out
