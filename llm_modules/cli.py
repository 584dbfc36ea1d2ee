"""The `pv4fad llm ...` command group; each LLM module adds its subcommands here."""

from __future__ import annotations

import argparse
import importlib

# Modules exposing `register_llm(subparsers)`, one per LLM feature.
LLM_COMMAND_MODULES: tuple[str, ...] = (
    "llm_modules.unlearning.cli",
    "llm_modules.alignment.map_cli",
    "llm_modules.alignment.post_training_cli",
    "llm_modules.calibration.cli",
    "llm_modules.poisoning.cli",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("llm", help="trustworthy-LLM modules (unlearning, ...)")
    llm_commands = parser.add_subparsers(dest="llm_command", required=True, metavar="LLM_COMMAND")
    for name in LLM_COMMAND_MODULES:
        importlib.import_module(name).register_llm(llm_commands)
