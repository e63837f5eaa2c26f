"""The downstream's output type: one image's prediction and what led to it (every method returns one)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Prediction"]


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
