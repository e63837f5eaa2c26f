"""Guards for the plausible one-line bugs that the mutation run of issue 17 found uncaught: each test names the
bug it catches, and checks against a hand-computed value or a fresh (un-memoised) computation."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from test_released import extended_bundle  # tests/ is on the path, as for fakes

from s2c2seg import csg, refine, released_fusion, spatial_refine
from s2c2seg.css import CSSConfig
from s2c2seg.data.protocols import get_protocol
from s2c2seg.predict import BundleView, predict
from s2c2seg.presets import PRESETS, get_preset

PROTO = get_protocol("voc21", "proxyclip")


def _admit_case(residual_beta: float):
    """Rows 0, 1 tie everywhere (all pixels low-confidence); outsiders ranked 2 > 3 > 4 by composite, but only
    4 has CLIPSeg evidence (left half), so only the residual evidence can bring 4 into the pool."""
    q, h, w = 5, 3, 4
    dense, local = torch.zeros(q, h, w), torch.zeros(q, h, w)
    local[4, :, :2] = 1.0
    g = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.0])
    s = torch.tensor([0.1, 0.1, 0.05, 0.02, 0.0])
    c = torch.tensor([0.2, 0.2, 0.1, 0.05, 0.0])
    fusion = released_fusion.FusionConfig(lam=0.5, guide_weight=0.0)

    def fuse_rows(idx):
        return fusion.fuse(dense[idx], local[idx])

    cfg = refine.RefineConfig(residual_beta=residual_beta, adaptive_admit=False)
    sel = torch.tensor([0, 1])
    return refine.refine_window(sel, fuse_rows(sel), (g, s, c), local, fuse_rows, cfg, (1.0, 1.0, 1.0),
                                k_min=1, logit_scale=40.0)


def test_residual_beta_zero_admits_no_residual_outsider():
    """Bug: ``residual_beta > 0`` as ``>= 0`` (residual admissions with the evidence switched off)."""
    out, _, log = _admit_case(0.0)
    # pool = the 2 best outsiders by composite {2, 3}; neither wins a pixel in the trial: nothing admitted
    assert out.tolist() == [0, 1] and log.admitted == ()
    out, _, log = _admit_case(0.5)  # with the evidence on, 4 joins the pool and wins the left half
    assert out.tolist() == [0, 1, 4] and log.admitted == (4,)


def test_expansion_pool_has_k_entries_hand():
    """Bug: the expansion pool one larger (or smaller) than the selection's size."""
    scores = torch.tensor([0.9, 0.1, 0.8, 0.7, 0.6, 0.5])
    assert refine.expansion_pool(scores, torch.tensor([0, 1]), 2).tolist() == [2, 3]
    assert refine.expansion_pool(scores, torch.tensor([0, 1]), 9).tolist() == [2, 3, 4, 5]  # all outsiders


@pytest.mark.parametrize("hw, max_side, expect", [
    ((300, 500), 256, (154, 256)),   # scale 500/256 = 1.953125: 153.6 rounds to 154 (floor would give 153)
    ((500, 300), 256, (256, 154)),
    ((301, 299), 100, (100, 99)),    # 299/3.01 = 99.33 -> 99
    ((100, 37), 100, (100, 37)),     # at the cap: unchanged
    ((99, 37), 100, (99, 37)),
])
def test_spatial_refinement_work_size_hand(hw, max_side, expect):
    """Bugs: ``max_side`` off by one, the work size floored instead of rounded."""
    cfg = spatial_refine.SpatialRefineConfig(iterations=1, max_side=max_side)
    assert spatial_refine.work_size(hw, cfg) == expect


def test_uniform_fusion_weight_is_one_over_k():
    """Bug: the uniform weight 1/W (or 1/H) instead of 1/K: K = 3, H = 4, W = 5 tell them apart."""
    s_glob = torch.rand(3, 4, 5)
    w = csg.category_weights(s_glob, mode="uniform")
    torch.testing.assert_close(w.reshape(-1), torch.full((3,), 1 / 3))


def test_released_presets_run_in_the_release_precision():
    """Bug: a released preset losing ``precision="auto"`` (the release runs CLIP + DINO in fp16 on a GPU)."""
    for name in PRESETS:
        expect = "fp32" if name == "paper" else "auto"
        for dataset in ("voc21", "ade20k", "cityscapes", "pc459"):
            assert get_preset(name, dataset).encode.precision == expect, (name, dataset)


@pytest.mark.parametrize("text, value", [("1", True), ("0", False), ("true", True), ("False", False),
                                         ("yes", True), ("no", False), ("on", True), ("off", False)])
def test_boolean_keys_parse_as_written(text, value):
    """Bug: ``"1"`` / ``"0"`` (or another spelling) no longer parsed as a boolean from a sweep file or --set."""
    preset = get_preset("released++", "voc21", **{"refine.adaptive_admit": not value})
    assert preset.override({"refine.adaptive_admit": text}).refine.adaptive_admit is value
    assert get_preset("released++", "voc21", **{"refine.admit_trial": text}).refine.admit_trial is value


def test_boolean_keys_refuse_other_text():
    with pytest.raises(ValueError, match="boolean"):
        get_preset("released++", "voc21", **{"refine.adaptive_admit": "2"})


