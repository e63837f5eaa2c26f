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
  (``csg.fuse``). CSG's "categories" are the subset's *queries*: without synonyms this is exactly the paper's
  class-level formula; with synonyms each name is fused with its own CLIPSeg map and the synonyms are then
  merged by the max as the anchors do. The same post-processing follows, restricted to the subset: the
  softmax runs over the subset's queries only, the classes outside the subset have probability 0, and
  ``area_thd`` / ``prob_thd`` / the vote apply after the subset is chosen. ``select=False`` runs CSG on every class ("w/o CSS"); ``csg.mode="global_only"`` with
  ``select=True`` is "+CSS only".
* ``oracle``: as ``s2c2seg`` with the ground-truth classes of the image as the subset (the upper bound).

Class 0 is the background of the anchors' ``prob_thd`` and ``area_thd`` (they have no ``bg_idx``: the
background is index 0 by construction, and the protocol tables only set these knobs for datasets with one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .css import CSSConfig, oracle_categories
from .csg import CSGConfig
from .data.protocols import Protocol
from .slide import slide_average

__all__ = ["METHODS", "SCORE_SOURCES", "BACKGROUND_LABEL", "Prediction", "BundleView", "synonym_max",
           "dense_logits", "clipseg_maps", "class_scores", "postprocess", "predict"]

METHODS = ("baseline", "s2c2seg", "oracle")
SCORE_SOURCES = ("clipseg", "baseline")
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
    # any other order: the r-th synonym of every class that has one, r = 0, 1, ...: a few vectorised steps, no (Q, H, W) index
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

    Per-crop grids are bilinearly upsampled to their windows and averaged at ``resized_hw``
    (``slide.slide_average``), then resized bilinearly (align_corners=False) to ``image_hw``: the anchors'
    ``forward_slide``.
    """
    q = _check_queries(bundle, queries)
    per_crop = bundle.dense_logits if q is None else bundle.dense_logits.index_select(1, q)
    return slide_average(per_crop, bundle.crop_boxes, bundle.resized_hw.tolist(), out_hw=bundle.image_hw.tolist())


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


class BundleView:
    """A bundle with its full-size maps (all queries) computed once, then sliced per subset.

    Every prediction goes through a view, so a sweep (many subsets of one image) and a single evaluation
    slice the same tensors and give the same numbers. (Computing a subset's maps directly with
    :func:`dense_logits` agrees to float rounding only: the interpolation kernels vectorise over queries.)
    """

    def __init__(self, bundle: FeatureBundle):
        if not isinstance(bundle, FeatureBundle):
            raise ValueError(f"bundle must be a FeatureBundle, got {type(bundle).__name__}")
        self.bundle = bundle
        self.query_to_class = bundle.query_to_class.long()
        self.num_classes = bundle.num_classes
        self.image_hw = tuple(int(v) for v in bundle.image_hw)
        self._dense: torch.Tensor | None = None
        self._clipseg: torch.Tensor | None = None
        self._scores: dict = {}
        self._selections: dict = {}
        self._last_subset: tuple | None = None

    def subset_maps(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S_glob, S_spat) of ``queries``; the last subset's pair is kept (consecutive sweep points share it)."""
        key = tuple(queries.tolist())
        if self._last_subset is None or self._last_subset[0] != key:
            self._last_subset = (key, self.dense(queries), self.clipseg(queries))
        return self._last_subset[1], self._last_subset[2]

    def dense(self, queries=None) -> torch.Tensor:
        """(Q', H, W) slide-averaged cosine logits, sliced from the all-query map."""
        if self._dense is None:
            self._dense = dense_logits(self.bundle)
        return self._dense if queries is None else self._dense.index_select(0, torch.as_tensor(queries).long())

    def clipseg(self, queries=None) -> torch.Tensor:
        """(Q', H, W) CLIPSeg maps at the image size, sliced from the all-query map."""
        if self._clipseg is None:
            self._clipseg = clipseg_maps(self.bundle)
        return self._clipseg if queries is None else self._clipseg.index_select(0, torch.as_tensor(queries).long())

    def class_scores(self, source: str = "clipseg", logit_scale: float = 40.0):
        if source not in SCORE_SOURCES:
            raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {source!r}")
        key = (source, float(logit_scale) if source == "baseline" else None)
        if key not in self._scores:
            b, c = self.bundle, self.num_classes
            s_glob = synonym_max(b.global_sim.float(), self.query_to_class, c)
            if source == "clipseg":
                s_spat = synonym_max(b.clipseg_mean.float(), self.query_to_class, c)
            else:
                probs = query_probabilities(self.dense(), logit_scale)
                s_spat = synonym_max(probs, self.query_to_class, c).mean(dim=(1, 2))
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


