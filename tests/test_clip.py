"""CLIP loading (random configs, fail-fast offline), positional-embedding interpolation, shared trunk,
global embedding."""
import math

import pytest
import torch
import torch.nn.functional as F

from s2c2seg.models import ModelUnavailableError, load_clip, tiny_clip_config
from s2c2seg.models.clip import (PosEmbedRule, embed_tokens, global_from_tokens, grid_size, interpolate_pos_embed,
                                 run_blocks)


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny", config=tiny_clip_config())


def test_random_handle_fields(clip):
    assert clip.pretrained == "random"
    assert clip.patch_size == 8 and clip.num_layers == 3 and clip.embed_dim == 32
    assert clip.model_name.startswith("custom-") and clip.weights_id.startswith("random:")
    assert not any(p.requires_grad for p in clip.model.parameters())
    again = load_clip("tiny", config=tiny_clip_config())
    assert torch.equal(again.model.visual.proj, clip.model.visual.proj)        # seeded: reproducible
    other = load_clip("tiny", config=tiny_clip_config(), seed=1)
    assert not torch.equal(other.model.visual.proj, clip.model.visual.proj)
    assert other.weights_id != clip.weights_id


def test_quickgelu_in_tiny_config(clip):
    from open_clip.transformer import QuickGELU
    assert isinstance(clip.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_global_equals_encode_image_at_native_size(clip):
    x = torch.randn(2, 3, 56, 56)
    v = clip.visual
    g = global_from_tokens(v, run_blocks(v, embed_tokens(v, x), 0, clip.num_layers - 1))
    ref = clip.model.encode_image(x, normalize=True)
    assert torch.allclose(g, ref, atol=1e-6)


def test_pos_embed_native_unchanged():
    pe = torch.randn(1 + 49, 16)
    assert interpolate_pos_embed(pe, (7, 7)) is pe


def test_pos_embed_rule_scale_factor_not_size():
    g0, dim = 7, 16
    pe = torch.randn(1 + g0 * g0, dim)
    for gh, gw in [(10, 10), (5, 12), (3, 3)]:
        out = interpolate_pos_embed(pe, (gh, gw))
        grid = pe[1:].reshape(1, g0, g0, dim).permute(0, 3, 1, 2)
        ref = F.interpolate(grid, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0), mode="bicubic",
                            align_corners=False)
        ref = ref.permute(0, 2, 3, 1).reshape(gh * gw, dim)
        assert out.shape == (1 + gh * gw, dim)
        assert torch.equal(out[0], pe[0])                                     # CLS position kept
        assert torch.allclose(out[1:], ref, atol=1e-6)
        by_size = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        by_size = by_size.permute(0, 2, 3, 1).reshape(gh * gw, dim)
        assert (out[1:] - by_size).abs().max() > 1e-3                         # the rule matters


def test_pos_embed_batched_layout_and_size_rule():
    pe = torch.randn(1, 1 + 49, 8)
    out = interpolate_pos_embed(pe, (9, 4))
    assert out.shape == (1, 1 + 36, 8)
    size_rule = interpolate_pos_embed(pe, (9, 4), rule=PosEmbedRule(offset=0.0, antialias=True))
    assert size_rule.shape == out.shape


def test_embed_tokens_non_square_matches_model_with_resized_table(clip):
    """Non-square input: the model's own forward, with its table replaced by the rule's output, agrees."""
    import copy
    x = torch.randn(1, 3, 40, 96)                                             # 5 x 12 grid
    v = clip.visual
    ours = embed_tokens(v, x)
    ref_model = copy.deepcopy(clip.model)
    g0 = 7
    grid = v.positional_embedding[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(5.1 / 7, 12.1 / 7), mode="bicubic", align_corners=False)
    table = torch.cat([v.positional_embedding[:1], grid.permute(0, 2, 3, 1).reshape(60, -1)])
    ref_model.visual.positional_embedding = torch.nn.Parameter(table)
    assert torch.allclose(ours, ref_model.visual._embeds(x), atol=1e-6)


def test_grid_and_bad_images(clip):
    assert grid_size(16, (224, 336)) == (14, 21)
    assert grid_size(16, (230, 239)) == (14, 14)                              # remainder ignored (conv)
    with pytest.raises(ValueError, match="smaller than the patch size"):
        embed_tokens(clip.visual, torch.randn(1, 3, 4, 64))
    with pytest.raises(ValueError, match="images"):
        embed_tokens(clip.visual, torch.randn(3, 56, 56))
    with pytest.raises(ValueError, match="images"):
        embed_tokens(clip.visual, torch.zeros(1, 3, 56, 56, dtype=torch.uint8))


