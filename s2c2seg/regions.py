"""Region masks for CorrCLIP: loading, painting, nearest resizing, DBSCAN merging and the majority vote.

Pure array / tensor code, no model. A region map is an (H, W) integer array; its **minimum id** marks the
union of unsegmented pixels (the anchors' ``.npz`` convention, ``CorrCLIPv1/corrclip_segmentor.py``): that
region is never merged, never voted on and only attends by similarity in CorrCLIP's scope attention.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "NPZ_KEY",
    "DBSCAN_EPS",
    "DBSCAN_MIN_SAMPLES",
    "region_mask_path",
    "load_region_mask",
    "masks_to_regions",
    "resize_nearest",
    "merge_regions",
    "majority_vote",
]

NPZ_KEY = "instance_mask"
"""Key of the region map inside the anchors' pre-generated ``<image stem>.npz`` files."""
DBSCAN_EPS = 0.2
"""CorrCLIP's DBSCAN radius on the region distance ``max(sim) - sim``."""
DBSCAN_MIN_SAMPLES = 1
"""CorrCLIP's DBSCAN ``min_samples`` (1: every region is a core point, clusters = connected components)."""


def region_mask_path(root: str | Path, image_id: str) -> Path:
    """Path of the anchors' pre-generated mask for an image: ``root / <image stem>.npz``."""
    return Path(root) / f"{Path(image_id).stem}.npz"


def load_region_mask(path: str | Path) -> np.ndarray:
    """Read one anchors' ``.npz`` region mask (key ``instance_mask``) as an (H, W) int32 array.

    Raises ``FileNotFoundError`` naming the path when it is missing and ``ValueError`` when the file is not a
    2-D integer map under that key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"region mask file not found: {path} (expected the anchors' pre-generated "
                                f"'<image stem>.npz' with key {NPZ_KEY!r}; generate masks or fix the mask root)")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            mask = np.asarray(data[NPZ_KEY]) if NPZ_KEY in keys else None
    except Exception as exc:  # numpy raises OSError / ValueError / zipfile errors for corrupt files
        raise ValueError(f"cannot read region mask file {path}: {exc}") from exc
    if mask is None:
        raise ValueError(f"region mask file {path} has no key {NPZ_KEY!r} (keys: {keys})")
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ValueError(f"region mask file {path}: {NPZ_KEY!r} must be a 2-D integer map, "
                         f"got shape {mask.shape} dtype {mask.dtype}")
    if mask.size and (mask.min() < np.iinfo(np.int32).min or mask.max() > np.iinfo(np.int32).max):
        raise ValueError(f"region mask file {path}: ids do not fit int32")
    return mask.astype(np.int32)


def masks_to_regions(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Paint binary masks into one region map as CorrCLIP's SAM2 path does.

    Masks are sorted by area, smallest first, and painted with ids 1, 2, ... in that order, so a larger
    mask overwrites the smaller ones it covers; pixels no mask covers keep id 0 (unsegmented).
    """
    h, w = shape
    regions = np.zeros((h, w), dtype=np.int32)
    arrays = [np.asarray(m, dtype=bool) for m in masks]
    for i, m in enumerate(arrays):
        if m.shape != (h, w):
            raise ValueError(f"masks[{i}] has shape {m.shape}, expected {(h, w)}")
    order = sorted(range(len(arrays)), key=lambda i: int(arrays[i].sum()))  # stable: ties keep input order
    for new_id, i in enumerate(order, start=1):
        regions[arrays[i]] = new_id
    return regions


def _nearest_index(size_in: int, size_out: int) -> torch.Tensor:
    """Source index of each output position under torch's legacy ``nearest`` rule (floor(i * in / out))."""
    grid = torch.arange(size_in, dtype=torch.float64).view(1, 1, size_in)
    return F.interpolate(grid, size=size_out, mode="nearest").view(size_out).long()


