"""Evaluation protocols: the anchors' per-dataset, per-baseline knobs, in one table, written into every record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["Protocol"]


@dataclass(frozen=True)
class Protocol:
    """Every knob that changes a number. Defaults are overridden per dataset and baseline by the table."""

    short_side: int = 336
    """Test-time ``Resize(scale=(2048, short_side), keep_ratio=True)``."""
    crop: int = 224
    """Sliding-window crop (0 = whole-image inference)."""
    stride: int = 112
    logit_scale: float = 40.0
    """Multiplies the cosine logits before the softmax over queries."""
    prob_thd: float = 0.0
    """Pixels whose max class probability is below it become class 0 (only for datasets with a background)."""
    area_thd: float | None = None
    """SCLIP's image-level pruning (VOC21: 0.1); None = off."""
    name_variant: str = "sclip"
    """Which name file (``sclip``, ``proxyclip``, ``corrclip``) the vocabulary comes from."""
    vote: bool = False
    """CorrCLIP's per-region majority vote on the prediction."""

    def replace(self, **overrides) -> "Protocol":
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown protocol field(s): {sorted(unknown)}")
        return replace(self, **overrides)

    def to_json(self) -> dict:
        return asdict(self)
