"""``s2c2seg notebooks run|list``: the command line of :mod:`s2c2seg.notebooks` (the collection, headless)."""
from __future__ import annotations

import argparse
from typing import Sequence

from .cli import OUT_FOLDER, PathRule, add_path_argument
from .notebook_params import NOTEBOOKS, key_lines, load_params
from .notebooks import format_summary, run_collection

__all__ = ["register_cli", "main"]


def register_cli(subparsers) -> None:
    """Add ``notebooks run`` to the ``s2c2seg`` command line."""
    from . import notebooks as notebooks_module

    p = subparsers.add_parser("notebooks", help="run the notebook collection headless (papermill)")
    sub = p.add_subparsers(dest="notebooks_command", required=True)
    r = sub.add_parser("run", help="execute notebooks into a new run folder",
                       description=notebooks_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("names", nargs="*", help=f"notebooks to run (default: all): {', '.join(NOTEBOOKS)}")
    yaml_file = PathRule("file", "give a YAML file", may_be_empty=True)
    add_path_argument(r, "-f", "--params", dest="params_file", rule=yaml_file,
                      help="YAML parameters (common + per-notebook keys)")
    add_path_argument(r, "--grid", rule=yaml_file,
                      help="YAML mapping parameter -> list of values; runs every combination")
    add_path_argument(r, "--out", default="runs/notebooks", rule=OUT_FOLDER,
                      help="parent folder of the run folder (default: %(default)s)")
    add_path_argument(r, "--notebook-dir", default=None, rule=PathRule("folder", "give the folder of the NN_name.py "
                      "notebooks"), help="folder of the .py notebooks (default: the package's)")
    r.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")
    r.add_argument("--allow-unknown", action="store_true",
                   help="pass parameters no selected notebook declares on to papermill instead of failing")
    r.set_defaults(func=_cli_run)
    lst = sub.add_parser("list", help="list the notebooks")
    lst.set_defaults(func=lambda args: print("\n".join(NOTEBOOKS)) or 0)


def _cli_run(args) -> int:
    params = load_params(args.params_file)
    grid = load_params(args.grid) if args.grid else None
    run_dir, results = run_collection(args.names, params=params, grid=grid, out=args.out,
                                      notebook_dir=args.notebook_dir, timeout=args.timeout,
                                      allow_unknown=args.allow_unknown, params_source=args.params_file or "parameters",
                                      grid_source=args.grid or "grid", params_lines=key_lines(args.params_file),
                                      grid_lines=key_lines(args.grid))
    print()
    print(format_summary(results, run_dir))
    return 0 if results and all(r.ok for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2c2seg.cli_notebooks notebooks run ...``: the ``s2c2seg`` command (:func:`s2c2seg.cli.console`)."""
    from .cli import console

    return console(argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
