"""``s2c2seg tables``: the command line of :mod:`s2c2seg.tables` (the paper's tables from run records)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .cli import PathRule, add_path_argument
from .records import load_records
from .store import atomic_write
from .tables import LAYOUTS, PICKS, render

__all__ = ["register_cli"]


def _run_tables(args) -> int:
    records = load_records(args.records)
    if not records:
        raise FileNotFoundError(f"no run records found under {' '.join(args.records)} (run s2c2seg eval ... --out "
                                "DIR first, or name the folder that holds record.json files)")
    layouts = list(LAYOUTS) if args.layout == "all" else [args.layout]
    text = render(records, layouts, args.format, pick=args.pick, allow_mixed=args.allow_mixed,
                  allow_skipped=args.allow_skipped)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, text)
        print(f"{len(records)} records -> {args.out}")
    else:
        print(text)
    return 0


def register_cli(subparsers) -> None:
    """Add ``tables`` to the ``s2c2seg`` command line."""
    from . import tables as tables_module

    p = subparsers.add_parser("tables", help="the paper's tables (markdown / LaTeX) from run records",
                              description=tables_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_argument(p, "records", nargs="+", metavar="RECORDS", rule=PathRule(
        "file or folder", "name a record.json file or a folder of run records"),
        help="record.json files or folders searched recursively")
    p.add_argument("--layout", default="all", choices=["all", *LAYOUTS])
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"])
    p.add_argument("--pick", default="error", choices=list(PICKS),
                   help="records that claim one cell but differ: an error (default), or take the newest")
    p.add_argument("--allow-mixed", action="store_true",
                   help="allow a row mixing backends / image counts, or a column mixing image counts (marked ‡)")
    p.add_argument("--allow-skipped", action="store_true",
                   help="allow records whose run skipped images (--on-error skip; marked §)")
    add_path_argument(p, "--out", rule=PathRule("file", "name a file to write the tables to", must_exist=False),
                      help="write to this file instead of stdout")
    p.set_defaults(func=_run_tables)
