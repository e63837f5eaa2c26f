"""Sweeps over downstream settings: each image's bundle is read once and every grid point updated; ``s2c2seg sweep``.

A grid (Python dict or YAML file) is either

* a mapping ``key: [values]`` — the Cartesian product of the lists (a scalar is a one-value list), or
* a list of mappings — explicit points (e.g. the component ablation: baseline, +CSS only, w/o CSG, ...).

Keys (:data:`GRID_KEYS`): ``method`` (baseline / s2c2seg / oracle), ``use`` (CSS score subset: a list such as
``[glob, spat]`` or a string ``"glob,spat"``), ``tau``, ``k_min``, ``k_max``, ``keep_background``, ``stage2_pool``,
``score_source``, ``select``, ``mode``, ``lam``, ``temperature`` (CSG) and the post-processing protocol fields
``prob_thd``, ``area_thd``, ``logit_scale``. Keys not given take the sweep's defaults. An unknown key or an
invalid value raises before any image is read. Settings that change a bundle (short side, crop, vocabulary,
backend) cannot be swept: they need another cache, i.e. another ``s2c2seg eval``.

Outputs (``out_dir``): ``sweep.csv`` and ``sweep.md`` (one row per point: its settings, mIoU, aAcc, mAcc,
mean subset size, CSS recall, ms per image for the point's downstream math), ``sweep.json`` (everything, with
the confusion matrices) and ``points/NNN/record.json`` (a full run record per point, which ``s2c2seg tables``
reads like any other). The command line is :mod:`s2c2seg.cli_sweep`.
"""
from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .css import SCORE_NAMES, CSSConfig
from .csg import CSGConfig
from .data.protocols import Protocol
from .data.vocab import Vocabulary
from .distributed import DistContext, finish, init_from_env
from .evaluate import (ON_ERROR_DEFAULT, Setting, check_on_error, dataset_info, describe_backend, image_indices,
                       make_record, run_points)
from .runspec import RunSpec, resolve_run
from .records import RunRecord, claim_out_dir, method_label, write_json_new
from .store import atomic_write

__all__ = ["GRID_KEYS", "SweepPoint", "expand_grid", "make_points", "load_grid", "sweep", "SweepResult"]

CSS_KEYS = ("use", "tau", "k_min", "k_max", "keep_background", "stage2_pool")
CSG_KEYS = ("mode", "lam", "temperature")
PROTOCOL_KEYS = ("prob_thd", "area_thd", "logit_scale")
RUN_KEYS = ("method", "score_source", "select", "preset")
GRID_KEYS = RUN_KEYS + CSS_KEYS + CSG_KEYS + PROTOCOL_KEYS
"""Every named key a grid may vary; besides these, every dotted key of the point's preset
(``select.tau``, ``fusion.lam``, ... : :func:`s2c2seg.presets.preset_keys`)."""


@dataclass(frozen=True)
class SweepPoint(Setting):
    """One downstream configuration of a grid."""

    settings: tuple = ()
    """The grid's own (key, value) pairs for this point, in grid order (what the table shows)."""

    @property
    def label(self) -> str:
        if self.reading == "released":
            return f"S2C2Seg ({self.preset.name})"
        return method_label(self.method, self.select, self.csg.mode, self.css.use)


