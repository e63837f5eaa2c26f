"""The paper's table layouts from run records, as markdown and LaTeX; ``s2c2seg tables``.

Rows are the experiment points of :mod:`s2c2seg.experiments` (a record is recognised as a point by its
resolved setting, per baseline); columns are the 8 benchmarks and their average (mIoU in %).

Provenance rules (a number in a table must be the number of one well-defined run):

* A cell is identified by the record's full resolved setting: dataset, split, number of images, baseline,
  method, preset, backend (``describe()`` and label), protocol, every downstream parameter, vocabulary.
  Records that fall in one cell but differ anywhere (or give different numbers) raise :class:`TableError`
  naming both files and the first differences; ``pick="newest"`` takes the newest (``created``) instead.
* A row whose cells come from different backends or image counts, and a column whose cells have different
  image counts, raise :class:`TableError` unless ``allow_mixed`` (then the row / column is marked ‡).
* Records with skipped images (``extra["skipped"]``) raise unless ``allow_skipped`` (then the cell is marked §).
* Every table ends with a provenance footnote: the records used, their backends, labels and image counts.
* Tables with any RANDOM WEIGHTS / SIMULATED record say so in the title and in a note (markdown and LaTeX).

A row lacking some benchmarks shows the average of those present with a dagger and the count. Rendering
is pandas' (``DataFrame.to_markdown``, ``Styler.to_latex`` with booktabs rules and LaTeX escaping).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from . import experiments
from .records import RunRecord

__all__ = ["BENCHMARKS", "LAYOUTS", "PICKS", "TableError", "Table", "build_table", "provenance", "render"]

BENCHMARKS = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff164k", "cityscapes", "ade20k")
"""The paper's 8 benchmarks, in its column order (with background first)."""

_TITLES = {"voc21": "VOC21", "context60": "PC60", "coco_object": "Object", "voc20": "VOC20", "context59": "PC59",
           "coco_stuff164k": "Stuff", "cityscapes": "City", "ade20k": "ADE"}
_BASELINE_NAMES = {"sclip": "SCLIP", "proxyclip": "ProxyCLIP", "corrclip": "CorrCLIP", "naclip": "NACLIP",
                   "clearclip": "ClearCLIP", "maskclip": "MaskCLIP"}
LAYOUTS = tuple(experiments.LAYOUT_TITLES)
PICKS = ("error", "newest")
"""What to do when records claim one cell but differ: raise, or take the newest."""

KNOWN_LABELS = {
    "SIMULATED": "features from the simulation backend: a teaching and testing instrument, not paper evidence",
    "RANDOM WEIGHTS": "the real architectures with random weights: the numbers are meaningless",
}
PARTIAL_MARK, MIXED_MARK, SKIPPED_MARK = "†", "‡", "§"
_LATEX_MARKS = {PARTIAL_MARK: r"$^\dagger$", MIXED_MARK: r"$^\ddagger$", SKIPPED_MARK: r"\S{}"}

SIM_PREFIX = "sim_"
"""Simulated splits record their dataset as ``sim_<benchmark>``; they fill that benchmark's column (their
``label``, SIMULATED, marks the table)."""


class TableError(ValueError):
    """Records cannot be put in one table without hiding a difference (the message names the files)."""


def benchmark_of(dataset: str) -> str:
    """The benchmark column a record's dataset belongs to (``sim_voc21`` -> ``voc21``)."""
    return dataset[len(SIM_PREFIX):] if dataset.startswith(SIM_PREFIX) else dataset


def _where(r: RunRecord) -> str:
    return r.source or f"<record {r.dataset} {r.method} created {r.created}>"


def _need(r: RunRecord, *path: str):
    node: Any = r.parameters
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise TableError(f"{_where(r)}: parameters.{'.'.join(path)} is missing (not a run record of this "
                             "package: re-run it)")
        node = node[key]
    return node


def preset_of(r: RunRecord) -> str:
    return r.parameters.get("preset") or experiments.PAPER


