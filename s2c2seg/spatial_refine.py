"""S2C2Seg++'s spatial refinement of class probabilities (the release's ``models/spatial_refine.py``).

Affinities between each pixel and its 8 neighbours at dilations (1, 2, 4, 8, 12, 24) on the network input image
(CLIP-normalised, not RGB): channel-mean absolute difference, divided by its global mean, negated, softmax over
all 48 neighbour slots. Each iteration replaces every class map by the affinity-weighted sum of its
neighbours (zero outside the image). The work runs at most ``max_side`` on the long side.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["SpatialRefineConfig", "neighbours", "affinity", "propagate", "work_size", "image_affinity",
           "spatial_refine", "spatial_refine_many", "RefineWorkspace"]

NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""(dy, dx) of the 8 neighbours, in the order of a 3×3 unfold's slots without the centre."""

AFFINITY_EPS = 1e-8
"""Added to the mean difference before dividing (the release's ``_affinity`` eps)."""
BAND_BYTES = 4 * 2**20
"""Bytes of the band of rows (all maps) that :func:`propagate` sums its 48 terms over at a time: a band stays in
the CPU's cache across the terms, the whole maps would not (1.6× faster on VOC-sized post-processing, idle)."""


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

    def affinity_config(self) -> SpatialRefineConfig:
        """This config with the fields :func:`image_affinity` does not read at their defaults: the affinities'
        memo key (a sweep over ``iterations`` / ``temperature`` shares them)."""
        return SpatialRefineConfig(dilations=self.dilations, max_side=self.max_side)


def neighbours(maps: torch.Tensor, dilation: int) -> list[torch.Tensor]:
    """The 8 neighbour maps (C, H, W) at ``dilation`` in a 3×3 unfold's slot order, zero outside the image
    (``_neighbors``; by slicing a zero-padded copy instead of ``unfold``, which is slow on the CPU)."""
    h, w = maps.shape[-2:]
    d = dilation
    padded = F.pad(maps, (d, d, d, d))
    return [padded[:, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w] for dy, dx in NEIGHBOUR_OFFSETS]


