"""Result cache for label probabilities: one SQLite file, keyed by model, prompt template and
label words, demonstrations and input, so reruns and federated parties reuse scores."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from federation.errors import Pv4fadError
from llm_modules.calibration.data import Example
from llm_modules.calibration.prompts import PromptSpec


def model_fingerprint(path: str | Path, dtype: str) -> str:
    """The model's identity for the cache: its resolved path, every file's size and
    modification time (a model retrained in place gets new entries) and the compute dtype."""
    root = Path(path).resolve()
    files = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*") if p.is_file()
    )
    blob = json.dumps([str(root), files, dtype]).encode()
    return hashlib.sha256(blob).hexdigest()


def entry_key(model: str, spec: PromptSpec, demonstrations: Sequence[Example], text: str) -> str:
    demos = [[d.text, d.label] for d in demonstrations]
    blob = json.dumps([model, spec.key(), demos, text], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


class ProbabilityCache:
    """Label probabilities by entry key; in memory only when `path` is None."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._memory: dict[str, list[float]] = {}
        self._db: sqlite3.Connection | None = None
        self.path = None if path is None else Path(path)
        if path is not None:
            where = Path(path)
            where.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(where, timeout=60.0)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS probs (key TEXT PRIMARY KEY, value TEXT)"
                )
            except sqlite3.DatabaseError as exc:
                raise Pv4fadError(
                    f"cache {str(path)!r} is not a usable SQLite file: {exc}"
                ) from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, list[float]]:
        found = {k: self._memory[k] for k in keys if k in self._memory}
        wanted = [k for k in keys if k not in found]
        if self._db is not None and wanted:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM probs WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update({key: json.loads(value) for key, value in rows})
        return found

    def put_many(self, entries: dict[str, list[float]]) -> None:
        self._memory.update(entries)
        if self._db is not None and entries:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO probs VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in entries.items()],
                )
