"""One resolved run specification: what a run is, stated once, so that what a record says is what ran (issue 17).

:func:`resolve_run` is the one resolver: from what a caller gave (API, CLI, sweep point, notebook) it builds a
frozen :class:`RunSpec` with one default rule (:func:`s2c2seg.presets.resolve_preset`: the README's). Everything
else derives from the spec, never from its own copy of the rule:

* :attr:`RunSpec.encode` (:class:`EncodeSpec`): the encode side the run needs (source groups, CLIPSeg text,
  precision) -> :meth:`EncodeSpec.segmenter_config` (the Segmenter's settings, hence the cache key) and
  :meth:`EncodeSpec.check` (a backend or bundle whose encode side differs is refused, naming both values);
* :meth:`RunSpec.predict`: the downstream call;
* :meth:`RunSpec.parameters`: the record's method parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from .css import CSSConfig
from .csg import CSGConfig
from .data.protocols import Protocol
from .encode_side import EncodeMismatchError, EncodeSpec
from .predict import METHODS, SCORE_SOURCES
from .presets import Preset, resolve_preset

__all__ = ["RunSpec", "resolve_run", "EncodeSpec", "EncodeMismatchError"]


@dataclass(frozen=True)
class RunSpec:
    """A resolved run: method, reading, preset, paper configs, protocol, dataset, baseline (:func:`resolve_run`).

    The first seven fields are the downstream call (``predict``); ``preset`` is set exactly for
    ``method="s2c2seg"`` (its :attr:`~s2c2seg.presets.Preset.reading` is the run's reading).
    """

    method: str
    css: CSSConfig
    csg: CSGConfig
    protocol: Protocol
    score_source: str = SCORE_SOURCES[0]
    select: bool = True
    preset: Preset | None = None
    dataset: str = ""
    """The operating point's dataset name ("" = none: a released preset's config defaults)."""
    baseline: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.score_source not in SCORE_SOURCES:
            raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {self.score_source!r}")
        if not isinstance(self.select, bool):
            raise ValueError(f"select must be True or False, got {self.select!r}")
        if not isinstance(self.protocol, Protocol):
            raise ValueError(f"protocol must be a Protocol, got {type(self.protocol).__name__}")
        if (self.preset is not None) != (self.method == "s2c2seg"):
            raise ValueError(f"method {self.method!r} " + ("needs a preset: build the run with resolve_run"
                                                          if self.method == "s2c2seg" else
                                                          f"reads no preset, got {self.preset.name!r}"))
        if self.preset is not None and self.preset.reading == "paper" and (
                self.css != self.preset.css or self.csg != self.preset.csg):
            raise ValueError("the paper preset's css / csg must be the run's (build the run with resolve_run)")

    @property
    def reading(self) -> str | None:
        """``paper`` / ``released`` (the preset's; the oracle reads the paper's sources), None for the baseline."""
        if self.preset is not None:
            return self.preset.reading
        return "paper" if self.method == "oracle" else None

    @property
    def encode(self) -> EncodeSpec:
        """The encode side this run needs."""
        return EncodeSpec.of(self.method, self.preset)

    def predict(self, bundle, *, label=None, background: int | None = None, ignore_index: int = 255,
                return_logits: bool = False):
        """This run's :func:`s2c2seg.predict.predict` on one bundle (or view)."""
        from .predict import predict

        paper = self.reading != "released"
        return predict(bundle, self.protocol, self.method, css=self.css if paper else None,
                       csg=self.csg if paper else None, label=label,
                       background=background, score_source=self.score_source, select=self.select,
                       preset=self.preset, return_logits=return_logits, ignore_index=ignore_index,
                       dataset=self.dataset)

    def parameters(self) -> dict:
        """The record's method parameters: reading, preset (every resolved value), the paper configs where the
        reading has them, the encode side, the CSS score source and ``select``."""
        out: dict = {"reading": self.reading, "preset": None if self.preset is None else self.preset.name}
        if self.reading == "paper" or self.method == "baseline":
            out.update(css=self.css.to_json(), csg=self.csg.to_json())
        if self.preset is not None:
            out["preset_values"] = self.preset.to_json(self.baseline)
        out.update(encode=self.encode.to_json(), score_source=self.score_source, select=self.select)
        return out


def resolve_run(method: str = "s2c2seg", dataset: str = "", protocol: Protocol | None = None, *,
                preset: str | Preset | None = None, css: CSSConfig | None = None, csg: CSGConfig | None = None,
                score_source: str = SCORE_SOURCES[0], select: bool = True, overrides: dict | None = None,
                baseline: str | None = None) -> RunSpec:
    """The :class:`RunSpec` of what a caller gave: the one resolver (the default rule is
    :func:`s2c2seg.presets.resolve_preset`'s; ``overrides``: the preset's dotted keys)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if score_source not in SCORE_SOURCES:
        raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {score_source!r}")
    if protocol is None:
        protocol = Protocol()
    paper_options = not select or score_source != SCORE_SOURCES[0]
    preset, css, csg = resolve_preset(method, dataset, preset, css, csg, paper_options=paper_options,
                                      overrides=overrides)
    return RunSpec(method, css, csg, protocol, score_source, select, preset, dataset, baseline)
