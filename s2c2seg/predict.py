"""From a FeatureBundle to a label map: the pure downstream (no model is touched here).

``predict(bundle, protocol, method)`` is the one path every caller uses (``s2c2seg eval``, sweeps,
notebooks), with or without the cache, so that cached and uncached evaluations give the same predictions.

Methods
-------
* ``baseline``: the anchors' post-processing (SCLIP ``clip_segmentor.py::postprocess_result``, ProxyCLIP and
  CorrCLIP likewise) on the slide-averaged cosine logits of all queries: softmax(logit_scale · logits) over all
  queries (synonyms compete), per class the max over its synonyms, SCLIP's ``area_thd`` when set, arg-max,
  ``prob_thd`` -> class 0, then CorrCLIP's region vote when ``protocol.vote`` and the bundle has regions.
* ``s2c2seg``: CSS chooses a class subset from the class scores (``css.select_categories``), then CSG fuses,
  per query of the subset, the baseline's dense cosine ``S_glob`` with CLIPSeg's map ``S_spat``
  (``csg.fuse``). By default (``csg.unit="query"``) CSG's "categories" are the subset's *queries*: without
  synonyms this is exactly the paper's class-level formula; with synonyms each name is fused with its own
  CLIPSeg map (``w`` normalised over the subset's queries) and the synonyms are then merged by the max as the
  anchors do. ``csg.unit="class"`` is the paper's literal reading: synonym max of both maps first, then the
  fusion over the K classes (``w`` normalised over the K classes). The same post-processing follows,
  restricted to the subset: the softmax runs over the subset's queries only, the classes outside the subset
  have probability 0, and ``area_thd`` / ``prob_thd`` / the vote apply after the subset is chosen.
  ``select=False`` runs CSG on every class ("w/o CSS"); ``csg.mode="global_only"`` with ``select=True`` is
  "+CSS only".
* ``oracle``: as ``s2c2seg`` with the ground-truth classes of the image as the subset (the upper bound).

Memory: :class:`BundleView` upsamples only what a method reads. Above ``ViewConfig.full_maps_bytes`` (large
vocabularies) nothing of size (Q, H, W) is built: CSS reads the bundle's (Q,) scores, only the subset's maps are
upsampled, and the baseline's arg-max over all queries streams in chunks of whole classes with a running max
and a running log-sum-exp (:func:`streamed_postprocess`).

Class 0 is the background of the anchors' ``prob_thd`` and ``area_thd`` (they have no ``bg_idx``: the
background is index 0 by construction, and the protocol tables only set these knobs for datasets with one).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .css import CSSConfig, oracle_categories
from .csg import CSGConfig
from .data.protocols import Protocol
from .slide import slide_average

__all__ = ["METHODS", "SCORE_SOURCES", "BACKGROUND_LABEL", "Prediction", "ViewConfig", "BundleView",
           "synonym_max", "dense_logits", "clipseg_maps", "class_scores", "postprocess", "streamed_postprocess",
           "fuse_subset", "bundle_sources", "predict"]

METHODS = ("baseline", "s2c2seg", "oracle")
SCORE_SOURCES = ("clipseg", "baseline")
IGNORE_INDEX = 255
"""The default unlabelled value of a label map (the 16-bit .tif datasets use 65535: their spec says so)."""
BACKGROUND_LABEL = 0
"""The label ``prob_thd`` assigns and the class ``area_thd`` never prunes (the anchors' class 0)."""


# ------------------------------------------------------------------------------------------------ views
def synonym_max(values: torch.Tensor, query_to_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per class, the max over its synonyms: (Q, ...) -> (num_classes, ...); classes with no query get −inf."""
    q2c = query_to_class.long().to(values.device)
    if q2c.numel() == 0:
        return values.new_full((num_classes, *values.shape[1:]), float("-inf"))
    if bool((q2c[1:] >= q2c[:-1]).all()):  # a vocabulary's layout: each class's synonyms are consecutive
        out = values.new_full((num_classes, *values.shape[1:]), float("-inf"))
        classes, counts = torch.unique_consecutive(q2c, return_counts=True)
        start = 0
        for c, n in zip(classes.tolist(), counts.tolist()):  # one pass over values, slices are views
            out[c] = values[start] if n == 1 else values[start:start + n].amax(dim=0)
            start += n
        return out
    # any other order: the r-th synonym of every class that has one, r = 0, 1, ...: a few vectorised steps,
    # no (Q, H, W) index
    order = torch.sort(q2c, stable=True).indices
    cls = q2c[order]
    rank = torch.arange(cls.numel(), device=cls.device) - torch.searchsorted(cls, cls, side="left")
    first = order[rank == 0]
    if first.numel() == num_classes:  # every class has a query: no −inf fill needed
        out = values.new_empty((num_classes, *values.shape[1:]))
    else:
        out = values.new_full((num_classes, *values.shape[1:]), float("-inf"))
    out[q2c[first]] = values[first]
    for r in range(1, int(rank.max()) + 1):
        pick = order[rank == r]
        c = q2c[pick]
        out[c] = torch.maximum(out[c], values[pick])
    return out


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
                s_spat = _streamed_softmax_means(self, logit_scale)
            self._scores[key] = (s_glob, s_spat)
        return self._scores[key]

    def select(self, css: CSSConfig, source: str, logit_scale: float, always_keep: tuple) -> torch.Tensor:
        """CSS's subset for this image, memoised per (config, source, always_keep)."""
        key = (css.tau, css.k_min, css.k_max, css.use, css.stage2_pool, source,
               float(logit_scale) if source == "baseline" else None, always_keep)
        if key not in self._selections:
            s_glob, s_spat = self.class_scores(source, logit_scale)
            self._selections[key] = css.select(s_glob, s_spat, always_keep=always_keep)
        return self._selections[key]


# ------------------------------------------------------------------------------------------------ post-processing
def query_probabilities(logits: torch.Tensor, logit_scale: float, inplace: bool = False) -> torch.Tensor:
    """The anchors' softmax over queries: ``softmax(logit_scale · logits, dim=0)`` (``inplace``: scales ``logits``)."""
    return torch.softmax(logits.mul_(logit_scale) if inplace else logits * logit_scale, dim=0)


def _labels(class_probs: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max over the C-class space where the classes outside ``classes`` have probability 0.

    Returns (label (H, W) int64, max probability (H, W)). Ties go to the lower class index, as ``argmax`` over
    all C classes would; a pixel whose subset probabilities are all 0 gets class 0 (the first of C zeros).
    """
    maxp, idx = class_probs.max(dim=0)
    label = classes[idx]
    label[maxp <= 0] = 0
    return label, maxp


def _kept_classes(label: torch.Tensor, classes: torch.Tensor, num_classes: int, area_thd: float) -> torch.Tensor:
    """SCLIP's ``area_thd`` rule: mask over ``classes`` of those kept (arg-max area > area_thd × foreground
    area, or the background)."""
    area = torch.bincount(label.reshape(-1), minlength=num_classes)
    foreground = area[1:].sum()
    return (area[classes] > area_thd * foreground) | (classes == BACKGROUND_LABEL)


def area_prune(class_probs: torch.Tensor, classes: torch.Tensor, num_classes: int, area_thd: float) -> None:
    """SCLIP's ``area_thd`` (in place): zero every non-background class whose arg-max area is
    ≤ area_thd × foreground area."""
    label, _ = _labels(class_probs, classes)
    class_probs[~_kept_classes(label, classes, num_classes, area_thd)] = 0.0


def _finish(label: torch.Tensor, maxp: torch.Tensor, protocol: Protocol, regions) -> tuple[torch.Tensor, bool]:
    """``prob_thd`` -> background, then CorrCLIP's region vote when asked and possible."""
    label[maxp < protocol.prob_thd] = BACKGROUND_LABEL
    voted = bool(protocol.vote and regions is not None)
    if voted:
        from .regions import majority_vote

        label = majority_vote(label, regions)
    return label, voted


def postprocess(logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int, protocol: Protocol,
                regions: torch.Tensor | None = None, consume: bool = False) -> tuple[torch.Tensor, bool]:
    """The anchors' post-processing on the queries given (all, or a subset): -> (label map (H, W), voted).

    softmax(logit_scale · logits) over the given queries; per class the max over its synonyms; classes not
    given have probability 0; SCLIP's ``area_thd`` when set; arg-max; max probability < ``prob_thd`` -> 0;
    CorrCLIP's majority vote per region when ``protocol.vote`` and ``regions`` is not None. ``consume=True``
    lets it scale a float32 ``logits`` in place (the caller owns it and does not read it again).
    """
    q2c = query_to_class.long()
    if logits.ndim != 3 or logits.shape[0] != q2c.numel():
        raise ValueError(f"logits must be (Q', H, W) with Q' = {q2c.numel()} queries, got {tuple(logits.shape)}")
    logits = logits.float()
    probs = query_probabilities(logits, protocol.logit_scale, inplace=consume and logits.dtype == torch.float32)
    classes, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
    class_probs = synonym_max(probs, inverse, classes.numel())
    if protocol.area_thd is not None:
        area_prune(class_probs, classes, num_classes, protocol.area_thd)
    label, maxp = _labels(class_probs, classes)
    return _finish(label, maxp, protocol, regions)


def _running_argmax(view: BundleView, scale: float, classes: torch.Tensor | None = None):
    """One streamed pass over the queries (of ``classes``, default all) of scaled logits ``x = scale·S_glob``:
    per pixel the arg-max class of the synonym max (ties: lower class), its value, and (over all queries
    only) the running log-sum-exp ``(M, Z)`` with ``Z = Σ_q exp(x_q − M)``."""
    best = cls = m = z = None
    chunks = view.class_chunks() if classes is None else [
        torch.nonzero(torch.isin(view.query_to_class, classes)).reshape(-1)]
    for queries in chunks:
        x = view.dense(queries).mul_(scale)
        q2c = view.query_to_class[queries]
        present, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
        value, idx = synonym_max(x, inverse, present.numel()).max(dim=0)
        label = present[idx]
        if classes is None:
            top = x.amax(dim=0)
            if m is None:
                m, z = top, torch.exp(x - top).sum(dim=0)
            else:
                new_m = torch.maximum(m, top)
                z = z * torch.exp(m - new_m) + torch.exp(x - new_m).sum(dim=0)
                m = new_m
        if best is None:
            best, cls = value, label
        else:
            better = value > best  # strict: the earlier (lower) class keeps a tie
            best = torch.where(better, value, best)
            cls = torch.where(better, label, cls)
    return cls, best, m, z


def streamed_postprocess(view: BundleView, protocol: Protocol) -> tuple[torch.Tensor, bool]:
    """:func:`postprocess` on all queries of ``view`` in chunks of whole classes, in O(chunk·H·W) memory.

    The softmax's arg-max is the arg-max of ``x = logit_scale·S_glob`` (synonym max, ties to the lower class)
    and its max probability is ``exp(x_best − M) / Z`` from a running log-sum-exp; ``area_thd`` re-runs the
    arg-max over the kept classes only (the classes with arg-max area, plus the background).
    """
    scale = protocol.logit_scale
    label, best, m, z = _running_argmax(view, scale)
    maxp = torch.exp(best - m) / z
    if protocol.area_thd is not None:  # the kept classes always include the background, class 0
        classes = torch.arange(view.num_classes)
        kept = classes[_kept_classes(label, classes, view.num_classes, protocol.area_thd)]
        label, best, _, _ = _running_argmax(view, scale, kept)
        maxp = torch.exp(best - m) / z
    label = torch.where(maxp <= 0, torch.zeros_like(label), label)  # all kept probabilities underflowed
    return _finish(label, maxp, protocol, view.bundle.regions)


def _streamed_softmax_means(view: BundleView, logit_scale: float) -> torch.Tensor:
    """``score_source="baseline"`` in chunks: per class the spatial mean of the synonym max of
    ``softmax(logit_scale·S_glob)`` over all queries (a log-sum-exp pass, then a probability pass)."""
    _, _, m, z = _running_argmax(view, logit_scale)
    out = torch.zeros(view.num_classes)
    for queries in view.class_chunks():
        p = torch.exp(view.dense(queries).mul_(logit_scale) - m) / z
        q2c = view.query_to_class[queries]
        present, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
        out[present] = synonym_max(p, inverse, present.numel()).mean(dim=(1, 2))
    return out


# ------------------------------------------------------------------------------------------------ predict
@dataclass
class Prediction:
    """One image's prediction and what led to it."""

    label_map: torch.Tensor
    """(H, W) int64 class indices."""
    subset: torch.Tensor | None
    """Selected class indices (sorted) for ``s2c2seg`` / ``oracle``; None for ``baseline``."""
    s_glob: torch.Tensor | None = None
    """(C,) class global scores used by CSS (None for baseline / oracle)."""
    s_spat: torch.Tensor | None = None
    """(C,) class spatial scores used by CSS."""
    voted: bool = False
    """Whether CorrCLIP's region vote was applied."""
    meta: dict = field(default_factory=dict)
    logits: torch.Tensor | None = None
    """(Q, H, W) float32 pre-softmax logits at the image size (released presets, on request: ``return_logits``)."""


def bundle_sources(method: str, preset=None) -> frozenset[str]:
    """The source groups ``predict(method=..., preset=...)`` reads besides the baseline's dense logits: ``paper``
    (``bundle.PAPER_SOURCES``: the paper reading and the oracle) or ``window`` (the released presets)."""
    if method == "baseline":
        return frozenset()
    if method == "s2c2seg" and preset is not None and preset.css is None:
        return frozenset({"window"})
    return frozenset({"paper"})


def _background_keep(css: CSSConfig, background: int | None, num_classes: int) -> tuple[int, ...]:
    if background is None or not css.keep_background:
        return ()
    if not 0 <= int(background) < num_classes:
        raise ValueError(f"background must be a class index in [0, {num_classes}) or None, got {background!r}")
    return (int(background),)


def predict(bundle: FeatureBundle | BundleView, protocol: Protocol, method: str = "baseline",
            css: CSSConfig = CSSConfig(), csg: CSGConfig = CSGConfig(), label=None, background: int | None = None,
            score_source: str = "clipseg", select: bool = True, preset=None,
            return_logits: bool = False, ignore_index: int = IGNORE_INDEX) -> Prediction:
    """The prediction for one bundle (see the module docstring for the three methods).

    ``label`` (H, W) is only read by ``method="oracle"`` (``ignore_index``: its unlabelled value); ``background``
    (the dataset's background class or None) is kept in every subset when ``css.keep_background``.
    ``score_source`` picks CSS's ``s_spat``.
    ``preset`` (a ``presets.Preset``) sets ``method="s2c2seg"``'s computation: ``paper`` runs this path with
    its ``css`` / ``csg``, ``released`` / ``released++`` the released window pipeline (``released.py``;
    ``return_logits`` adds ``Prediction.logits``). ``preset=None`` is the paper path with ``css`` / ``csg``.
    """
    if preset is not None and method == "s2c2seg":
        if preset.css is not None:
            css, csg = preset.css, preset.csg
        else:
            from .released import predict_released

            if score_source != SCORE_SOURCES[0] or not select:
                raise ValueError(f"score_source={score_source!r} / select={select!r} are paper-preset ablations; "
                                 f"preset {preset.name!r} takes its own keys (e.g. select.tau=1.0 keeps every query)")
            return predict_released(bundle, protocol, preset, return_logits=return_logits)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    if score_source not in SCORE_SOURCES:
        raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {score_source!r}")
    view = bundle if isinstance(bundle, BundleView) else BundleView(bundle)
    b, c, q2c = view.bundle, view.num_classes, view.query_to_class
    if method == "baseline":
        if view.streams:
            label_map, voted = streamed_postprocess(view, protocol)
        else:
            label_map, voted = postprocess(view.dense(), q2c, c, protocol, b.regions)
        return Prediction(label_map, None, voted=voted)

    b.require_paper_sources(f"method={method!r} with the paper reading")
    keep = _background_keep(css, background, c)
    s_glob = s_spat = None
    if method == "oracle":
        if label is None:
            raise ValueError("label: method='oracle' needs the image's label map")
        lab = torch.as_tensor(label)
        if tuple(lab.shape) != view.image_hw:
            raise ValueError(f"label has size {tuple(lab.shape)}, the bundle's image is {view.image_hw}")
        subset = oracle_categories(lab, c, ignore_index=ignore_index, always_keep=keep)
        if subset.numel() == 0:  # an all-ignore label: nothing is scored, keep every class
            subset = torch.arange(c)
    else:
        s_glob, s_spat = view.class_scores(score_source, protocol.logit_scale)
        subset = view.select(css, score_source, protocol.logit_scale, keep) if select else torch.arange(c)
    queries = torch.nonzero(torch.isin(q2c, subset)).reshape(-1)
    fused, units = fuse_subset(view, queries, csg)
    label_map, voted = postprocess(fused, units, c, protocol, b.regions, consume=True)  # fused is ours
    return Prediction(label_map, subset, s_glob, s_spat, voted=voted)


def fuse_subset(view: BundleView, queries: torch.Tensor, csg: CSGConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """CSG on the subset's ``queries``: -> (fused maps, class of each fused row).

    ``csg.unit="query"``: every query (synonym) is fused with its own CLIPSeg map, ``w`` normalised over the
    subset's queries; ``"class"`` (the paper's literal reading): per class the synonym max of ``S_glob`` and of
    ``S_spat`` first, then the fusion over the K classes, ``w`` normalised over the classes.
    """
    s_glob, s_spat = view.subset_maps(queries)
    q2c = view.query_to_class[queries]
    if csg.unit == "query":
        return csg.fuse(s_glob, s_spat), q2c
    classes, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
    k = classes.numel()
    return csg.fuse(synonym_max(s_glob, inverse, k), synonym_max(s_spat, inverse, k)), classes
