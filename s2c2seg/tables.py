"""The paper's table layouts from run records, as markdown and LaTeX; ``s2c2seg tables``.

Layouts (rows are recognised from each record's parameters, columns are the 8 benchmarks + their average):

* ``main`` — per baseline: the baseline and "+ S2C2Seg" (CSS with all three scores, category-aware CSG).
* ``components`` — Baseline / + CSS only (``mode=global_only``) / Ours w/o CSG (``mode=uniform``) /
  Ours w/o CSS (``select=False``) / Ours (full).
* ``scoring`` — CSS score subsets: w/o selection, each ``use`` subset present, full, oracle.
* ``fusion`` — the CSG fusion modes with CSS on: add, uniform, category-aware, global only, local only.

Numbers are mIoU in %. When several records fall in one cell the newest (``created``) is shown. The average
is over the 8 benchmarks; where a row lacks some, the average of the present ones is shown with a dagger
and the count. Rows from random-weight or simulated backends carry their label.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .records import RunRecord, load_records

__all__ = ["BENCHMARKS", "LAYOUTS", "Table", "build_table", "main_table", "component_table", "scoring_table",
           "fusion_table", "register_cli"]

BENCHMARKS = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff164k", "cityscapes", "ade20k")
"""The paper's 8 benchmarks, in its column order (with background first)."""

_TITLES = {"voc21": "VOC21", "context60": "PC60", "coco_object": "Object", "voc20": "VOC20", "context59": "PC59",
           "coco_stuff164k": "Stuff", "cityscapes": "City", "ade20k": "ADE"}
_BASELINE_NAMES = {"sclip": "SCLIP", "proxyclip": "ProxyCLIP", "corrclip": "CorrCLIP", "naclip": "NACLIP",
                   "clearclip": "ClearCLIP", "maskclip": "MaskCLIP"}
_FULL_USE = ("glob", "spat", "conf")


class Table:
    """Rows x the 8 benchmarks (+ Avg) of mIoU percentages."""

    def __init__(self, title: str, rows: dict[str, dict[str, float]], labels: set[str]):
        self.title = title
        self.rows = rows
        self.labels = {lab for lab in labels if lab}

    def _avg(self, cells: dict[str, float]) -> tuple[float | None, int]:
        vals = [cells[d] for d in BENCHMARKS if cells.get(d) is not None]
        return (sum(vals) / len(vals) if vals else None), len(vals)

    def _cells(self, name: str) -> list[str]:
        cells = self.rows[name]
        out = ["–" if cells.get(d) is None else f"{cells[d]:.1f}" for d in BENCHMARKS]
        avg, n = self._avg(cells)
        out.append("–" if avg is None else (f"{avg:.1f}" if n == len(BENCHMARKS) else f"{avg:.1f}† ({n}/8)"))
        return out

    def _note(self) -> str:
        if not self.labels:
            return ""
        return "**" + " / ".join(sorted(self.labels)) + "**: some rows come from such features; not paper evidence."

    def markdown(self) -> str:
        head = ["Method"] + [_TITLES[d] for d in BENCHMARKS] + ["Avg"]
        lines = [f"### {self.title}", ""]
        if self._note():
            lines += [self._note(), ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for name in self.rows:
            lines.append("| " + " | ".join([name] + self._cells(name)) + " |")
        lines += ["", "mIoU (%). † average over the benchmarks present.", ""]
        return "\n".join(lines)

    def latex(self) -> str:
        def esc(s: str) -> str:
            return s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#") \
                    .replace("†", r"$^\dagger$").replace("{", r"\{").replace("}", r"\}")

        head = ["Method"] + [_TITLES[d] for d in BENCHMARKS] + ["Avg"]
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 r"\begin{tabular}{l" + "c" * (len(head) - 1) + "}", r"\toprule",
                 " & ".join(head) + r" \\", r"\midrule"]
        for name in self.rows:
            lines.append(" & ".join(esc(c) for c in [name] + self._cells(name)) + r" \\")
        caption = esc(self.title) + " (mIoU, \\%)."
        if self.labels:
            caption += " " + esc(" / ".join(sorted(self.labels))) + ": not evidence for the paper."
        lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}", r"\end{table}", ""]
        return "\n".join(lines)


def _params(r: RunRecord) -> tuple:
    p = r.parameters or {}
    css, csg = p.get("css") or {}, p.get("csg") or {}
    return (r.method, bool(p.get("select", True)), csg.get("mode", "category_aware"),
            tuple(css.get("use") or _FULL_USE), p.get("score_source", "clipseg"))


def _baseline_name(r: RunRecord) -> str:
    name = _BASELINE_NAMES.get(r.baseline or "", r.baseline or "?")
    return name + (f" [{r.label}]" if r.label else "")


SIM_PREFIX = "sim_"
"""Simulated splits record their dataset as ``sim_<benchmark>``; they fill that benchmark's column (their
``label``, SIMULATED, still marks the row and the table)."""


def benchmark_of(dataset: str) -> str:
    """The benchmark column a record's dataset belongs to (``sim_voc21`` -> ``voc21``)."""
    return dataset[len(SIM_PREFIX):] if dataset.startswith(SIM_PREFIX) else dataset


