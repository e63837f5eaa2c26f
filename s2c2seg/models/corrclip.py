"""CorrCLIP (ICCV'25, ``zdk258/CorrCLIP`` ``CorrCLIPv1/``) as a baseline over the unmodified open_clip model.

Per crop (the official code's order, checked against ``CorrCLIPv1/open_clip/transformer.py``):

1. DINO ViT-B/8 (transformers) sees the crop re-normalised with ImageNet statistics; its feature is ``q + k``
   of the last block (the block input through ``layernorm_before`` and the query / key Linear layers; the
   block itself is not run), CLS dropped, L2-normalised.
2. Region ids (minimum id = unsegmented) are resized to the DINO grid by torch's legacy nearest rule and
   merged by DBSCAN on mean DINO features (:func:`s2c2seg.regions.merge_regions`).
3. Scope attention ``softmax(tau * S)`` with ``S = cos(DINO)``, allowed inside a merged region, or where one
   side is unsegmented and ``S > mean(S)``.
4. CLIP blocks 0..L-2 run once, unmodified, with one CLS copy per region prepended and an additive attention
   mask that lets copy r see only the CLS token and its region's patches (ordinary tokens never see copies).
   Blocks 0..L-2 are shared with the vanilla global embedding (``global_from_tokens``).
5. Main branch (the last block's input) and spatial branch (mean of blocks ``L-2-num_spatial .. L-3``, 5..9
   for ViT-B) take the last block's value path, resized to the DINO grid, under the scope attention, then
   ``out_proj`` (no residual, no FFN). Semantic branch: the region tokens after the full last block, each
   DINO patch taking the token of its CLIP-grid region.
6. ``ln_post`` per branch, ``main + alpha * spatial + beta * semantic``, ``@ proj``, L2-normalised.

The majority vote over the original region ids is a post-processing step (:func:`s2c2seg.regions.majority_vote`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from s2c2seg.models.baselines import DenseOutput, renormalise
from s2c2seg.models.clip import (_check_images, embed_tokens, global_from_tokens, grid_size, interpolate_pos_embed,
                                 merge_heads, split_v)
from s2c2seg.models.offline import HubProbe, cached_hub_file, resolve_hub_file, unavailable
from s2c2seg.models.vfm import VFMHandle
from s2c2seg.regions import DBSCAN_EPS, DBSCAN_MIN_SAMPLES, masks_to_regions, merge_regions, resize_nearest

__all__ = ["CorrCLIP", "SamRegionGenerator", "as_vfm_handle", "dino_qk_features", "scope_attention",
           "semantic_attn_mask", "scoped_values"]


def as_vfm_handle(vfm) -> VFMHandle:
    """A :class:`~s2c2seg.models.vfm.VFMHandle` as is, or a bare transformers DINO ``ViTModel`` wrapped in one
    (ImageNet statistics, the official DINO positional interpolation)."""
    if isinstance(vfm, VFMHandle):
        return vfm
    cfg = getattr(vfm, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "vit":
        raise ValueError(f"vfm must be a VFMHandle (load_vfm('dino_vitb8')) or a transformers DINO ViTModel, "
                         f"got {type(vfm).__name__}")
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else int(cfg.patch_size[0])
    return VFMHandle(model=vfm, name=getattr(cfg, "name_or_path", "") or "dino", patch_size=int(patch))


def dino_qk_features(vfm, images: torch.Tensor) -> torch.Tensor:
    """DINO's last-block ``q + k`` per patch: (B, gh*gw, C), CLS dropped, L2-normalised (CorrCLIP's VFM feature).

    ``vfm`` a :class:`~s2c2seg.models.vfm.VFMHandle` around a transformers ``ViTModel``; ``images``
    normalised for it. The embedding is the handle's (official DINO positional interpolation); layers
    0..L-2 run unmodified; the last layer contributes only ``layernorm_before`` and its query / key Linear
    layers (what the official qkv hook captures), so its attention and MLP are never computed.
    """
    model = vfm.model
    layers = getattr(model, "layers", None)
    if layers is None or not hasattr(model, "embeddings") or not hasattr(layers[-1].attention, "q_proj"):
        raise ValueError(f"vfm: CorrCLIP needs a DINO transformers ViTModel, got {type(model).__name__}")
    _check_images(images)
    grid = grid_size(vfm.patch_size, images.shape[-2:], what="VFM inputs")
    emb = model.embeddings
    x = emb.patch_embeddings(images.to(emb.patch_embeddings.projection.weight.dtype))
    x = torch.cat([emb.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = x + interpolate_pos_embed(emb.position_embeddings, grid, rule=vfm.rule).to(x.dtype)
    for layer in layers[:-1]:
        x = layer(x)
    last = layers[-1]
    x = last.layernorm_before(x)
    qk = last.attention.q_proj(x) + last.attention.k_proj(x)
    return F.normalize(qk[:, 1:], dim=-1)


def scope_attention(sim: torch.Tensor, merged: torch.Tensor, tau: float) -> torch.Tensor:
    """CorrCLIP's scope attention ``softmax(tau * S)`` over allowed pairs (same region, or unsegmented & S > mean).

    ``sim`` (N, N) cosine of DINO features, ``merged`` (N,) region ids with 0 = unsegmented.
    """
    unseg = merged == 0
    same_region = (merged[:, None] == merged[None, :]) & ~unseg[:, None]
    by_similarity = (unseg[:, None] | unseg[None, :]) & (sim > sim.mean())
    logits = (tau * sim).masked_fill(~(same_region | by_similarity), float("-inf"))
    return logits.softmax(dim=-1)


def semantic_attn_mask(token_region: torch.Tensor, num_regions: int, dtype=torch.float32) -> torch.Tensor:
    """Additive mask for ``[R region tokens, CLS, N patches]``: region token r sees only CLS and r's patches.

    ``token_region`` (N,) region index 0..R-1 of each CLIP patch. Ordinary tokens see all ordinary tokens
    and no region token. 0 = allowed, -inf = blocked; shape (R+1+N, R+1+N).
    """
    n, r = token_region.numel(), num_regions
    allowed = torch.zeros(r + 1 + n, r + 1 + n, dtype=torch.bool, device=token_region.device)
    allowed[r:, r:] = True
    allowed[:r, r] = True
    allowed[:r, r + 1:] = token_region[None, :] == torch.arange(r, device=token_region.device)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=token_region.device)
    return mask.masked_fill_(~allowed, float("-inf"))


def scoped_values(block, x: torch.Tensor, attn: torch.Tensor, grid: tuple[int, int],
                  vfm_grid: tuple[int, int]) -> torch.Tensor:
    """Last block without residual / FFN: ``out_proj(A · resize(v(ln_1(x))))`` on the VFM grid.

    ``x`` (B, 1+N, D) tokens (CLS first; its value is dropped), values bilinearly resized from the CLIP grid
    to the VFM grid (align_corners=False), ``attn`` (Nd, Nd) shared by all heads; returns (B, Nd, D).
    """
    v = merge_heads(split_v(block.attn, block.ln_1(x)))[:, 1:]
    v = v.transpose(1, 2).reshape(x.shape[0], v.shape[-1], *grid)
    v = F.interpolate(v, size=vfm_grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    return block.attn.out_proj(attn @ v)


def _masked_block(visual, block, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One unmodified open_clip block on batch-first tokens with an additive attention mask."""
    if getattr(visual.transformer, "batch_first", True):
        return block(x, attn_mask=mask)
    return block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)