def _parse_use(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.replace("+", ",").split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value or any(v not in SCORE_NAMES for v in value):
        raise ValueError(f"grid key 'use': each value must be a non-empty subset of {SCORE_NAMES}, got {value!r}")
    return tuple(value)


def expand_grid(grid) -> list[dict]:
    """The points of a grid as dicts of settings (product of a mapping, or a list's items); keys checked."""
    if isinstance(grid, Mapping):
        _check_keys(grid)
        if not grid:
            return [{}]
        keys = list(grid)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
        for k, v in zip(keys, values):
            if len(v) == 0:
                raise ValueError(f"grid key {k!r} has no values")
        # 'use' values are lists themselves: a list of strings is ONE value when every item is a score name
        values = [[v] if k == "use" and v and all(isinstance(x, str) and x in SCORE_NAMES for x in v) else v
                  for k, v in zip(keys, values)]
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError("grid: the list of points is empty")
        for i, point in enumerate(grid):
            if not isinstance(point, Mapping):
                raise ValueError(f"grid point {i} must be a mapping of settings, got {point!r}")
            _check_keys(point)
        return [dict(p) for p in grid]
    raise ValueError(f"grid must be a mapping (product) or a list of mappings (points), got {type(grid).__name__}")


def _check_keys(mapping: Mapping) -> None:
    unknown = [k for k in mapping if k not in GRID_KEYS and not (isinstance(k, str) and "." in k)]
    if unknown:
        raise ValueError(f"unknown grid key(s) {unknown}; allowed: {list(GRID_KEYS)}")


def make_points(grid, protocol: Protocol, *, dataset: str = "", method: str = "s2c2seg", preset=None,
                css: CSSConfig | None = None, csg: CSGConfig | None = None, score_source: str = "clipseg",
                select: bool = True, baseline: str | None = None) -> list[SweepPoint]:
    """Validated :class:`SweepPoint` s: the defaults overridden by each point's settings (errors raise here).

    Each point is a :class:`~s2c2seg.runspec.RunSpec` from :func:`s2c2seg.runspec.resolve_run`, as one evaluation
    of ``dataset`` (its name picks a released preset's operating point; "" = none); a point's dotted keys
    override its preset's values. The sweep's ``preset`` applies to its ``s2c2seg`` points.
    """
    points = []
    for i, settings in enumerate(expand_grid(grid)):
        try:
            run = {"method": method, "score_source": score_source, "select": select, "preset": preset}
            css_kw, csg_kw, proto_kw, dotted = {}, {}, {}, {}
            for k, v in settings.items():
                if k == "use":
                    v = _parse_use(v)
                if k in CSS_KEYS:
                    css_kw[k] = v
                elif k in CSG_KEYS:
                    csg_kw[k] = v
                elif k in PROTOCOL_KEYS:
                    proto_kw[k] = None if (k == "area_thd" and v in (None, "none", "off")) else v
                elif k in RUN_KEYS:
                    run[k] = v
                else:
                    dotted[k] = v
            if not isinstance(run["select"], bool):
                raise ValueError(f"select must be true or false, got {run['select']!r}")
            base_css, base_csg = css, csg
            if settings.get("preset", "paper") != "paper":  # a point naming a released preset: no paper defaults
                base_css = base_csg = None
            point_css = replace(base_css or CSSConfig(), **css_kw) if (base_css is not None or css_kw) else None
            point_csg = replace(base_csg or CSGConfig(), **csg_kw) if (base_csg is not None or csg_kw) else None
            if run["method"] != "s2c2seg" and "preset" not in settings:
                run["preset"] = None  # the sweep's preset is the s2c2seg points' (a point naming one is refused)
            spec = resolve_run(run["method"], dataset, protocol.replace(**proto_kw), preset=run["preset"],
                               css=point_css, csg=point_csg, score_source=run["score_source"], select=run["select"],
                               overrides=dotted, baseline=baseline)
            shown = tuple((k, list(v) if isinstance(v, tuple) else v) for k, v in settings.items())
            points.append(SweepPoint(**{f.name: getattr(spec, f.name) for f in fields(RunSpec)}, settings=shown))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid point {i} {settings}: {exc}") from exc
    return points


def load_grid(path: str | Path):
    """A grid from a YAML (or JSON) file; keys are checked by :func:`expand_grid`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file not found: {path} (give --grid the path of a YAML file)")
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"grid file {path} is not valid YAML{where}: {problem} (fix its syntax: a mapping "
                         "'key: [values]' or a list of mappings)") from exc
    try:
        expand_grid(grid)
    except ValueError as exc:
        raise ValueError(f"grid file {path}: {exc}") from exc
    return grid


@dataclass
class SweepResult:
    points: list[SweepPoint]
    records: list[RunRecord]
    point_seconds: list[float] = field(default_factory=list)
    """Downstream seconds spent per point (summed over images and ranks)."""
    bundle_seconds: float = 0.0
    """Seconds spent reading / computing bundles (the full-size maps are built by each image's first point)."""

    def rows(self) -> list[dict[str, Any]]:
        keys: list[str] = []
        for p in self.points:
            keys += [k for k, _ in p.settings if k not in keys]
        out = []
        n = self.records[0].num_images if self.records else 1
        for i, (p, r, t) in enumerate(zip(self.points, self.records, self.point_seconds)):
            row: dict[str, Any] = {"point": i, "name": p.label}
            settings = dict(p.settings)
            for k in keys:
                v = settings.get(k, "")
                row[k] = "+".join(v) if isinstance(v, list) else v
            sub = (r.extra.get("subset") or {})
            row.update({"mIoU": _pct(r.metrics["mIoU"]), "aAcc": _pct(r.metrics["aAcc"]),
                        "mAcc": _pct(r.metrics["mAcc"]),
                        "mean_K": None if sub.get("mean_subset_size") is None else round(sub["mean_subset_size"], 2),
                        "recall": None if sub.get("gt_class_recall") is None else round(sub["gt_class_recall"], 4),
                        "ms_per_image": round(1000 * t / n, 2)})
            out.append(row)
        return out

    def markdown(self) -> str:
        rows = self.rows()
        if not rows:
            return ""
        label = self.records[0].label
        cols = list(rows[0])
        lines = []
        if label:
            lines.append(f"**{label}** — numbers from {label.lower()} features, not evidence for the paper.\n")
        r0 = self.records[0]
        skipped = r0.extra.get("num_skipped", 0)
        lines.append(f"Sweep on {r0.dataset} ({r0.num_images} images" + (f", {skipped} skipped" if skipped else "")
                     + f"), baseline {r0.baseline}, backend {r0.backend.get('backend', r0.backend)}; mIoU/aAcc/mAcc "
                     "in %.\n")
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for r in rows:
            lines.append("| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> None:
        rows = self.rows()
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write(out_dir / "sweep.csv", buf.getvalue())
        atomic_write(out_dir / "sweep.md", self.markdown())
        for i, r in enumerate(self.records):
            r.save(out_dir / "points" / f"{i:03d}")
        write_json_new(out_dir / "sweep.json", {
            "kind": "sweep", "rows": rows, "bundle_seconds": self.bundle_seconds,
            "points": [{"settings": dict(p.settings), "record": f"points/{i:03d}/record.json"}
                       for i, p in enumerate(self.points)]})


def _pct(x):
    return None if x is None or x != x else round(100 * x, 2)


def sweep(dataset, backend, vocab: Vocabulary, protocol: Protocol, grid, *, method: str = "s2c2seg",
          preset=None, css: CSSConfig | None = None, csg: CSGConfig | None = None, score_source: str = "clipseg",
          select: bool = True, background: int | None | str = "auto", cache_dir: str | Path | None = None,
          out_dir: str | Path | None = None, max_images: int | None = None, baseline: str | None = None,
          progress: bool = True, dist: DistContext | None = None, on_error: str = ON_ERROR_DEFAULT) -> SweepResult:
    """Evaluate every grid point over the split, reading each image's bundle once (see the module docstring).

    The keyword defaults are the settings of keys a point does not give. Under torchrun the images are
    sharded and the per-point confusion matrices all-reduced; rank 0 writes ``out_dir``. ``on_error="skip"``
    goes on past an image that fails; every point's record lists it (``extra["skipped"]``).
    """
    check_on_error(on_error)
    info = dataset_info(dataset)
    points = make_points(grid, protocol, dataset=info.name, method=method, preset=preset, css=css, csg=csg,
                         score_source=score_source, select=select, baseline=baseline)
    if info.num_classes is not None and info.num_classes != vocab.num_classes:
        raise ValueError(f"vocab has {vocab.num_classes} classes, dataset {info.name!r} has {info.num_classes}")
    bg = info.background if background == "auto" else background
    desc = describe_backend(backend)
    indices = image_indices(len(dataset), max_images)
    out = claim_out_dir(out_dir, "sweep.json")
    ctx = dist if dist is not None else init_from_env()
    try:
        tally = run_points(dataset, backend, vocab, protocol, points, info=info, background=bg, indices=indices,
                           cache_dir=cache_dir, ctx=ctx, progress=progress, desc=f"{info.name} sweep x{len(points)}",
                           on_error=on_error)
    finally:
        if dist is None:
            finish(ctx)
    records = []
    for j, p in enumerate(points):
        records.append(make_record(
            p, info=info, backend=desc, background=bg, max_images=max_images, vocab=vocab, cm=tally.cms[j],
            num_images=tally.num_images, sums=tally.sums[j], world_size=ctx.world_size,
            cache=tally.cache_info(cache_dir), extra={"sweep_point": j, "settings": dict(p.settings)},
            skipped=tally.skipped))
    result = SweepResult(points, records, tally.sums[:, 2].tolist(), tally.bundle_seconds)
    if out is not None and ctx.is_main:
        result.write(out)
    return result
