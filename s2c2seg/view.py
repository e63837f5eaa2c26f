"""A bundle's full-size maps on demand, memoised and memory-bounded: what every downstream reading reads.

:func:`dense_logits` rebuilds the baseline's slide-averaged cosine logits at the image size (the anchors'
``forward_slide``), :func:`clipseg_maps` the paper reading's CLIPSeg maps; :class:`BundleView` memoises them and
the CSS class scores and selections per image, so that a sweep (many settings on one image) and one evaluation
read the same numbers. Above ``ViewConfig.full_maps_bytes`` (large vocabularies) nothing of size (Q, H, W) is
built: only a subset's maps are upsampled, and passes over all queries stream in chunks of whole classes.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .css import CSSConfig
from .postprocess import query_probabilities, streamed_softmax_means, synonym_max
from .slide import slide_average

__all__ = ["SCORE_SOURCES", "ViewConfig", "BundleView", "dense_logits", "clipseg_maps", "class_scores"]

SCORE_SOURCES = ("clipseg", "baseline")
"""CSS's ``s_spat``: CLIPSeg's spatial mean (the paper) or the baseline's own softmax maps (an ablation)."""


def _check_queries(bundle: FeatureBundle, queries) -> torch.Tensor | None:
    if queries is None:
        return None
    q = torch.as_tensor(queries)
    if q.ndim != 1 or q.is_floating_point() or q.dtype == torch.bool or q.numel() == 0:
        raise ValueError(f"queries must be a non-empty 1-D integer tensor, got {tuple(q.shape)} {q.dtype}")
    q = q.long()
    if int(q.min()) < 0 or int(q.max()) >= bundle.num_queries:
        raise ValueError(f"queries must lie in [0, {bundle.num_queries}), got {q.tolist()}")
    return q


def dense_logits(bundle: FeatureBundle, queries=None) -> torch.Tensor:
    """(Q', H, W) slide-averaged cosine logits of ``queries`` (all by default) at the image size.

    Per-crop grids are bilinearly upsampled to their windows (to the padded window, then the padding cut, when
    the bundle has ``window_pad``) and averaged at ``resized_hw``
    (``slide.slide_average``), then resized bilinearly (align_corners=False) to ``image_hw``: the anchors'
    ``forward_slide``.
    """
    q = _check_queries(bundle, queries)
    per_crop = bundle.dense_logits if q is None else bundle.dense_logits.index_select(1, q)
    return slide_average(per_crop, bundle.crop_boxes, bundle.resized_hw.tolist(), out_hw=bundle.image_hw.tolist(),
                         pad=bundle.window_pad)


