"""Consistent Semantic Guidance (CSG, S2C2Seg section 3.2): fuse global and local maps on the selected subset.

On the K selected categories, with ``s_glob`` (K, H, W) the baseline's dense patch-text cosine (bilinearly
upsampled) and ``s_spat`` (K, H, W) CLIPSeg's sigmoid maps at the same size:

* ``g_i = mean_{h,w} s_glob_i``, ``w = softmax(g / temperature)``;
* ``fused_i = s_glob_i + λ·w_i·s_spat_i``;
* outside the subset a category has probability 0 (``predict.py`` post-processes the subset only).

Leading batch dimensions (..., K, H, W) are accepted too.

The released fusion is ``released_fusion.py``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .primitives import replace_fields

__all__ = ["FUSION_MODES", "CSG_UNITS", "WEIGHTED_MODES", "CSGConfig", "category_weights", "fuse", "check_pair"]

FUSION_MODES = ("category_aware", "uniform", "add", "global_only", "local_only")
"""``category_aware`` is the paper's CSG; the others are the fusion ablations."""

CSG_UNITS = ("query", "class")
"""What CSG fuses: every query (synonym) of the subset, or every class after the synonym max."""

WEIGHTED_MODES = ("category_aware", "uniform", "add", "global_only")
"""Modes of the form ``s_glob + λ·w·s_spat`` (``global_only`` is ``w = 0``); ``local_only`` is not one."""


@dataclass(frozen=True)
class CSGConfig:
    """CSG hyper-parameters. λ = 0.6 is the paper's; the softmax temperature is not given there."""

    mode: str = "category_aware"
    """One of ``FUSION_MODES``."""
    lam: float = 0.6
    """λ, the weight of the local maps."""
    temperature: float = 0.01
    """Softmax temperature over the spatially averaged global cosines (only for ``category_aware``)."""
    unit: str = "query"
    """What CSG fuses (read by ``predict.fuse_subset``): ``query`` each synonym, ``w`` over the subset's queries;
    ``class`` the paper's literal reading, synonym max first, ``w`` over the K classes. One of ``CSG_UNITS``."""

    def __post_init__(self):
        _check_mode(self.mode, FUSION_MODES)
        if self.unit not in CSG_UNITS:
            raise ValueError(f"CSGConfig.unit must be one of {CSG_UNITS}, got {self.unit!r}")
        _check_lam(self.lam)
        _check_temperature(self.temperature)

    def fuse(self, s_glob, s_spat) -> torch.Tensor:
        """``fuse`` with this configuration."""
        return fuse(s_glob, s_spat, self)

    def replace(self, **fields) -> CSGConfig:
        """A copy with ``fields`` changed (unknown names raise ``ValueError``)."""
        return replace_fields(self, fields)

    def to_json(self) -> dict:
        return asdict(self)


def _check_mode(mode, allowed) -> None:
    if mode not in allowed:
        raise ValueError(f"mode must be one of {allowed}, got {mode!r}")


def _check_lam(lam) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"lam must be a finite number, got {lam!r}")


def _check_temperature(temperature) -> None:
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _as_maps(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim < 3:
        raise ValueError(f"{name} must have shape (K, H, W) (or (..., K, H, W)), got {tuple(t.shape)}")
    if t.shape[-3] == 0 or t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one category and one pixel, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    lo, hi = torch.aminmax(t)  # NaN propagates to both, ±inf shows in one: exact, and one pass cheaper
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def category_weights(s_glob, config: CSGConfig | None = None, **fields) -> torch.Tensor:
    """CSG weights (K,): ``softmax(mean_{h,w} s_glob / temperature)``; ``uniform`` 1/K, ``add`` 1, ``global_only`` 0.

    ``config`` (default ``CSGConfig()``) with any of its ``fields`` (``mode``, ``temperature``) overridden.
    """
    cfg = (config if config is not None else CSGConfig()).replace(**fields)
    _check_mode(cfg.mode, WEIGHTED_MODES)
    return _weights(_as_maps(s_glob, "s_glob"), cfg.mode, cfg.temperature)


def _weights(g: torch.Tensor, mode: str, temperature: float) -> torch.Tensor:
    """``category_weights`` on checked maps."""
    if mode == "category_aware":
        return torch.softmax(g.mean(dim=(-2, -1)) / temperature, dim=-1)
    fill = {"uniform": 1.0 / g.shape[-3], "add": 1.0, "global_only": 0.0}[mode]
    return torch.full(g.shape[:-2], fill, dtype=g.dtype, device=g.device)


def check_pair(s_glob, s_spat) -> tuple[torch.Tensor, torch.Tensor]:
    g = _as_maps(s_glob, "s_glob")
    s = _as_maps(s_spat, "s_spat")
    if g.shape != s.shape:
        raise ValueError(f"s_glob and s_spat must have the same shape, got {tuple(g.shape)} and {tuple(s.shape)}")
    if g.device != s.device:
        raise ValueError(f"s_glob and s_spat must be on the same device, got {g.device} and {s.device}")
    dtype = torch.promote_types(g.dtype, s.dtype)
    return g.to(dtype), s.to(dtype)


def fuse(s_glob, s_spat, config: CSGConfig | None = None, **fields) -> torch.Tensor:
    """CSG fusion (K, H, W): ``fused_i = s_glob_i + λ·w_i·s_spat_i`` (``local_only`` returns ``s_spat``).

    ``config`` (default ``CSGConfig()``) with any of its ``fields`` (``mode``, ``lam``, ``temperature``) overridden.
    """
    cfg = (config if config is not None else CSGConfig()).replace(**fields)
    g, s = check_pair(s_glob, s_spat)
    if cfg.mode == "local_only":
        return s.clone()
    if cfg.mode == "global_only":
        return g.clone()
    w = _weights(g, cfg.mode, cfg.temperature)
    return torch.addcmul(g, cfg.lam * w[..., None, None], s)  # g + (λ·w)·s in one pass


