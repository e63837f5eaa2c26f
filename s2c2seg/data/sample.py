"""One evaluation item, as every dataset (real or simulated) yields it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Sample"]


@dataclass
class Sample:
    """An image with its label map (None at inference) and optional region ids (CorrCLIP's masks)."""

    id: str
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    label: np.ndarray | None = None
    """(H, W) int64 class indices after the dataset's label encoding (``reduce_zero_label`` applied); 255 = ignore."""
    regions: np.ndarray | None = None
    """(H, W) int32 region ids; the minimum id marks unsegmented pixels (the anchors' ``.npz`` convention)."""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"Sample {self.id!r}: image must be an (H, W, 3) uint8 array, got "
                             f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img))}")
        for name in ("label", "regions"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != img.shape[:2]:
                raise ValueError(f"Sample {self.id!r}: {name} has size {arr.shape}, image has {img.shape[:2]}")