@dataclass
class SamRegionGenerator:
    """Region maps from SAM / SAM2 automatic mask generation (transformers' ``mask-generation`` pipeline).

    Defaults follow CorrCLIP's ``sam2`` option (hiera-L, 8 points per side, IoU and stability thresholds
    0.4); masks are painted smallest first (:func:`s2c2seg.regions.masks_to_regions`). The pipeline has no
    ``multimask_output`` switch (the official generator sets it to False) and runs in the model's own precision
    (the official one under fp16 autocast). Real weights only: offline, loading fails at once naming the model id.
    """

    model_id: str = "facebook/sam2-hiera-large"
    points_per_side: int = 8
    pred_iou_thresh: float = 0.4
    stability_score_thresh: float = 0.4
    points_per_batch: int = 64
    device: str = "cpu"
    probe: HubProbe = field(default_factory=HubProbe)
    _pipe: Any = field(default=None, init=False, repr=False, compare=False)

    def params(self) -> dict[str, Any]:
        """The generator's settings (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("_pipe", "probe")}

    def load(self):
        """Build (once) and return the transformers pipeline.

        Raises :class:`~s2c2seg.models.offline.ModelUnavailableError` within seconds, naming the model id and
        the fix, when the weights are neither cached nor reachable."""
        if self._pipe is None:
            from transformers import pipeline

            local = cached_hub_file(self.model_id, ("config.json",)) is not None
            if not local:
                resolve_hub_file(self.model_id, self.model_id, ("config.json",), self.probe)
            try:
                self._pipe = pipeline("mask-generation", model=self.model_id, device=self.device)
            except Exception as exc:  # hub / cache / architecture errors come in many types
                raise unavailable(self.model_id, "transformers mask-generation pipeline",
                                  f"{exc.__class__.__name__}: {exc}") from exc
        return self._pipe

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) int32 region ids, 0 = unsegmented."""
        from PIL import Image

        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', None)}")
        out = self.load()(Image.fromarray(image), points_per_crop=self.points_per_side,
                          points_per_batch=self.points_per_batch, pred_iou_thresh=self.pred_iou_thresh,
                          stability_score_thresh=self.stability_score_thresh)
        masks = [np.asarray(m.cpu() if torch.is_tensor(m) else m, dtype=bool) for m in out["masks"]]
        return masks_to_regions(masks, image.shape[:2])


