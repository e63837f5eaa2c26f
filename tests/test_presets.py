"""Presets: the 8 datasets' operating points against the facts file's table, overrides, records, paper = today."""
from __future__ import annotations

import json

import pytest
import torch

from s2c2seg.csg import CSGConfig
from s2c2seg.css import CSSConfig
from s2c2seg.data.protocols import get_protocol
from s2c2seg.predict import predict
from s2c2seg.presets import PRESETS, extension_note, get_preset, preset_keys

# The table of /work/shared/reference/s2c2seg_released.md section 4, typed in (facts-file dataset names):
# run | dataset | tau | lam | t_max | global | rerank | local_text | res_beta | adapt_admit | SR (it, T) | Otsu C
# | prob_thd
FACTS = """
conf | voc20   | 0.3 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0
conf | voc21   | 0.4 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0.2
conf | city    | 0.6 | 0.08 | 0 | patch_mean | 0.72,0.08,0.2 | plain    | 0   | no  | off    | off  | 0
conf | ade150  | 0.4 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0
conf | ctx59   | 0.4 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0
conf | ctx60   | 0.3 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0.15
conf | cocoobj | 0.4 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0.25
conf | stuff   | 0.3 | 0.15 | 0 | patch_mean | 0.65,0.15,0.2 | plain    | 0   | no  | off    | off  | 0
jour | voc20   | 0.3 | 0.10 | 1 | cls        | 0.70,0.10,0.2 | plain    | 0.5 | yes | 3, 100 | off  | 0
jour | voc21   | 0.4 | 0.15 | 1 | cls        | 0.65,0.15,0.2 | plain    | 0.5 | yes | 3, 100 | 0.5  | 0.2
jour | city    | 0.6 | 0.08 | 1 | cls        | 0.72,0.08,0.2 | template | 0.5 | yes | off    | off  | 0
jour | ade150  | 0.4 | 0.10 | 1 | cls        | 0.70,0.10,0.2 | template | 0.5 | yes | 3, 100 | off  | 0
jour | ctx59   | 0.4 | 0.15 | 1 | cls        | 0.65,0.15,0.2 | plain    | 0.5 | yes | 3, 100 | off  | 0
jour | ctx60   | 0.4 | 0.15 | 1 | cls        | 0.65,0.15,0.2 | plain    | 0.5 | yes | 3, 100 | 0.35 | 0.15
jour | cocoobj | 0.4 | 0.15 | 1 | cls        | 0.65,0.15,0.2 | plain    | 0.5 | yes | 3, 100 | 0.5  | 0.25
jour | stuff   | 0.3 | 0.12 | 1 | cls        | 0.68,0.12,0.2 | plain    | 0.5 | yes | 3, 100 | off  | 0
"""
OURS = {"voc20": "voc20", "voc21": "voc21", "city": "cityscapes", "ade150": "ade20k", "ctx59": "context59",
        "ctx60": "context60", "cocoobj": "coco_object", "stuff": "coco_stuff164k"}
RESIZE = {"city": 448, "ade150": 448}  # the rest 336; crop/stride 336/112 except Cityscapes 224/112


def facts_rows():
    for line in FACTS.strip().splitlines():
        yield [c.strip() for c in line.split("|")]


@pytest.mark.parametrize("row", list(facts_rows()), ids=lambda r: f"{r[0]}-{r[1]}")
def test_operating_points_match_the_facts_table(row):
    run, ds, tau, lam, t_max, glob, rerank, text, res_beta, adapt, sr, otsu, prob_thd = row
    preset = get_preset("released" if run == "conf" else "released++", OURS[ds])
    assert preset.select.tau == float(tau)
    assert preset.fusion.lam == float(lam)
    assert preset.refine.t_max == int(t_max)
    assert preset.score.global_score == glob
    assert preset.select.weights(preset.fusion.lam) == pytest.approx(tuple(float(w) for w in rerank.split(",")))
    assert preset.encode.local_text == text
    assert preset.refine.residual_beta == float(res_beta)
    assert preset.refine.adaptive_admit == (adapt == "yes")
    if sr == "off":
        assert preset.post.spatial.iterations == 0
    else:
        it, temp = (float(v) for v in sr.split(","))
        assert (preset.post.spatial.iterations, preset.post.spatial.temperature) == (it, temp)
    assert preset.post.otsu_c == (None if otsu == "off" else float(otsu))
    # shared defaults of every run: k_min 6, k_max None, guide 0.07, the −1e9 fill
    assert (preset.select.k_min, preset.select.k_max, preset.fusion.guide_weight,
            preset.fusion.fill) == (6, None, 0.07, -1e9)
    proto = get_protocol(OURS[ds], "proxyclip")  # prob_thd, resize and window are the protocol's
    assert proto.prob_thd == float(prob_thd) and proto.logit_scale == 40.0
    assert proto.short_side == RESIZE.get(ds, 336)
    assert (proto.crop, proto.stride) == ((224, 112) if ds == "city" else (336, 112))


