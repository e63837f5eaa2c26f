"""Vision foundation models (DINO, DINOv2) through transformers, for ProxyCLIP and CorrCLIP.

:meth:`VFMHandle.features` returns the last block's patch tokens after the final LayerNorm (the official
``get_intermediate_layers(x, n=1)[0]`` minus CLS / registers). The positional embeddings are interpolated with
the *official* rule of each family, computed here and passed into the unmodified transformers modules (no
patching): DINO v1 and plain DINOv2 use bicubic ``scale_factor=((g+0.1)/g0,)*2`` (transformers'
``interpolate_pos_encoding`` uses ``size=(g, g)`` instead, which differs at every size but the native one);
DINOv2 with registers uses ``size=(g, g)`` with antialias (the same in both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .clip import PosEmbedRule, _check_images, grid_size, interpolate_pos_embed
from .offline import HubProbe, ModelUnavailableError, cached_hub_file, resolve_hub_file

__all__ = ["VFMHandle", "VFM_MODELS", "load_vfm", "tiny_vfm_config", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DINO_RULE = PosEmbedRule(offset=0.1, antialias=False)
"""facebookresearch/dino and plain DINOv2 (``interpolate_offset=0.1``)."""
DINOV2_REG_RULE = PosEmbedRule(offset=0.0, antialias=True)
"""DINOv2 with registers (``interpolate_offset=0.0``, ``interpolate_antialias=True``): ``size=(g, g)``."""

VFM_MODELS: dict[str, str] = {
    "dino_vitb8": "facebook/dino-vitb8",
    "dino_vits8": "facebook/dino-vits8",
    "dino_vitb16": "facebook/dino-vitb16",
    "dino_vits16": "facebook/dino-vits16",
    "dinov2_vitb14_reg": "facebook/dinov2-with-registers-base",
    "dinov2_vits14_reg": "facebook/dinov2-with-registers-small",
    "dinov2_vitb14": "facebook/dinov2-base",
    "dinov2_vits14": "facebook/dinov2-small",
}
"""Official torch.hub names -> Hugging Face model ids."""

DINO_LN_EPS = 1e-6
"""LayerNorm epsilon of facebookresearch/dino's ViTs. transformers' DINO ports were converted with ViTConfig's
default 1e-12; loading overrides the config value (no weight changes) so the norms match the official model."""


@dataclass
class VFMHandle:
    """A transformers ViT / DINOv2 model (unmodified, eval) and how to read its patch tokens."""

    model: nn.Module
    name: str
    patch_size: int
    model_id: str = ""
    """Hugging Face id of the weights, or ``random`` for a config-built model."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    rule: PosEmbedRule = field(default_factory=lambda: DINO_RULE)

    @property
    def num_prefix_tokens(self) -> int:
        """CLS plus register tokens in front of the patch tokens."""
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    def describe(self) -> dict[str, Any]:
        return {"vfm": self.name, "weights": self.model_id, "patch_size": self.patch_size}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, gh, gw, C) last-layer patch tokens after the final LayerNorm, for ImageNet-normalised (B,3,H,W)."""
        _check_images(images)
        gh, gw = grid_size(self.patch_size, images.shape[-2:], what="VFM inputs")
        emb = self.model.embeddings
        x = emb.patch_embeddings(images.to(emb.patch_embeddings.projection.weight.dtype))
        x = torch.cat([emb.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + interpolate_pos_embed(emb.position_embeddings, (gh, gw), rule=self.rule).to(x.dtype)
        registers = getattr(emb, "register_tokens", None)
        if registers is not None:
            x = torch.cat([x[:, :1], registers.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        x = self._trunk(x)
        tokens = x[:, self.num_prefix_tokens:]
        return tokens.reshape(tokens.shape[0], gh, gw, tokens.shape[-1])

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """All transformer layers and the final LayerNorm of the unmodified model."""
        if hasattr(self.model, "layers"):          # ViTModel (transformers 5)
            for layer in self.model.layers:
                x = layer(x)
        else:                                      # Dinov2Model / Dinov2WithRegistersModel
            x = self.model.encoder(x).last_hidden_state
        return self.model.layernorm(x)


def tiny_vfm_config(kind: str = "dino") -> dict[str, Any]:
    """A tiny transformers config dict (random weights, tests): patch 4 at 32² (8x8 native grid), 2 layers of width
    32. ``kind``: ``dino`` (ViTConfig, DINO v1) or ``dinov2_reg`` (Dinov2WithRegistersConfig, 4 registers)."""
    if kind == "dino":
        return {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "image_size": 32, "patch_size": 4, "layer_norm_eps": 1e-6,
                "qkv_bias": True}
    if kind == "dinov2_reg":
        return {"model_type": "dinov2_with_registers", "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "mlp_ratio": 2, "image_size": 32, "patch_size": 4,
                "num_register_tokens": 4, "layer_norm_eps": 1e-6}
    raise ValueError(f"kind must be 'dino' or 'dinov2_reg', got {kind!r}")


def _rule_for(model_type: str, name: str) -> PosEmbedRule:
    if model_type == "dinov2_with_registers":
        return DINOV2_REG_RULE
    return DINO_RULE


def load_vfm(name: str = "dino_vitb8", *, config: dict[str, Any] | None = None, device: str | torch.device = "cpu",
             seed: int = 0, probe: HubProbe = HubProbe()) -> VFMHandle:
    """Load a VFM by its official hub name (``dino_vitb8``, ``dinov2_vitb14_reg``, ...) or a Hugging Face id.

    Real weights through transformers ``from_pretrained`` (HF cache first; offline and absent → raise within
    seconds naming the model id and the fix). ``config=`` builds a random model from a transformers config dict
    (:func:`tiny_vfm_config`)."""
    from transformers import AutoConfig

    if config is not None:
        if not isinstance(config, dict) or "model_type" not in config:
            raise ValueError("config must be a transformers config dict with a 'model_type'")
        cfg = dict(config)
        model_type = cfg.pop("model_type")
        hf_cfg = AutoConfig.for_model(model_type, **cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _from_config(hf_cfg)
        model_id = "random"
    else:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a VFM name ({sorted(VFM_MODELS)}) or a Hugging Face id, got {name!r}")
        model_id = VFM_MODELS.get(name, name)
        if "/" not in model_id:
            raise ValueError(f"unknown VFM {name!r}; known: {sorted(VFM_MODELS)} or a Hugging Face id 'org/name'")
        local = cached_hub_file(model_id, ("config.json",)) is not None
        if not local:
            resolve_hub_file(model_id, model_id, ("config.json",), probe)
        try:
            overrides = {"layer_norm_eps": DINO_LN_EPS} if model_id.startswith("facebook/dino-") else {}
            hf_cfg = AutoConfig.from_pretrained(model_id, local_files_only=local, **overrides)
            model = _from_pretrained(model_id, hf_cfg, local)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(f"cannot load the real weights of {model_id!r} ({name}): {exc}. Fix: "
                                        "network access once, or HF_HOME pointing at a populated cache") from exc
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    patch = hf_cfg.patch_size if isinstance(hf_cfg.patch_size, int) else int(hf_cfg.patch_size[0])
    return VFMHandle(model=model, name=name, patch_size=int(patch), model_id=model_id,
                     rule=_rule_for(hf_cfg.model_type, name))


def _from_config(hf_cfg) -> nn.Module:
    from transformers import AutoModel, ViTModel

    if hf_cfg.model_type == "vit":
        return ViTModel(hf_cfg, add_pooling_layer=False)
    return AutoModel.from_config(hf_cfg)


def _from_pretrained(model_id: str, hf_cfg, local: bool) -> nn.Module:
    from transformers import AutoModel, ViTModel

    if hf_cfg.model_type == "vit":
        return ViTModel.from_pretrained(model_id, config=hf_cfg, add_pooling_layer=False, local_files_only=local)
    return AutoModel.from_pretrained(model_id, config=hf_cfg, local_files_only=local)
