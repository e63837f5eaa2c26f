"""The release's steps on one sliding window (``yhflq/S2c2seg`` ``models/pipeline.py::run_window``) and the
assembly of the windows into the image (``models/segmentor.py::forward_slide``): pure functions of a bundle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .postprocess import synonym_max
from .refine import RoundLog, refine_window
from .released_scores import released_confidence, released_select

if TYPE_CHECKING:
    from .presets import Preset

__all__ = ["WindowResult", "window_dense", "window_scores", "select_window", "run_window", "assemble"]


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
