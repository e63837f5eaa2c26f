"""Teaching worlds: each scenario switches on exactly its dials at the simulation's defaults (nothing tuned),
the leave-one-out world switches exactly those off, and the effects are read from the evaluated numbers."""
from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from s2c2seg import scenarios as sc
from s2c2seg.sim import EFFECT_DIALS, SimConfig


def test_each_scenario_isolates_its_dials_at_the_defaults():
    default = SimConfig()
    for name, s in sc.SCENARIOS.items():
        cfg = s.config(seed=3)
        on = {d for d in EFFECT_DIALS if getattr(cfg, d)}
        if s.dials == ("*",):
            assert cfg == SimConfig(seed=3)
            continue
        assert on == set(s.dials), name  # only its own dials on ...
        for d in s.dials:
            assert getattr(cfg, d) == getattr(default, d)  # ... at the simulation's own default values
        others = {f.name for f in fields(SimConfig)} - set(EFFECT_DIALS) - {"seed"}
        assert all(getattr(cfg, f) == getattr(default, f) for f in others)
        if s.isolates:
            lo = s.config(leave_out=True, seed=3)
            assert {d for d in EFFECT_DIALS if not getattr(lo, d)} == set(s.dials)
    assert {"coarse_localisation", "similar_overlap", "cooccur_leakage", "clipseg_errors", "all_at_once"} <= set(
        sc.SCENARIOS)
    with pytest.raises(ValueError, match="effect dials"):
        sc.scenario("ideal").config(dense_blur=1.0)
    with pytest.raises(ValueError, match="unknown scenario"):
        sc.scenario("nope")
    assert sc.world_names(["ideal", "clipseg_errors"]) == ["ideal", "clipseg_errors", "without:clipseg_errors"]
    assert sc.world_config("without:clipseg_errors").clipseg_miss == 0


def test_world_description_states_dials_and_what_it_is_not():
    text = sc.world_description(SimConfig())
    assert f"dense_blur={SimConfig().dense_blur}" in text
    assert "uncalibrated" in text and "nothing in it is evidence about the real models" in text
    assert "effects off: none" in text
    assert "effects on: none" in sc.world_description(SimConfig.ideal())


def test_ablation_note():
    assert "best" in sc.ablation_note({"full": 70.0, "a": 60.0}, "full")
    note = sc.ablation_note({"full": 65.2, "spat": 82.1, "glob": 65.0}, "full", "SIMULATED")
    assert "spat 82.1" in note and "glob" not in note and "SIMULATED" in note
    with pytest.raises(ValueError, match="not among"):
        sc.ablation_note({"a": 1.0}, "full")


@pytest.mark.slow
def test_run_scenarios_effects_match_the_numbers(tmp_path):
    """Ideal world: every method exact. Coarse localisation (only the baseline blurred, CLIPSeg exact):
    the baseline loses and CLIPSeg's maps alone are exact; the effects equal differences of the table."""
    from s2c2seg import analysis
    from s2c2seg.css import CSSConfig
    from s2c2seg.csg import CSGConfig

    methods = analysis.fusion_configs(CSSConfig(), CSGConfig())
    res = sc.run_scenarios(["ideal", "coarse_localisation"], methods, n_images=1, out_dir=str(tmp_path),
                           image_size=(48, 64))
    assert all(math.isclose(r.miou, 100.0) for r in res["ideal"].results.values())
    coarse = res["coarse_localisation"]
    assert coarse.miou("baseline") < 99.0 and math.isclose(coarse.miou("fusion:local_only"), 100.0)
    e = sc.term_effects(coarse)
    assert math.isclose(e["css_delta"], coarse.miou("+CSS") - coarse.miou("baseline"))
    assert math.isclose(e["csg_delta"], coarse.miou("+CSS+CSG") - coarse.miou("+CSS"))
    assert e["best"] != sc.FULL and "An ablation wins here" in sc.explain(e)
    assert "Nothing fails here" in sc.explain(sc.term_effects(res["ideal"]))
    assert e["dials"] == {"dense_blur": SimConfig().dense_blur, "dense_downsample": SimConfig().dense_downsample}
    assert np.isfinite(e["css_recall"])
