"""The `pv4fad` command line.

Each command group lives next to the code it drives and exposes `register(subparsers)`;
this module only assembles them. Results go to stdout (one JSON object with `--json`),
progress goes to stderr, and project errors become one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from federation.errors import Pv4fadError

# Modules that each add one command (or group) to the parser.
COMMAND_MODULES: tuple[str, ...] = (
    "federation.data.cli",
    "crypto.cli",
    "server.sisa_cli",
    "federation.party_cli",
    "federation.simulate",
    "federation.audit",
    "llm_modules.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pv4fad",
        description="Privacy-preserving federated anomaly detection for payment networks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    """Print a command's result: exactly one JSON object with --json, else `human`."""
    if as_json:
        json.dump(result, sys.stdout, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(human)


def progress(message: str) -> None:
    """One line of progress on stderr (stdout stays clean for --json)."""
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["audit", "poisoning"]:
        # `audit RUN_DIR` takes a positional path, so this audit is parsed on its own.
        from llm_modules.poisoning.audit_cli import main as audit_poisoning

        args = argparse.Namespace(func=lambda _: audit_poisoning(argv[2:]))
    else:
        args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Pv4fadError as exc:
        print(f"pv4fad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pv4fad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
