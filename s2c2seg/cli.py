"""The ``s2c2seg`` command line: one sub-command per module, each registered by that module."""
from __future__ import annotations

import argparse
import importlib
from typing import Sequence

# module that owns each sub-command; each exposes ``register_cli(subparsers)`` which sets ``func``.
_COMMANDS = ("s2c2seg.cli_eval", "s2c2seg.sweep", "s2c2seg.tables", "s2c2seg.notebooks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2c2seg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
