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
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .budget import MiB, MemoryBudget, rows_per_chunk
from .bundle import FeatureBundle
from .released_scores import released_confidence
from .data.protocols import Protocol
from .prediction import Prediction
from .refine import refine_window
from .released_post import PostConfig, image_at, released_postprocess
from .released_window import WindowResult, assemble, run_window, select_window, window_dense, window_scores
from .released_stream import streamed_confidence, streamed_postprocess, streamed_residual
from .spatial_refine import RefineWorkspace, SpatialRefineConfig, image_affinity
from .view import BundleView

if TYPE_CHECKING:
    from .presets import Preset

__all__ = ["PostConfig", "WindowResult", "ReleasedView", "window_dense", "window_scores", "select_window",
           "run_window", "assemble", "IMAGE_MEMO", "released_postprocess", "predict_released"]

IMAGE_MEMO = 4
"""Assembled images a :class:`ReleasedView` keeps, the least recently used dropped first (each the union's logits
at the image size, (U, H, W) float32: at most 35 MB at VOC21 sizes, all 46 queries selected; one, without its
logits, when the view streams)."""
ALIGN = 64
"""Chunks of rows start at multiples of this: bilinear resizing rounds a row as it does among all rows only when
the chunk keeps its place in the kernel's vector lanes (checked: equal to the whole at 8, 16 and 64)."""
WINDOW_COPIES = 6
"""(k, ph, pw) float32 maps one chunk of window rows holds at once (dense, CLIPSeg, fused, temporaries)."""
IMAGE_COPIES = 3
"""(U, H, W) float32 maps the post-processing of the whole union holds at once (logits, probabilities, softmax)."""