def clipseg_maps(bundle: FeatureBundle, queries=None) -> torch.Tensor:
    """(Q', H, W) float32 CLIPSeg sigmoid maps of ``queries`` upsampled bilinearly to the image size."""
    q = _check_queries(bundle, queries)
    maps = bundle.clipseg_maps if q is None else bundle.clipseg_maps.index_select(0, q)
    h, w = (int(v) for v in bundle.image_hw)
    maps = maps.float()
    if tuple(maps.shape[-2:]) == (h, w):
        return maps.clone()
    return F.interpolate(maps[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def class_scores(bundle: FeatureBundle, source: str = "clipseg", logit_scale: float = 40.0):
    """CSS inputs ``(s_glob (C,), s_spat (C,))``, each the max over a class's synonyms.

    ``s_glob``: global CLIP cosine. ``s_spat``: CLIPSeg's spatial mean (``source="clipseg"``, the paper) or the
    spatial mean of the baseline's own softmax maps (``source="baseline"``, an ablation; uses ``logit_scale``).
    """
    return BundleView(bundle).class_scores(source, logit_scale)


@dataclass(frozen=True)
class ViewConfig:
    """How a :class:`BundleView` bounds its memory: full-size maps of all queries only while they are small."""

    full_maps_bytes: int = 512 * 2**20
    """All-query full-size maps (dense + CLIPSeg, float32) are built once and sliced when they take at most
    this many bytes; beyond it (large vocabularies) only a subset's maps are ever upsampled, and passes over
    all queries (the baseline's arg-max, ``score_source="baseline"``) stream in chunks of whole classes."""
    query_chunk: int = 256
    """Queries per chunk of a streamed pass (whole classes: a class with more synonyms is one chunk)."""
    subset_cache: int = 8
    """Distinct subsets whose full-size maps a view keeps (the least recently used is dropped first)."""

    def __post_init__(self) -> None:
        for name, low in (("full_maps_bytes", 0), ("query_chunk", 1), ("subset_cache", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"ViewConfig.{name} must be an integer >= {low}, got {v!r}")


class BundleView:
    """A bundle's full-size maps, computed on demand and memoised, in memory bounded by :class:`ViewConfig`.

    Every prediction goes through a view, so a sweep (many settings on one image) and a single evaluation get
    the same maps for the same subset and so the same numbers. Small bundles (``Q·H·W`` within
    ``config.full_maps_bytes``) build the all-query maps once and slice them (no rounding between subsets);
    large ones upsample only each subset (memoised per subset) and stream the all-query passes in chunks,
    which agree with the full maps to float rounding (the interpolation kernels vectorise over queries).
    """

    def __init__(self, bundle: FeatureBundle, config: ViewConfig = ViewConfig()):
        if not isinstance(bundle, FeatureBundle):
            raise ValueError(f"bundle must be a FeatureBundle, got {type(bundle).__name__}")
        if not isinstance(config, ViewConfig):
            raise ValueError(f"config must be a ViewConfig, got {type(config).__name__}")
        self.bundle = bundle
        self.config = config
        self.query_to_class = bundle.query_to_class.long()
        self.num_classes = bundle.num_classes
        self.image_hw = tuple(int(v) for v in bundle.image_hw)
        h, w = self.image_hw
        self.streams = 2 * 4 * bundle.num_queries * h * w > config.full_maps_bytes
        """Whether all-query passes stream in chunks (the all-query maps would exceed the budget)."""
        self._dense: torch.Tensor | None = None
        self._clipseg: torch.Tensor | None = None
        self._scores: dict = {}
        self._selections: dict = {}
        self._subsets: OrderedDict = OrderedDict()
        self._chunks: list[torch.Tensor] | None = None
        self._extensions: dict = {}

    def extension(self, name: str, factory):
        """A downstream memo that lives (and dies) with this view, built once by ``factory()`` (e.g. the released
        pipeline's :class:`~s2c2seg.released.ReleasedView`): no module-global registry."""
        if name not in self._extensions:
            self._extensions[name] = factory()
        return self._extensions[name]

    # ------------------------------------------------------------------ maps
    def subset_maps(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S_glob, S_spat) (Q', H, W) of ``queries``, memoised per subset (``config.subset_cache`` of them)."""
        q = torch.as_tensor(queries).long()
        key = tuple(q.tolist())
        if key in self._subsets:
            self._subsets.move_to_end(key)
        else:
            self._subsets[key] = (self.dense(q), self.clipseg(q))
            while len(self._subsets) > self.config.subset_cache:
                self._subsets.popitem(last=False)
        return self._subsets[key]

    def dense(self, queries=None) -> torch.Tensor:
        """(Q', H, W) slide-averaged cosine logits of ``queries`` (all: O(Q·H·W), avoid for large Q)."""
        if self.streams:
            return dense_logits(self.bundle, queries)
        if self._dense is None:
            self._dense = dense_logits(self.bundle)
        return self._dense if queries is None else self._dense.index_select(0, torch.as_tensor(queries).long())

    def clipseg(self, queries=None) -> torch.Tensor:
        """(Q', H, W) CLIPSeg maps of ``queries`` at the image size (all: O(Q·H·W), avoid for large Q)."""
        if self.streams:
            return clipseg_maps(self.bundle, queries)
        if self._clipseg is None:
            self._clipseg = clipseg_maps(self.bundle)
        return self._clipseg if queries is None else self._clipseg.index_select(0, torch.as_tensor(queries).long())

    def class_chunks(self) -> list[torch.Tensor]:
        """Query indices in chunks of whole classes, classes ascending (``config.query_chunk`` queries each)."""
        if self._chunks is None:
            q2c = self.query_to_class
            order = torch.sort(q2c, stable=True).indices
            _, counts = torch.unique_consecutive(q2c[order], return_counts=True)
            self._chunks, start, size = [], 0, 0
            bounds = torch.cumsum(counts, 0).tolist()
            for end in bounds:
                if end - start > self.config.query_chunk and size > start:
                    self._chunks.append(order[start:size])
                    start = size
                size = end
            self._chunks.append(order[start:size])
        return self._chunks

    # ------------------------------------------------------------------ scores and selections
    def class_scores(self, source: str = "clipseg", logit_scale: float = 40.0):
        if source not in SCORE_SOURCES:
            raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {source!r}")
        key = (source, float(logit_scale) if source == "baseline" else None)
        if key not in self._scores:
            b, c = self.bundle, self.num_classes
            s_glob = synonym_max(b.global_sim.float(), self.query_to_class, c)
            if source == "clipseg":
                s_spat = synonym_max(b.clipseg_mean.float(), self.query_to_class, c)
            elif not self.streams:
                probs = query_probabilities(self.dense(), logit_scale)
                s_spat = synonym_max(probs, self.query_to_class, c).mean(dim=(1, 2))
            else:
                s_spat = streamed_softmax_means(self, logit_scale)
            self._scores[key] = (s_glob, s_spat)
        return self._scores[key]

    def select(self, css: CSSConfig, source: str, logit_scale: float, always_keep: tuple) -> torch.Tensor:
        """CSS's subset for this image, memoised per (the whole frozen config, source, always_keep)."""
        key = (css, source, float(logit_scale) if source == "baseline" else None, tuple(always_keep))
        if key not in self._selections:
            s_glob, s_spat = self.class_scores(source, logit_scale)
            self._selections[key] = css.select(s_glob, s_spat, always_keep=always_keep)
        return self._selections[key]
