"""JSON-lines data files of string records, read with one-line errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

from federation.errors import DataError


def read_records(
    path: str | Path, fields: tuple[str, ...], role: str
) -> dict[int, dict[str, str]]:
    """The records of a JSON-lines file by line number, each with `fields` as non-empty
    strings; a bad line is a one-line DataError naming the file and line."""
    where = Path(path)
    if not where.is_file():
        raise DataError(f"{role} file {str(path)!r} does not exist")
    rows: dict[int, dict[str, str]] = {}
    with where.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{where}:{line_no}: expected a JSON object per line")
            bad = [f for f in fields if not isinstance(record.get(f), str) or not record[f].strip()]
            if bad:
                raise DataError(
                    f"{where}:{line_no}: missing or empty field(s) {', '.join(bad)} "
                    f"(a {role} record needs {', '.join(fields)} as strings)"
                )
            rows[line_no] = {f: record[f] for f in fields}
    if not rows:
        raise DataError(f"{role} file {str(path)!r} is empty")
    return rows
