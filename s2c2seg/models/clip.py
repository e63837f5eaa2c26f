"""CLIP through open_clip, unmodified: loading, positional-embedding interpolation, shared trunk, global embedding.

The model is never patched. The dense baselines (``baselines.py``) and CorrCLIP reuse the helpers below: they run
blocks ``0..L-2`` once (:func:`embed_tokens` + :func:`run_blocks`) and then apply their own last-block attention
to the block ``L-2`` output, while :func:`global_from_tokens` applies the vanilla last block to that same tensor
for CLIP's global image embedding, so the shared part is never computed twice.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .offline import HubProbe, ModelUnavailableError, resolve_hub_file, resolve_url_file, unavailable

__all__ = [
    "ClipHandle", "PosEmbedRule", "load_clip", "tiny_clip_config", "builtin_clip_config",
    "grid_size", "interpolate_pos_embed", "embed_tokens", "run_blocks", "run_block", "global_from_tokens",
    "project_tokens", "split_qkv", "merge_heads",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipHandle:
    """An unmodified open_clip CLIP with what the baselines and the text encoder need to know about it."""

    model: nn.Module
    """The open_clip ``CLIP`` (eval mode, no gradients). Never patched."""
    tokenizer: Callable[..., torch.Tensor]
    """open_clip tokenizer: ``tokenizer(list[str]) -> (n, context_length)`` int64."""
    model_name: str
    """open_clip model name (``ViT-B-16``, ``ViT-B-16-quickgelu``, ...) or ``custom-<hash>`` for a config."""
    pretrained: str
    """Weights tag (``openai``, ``metaclip_fullcc``, a file path) or ``"random"``."""
    mean: tuple[float, float, float] = OPENAI_MEAN
    """Per-channel mean of the image normalisation the weights expect (0-1 RGB)."""
    std: tuple[float, float, float] = OPENAI_STD
    patch_size: int = 16
    weights_id: str = ""
    """Identity of the weights for caches: ``name:tag`` or ``random:<config hash>:seed=<s>`` (weights unmodified)."""
    pos_rule: PosEmbedRule = field(default_factory=lambda: PosEmbedRule())

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def num_layers(self) -> int:
        return len(self.model.visual.transformer.resblocks)

    @property
    def embed_dim(self) -> int:
        """Dimension D of the joint image-text space (text and projected image features)."""
        return int(self.model.visual.proj.shape[1])

    @property
    def device(self) -> torch.device:
        return self.model.visual.proj.device

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "weights": self.pretrained, "patch_size": self.patch_size}


# ---------------------------------------------------------------------------------------------- configs
def tiny_clip_config() -> dict[str, Any]:
    """A tiny open_clip ``CLIP`` config (random weights, tests): ViT patch 8 at 56² (7x7 grid), 3 blocks of width 64
    and 4 heads, QuickGELU as OpenAI's weights, a 2-block text tower on the real 49,408-token BPE vocabulary."""
    return {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 56, "layers": 3, "width": 64, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    }


def builtin_clip_config(model_name: str = "ViT-B-16", quick_gelu: bool = True) -> dict[str, Any]:
    """open_clip's shipped config for ``model_name`` (full size, for random-weight benchmarks); QuickGELU as the
    OpenAI / MetaCLIP checkpoints."""
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"model_name={model_name!r} is not an open_clip model config; see open_clip.list_models()")
    cfg = copy.deepcopy(cfg)
    cfg["quick_gelu"] = bool(quick_gelu or cfg.get("quick_gelu", False))
    return cfg


def _config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- loading
def load_clip(model_name: str = "ViT-B-16", pretrained: str = "openai", *, config: dict[str, Any] | None = None,
              device: str | torch.device = "cpu", seed: int = 0, probe: HubProbe = HubProbe()) -> ClipHandle:
    """Load an open_clip CLIP, real weights by default; ``config=`` builds a random model from an open_clip config.

    Real weights: any open_clip model name / pretrained tag (``ViT-B-16``/``openai``,
    ``ViT-B-16-quickgelu``/``metaclip_fullcc``, ...), a checkpoint file path as ``pretrained``, or an
    ``hf-hub:`` model name. The activation is the one the tag was trained with (OpenAI and MetaCLIP weights are
    QuickGELU, which open_clip only warns about for ``ViT-B-16``/``openai``). Weights are looked up in the local
    Hugging Face cache first; when absent and unreachable this raises :class:`ModelUnavailableError` within
    seconds (``probe.timeout_s``), naming the model id and the fix.
    """
    import open_clip

    if config is not None:
        return _random_clip(model_name, config, device=device, seed=seed)
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be an open_clip model name, got {model_name!r}")
    if model_name.startswith("hf-hub:"):
        return _hub_schema_clip(model_name, device=device, probe=probe)

    name = model_name.replace("/", "-")
    if open_clip.get_model_config(name) is None:
        raise ValueError(f"model_name={model_name!r} is not an open_clip model; see open_clip.list_models()")
    if not isinstance(pretrained, str) or not pretrained:
        raise ValueError(f"pretrained must be an open_clip tag or a checkpoint path, got {pretrained!r}")
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    model_id = f"{name}/{pretrained}"
    if tag_cfg:
        path = _resolve_tag(model_id, tag_cfg, probe)
    elif os.path.isfile(pretrained):
        path = pretrained
    else:
        raise ValueError(f"pretrained={pretrained!r} is neither an open_clip tag of {name!r} "
                         f"({open_clip.list_pretrained_tags_by_model(name)}) nor an existing checkpoint file")
    try:
        model = open_clip.create_model(name, pretrained=path, device=device,
                                       force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)))
    except Exception as exc:  # a corrupt / mismatching checkpoint: name the model and the file
        raise ModelUnavailableError(f"cannot load the weights of {model_id!r} from {path}: {exc}") from exc
    mean = tuple(tag_cfg.get("mean", OPENAI_MEAN))
    std = tuple(tag_cfg.get("std", OPENAI_STD))
    return _handle(model, open_clip.get_tokenizer(name), name, pretrained, mean, std, weights_id=model_id)


