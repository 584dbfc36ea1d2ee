"""Read and validate challenge-format data once, at the boundary.

Every public reader returns validated pandas frames; every problem raises `DataError` with
one line naming the file, the line or column, what was expected and what was found.
Strings come back as Arrow-backed `string` columns (compact at millions of rows),
`Timestamp` as datetime64[s], `SettlementDate` as the original yymmdd integer, `Flags` as
two-character strings, and `MessageId` as an ordinary column (the index is a RangeIndex).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from federation.data import schema
from federation.errors import DataError

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
}
_INVALID_VALUE = re.compile(
    r"In CSV column #(\d+): CSV conversion error to ([^:]+): invalid value '(.*)'"
)


def list_scenarios(root: str | Path) -> list[str]:
    """Scenario names listed in `<root>/scenarios.txt`, in file order."""
    path = Path(root) / schema.SCENARIOS_FILE
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the list of scenario names)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: empty file (expected one scenario name per line)")
    return names


def partitions(
    root: str | Path, scenario: str, stage: str, client: str | None = None
) -> dict[str, list[Path]]:
    """Client id -> the files it holds, from `<root>/<scenario>/<stage>/partitions.json`.

    `swift` is the payment network; `bankNN` are bank clients (each may hold several banks'
    files). Entries may be `{"swift_data_path": p}`, `{"bank_data_path": p or [p, ...]}`,
    a path or a list of paths; relative paths are taken from the partitions.json folder.
    With `client`, only that client's files are resolved: a deployed party holds only its
    own files.
    """
    root = Path(root)
    listed = list_scenarios(root)
    if scenario not in listed:
        raise DataError(
            f"{root / schema.SCENARIOS_FILE}: scenario {scenario!r} not listed "
            f"(listed: {', '.join(listed)})"
        )
    _check_stage(stage)
    path = root / scenario / stage / schema.PARTITIONS_FILE
    entries = _read_json_object(path)
    if schema.PNS_CLIENT_ID not in entries:
        raise DataError(
            f"{path}: no {schema.PNS_CLIENT_ID!r} client (expected the payment network's "
            f"entry; found {', '.join(sorted(entries)) or 'none'})"
        )
    if client is not None:
        if client not in entries:
            kind = "bank client" if client != schema.PNS_CLIENT_ID else "client"
            banks = sorted(c for c in entries if c != schema.PNS_CLIENT_ID)
            raise DataError(f"{path}: no {kind} {client!r} (expected one of {', '.join(banks)})")
        entries = {client: entries[client]}
    return {cid: _entry_files(path, cid, entry) for cid, entry in entries.items()}


def load_transactions(root: str | Path, scenario: str, stage: str,
                      columns: Collection[str] | None = None) -> pd.DataFrame:
    """The payment network's (`swift`) validated transactions of one scenario and stage
    (only `columns`, when given: the other columns are parsed but not kept)."""
    files = partitions(root, scenario, stage, schema.PNS_CLIENT_ID)[schema.PNS_CLIENT_ID]
    return _concat([read_transactions(f, require_label=stage == "train", columns=columns)
                    for f in files])


def load_bank_client(root: str | Path, scenario: str, stage: str, cid: str) -> pd.DataFrame:
    """All account rows held by bank client `cid` (possibly several banks), validated."""
    if cid == schema.PNS_CLIENT_ID:
        raise DataError(f"{Path(root) / scenario / stage / schema.PARTITIONS_FILE}: "
                        f"{cid!r} is the payment network, not a bank client")
    parts = partitions(root, scenario, stage, cid)
    frames = [read_accounts(f) for f in parts[cid]]
    accounts = _concat(frames)
    _check_unique_accounts(accounts, ", ".join(str(f) for f in parts[cid]))
    return accounts


def load_centralized(root: str | Path, stage: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, accounts) of the centralized layout `<root>/centralized/<stage>/`."""
    _check_stage(stage)
    path = Path(root) / schema.CENTRALIZED_DIR / stage / schema.CENTRALIZED_INDEX
    index = _read_json_object(path)
    files = {}
    for key in (schema.SWIFT_PATH_KEY, schema.BANK_PATH_KEY):
        if key not in index:
            raise DataError(f"{path}: missing key {key!r} (found {', '.join(sorted(index))})")
        files[key] = _resolve(path, "centralized", index[key])
    tx = read_transactions(files[schema.SWIFT_PATH_KEY], require_label=stage == "train")
    accounts = read_accounts(files[schema.BANK_PATH_KEY])
    return tx, accounts


