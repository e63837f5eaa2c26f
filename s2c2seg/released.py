"""The authors' released S2C2Seg / S2C2Seg++ (``yhflq/S2c2seg``), per sliding window, on queries: pure downstream.

Reads only a bundle's per-window sources (``window_local``, ``window_global``, ``window_pad``, ``input_image``) and
its existing fields; never touches a model. In the release's order (``models/pipeline.py::run_window``, then
``models/segmentor.py::forward_slide`` and ``postprocess_result``):

1. :func:`window_dense`: the dense logits bilinearly resized to the (padded) window;
2. :func:`window_scores`: the global score (``patch_mean`` window mean | ``cls`` cosine) and the spatial score;
3. ``released_scores.released_confidence`` (positive-part L1, Bhattacharyya α, residual entropy) and
   ``released_scores.released_select`` (top-``int(τQ)`` union, weighted min-max rerank, k_min / k_max);
4. ``released_fusion.FusionConfig.fuse`` (convex fusion, guide weight 0.07) and, for S2C2Seg++,
   ``refine.refine_window``;
5. ``released_fusion.scatter_fill`` (−1e9), :func:`assemble` (cut the padding, window average, bilinear resize to
   the original image size);
6. ``released_post.released_postprocess``: softmax at the logit scale over all queries, synonym max, optional spatial
   refinement (``spatial_refine.py``), ``prob_thd`` / Otsu clamped to [prob_thd, C].

Rows never selected in any window are exactly the fill and have probability 0 after the softmax, so the image
is assembled on the union of the selected queries; the full (Q, H, W) logits are built only on request.
"""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .released_scores import released_confidence, released_select
from .data.protocols import Protocol
from .prediction import Prediction
from .refine import RoundLog, refine_window
from .released_post import PostConfig, image_at, released_postprocess
from .postprocess import synonym_max
from .spatial_refine import RefineWorkspace, SpatialRefineConfig, image_affinity
from .view import BundleView

if TYPE_CHECKING:
    from .presets import Preset

__all__ = ["PostConfig", "WindowResult", "ReleasedView", "window_dense", "window_scores", "select_window",
           "run_window", "assemble", "IMAGE_MEMO", "released_postprocess", "predict_released"]

IMAGE_MEMO = 4
"""Assembled images a :class:`ReleasedView` keeps, the least recently used dropped first (each the union's logits
at the image size, (U, H, W) float32: at most 35 MB at VOC21 sizes, all 46 queries selected)."""


@dataclass
class WindowResult:
    """One window's released output: the selected queries (sorted) and their fused rows (K, ph, pw)."""

    selected: torch.Tensor
    fused: torch.Tensor
    alpha: float | None = None
    """The α of the selection (the image scope's for ``scope="image"``)."""
    log: RoundLog = field(default_factory=RoundLog)


# ------------------------------------------------------------------------------------------------ window steps
def window_dense(bundle: FeatureBundle, n: int) -> torch.Tensor:
    """(Q, ph, pw) float32: window ``n``'s dense logits bilinearly resized to the padded window
    (``forward_feature``)."""
    ph, pw = bundle.window_size()
    return F.interpolate(bundle.dense_logits[n:n + 1].float(), size=(ph, pw), mode="bilinear",
                         align_corners=False)[0]


def window_scores(dense: torch.Tensor, local: torch.Tensor, cls: torch.Tensor | None,
                  global_score: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, s) of one window: ``patch_mean`` / ``cls`` global score and the CLIPSeg window mean
    (``scoring.global_alignment``, ``scoring.spatial_presence``)."""
    g = dense.float().mean(dim=(-2, -1)) if global_score == "patch_mean" else cls.float()
    return g, local.float().mean(dim=(-2, -1))


def select_window(g: torch.Tensor, s: torch.Tensor, preset: Preset, query_to_class: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(selected queries (sorted), s_conf of every query, α): the release's per-query CSS, or on classes
    (``unit="class"``: synonym-max scores, then every query of a selected class)."""
    weights = preset.select.weights(preset.fusion.lam)
    if preset.select.unit == "query":
        c, alpha = released_confidence(g, s, preset.score.alpha)
        return released_select(g, s, c, preset.select, weights), c, float(alpha)
    q2c = query_to_class.long()
    classes, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
    gc, sc = synonym_max(g, inverse, classes.numel()), synonym_max(s, inverse, classes.numel())
    cc, alpha = released_confidence(gc, sc, preset.score.alpha)
    chosen = released_select(gc, sc, cc, preset.select, weights)
    return torch.nonzero(torch.isin(inverse, chosen)).flatten(), cc[inverse], float(alpha)


