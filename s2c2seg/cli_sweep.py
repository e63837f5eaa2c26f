"""``s2c2seg sweep``: the command line of :mod:`s2c2seg.sweep` (a grid file or the registry's named points)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .cli import PathRule, add_path_argument
from .cli_eval import add_common_arguments, add_method_arguments, backend_from_args, data_from_args, method_from_args
from .distributed import env_rank
from .evaluate import dataset_info, encode_of
from .factories import benchmark_key
from .records import claim_out_dir
from .sweep import load_grid, make_points, sweep

__all__ = ["registry_grid", "sweep_setup", "register_cli"]


def registry_grid(names: str) -> list[dict]:
    """The grid of named experiment points: comma-separated point keys and/or table layouts
    (:mod:`s2c2seg.experiments`, e.g. ``"main,components"``; ``"all"``: every table row)."""
    from . import experiments

    parts = [n.strip() for n in names.split(",") if n.strip()]
    if parts == ["all"]:
        return experiments.table_grid()
    try:
        return [p.grid_point() for p in experiments.group(*parts).values()]
    except ValueError as exc:
        raise ValueError(f"--points {names!r}: {exc} "
                         f"(or a layout: {list(experiments.LAYOUT_TITLES)}, or 'all')") from exc


def sweep_setup(args, grid):
    """``(dataset, vocab, protocol, preset, css, csg, backend)`` of ``sweep``'s arguments: the grid's points are
    resolved first (bad values raise before a model loads), and the backend encodes what every point reads (one
    encode side: :func:`s2c2seg.evaluate.encode_of`)."""
    dataset, vocab, protocol = data_from_args(args)
    preset, css, csg = method_from_args(args, benchmark_key(args.dataset), per_point=True)
    points = make_points(grid, protocol, dataset=dataset_info(dataset).name, method=args.method, preset=preset,
                         css=css, csg=csg, score_source=args.score_source, select=not args.no_select,
                         baseline=args.baseline)
    return dataset, vocab, protocol, preset, css, csg, backend_from_args(args, encode_of(points))


def _run_sweep(args) -> int:
    grid = load_grid(args.grid) if args.grid else registry_grid(args.points)
    claim_out_dir(args.out, "sweep.json")
    dataset, vocab, protocol, preset, css, csg, backend = sweep_setup(args, grid)
    result = sweep(dataset, backend, vocab, protocol, grid, method=args.method, preset=preset, css=css, csg=csg,
                   score_source=args.score_source, select=not args.no_select, cache_dir=args.cache_dir,
                   out_dir=args.out, max_images=args.max_images, baseline=args.baseline,
                   progress=not args.no_progress, on_error=args.on_error)
    if env_rank() == 0:
        print(result.markdown())
        skipped = result.records[0].extra["num_skipped"]
        print((f"{skipped} images skipped (see points/*/record.json extra.skipped) " if skipped else "")
              + f"-> {Path(args.out) / 'sweep.csv'}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``sweep`` to the ``s2c2seg`` command line."""
    from . import sweep as sweep_module

    p = subparsers.add_parser("sweep", help="evaluate a grid of downstream settings, each image's bundle read once",
                              description=sweep_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    add_path_argument(what, "--grid", rule=PathRule("file", "give a YAML grid: a mapping key -> values or a list of "
                      "points"), help="YAML grid: a mapping key -> values (product) or a list of points")
    what.add_argument("--points", help="named experiment points of the paper's tables: point keys and/or layouts "
                                       "(main, components, scoring, fusion, unit_scope), comma-separated, or 'all'")
    add_common_arguments(p)
    add_method_arguments(p)
    p.set_defaults(func=_run_sweep)
