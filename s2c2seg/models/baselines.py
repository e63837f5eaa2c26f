"""Training-free dense CLIP baselines: each one small attention function over the unmodified model's last block.

Shared by all: blocks ``0..L-2`` run once (:func:`~s2c2seg.models.clip.embed_tokens`,
:func:`~s2c2seg.models.clip.run_blocks`); the baseline's own last block turns that output into patch tokens,
which go through ``ln_post`` and ``proj`` and are L2-normalised; the vanilla global embedding
(``return_global=True``) applies the unmodified last block to the same block ``L-2`` output.
q, k, v are read from the last block's ``attn.in_proj_weight``/``in_proj_bias`` (head-major split, as the
official code). Formulas follow the official code (wangf3014/SCLIP, mc-lan/ClearCLIP for MaskCLIP and ClearCLIP,
sinahmr/NACLIP, mc-lan/ProxyCLIP); see docs/models.md.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .clip import (ClipHandle, _check_images, embed_tokens, global_from_tokens, grid_size, merge_heads,
                   project_tokens, run_blocks, split_qkv, split_v)

__all__ = ["DenseOutput", "MaskCLIP", "SCLIP", "ClearCLIP", "NACLIP", "ProxyCLIP", "BASELINES",
           "baseline_class", "make_baseline", "csa_attention", "qq_attention", "neighbourhood_bias",
           "neighbourhood_attention", "proxy_attention", "renormalise"]


@dataclass
class DenseOutput:
    """A baseline's output for a batch of crops."""

    patch: torch.Tensor
    """(B, gh, gw, D) L2-normalised patch embeddings on the baseline's output grid (CLIP grid; VFM grid for
    ProxyCLIP / CorrCLIP), row-major, CLS excluded."""
    global_: torch.Tensor | None
    """(B, D) L2-normalised vanilla CLIP image embedding of the same input, or None (``return_global=False``)."""

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.patch.shape[1]), int(self.patch.shape[2])


PROXYCLIP_WINDOW_MULTIPLE = 56
"""mc-lan/ProxyCLIP's ``compute_padsize(H, W, 56)`` (kept by the S2C2Seg release): windows padded to x 56."""


# ---------------------------------------------------------------------------------------------- equations
def _scale(head_dim: int) -> float:
    """Attention temperature of every CLIP head: ``d^-1/2``."""
    return head_dim ** -0.5


def csa_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """SCLIP correlative self-attention: ``softmax(q qᵀ/√d) + softmax(k kᵀ/√d)`` per head, all tokens."""
    s = _scale(q.shape[-1])
    return torch.softmax(q @ q.transpose(-1, -2) * s, dim=-1) + torch.softmax(k @ k.transpose(-1, -2) * s, dim=-1)


def qq_attention(q: torch.Tensor) -> torch.Tensor:
    """ClearCLIP self-self attention: ``softmax(q qᵀ/√d)`` per head, all tokens."""
    return torch.softmax(q @ q.transpose(-1, -2) * _scale(q.shape[-1]), dim=-1)