def test_offline_fails_naming_model():
    with pytest.raises(ModelUnavailableError) as err:
        load_clip()
    msg = str(err.value)
    assert "ViT-B-16/openai" in msg and "HF_HOME" in msg and "network" in msg
    with pytest.raises(ModelUnavailableError, match="ViT-B-16-quickgelu/metaclip_fullcc"):
        load_clip("ViT-B-16-quickgelu", "metaclip_fullcc")


def test_unreachable_host_fails_without_offline_flag(monkeypatch, tmp_path):
    """Without HF_HUB_OFFLINE the loader probes the hub host and gives up at once when it cannot connect."""
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")
    with pytest.raises(ModelUnavailableError, match="unreachable") as err:
        load_clip("ViT-B-16", "openai")
    assert "ViT-B-16/openai" in str(err.value)


def test_bad_names():
    with pytest.raises(ValueError, match="not an open_clip model"):
        load_clip("ViT-Nope-99")
    with pytest.raises(ValueError, match="neither an open_clip tag"):
        load_clip("ViT-B-16", "no_such_tag")
    with pytest.raises(ValueError, match="config"):
        load_clip(config={"embed_dim": 8})


def test_builtin_config_name_kept():
    from s2c2seg.models.clip import builtin_clip_config
    cfg = builtin_clip_config("ViT-B-16")
    assert cfg["quick_gelu"] is True and cfg["vision_cfg"]["width"] == 768
    assert math.isclose(cfg["embed_dim"], 512)


@pytest.mark.parametrize("name,tag,quick", [("ViT-B-16", "openai", True),
                                            ("ViT-B-16-quickgelu", "metaclip_fullcc", True),
                                            ("ViT-B-16", "laion2b_s34b_b88k", False)])
def test_real_load_uses_the_tags_activation(monkeypatch, name, tag, quick):
    """OpenAI / MetaCLIP weights are QuickGELU: the loader asks open_clip for it (open_clip only warns)."""
    import open_clip
    import s2c2seg.models.clip as C
    seen = {}
    tiny = load_clip("tiny", config=tiny_clip_config()).model

    def fake_create(model_name, pretrained=None, **kw):
        seen.update(kw, model_name=model_name, pretrained=pretrained)
        return tiny
    monkeypatch.setattr(C, "_resolve_tag", lambda model_id, cfg, probe: f"/cache/{model_id}.safetensors")
    monkeypatch.setattr(open_clip, "create_model", fake_create)
    h = load_clip(name, tag)
    assert seen["force_quick_gelu"] is quick and seen["model_name"] == name
    assert seen["pretrained"] == f"/cache/{name}/{tag}.safetensors"
    assert h.pretrained == tag and h.weights_id == f"{name}/{tag}" and h.mean == C.OPENAI_MEAN


def _bicubic_reference_f64(pe: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """The offset rule written out in float64: grid (1, D, g0, g0) -> bicubic scale_factor (g + 0.1) / g0."""
    g0 = int(round((pe.shape[0] - 1) ** 0.5))
    grid = pe[1:].double().reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0), mode="bicubic", align_corners=False)
    return ref.permute(0, 2, 3, 1).reshape(gh * gw, -1)


def test_pos_embed_interpolates_in_the_tables_dtype():
    # issue 11 item 6: a float64 table must not be interpolated in float32 (that leaves 2e-9..8e-9 errors)
    torch.manual_seed(0)
    pe = torch.randn(1 + 49, 16, dtype=torch.float64)
    out = interpolate_pos_embed(pe, (10, 13))
    assert out.dtype == torch.float64
    assert (out[1:] - _bicubic_reference_f64(pe, 10, 13)).abs().max() < 1e-14


def test_vfm_pos_embed_interpolates_in_float64():
    from s2c2seg.models.vfm import DINO_RULE, load_vfm, tiny_vfm_config

    vfm = load_vfm("dino", config=tiny_vfm_config("dino"))
    vfm.model.double()
    table = vfm.model.embeddings.position_embeddings[0]                       # (1 + 64, C), native grid 8 x 8
    out = interpolate_pos_embed(vfm.model.embeddings.position_embeddings, (11, 9), rule=DINO_RULE)
    assert out.dtype == torch.float64
    assert (out[0, 1:] - _bicubic_reference_f64(table, 11, 9)).abs().max() < 1e-14