def test_unknown_names_raise_naming_the_known():
    with pytest.raises(ValueError, match="known: \\['paper'"):
        get_preset("released+", "voc21")
    no_point = get_preset("released", "ade847")  # no published operating point: the release's config defaults
    assert (no_point.select.tau, no_point.fusion.lam) == (0.3, 0.15)  # models/config.py: tau 0.3, lambda 0.15
    assert "none published for 'ade847'" in no_point.to_json()["operating_point"]
    assert get_preset("released++", "sim_voc21").post.otsu_c == 0.5  # a simulated VOC21 takes VOC21's point
    with pytest.raises(ValueError, match="select.tau"):
        get_preset("released", "voc21", **{"select.taus": 0.3})
    with pytest.raises(ValueError, match="css.tau"):
        get_preset("paper", "voc21", **{"select.tau": 0.3})  # the paper preset has css / csg sections
    with pytest.raises(ValueError, match="tau"):
        get_preset("released", "voc21", **{"select.tau": 1.5})


def test_overrides_and_keys():
    keys = preset_keys("released++")
    for k in ("select.tau", "fusion.lam", "fusion.guide_weight", "select.rerank", "select.k_max", "refine.t_max",
              "refine.theta_high", "refine.admit_cap", "post.otsu_c", "post.spatial.iterations", "encode.local_text"):
        assert k in keys
    p = get_preset("released", "voc21", **{"select.tau": "0.5", "select.k_max": "10", "select.k_min": 8,
                                            "refine.admit_trial": "false", "post.spatial.dilations": "1,2"})
    assert (p.select.tau, p.select.k_max, p.select.k_min, p.refine.admit_trial) == (0.5, 10, 8, False)
    assert p.post.spatial.dilations == (1, 2)
    assert p.get("select.tau") == 0.5
    q = p.override({"select": {"tau": 0.2}})
    assert q.select.tau == 0.2 and q.select.k_max == 10
    for key in keys:  # every key reads back
        p.get(key)


def test_to_json_states_everything():
    p = get_preset("released++", "voc21")
    d = json.loads(json.dumps(p.to_json("proxyclip")))
    assert d["preset"] == "released++" and d["dataset"] == "voc21" and "note" not in d
    assert d["select"]["tau"] == 0.4 and d["post"]["spatial"]["iterations"] == 3
    assert d["encode"]["local_text"] == "plain"
    assert d["encode_side"] == ["encode.local_text", "encode.precision"]
    flat = sum(len(v) if isinstance(v, dict) else 0 for v in d.values())
    assert flat >= 6
    assert "extension" in p.to_json("sclip")["note"]
    assert extension_note("released", "corrclip") and extension_note("paper", "sclip") is None
    assert extension_note(p, "proxyclip") is None
    assert set(PRESETS) == {"paper", "released", "released++"}


def _paper_bundle(seed):
    from s2c2seg.bundle import FeatureBundle
    from s2c2seg.slide import slide_boxes

    g = torch.Generator().manual_seed(seed)
    q2c = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 6, 7])
    boxes = slide_boxes(30, 40, 24, 12)
    q = q2c.numel()
    maps = torch.rand(q, 8, 8, generator=g).half()
    return FeatureBundle(dense_logits=0.2 + 0.1 * torch.randn(boxes.shape[0], q, 3, 3, generator=g), crop_boxes=boxes,
                         resized_hw=torch.tensor([30, 40]), image_hw=torch.tensor([27, 33]),
                         global_sim=0.2 + 0.05 * torch.randn(q, generator=g), clipseg_mean=maps.float().mean((1, 2)),
                         clipseg_maps=maps, query_to_class=q2c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_preset_equals_the_default_path(seed):
    b = _paper_bundle(seed)
    proto = get_protocol("voc21", "proxyclip")
    today = predict(b, proto, "s2c2seg", css=CSSConfig(), csg=CSGConfig(), background=0)
    preset = get_preset("paper", "voc21")
    assert preset.css == CSSConfig() and preset.csg == CSGConfig()
    via = predict(b, proto, "s2c2seg", preset=preset, background=0)
    assert torch.equal(today.label_map, via.label_map) and torch.equal(today.subset, via.subset)
    tuned = predict(b, proto, "s2c2seg", preset=get_preset("paper", "voc21", **{"css.tau": 0.5}), background=0)
    assert torch.equal(tuned.subset, predict(b, proto, "s2c2seg", css=CSSConfig(tau=0.5), background=0).subset)
