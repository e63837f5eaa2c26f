"""Each dense baseline equals a plain re-computation of its formula from the same (tiny, random) model's weights.

The references below are written from the formulas (docs/models.md) with explicit matmuls, softmaxes and
per-head loops; the trunk (blocks 0..L-2) comes from open_clip's own ``encode_image`` through a forward hook.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from s2c2seg.models import BASELINES, DenseOutput, baseline_class, load_clip, load_vfm, make_baseline
from s2c2seg.models import tiny_clip_config, tiny_vfm_config
from s2c2seg.models.baselines import proxy_attention

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _perturb(module, seed):
    """Random weights everywhere (biases and LayerNorms too), so that no term of a formula is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.fixture(scope="module")
def clip():
    h = load_clip("tiny", config=tiny_clip_config())
    _perturb(h.model, 0)
    return h


# ---------------------------------------------------------------------------------------------- references
def ref_trunk(model, x):
    """Output of block L-2 from open_clip's own forward (hook), and the model's own global embedding."""
    store = {}
    hook = model.visual.transformer.resblocks[-2].register_forward_hook(lambda m, i, o: store.__setitem__("x", o))
    try:
        glob = model.encode_image(x, normalize=True)
    finally:
        hook.remove()
    return store["x"], glob


def model_for_grid(clip, gh, gw):
    """A copy of the model whose positional table is the SCLIP rule's resize to (gh, gw), for non-native inputs."""
    model = copy.deepcopy(clip.model)
    pe = model.visual.positional_embedding
    g0 = int(round((pe.shape[0] - 1) ** 0.5))
    grid = pe[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0), mode="bicubic", align_corners=False)
    model.visual.positional_embedding = torch.nn.Parameter(
        torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)]))
    return model


def ln(t, mod):
    return F.layer_norm(t, (t.shape[-1],), mod.weight, mod.bias, mod.eps)


def ref_qkv(blk, x):
    d = x.shape[-1]
    y = ln(x, blk.ln_1)
    w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    return y @ w[:d].T + b[:d], y @ w[d:2 * d].T + b[d:2 * d], y @ w[2 * d:].T + b[2 * d:]