@dataclass
class CorrCLIP:
    """CorrCLIP v1: region-scoped DINO attention with spatial and semantic branches (see module docstring)."""

    alpha: float = 1.0
    """Weight of the spatial branch (mean of intermediate blocks)."""
    beta: float = 0.5
    """Weight of the semantic branch (region CLS tokens)."""
    tau: float = 4.0
    """Temperature of the scope attention softmax(tau * cos)."""
    eps: float = DBSCAN_EPS
    """DBSCAN radius for region merging."""
    min_samples: int = DBSCAN_MIN_SAMPLES
    """DBSCAN min_samples for region merging."""
    num_spatial: int | None = None
    """Intermediate blocks averaged by the spatial branch; None = the official 5 / 12 / 28 for 12 / 24 / 32
    blocks (max(depth - 4, 1) otherwise), i.e. blocks L-2-num_spatial .. L-3 (5..9 for ViT-B)."""
    vfm_name: str = "dino_vitb8"
    """Which VFM the segmenter loads for it (``load_vfm(vfm_name)``): DINO ViT-B/8 as the official default."""
    mask_generator: SamRegionGenerator = field(default_factory=SamRegionGenerator)
    """Used by :meth:`generate_regions` when no pre-generated masks are given."""

    needs_vfm: ClassVar[bool] = True
    needs_regions: ClassVar[bool] = True
    name: ClassVar[str] = "corrclip"
    default_clip: ClassVar[tuple[str, str]] = ("ViT-B-16-quickgelu", "metaclip_fullcc")
    """The official CLIP (open_clip model name, pretrained tag): MetaCLIP, not OpenAI."""
    _official_spatial: ClassVar[dict[int, int]] = {12: 5, 24: 12, 32: 28}

    def __post_init__(self) -> None:
        for name in ("eps", "tau"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples}")

    def spatial_blocks(self, depth: int) -> range:
        """Indices of the blocks whose outputs the spatial branch averages: ``L-2-n .. L-3``.

        ``n`` = ``num_spatial``, else the official 5 / 12 / 28 for 12 / 24 / 32 blocks and ``max(L-4, 1)``
        otherwise (the official ``L-4`` leaves the branch empty below 5 blocks)."""
        n = self.num_spatial if self.num_spatial is not None else self._official_spatial.get(depth, max(depth - 4, 1))
        if not 1 <= n <= depth - 2:
            raise ValueError(f"num_spatial must be in 1..{depth - 2} for a {depth}-block CLIP, got {n}")
        return range(depth - 2 - n, depth - 2)

    def params(self) -> dict[str, Any]:
        """The baseline's parameters (JSON-serialisable), the mask generator's settings nested."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mask_generator"] = self.mask_generator.params()
        return out

    def generate_regions(self, image: np.ndarray) -> np.ndarray:
        """Region ids for one image with the SAM / SAM2 generator (when no ``.npz`` masks are available)."""
        return self.mask_generator(image)

    @torch.no_grad()
    def __call__(self, clip, images: torch.Tensor, *, vfm=None, regions=None,
                 return_global: bool = True) -> DenseOutput:
        """Dense CorrCLIP features on the DINO grid for CLIP-normalised ``images`` (B, 3, h, w).

        ``regions`` (B, h, w) integer ids at the crop's pixel size (minimum id = unsegmented). Images run one
        at a time (each has its own number of region tokens). Returns ``DenseOutput(patch (B, gh, gw, Dproj),
        global_ (B, Dproj))``, both L2-normalised, on the VFM grid ``(h // 8, w // 8)`` for DINO ViT-B/8;
        ``vfm`` a :class:`~s2c2seg.models.vfm.VFMHandle` (``load_vfm('dino_vitb8')``) or its bare
        transformers ``ViTModel``.
        """
        if vfm is None:
            raise ValueError("vfm: CorrCLIP needs the DINO model, vfm=load_vfm('dino_vitb8'); got None")
        if regions is None:
            raise ValueError("regions: CorrCLIP needs region ids (B, h, w), got None")
        _check_images(images)
        vfm = as_vfm_handle(vfm)
        regions = torch.as_tensor(regions, device=images.device)
        b, _, h, w = images.shape
        if regions.is_floating_point() or regions.dtype == torch.bool or tuple(regions.shape) != (b, h, w):
            raise ValueError(f"regions must be integer ids of shape {(b, h, w)}, got "
                             f"{tuple(regions.shape)} {regions.dtype}")
        visual = clip.visual
        grid = grid_size(clip.patch_size, (h, w))
        vfm_grid = grid_size(vfm.patch_size, (h, w), what="VFM inputs")
        # the DINO patch (i, j) covers pixels [p*i, p*(i+1)): its region is the one of its top-left pixel
        regions = regions[:, :vfm_grid[0] * vfm.patch_size, :vfm_grid[1] * vfm.patch_size]

        feats = dino_qk_features(vfm, renormalise(images, clip.mean, clip.std, vfm.mean, vfm.std))
        tokens = embed_tokens(visual, images, clip.pos_rule)
        patches, globals_ = [], []
        for i in range(b):
            patch, glob = self._one(visual, tokens[i:i + 1], feats[i].to(tokens.dtype), regions[i], grid,
                                    vfm_grid, return_global)
            patches.append(patch)
            globals_.append(glob)
        patch = torch.cat(patches).view(b, *vfm_grid, -1)
        global_ = torch.cat(globals_) if return_global else None
        return DenseOutput(patch=patch, global_=global_)

    def _one(self, visual, x, feats, regions, grid, vfm_grid, return_global):
        """One image: ``x`` (1, 1+N, D) embedded tokens, ``feats`` (Nd, C) DINO q+k, ``regions`` (h, w)."""
        merged = merge_regions(resize_nearest(regions, vfm_grid), feats.view(*vfm_grid, -1),
                               eps=self.eps, min_samples=self.min_samples)
        attn = scope_attention(feats @ feats.T, merged.reshape(-1), self.tau)

        ids, token_region = torch.unique(resize_nearest(merged, grid), return_inverse=True)
        num_regions = ids.numel()
        mask = semantic_attn_mask(token_region.reshape(-1), num_regions, dtype=x.dtype)
        seq = torch.cat([x[:, :1].expand(-1, num_regions, -1), x], dim=1)

        blocks = visual.transformer.resblocks
        spatial_ids = self.spatial_blocks(len(blocks))
        spatial = torch.zeros_like(x)
        for j, block in enumerate(blocks[:-1]):
            seq = _masked_block(visual, block, seq, mask)
            if j in spatial_ids:
                spatial = spatial + seq[:, num_regions:]
        spatial = spatial / len(spatial_ids)
        shared = seq[:, num_regions:]

        last = blocks[-1]
        main = scoped_values(last, shared, attn, grid, vfm_grid)
        spatial = scoped_values(last, spatial, attn, grid, vfm_grid)
        region_tokens = _masked_block(visual, last, seq, mask)[:, :num_regions]
        patch_region = resize_nearest(token_region.view(grid), vfm_grid).reshape(-1)
        semantic = region_tokens[:, patch_region]
        patch = self.combine(visual, main, spatial, semantic)
        glob = global_from_tokens(visual, shared) if return_global else None
        return patch, glob

    def combine(self, visual, main, spatial, semantic):
        """CorrCLIP's output ``(ln_post(main) + α·ln_post(spatial) + β·ln_post(semantic)) @ proj``, normalised."""
        x = visual.ln_post(main) + self.alpha * visual.ln_post(spatial) + self.beta * visual.ln_post(semantic)
        return F.normalize(x @ visual.proj, dim=-1)