def signature(r: RunRecord) -> tuple:
    """The record's :func:`experiments.signature_of` (what tells experiment points apart)."""
    if r.method == "s2c2seg" and preset_of(r) != experiments.PAPER:
        values = _need(r, "preset_values")
        identity = [values[k.split(".")[0]][k.split(".")[1]] for k in experiments.RELEASED_IDENTITY]
        return experiments.released_signature(r.method, preset_of(r), identity)
    return experiments.signature_of(r.method, bool(_need(r, "select")), _need(r, "score_source"),
                                    _need(r, "css", "use"), _need(r, "csg", "mode"), preset_of(r))


def provenance(r: RunRecord) -> dict[str, Any]:
    """Everything that identifies a record's cell (the full resolved setting; not timings or environment)."""
    return {"dataset": r.dataset, "split": r.split, "num_images": r.num_images, "baseline": r.baseline,
            "method": r.method, "preset": preset_of(r), "label": r.label, "backend": r.backend,
            "protocol": r.protocol, "parameters": r.parameters,
            "vocabulary": {k: r.vocabulary.get(k) for k in ("variant", "names")}}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _differences(a: RunRecord, b: RunRecord, n: int = 4) -> str:
    fa, fb = _flat(provenance(a)), _flat(provenance(b))
    keys = [k for k in dict.fromkeys([*fa, *fb]) if fa.get(k) != fb.get(k)]
    if not keys:
        return f"same setting, mIoU {a.miou} vs {b.miou}"
    shown = ", ".join(f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _key(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


_PROVENANCE_COLUMNS = ("record", "backend", "label", "images", "skipped")


@dataclass
class Table:
    """Rows x the 8 benchmarks (+ Avg) of mIoU percentages, with the records behind each cell."""

    title: str
    rows: dict[str, dict[str, float]]
    """Row name -> benchmark -> mIoU %."""
    records: dict[str, dict[str, RunRecord]] = field(default_factory=dict)
    """Row name -> benchmark -> the record shown."""
    marks: dict[tuple[str, str], str] = field(default_factory=dict)
    """(row, benchmark) -> marks of that cell (§ skipped images); (row, "") / ("", benchmark): ‡ mixed."""

    @property
    def labels(self) -> set[str]:
        return {r.label for row in self.records.values() for r in row.values() if r.label}

    def used(self) -> list[RunRecord]:
        return [r for row in self.records.values() for r in row.values()]

    # ------------------------------------------------------------------ cells
    def _cells(self, name: str) -> list[str]:
        cells = self.rows[name]
        out = ["–" if cells.get(d) is None else f"{cells[d]:.1f}{self.marks.get((name, d), '')}" for d in BENCHMARKS]
        vals = [cells[d] for d in BENCHMARKS if cells.get(d) is not None]
        avg = sum(vals) / len(vals) if vals else None
        n = len(vals)
        out.append("–" if avg is None else (f"{avg:.1f}" if n == len(BENCHMARKS)
                                            else f"{avg:.1f}{PARTIAL_MARK} ({n}/{len(BENCHMARKS)})"))
        return out

    def frame(self):
        """The table as a pandas DataFrame of display strings (index: row names)."""
        import pandas as pd

        cols = [_TITLES[d] + self.marks.get(("", d), "") for d in BENCHMARKS] + ["Avg"]
        index = [n + self.marks.get((n, ""), "") for n in self.rows]
        return pd.DataFrame([self._cells(n) for n in self.rows], index=pd.Index(index, name="Method"), columns=cols)

    def provenance_frame(self):
        """One row per record shown: its file, backend, label and image count."""
        import pandas as pd

        used = self.used()
        paths = [r.source for r in used if r.source]
        root = os.path.commonpath(paths) if len(paths) > 1 else ""
        rows = []
        for r in used:
            where = os.path.relpath(r.source, root) if root and r.source else _where(r)
            rows.append({"record": where, "backend": str(r.backend.get("backend", "?")),
                         "label": r.label or "(pretrained)", "images": str(r.num_images),
                         "skipped": str(len(r.extra.get("skipped") or []))})
        return pd.DataFrame(rows, columns=list(_PROVENANCE_COLUMNS)), root

    # ------------------------------------------------------------------ notes
    def _heading(self) -> str:
        return self.title + (" — " + " / ".join(sorted(self.labels)) if self.labels else "")

    def _label_notes(self) -> list[str]:
        return [f"{lab}: {KNOWN_LABELS.get(lab, 'labelled features, not paper evidence')}."
                for lab in sorted(self.labels)]

    def _legend(self) -> str:
        text = f"mIoU (%). {PARTIAL_MARK} average over the benchmarks present."
        if any(MIXED_MARK in m for m in self.marks.values()):
            text += f" {MIXED_MARK} mixes backends or image counts (--allow-mixed)."
        if any(SKIPPED_MARK in m for m in self.marks.values()):
            text += f" {SKIPPED_MARK} some images were skipped (--allow-skipped)."
        return text

    def _footnote(self) -> str:
        used = self.used()
        groups: dict[tuple, int] = {}
        for r in used:
            k = (str(r.backend.get("backend", "?")), r.label or "pretrained", r.num_images)
            groups[k] = groups.get(k, 0) + 1
        return (f"Provenance: {len(used)} record(s); " +
                "; ".join(f"{n} × backend {b} ({lab}), {i} image(s)" for (b, lab, i), n in groups.items()) + ".")

    # ------------------------------------------------------------------ rendering
    def markdown(self) -> str:
        lines = [f"### {self._heading()}", ""]
        lines += [f"**{note}**" for note in self._label_notes()]
        if self.labels:
            lines.append("")
        lines += [self.frame().to_markdown(colalign=("left",) + ("right",) * (len(BENCHMARKS) + 1),
                                               disable_numparse=True), "",
                  self._legend(), "", self._footnote(), ""]
        prov, root = self.provenance_frame()
        if root:
            lines += [f"Records under `{root}`:", ""]
        lines += [prov.to_markdown(index=False, disable_numparse=True), ""]
        return "\n".join(lines)

    def latex(self) -> str:
        """A booktabs ``table`` float (needs ``\\usepackage{booktabs}``): the table, then the provenance."""
        def marks(s: str) -> str:
            for m, tex in _LATEX_MARKS.items():
                s = s.replace(m, tex)
            return s

        def styled(df):
            return (df.style.format(escape="latex", formatter=marks)
                    .format_index(escape="latex", axis=1, formatter=marks).hide(axis="index"))

        main = self.frame().reset_index()
        body = styled(main).to_latex(hrules=True, column_format="l" + "c" * (main.shape[1] - 1))
        prov, root = self.provenance_frame()
        if root:
            prov.loc[-1] = [f"(under {root})"] + [""] * (len(_PROVENANCE_COLUMNS) - 1)
            prov = prov.sort_index()
        foot = styled(prov).to_latex(hrules=True, column_format="l" * prov.shape[1])
        known = [lab for lab in sorted(self.labels) if lab in KNOWN_LABELS]
        other = [lab for lab in self.labels if lab not in KNOWN_LABELS]
        caption = self.title + r" (mIoU, \%). " + marks(self._legend().split(". ", 1)[1])
        caption += "".join(f" {lab}: {KNOWN_LABELS[lab]}." for lab in known)
        if other:
            caption += " Some rows come from labelled (not pretrained) features: see the provenance."
        return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", body.rstrip(), r"\par\smallskip",
                          r"\footnotesize", foot.rstrip(), r"\caption{" + caption + "}", r"\end{table}", ""])