def per_head(t, h):
    return [t[..., i * (t.shape[-1] // h):(i + 1) * (t.shape[-1] // h)] for i in range(h)]


def ref_out_proj(blk, heads):
    cat = torch.cat(heads, dim=-1)
    return cat @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias


def ref_mlp(blk, x):
    y = ln(x, blk.ln_2)
    y = y @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
    y = y * torch.sigmoid(1.702 * y)                                  # QuickGELU
    return y @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias


def ref_project(clip_model, tokens):
    v = clip_model.visual
    return F.normalize(ln(tokens, v.ln_post) @ v.proj, dim=-1)


def ref_dense(clip, name, x, **params):
    b, _, hh, ww = x.shape
    gh, gw = hh // clip.patch_size, ww // clip.patch_size
    model = clip.model if (gh, gw) == (7, 7) else model_for_grid(clip, gh, gw)
    xt, glob = ref_trunk(model, x)
    blk = model.visual.transformer.resblocks[-1]
    h = blk.attn.num_heads
    q, k, v = ref_qkv(blk, xt)
    qs, ks, vs = per_head(q, h), per_head(k, h), per_head(v, h)
    scale = qs[0].shape[-1] ** -0.5
    outs = []
    for qh, kh, vh in zip(qs, ks, vs):
        if name == "maskclip":
            attn = torch.eye(qh.shape[1]).expand(b, -1, -1)
        elif name == "sclip":
            attn = (torch.softmax(qh @ qh.transpose(1, 2) * scale, -1)
                    + torch.softmax(kh @ kh.transpose(1, 2) * scale, -1))
        elif name == "clearclip":
            attn = torch.softmax(qh @ qh.transpose(1, 2) * scale, -1)
        elif name == "naclip":
            attn = torch.softmax(kh @ kh.transpose(1, 2) * scale
                                 + naclip_omega(gh, gw, params.get("gaussian_std", 5.0)), -1)
        outs.append(attn @ vh)
    a = ref_out_proj(blk, outs)
    if name == "sclip":
        y = xt + a
        tokens = y + ref_mlp(blk, y)
    else:
        tokens = a
    patch = ref_project(model, tokens)[:, 1:].reshape(b, gh, gw, -1)
    return patch, glob


def naclip_omega(gh, gw, std):
    """NACLIP's construction: a (2gh-1, 2gw-1) Gaussian window convolved ('same') over one-hot patch images."""
    c = 1.0 / (std * 2 ** 0.5)
    ky = torch.linspace(-(2 * gh - 2) / 2 * c, (2 * gh - 2) / 2 * c, 2 * gh - 1)
    kx = torch.linspace(-(2 * gw - 2) / 2 * c, (2 * gw - 2) / 2 * c, 2 * gw - 1)
    window = torch.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2))
    onehot = torch.eye(gh * gw).reshape(gh * gw, 1, gh, gw)
    out = F.conv2d(onehot, window[None, None], padding="same").reshape(gh * gw, gh * gw)
    full = torch.zeros(gh * gw + 1, gh * gw + 1)
    full[1:, 1:] = out
    return full


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", ["maskclip", "sclip", "clearclip", "naclip"])
@pytest.mark.parametrize("hw", [(56, 56), (40, 96)])
def test_dense_equals_reference(clip, name, hw):
    torch.manual_seed(1)
    x = torch.randn(2, 3, *hw)
    out = make_baseline(name)(clip, x)
    patch, glob = ref_dense(clip, name, x)
    assert isinstance(out, DenseOutput) and out.patch.shape == patch.shape
    assert (out.patch - patch).abs().max() < 1e-5
    if hw == (56, 56):
        assert (out.global_ - glob).abs().max() < 1e-5                      # vanilla global = encode_image
    assert torch.allclose(out.patch.norm(dim=-1), torch.ones(()), atol=1e-5)


def test_naclip_std_parameter(clip):
    x = torch.randn(1, 3, 56, 56)
    out = make_baseline("naclip", gaussian_std=2.0)(clip, x)
    patch, _ = ref_dense(clip, "naclip", x, gaussian_std=2.0)
    assert (out.patch - patch).abs().max() < 1e-5
    assert (out.patch - make_baseline("naclip")(clip, x).patch).abs().max() > 1e-4


def test_return_global_false(clip):
    out = make_baseline("sclip")(clip, torch.randn(1, 3, 56, 56), return_global=False)
    assert out.global_ is None and out.grid == (7, 7)


def test_global_shared_with_dense_pass_equals_plain_forward_at_other_sizes(clip):
    x = torch.randn(1, 3, 40, 96)
    out = make_baseline("clearclip")(clip, x)
    _, glob = ref_trunk(model_for_grid(clip, 5, 12), x)
    assert (out.global_ - glob).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------- ProxyCLIP
@pytest.fixture(scope="module")
def proxy_models(clip):
    clip64 = copy.copy(clip)
    clip64.model = copy.deepcopy(clip.model).double()
    cfg = dict(tiny_vfm_config("dino"), image_size=56)                     # native 14x14 DINO grid at 56²
    vfm = load_vfm(config=cfg)
    _perturb(vfm.model, 1)
    vfm.model.double()
    return clip64, vfm


def test_proxyclip_equals_reference(proxy_models):
    clip64, vfm = proxy_models
    torch.manual_seed(2)
    x = torch.randn(2, 3, 56, 56, dtype=torch.float64)
    bl = make_baseline("proxyclip")
    out = bl(clip64, x, vfm=vfm)

    mean = torch.tensor(clip64.mean, dtype=x.dtype).reshape(1, 3, 1, 1)
    std = torch.tensor(clip64.std, dtype=x.dtype).reshape(1, 3, 1, 1)
    im = (x * std + mean - torch.tensor(IMAGENET_MEAN, dtype=x.dtype).reshape(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD, dtype=x.dtype).reshape(1, 3, 1, 1)
    feats = vfm.model(pixel_values=im).last_hidden_state[:, 1:]             # after the final LayerNorm, no CLS
    assert feats.shape[1] == 14 * 14
    model = clip64.model
    xt, glob = ref_trunk(model, x)
    blk = model.visual.transformer.resblocks[-1]
    _, _, v = ref_qkv(blk, xt)
    outs = []
    for i in range(2):
        f = feats[i] / feats[i].norm(dim=-1, keepdim=True)
        s = f @ f.T
        s = (s - 1.2 * s.mean()) * 3.0
        s[s < 0] = float("-inf")
        attn = torch.softmax(s, dim=-1)
        heads = []
        for vh in per_head(v[i:i + 1, 1:], blk.attn.num_heads):
            grid = vh.reshape(1, 7, 7, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(14, 14), mode="bilinear", align_corners=False)
            heads.append(attn @ grid.permute(0, 2, 3, 1).reshape(196, -1))
        outs.append(ref_out_proj(blk, heads))
    patch = ref_project(model, torch.stack(outs)).reshape(2, 14, 14, -1)
    assert out.patch.shape == (2, 14, 14, patch.shape[-1])
    assert (out.patch - patch).abs().max() < 1e-10
    assert (out.global_ - glob).abs().max() < 1e-10


def test_proxyclip_needs_vfm(clip):
    with pytest.raises(ValueError, match="vfm"):
        make_baseline("proxyclip")(clip, torch.randn(1, 3, 56, 56))


def test_proxy_attention_flat_crop_keeps_diagonal():
    feats = torch.ones(1, 9, 4)                                              # a flat crop: every S' < 0
    attn = proxy_attention(feats, beta=1.2, gamma=3.0)
    assert torch.isfinite(attn).all() and torch.equal(attn[0], torch.eye(9))


def test_proxy_attention_cut_is_strict():
    f = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    attn = proxy_attention(f, beta=1.0, gamma=1.0)
    s = F.normalize(f[0], dim=-1) @ F.normalize(f[0], dim=-1).T
    keep = (s - s.mean()) >= 0
    assert torch.equal(attn[0] > 0, keep)


# ---------------------------------------------------------------------------------------------- registry / input
def test_registry():
    assert {"maskclip", "sclip", "clearclip", "naclip", "proxyclip", "corrclip"} <= set(BASELINES)
    assert BASELINES["corrclip"] == "s2c2seg.models.corrclip:CorrCLIP"
    assert baseline_class("SCLIP") is BASELINES["sclip"]
    assert make_baseline("proxyclip", beta=1.0).beta == 1.0
    assert make_baseline("proxyclip").needs_vfm and not make_baseline("sclip").needs_vfm
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("nope")
    with pytest.raises(ValueError, match="no parameter"):
        make_baseline("sclip", beta=1.0)


def test_bad_images(clip):
    with pytest.raises(ValueError, match="smaller than the patch size"):
        make_baseline("sclip")(clip, torch.randn(1, 3, 7, 56))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        make_baseline("sclip")(clip, torch.randn(1, 4, 56, 56))


# ---------------------------------------------------------------------------------------------- VFM
def _hf_with_table(vfm, gh, gw, table):
    """A transformers copy configured for the new input size whose positional table is ``table``."""
    model = copy.deepcopy(vfm.model)
    model.config.image_size = gh * vfm.patch_size
    model.embeddings.position_embeddings = torch.nn.Parameter(table)
    model.embeddings.image_size = (gh * vfm.patch_size, gw * vfm.patch_size)
    return model


def test_dino_features_native_equal_transformers():
    vfm = load_vfm(config=tiny_vfm_config("dino"))
    x = torch.randn(2, 3, 32, 32)
    ref = vfm.model(pixel_values=x).last_hidden_state[:, 1:]
    assert (vfm.features(x).reshape(2, 64, -1) - ref).abs().max() < 1e-5


def test_dino_features_use_official_pos_rule():
    vfm = load_vfm(config=tiny_vfm_config("dino"))
    _perturb(vfm.model, 3)
    x = torch.randn(1, 3, 48, 48)                                           # 12x12 grid, native 8x8
    pe = vfm.model.embeddings.position_embeddings[0]
    grid = pe[1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(12.1 / 8, 12.1 / 8), mode="bicubic", align_corners=False)
    table = torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(144, -1)])[None]
    ref = _hf_with_table(vfm, 12, 12, table)(pixel_values=x).last_hidden_state[:, 1:]
    ours = vfm.features(x).reshape(1, 144, -1)
    assert (ours - ref).abs().max() < 1e-5
    hf_rule = vfm.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
    assert (ours - hf_rule).abs().max() > 1e-4                               # transformers' size=(g,g) differs