def resize_nearest(regions: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Resize integer region ids (..., H, W) to ``size`` exactly as ``F.interpolate(mode='nearest')``.

    Output pixel (i, j) takes input pixel (floor(i·H/h), floor(j·W/w)) (its top-left source pixel), done by
    indexing so that ids of any size and dtype are kept exactly.
    """
    regions = torch.as_tensor(regions)
    if regions.ndim < 2:
        raise ValueError(f"regions must have at least 2 dims (..., H, W), got shape {tuple(regions.shape)}")
    h_out, w_out = (int(s) for s in size)
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f"size must be positive, got {size}")
    rows = _nearest_index(regions.shape[-2], h_out).to(regions.device)
    cols = _nearest_index(regions.shape[-1], w_out).to(regions.device)
    return regions.index_select(-2, rows).index_select(-1, cols)


def merge_regions(regions: torch.Tensor, feats: torch.Tensor, *, eps: float = DBSCAN_EPS,
                  min_samples: int = DBSCAN_MIN_SAMPLES) -> torch.Tensor:
    """Merge similar regions by DBSCAN on their mean features (CorrCLIP's mask merging).

    ``regions`` (h, w) ids on the feature grid, ``feats`` (h, w, C) L2-normalised features. Each region's
    mean feature is re-normalised; regions other than the unsegmented one (minimum id) are clustered by
    DBSCAN (precomputed distance ``max(sim) - sim``) and clusters become one region. Returns (h, w) int64
    with 0 = unsegmented and 1, 2, ... = merged regions (numbered by DBSCAN's cluster order). With at most
    one region besides the unsegmented one nothing is merged (as in the official code).
    """
    from sklearn.cluster import DBSCAN

    if regions.ndim != 2:
        raise ValueError(f"regions must be (h, w), got shape {tuple(regions.shape)}")
    if feats.ndim != 3 or feats.shape[:2] != regions.shape:
        raise ValueError(f"feats must be (h, w, C) with (h, w) = {tuple(regions.shape)}, "
                         f"got shape {tuple(feats.shape)}")
    ids, inverse = torch.unique(regions, return_inverse=True)  # sorted: ids[0] is the unsegmented region
    num = int(ids.numel())
    if num <= 2:
        return inverse.long()
    flat = feats.reshape(-1, feats.shape[-1]).float()
    inv = inverse.reshape(-1)
    sums = torch.zeros(num, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, inv, flat)
    counts = torch.bincount(inv, minlength=num).to(flat.dtype).unsqueeze(1)
    means = F.normalize(sums / counts, dim=1)[1:]
    sim = means @ means.T
    dist = (sim.max() - sim).clamp_min(0).cpu().double().numpy()
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dist)
    if (labels < 0).any():  # only possible with min_samples > 1: noise regions stay on their own
        noise = labels < 0
        labels[noise] = labels.max() + 1 + np.arange(int(noise.sum()))
    lut = torch.cat([torch.zeros(1, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long) + 1])
    return lut.to(inverse.device)[inverse]


def majority_vote(pred: torch.Tensor | np.ndarray, regions: torch.Tensor | np.ndarray) -> torch.Tensor:
    """CorrCLIP's map correction: every region except the minimum id takes the mode of its predicted labels.

    ``pred`` (H, W) non-negative integer labels, ``regions`` (H, W) ids at the same size. Ties go to the
    smallest label (as ``torch.mode`` on the CPU); pixels of the minimum-id region keep their labels.
    Returns an (H, W) int64 tensor.
    """
    pred = torch.as_tensor(pred)
    regions = torch.as_tensor(regions)
    if pred.ndim != 2 or pred.shape != regions.shape:
        raise ValueError(f"pred and regions must be (H, W) of the same size, got {tuple(pred.shape)} "
                         f"and {tuple(regions.shape)}")
    if pred.is_floating_point() or regions.is_floating_point():
        raise ValueError("pred and regions must hold integer ids")
    pred = pred.long()
    if pred.numel() == 0:
        return pred.clone()
    if int(pred.min()) < 0:
        raise ValueError("pred must hold non-negative labels")
    ids, inverse = torch.unique(regions, return_inverse=True)
    num_labels = int(pred.max()) + 1
    counts = torch.bincount((inverse * num_labels + pred).reshape(-1), minlength=ids.numel() * num_labels)
    mode = counts.view(ids.numel(), num_labels).argmax(dim=1)  # argmax returns the first max: smallest label
    out = mode[inverse]
    unsegmented = inverse == 0
    out[unsegmented] = pred[unsegmented]
    return out