def _baseline_name(r: RunRecord) -> str:
    return _BASELINE_NAMES.get(r.baseline or "", r.baseline or "?")


def _conflict(a: RunRecord, b: RunRecord, what: str) -> TableError:
    return TableError(f"{what}: {_where(a)} and {_where(b)} differ ({_differences(a, b)}); "
                      "pass only one of them, or --pick newest")


def build_table(records: Iterable[RunRecord], layout: str, *, pick: str = "error", allow_mixed: bool = False,
                allow_skipped: bool = False) -> Table:
    """The ``layout`` table of ``records`` under the provenance rules of the module docstring."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")
    rows = experiments.layout_rows(layout)
    cells: dict[tuple[int, int, str], dict[str, list[RunRecord]]] = {}
    baselines: list[str] = []
    for r in records:
        col = benchmark_of(r.dataset)
        if col not in BENCHMARKS or r.miou is None or (isinstance(r.miou, float) and math.isnan(r.miou)):
            continue
        sig = signature(r)
        found = [(i, tmpl) for i, (tmpl, p) in enumerate(rows) if p.signature(benchmark_of(r.dataset)) == sig]
        if not found:
            continue
        if r.extra.get("skipped") and not allow_skipped:
            raise TableError(f"{_where(r)} skipped {len(r.extra['skipped'])} image(s): its number is not the "
                             "split's (re-run without skips, or pass --allow-skipped)")
        name = _baseline_name(r)
        if name not in baselines:
            baselines.append(name)
        i, tmpl = found[0]
        cells.setdefault((baselines.index(name), i, tmpl.format(baseline=name)), {}).setdefault(col, []).append(r)

    table = Table(experiments.LAYOUT_TITLES[layout], {}, {})
    for (_, _, row), by_col in sorted(cells.items()):
        chosen = {}
        for col, recs in by_col.items():
            ordered = sorted(recs, key=lambda x: x.created)
            newest = ordered[-1]
            for other in ordered[:-1]:
                same = _key(provenance(other)) == _key(provenance(newest)) and other.miou == newest.miou
                if not same and pick == "error":
                    raise _conflict(other, newest, f"two records for the cell ({row}, {_TITLES[col]})")
            chosen[col] = newest
            if newest.extra.get("skipped"):
                table.marks[(row, col)] = SKIPPED_MARK
        table.records[row] = {c: chosen[c] for c in BENCHMARKS if c in chosen}
        table.rows[row] = {c: 100.0 * float(r.miou) for c, r in table.records[row].items()}
        _check_mixed(table, [(_key(r.backend), r.num_images) for r in table.records[row].values()],
                     list(table.records[row].values()), f"row {row!r} mixes backends or image counts",
                     (row, ""), allow_mixed)
    for col in BENCHMARKS:
        in_col = [row[col] for row in table.records.values() if col in row]
        _check_mixed(table, [(r.num_images, r.split) for r in in_col], in_col,
                     f"column {_TITLES[col]} mixes image counts or splits", ("", col), allow_mixed)
    return table


def _check_mixed(table: Table, keys: list, recs: list[RunRecord], what: str, mark_at: tuple, allow: bool) -> None:
    """Refuse (or, with ``allow``, mark at ``mark_at``) cells whose ``keys`` differ."""
    if len(set(keys)) <= 1:
        return
    if not allow:
        first = recs[0]
        other = next(r for k, r in zip(keys, recs) if k != keys[0])
        raise TableError(f"{what}: {_where(first)} ({first.label or 'pretrained'}, {first.num_images} images) vs "
                         f"{_where(other)} ({other.label or 'pretrained'}, {other.num_images} images); "
                         "pass records of one run, or --allow-mixed (then marked)")
    table.marks[mark_at] = MIXED_MARK


def render(records: Sequence[RunRecord], layouts: Sequence[str] = LAYOUTS, fmt: str = "markdown", **rules) -> str:
    """The chosen layouts rendered one after the other (``fmt``: markdown, latex); ``rules``: the keyword
    arguments of :func:`build_table` (``pick``, ``allow_mixed``, ``allow_skipped``)."""
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown:
        raise ValueError(f"unknown layout(s) {unknown}; known: {list(LAYOUTS)}")
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', got {fmt!r}")
    parts = []
    for name in layouts:
        table = build_table(records, name, **rules)
        if table.rows:
            parts.append(table.markdown() if fmt == "markdown" else table.latex())
    return "\n".join(parts)