def read_transactions(path: str | Path, *, require_label: bool = True,
                      columns: Collection[str] | None = None) -> pd.DataFrame:
    """One transactions CSV, validated (columns, types, dates, unique MessageId, labels).

    With `columns`, only those are converted, checked and returned (in file order); every
    line is still parsed, so a ragged line is an error whatever the columns.
    """
    path = Path(path)
    optional = set() if require_label else set(schema.OPTIONAL_TRANSACTION_COLUMNS)
    header = _check_header(path, schema.TRANSACTION_COLUMNS, optional)
    if columns is not None:
        unknown = sorted(set(columns) - set(schema.TRANSACTION_COLUMNS))
        if unknown:
            raise DataError(f"{path}: no transaction column {', '.join(unknown)} (expected "
                            f"some of {', '.join(schema.TRANSACTION_COLUMNS)})")
    kept = [c for c in header if columns is None or c in columns]
    types = {c: pa.string() for c in kept}
    types.update({c: _ARROW_TYPES[t] for c, t in schema.NUMERIC_COLUMNS.items() if c in kept})
    if "Timestamp" in kept:
        types["Timestamp"] = pa.timestamp("s")
    df = _read_csv(path, header, types, kept)
    _check_non_null(df, path, tuple(c for c in schema.REQUIRED_NON_NULL if c in df))
    if "SettlementDate" in df:
        _check_settlement_dates(df["SettlementDate"].to_numpy(), path)
    for col in ("SettlementAmount", "InstructedAmount"):
        if col in df:
            bad = ~np.isfinite(df[col].to_numpy()) | (df[col].to_numpy() < 0)
            _raise_first(bad, path, col, "a finite amount >= 0", df[col])
    if "Label" in df:
        _raise_first(~df["Label"].isin([0, 1]).to_numpy(), path, "Label", "0 or 1", df["Label"])
    if "MessageId" in df:
        dup = df["MessageId"].duplicated().to_numpy()
        _raise_first(dup, path, "MessageId", "a unique MessageId", df["MessageId"])
    return df


def read_accounts(path: str | Path) -> pd.DataFrame:
    """One bank accounts CSV, validated (columns, known two-character flag codes)."""
    path = Path(path)
    header = _check_header(path, schema.ACCOUNT_COLUMNS, set())
    df = _read_csv(path, header, {c: pa.string() for c in header})
    _check_non_null(df, path, ("Bank", "Account", "Flags"))
    known = df["Flags"].isin(list(schema.FLAG_CODES)).to_numpy()
    _raise_first(~known, path, "Flags", f"a flag code in {sorted(schema.FLAG_CODES)}", df["Flags"])
    _check_unique_accounts(df, str(path))
    return df


def _check_stage(stage: str) -> None:
    if stage not in schema.STAGES:
        raise DataError(f"stage {stage!r}: expected one of {', '.join(schema.STAGES)}")


def _read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty JSON object, found {type(data).__name__}")
    return data


def _entry_files(path: Path, cid: str, entry: Any) -> list[Path]:
    if isinstance(entry, dict):
        keys = [k for k in (schema.SWIFT_PATH_KEY, schema.BANK_PATH_KEY) if k in entry]
        if len(keys) != 1:
            raise DataError(
                f"{path}: client {cid!r} needs exactly one of {schema.SWIFT_PATH_KEY!r}, "
                f"{schema.BANK_PATH_KEY!r} (found keys {', '.join(sorted(entry)) or 'none'})"
            )
        entry = entry[keys[0]]
    items = entry if isinstance(entry, list) else [entry]
    if not items:
        raise DataError(f"{path}: client {cid!r} names no file")
    return [_resolve(path, cid, item) for item in items]


def _resolve(index_path: Path, cid: str, item: Any) -> Path:
    if not isinstance(item, str):
        raise DataError(f"{index_path}: client {cid!r}: expected a file path, found {item!r}")
    file = Path(item) if Path(item).is_absolute() else index_path.parent / item
    if not file.is_file():
        raise DataError(f"{index_path}: client {cid!r} names missing file {file}")
    return file


def _check_header(path: Path, expected: tuple[str, ...], optional: set[str]) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
            has_row = fh.readline().strip() != ""
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    if not header:
        raise DataError(f"{path}: empty file (expected a header with {', '.join(expected)})")
    missing = [c for c in expected if c not in header and c not in optional]
    unexpected = [c for c in header if c not in expected]
    if missing and len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(sep for sep in ";\t|" if sep in header[0])
        raise DataError(f"{path}: header: one column {header[0][:60]!r}: the file looks "
                        f"separated by {sep!r}; the challenge format is comma-separated "
                        f"(expected {', '.join(expected)})")
    if missing or unexpected:
        raise DataError(
            f"{path}: header: missing column(s) {missing or 'none'}, unexpected column(s) "
            f"{unexpected or 'none'} (expected {', '.join(expected)})"
        )
    if len(set(header)) != len(header):
        raise DataError(f"{path}: header: duplicate column names in {header}")
    if not has_row:
        raise DataError(f"{path}: no data rows (header only)")
    return header


