"""One evaluation item, as every dataset (real or simulated) yields it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

__all__ = ["Sample", "SampleSequence"]


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


class SampleSequence:
    """What every dataset (real or simulated) shares: ``len``, indexing and iteration over ``sample(i)``."""

    ids: list[str]

    def sample(self, i: int) -> Sample:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.sample(i)

    def __getitem__(self, i: int) -> Sample:
        return self.sample(i)