class ReleasedView:
    """A bundle's per-window quantities computed once and shared by every setting (a sweep over one bundle).

    Memoised: the resized dense maps and CLIPSeg maps per window, the scores per (window, global score), the
    selections per (window, the fields that decide them), the refinement's affinities per (dilations, work cap),
    and the last :data:`IMAGE_MEMO` assembled images keyed on every field before the post-processing (a sweep
    over ``post.*`` reuses them); the spatial refinement's buffers are kept too (:attr:`workspace`). The fusion,
    the refinement round and the post-processing of a setting not in the memo are computed for it.
    """

    def __init__(self, bundle: FeatureBundle, budget: MemoryBudget | None = None):
        for name in ("window_local",):
            if getattr(bundle, name) is None:
                raise ValueError(f"bundle.{name} is None: the released preset needs the per-window sources "
                                 "(encode with a backend that produces them)")
        self.bundle = bundle
        self.budget = budget if budget is not None else MemoryBudget()
        ph, pw = bundle.window_size()
        chunk = rows_per_chunk(WINDOW_COPIES * 4 * ph * pw, self.budget.work_bytes)
        self.streams = bundle.num_queries > chunk
        """Whether a window's rows are computed chunk by chunk (all (Q, ph, pw) would exceed the work budget)."""
        self.chunk = max(ALIGN, chunk // ALIGN * ALIGN)
        self._means: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
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

    # ---------------------------------------------------------------- rows chunk by chunk (large vocabularies)
    def _ranges(self, size: int) -> list[tuple[int, int]]:
        return [(a, min(size, a + self.chunk)) for a in range(0, size, self.chunk)]

    def _range(self, n: int, a: int, b: int, which: str) -> torch.Tensor:
        """Window ``n``'s rows ``a:b`` (an aligned range) resized to the window: ``dense`` or ``local``."""
        hw = self.bundle.window_size()
        if which == "dense":
            return F.interpolate(self.bundle.dense_logits[n:n + 1, a:b].float(), size=hw, mode="bilinear",
                                 align_corners=False)[0]
        local = self.bundle.window_local[n, a:b].float()
        if tuple(local.shape[-2:]) != hw:
            local = F.interpolate(local[None], size=hw, mode="bilinear", align_corners=False)[0]
        return local

    def rows(self, n: int, idx: torch.Tensor, which: str) -> torch.Tensor:
        """Window ``n``'s rows ``idx`` (K, ph, pw) of ``dense`` (:func:`window_dense`) or ``local`` (the CLIPSeg
        maps at the window size), the numbers of :meth:`dense` / :meth:`local`; chunk by chunk when streaming."""
        idx = torch.as_tensor(idx).long()
        if not self.streams:
            return (self.dense(n) if which == "dense" else self.local(n)).index_select(0, idx)
        order = torch.argsort(idx, stable=True)
        ordered, parts = idx[order], []
        for a, b in self._ranges(self.bundle.num_queries):
            lo, hi = (int(torch.searchsorted(ordered, v)) for v in (a, b))
            if hi > lo:
                parts.append(self._range(n, a, b, which).index_select(0, ordered[lo:hi] - a))
        if not parts:
            return torch.zeros(0, *self.bundle.window_size())
        out = torch.cat(parts)
        return out if bool((order[1:] > order[:-1]).all()) else out[torch.argsort(order)]

    def means(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``n``'s (dense, CLIPSeg) window means (Q,) of every query, memoised (the patch-mean score, the
        spatial score and the fusion's guide weights)."""
        if n not in self._means:
            if not self.streams:
                self._means[n] = (self.dense(n).float().mean(dim=(-2, -1)), self.local(n).float().mean(dim=(-2, -1)))
            else:
                pairs = [(self._range(n, a, b, "dense").mean(dim=(-2, -1)), self._range(n, a, b, "local").mean(
                    dim=(-2, -1))) for a, b in self._ranges(self.bundle.num_queries)]
                self._means[n] = (torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
        return self._means[n]

    def fused_blocks(self, n: int, idx: torch.Tensor, preset: Preset):
        """Window ``n``'s fused rows of the sorted selection ``idx``, chunk by chunk (guide weights over ``idx``)."""
        weights = preset.fusion.row_weights(self.means(n)[0].index_select(0, idx))
        for a, b in self._ranges(self.bundle.num_queries):
            lo, hi = (int(torch.searchsorted(idx, v)) for v in (a, b))
            if hi > lo:
                part = idx[lo:hi]
                yield preset.fusion.fuse(self.rows(n, part, "dense"), self.rows(n, part, "local"), weights[lo:hi])

    def _window_streamed(self, n: int, scores, selected: torch.Tensor, preset: Preset,
                         logit_scale: float) -> WindowResult:
        """:func:`run_window` with the rows recomputed chunk by chunk (``fused`` left empty: assembled later)."""
        empty = torch.zeros(0, *self.bundle.window_size())
        if preset.refine.t_max == 0:
            return WindowResult(selected, empty)

        def confidence(idx):
            return streamed_confidence(lambda: self.fused_blocks(n, idx, preset), logit_scale)

        def residual(_, low, entries):
            return streamed_residual(lambda part: self.rows(n, part, "local"), low, entries, self.chunk)

        weights = preset.select.weights(preset.fusion.lam)
        selected, _, log = refine_window(selected, selected, scores, None, lambda idx: idx, preset.refine, weights,
                                         preset.select.k_min, logit_scale, confidence=confidence, residual=residual)
        return WindowResult(selected, empty, log=log)

    def image_rows(self, results: list[WindowResult], union: torch.Tensor, a: int, b: int,
                   preset: Preset) -> torch.Tensor:
        """The union's assembled logits (b − a, H, W) of its rows ``a:b`` (:func:`assemble` of those rows)."""
        part = union[a:b]

        def windows():
            for n, r in enumerate(results):
                hit = torch.nonzero(torch.isin(part, r.selected)).flatten()
                queries = part[hit]
                weights = preset.fusion.row_weights(self.means(n)[0].index_select(0, r.selected))
                w = weights.index_select(0, torch.searchsorted(r.selected, queries))
                fused = (preset.fusion.fuse(self.rows(n, queries, "dense"), self.rows(n, queries, "local"), w)
                         if queries.numel() else torch.zeros(0, *self.bundle.window_size()))
                yield hit, fused

        return assemble(windows(), b - a, self.bundle, preset.fusion.fill)

    def image_chunk(self) -> int:
        """Union rows per chunk of the image assembly (aligned; the resized image and a window's rows per row)."""
        ph, pw = self.bundle.window_size()
        rh, rw = (int(v) for v in self.bundle.resized_hw)
        rows = rows_per_chunk(4 * (2 * rh * rw + WINDOW_COPIES * ph * pw), self.budget.work_bytes)
        return max(ALIGN, rows // ALIGN * ALIGN)

    def image_streams(self, num_rows: int) -> bool:
        """Whether the post-processing of ``num_rows`` union rows streams (their logits would pass the budget)."""
        h, w = (int(v) for v in self.bundle.image_hw)
        return self.streams and IMAGE_COPIES * 4 * num_rows * h * w > self.budget.logits_bytes

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
            if self.streams:  # window_scores on the memoised means
                dense_mean, local_mean = self.means(n)
                self._scores[key] = (dense_mean if global_score == "patch_mean" else cls.float(), local_mean)
            else:
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
            if self.streams:
                result = self._window_streamed(n, (g, s, c), selected, preset, logit_scale)
            else:
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
        if not self.streams:
            rows = [(torch.searchsorted(union, r.selected), r.fused) for r in full]
            logits = assemble(rows, union.numel(), self.bundle, preset.fusion.fill)
        elif self.image_streams(union.numel()):
            logits = None  # streamed by predict_released: assembled chunk by chunk, twice
            self._images.clear()
        else:
            size = self.image_chunk()
            logits = torch.cat([self.image_rows(full, union, a, min(union.numel(), a + size), preset)
                                for a in range(0, union.numel(), size)])
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
        return bundle.extension("released", lambda: ReleasedView(bundle.bundle, bundle.config.budget))
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
    h, w = (int(v) for v in b.image_hw)
    need = 4 * b.num_queries * h * w
    if return_logits and need > view.budget.logits_bytes:
        raise ValueError(f"return_logits: Prediction.logits ({b.num_queries} queries x {h} x {w} float32) would take "
                         f"{need / MiB:.1f} MiB, over MemoryBudget.logits_bytes ({view.budget.logits_bytes / MiB:.1f} "
                         "MiB): predict the labels alone (return_logits=False), or give a larger budget "
                         "(BundleView(bundle, ViewConfig(budget=MemoryBudget(logits_bytes=...))))")
    results, union, logits_union = view.image(preset, protocol.logit_scale)
    fill = preset.fusion.fill
    q2c = view.query_to_class
    size = view.image_chunk()

    def rows_of(positions: torch.Tensor) -> torch.Tensor:  # the union's logits of these positions, aligned chunks
        parts = {}
        for a in torch.unique(positions // size * size).tolist():
            parts[a] = view.image_rows(results, union, a, min(union.numel(), a + size), preset)
        return torch.cat([parts[int(a)][int(p - a)][None] for p, a in zip(positions, positions // size * size)])

    if logits_union is None:
        label = streamed_postprocess(rows_of, q2c[union], protocol, preset.post, b.input_image, size,
                                     view.affinity(preset.post.spatial), view.workspace)
    else:
        label = released_postprocess(logits_union, q2c[union], protocol, preset.post, b.input_image,
                                     view.affinity(preset.post.spatial), view.workspace)
    logits = None
    if return_logits:
        fill_row = assemble([(torch.zeros(0, dtype=torch.long), r.fused) for r in results], 1, b, fill)
        logits = fill_row.expand(b.num_queries, *fill_row.shape[-2:]).clone()
        logits[union] = logits_union if logits_union is not None else rows_of(torch.arange(union.numel()))
    meta = {"preset": preset.name, "selected_per_window": [r.selected.tolist() for r in results],
            "admitted_per_window": [list(r.log.admitted) for r in results],
            "storage": b.meta.get("storage", "exact")}
    return Prediction(label, torch.unique(q2c[union]), voted=False, meta=meta, logits=logits)