def _resolve_tag(model_id: str, tag_cfg: dict[str, Any], probe: HubProbe) -> str:
    """Local checkpoint path of an open_clip tag: HF cache, else download, else raise fast."""
    from open_clip import pretrained as ocp
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)  # open_clip's convention: 'org/repo/' or 'org/repo/file'
        filename = filename or HF_WEIGHTS_NAME
        names = (filename,)
        if filename == HF_WEIGHTS_NAME:
            names = (HF_SAFE_WEIGHTS_NAME, filename)
        elif filename.endswith((".bin", ".pth")):
            names = (filename[:-4] + ".safetensors", filename)
        return resolve_hub_file(model_id, repo_id, names, probe)
    url = tag_cfg.get("url", "")
    if not url:
        raise unavailable(model_id, "open_clip pretrained config", "the tag names neither a hub repo nor a URL")
    cache_dir = os.path.expanduser("~/.cache/clip")
    path = resolve_url_file(model_id, url, cache_dir, probe)
    return path if path is not None else ocp.download_pretrained_from_url(url, cache_dir=cache_dir)


def _hub_schema_clip(model_name: str, *, device, probe: HubProbe) -> ClipHandle:
    import open_clip

    repo_id = model_name[len("hf-hub:"):]
    resolve_hub_file(model_name, repo_id, ("open_clip_config.json",), probe)  # fail fast when absent offline
    model = open_clip.create_model(model_name, device=device)
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    return _handle(model, open_clip.get_tokenizer(model_name), model_name, "hf-hub",
                   tuple(pcfg.get("mean", OPENAI_MEAN)), tuple(pcfg.get("std", OPENAI_STD)), weights_id=model_name)


def _random_clip(model_name: str, config: dict[str, Any], *, device, seed: int) -> ClipHandle:
    """A randomly initialised open_clip CLIP built from an open_clip model config dict (no network)."""
    import open_clip
    from open_clip.model import CLIP

    if not isinstance(config, dict) or "vision_cfg" not in config or "text_cfg" not in config:
        raise ValueError("config must be an open_clip model config dict with 'embed_dim', 'vision_cfg', 'text_cfg'")
    cfg = copy.deepcopy(config)
    builtin = open_clip.get_model_config(model_name.replace("/", "-"))
    same = builtin is not None and {k: v for k, v in cfg.items() if k != "quick_gelu"} == \
        {k: v for k, v in builtin.items() if k != "quick_gelu"}
    name = model_name if same else f"custom-{_config_hash(cfg)}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**cfg)
    model.to(device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))
    return _handle(model, tokenizer, name, "random", OPENAI_MEAN, OPENAI_STD,
                   weights_id=f"random:{_config_hash(cfg)}:seed={seed}")


def _handle(model, tokenizer, name, pretrained, mean, std, *, weights_id) -> ClipHandle:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    visual = model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
        raise ValueError(f"{name!r} has no open_clip ViT image tower (timm / ResNet towers are not supported)")
    ph, pw = _pair(visual.patch_size)
    if ph != pw:
        raise ValueError(f"{name!r}: non-square patches {ph}x{pw} are not supported")
    return ClipHandle(model=model, tokenizer=tokenizer, model_name=name, pretrained=pretrained,
                      mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), patch_size=ph,
                      weights_id=weights_id)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


