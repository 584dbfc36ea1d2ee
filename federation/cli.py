"""The `pv4fad` command line.

Each command group lives next to the code it drives and exposes `register(subparsers)`;
this module only assembles them. Results go to stdout (one JSON object with `--json`),
progress goes to stderr, and every failure ends with one line on stderr and the exit code
of its kind (federation/errors.py; README.md, "Exit codes").

Only the module of the command being run is imported: the others appear in the command
list by name and help line, so `pv4fad --help` and `pv4fad simulate --help` start without
importing torch, transformers or the crypto libraries.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from federation.errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    Pv4fadError,
)

# Each top-level command: the module that registers it, and its line in `pv4fad --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("federation.data.cli", "generate or validate challenge-format data"),
    "baseline": ("federation.data.cli", "plaintext baselines: ceiling, floor, boosting"),
    "crypto": ("crypto.cli", "crypto parameters and DP calibration"),
    "sisa": ("server.sisa_cli", "federated SISA: train, forget, FairSISA"),
    "party": ("federation.party_cli", "a party's identity key and privacy policy"),
    "simulate": ("federation.simulate",
                 "run the private federated protocol on one machine (train, then test)"),
    "audit": ("federation.audit",
              "audit a run: signed ledgers, content checks, DP budget, attacks"),
    "llm": ("llm_modules.cli", "trustworthy-LLM modules (unlearning, ...)"),
}
# Modules that each add one command (or group) to the parser, in help order.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _ in COMMANDS.values()))

# Seconds between the first Ctrl-C and a forced exit: enough for the run's own cleanup
# (stopping the simulated parties), short of an operator's patience.
INTERRUPT_GRACE_S = 6.0


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("pv4fad")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the module of the command named in it is imported
    (the others are listed by name), without it every command is built."""
    parser = argparse.ArgumentParser(
        prog="pv4fad",
        description="Privacy-preserving federated anomaly detection for payment networks.",
        epilog="exit codes: 0 success, 1 a privacy check failed, 2 bad input or refused "
               "configuration, 3 a party failed (degraded run without --allow-degraded), "
               "4 internal error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"pv4fad {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = _command_in(argv) if argv is not None else None
    modules = (COMMAND_MODULES if argv is None
               else [COMMANDS[wanted][0]] if wanted in COMMANDS else [])
    for module in modules:
        importlib.import_module(module).register(subparsers)
    for name, (_, help_text) in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_text)
    # Keep the command list in the documented order whatever was imported.
    actions = subparsers._choices_actions
    actions.sort(key=lambda a: list(COMMANDS).index(a.dest) if a.dest in COMMANDS else 99)
    return parser


class _Renamed(argparse._StoreAction):
    """The old spelling of a renamed option: accepted for a release, with a warning."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        warn_renamed(str(option_string), self.new)
        setattr(namespace, self.dest, values)


def warn_renamed(old: str, new: str) -> None:
    """The warning an old spelling gets while it is still accepted."""
    print(f"pv4fad: warning: {old} is now spelled {new}; the old spelling will be removed "
          "in a later release", file=sys.stderr, flush=True)


def renamed_option(parser: argparse.ArgumentParser | Any, old: str, new: str,
                   **kwargs: Any) -> None:
    """Accept `old` as a hidden, warned-about spelling of the option `new` (same dest)."""
    parser.add_argument(old, action=_Renamed, new=new, help=argparse.SUPPRESS, **kwargs)


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (its first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    """Print a command's result: exactly one JSON object with --json, else `human`."""
    if as_json:
        json.dump(result, sys.stdout, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(human)
    sys.stdout.flush()


def progress(message: str) -> None:
    """One line of progress on stderr (stdout stays clean for --json); on a terminal it
    appears above the progress bar of the phase under way (federation/progress.py)."""
    from federation.progress import line

    line(message)


def fail(message: str) -> None:
    """The last line of a command that ends with a non-zero exit code."""
    from federation.progress import close_active

    close_active()
    print(f"pv4fad: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["audit", "poisoning"]:
        # `audit` takes positional paths (`verify FILE...`, the old `audit RUN`), so this
        # audit is parsed on its own.
        from llm_modules.poisoning.audit_cli import main as audit_poisoning

        args = argparse.Namespace(command="audit poisoning",
                                  func=lambda _: audit_poisoning(argv[2:]))
    else:
        args = build_parser(argv).parse_args(argv)
    previous = _on_interrupt()
    try:
        _check_audit_args(args)
        return int(args.func(args) or 0)
    except Pv4fadError as exc:
        fail(f"error: {_one_line(str(exc))}")
        return exc.exit_code
    except OSError as exc:
        # A file the operator named cannot be read or written (permissions, a file where
        # a directory belongs, a full disk): their input, named, on one line.
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"error: {where}{exc.strerror or exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        _stop_children_and_exit()
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("PV4FAD_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
             "(a bug; PV4FAD_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _check_audit_args(args: argparse.Namespace) -> None:
    if args.command == "audit" and not any(
            getattr(args, name, None) for name in ("target", "run_dir", "ledger")):
        raise Pv4fadError("audit: name what to audit: a run directory (pv4fad audit --out "
                          "RUN) or the parties' ledgers (pv4fad audit --ledger FILE...)")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines) if len(lines) <= 3 else f"{lines[0]} ... {lines[-1]}"


# -- interruption ------------------------------------------------------------------------
# The first Ctrl-C (or SIGTERM) raises KeyboardInterrupt in the main thread and arms a timer;
# the run's finally-blocks clean up, then the simulated parties (our child processes) are
# stopped and the process exits 130. Further Ctrl-Cs only repeat that it is stopping, and
# the timer exits even if a library thread blocks the exit. Every file the run writes is
# replaced atomically, so an interrupted run leaves each file complete or as it was.
_stopping = threading.Event()


def _on_interrupt() -> dict[int, Any]:
    """Install the handler for SIGINT and SIGTERM; returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _interrupted) for s in (signal.SIGINT, signal.SIGTERM)}


def _interrupted(signum: int, frame: Any) -> None:
    from federation.progress import line

    if _stopping.is_set():
        line("pv4fad: still stopping ...")
        return
    _stopping.set()
    # The simulation engine's worker threads log each party torn down by the stop as an
    # error with a traceback; while stopping, those are expected and only noise.
    logging.getLogger("flwr").disabled = True
    line("pv4fad: interrupted; stopping (state on disk is kept)")
    timer = threading.Timer(INTERRUPT_GRACE_S, _stop_children_and_exit)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _stop_children_and_exit() -> None:
    """Stop this process's own descendants (by pid) and exit 130 without waiting for
    library threads that may never end."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
        for child in children:
            try:
                child.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(children, timeout=2.0)
        for child in alive:
            try:
                child.kill()
            except psutil.Error:
                pass
    except Exception:  # stopping must never raise: the exit below is what matters
        pass
    try:
        from federation.progress import close_active

        close_active()
    except Exception:
        pass
    print("pv4fad: interrupted", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
