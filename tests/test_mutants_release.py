"""Tests written for mutants that survived ``make mutation`` (docs/mutation.md) in the refinement, the spatial
refinement, the CSG weights and the view's configuration. Each names the mutation it catches; references are
hand values or a plain re-derivation.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from s2c2seg import csg, refine, spatial_refine
from s2c2seg.csg import CSGConfig
from s2c2seg.refine import RefineConfig
from s2c2seg.spatial_refine import RefineWorkspace, SpatialRefineConfig
from s2c2seg.view import BundleView, ViewConfig, class_scores

from test_released import make_bundle  # tests/ is on the path, as for fakes


def test_the_admission_trial_admits_a_query_that_wins_one_low_pixel():
    """Catches ``counts > 0`` -> ``> 1``: query 5 wins exactly one previously low-confidence pixel and is kept;
    query 7 wins none and is dropped."""
    updated, provisional = torch.tensor([2, 5, 7]), torch.tensor([5, 7])
    low = torch.tensor([[True, True], [True, False]])
    winner = torch.tensor([[1, 0], [0, 2]])  # rows of `updated`: the low pixels go to query 5 once, query 2 twice

    def confidence(_fused):
        return torch.ones(2, 2), winner

    kept, known = refine._admit_trial(provisional, updated, None, low, RefineConfig(), confidence)
    assert kept.tolist() == [5] and known[1] is winner


def test_set_iou_of_disjoint_sets_is_zero():
    """Catches the guard ``if sa | sb`` -> ``if sa & sb`` (two disjoint non-empty sets have IoU 0, not 1)."""
    assert refine.set_iou(torch.tensor([1, 2]), torch.tensor([3])) == 0.0
    assert refine.set_iou(torch.tensor([1, 2]), torch.tensor([2, 3])) == pytest.approx(1 / 3)
    assert refine.set_iou(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 1.0


def test_category_weights_read_their_config_and_name_s_glob():
    """Catches the config ignored (``config if ... and False``) and the argument name in the shape error."""
    g = torch.tensor([0.1, 0.3])[:, None, None].expand(2, 2, 3)
    w = csg.category_weights(g, CSGConfig(temperature=0.1))
    e = [math.exp(1.0), math.exp(3.0)]  # softmax([0.1, 0.3] / 0.1) by hand
    torch.testing.assert_close(w, torch.tensor([e[0] / sum(e), e[1] / sum(e)]))
    with pytest.raises(ValueError, match=r"^s_glob must have shape"):
        csg.category_weights(torch.zeros(3, 4))


def test_spatial_refinement_off_returns_the_maps_themselves():
    """Catches ``iterations <= 0`` -> ``< 0`` (with 0 iterations the maps are returned untouched, not copied
    through the work buffers)."""
    image, maps = torch.rand(3, 9, 11), torch.rand(2, 9, 11)
    off = SpatialRefineConfig(iterations=0)
    assert spatial_refine.spatial_refine_many(image, [maps], off)[0] is maps
    assert spatial_refine.spatial_refine(image, maps, off) is maps


def test_image_affinity_resizes_with_align_corners_false():
    """Catches ``align_corners=False`` -> ``True`` in the image's resize to the work size (a plain
    re-derivation: bilinear, half-pixel centres, then the affinities)."""
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(3))
    cfg = SpatialRefineConfig(dilations=(1, 2), max_side=15)  # work size (10, 15)
    want = spatial_refine.affinity(F.interpolate(image[None], size=(10, 15), mode="bilinear",
                                                 align_corners=False)[0], cfg.dilations)
    torch.testing.assert_close(spatial_refine.image_affinity(image, (20, 30), cfg), want, rtol=0, atol=0)


def test_the_workspace_keeps_its_buffers_between_calls_of_one_size():
    """Catches the reuse test inverted (``is None`` -> ``is not None``), ``<`` -> ``<=`` on the channel count and
    the key not kept: a second call of the same size and channels reuses the same memory."""
    ws = RefineWorkspace()
    a = ws.buffers(3, (8, 9), 2)
    b = ws.buffers(3, (8, 9), 2)
    assert a[0].data_ptr() == b[0].data_ptr() and a[1].data_ptr() == b[1].data_ptr()
    c = ws.buffers(2, (8, 9), 2)  # fewer channels: a view of the same buffers
    assert c[0].data_ptr() == a[0].data_ptr() and c[0].shape == (2, 12, 13)
    assert ws.buffers(3, (8, 10), 2)[0].shape == (3, 12, 14)  # another size: new buffers


def test_view_config_bounds():
    """Catches each lower bound moved by one (full_maps_bytes 0, query_chunk 1, subset_cache 1 are valid), ``or``
    -> ``and`` in the type test (a float is refused), and the field name in the error."""
    ViewConfig(full_maps_bytes=0, query_chunk=1, subset_cache=1)
    with pytest.raises(ValueError, match=r"ViewConfig.query_chunk must be an integer >= 1, got 2.5"):
        ViewConfig(query_chunk=2.5)
    with pytest.raises(ValueError, match=r"ViewConfig.subset_cache must be an integer >= 1, got 0"):
        ViewConfig(subset_cache=0)
    with pytest.raises(ValueError, match=r"ViewConfig.full_maps_bytes must be an integer >= 0"):
        ViewConfig(full_maps_bytes=-1)


def test_class_scores_default_logit_scale_is_the_anchors_40():
    """Catches the module function's default ``logit_scale`` moved from 40 (the anchors' value)."""
    b = make_bundle(seed=1)
    default = class_scores(b, "baseline")
    assert torch.equal(default[1], BundleView(b).class_scores("baseline", 40.0)[1])
    assert not torch.equal(default[1], BundleView(b).class_scores("baseline", 41.0)[1])


def test_feedback_signal_share_by_hand():
    """Catches ``total > 0`` -> ``> 1`` (one high pixel is a share too) and ``total + 1e-6`` -> ``- 1e-6``."""
    s = refine.feedback_signal(torch.tensor([1.0]), 1, torch.tensor([2]), 4)
    assert s.tolist()[0:2] == [0.0, 0.0] and s[3] == 0.0
    assert float(s[2]) == pytest.approx(1.0 / (1.0 + 1e-6), rel=0, abs=2e-7)  # float32; 1 / (1 - 1e-6) is 2e-6 off


def test_residual_evidence_edges():
    """Catches ``or`` -> ``and`` in the guard (no low pixel: zeros, not the NaN mean of nothing) and
    ``numel() == 0`` -> ``== 1`` (one entry has its evidence)."""
    local = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3)
    none = torch.zeros(2, 3, dtype=torch.bool)
    assert refine.residual_evidence(local, none, torch.tensor([0, 1])).tolist() == [0.0, 0.0]
    low = torch.tensor([[True, False, False], [False, False, True]])
    assert refine.residual_evidence(local, low, torch.tensor([1])).tolist() == [(6.0 + 11.0) / 2]  # row 1: 6..11


def _paper_bundle():
    return make_bundle(seed=3)


def test_predict_paper_defaults_and_messages():
    """Catches predict_paper's defaults moved (``score_source="clipseg"``, ``select=True``, ``ignore_index=255``),
    the oracle's ignore value not passed on, the single-class oracle subset widened (``numel() == 0`` ->
    ``== 1``), the oracle's ``s_glob`` not None, and the reader named in the missing-source error."""
    import dataclasses as dc

    from s2c2seg.bundle import BundleError
    from s2c2seg.css import CSSConfig
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.paper import predict_paper
    from s2c2seg.predict import predict

    b, proto = _paper_bundle(), get_protocol("voc21", "proxyclip")
    css, csg = CSSConfig(k_min=2, k_max=3), CSGConfig()
    direct = predict_paper(BundleView(b), proto, "s2c2seg", css, csg)
    full = predict(b, proto, "s2c2seg", css=css, csg=csg, score_source="clipseg", select=True)
    assert torch.equal(direct.label_map, full.label_map) and torch.equal(direct.subset, full.subset)
    h, w = (int(v) for v in b.image_hw)
    label = torch.full((h, w), 255, dtype=torch.long)
    label[:3, :3] = 2  # one class present, the rest unlabelled (255, the default ignore value)
    oracle = predict_paper(BundleView(b), proto, "oracle", css, csg, label=label)
    assert oracle.subset.tolist() == [2] and oracle.s_glob is None and oracle.s_spat is None
    label16 = torch.where(label == 255, torch.full_like(label, 65535), label)
    assert predict_paper(BundleView(b), proto, "oracle", css, csg, label=label16,
                         ignore_index=65535).subset.tolist() == [2]
    with pytest.raises(ValueError, match="^label: method='oracle' needs the image's label map$"):
        predict_paper(BundleView(b), proto, "oracle", css, csg)
    lean = dc.replace(b, global_sim=None)
    with pytest.raises(BundleError, match=r"\(method='s2c2seg' with the paper reading reads"):
        predict_paper(BundleView(lean), proto, "s2c2seg", css, csg)