def affinity(image: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """(8·len(dilations), H, W) neighbour weights: softmax of −|diff| / mean|diff| over all slots (``_affinity``)."""
    diffs = torch.stack([(nb - image).abs().mean(dim=0) for d in dilations for nb in neighbours(image, d)])
    return torch.softmax(-diffs / (diffs.mean() + AFFINITY_EPS), dim=0)


def propagate(maps: torch.Tensor, weights: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """One iteration: every map becomes the affinity-weighted sum of its neighbours (``refine``'s loop body);
    per dilation the 8 terms are summed in slot order, then the dilations in order, as the release sums."""
    margin = max(dilations)
    out = torch.empty_like(maps)
    _propagate_into(F.pad(maps, (margin,) * 4), margin, weights, dilations, out)
    return out


def _propagate_into(padded: torch.Tensor, margin: int, weights: torch.Tensor, dilations: tuple[int, ...],
                    out: torch.Tensor) -> None:
    """:func:`propagate` of the maps inside ``padded`` (a zero border ``margin`` ≥ every dilation wide), written
    into ``out`` (C, H, W; may be a view), band of rows by band of rows (``BAND_BYTES``)."""
    c, h, w = out.shape
    rows = max(1, BAND_BYTES // (out.element_size() * c * w))
    acc = out.new_empty((c, min(rows, h), w))
    for top in range(0, h, rows):
        end = min(h, top + rows)
        _propagate_band(padded[:, top:end + 2 * margin], margin, weights[:, top:end], dilations, out[:, top:end],
                        acc[:, :end - top])


def _propagate_band(padded: torch.Tensor, margin: int, weights: torch.Tensor, dilations: tuple[int, ...],
                    out: torch.Tensor, acc: torch.Tensor) -> None:
    """One band of :func:`_propagate_into`. Per element the release's operations in its order: each dilation's
    8 products summed in slot order (in ``acc``; the first dilation's straight into ``out``, which is
    ``0 + acc`` exactly), then ``out += acc``."""
    h, w = out.shape[-2:]
    for j, d in enumerate(dilations):
        target = out if j == 0 else acc
        for k, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
            y, x = margin + dy * d, margin + dx * d
            term = padded[:, y:y + h, x:x + w]
            if k == 0:
                torch.mul(term, weights[8 * j], out=target)
            else:
                target.addcmul_(term, weights[8 * j + k])
        if j > 0:
            out += acc


def work_size(hw: tuple[int, int], config: SpatialRefineConfig) -> tuple[int, int]:
    """The refinement's work size: ``hw`` scaled down to ``max_side`` on the long side (``refine``)."""
    h, w = hw
    scale = max(h, w) / float(config.max_side)
    return (h, w) if scale <= 1 else (int(round(h / scale)), int(round(w / scale)))


def image_affinity(image: torch.Tensor, hw: tuple[int, int], config: SpatialRefineConfig) -> torch.Tensor:
    """The affinities of ``image`` (3, h, w) resized bilinearly to the work size of maps of size ``hw``."""
    img = image.float()[None]
    work = work_size(hw, config)
    if img.shape[-2:] != work:
        img = F.interpolate(img, size=work, mode="bilinear", align_corners=False)
    return affinity(img[0], config.dilations)


def spatial_refine(image: torch.Tensor, probs: torch.Tensor, config: SpatialRefineConfig,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """(C, H, W) refined ``probs`` guided by ``image`` (3, h, w), both resized to the capped work size (``refine``).

    ``weights``: :func:`image_affinity` of ``image`` for this size, when the caller has it already.
    """
    if config.iterations <= 0:
        return probs
    return spatial_refine_many(image, [probs], config, weights)[0]


class RefineWorkspace:
    """The two zero-bordered buffers of :func:`spatial_refine_many`, kept from call to call: a sweep refines maps
    of one size at every point, and fresh buffers of tens of MB cost their page faults at every call. Holds two
    buffers of the largest stack seen (channels × the padded work size, float32); they never leave
    :func:`spatial_refine_many`, which returns maps of its own."""

    def __init__(self):
        self._key: tuple | None = None
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def buffers(self, channels: int, hw: tuple[int, int], margin: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (channels, h + 2·margin, w + 2·margin) buffers whose border ``margin`` wide is zero (inside: any)."""
        key = (tuple(hw), margin)
        if self._buffers is None or self._key != key or self._buffers[0].shape[0] < channels:
            h, w = hw
            self._key = key
            self._buffers = tuple(torch.zeros(channels, h + 2 * margin, w + 2 * margin) for _ in range(2))
        return self._buffers[0][:channels], self._buffers[1][:channels]


def spatial_refine_many(image: torch.Tensor, maps: Sequence[torch.Tensor], config: SpatialRefineConfig,
                        weights: torch.Tensor | None = None, workspace: RefineWorkspace | None = None
                        ) -> list[torch.Tensor]:
    """:func:`spatial_refine` of several (C_i, H, W) stacks of one size, propagated together: the maps are
    independent along the classes, so each stack's numbers are those of its own call. ``workspace``: buffers
    kept between calls (the results are new tensors: nothing handed out is overwritten by a later call)."""
    if config.iterations <= 0:
        return list(maps)
    h, w = maps[0].shape[-2:]
    if any(tuple(m.shape[-2:]) != (h, w) for m in maps):
        raise ValueError(f"spatial_refine_many: every stack must be (C, {h}, {w}), got "
                         f"{[tuple(m.shape) for m in maps]}")
    work = work_size((h, w), config)
    if weights is None:
        weights = image_affinity(image, (h, w), config)
    margin = max(config.dilations)
    sizes = [int(m.shape[0]) for m in maps]
    buffers = (workspace or RefineWorkspace()).buffers(sum(sizes), work, margin)
    for part, m in zip(_inside(buffers[0], margin).split(sizes), maps):
        m = m.float()
        if tuple(m.shape[-2:]) != work:
            m = F.interpolate(m[None], size=work, mode="bilinear", align_corners=False)[0]
        part.copy_(m)
    for i in range(config.iterations):  # each iteration writes inside the other buffer's zero border
        _propagate_into(buffers[i % 2], margin, weights, config.dilations, _inside(buffers[(i + 1) % 2], margin))
    out = _inside(buffers[config.iterations % 2], margin)
    if work != (h, w):
        out = F.interpolate(out[None], size=(h, w), mode="bilinear", align_corners=False)[0]  # a new tensor
    else:
        out = out.clone()
    return list(out.split(sizes))


def _inside(padded: torch.Tensor, margin: int) -> torch.Tensor:
    """The maps inside a zero border ``margin`` wide (a view)."""
    return padded[:, margin:padded.shape[1] - margin, margin:padded.shape[2] - margin]
