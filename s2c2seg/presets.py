"""Presets: a named, complete description of the downstream computation of ``method="s2c2seg"``.

* ``paper``: the paper-formula reading (issue 2): ``CSSConfig`` / ``CSGConfig`` defaults, class-level CSS per
  image, per-query fusion, ``prob_thd`` from the protocol.
* ``released``: the authors' conference run (``yhflq/S2c2seg`` ``scripts/run_conference.sh`` + ``configs/``).
* ``released++``: the authors' journal run (``scripts/run_journal.sh``, S2C2Seg++).

``get_preset(name, dataset, **overrides)`` resolves a preset for one dataset from the operating-point table
(``data/operating_points.py``) and the step dataclasses' defaults (the release's ``models/config.py``). Every
field is a dotted key (``"select.tau"``, ``"post.spatial.iterations"``; :func:`preset_keys`), overridable with
:meth:`Preset.override` or ``get_preset(..., **{"select.tau": 0.4})``; ``Preset.to_json()`` states every value.
The ``encode`` section (CLIPSeg text, precision) is encode-side: it changes the bundle (the cache key), not the
downstream math; it is listed so that records state it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .css import CSSConfig
from .csg import CSGConfig
from .released_fusion import FusionConfig
from .released_scores import ScoreConfig, SelectConfig
from .data.operating_points import DATASETS, RUN_SOURCES, operating_point
from .refine import RefineConfig
from .released_post import PostConfig

__all__ = ["PRESETS", "READINGS", "DEFAULT_PRESET", "LOCAL_TEXTS", "PRECISIONS", "EncodeSide", "Preset", "get_preset",
           "preset_keys", "resolve_preset", "extension_note", "RELEASED_BASELINE"]

PRESETS = ("paper", "released", "released++")
READINGS = {"paper": "paper", "released": "released", "released++": "released"}
"""Preset -> its reading: the paper's formulas (``css`` / ``csg`` sections) or the release's window pipeline."""
DEFAULT_PRESET = "released"
"""The preset of ``method="s2c2seg"`` when none is named, for every baseline (README)."""
LOCAL_TEXTS = ("plain", "template")
"""CLIPSeg's conditional text: the bare query word, or the unnormalised mean over the 80 ImageNet templates."""
PRECISIONS = ("fp32", "auto")
"""ProxyCLIP's CLIP + DINO precision: fp32, or ``auto`` = fp16 where the device supports it (the release's fp16)."""
RELEASED_BASELINE = "proxyclip"
"""The only baseline the release wraps."""

_OP_KEYS = {"tau": "select.tau", "lam": "fusion.lam", "t_max": "refine.t_max", "global_score": "score.global_score",
            "residual_beta": "refine.residual_beta", "adaptive_admit": "refine.adaptive_admit",
            "sr_iterations": "post.spatial.iterations", "sr_temperature": "post.spatial.temperature",
            "otsu_c": "post.otsu_c", "local_text": "encode.local_text"}
"""Operating-point table column -> the preset's dotted key."""