def test_selection_memo_follows_the_rerank_weights():
    """Bug: the per-window selection memo keyed without the rerank weights (a k_max cut reranks by them)."""
    base = get_preset("released", "voc21", **{"select.k_min": 3, "select.k_max": 4})
    other = base.override({"select.rerank": (0.1, 0.1, 0.8)})
    differ = 0
    for seed in (0, 2, 5):
        b = extended_bundle(seed)
        view = BundleView(b)
        first = predict(view, PROTO, "s2c2seg", preset=base)
        memo = predict(view, PROTO, "s2c2seg", preset=other)
        fresh = predict(b, PROTO, "s2c2seg", preset=other)
        assert memo.meta["selected_per_window"] == fresh.meta["selected_per_window"]
        assert torch.equal(memo.label_map, fresh.label_map)
        differ += first.meta["selected_per_window"] != fresh.meta["selected_per_window"]
    assert differ  # the weights change the cut on some seed: a stale selection would show


def test_paper_selection_memo_follows_stage2_pool():
    """Bug: the paper reading's selection memo keyed without ``stage2_pool``."""
    b = extended_bundle(0)
    view = BundleView(b)
    a = CSSConfig(tau=0.1, k_min=6, k_max=8)  # |C_init| <= 3 < K: the two pools differ
    c = dataclasses.replace(a, stage2_pool="init")
    first = view.select(a, "clipseg", 40.0, ())
    memo = view.select(c, "clipseg", 40.0, ())
    fresh = BundleView(b).select(c, "clipseg", 40.0, ())
    assert torch.equal(memo, fresh) and not torch.equal(first, fresh)
    assert first.numel() == 6 and fresh.numel() <= 3


def test_paper_memos_follow_the_logit_scale_of_the_baseline_score():
    """Bugs: the class-score or selection memo keyed without the logit scale (``score_source="baseline"``
    reads the baseline's softmax maps at that scale)."""
    css = CSSConfig(tau=0.2, k_min=2, k_max=3)
    changed = 0
    for seed in (0, 2, 5):
        b = extended_bundle(seed)
        b.dense_logits = b.dense_logits * 4  # spread the logits so that the scale changes the softmax means
        view = BundleView(b)
        s40 = view.class_scores("baseline", 40.0)[1].clone()
        sel40 = view.select(css, "baseline", 40.0, ())
        s2 = view.class_scores("baseline", 2.0)[1]
        sel2 = view.select(css, "baseline", 2.0, ())
        fresh = BundleView(b)
        torch.testing.assert_close(s2, fresh.class_scores("baseline", 2.0)[1], rtol=0, atol=0)
        assert torch.equal(sel2, fresh.select(css, "baseline", 2.0, ()))
        assert not torch.allclose(s40, s2)
        changed += not torch.equal(sel40, sel2)
    assert changed


# ---------------------------------------------------------------------------------------------- memo keys (issue 17.4)
def test_the_affinity_memo_key_holds_exactly_what_the_affinities_read():
    """``affinity_config()`` (the refinement-weights memo key) drops iterations / temperature, which the
    affinities do not read, and keeps dilations and max_side, which they do (a key without them goes stale)."""
    from s2c2seg.spatial_refine import SpatialRefineConfig, image_affinity

    image = torch.rand(3, 23, 31, generator=torch.Generator().manual_seed(4))
    cfg = SpatialRefineConfig(iterations=3, temperature=7.0, dilations=(1, 3), max_side=17)
    assert cfg.affinity_config() == SpatialRefineConfig(iterations=0, dilations=(1, 3), max_side=17)
    torch.testing.assert_close(image_affinity(image, (23, 31), cfg),
                               image_affinity(image, (23, 31), cfg.affinity_config()), rtol=0, atol=0)
    for other in (SpatialRefineConfig(dilations=(1, 2), max_side=17), SpatialRefineConfig(dilations=(1, 3),
                                                                                          max_side=16)):
        assert other.affinity_config() != cfg.affinity_config()
        assert not torch.equal(image_affinity(image, (23, 31), other), image_affinity(image, (23, 31), cfg))


def test_memoised_results_are_new_objects_and_spatial_refine_returns_its_own_maps():
    """The image memo keeps copies without the window rows (the fresh results keep theirs), and the refinement
    workspace's buffers never leave ``spatial_refine_many`` (a later call does not overwrite earlier results)."""
    from s2c2seg.released import ReleasedView
    from s2c2seg.spatial_refine import RefineWorkspace, SpatialRefineConfig, spatial_refine_many

    b = extended_bundle(0)
    view = ReleasedView(b)
    preset = get_preset("released", "voc21")
    fresh = view.windows(preset, 40.0)
    memo, _, _ = view.image(preset, 40.0)
    assert all(r.fused.shape[0] == 0 for r in memo) and all(r.fused.shape[0] > 0 for r in fresh)
    ws, cfg = RefineWorkspace(), SpatialRefineConfig(iterations=2, dilations=(1, 2))
    image = torch.rand(3, 12, 14, generator=torch.Generator().manual_seed(1))
    first = spatial_refine_many(image, [torch.rand(2, 12, 14, generator=torch.Generator().manual_seed(2))], cfg,
                                workspace=ws)[0]
    kept = first.clone()
    spatial_refine_many(image, [torch.rand(2, 12, 14, generator=torch.Generator().manual_seed(3))], cfg, workspace=ws)
    assert torch.equal(first, kept)


def test_a_bundle_view_keeps_its_own_released_memo():
    """No module-global registry: each BundleView holds its released memo, a bare bundle gets a fresh one."""
    from s2c2seg.released import released_view

    b = extended_bundle(2)
    v1, v2 = BundleView(b), BundleView(b)
    assert released_view(v1) is released_view(v1) and released_view(v1) is not released_view(v2)
    assert released_view(b) is not released_view(b)