def neighbourhood_bias(grid: tuple[int, int], std: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """NACLIP's Gaussian neighbourhood prior ω (1+N, 1+N): ``exp(-‖p_i − p_j‖² / (2σ²))`` between patch
    positions on the (gh, gw) grid, 0 in the CLS row and column."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, device=device, dtype=torch.float64),
                            torch.arange(gw, device=device, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=1)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    omega = torch.zeros(gh * gw + 1, gh * gw + 1, dtype=torch.float64, device=device)
    omega[1:, 1:] = torch.exp(-d2 / (2.0 * std * std))
    return omega.to(dtype)


def neighbourhood_attention(k: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """NACLIP neighbourhood attention: ``softmax(k kᵀ/√d + ω)`` per head, all tokens."""
    return torch.softmax(k @ k.transpose(-1, -2) * _scale(k.shape[-1]) + omega, dim=-1)


def proxy_attention(feats: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """ProxyCLIP proxy attention from VFM tokens (B, M, C): ``S = cos(F, F)``, ``S' = (S − β·mean(S))·γ``,
    entries ``S' < 0`` → −inf, softmax over keys; one (M, M) map per image shared by all heads.

    ``mean`` is over each image's M×M map (the official code's mean over its batch-of-one crop). A row whose
    every entry is cut (only when ``mean(S) > 1/β``; NaN in the official code) keeps its diagonal."""
    f = F.normalize(feats, dim=-1)
    s = f @ f.transpose(-1, -2)
    s = (s - beta * s.mean(dim=(-2, -1), keepdim=True)) * gamma
    keep = s >= 0
    empty = ~keep.any(dim=-1)
    if empty.any():
        eye = torch.eye(s.shape[-1], dtype=torch.bool, device=s.device).expand_as(keep)
        keep = keep | (eye & empty.unsqueeze(-1))
    return torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)


def renormalise(images: torch.Tensor, mean_from, std_from, mean_to, std_to) -> torch.Tensor:
    """Re-normalise images: ``((x·σ_from + μ_from) − μ_to) / σ_to`` per channel (ProxyCLIP's CLIP -> ImageNet)."""
    def col(v):
        return torch.as_tensor(v, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    return (images * col(std_from) + col(mean_from) - col(mean_to)) / col(std_to)


# ---------------------------------------------------------------------------------------------- baselines
class _Baseline:
    """Shared forward: trunk once, the baseline's last block, ``ln_post`` + ``proj``, normalise; vanilla global."""

    name: ClassVar[str] = ""
    needs_vfm: ClassVar[bool] = False
    needs_regions: ClassVar[bool] = False
    default_clip: ClassVar[tuple[str, str]] = ("ViT-B-16", "openai")
    """open_clip (model, weights tag) of the official code: OpenAI ViT-B/16 (QuickGELU, set by the tag)."""
    window_multiple: ClassVar[int] = 0
    """The official ``forward_slide`` zero-pads each sliding window (in normalised space) to a multiple of
    this (``slide.window_padding``); 0: no padding."""

    def last_block(self, clip: ClipHandle, x: torch.Tensor, grid: tuple[int, int], images: torch.Tensor,
                   vfm: Any) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens (B, gh'*gw', width) before ``ln_post`` from the block L-2 output, and their grid."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @torch.no_grad()
    def __call__(self, clip: ClipHandle, images: torch.Tensor, *, vfm: Any = None, regions: Any = None,
                 return_global: bool = True) -> DenseOutput:
        _check_images(images)
        if self.needs_vfm and vfm is None:
            raise ValueError(f"{type(self).__name__} needs vfm=load_vfm(...)")
        visual = clip.visual
        grid = grid_size(clip.patch_size, images.shape[-2:])
        x = embed_tokens(visual, images, clip.pos_rule)
        x = run_blocks(visual, x, 0, clip.num_layers - 1)
        tokens, out_grid = self.last_block(clip, x, grid, images, vfm)
        patch = F.normalize(project_tokens(visual, tokens), dim=-1)
        patch = patch.reshape(patch.shape[0], out_grid[0], out_grid[1], patch.shape[-1])
        glob = global_from_tokens(visual, x) if return_global else None
        return DenseOutput(patch=patch, global_=glob)


def _last(clip: ClipHandle):
    return clip.visual.transformer.resblocks[-1]


@dataclass
class MaskCLIP(_Baseline):
    """MaskCLIP (as in mc-lan/ClearCLIP): the value path of the last block, ``out_proj(v)``; no residual, no FFN."""

    name: ClassVar[str] = "maskclip"

    def last_block(self, clip, x, grid, images, vfm):
        blk = _last(clip)
        v = split_v(blk.attn, blk.ln_1(x))
        return blk.attn.out_proj(merge_heads(v))[:, 1:], grid


@dataclass
class SCLIP(_Baseline):
    """SCLIP: correlative self-attention in the last block, whose residual and FFN are kept."""

    name: ClassVar[str] = "sclip"

    def last_block(self, clip, x, grid, images, vfm):
        blk = _last(clip)
        q, k, v = split_qkv(blk.attn, blk.ln_1(x))
        x = x + blk.ls_1(blk.attn.out_proj(merge_heads(csa_attention(q, k) @ v)))
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        return x[:, 1:], grid


@dataclass
class ClearCLIP(_Baseline):
    """ClearCLIP: q-q attention in the last block; no residual, no FFN."""

    name: ClassVar[str] = "clearclip"

    def last_block(self, clip, x, grid, images, vfm):
        blk = _last(clip)
        q, _, v = split_qkv(blk.attn, blk.ln_1(x))
        return blk.attn.out_proj(merge_heads(qq_attention(q) @ v))[:, 1:], grid


@dataclass
class NACLIP(_Baseline):
    """NACLIP ("reduced" architecture): k-k attention plus a Gaussian neighbourhood prior; no residual, no FFN."""

    name: ClassVar[str] = "naclip"
    gaussian_std: float = 5.0
    """σ of the neighbourhood Gaussian, in patches (official default 5)."""

    def last_block(self, clip, x, grid, images, vfm):
        if self.gaussian_std <= 0:
            raise ValueError(f"gaussian_std must be > 0, got {self.gaussian_std}")
        blk = _last(clip)
        _, k, v = split_qkv(blk.attn, blk.ln_1(x))
        omega = neighbourhood_bias(grid, self.gaussian_std, device=x.device, dtype=x.dtype)
        return blk.attn.out_proj(merge_heads(neighbourhood_attention(k, omega) @ v))[:, 1:], grid


@dataclass
class ProxyCLIP(_Baseline):
    """ProxyCLIP: the last block's attention replaced by proxy attention from a vision foundation model's tokens,
    applied to CLIP's values resized to the VFM grid; no residual, no FFN; output on the VFM grid."""

    name: ClassVar[str] = "proxyclip"
    needs_vfm: ClassVar[bool] = True
    window_multiple: ClassVar[int] = PROXYCLIP_WINDOW_MULTIPLE
    beta: float = 1.2
    """Weight of the mean similarity subtracted before the cut."""
    gamma: float = 3.0
    """Sharpness multiplying the shifted similarities."""
    vfm_name: str = "dino_vitb8"
    """Which VFM the segmenter loads for it (``load_vfm(vfm_name)``): DINO ViT-B/8 as the official default."""

    def last_block(self, clip, x, grid, images, vfm):
        vfm_images = renormalise(images, clip.mean, clip.std, vfm.mean, vfm.std)
        feats = vfm.features(vfm_images)                       # (B, I, J, C)
        b, gi, gj, c = feats.shape
        attn = proxy_attention(feats.reshape(b, gi * gj, c).to(x.dtype), self.beta, self.gamma)
        blk = _last(clip)
        v = split_v(blk.attn, blk.ln_1(x))[:, :, 1:]          # (B, H, gh*gw, hd), CLS value dropped
        h, hd = v.shape[1], v.shape[-1]
        v = v.reshape(b * h, grid[0], grid[1], hd).permute(0, 3, 1, 2)
        v = F.interpolate(v, size=(gi, gj), mode="bilinear", align_corners=False)
        v = v.permute(0, 2, 3, 1).reshape(b, h, gi * gj, hd)
        return blk.attn.out_proj(merge_heads(attn.unsqueeze(1) @ v)), (gi, gj)


# ---------------------------------------------------------------------------------------------- registry
BASELINES: dict[str, type | str] = {
    "maskclip": MaskCLIP,
    "sclip": SCLIP,
    "clearclip": ClearCLIP,
    "naclip": NACLIP,
    "proxyclip": ProxyCLIP,
    "corrclip": "s2c2seg.models.corrclip:CorrCLIP",
}


def baseline_class(name: str) -> type:
    """The class registered under ``name`` (lazy ``"module:Class"`` entries are imported on first use)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    entry = BASELINES[key]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def make_baseline(name: str, **params: Any):
    """Instantiate a baseline by registry name; unknown parameters raise ValueError naming them."""
    cls = baseline_class(name)
    known = {f.name for f in fields(cls)} if hasattr(cls, "__dataclass_fields__") else set(params)
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"baseline {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**params)