@dataclass(frozen=True)
class EncodeSide:
    """Encode-side choices (they change the bundle and its cache key; the downstream only records them)."""

    local_text: str = "plain"
    """One of ``LOCAL_TEXTS`` (``SegmenterConfig.local_text``)."""
    precision: str = "fp32"
    """One of ``PRECISIONS`` (the Segmenter's ProxyCLIP precision)."""

    def __post_init__(self):
        if self.local_text not in LOCAL_TEXTS:
            raise ValueError(f"encode.local_text must be one of {LOCAL_TEXTS}, got {self.local_text!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"encode.precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Preset:
    """A resolved preset: the paper sections (``css``, ``csg``) or the released ones (``score`` ... ``post``)."""

    name: str
    dataset: str
    encode: EncodeSide = field(default_factory=EncodeSide)
    css: CSSConfig | None = None
    csg: CSGConfig | None = None
    score: ScoreConfig | None = None
    select: SelectConfig | None = None
    fusion: FusionConfig | None = None
    refine: RefineConfig | None = None
    post: PostConfig | None = None

    def __post_init__(self):
        if self.name not in READINGS:
            raise ValueError(f"unknown preset {self.name!r}; known: {list(PRESETS)}")
        paper = self.css is not None and self.csg is not None
        released = all(getattr(self, s) is not None for s in ("score", "select", "fusion", "refine", "post"))
        if (paper, released) != (self.reading == "paper", self.reading == "released"):
            raise ValueError(f"preset {self.name!r} ({self.reading} reading) must have exactly its reading's "
                             "sections (get_preset builds them)")

    @property
    def reading(self) -> str:
        """``paper`` or ``released`` (:data:`READINGS`): which pipeline ``predict`` runs for this preset."""
        return READINGS[self.name]

    def sections(self) -> dict[str, Any]:
        """Section name -> its dataclass (the ones this preset has)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("name", "dataset") and getattr(self, f.name) is not None}

    def keys(self) -> list[str]:
        """Every overridable dotted key of this preset."""
        return [k for name, sec in self.sections().items() for k in _flat_keys(sec, name)]

    def get(self, key: str) -> Any:
        """The value at a dotted key."""
        obj = self
        for part in self._check_key(key).split("."):
            obj = getattr(obj, part)
        return obj

    def override(self, overrides: Mapping[str, Any]) -> Preset:
        """A copy with a flat mapping of dotted keys (or whole sections) replaced; unknown keys raise.

        The keys of one section are applied together, so ``{"select.k_min": 8, "select.k_max": 10}`` is
        validated once, on the final values.
        """
        preset, tree = self, {}
        for key, value in overrides.items():
            if "." not in key and key in self.sections():
                sec = getattr(self, key)
                value = dataclasses.replace(sec, **value) if isinstance(value, Mapping) else value
                if type(value) is not type(sec):
                    raise ValueError(f"preset section {key!r} must be a {type(sec).__name__}, "
                                     f"got {type(value).__name__}")
                preset = dataclasses.replace(preset, **{key: value})
                continue
            node, *path, leaf = self._check_key(key).split(".")
            branch = tree.setdefault(node, {})
            for part in path:
                branch = branch.setdefault(part, {})
            branch[leaf] = value
        return _apply(preset, tree)

    def _check_key(self, key: str) -> str:
        if key not in self.keys():
            raise ValueError(f"unknown {self.name!r} preset key {key!r}; known: {self.keys()}")
        return key

    def to_json(self, baseline: str | None = None) -> dict:
        """Every resolved value, the preset name, its source, and (with ``baseline``) the extension note."""
        out = {"preset": self.name, "dataset": self.dataset, "source": _SOURCES[self.name],
               "encode_side": [f"encode.{f.name}" for f in dataclasses.fields(EncodeSide)]}
        out["reading"] = self.reading
        if self.reading == "released" and _table_key(self.dataset) is None:
            out["operating_point"] = (f"none published for {self.dataset!r}: the release's models/config.py "
                                      "defaults (this toolkit's extension)")
        out.update({name: sec.to_json() for name, sec in self.sections().items()})
        note = extension_note(self, baseline) if baseline is not None else None
        if note:
            out["note"] = note
        return out


_SOURCES = {"paper": "S2C2Seg paper formulas (issue 2 reading)", **RUN_SOURCES}


def _flat_keys(obj, prefix: str) -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        keys += _flat_keys(v, f"{prefix}.{f.name}") if dataclasses.is_dataclass(v) else [f"{prefix}.{f.name}"]
    return keys


def _apply(obj, tree: dict):
    """``obj`` with the nested changes of ``tree`` (frozen dataclasses all the way down, validated on rebuild)."""
    changes = {name: _apply(getattr(obj, name), sub) if isinstance(sub, dict)
               else _coerce(getattr(obj, name), sub, name)
               for name, sub in tree.items()}
    return dataclasses.replace(obj, **changes) if changes else obj


def _coerce(old, value, name: str):
    """Parse a string value (CLI, sweep files) to the type of the field's current value."""
    if not isinstance(value, str) or isinstance(old, str):
        return tuple(value) if isinstance(value, list) else value
    text = value.strip()
    if text.lower() in ("none", "null"):
        return None
    if isinstance(old, bool):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name}: expected a boolean, got {value!r}")
    if isinstance(old, tuple):
        return tuple(type(old[0])(p) if old else float(p) for p in text.strip("()[] ").split(",") if p.strip())
    try:
        if old is None:  # an optional number (k_max, otsu_c, temperature): an integer if it reads as one
            return int(text) if text.lstrip("+-").isdigit() else float(text)
        return int(text) if isinstance(old, int) else float(text)
    except ValueError:
        return text  # a choice such as "weighted"; the dataclass validates it


def _paper(dataset: str) -> Preset:
    return Preset("paper", dataset, EncodeSide(), css=CSSConfig(), csg=CSGConfig())


SIM_PREFIX = "sim_"
"""A simulated dataset's name (``sim_voc21``) takes the operating point of the benchmark it imitates."""


