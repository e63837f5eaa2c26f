"""CorrCLIP on tiny random models: every step against a direct re-computation from the same weights.

The reference below follows the official code's structure (``CorrCLIPv1/open_clip/transformer.py``): masks
as lists of boolean maps, the scope built from outer products, DBSCAN replaced by connected components of
{distance <= eps}, attention of every CLIP block written out by hand with a boolean mask, the main and
spatial branches from a separate run WITHOUT region tokens. Float64 throughout so that the comparisons of
similarities against their mean cannot flip between the two computations.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components

from s2c2seg.models.baselines import renormalise
from s2c2seg.models.clip import embed_tokens, load_clip, tiny_clip_config
from s2c2seg.models.corrclip import (CorrCLIP, SamRegionGenerator, dino_qk_features, scope_attention,
                                     semantic_attn_mask)
from s2c2seg.models.offline import ModelUnavailableError
from s2c2seg.models.vfm import load_vfm, tiny_vfm_config
from s2c2seg.regions import majority_vote, resize_nearest


# ---------------------------------------------------------------------------------------------- models
def _tiny_clip(dtype):
    """The tiny open_clip config with 6 blocks (so the spatial branch has blocks 2..3), weights perturbed so
    that the LayerNorms and biases are not at their identity init and every path matters."""
    cfg = tiny_clip_config()
    cfg["vision_cfg"] = dict(cfg["vision_cfg"], layers=6)
    clip = load_clip(config=cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in clip.model.visual.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    clip.model.to(dtype)
    return clip


@pytest.fixture(scope="module")
def clip():
    return _tiny_clip(torch.float64)


def _tiny_vfm(dtype):
    vfm = load_vfm(config=tiny_vfm_config("dino"), seed=1)
    vfm.model.to(dtype)
    return vfm


@pytest.fixture(scope="module")
def dino():
    return _tiny_vfm(torch.float64)


def _regions(b, h, w, n, seed, block=8):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n, (b, -(-h // block), -(-w // block)), generator=g)
    return coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w] + 2


def _images(b, h, w, seed):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- reference
def _dino_by_hook(clip, dino, images):
    """The official way: q and k captured by hooks on a full forward pass of the last layer."""
    pixels = renormalise(images, clip.mean, clip.std, dino.mean, dino.std)
    captured = {}
    attn = dino.model.layers[-1].attention
    hooks = [attn.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o)),
             attn.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o))]
    try:
        dino.features(pixels)
    finally:
        for h in hooks:
            h.remove()
    return F.normalize((captured["q"] + captured["k"])[:, 1:], dim=-1)


def _nearest(mask, size):
    return F.interpolate(mask[None, None].double(), size=size, mode="nearest")[0, 0].long()


def _ref_merge(mask, feats, eps):
    ids = torch.unique(mask)
    if len(ids) <= 2:
        return mask.clone()
    region_masks = [mask == i for i in ids]
    means = F.normalize(torch.stack([feats[m].mean(0) for m in region_masks]), dim=1)[1:]
    sim = means @ means.T
    _, comp = connected_components((sim.max() - sim).numpy() <= eps, directed=False)
    out = mask.clone()
    for k, m in enumerate(region_masks[1:]):
        out[m] = int(comp[k]) + 10000
    return out


def _ref_scope(sim, mask, tau):
    region_masks = [(mask == i).view(-1) for i in torch.unique(mask)]
    allowed = torch.zeros_like(sim, dtype=torch.bool)
    for m in region_masks[1:]:
        allowed |= torch.outer(m, m)
    m = region_masks[0]
    allowed |= (m[None, :] | m[:, None]) & (sim > sim.mean())
    return (tau * sim).masked_fill(~allowed, float("-inf")).softmax(-1)


def _ref_block(blk, x, allowed=None):
    """One open_clip residual block written out: per-head softmax(q kᵀ/√d) with a boolean mask, MLP."""
    d = blk.attn.embed_dim
    heads = blk.attn.num_heads
    h = blk.ln_1(x)
    q, k, v = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.view(t.shape[0], heads, d // heads).transpose(0, 1)  # noqa: E731
    scores = split(q) @ split(k).transpose(1, 2) / math.sqrt(d // heads)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ split(v)).transpose(0, 1).reshape(x.shape[0], d)
    x = x + blk.attn.out_proj(out)
    return x + blk.mlp(blk.ln_2(x))


def _ref_values(blk, x, attn, grid, vgrid):
    d = blk.attn.embed_dim
    v = F.linear(blk.ln_1(x), blk.attn.in_proj_weight[2 * d:], blk.attn.in_proj_bias[2 * d:])[1:]
    v = F.interpolate(v.T.reshape(1, d, *grid), size=vgrid, mode="bilinear", align_corners=False)
    return blk.attn.out_proj(attn @ v.reshape(d, -1).T)


def _reference(clip, dino, images, regions, cc, parts=False):
    visual = clip.model.visual
    blocks = visual.transformer.resblocks
    n_layers = len(blocks)
    num_spatial = cc.num_spatial or {12: 5, 24: 12, 32: 28}.get(n_layers, n_layers - 4)
    h, w = images.shape[-2:]
    grid = (h // clip.patch_size, w // clip.patch_size)
    vgrid = (h // dino.patch_size, w // dino.patch_size)
    feats = _dino_by_hook(clip, dino, images)
    tokens = embed_tokens(visual, images, clip.pos_rule)
    outs, info = [], []
    for b in range(images.shape[0]):
        mask = _ref_merge(_nearest(regions[b], vgrid), feats[b].view(*vgrid, -1), cc.eps)
        attn = _ref_scope(feats[b] @ feats[b].T, mask, cc.tau)
        # main / spatial from a vanilla run (no region tokens)
        x = tokens[b]
        spatial = []
        for idx, blk in enumerate(blocks[:-1]):
            x = _ref_block(blk, x)
            if n_layers - 2 - num_spatial <= idx <= n_layers - 3:
                spatial.append(x)
        main = _ref_values(blocks[-1], x, attn, grid, vgrid)
        spat = _ref_values(blocks[-1], torch.stack(spatial).mean(0), attn, grid, vgrid)
        # semantic: region CLS copies + boolean mask through every full block
        cmask = _nearest(mask, grid)
        region_masks = torch.stack([cmask == i for i in torch.unique(cmask)]).view(-1, grid[0] * grid[1])
        r = region_masks.shape[0]
        seq = torch.cat([tokens[b, :1].repeat(r, 1), tokens[b]])
        allowed = torch.zeros(seq.shape[0], seq.shape[0], dtype=torch.bool)
        allowed[r:, r:] = True
        allowed[:r, r] = True
        allowed[:r, r + 1:] = region_masks
        for blk in blocks:
            seq = _ref_block(blk, seq, allowed)
        expand = F.interpolate(region_masks.view(r, 1, *grid).double(), size=vgrid, mode="nearest").flatten(1)
        semantic = expand.T @ seq[:r]
        x = visual.ln_post(main) + cc.alpha * visual.ln_post(spat) + cc.beta * visual.ln_post(semantic)
        outs.append(F.normalize(x @ visual.proj, dim=-1).view(*vgrid, -1))
        info.append(dict(mask=mask, attn=attn, regions=r))
    return (torch.stack(outs), info) if parts else torch.stack(outs)


# ---------------------------------------------------------------------------------------------- steps
def test_dino_qk_equals_hooked_full_forward(clip, dino):
    images = _images(2, 48, 40, seed=3)
    ours = dino_qk_features(dino, renormalise(images, clip.mean, clip.std, dino.mean, dino.std))
    ref = _dino_by_hook(clip, dino, images)
    assert ours.shape == (2, 12 * 10, 32)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(2, 120, dtype=torch.float64))


def test_scope_attention_equals_outer_product_construction():
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(48, 6, generator=g, dtype=torch.float64), dim=-1)
    sim = feats @ feats.T
    merged = torch.randint(0, 4, (48,), generator=g)  # 0 = unsegmented
    ours = scope_attention(sim, merged, tau=4.0)
    ref = _ref_scope(sim, merged.view(6, 8), 4.0)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    # segmented patches of different regions never attend to each other
    seg = merged > 0
    cross = seg[:, None] & seg[None, :] & (merged[:, None] != merged[None, :])
    assert (ours[cross] == 0).all() and torch.allclose(ours.sum(-1), torch.ones(48, dtype=torch.float64))


def test_semantic_attn_mask_layout():
    token_region = torch.tensor([0, 2, 2, 1, 0, 2])
    m = semantic_attn_mask(token_region, 3)
    allowed = m == 0
    assert m.shape == (10, 10) and set(m.unique().tolist()) == {0.0, float("-inf")}
    assert allowed[3:, 3:].all() and not allowed[3:, :3].any()  # ordinary tokens never see region tokens
    assert not allowed[:3, :3].any() and allowed[:3, 3].all()  # no region token sees itself; all see CLS
    for r in range(3):
        assert allowed[r, 4:].tolist() == (token_region == r).tolist()


def test_spatial_blocks_follow_official_depths():
    cc = CorrCLIP()
    assert list(cc.spatial_blocks(12)) == [5, 6, 7, 8, 9]
    assert list(cc.spatial_blocks(24)) == list(range(10, 22))
    assert list(cc.spatial_blocks(32)) == list(range(2, 30))
    assert list(cc.spatial_blocks(6)) == [2, 3]
    assert list(CorrCLIP(num_spatial=2).spatial_blocks(12)) == [8, 9]
    with pytest.raises(ValueError, match="num_spatial"):
        CorrCLIP(num_spatial=11).spatial_blocks(12)


# ---------------------------------------------------------------------------------------------- whole
@pytest.mark.parametrize("hw,n_regions,seed", [((32, 32), 5, 0), ((24, 40), 9, 1), ((40, 32), 2, 2),
                                               ((16, 24), 1, 3)])
def test_corrclip_equals_reference(clip, dino, hw, n_regions, seed):
    images = _images(1, *hw, seed=seed)
    regions = _regions(1, *hw, n=n_regions, seed=seed)
    cc = CorrCLIP()
    with torch.no_grad():
        out = cc(clip, images, vfm=dino, regions=regions)
        ref = _reference(clip, dino, images, regions, cc)
    assert out.patch.shape == (1, hw[0] // dino.patch_size, hw[1] // dino.patch_size, clip.embed_dim)
    torch.testing.assert_close(out.patch, ref, rtol=0, atol=1e-10)


def test_branches_and_constants_each_matter(clip, dino):
    images = _images(1, 32, 32, seed=5)
    regions = _regions(1, 32, 32, n=6, seed=5)
    with torch.no_grad():
        base = CorrCLIP()(clip, images, vfm=dino, regions=regions).patch
        for params in (dict(alpha=0.0), dict(beta=0.0), dict(tau=1.0), dict(num_spatial=1), dict(eps=1e-9)):
            cc = CorrCLIP(**params)
            out = cc(clip, images, vfm=dino, regions=regions).patch
            torch.testing.assert_close(out, _reference(clip, dino, images, regions, cc), rtol=0, atol=1e-10)
            if params != dict(eps=1e-9):
                assert (out - base).abs().max() > 1e-4, params


def test_merge_inside_pipeline_happens(clip, dino):
    """With a large eps every segmented region merges into one: scope == one region + unsegmented."""
    images = _images(1, 32, 32, seed=6)
    regions = _regions(1, 32, 32, n=7, seed=6)
    cc = CorrCLIP(eps=10.0)
    with torch.no_grad():
        _, info = _reference(clip, dino, images, regions, cc, parts=True)
        out = cc(clip, images, vfm=dino, regions=regions).patch
    assert len(torch.unique(info[0]["mask"])) == 2
    torch.testing.assert_close(out, _reference(clip, dino, images, regions, cc), rtol=0, atol=1e-10)


def test_global_is_vanilla_clip_embedding(clip, dino):
    images = _images(2, 56, 56, seed=7)  # the tiny CLIP's native size: no pos-embed interpolation
    regions = _regions(2, 56, 56, n=4, seed=7)
    with torch.no_grad():
        out = CorrCLIP()(clip, images, vfm=dino, regions=regions)
        ref = F.normalize(clip.model.encode_image(images), dim=-1)
    torch.testing.assert_close(out.global_, ref, rtol=0, atol=1e-10)
    with torch.no_grad():
        assert CorrCLIP()(clip, images, vfm=dino, regions=regions, return_global=False).global_ is None


def test_batch_equals_one_by_one(clip, dino):
    images = _images(3, 24, 32, seed=8)
    regions = _regions(3, 24, 32, n=5, seed=8)
    cc = CorrCLIP()
    with torch.no_grad():
        batch = cc(clip, images, vfm=dino, regions=regions)
        single = [cc(clip, images[i:i + 1], vfm=dino, regions=regions[i:i + 1]) for i in range(3)]
    torch.testing.assert_close(batch.patch, torch.cat([s.patch for s in single]), rtol=0, atol=1e-10)
    torch.testing.assert_close(batch.global_, torch.cat([s.global_ for s in single]), rtol=0, atol=1e-10)


def test_float32_matches_float64(clip, dino):
    images = _images(1, 32, 32, seed=9)
    regions = _regions(1, 32, 32, n=4, seed=9)
    out32 = CorrCLIP()(_tiny_clip(torch.float32), images.float(), vfm=_tiny_vfm(torch.float32), regions=regions)
    out64 = CorrCLIP()(clip, images, vfm=dino, regions=regions)
    assert out32.patch.dtype == torch.float32
    torch.testing.assert_close(out32.patch.double(), out64.patch, rtol=0, atol=1e-4)
    torch.testing.assert_close(out32.global_.double(), out64.global_, rtol=0, atol=1e-5)


def test_bare_transformers_vit_is_accepted(clip, dino):
    images = _images(1, 32, 32, seed=12)
    regions = _regions(1, 32, 32, n=4, seed=12)
    a = CorrCLIP()(clip, images, vfm=dino, regions=regions)
    b = CorrCLIP()(clip, images, vfm=dino.model, regions=regions)
    torch.testing.assert_close(a.patch, b.patch, rtol=0, atol=0)
    with pytest.raises(ValueError, match="vfm"):
        CorrCLIP()(clip, images, vfm=clip.model, regions=regions)


def test_sizes_not_multiple_of_the_patch(clip, dino):
    """Remainder pixels are ignored as by the patch convolutions; each DINO patch takes its top-left pixel's id."""
    images = _images(1, 37, 45, seed=11)
    regions = _regions(1, 37, 45, n=4, seed=11)
    out = CorrCLIP()(clip, images, vfm=dino, regions=regions)
    assert out.patch.shape == (1, 9, 11, clip.embed_dim)
    ref = CorrCLIP()(clip, images[..., :36, :44], vfm=dino, regions=regions[..., :36, :44])
    torch.testing.assert_close(out.patch, ref.patch, rtol=0, atol=1e-12)


