"""The release's post-processing after the window average (``models/segmentor.py::postprocess_result``).

Softmax at the logit scale over the queries, per class the synonym max, the journal's optional spatial
refinement (``spatial_refine.py``), then ``prob_thd`` or Otsu clamped to [prob_thd, otsu_c] -> the background.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data.protocols import Protocol
from .postprocess import BACKGROUND_LABEL, synonym_max
from .spatial_refine import RefineWorkspace, SpatialRefineConfig, image_affinity, spatial_refine_many

__all__ = ["PostConfig", "OTSU_BINS", "class_probabilities", "otsu_threshold", "background_threshold",
           "released_postprocess", "image_at"]

OTSU_BINS = 256
"""Histogram bins of the Otsu threshold on [0, 1] (bin centres ``(i + 0.5)/256``)."""


@dataclass(frozen=True)
class PostConfig:
    """Released post-processing after the window average (defaults: off, as in the conference run)."""

    otsu_c: float | None = None
    """Otsu background threshold clamped to [prob_thd, otsu_c] (None: off; ignored when prob_thd is 0)."""
    spatial: SpatialRefineConfig = field(default_factory=SpatialRefineConfig)
    """The journal's spatial refinement (off with ``iterations=0``)."""

    def __post_init__(self):
        if self.otsu_c is not None and (isinstance(self.otsu_c, bool) or not 0 <= self.otsu_c <= 1):
            raise ValueError(f"PostConfig.otsu_c must be None or a number in [0, 1], got {self.otsu_c!r}")
        if not isinstance(self.spatial, SpatialRefineConfig):
            raise ValueError(f"PostConfig.spatial must be a SpatialRefineConfig, got {type(self.spatial).__name__}")

    def to_json(self) -> dict:
        return {"otsu_c": self.otsu_c, "spatial": self.spatial.to_json()}



def class_probabilities(logits: torch.Tensor, inverse: torch.Tensor, num_rows_classes: int,
                        scale: float) -> torch.Tensor:
    """Per class, the max over its synonyms of ``softmax(scale · logits)`` over the queries
    (``_class_probabilities``)."""
    probs = (logits * float(scale)).softmax(dim=0)
    return synonym_max(probs, inverse, num_rows_classes)


def otsu_threshold(values: torch.Tensor) -> float:
    """Otsu's threshold of ``values`` in [0, 1]: the bin centre maximising the between-class variance of a
    256-bin histogram, the first on ties (``segmentor._otsu_threshold``)."""
    hist = torch.histc(values.float(), bins=OTSU_BINS, min=0.0, max=1.0)
    if float(hist.sum()) <= 0:
        return 0.0
    prob = hist / hist.sum()
    centres = (torch.arange(OTSU_BINS, dtype=torch.float32) + 0.5) / OTSU_BINS
    omega, mu = torch.cumsum(prob, 0), torch.cumsum(prob * centres, 0)
    denom = omega * (1.0 - omega)
    between = (mu[-1] * omega - mu) ** 2 / denom.clamp_min(1e-12)
    between = torch.where(denom > 0, between, torch.zeros_like(between))
    return float(centres[int(torch.argmax(between))])


def background_threshold(max_prob: torch.Tensor, prob_thd: float, otsu_c: float | None) -> float:
    """``prob_thd``, or Otsu clamped to [prob_thd, otsu_c] when Otsu is on and prob_thd > 0 (``_bg_threshold``)."""
    if otsu_c is None or prob_thd <= 0:
        return prob_thd
    return min(max(otsu_threshold(max_prob.reshape(-1)), float(prob_thd)), float(otsu_c))


def released_postprocess(logits: torch.Tensor, query_to_class: torch.Tensor, protocol: Protocol, post: PostConfig,
                         image: torch.Tensor | None, weights: torch.Tensor | None = None,
                         workspace: RefineWorkspace | None = None) -> torch.Tensor:
    """(H, W) labels from the queries' logits (``postprocess_result``): class probabilities at the logit scale,
    the spatial refinement (labels from the ``temperature`` probabilities, the background test from the
    logit-scale ones, refined only when prob_thd > 0), then the background threshold. ``weights``: the
    refinement's affinities of ``image`` at this size (``spatial_refine.image_affinity``), if known;
    ``workspace``: the refinement's buffers kept between calls (``spatial_refine.RefineWorkspace``)."""
    classes, inverse = torch.unique(query_to_class.long(), sorted=True, return_inverse=True)
    k = classes.numel()
    probs = class_probabilities(logits, inverse, k, protocol.logit_scale)
    sr = post.spatial
    sharp = None
    if sr.iterations > 0:
        if image is None:
            raise ValueError("bundle.input_image is None: the spatial refinement needs it (re-encode the bundle)")
        if weights is None:
            weights = image_affinity(image_at(image, probs.shape[-2:]), probs.shape[-2:], sr)
        temp = sr.temperature
        if temp is not None and float(temp) != float(protocol.logit_scale):
            sharp = class_probabilities(logits, inverse, k, temp)
            both = protocol.prob_thd > 0
            refined = spatial_refine_many(image, [sharp, probs] if both else [sharp], sr, weights, workspace)
            sharp, probs = refined if both else (refined[0], probs)
        else:
            probs = spatial_refine_many(image, [probs], sr, weights, workspace)[0]
    max_prob, winner = probs.max(0)  # max's index is argmax's (the first maximum), at a third of the time
    if sharp is not None:
        winner = sharp.max(0)[1]
    label = classes[winner]
    label[max_prob < background_threshold(max_prob, protocol.prob_thd, post.otsu_c)] = BACKGROUND_LABEL
    return label


def image_at(image: torch.Tensor, hw) -> torch.Tensor:
    """The network input image bilinearly resized to the probabilities' size (``postprocess_result``)."""
    return F.interpolate(image[None].float(), size=tuple(hw), mode="bilinear", align_corners=False)[0]