def _table_key(dataset: str) -> str | None:
    """The operating-point table's key for a dataset name (``sim_voc21`` -> ``voc21``), None if it has none."""
    key = dataset[len(SIM_PREFIX):] if dataset.startswith(SIM_PREFIX) else dataset
    return key if key in DATASETS else None


def _released(name: str, dataset: str) -> Preset:
    base = Preset(name, dataset, EncodeSide(precision="auto"), score=ScoreConfig(), select=SelectConfig(),
                  fusion=FusionConfig(), refine=RefineConfig(), post=PostConfig())
    key = _table_key(dataset)
    if key is None:  # a dataset the release never configured (ADE-847, PC-459, custom): its config defaults
        return base
    return base.override({_OP_KEYS[k]: v for k, v in operating_point(name, key).items()})


def get_preset(name: str, dataset: str, **overrides) -> Preset:
    """The preset ``name`` resolved for ``dataset`` with ``overrides`` (dotted keys or whole sections) applied.

    A dataset without a published operating point (ADE-847, PC-459, a custom vocabulary) gets the release's
    config defaults, and ``to_json()`` says so. An unknown preset or key raises ``ValueError`` naming the known ones.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {list(PRESETS)}")
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a dataset name such as {DATASETS[0]!r}, got {dataset!r}")
    preset = _paper(dataset) if READINGS[name] == "paper" else _released(name, dataset)
    return preset.override(overrides)


def preset_keys(name: str) -> list[str]:
    """Every overridable dotted key of preset ``name`` (each is a sweep key)."""
    return get_preset(name, DATASETS[0]).keys()


def extension_note(preset: Preset | str, baseline: str) -> str | None:
    """The note every record of a released preset on a baseline other than ProxyCLIP carries (else None)."""
    name = preset if isinstance(preset, str) else preset.name
    if READINGS.get(name) == "paper" or baseline == RELEASED_BASELINE:
        return None
    return (f"the authors ran the {name!r} preset on ProxyCLIP only; on {baseline!r} it is this toolkit's "
            "extension, not a published configuration")


def resolve_preset(method: str, dataset: str, preset: str | Preset | None = None, css: CSSConfig | None = None,
                   csg: CSGConfig | None = None, paper_options: bool = False, overrides: Mapping | None = None
                   ) -> tuple[Preset | None, CSSConfig, CSGConfig]:
    """``(preset, css, csg)`` of one run of ``method`` on ``dataset``: the one default rule (README).

    Only ``method="s2c2seg"`` reads a preset: named (``str``) or given (:class:`Preset`); with none, ``css`` /
    ``csg`` or another paper-only option given (``paper_options``: ``select=False``, a ``score_source`` other than
    CLIPSeg) mean the paper reading, and nothing given means :data:`DEFAULT_PRESET`. ``css`` / ``csg`` configure
    the paper preset only: with a released preset they raise (override its keys instead). ``overrides``: the
    preset's dotted keys. A preset (or overrides) given with another method raises: that method does not read it.
    """
    if method != "s2c2seg":
        if preset is not None or overrides:
            name = preset if isinstance(preset, str) or preset is None else preset.name
            raise ValueError(f"method {method!r} reads no preset (got {name!r}" + (f", keys {sorted(overrides)}"
                             if overrides else "") + "): presets set method 's2c2seg' (drop the preset, or use "
                             "method='s2c2seg')")
        return None, css or CSSConfig(), csg or CSGConfig()
    if preset is None:
        preset = "paper" if (css is not None or csg is not None or paper_options) else DEFAULT_PRESET
    if isinstance(preset, str):
        preset = get_preset(preset, dataset)
    if not isinstance(preset, Preset):
        raise ValueError(f"preset must be one of {list(PRESETS)} or a Preset, got {preset!r}")
    if preset.reading == "paper":
        preset = dataclasses.replace(preset, css=css or preset.css, csg=csg or preset.csg).override(overrides or {})
        return preset, preset.css, preset.csg
    if css is not None or csg is not None:
        raise ValueError(f"css / csg configure the 'paper' preset; preset {preset.name!r} takes its own keys "
                         f"(e.g. select.tau, fusion.lam; see preset_keys({preset.name!r}))")
    if paper_options:
        raise ValueError(f"select=False / a score_source other than 'clipseg' are paper-preset ablations; preset "
                         f"{preset.name!r} takes its own keys (e.g. select.tau=1.0 keeps every query)")
    return preset.override(overrides or {}), CSSConfig(), CSGConfig()
