"""The release's fusion inside one sliding window (``yhflq/S2c2seg`` ``models/csg.py``).

:func:`convex_fuse` ``(1 − gw)·((1 − λ)·G + λ·L) + gw·L·w`` with :func:`released_guide_weights`
``w = softmax(mean G)`` (no temperature), and :func:`scatter_fill` (−1e9 for the unselected queries);
:class:`FusionConfig` switches between the release's form and the paper's ``csg.fuse`` (``form="convex"`` |
``"paper"``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .csg import CSGConfig, check_pair, fuse

__all__ = ["FUSION_FORMS", "FusionConfig", "released_guide_weights", "convex_fuse", "scatter_fill"]


FUSION_FORMS = ("convex", "paper")
"""``convex`` is the release's fusion, ``paper`` the paper's ``S_glob + λ·w·S_spat`` (:class:`CSGConfig`)."""


@dataclass(frozen=True)
class FusionConfig:
    """Fusion inside the released window pipeline (defaults: the release's ``models/config.py``)."""

    form: str = "convex"
    """One of ``FUSION_FORMS``."""
    lam: float = 0.15
    """λ of the convex form ``(1 − λ)·G + λ·L``; the release also uses it as the spatial rerank weight."""
    guide_weight: float = 0.07
    """Weight of the guided term ``L·w`` in the convex form."""
    fill: float = -1e9
    """Value of the unselected queries' rows (the release's ``unselected_fill``; ``-inf`` is the paper's)."""
    paper: CSGConfig = field(default_factory=CSGConfig)
    """The paper form's parameters (λ = 0.6, temperature), read when ``form="paper"``."""

    def __post_init__(self):
        if self.form not in FUSION_FORMS:
            raise ValueError(f"FusionConfig.form must be one of {FUSION_FORMS}, got {self.form!r}")
        for name in ("lam", "guide_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"FusionConfig.{name} must be a number in [0, 1], got {v!r}")
        if isinstance(self.fill, bool) or not isinstance(self.fill, (int, float)) or math.isnan(self.fill) \
                or self.fill == math.inf:
            raise ValueError(f"FusionConfig.fill must be a number or -inf, got {self.fill!r}")
        if not isinstance(self.paper, CSGConfig):
            raise ValueError(f"FusionConfig.paper must be a CSGConfig, got {type(self.paper).__name__}")

    def fuse(self, dense: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """The selected rows' fused maps (K, H, W) in this form."""
        if self.form == "convex":
            return convex_fuse(dense, local, self)
        return fuse(dense, local, self.paper)

    def to_json(self) -> dict:
        d = asdict(self)
        d["paper"] = self.paper.to_json()
        return d



def released_guide_weights(dense: torch.Tensor) -> torch.Tensor:
    """Released guide weights (K,): ``softmax`` over the selected rows of their window mean (``csg.guide_weights``)."""
    return torch.softmax(dense.mean(dim=(-2, -1)), dim=-1)



def convex_fuse(dense: torch.Tensor, local: torch.Tensor, config: FusionConfig) -> torch.Tensor:
    """Released fusion (K, H, W): ``(1 − gw)·((1 − λ)·G + λ·L) + gw·L·w`` (``csg.fuse`` of the release)."""
    g, s = check_pair(dense, local)
    lam, gw = float(config.lam), float(config.guide_weight)
    out = g * (1.0 - lam)  # the release's op sequence, in place: every step rounds as it does
    out += s * lam
    out *= 1.0 - gw
    guided = s * released_guide_weights(g)[:, None, None]
    guided *= gw
    out += guided
    return out



def scatter_fill(fused: torch.Tensor, selected: torch.Tensor, size: int, fill: float) -> torch.Tensor:
    """Released window output (size, H, W): row ``selected[i]`` is ``fused[i]``, ``fill`` elsewhere
    (``csg.scatter``)."""
    out = fused.new_full((size, *fused.shape[-2:]), float(fill))
    out[selected] = fused
    return out
