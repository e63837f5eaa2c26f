"""The encode side of a run: which source groups, which CLIPSeg text, which precision (issue 17).

It changes the bundle (and so the cache key), never the downstream math. :class:`EncodeSpec` is derived from
the run (:meth:`EncodeSpec.of`), turned into the Segmenter's settings (:meth:`EncodeSpec.segmenter_config`), and
checked against what a backend or bundle states it encoded (:meth:`EncodeSpec.check`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .bundle import SOURCE_GROUPS
from .presets import LOCAL_TEXTS, PRECISIONS, EncodeSide, Preset
from .segmenter import SegmenterConfig

__all__ = ["EncodeSpec", "EncodeMismatchError", "bundle_sources"]


class EncodeMismatchError(ValueError):
    """A backend or bundle whose encode side is not the run's (one line: both values and the fix)."""


def bundle_sources(method: str, preset: Preset | None = None) -> frozenset[str]:
    """The source groups ``method`` under ``preset`` reads besides the dense logits: none (``baseline``),
    ``window`` (the released reading) or ``paper`` (the paper reading and the oracle)."""
    if method == "baseline":
        return frozenset()
    if method == "s2c2seg" and preset is not None and preset.reading == "released":
        return frozenset({"window"})
    return frozenset({"paper"})


@dataclass(frozen=True)
class EncodeSpec:
    """The encode side a run needs: it changes the bundle (and the cache key), never the downstream math."""

    sources: tuple[str, ...] = ()
    """Source groups read besides the dense logits (sorted; a subset of :data:`SOURCE_GROUPS`)."""
    local_text: str | None = None
    """CLIPSeg text of ``window_local`` (:data:`s2c2seg.presets.LOCAL_TEXTS`); None when no window source is read."""
    precision: str = "fp32"
    """:data:`s2c2seg.presets.PRECISIONS`: ``fp32``, or ``auto`` (fp16 where the device supports it, else fp32)."""

    def __post_init__(self):
        if any(s not in SOURCE_GROUPS for s in self.sources) or list(self.sources) != sorted(set(self.sources)):
            raise ValueError(f"EncodeSpec.sources must be sorted distinct groups of {tuple(SOURCE_GROUPS)}, "
                             f"got {self.sources!r}")
        if self.local_text is not None and self.local_text not in LOCAL_TEXTS:
            raise ValueError(f"EncodeSpec.local_text must be None or one of {LOCAL_TEXTS}, got {self.local_text!r}")
        if ("window" in self.sources) != (self.local_text is not None):
            raise ValueError("EncodeSpec.local_text is set exactly when the window sources are read")
        if self.precision not in PRECISIONS:
            raise ValueError(f"EncodeSpec.precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def of(cls, method: str, preset: Preset | None) -> EncodeSpec:
        """The encode side of ``method`` under ``preset`` (its ``encode`` section; none: CLIPSeg plain, fp32)."""
        side = preset.encode if preset is not None else EncodeSide()
        sources = tuple(sorted(bundle_sources(method, preset)))
        return cls(sources, side.local_text if "window" in sources else None, side.precision)

    def union(self, other: EncodeSpec) -> EncodeSpec:
        """One encode serving both runs: the sources of either; a CLIPSeg text both agree on (else
        :class:`EncodeMismatchError`); fp32 when either needs it (``auto`` accepts fp32)."""
        texts = {t for t in (self.local_text, other.local_text) if t is not None}
        if len(texts) > 1:
            raise EncodeMismatchError(
                "these runs need CLIPSeg window maps from two texts ('plain' and 'template'), which one encode "
                "cannot give: run them as two evaluations or sweeps (e.g. one per preset)")
        precision = self.precision if self.precision == other.precision else "fp32"
        return EncodeSpec(tuple(sorted(set(self.sources) | set(other.sources))), next(iter(texts), None), precision)

    def segmenter_config(self, device: str | None = None, *, all_sources: bool = False,
                         base: SegmenterConfig | None = None) -> SegmenterConfig:
        """The Segmenter settings that encode this side: its CLIPSeg text, fp16 for ``precision="auto"`` on CUDA
        (else fp32), and its source groups (``all_sources``: every group, so one cache serves every method)."""
        fp16 = self.precision == "auto" and str(device or "cpu").startswith("cuda")
        groups = set(SOURCE_GROUPS) if all_sources else set(self.sources)
        return dataclasses.replace(base or SegmenterConfig(), local_text=self.local_text or "plain",
                                   precision="fp16" if fp16 else "fp32", paper_sources="paper" in groups,
                                   window_sources="window" in groups)

    def check(self, stated: dict, what: str = "backend") -> None:
        """Refuse a backend (its ``describe()``) or a bundle (its ``meta``) whose stated encode side is not this
        one: missing source groups, another CLIPSeg text, or fp16 where fp32 is required. What it does not state
        (the simulation has no CLIPSeg text) is not checked."""
        if "sources" in stated and stated["sources"] is not None:
            missing = sorted(set(self.sources) - set(stated["sources"]))
            if missing:
                raise EncodeMismatchError(
                    f"the run reads the {missing[0]} sources, which this {what} does not compute (it has "
                    f"{sorted(stated['sources'])}): build it with SegmenterConfig({missing[0]}_sources=True), e.g. "
                    "RunSpec.encode.segmenter_config() or s2c2seg.factories.backend_for(backend, spec.encode)")
        text = stated.get("local_text")
        if self.local_text is not None and text is not None and text != self.local_text:
            raise EncodeMismatchError(
                f"the run needs CLIPSeg window maps from {self.local_text!r} text, this {what} encoded {text!r}: "
                f"build it with SegmenterConfig(local_text={self.local_text!r}) (RunSpec.encode.segmenter_config(), "
                "or s2c2seg.factories.backend_for(backend, spec.encode)), or set encode.local_text to match")
        if self.precision == "fp32" and stated.get("precision") == "fp16":
            raise EncodeMismatchError(
                f"the run needs an fp32 encode, this {what} ran in fp16: build it with SegmenterConfig(precision="
                "'fp32'), or run a preset whose encode.precision is 'auto'")

    def to_json(self) -> dict:
        return {"sources": list(self.sources), "local_text": self.local_text, "precision": self.precision}