def build_table(records: Iterable[RunRecord], title: str, row_of: Callable[[RunRecord], str | None],
                order: Sequence[str] = ()) -> Table:
    """Put each record's mIoU in the cell (row_of(record), record.dataset); rows sorted by ``order`` then first seen."""
    cells: dict[str, dict[str, tuple[str, float]]] = {}
    labels = set()
    for r in records:
        row, dataset = row_of(r), benchmark_of(r.dataset)
        if row is None or dataset not in BENCHMARKS or r.metrics.get("mIoU") is None:
            continue
        miou = r.metrics["mIoU"]
        if isinstance(miou, float) and math.isnan(miou):
            continue
        prev = cells.setdefault(row, {}).get(dataset)
        if prev is None or r.created >= prev[0]:
            cells[row][dataset] = (r.created, 100.0 * miou)
        labels.add(r.label)
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(cells, key=lambda n: (rank.get(n, len(rank)), list(cells).index(n)))
    return Table(title, {n: {d: v for d, (_, v) in cells[n].items()} for n in names}, labels)


def main_table(records: Sequence[RunRecord]) -> Table:
    def row(r):
        method, select, mode, use, source = _params(r)
        if method == "baseline":
            return _baseline_name(r)
        if method == "s2c2seg" and select and mode == "category_aware" and use == _FULL_USE and source == "clipseg":
            return _baseline_name(r) + " + S2C2Seg"
        return None

    order = [n for r in records for n in (_baseline_name(r), _baseline_name(r) + " + S2C2Seg")]
    return build_table(records, "Main results: 8 benchmarks", row, order)


_COMPONENT_ROWS = ("Baseline", "+ CSS only", "Ours (w/o CSG)", "Ours (w/o CSS)", "Ours (Full)")


def component_table(records: Sequence[RunRecord]) -> Table:
    def row(r):
        method, select, mode, use, source = _params(r)
        name = None
        if method == "baseline":
            name = "Baseline"
        elif method == "s2c2seg" and use == _FULL_USE and source == "clipseg":
            name = {(True, "global_only"): "+ CSS only", (True, "uniform"): "Ours (w/o CSG)",
                    (False, "category_aware"): "Ours (w/o CSS)", (True, "category_aware"): "Ours (Full)"}.get(
                (select, mode))
        return None if name is None else f"{_baseline_name(r)}: {name}"

    order = [f"{_baseline_name(r)}: {n}" for r in records for n in _COMPONENT_ROWS]
    return build_table(records, "Component ablation", row, order)


def scoring_table(records: Sequence[RunRecord]) -> Table:
    def row(r):
        method, select, mode, use, source = _params(r)
        if mode != "category_aware" or source != "clipseg":
            return None
        if method == "oracle":
            return "Oracle (GT classes)"
        if method != "s2c2seg":
            return None
        if not select:
            return "w/o Sel."
        return "Full CSS" if use == _FULL_USE else "S_" + " + S_".join(use)

    order = ["w/o Sel.", "S_glob", "S_spat", "S_conf", "S_glob + S_spat", "S_glob + S_conf", "S_spat + S_conf",
             "Full CSS", "Oracle (GT classes)"]
    return build_table(records, "CSS scoring ablation", row, order)


_MODE_NAMES = {"add": "Add.", "uniform": "Uniform", "category_aware": "Category-aware (ours)",
               "global_only": "Global only", "local_only": "Local only"}


def fusion_table(records: Sequence[RunRecord]) -> Table:
    def row(r):
        method, select, mode, use, source = _params(r)
        if method == "s2c2seg" and select and use == _FULL_USE and source == "clipseg":
            return _MODE_NAMES.get(mode, mode)
        return None

    return build_table(records, "CSG fusion comparison", row, list(_MODE_NAMES.values()))


LAYOUTS = {"main": main_table, "components": component_table, "scoring": scoring_table, "fusion": fusion_table}


def render(records: Sequence[RunRecord], layouts: Sequence[str] = tuple(LAYOUTS), fmt: str = "markdown") -> str:
    """The chosen layouts rendered one after the other (``fmt``: markdown, latex)."""
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown:
        raise ValueError(f"unknown layout(s) {unknown}; known: {list(LAYOUTS)}")
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', got {fmt!r}")
    parts = []
    for name in layouts:
        table = LAYOUTS[name](records)
        if table.rows:
            parts.append(table.markdown() if fmt == "markdown" else table.latex())
    return "\n".join(parts)


def _run_tables(args) -> int:
    records = load_records(args.records)
    if not records:
        raise SystemExit(f"no run records found under {args.records}")
    layouts = list(LAYOUTS) if args.layout == "all" else [args.layout]
    text = render(records, layouts, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(records)} records -> {args.out}")
    else:
        print(text)
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("tables", help="the paper's tables (markdown / LaTeX) from run records",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", help="record.json files or folders searched recursively")
    p.add_argument("--layout", default="all", choices=["all", *LAYOUTS])
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"])
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_run_tables)