def area_prune(class_probs: torch.Tensor, classes: torch.Tensor, num_classes: int, area_thd: float) -> None:
    """SCLIP's ``area_thd`` (in place): zero every non-background class whose arg-max area is ≤ area_thd × foreground area."""
    label, _ = _labels(class_probs, classes)
    area = torch.bincount(label.reshape(-1), minlength=num_classes)
    foreground = area[1:].sum()
    keep = area[classes] > area_thd * foreground
    drop = (~keep) & (classes != BACKGROUND_LABEL)
    class_probs[drop] = 0.0


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
    label[maxp < protocol.prob_thd] = BACKGROUND_LABEL
    voted = bool(protocol.vote and regions is not None)
    if voted:
        from .regions import majority_vote

        label = majority_vote(label, regions)
    return label, voted


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


def _background_keep(css: CSSConfig, background: int | None, num_classes: int) -> tuple[int, ...]:
    if background is None or not css.keep_background:
        return ()
    if not 0 <= int(background) < num_classes:
        raise ValueError(f"background must be a class index in [0, {num_classes}) or None, got {background!r}")
    return (int(background),)


def predict(bundle: FeatureBundle | BundleView, protocol: Protocol, method: str = "baseline",
            css: CSSConfig = CSSConfig(), csg: CSGConfig = CSGConfig(), label=None, background: int | None = None,
            score_source: str = "clipseg", select: bool = True, preset=None,
            return_logits: bool = False) -> Prediction:
    """The prediction for one bundle (see the module docstring for the three methods).

    ``label`` (H, W) is only read by ``method="oracle"``; ``background`` (the dataset's background class or
    None) is kept in every subset when ``css.keep_background``. ``score_source`` picks CSS's ``s_spat``.
    ``preset`` (a ``presets.Preset``) sets ``method="s2c2seg"``'s computation: ``paper`` runs this path with
    its ``css`` / ``csg``, ``released`` / ``released++`` the released window pipeline (``released.py``;
    ``return_logits`` adds ``Prediction.logits``). ``preset=None`` is the paper path with ``css`` / ``csg``.
    """
    if preset is not None and method != "baseline":
        if preset.css is not None:  # the paper preset: this path with its configs
            css, csg = preset.css, preset.csg
        elif method == "s2c2seg":
            from .released import predict_released

            return predict_released(bundle, protocol, preset, return_logits=return_logits)
        else:
            raise ValueError(f"preset {preset.name!r} runs method='s2c2seg' only, got method={method!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    if score_source not in SCORE_SOURCES:
        raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {score_source!r}")
    view = bundle if isinstance(bundle, BundleView) else BundleView(bundle)
    b, c, q2c = view.bundle, view.num_classes, view.query_to_class
    if method == "baseline":
        label_map, voted = postprocess(view.dense(), q2c, c, protocol, b.regions)
        return Prediction(label_map, None, voted=voted)

    keep = _background_keep(css, background, c)
    s_glob = s_spat = None
    if method == "oracle":
        if label is None:
            raise ValueError("label: method='oracle' needs the image's label map")
        lab = torch.as_tensor(label)
        if tuple(lab.shape) != view.image_hw:
            raise ValueError(f"label has size {tuple(lab.shape)}, the bundle's image is {view.image_hw}")
        subset = oracle_categories(lab, c, always_keep=keep)
        if subset.numel() == 0:  # an all-ignore label: nothing is scored, keep every class
            subset = torch.arange(c)
    else:
        s_glob, s_spat = view.class_scores(score_source, protocol.logit_scale)
        subset = view.select(css, score_source, protocol.logit_scale, keep) if select else torch.arange(c)
    queries = torch.nonzero(torch.isin(q2c, subset)).reshape(-1)
    fused = csg.fuse(*view.subset_maps(queries))
    label_map, voted = postprocess(fused, q2c[queries], c, protocol, b.regions, consume=True)  # fused is ours
    return Prediction(label_map, subset, s_glob, s_spat, voted=voted)
