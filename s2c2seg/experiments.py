"""The named experiment points of the paper's tables and the notebooks, each defined once.

A :class:`Point` says what it sets on top of a preset (``method``, ``select``, the CSS score subset ``use``,
the CSG ``mode``, ``score_source``) and in which table layouts it is a row (and under which name). Sweeps,
notebooks and the CLI *produce* points from here (:meth:`Point.setting`, :meth:`Point.grid_point`);
``tables`` *recognises* a run record as a point by comparing the record's resolved setting with the point's
(:meth:`Point.signature`), never by a display string.

Presets: ``"paper"`` is the paper's reading (``CSSConfig()`` / ``CSGConfig()``, modified by ``use`` / ``mode``);
``"released"`` / ``"released++"`` are resolved by ``s2c2seg.presets.get_preset(name, dataset, **overrides)``.
Adding a row is one entry of :data:`POINTS`.

Row order within a layout is the order of :data:`POINTS`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .css import SCORE_NAMES, CSSConfig
from .csg import FUSION_MODES, CSGConfig

__all__ = ["PAPER", "LAYOUT_TITLES", "RELEASED_IDENTITY", "Point", "POINTS", "point", "layout_rows", "group",
           "preset_configs", "signature_of", "released_signature", "table_grid"]

PAPER = "paper"
"""The preset of the paper's reading: the configs' own defaults."""

LAYOUT_TITLES = {"main": "Main results: 8 benchmarks", "components": "Component ablation",
                 "scoring": "CSS scoring ablation", "fusion": "CSG fusion comparison",
                 "unit_scope": "Released pipeline: selection unit × scope (this toolkit's ablation)"}
"""The table layouts and their titles (the keys of :attr:`Point.rows`)."""


RELEASED_IDENTITY = ("select.unit", "select.scope")
"""The preset keys that tell a released preset's points apart (every other value is the cell's provenance)."""


def preset_configs(preset: str, dataset: str | None = None) -> tuple[CSSConfig, CSGConfig]:
    """The (CSSConfig, CSGConfig) the paper preset stands for (a released preset has neither: its own sections)."""
    if preset != PAPER:
        raise ValueError(f"preset {preset!r} has no CSSConfig / CSGConfig: its values are its own sections "
                         "(s2c2seg.presets.get_preset)")
    return CSSConfig(), CSGConfig()


def released_signature(method: str, preset: str, identity: Any) -> tuple:
    """What tells a released preset's points apart: the preset and its :data:`RELEASED_IDENTITY` values."""
    return (method, preset, tuple(identity))


def signature_of(method: str, select: bool, score_source: str, use, mode: str, preset: str) -> tuple:
    """What tells the paper reading's experiment points apart, with the fields a method does not read left
    out: the baseline reads none of CSS/CSG, the oracle no CSS, ``select=False`` no score subset nor score
    source."""
    if method == "baseline":
        return (method,)
    if method == "oracle":
        return (method, mode, preset)
    if not select:
        return (method, False, mode, preset)
    return (method, True, score_source, tuple(use), mode, preset)


@dataclass(frozen=True)
class Point:
    """One named downstream configuration: what it sets on top of its preset, and where it is a row."""

    key: str
    """Unique identifier (notebooks index their results by it)."""
    method: str = "s2c2seg"
    select: bool = True
    use: tuple[str, ...] | None = None
    """CSS score subset; None = the preset's."""
    mode: str | None = None
    """CSG fusion mode; None = the preset's."""
    score_source: str = "clipseg"
    preset: str = PAPER
    overrides: tuple[tuple[str, Any], ...] = ()
    """A released preset's dotted keys this point sets (e.g. ``("select.unit", "class")``)."""
    rows: tuple[tuple[str, str], ...] = ()
    """(layout, row name) pairs; ``{baseline}`` in a row name is replaced by the baseline's display name."""

    @property
    def released(self) -> bool:
        """Whether the point runs a released preset (no CSSConfig / CSGConfig: the preset's own sections)."""
        return self.method == "s2c2seg" and self.preset != PAPER

    def preset_object(self, dataset: str | None = None):
        """The resolved :class:`s2c2seg.presets.Preset` of a released point on ``dataset``."""
        from .presets import get_preset

        return get_preset(self.preset, dataset or "", **dict(self.overrides))

    def configs(self, css: CSSConfig | None = None, csg: CSGConfig | None = None,
                dataset: str | None = None) -> tuple[CSSConfig, CSGConfig]:
        """(css, csg) of this point: the given base configs (default: the preset's) with its overrides."""
        if css is None or csg is None:
            p_css, p_csg = preset_configs(self.preset, dataset)
            css, csg = css or p_css, csg or p_csg
        if self.use is not None:
            css = replace(css, use=self.use)
        if self.mode is not None:
            csg = replace(csg, mode=self.mode)
        return css, csg

    def setting(self, protocol, css: CSSConfig | None = None, csg: CSGConfig | None = None,
                dataset: str | None = None):
        """The :class:`s2c2seg.runspec.RunSpec` of this point under ``protocol`` (``runspec.resolve_run``)."""
        from .runspec import resolve_run

        common = dict(score_source=self.score_source, select=self.select)
        if self.released:
            return resolve_run(self.method, dataset or "", protocol, preset=self.preset_object(dataset), **common)
        c, g = self.configs(css, csg, dataset)
        return resolve_run(self.method, dataset or "", protocol, preset=self.preset if self.method == "s2c2seg"
                           else None, css=c, csg=g, **common)

    def signature(self, dataset: str | None = None) -> tuple:
        """:func:`signature_of` (or :func:`released_signature`) this point's resolved setting."""
        if self.released:
            p = self.preset_object(dataset)
            return released_signature(self.method, self.preset, [p.get(k) for k in RELEASED_IDENTITY])
        c, g = self.configs(dataset=dataset)
        return signature_of(self.method, self.select, self.score_source, c.use, g.mode, self.preset)

    def grid_point(self) -> dict[str, Any]:
        """The point as a sweep grid point (``s2c2seg.sweep``: only the keys it sets)."""
        if self.released:
            return {"method": self.method, "preset": self.preset, **dict(self.overrides)}
        out: dict[str, Any] = {"method": self.method}
        if self.method == "s2c2seg":
            out["preset"] = PAPER  # named: the default preset of a sweep is another one
        if not self.select:
            out["select"] = False
        if self.use is not None:
            out["use"] = list(self.use)
        if self.mode is not None:
            out["mode"] = self.mode
        if self.score_source != "clipseg":
            out["score_source"] = self.score_source
        return out

    def row_name(self, layout: str) -> str | None:
        return dict(self.rows).get(layout)