def _read_csv(path: Path, header: list[str], types: dict[str, pa.DataType],
              columns: list[str] | None = None) -> pd.DataFrame:
    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=columns or [],
        timestamp_parsers=[schema.TIMESTAMP_FORMAT],
        strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(invalid_row_handler=on_invalid_row)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise _utf8_error(path) from None
        if bad_rows:
            row = bad_rows[0]
            line = row.number if row.number is not None else _first_ragged_line(path)
            raise DataError(
                f"{path}: line {line}: expected {row.expected_columns} fields, found "
                f"{row.actual_columns}"
            ) from None
        raise _conversion_error(path, header, str(exc)) from None
    frame = table.to_pandas(types_mapper=_string_dtype)
    del table
    release_freed_memory()  # the parser's buffers
    return frame


def release_freed_memory() -> None:
    """Hand the memory that Arrow's allocator keeps after a free back to the system (freed
    buffers otherwise still count in the process's resident size)."""
    pa.default_memory_pool().release_unused()


def _utf8_error(path: Path) -> DataError:
    """Where a file stops being UTF-8 text (slow path: only once a read has failed)."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(f"{path}: line {number}: expected UTF-8 text, found byte "
                                 f"0x{line[exc.start]:02x} at character {exc.start + 1}")
    return DataError(f"{path}: expected UTF-8 text")


def _first_ragged_line(path: Path) -> int | str:
    """Line number of the first row whose field count differs from the header's (slow path)."""
    # Undecodable bytes count as characters here: this only counts fields.
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        width = len(next(reader))
        for row in reader:
            if len(row) != width:
                return reader.line_num
    return "?"


def _string_dtype(arrow_type: pa.DataType) -> Any:
    return pd.StringDtype("pyarrow") if arrow_type == pa.string() else None


def _conversion_error(path: Path, header: list[str], message: str) -> DataError:
    """Turn Arrow's conversion error into one line with the column and the line number."""
    match = _INVALID_VALUE.search(message)
    if not match:
        return DataError(f"{path}: {message.splitlines()[0]}")
    column, expected, value = header[int(match[1])], match[2], match[3]
    expected = schema.TIMESTAMP_FORMAT if expected.startswith("timestamp") else expected
    raw = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=[column], column_types={column: pa.string()}
        ),
    ).column(0)
    hits = np.flatnonzero(raw.to_numpy(zero_copy_only=False) == value)
    line = f"line {int(hits[0]) + 2}, " if hits.size else ""
    return DataError(f"{path}: {line}column {column}: expected {expected}, found {value!r}")


def _raise_first(bad: np.ndarray, path: Path, column: str, expected: str, values: Any) -> None:
    """Raise for the first True in `bad`; line numbers count the header as line 1."""
    if bad.any():
        i = int(np.argmax(bad))
        found = values.iloc[i] if hasattr(values, "iloc") else values[i]
        found = found.item() if isinstance(found, np.generic) else found  # 7, not np.int64(7)
        raise DataError(
            f"{path}: line {i + 2}, column {column}: expected {expected}, found {found!r}"
        )


def _check_non_null(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    for col in columns:
        empty = df[col].isna().to_numpy()
        if df[col].dtype == pd.StringDtype("pyarrow"):
            empty |= (df[col] == "").to_numpy()
        _raise_first(empty, path, col, "a value", df[col])


def _check_settlement_dates(values: np.ndarray, path: Path) -> None:
    """SettlementDate is yymmdd: check that each is a real calendar date."""
    year, month, day = 2000 + values // 10000, values // 100 % 100, values % 100
    dates = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce"
    )
    bad = dates.isna().to_numpy() | (values < 0) | (values > 991231)
    _raise_first(bad, path, "SettlementDate", "a yymmdd date such as 220103", values)


def _check_unique_accounts(accounts: pd.DataFrame, where: str) -> None:
    dup = accounts.duplicated(["Bank", "Account"]).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise DataError(
            f"{where}: row {i + 1}: expected each (Bank, Account) once, found "
            f"{accounts['Bank'].iloc[i]!r}, {accounts['Account'].iloc[i]!r} again"
        )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