# ---------------------------------------------------------------------------------------------- positions
@dataclass(frozen=True)
class PosEmbedRule:
    """The anchors' positional-embedding interpolation (SCLIP / ProxyCLIP / CorrCLIP / DINO)."""

    offset: float = 0.1
    """``scale_factor = (g + offset) / g0`` per axis (DINO's "+0.1" trick)."""
    mode: str = "bicubic"
    antialias: bool = False


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], grid0: tuple[int, int] | None = None,
                          rule: PosEmbedRule = PosEmbedRule()) -> torch.Tensor:
    """Positional embeddings (``[1,] 1+N0, D``, first = CLS) resized to ``grid``: bicubic with
    ``scale_factor = ((gh+0.1)/g0h, (gw+0.1)/g0w)``, ``align_corners=False``, CLS kept; unchanged at the native grid.
    Computed in the table's own dtype (a float64 table is interpolated in float64, as the anchors do)."""
    squeeze = pos_embed.ndim == 2
    pe = pos_embed if squeeze else pos_embed[0]
    n0 = pe.shape[0] - 1
    if grid0 is None:
        side = int(round(n0 ** 0.5))
        if side * side != n0:
            raise ValueError(f"pos_embed has {n0} patch positions, not a square grid: pass grid0")
        grid0 = (side, side)
    gh, gw = int(grid[0]), int(grid[1])
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    if (gh, gw) == tuple(grid0):
        return pos_embed
    dim = pe.shape[1]
    patch = pe[1:].reshape(1, grid0[0], grid0[1], dim).permute(0, 3, 1, 2)
    scale = ((gh + rule.offset) / grid0[0], (gw + rule.offset) / grid0[1])
    patch = F.interpolate(patch, scale_factor=scale, mode=rule.mode, align_corners=False, antialias=rule.antialias)
    if tuple(patch.shape[-2:]) != (gh, gw):
        raise ValueError(f"positional interpolation gave grid {tuple(patch.shape[-2:])}, expected {(gh, gw)}")
    out = torch.cat([pe[:1], patch.permute(0, 2, 3, 1).reshape(gh * gw, dim)], dim=0)
    return out if squeeze else out.unsqueeze(0)


def grid_size(patch_size: int, hw: tuple[int, int], what: str = "images") -> tuple[int, int]:
    """Token grid of an (h, w) input: ``(h // patch, w // patch)`` (remainder pixels ignored, as the anchors' conv).

    Raises ValueError when the input is smaller than one patch."""
    h, w = int(hw[0]), int(hw[1])
    if h < patch_size or w < patch_size:
        raise ValueError(f"{what} of size {h}x{w} are smaller than the patch size {patch_size}: "
                         f"resize them to at least {patch_size}x{patch_size}")
    return h // patch_size, w // patch_size


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got {shape}")
    if not torch.is_floating_point(images):
        raise ValueError(f"{name} must be a normalised floating-point tensor, got dtype {images.dtype}")


# ---------------------------------------------------------------------------------------------- trunk
def embed_tokens(visual: nn.Module, images: torch.Tensor, rule: PosEmbedRule = PosEmbedRule()) -> torch.Tensor:
    """(B, 1+gh*gw, width): patch embedding, CLS, interpolated positional embedding, ``ln_pre`` (open_clip order)."""
    _check_images(images)
    ph, _ = _pair(visual.patch_size)
    gh, gw = grid_size(ph, images.shape[-2:])
    dtype = visual.conv1.weight.dtype
    x = visual.conv1(images.to(dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = interpolate_pos_embed(visual.positional_embedding, (gh, gw), _pair(visual.grid_size), rule)
    x = x + pos.to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x)


def run_block(visual: nn.Module, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One unmodified residual block on batch-first tokens (B, N, width)."""
    if getattr(visual.transformer, "batch_first", True):
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def run_blocks(visual: nn.Module, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Blocks ``start..stop-1`` of the image tower, unmodified, on batch-first tokens (B, N, width)."""
    blocks = visual.transformer.resblocks
    stop = len(blocks) if stop is None else stop
    if not 0 <= start <= stop <= len(blocks):
        raise ValueError(f"block range [{start}, {stop}) outside 0..{len(blocks)}")
    for blk in blocks[start:stop]:
        x = run_block(visual, blk, x)
    return x


def project_tokens(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Every token through ``ln_post`` and ``proj`` (B, N, width) -> (B, N, D); not normalised."""
    return visual.ln_post(tokens) @ visual.proj


def global_from_tokens(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Vanilla CLIP image embedding from the block L-2 output: the unmodified last block, open_clip's pooling
    (CLS through ``ln_post``), ``proj``, L2-normalised. Equals ``encode_image(normalize=True)`` on the same input."""
    x = run_block(visual, visual.transformer.resblocks[-1], x)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled, dim=-1)


# ---------------------------------------------------------------------------------------------- attention parts
def split_qkv(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, heads, N, head_dim) of batch-first tokens, from the block's own ``in_proj_weight``/``bias``."""
    if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
        raise ValueError("the last block's attention must be an nn.MultiheadAttention with a packed in_proj_weight")
    b, n, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    return q, k, v


def split_v(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Only the value projection (rows ``2D:3D`` of ``in_proj_weight``), (B, heads, N, head_dim)."""
    b, n, d = x.shape
    h = attn.num_heads
    bias = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
    v = F.linear(x, attn.in_proj_weight[2 * d:], bias)
    return v.reshape(b, n, h, d // h).permute(0, 2, 1, 3)


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim) -> (B, N, heads*head_dim), heads concatenated head-major."""
    b, h, n, hd = out.shape
    return out.permute(0, 2, 1, 3).reshape(b, n, h * hd)