def _subset_label(use: tuple[str, ...]) -> str:
    return " + ".join(f"S_{u}" for u in use)


_PAIRS = tuple((a, b) for i, a in enumerate(SCORE_NAMES) for b in SCORE_NAMES[i + 1:])

POINTS: tuple[Point, ...] = (
    Point("baseline", method="baseline",
          rows=(("main", "{baseline}"), ("components", "{baseline}: Baseline"))),
    Point("css_only", mode="global_only",
          rows=(("components", "{baseline}: + CSS only"), ("fusion", "{baseline}: Global only"))),
    Point("fusion:local_only", mode="local_only", rows=(("fusion", "{baseline}: Local only"),)),
    Point("fusion:add", mode="add", rows=(("fusion", "{baseline}: Add."),)),
    Point("no_csg", mode="uniform",
          rows=(("components", "{baseline}: Ours (w/o CSG)"), ("fusion", "{baseline}: Uniform"))),
    Point("no_css", select=False,
          rows=(("components", "{baseline}: Ours (w/o CSS)"), ("scoring", "{baseline}: w/o Sel."))),
    *(Point(f"use:{u}", use=(u,), rows=(("scoring", f"{{baseline}}: {_subset_label((u,))}"),))
      for u in SCORE_NAMES),
    *(Point(f"use:{a}+{b}", use=(a, b), rows=(("scoring", f"{{baseline}}: {_subset_label((a, b))}"),))
      for a, b in _PAIRS),
    Point("s2c2seg", rows=(("main", "{baseline} + S2C2Seg (paper)"), ("components", "{baseline}: Ours (Full)"),
                           ("scoring", "{baseline}: Full CSS"), ("fusion", "{baseline}: Category-aware (ours)"))),
    Point("released", preset="released", rows=(("main", "{baseline} + S2C2Seg (released)"),
                                               ("unit_scope", "{baseline}: per window × per query (released)"))),
    Point("released++", preset="released++", rows=(("main", "{baseline} + S2C2Seg++"),)),
    *(Point(f"released:{unit}/{scope}", preset="released",
            overrides=(("select.unit", unit), ("select.scope", scope)),
            rows=(("unit_scope", f"{{baseline}}: per {'window' if scope == 'window' else 'image'} × per {unit}"),))
      for unit, scope in (("class", "window"), ("query", "image"), ("class", "image"))),
    Point("oracle", method="oracle", rows=(("scoring", "{baseline}: Oracle (GT classes)"),)),
)
"""Every named point, in the row order of the tables."""

_BY_KEY = {p.key: p for p in POINTS}
assert len(_BY_KEY) == len(POINTS), "experiment point keys must be unique"
assert {p.mode for p in POINTS if p.mode} <= set(FUSION_MODES)


def point(key: str) -> Point:
    """The point named ``key``."""
    if key not in _BY_KEY:
        raise ValueError(f"unknown experiment point {key!r}; known: {list(_BY_KEY)}")
    return _BY_KEY[key]


def layout_rows(layout: str) -> list[tuple[str, Point]]:
    """(row name template, point) of a table layout, in row order."""
    if layout not in LAYOUT_TITLES:
        raise ValueError(f"unknown layout {layout!r}; known: {list(LAYOUT_TITLES)}")
    return [(p.row_name(layout), p) for p in POINTS if p.row_name(layout) is not None]


def group(*keys_or_layouts: str) -> dict[str, Point]:
    """``{key: point}`` of the named points and/or of every row of the named layouts (first seen order),
    e.g. ``group("baseline", "scoring")`` for notebook 02."""
    out: dict[str, Point] = {}
    for name in keys_or_layouts:
        pts = [p for _, p in layout_rows(name)] if name in LAYOUT_TITLES else [point(name)]
        out.update({p.key: p for p in pts if p.key not in out})
    return out


def table_grid() -> list[dict[str, Any]]:
    """Sweep grid points that fill every layout for one dataset and baseline."""
    return [p.grid_point() for p in POINTS if p.rows]