def test_dinov2_registers_features_equal_transformers():
    vfm = load_vfm(config=tiny_vfm_config("dinov2_reg"))
    _perturb(vfm.model, 4)
    assert vfm.num_prefix_tokens == 5
    x = torch.randn(1, 3, 40, 56)                                           # non-native, non-square
    ref = vfm.model(pixel_values=x).last_hidden_state[:, 5:]
    assert (vfm.features(x).reshape(1, 10 * 14, -1) - ref).abs().max() < 1e-5


def test_vfm_offline_and_bad_input():
    from s2c2seg.models import ModelUnavailableError
    with pytest.raises(ModelUnavailableError, match="facebook/dino-vitb8"):
        load_vfm("dino_vitb8")
    with pytest.raises(ModelUnavailableError, match="facebook/dinov2-with-registers-base"):
        load_vfm("dinov2_vitb14_reg")
    with pytest.raises(ValueError, match="unknown VFM"):
        load_vfm("dino_vitz99")
    vfm = load_vfm(config=tiny_vfm_config("dino"))
    with pytest.raises(ValueError, match="smaller than the patch size"):
        vfm.features(torch.randn(1, 3, 2, 32))


def test_vfm_loads_from_populated_cache_offline(monkeypatch, tmp_path):
    """With the weights in the HF cache, the real loader works offline; DINO's LayerNorm eps is the official 1e-6."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--facebook--dino-vitb8"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    ported = load_vfm(config=dict(tiny_vfm_config("dino"), layer_norm_eps=1e-12))   # as transformers' port
    ported.model.save_pretrained(str(snap))
    vfm = load_vfm("dino_vitb8")
    assert vfm.model_id == "facebook/dino-vitb8" and vfm.patch_size == 4
    assert vfm.model.layernorm.eps == 1e-6 and vfm.model.config.layer_norm_eps == 1e-6
    assert torch.equal(vfm.model.embeddings.position_embeddings, ported.model.embeddings.position_embeddings)