def test_vote_after_dense_prediction(clip, dino):
    """End to end on one crop: argmax of patch-text cosine, upsampled, then the vote over the original ids."""
    images = _images(1, 32, 32, seed=10)
    regions = _regions(1, 32, 32, n=5, seed=10)
    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(4, clip.embed_dim, dtype=torch.float64, generator=g), dim=-1)
    with torch.no_grad():
        patch = CorrCLIP()(clip, images, vfm=dino, regions=regions).patch[0]
    logits = F.interpolate((patch @ text.T).permute(2, 0, 1)[None], size=(32, 32), mode="bilinear")[0]
    pred = logits.argmax(0)
    voted = majority_vote(pred, regions[0])
    for rid in torch.unique(regions[0])[1:]:
        sel = regions[0] == rid
        assert (voted[sel] == torch.mode(pred[sel])[0]).all()
    sel = regions[0] == regions[0].min()
    assert torch.equal(voted[sel], pred[sel])


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise(clip, dino):
    images = _images(1, 32, 32, seed=0)
    regions = _regions(1, 32, 32, n=3, seed=0)
    cc = CorrCLIP()
    with pytest.raises(ValueError, match="regions"):
        cc(clip, images, vfm=dino, regions=None)
    with pytest.raises(ValueError, match="vfm"):
        cc(clip, images, vfm=None, regions=regions)
    with pytest.raises(ValueError, match="regions"):
        cc(clip, images, vfm=dino, regions=regions[:, :16])
    with pytest.raises(ValueError, match="regions"):
        cc(clip, images, vfm=dino, regions=regions.double())
    with pytest.raises(ValueError, match="patch size"):
        cc(clip, images[..., :4, :4], vfm=dino, regions=regions[..., :4, :4])
    with pytest.raises(ValueError, match="images"):
        cc(clip, images[0], vfm=dino, regions=regions)
    for bad in (dict(eps=0.0), dict(min_samples=0), dict(tau=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CorrCLIP(**bad)


def test_resize_of_original_mask_to_crop_grid_is_top_left():
    regions = torch.arange(64 * 64).view(64, 64)
    assert torch.equal(resize_nearest(regions, (8, 8)), regions[::8, ::8])


# ---------------------------------------------------------------------------------------------- masks
def test_sam_generator_offline_names_model_id():
    gen = SamRegionGenerator(model_id="facebook/sam2-hiera-large")
    with pytest.raises(ModelUnavailableError, match="facebook/sam2-hiera-large") as err:
        gen(np.zeros((8, 8, 3), dtype=np.uint8))
    assert "HF_HOME" in str(err.value)


def test_sam_generator_paints_pipeline_masks():
    calls = []

    def fake_pipe(image, **kwargs):
        calls.append(kwargs)
        big = np.zeros((6, 5), bool)
        big[:4] = True
        small = np.zeros((6, 5), bool)
        small[3:, 3:] = True
        return {"masks": [big, torch.as_tensor(small)], "scores": torch.tensor([0.9, 0.8])}

    gen = SamRegionGenerator(points_per_side=8, pred_iou_thresh=0.4, stability_score_thresh=0.4)
    gen._pipe = fake_pipe
    regions = CorrCLIP(mask_generator=gen).generate_regions(np.zeros((6, 5, 3), dtype=np.uint8))
    assert calls == [dict(points_per_crop=8, points_per_batch=64, pred_iou_thresh=0.4,
                          stability_score_thresh=0.4)]
    assert regions.dtype == np.int32
    assert regions[0, 0] == 2 and regions[5, 4] == 1 and regions[3, 4] == 2 and regions[5, 0] == 0
    with pytest.raises(ValueError, match="image"):
        gen(np.zeros((6, 5), dtype=np.uint8))


def test_registry_builds_corrclip_with_named_constants():
    from s2c2seg.models.baselines import make_baseline

    cc = make_baseline("corrclip", tau=2.0)
    assert isinstance(cc, CorrCLIP) and cc.needs_vfm and cc.needs_regions
    assert (cc.alpha, cc.beta, cc.tau, cc.eps, cc.min_samples) == (1.0, 0.5, 2.0, 0.2, 1)
    assert cc.default_clip == ("ViT-B-16-quickgelu", "metaclip_fullcc") and cc.vfm_name == "dino_vitb8"
    params = cc.params()
    assert params["mask_generator"]["points_per_side"] == 8 and params["mask_generator"]["pred_iou_thresh"] == 0.4
