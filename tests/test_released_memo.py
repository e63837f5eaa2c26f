"""The released downstream's per-view memo and its cheaper steps: a memo hit is the fresh prediction, a changed
key is never served a stale entry, and each rewritten step gives the numbers of a plain re-derivation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_hotspots import reference_propagate  # tests/ is on the path, as for fakes
from test_released import make_bundle

from s2c2seg import released, spatial_refine
from s2c2seg.data.protocols import get_protocol
from s2c2seg.predict import BundleView, predict
from s2c2seg.presets import get_preset
from s2c2seg.refine import residual_evidence

PROTO = get_protocol("voc21", "proxyclip")

STEPS = [  # each applied to released++ on VOC21 in turn, on ONE view: consecutive settings differ in that key
    {}, {"score.global_score": "patch_mean"}, {"score.alpha": "sigmoid"}, {"select.tau": 0.6},
    {"select.k_min": 3, "select.k_max": 5}, {"select.k_min": 3, "select.k_max": 6},
    {"select.k_min": 2, "select.k_max": 6}, {"select.k_max": 7, "select.rerank": "unweighted"},
    {"select.conf_weight": 0.5}, {"select.scope": "image"}, {"refine.t_max": 0},
    {"refine.t_max": 0, "select.unit": "class"}, {"fusion.lam": 0.4}, {"fusion.guide_weight": 0.0},
    {"fusion.fill": -1e6}, {"fusion.form": "paper"}, {"fusion.form": "paper", "fusion.paper.mode": "uniform"},
    {"fusion.form": "paper", "fusion.paper.lam": 0.2}, {"fusion.form": "paper", "fusion.paper.temperature": 0.1},
    {"refine.t_max": 2}, {"refine.t_max": 2, "refine.delta": 0.9}, {"refine.beta": 3.0},
    {"refine.theta_high": 0.3}, {"refine.residual_beta": 0.0}, {"refine.admit_cap": 1},
    {"refine.admit_trial": False}, {"refine.adaptive_admit": False}, {"post.otsu_c": None},
    {"post.spatial.iterations": 1}, {"post.spatial.temperature": None}, {"post.spatial.dilations": (1, 2)},
    {"post.spatial.max_side": 16}, {},
]
"""Every downstream key of the preset is varied at least once (``encode.*`` changes the bundle, not this)."""
UNSEEN = {"refine.delta", "fusion.paper.unit"}
"""Keys whose change leaves this small bundle's prediction as it was (the test cannot show them stale);
``fusion.paper.unit`` is read by the paper preset only."""


def _same(a, b) -> bool:
    return (torch.equal(a.label_map, b.label_map) and torch.equal(a.logits, b.logits)
            and a.meta == b.meta and torch.equal(a.subset, b.subset))


def test_steps_vary_every_downstream_key():
    keys = {k for k in get_preset("released++", "voc21").keys() if not k.startswith("encode.")}
    assert keys - UNSEEN <= {k for step in STEPS for k in step}


@pytest.mark.parametrize("seed", [4, 7])
def test_a_shared_view_gives_the_fresh_prediction_whichever_key_changes(seed):
    bundle = make_bundle(seed)
    view = BundleView(bundle)
    base = get_preset("released++", "voc21")
    previous, changed = None, 0
    for step in STEPS:
        preset = base.override(step)
        memo = predict(view, PROTO, "s2c2seg", preset=preset, return_logits=True)
        fresh = predict(BundleView(bundle), PROTO, "s2c2seg", preset=preset, return_logits=True)
        assert _same(memo, fresh), step
        changed += previous is not None and not _same(memo, previous)
        previous = memo
    assert changed >= len(STEPS) - 1 - len(UNSEEN)  # each step changes the prediction: a stale entry would show
    scale = dataclasses.replace(PROTO, logit_scale=55.0)  # the logit scale is part of the image key
    memo = predict(view, scale, "s2c2seg", preset=base, return_logits=True)
    assert _same(memo, predict(bundle, scale, "s2c2seg", preset=base, return_logits=True))
    assert not _same(memo, predict(view, PROTO, "s2c2seg", preset=base, return_logits=True))


def test_the_image_memo_hits_for_a_post_setting_and_keeps_a_bounded_number(monkeypatch):
    calls = []
    windows = released.ReleasedView.windows
    monkeypatch.setattr(released.ReleasedView, "windows", lambda self, *a: calls.append(1) or windows(self, *a))
    bundle = make_bundle(5)
    view = BundleView(bundle)
    base = get_preset("released++", "voc21")
    lams = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert len(lams) > released.IMAGE_MEMO
    for lam in lams[:2]:
        predict(view, PROTO, "s2c2seg", preset=base.override({"fusion.lam": lam}))
    for otsu in (0.3, None):  # post.* only: the assembled image of lam 0.1 is reused
        preset = base.override({"fusion.lam": lams[0], "post.otsu_c": otsu, "post.spatial.iterations": 1})
        assert _same(predict(view, PROTO, "s2c2seg", preset=preset, return_logits=True),
                     predict(bundle, PROTO, "s2c2seg", preset=preset, return_logits=True))
    assert len(calls) == 2 + 2  # the two fresh predictions computed theirs; the shared view did not
    for lam in lams:
        predict(view, PROTO, "s2c2seg", preset=base.override({"fusion.lam": lam}))
    assert len(released.released_view(view)._images) == released.IMAGE_MEMO
    assert len(calls) == 4 + len(lams) - 2  # lam 0.1 and 0.2 were still kept
    predict(view, PROTO, "s2c2seg", preset=base.override({"fusion.lam": lams[0]}))  # dropped: recomputed
    assert len(calls) == 4 + len(lams) - 2 + 1


def test_propagate_in_bands_is_the_whole_image_sum(monkeypatch):
    g = torch.Generator().manual_seed(11)
    maps, dil = torch.rand(3, 9, 11, generator=g), (1, 2, 4, 12)
    weights = torch.rand(8 * len(dil), 9, 11, generator=g)
    whole = spatial_refine.propagate(maps, weights, dil)
    monkeypatch.setattr(spatial_refine, "BAND_BYTES", 4 * 3 * 11 * 2)  # 2 rows per band, the last one 1
    banded = spatial_refine.propagate(maps, weights, dil)
    assert torch.equal(banded, whole)
    torch.testing.assert_close(banded.double(), reference_propagate(maps, weights, dil), rtol=1e-6, atol=1e-6)


def test_spatial_refine_iterates_the_reference_and_refines_stacks_independently(monkeypatch):
    g = torch.Generator().manual_seed(12)
    image, a, b = torch.randn(3, 10, 13, generator=g), torch.rand(2, 10, 13, generator=g), torch.rand(3, 10, 13,
                                                                                                        generator=g)
    monkeypatch.setattr(spatial_refine, "BAND_BYTES", 4 * 5 * 13 * 3)  # several bands
    for cfg in (spatial_refine.SpatialRefineConfig(iterations=3, dilations=(1, 3)),
                spatial_refine.SpatialRefineConfig(iterations=2, dilations=(1, 2), max_side=8)):  # capped: 6 x 8
        work = spatial_refine.work_size((10, 13), cfg)
        weights = spatial_refine.image_affinity(image, (10, 13), cfg).double()
        expect = F.interpolate(a[None], size=work, mode="bilinear", align_corners=False)[0].double()
        for _ in range(cfg.iterations):
            expect = reference_propagate(expect, weights, cfg.dilations)
        expect = F.interpolate(expect[None], size=(10, 13), mode="bilinear", align_corners=False)[0]
        alone = spatial_refine.spatial_refine(image, a, cfg)
        torch.testing.assert_close(alone.double(), expect, rtol=1e-6, atol=1e-7)
        both = spatial_refine.spatial_refine_many(image, [a, b], cfg)
        assert torch.equal(both[0], alone) and torch.equal(both[1], spatial_refine.spatial_refine(image, b, cfg))
    with pytest.raises(ValueError, match="every stack"):
        spatial_refine.spatial_refine_many(image, [a, b[:, :5]], cfg)


def test_residual_evidence_is_the_mean_over_the_low_pixels():
    g = torch.Generator().manual_seed(13)
    local, low = torch.rand(6, 7, 9, generator=g), torch.rand(7, 9, generator=g) > 0.6
    entries = torch.tensor([1, 4, 5])
    f = residual_evidence(local, low, entries)
    m, mask = local.double().numpy(), low.numpy()
    expect = [np.mean([m[e, y, x] for y in range(7) for x in range(9) if mask[y, x]]) for e in entries.tolist()]
    torch.testing.assert_close(f.double(), torch.tensor(expect, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    assert torch.equal(f, local[entries][:, low].mean(dim=1))  # the same float32 numbers as the gather of both


def test_assemble_is_the_window_scatter_average():
    b = make_bundle(6)
    g = torch.Generator().manual_seed(14)
    ph, pw = b.window_size()
    rows, n_rows, fill = [], 5, -1e9
    for n in range(b.crop_boxes.shape[0]):  # each window its own selection, 1 to 3 of the 5 rows
        sel = torch.sort(torch.randperm(n_rows, generator=g)[:1 + n % 3])[0]
        rows.append((sel, torch.randn(sel.numel(), ph, pw, generator=g)))
    rh, rw = b.resized_hw.tolist()
    top, _, left, _ = b.window_pad.tolist()
    total, count = np.zeros((n_rows, rh, rw), np.float32), np.zeros((1, rh, rw), np.float32)
    for (pos, fused), (y1, y2, x1, x2) in zip(rows, b.crop_boxes.tolist()):
        window = np.full((n_rows, ph, pw), fill, np.float32)
        window[pos.numpy()] = fused.numpy()
        total[:, y1:y2, x1:x2] += window[:, top:top + y2 - y1, left:left + x2 - x1]
        count[:, y1:y2, x1:x2] += 1
    expect = F.interpolate(torch.from_numpy(total / count)[None], size=b.image_hw.tolist(), mode="bilinear",
                           align_corners=False)[0]
    assert torch.equal(released.assemble(rows, n_rows, b, fill), expect)


def test_a_reused_workspace_gives_the_numbers_of_fresh_buffers():
    g = torch.Generator().manual_seed(15)
    ws = spatial_refine.RefineWorkspace()
    # channel counts up and down, another size, and a padded size equal to the first one's with another margin
    for c, hw, dil in [(5, (12, 15), (1, 2)), (2, (12, 15), (1, 2)), (7, (12, 15), (1, 2)), (3, (8, 9), (1, 2)),
                       (4, (12, 15), (1, 2)), (4, (10, 13), (1, 3))]:  # the last: 16 x 19 padded as the first
        cfg = spatial_refine.SpatialRefineConfig(iterations=2, dilations=dil)
        image, maps = torch.randn(3, *hw, generator=g), torch.rand(c, *hw, generator=g)
        reused = spatial_refine.spatial_refine_many(image, [maps[:1], maps[1:]], cfg, workspace=ws)
        fresh = spatial_refine.spatial_refine_many(image, [maps[:1], maps[1:]], cfg)
        assert all(torch.equal(a, b) for a, b in zip(reused, fresh)), (c, hw, dil)


def test_released_downstream_benchmark_runs_both_codes_and_says_random_tensors(monkeypatch, capsys, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import released_downstream

    out = released_downstream.main(["--points", "2", "--no-per-image", "--before", str(root), "--out-dir",
                                    str(tmp_path), "--threads", str(torch.get_num_threads())])  # keeps the threads
    assert out["points"] == 2 and out["same_labels"] == 2  # this checkout against itself: the same label maps
    assert all(len(t["shared"]) == len(t["fresh"]) == 2 for t in out["times"].values()) and len(out["times"]) == 2
    text = capsys.readouterr().out
    assert "RANDOM-TENSOR inputs" in text and "speed-up before / this code" in text
    with pytest.raises(ValueError, match="--before"):
        released_downstream.load_package(root / "docs")
