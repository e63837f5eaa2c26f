"""predict.py against direct re-computations of the anchors' post-processing and of CSS/CSG on the subset."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s2c2seg.bundle import FeatureBundle
from s2c2seg.csg import CSGConfig, fuse
from s2c2seg.css import CSSConfig, select_categories
from s2c2seg.data.protocols import Protocol
from s2c2seg.predict import BundleView, class_scores, clipseg_maps, dense_logits, predict, synonym_max
from s2c2seg.regions import majority_vote
from s2c2seg.slide import slide_boxes


Q2C = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 8, 9])  # 10 classes, synonyms on 0, 2 and 8


def make_bundle(seed=0, hw=(30, 41), resized=(36, 50), crop=24, stride=12, regions=False, q2c=Q2C, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    q = q2c.numel()
    boxes = slide_boxes(*resized, crop, stride)
    dense = 0.2 + spread * torch.randn(boxes.shape[0], q, 3, 3, generator=g) / 3
    maps = torch.rand(q, 9, 12, generator=g).half()
    reg = torch.randint(0, 5, hw, generator=g).int() if regions else None
    return FeatureBundle(dense_logits=dense, crop_boxes=boxes, resized_hw=torch.tensor(resized),
                         image_hw=torch.tensor(hw), global_sim=0.2 + 0.05 * torch.randn(q, generator=g),
                         clipseg_mean=maps.float().mean((1, 2)), clipseg_maps=maps, query_to_class=q2c, regions=reg)


def reference_postprocess(logits_q, q2c, num_classes, logit_scale, prob_thd, area_thd):
    """SCLIP's postprocess_result written out (one-hot synonym max over all C classes, then area_thd, prob_thd)."""
    probs = (logits_q * logit_scale).softmax(0)
    cls_index = F.one_hot(q2c, num_classes).T.view(num_classes, -1, 1, 1).to(probs.dtype)
    seg = (probs.unsqueeze(0) * cls_index).max(1)[0]
    if area_thd is not None:
        pred = F.one_hot(seg.argmax(0), num_classes).to(seg.dtype)
        area = pred[:, :, 1:].sum((0, 1), keepdim=True)
        area = (area > area_thd * area.sum()).to(seg.dtype)
        seg[1:] *= area.transpose(0, -1)
    out = seg.argmax(0)
    out[seg.max(0)[0] < prob_thd] = 0
    return out