def run_window(dense: torch.Tensor, local: torch.Tensor, scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               selected: torch.Tensor, preset: Preset, logit_scale: float) -> WindowResult:
    """One window's released pipeline after CSS (``S2C2Pipeline.run_window``): fuse the selected rows, then the
    refinement rounds when ``t_max`` > 0. ``scores`` = (g, s, c) of every query."""

    def fuse_rows(idx: torch.Tensor) -> torch.Tensor:
        return preset.fusion.fuse(dense.index_select(0, idx), local.index_select(0, idx))  # row copies: 3x `[idx]`

    fused = fuse_rows(selected)
    if preset.refine.t_max == 0:
        return WindowResult(selected, fused)
    weights = preset.select.weights(preset.fusion.lam)
    selected, fused, log = refine_window(selected, fused, scores, local, fuse_rows, preset.refine, weights,
                                         preset.select.k_min, logit_scale)
    return WindowResult(selected, fused, log=log)


# ------------------------------------------------------------------------------------------------ the image
def assemble(rows: list[tuple[torch.Tensor, torch.Tensor]], num_rows: int, bundle: FeatureBundle,
             fill: float) -> torch.Tensor:
    """(num_rows, H, W): per window, ``rows[n] = (positions, fused)`` scattered into ``fill``; padding cut, windows
    summed and divided by the per-pixel count, bilinearly resized to the original image (``forward_slide``)."""
    rh, rw = (int(v) for v in bundle.resized_hw)
    top, _, left, _ = _pad(bundle)
    total = torch.zeros(num_rows, rh, rw, dtype=torch.float32)
    count = torch.zeros(1, rh, rw, dtype=torch.float32)
    every = torch.ones(num_rows, dtype=torch.bool)
    for (positions, fused), (y1, y2, x1, x2) in zip(rows, bundle.crop_boxes.tolist()):
        region = total[:, y1:y2, x1:x2]  # per element ``total + window`` as with the whole window built
        region[positions] += fused[:, top:top + y2 - y1, left:left + x2 - x1]
        unselected = every.clone()
        unselected[positions] = False
        region[unselected] += float(fill)
        count[:, y1:y2, x1:x2] += 1
    out = total.div_(count)
    hw = tuple(int(v) for v in bundle.image_hw)
    if hw == (rh, rw):
        return out
    return F.interpolate(out[None], size=hw, mode="bilinear", align_corners=False)[0]


def _pad(bundle: FeatureBundle) -> list[int]:
    return [0, 0, 0, 0] if bundle.window_pad is None else [int(v) for v in bundle.window_pad]


