"""S2C2Seg++'s spatial refinement of class probabilities (the release's ``models/spatial_refine.py``).

Affinities between each pixel and its 8 neighbours at dilations (1, 2, 4, 8, 12, 24) on the network input image
(CLIP-normalised, not RGB): channel-mean absolute difference, divided by its global mean, negated, softmax over
all 48 neighbour slots. Each iteration replaces every class map by the affinity-weighted sum of its
neighbours (zero outside the image). The work runs at most ``max_side`` on the long side.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["SpatialRefineConfig", "neighbours", "affinity", "propagate", "work_size", "guide_weights",
           "spatial_refine"]

NEIGHBOUR_SLOTS = (0, 1, 2, 3, 5, 6, 7, 8)
"""The 8 neighbours of a 3×3 unfold (the centre, slot 4, left out)."""

AFFINITY_EPS = 1e-8
"""Added to the mean difference before dividing (the release's ``_affinity`` eps)."""


@dataclass(frozen=True)
class SpatialRefineConfig:
    """The journal's spatial refinement (``iterations=0`` switches it off; the release's defaults otherwise)."""

    iterations: int = 0
    """Propagation iterations (``X_SPATIAL_REFINE``; the journal uses 3)."""
    temperature: float | None = None
    """Logit scale of the probabilities the LABEL map is refined from (``X_SPATIAL_REFINE_TEMP``; None = the
    protocol's logit scale). The background test always uses the logit-scale probabilities."""
    dilations: tuple[int, ...] = (1, 2, 4, 8, 12, 24)
    """Neighbour dilations."""
    max_side: int = 1024
    """Long-side cap of the work size."""

    def __post_init__(self):
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"SpatialRefineConfig.iterations must be an integer >= 0, got {self.iterations!r}")
        if self.temperature is not None and (isinstance(self.temperature, bool) or self.temperature <= 0):
            raise ValueError(f"SpatialRefineConfig.temperature must be None or > 0, got {self.temperature!r}")
        dil = tuple(self.dilations)
        if not dil or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dil):
            raise ValueError(f"SpatialRefineConfig.dilations must be positive integers, got {self.dilations!r}")
        object.__setattr__(self, "dilations", dil)
        if isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or self.max_side < 1:
            raise ValueError(f"SpatialRefineConfig.max_side must be an integer >= 1, got {self.max_side!r}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d


def neighbours(maps: torch.Tensor, dilation: int) -> torch.Tensor:
    """(C, 8, H, W): each pixel's 8 neighbours at ``dilation``, zero outside the image (``_neighbors``)."""
    c, h, w = maps.shape
    unfolded = F.unfold(maps[None], kernel_size=3, dilation=dilation, padding=dilation).view(c, 9, h, w)
    return unfolded.index_select(1, torch.tensor(NEIGHBOUR_SLOTS, device=maps.device))


def affinity(image: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """(8·len(dilations), H, W) neighbour weights: softmax of −|diff| / mean|diff| over all slots (``_affinity``)."""
    diffs = torch.cat([(neighbours(image, d) - image[:, None]).abs().mean(dim=0) for d in dilations], dim=0)
    return torch.softmax(-diffs / (diffs.mean() + AFFINITY_EPS), dim=0)


def propagate(maps: torch.Tensor, weights: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """One iteration: every map becomes the affinity-weighted sum of its neighbours (``refine``'s loop body).

    Same sum as :func:`neighbours` · weights, taken slot by slot on shifted views of the zero-padded maps (no
    (C, 9, H, W) unfold: ~10x faster, equal to float rounding)."""
    h, w = maps.shape[-2:]
    out = torch.zeros_like(maps)
    for j, d in enumerate(dilations):
        padded = F.pad(maps, (d, d, d, d))
        for k, slot in enumerate(NEIGHBOUR_SLOTS):
            dy, dx = divmod(slot, 3)
            out.addcmul_(padded[:, dy * d:dy * d + h, dx * d:dx * d + w], weights[8 * j + k])
    return out


def work_size(hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The refinement's work size for an (h, w) map: (h, w), or scaled down so that the long side is ``max_side``."""
    h, w = hw
    scale = max(h, w) / float(max_side)
    return (h, w) if scale <= 1 else (int(round(h / scale)), int(round(w / scale)))


def guide_weights(image: torch.Tensor, hw: tuple[int, int], config: SpatialRefineConfig) -> torch.Tensor:
    """The :func:`affinity` of ``image`` (3, h', w') resized to the work size of an (h, w) map (image-only:
    a sweep computes it once per image)."""
    work = work_size(tuple(hw), config.max_side)
    img = image.float()[None]
    if img.shape[-2:] != work:
        img = F.interpolate(img, size=work, mode="bilinear", align_corners=False)
    return affinity(img[0], config.dilations)


def spatial_refine(image: torch.Tensor, probs: torch.Tensor, config: SpatialRefineConfig,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """(C, H, W) refined ``probs`` guided by ``image`` (3, h, w), both resized to the capped work size (``refine``);
    ``weights``: :func:`guide_weights` of ``image`` for this size, when already computed."""
    if config.iterations <= 0:
        return probs
    h, w = probs.shape[-2:]
    work = work_size((h, w), config.max_side)
    if weights is None:
        weights = guide_weights(image, (h, w), config)
    maps = probs.float()[None]
    if maps.shape[-2:] != work:
        maps = F.interpolate(maps, size=work, mode="bilinear", align_corners=False)
    maps = maps[0]
    for _ in range(config.iterations):
        maps = propagate(maps, weights, config.dilations)
    if maps.shape[-2:] != (h, w):
        maps = F.interpolate(maps[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return maps