def reference_dense(b):
    h, w = b.resized_hw.tolist()
    total = torch.zeros(b.num_queries, h, w)
    count = torch.zeros(1, h, w)
    for i, (y1, y2, x1, x2) in enumerate(b.crop_boxes.tolist()):
        up = F.interpolate(b.dense_logits[i:i + 1], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
        total += F.pad(up, (x1, w - x2, y1, h - y2))
        count[:, y1:y2, x1:x2] += 1
    return F.interpolate((total / count)[None], size=tuple(b.image_hw.tolist()), mode="bilinear",
                         align_corners=False)[0]


def test_dense_logits_and_clipseg_maps():
    b = make_bundle()
    ref = reference_dense(b)
    assert torch.allclose(dense_logits(b), ref, atol=1e-6)
    q = torch.tensor([1, 5, 9])
    assert torch.allclose(dense_logits(b, q), dense_logits(b)[q], atol=1e-6)
    up = F.interpolate(b.clipseg_maps.float()[None], size=(30, 41), mode="bilinear", align_corners=False)[0]
    assert torch.equal(clipseg_maps(b), up) and torch.allclose(clipseg_maps(b, q), up[q], atol=1e-6)
    view = BundleView(b)
    assert torch.equal(view.dense(q), dense_logits(b)[q]) and torch.equal(view.clipseg(q), clipseg_maps(b)[q])
    with pytest.raises(ValueError, match="queries"):
        dense_logits(b, torch.tensor([99]))


def test_synonym_max_and_class_scores():
    v = torch.tensor([1.0, 5.0, 2.0, -1.0, 0.5, 3.0, 7, 8, 9, 10, 11, 12, 0, 13])
    assert synonym_max(v, Q2C, 10).tolist() == [5.0, -1.0, 3.0, 7, 8, 9, 10, 11, 12, 13]
    b = make_bundle()
    s_glob, s_spat = class_scores(b)
    assert torch.equal(s_glob, synonym_max(b.global_sim, Q2C, 10))
    assert torch.equal(s_spat, synonym_max(b.clipseg_mean, Q2C, 10))
    _, s_base = class_scores(b, "baseline", logit_scale=50.0)
    probs = (50.0 * reference_dense(b)).softmax(0)
    ref = torch.stack([probs[Q2C == c].max(0)[0].mean() for c in range(10)])
    assert torch.allclose(s_base, ref, atol=1e-6)
    with pytest.raises(ValueError, match="score_source"):
        class_scores(b, "nope")


@pytest.mark.parametrize("prob_thd,area_thd,scale", [(0.0, None, 40.0), (0.3, None, 40.0), (0.1, 0.1, 65.0),
                                                     (0.0, 0.3, 20.0), (0.5, 0.05, 50.0)])
def test_baseline_equals_anchor_postprocessing(prob_thd, area_thd, scale):
    for seed in range(3):
        b = make_bundle(seed)
        proto = Protocol(logit_scale=scale, prob_thd=prob_thd, area_thd=area_thd)
        got = predict(b, proto, "baseline").label_map
        ref = reference_postprocess(reference_dense(b), Q2C, 10, scale, prob_thd, area_thd)
        assert torch.equal(got, ref)


def test_thresholds_actually_act():
    b = make_bundle(1)
    plain = predict(b, Protocol(), "baseline").label_map
    thd = predict(b, Protocol(prob_thd=0.6), "baseline").label_map
    assert (thd == 0).sum() > (plain == 0).sum()
    area = predict(b, Protocol(area_thd=0.3), "baseline").label_map
    assert area.unique().numel() < plain.unique().numel()


def reference_subset(b, subset, proto, csg):
    """Full-C reference: fused subset queries, −inf elsewhere (on queries), then SCLIP."""
    queries = torch.nonzero(torch.isin(Q2C, subset)).flatten()
    s_glob, s_spat = reference_dense(b)[queries], clipseg_maps(b, queries)
    fused = fuse(s_glob, s_spat, mode=csg.mode, lam=csg.lam, temperature=csg.temperature)
    full = fused.new_full((b.num_queries, *fused.shape[1:]), -math.inf)
    full[queries] = fused
    return reference_postprocess(full, Q2C, 10, proto.logit_scale, proto.prob_thd, proto.area_thd)


@pytest.mark.parametrize("mode", ["category_aware", "uniform", "add", "global_only", "local_only"])
@pytest.mark.parametrize("proto", [Protocol(), Protocol(logit_scale=65.0, prob_thd=0.3, area_thd=0.1)])
def test_s2c2seg_equals_full_vocabulary_reference(mode, proto):
    csg = CSGConfig(mode=mode)
    css = CSSConfig(k_min=3, k_max=5)
    for seed in range(3):
        b = make_bundle(seed)
        s_glob, s_spat = class_scores(b)
        subset = select_categories(s_glob, s_spat, tau=0.3, k_min=3, k_max=5, always_keep=(0,))
        pred = predict(b, proto, "s2c2seg", css=css, csg=csg, background=0)
        assert torch.equal(pred.subset, subset)
        assert torch.equal(pred.label_map, reference_subset(b, subset, proto, csg))
        assert set(pred.label_map.unique().tolist()) <= set(subset.tolist()) | {0}


def test_no_select_and_oracle():
    b = make_bundle(2)
    proto = Protocol(prob_thd=0.2)
    all_c = predict(b, proto, "s2c2seg", select=False)
    assert torch.equal(all_c.subset, torch.arange(10))
    assert torch.equal(all_c.label_map, reference_subset(b, torch.arange(10), proto, CSGConfig()))
    label = torch.full((30, 41), 255, dtype=torch.long)
    label[:10] = 3
    label[10:20] = 7
    o = predict(b, proto, "oracle", label=label, background=0)
    assert o.subset.tolist() == [0, 3, 7]
    assert torch.equal(o.label_map, reference_subset(b, o.subset, proto, CSGConfig()))
    o2 = predict(b, proto, "oracle", label=label, background=0, css=CSSConfig(keep_background=False))
    assert o2.subset.tolist() == [3, 7]
    with pytest.raises(ValueError, match="label"):
        predict(b, proto, "oracle")
    with pytest.raises(ValueError, match="method"):
        predict(b, proto, "bogus")


def test_thresholds_apply_after_subset():
    """prob_thd sees the subset's softmax (more peaked than over all queries), as the brief requires."""
    b = make_bundle(3, spread=0.05)
    proto = Protocol(prob_thd=0.2)
    base = predict(b, proto, "baseline").label_map
    sub = predict(b, proto, "s2c2seg", css=CSSConfig(k_min=2, k_max=2), csg=CSGConfig(mode="global_only"),
                  background=0)
    assert (base == 0).float().mean() > 0.9  # flat logits over 14 queries: everything falls below 0.2
    assert (sub.label_map != 0).any()  # over the 2-3 kept classes the max probability exceeds 0.2


def test_region_vote():
    b = make_bundle(4, regions=True)
    off = predict(b, Protocol(), "baseline")
    on = predict(b, Protocol(vote=True), "baseline")
    assert not off.voted and on.voted
    assert torch.equal(on.label_map, majority_vote(off.label_map, b.regions))
    b.regions = None
    assert not predict(b, Protocol(vote=True), "baseline").voted


def test_score_source_baseline_changes_selection_input():
    b = make_bundle(5)
    p = predict(b, Protocol(), "s2c2seg", score_source="baseline", css=CSSConfig(k_min=2, k_max=3))
    _, s_base = class_scores(b, "baseline", 40.0)
    assert torch.equal(p.s_spat, s_base)


def test_csg_unit_class_fuses_after_the_synonym_max():
    """Hand-computed: class 0 has synonyms (queries 0, 1), class 1 one query; unit="class" takes the synonym max
    of both maps first and normalises w over the 2 classes, unit="query" over the 3 queries."""
    q2c = torch.tensor([0, 0, 1])
    g = torch.tensor([[[0.20, 0.10]], [[0.10, 0.30]], [[0.25, 0.05]]])   # (Q=3, H=1, W=2) dense cosines
    s = torch.tensor([[[0.9, 0.0]], [[0.2, 0.8]], [[0.1, 0.7]]])         # CLIPSeg maps
    boxes = torch.tensor([[0, 1, 0, 2]])
    b = FeatureBundle(dense_logits=g[None], crop_boxes=boxes, resized_hw=torch.tensor([1, 2]),
                      image_hw=torch.tensor([1, 2]), global_sim=torch.tensor([0.3, 0.2, 0.1]),
                      clipseg_mean=s.mean((1, 2)), clipseg_maps=s.half(), query_to_class=q2c)
    from s2c2seg.predict import fuse_subset
    sh = s.half().float()
    view = BundleView(b)
    queries = torch.arange(3)
    # class: G = [[0.2, 0.3], [0.25, 0.05]], S = [[0.9, 0.8], [0.1, 0.7]]; means 0.25, 0.15; T = 0.01
    w = torch.softmax(torch.tensor([0.25, 0.15]) / 0.01, 0)
    fused, units = fuse_subset(view, queries, CSGConfig(unit="class"))
    G = torch.tensor([[[0.2, 0.3]], [[0.25, 0.05]]])
    S = torch.stack([torch.maximum(sh[0], sh[1]), sh[2]])
    torch.testing.assert_close(fused, G + 0.6 * w[:, None, None] * S)
    assert units.tolist() == [0, 1]
    # query: means 0.15, 0.2, 0.15 over the three queries
    wq = torch.softmax(torch.tensor([0.15, 0.2, 0.15]) / 0.01, 0)
    fused_q, units_q = fuse_subset(view, queries, CSGConfig())
    torch.testing.assert_close(fused_q, g + 0.6 * wq[:, None, None] * sh)
    assert units_q.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="unit"):
        CSGConfig(unit="pixel")


def test_view_config_bad_input():
    from s2c2seg.predict import ViewConfig
    with pytest.raises(ValueError, match="query_chunk"):
        ViewConfig(query_chunk=0)
    with pytest.raises(ValueError, match="full_maps_bytes"):
        ViewConfig(full_maps_bytes=-1)
    with pytest.raises(ValueError, match="ViewConfig"):
        BundleView(make_bundle(), config={"query_chunk": 3})


def test_csg_unit_class_equals_query_without_synonyms():
    q2c = torch.arange(6)
    b = make_bundle(1, q2c=q2c)
    proto = Protocol(prob_thd=0.1)
    css = CSSConfig(k_min=2, k_max=3)
    a = predict(b, proto, "s2c2seg", css=css, csg=CSGConfig(unit="class"))
    q = predict(b, proto, "s2c2seg", css=css, csg=CSGConfig(unit="query"))
    assert torch.equal(a.label_map, q.label_map)