# ------------------------------------------------------------------------------------------------ memo + predict
class ReleasedView:
    """A bundle's per-window quantities computed once and shared by every setting (a sweep over one bundle).

    Memoised: the resized dense maps and CLIPSeg maps per window, the scores per (window, global score), the
    selections per (window, the fields that decide them), the refinement's affinities per (dilations, work cap),
    and the last :data:`IMAGE_MEMO` assembled images keyed on every field before the post-processing (a sweep
    over ``post.*`` reuses them); the spatial refinement's buffers are kept too (:attr:`workspace`). The fusion,
    the refinement round and the post-processing of a setting not in the memo are computed for it.
    """

    def __init__(self, bundle: FeatureBundle):
        for name in ("window_local",):
            if getattr(bundle, name) is None:
                raise ValueError(f"bundle.{name} is None: the released preset needs the per-window sources "
                                 "(encode with a backend that produces them)")
        self.bundle = bundle
        self.query_to_class = bundle.query_to_class.long()
        self.num_windows = int(bundle.dense_logits.shape[0])
        self._dense: dict[int, torch.Tensor] = {}
        self._local: dict[int, torch.Tensor] = {}
        self._scores: dict = {}
        self._selections: dict = {}
        self._affinity: dict = {}
        self._images: OrderedDict[str, tuple] = OrderedDict()
        self.workspace = RefineWorkspace()
        """The spatial refinement's buffers, reused by every setting (two of the largest stack refined)."""

    def affinity(self, sr: SpatialRefineConfig) -> torch.Tensor | None:
        """The spatial refinement's affinities at the image size (memoised per ``sr.affinity_config()``), or None."""
        if sr.iterations <= 0 or self.bundle.input_image is None:
            return None
        key = sr.affinity_config()
        if key not in self._affinity:
            hw = tuple(int(v) for v in self.bundle.image_hw)
            self._affinity[key] = image_affinity(image_at(self.bundle.input_image, hw), hw, sr)
        return self._affinity[key]

    def dense(self, n: int) -> torch.Tensor:
        if n not in self._dense:
            self._dense[n] = window_dense(self.bundle, n)
        return self._dense[n]

    def local(self, n: int) -> torch.Tensor:
        if n not in self._local:
            local, hw = self.bundle.window_local[n].float(), self.bundle.window_size()
            if tuple(local.shape[-2:]) != hw:  # compact-<s>-... storage: reduced maps, bilinear back to the window
                local = F.interpolate(local[None], size=hw, mode="bilinear", align_corners=False)[0]
            self._local[n] = local
        return self._local[n]

    def scores(self, n: int, global_score: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``n``'s (global, spatial) query scores, memoised per (window, ``score.global_score``: the
        argument itself is the key)."""
        key = (n, global_score)
        if key not in self._scores:
            cls = None
            if global_score == "cls":
                if self.bundle.window_global is None:
                    raise ValueError("bundle.window_global is None: global_score='cls' needs it "
                                     "(re-encode, or use score.global_score='patch_mean')")
                cls = self.bundle.window_global[n]
            self._scores[key] = window_scores(self.dense(n), self.local(n), cls, global_score)
        return self._scores[key]

    def selection(self, n: int | None, preset: Preset) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Window ``n``'s selection (``n=None``: the image scope's, from the scores averaged over the windows)."""
        key = (n, preset.score, preset.select, preset.fusion)  # the frozen sections it reads, whole
        if key not in self._selections:
            if n is None:
                pairs = [self.scores(m, preset.score.global_score) for m in range(self.num_windows)]
                g = torch.stack([p[0] for p in pairs]).mean(0)
                s = torch.stack([p[1] for p in pairs]).mean(0)
            else:
                g, s = self.scores(n, preset.score.global_score)
            self._selections[key] = select_window(g, s, preset, self.query_to_class)
        return self._selections[key]

    def windows(self, preset: Preset, logit_scale: float) -> list[WindowResult]:
        """Every window's released output under ``preset``."""
        if preset.refine.t_max > 0 and preset.select.unit == "class":
            raise ValueError("select.unit='class' with refine.t_max > 0: the refinement admits queries; "
                             "set refine.t_max=0 or select.unit='query'")
        image = preset.select.scope == "image"
        out = []
        for n in range(self.num_windows):
            g, s = self.scores(n, preset.score.global_score)
            selected, c, alpha = self.selection(None if image else n, preset)
            if image and preset.refine.t_max > 0:  # the refinement reads this window's own confidence
                c = released_confidence(g, s, preset.score.alpha)[0]
            result = run_window(self.dense(n), self.local(n), (g, s, c), selected, preset, logit_scale)
            out.append(dataclasses.replace(result, alpha=alpha))
        return out

    def image(self, preset: Preset, logit_scale: float) -> tuple[list[WindowResult], torch.Tensor, torch.Tensor]:
        """(window results, union of the selected queries, the union's logits at the image size), memoised for
        the last :data:`IMAGE_MEMO` settings of everything before the post-processing. The results' fused rows
        are dropped once assembled (``WindowResult.fused`` is (0, ph, pw) here)."""
        key = json.dumps([preset.score.to_json(), preset.select.to_json(), preset.fusion.to_json(),
                          preset.refine.to_json(), float(logit_scale)], sort_keys=True)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        full = self.windows(preset, logit_scale)
        union = torch.unique(torch.cat([r.selected for r in full]))
        rows = [(torch.searchsorted(union, r.selected), r.fused) for r in full]
        logits = assemble(rows, union.numel(), self.bundle, preset.fusion.fill)
        # assembled: the memo keeps new results with the selections and logs, not the window-size rows
        results = [dataclasses.replace(r, fused=r.fused.new_empty((0, *r.fused.shape[1:]))) for r in full]
        self._images[key] = (results, union, logits)
        while len(self._images) > IMAGE_MEMO:
            self._images.popitem(last=False)
        return self._images[key]


def released_view(bundle: FeatureBundle | BundleView) -> ReleasedView:
    """The memo of a bundle: shared by every call on one :class:`BundleView` (kept by the view itself,
    :meth:`BundleView.extension`), fresh for a bare bundle."""
    if isinstance(bundle, BundleView):
        return bundle.extension("released", lambda: ReleasedView(bundle.bundle))
    if not isinstance(bundle, FeatureBundle):
        raise ValueError(f"bundle must be a FeatureBundle or BundleView, got {type(bundle).__name__}")
    return ReleasedView(bundle)


def predict_released(bundle: FeatureBundle | BundleView, protocol: Protocol, preset: Preset,
                     return_logits: bool = False) -> Prediction:
    """The released prediction for one bundle: labels from the union of the windows' selected queries;
    ``return_logits`` adds the full (Q, H, W) pre-softmax logits at the image size (the fill included)."""
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    view = released_view(bundle)
    b = view.bundle
    results, union, logits_union = view.image(preset, protocol.logit_scale)
    fill = preset.fusion.fill
    q2c = view.query_to_class
    label = released_postprocess(logits_union, q2c[union], protocol, preset.post, b.input_image,
                                 view.affinity(preset.post.spatial), view.workspace)
    logits = None
    if return_logits:
        fill_row = assemble([(torch.zeros(0, dtype=torch.long), r.fused) for r in results], 1, b, fill)
        logits = fill_row.expand(b.num_queries, *fill_row.shape[-2:]).clone()
        logits[union] = logits_union
    meta = {"preset": preset.name, "selected_per_window": [r.selected.tolist() for r in results],
            "admitted_per_window": [list(r.log.admitted) for r in results],
            "storage": b.meta.get("storage", "exact")}
    return Prediction(label, torch.unique(q2c[union]), voted=False, meta=meta, logits=logits)
