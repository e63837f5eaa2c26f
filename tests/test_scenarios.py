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
    from s2c2seg import experiments
    from s2c2seg.css import CSSConfig
    from s2c2seg.csg import CSGConfig

    methods = experiments.group(*sc.COMPONENTS, "fusion:local_only", "released")
    res = sc.run_scenarios(["ideal", "coarse_localisation"], methods, css=CSSConfig(), csg=CSGConfig(), n_images=1,
                           out_dir=str(tmp_path), image_size=(48, 64))
    # the paper reading's points are exact in the ideal world (the released preset is not: preset_effects)
    assert all(math.isclose(r.miou, 100.0) for k, r in res["ideal"].results.items() if k != "released")
    coarse = res["coarse_localisation"]
    assert coarse.miou("baseline") < 99.0 and math.isclose(coarse.miou("fusion:local_only"), 100.0)
    e = sc.term_effects(coarse)
    assert math.isclose(e["css_delta"], coarse.miou("css_only") - coarse.miou("baseline"))
    assert math.isclose(e["csg_delta"], coarse.miou("s2c2seg") - coarse.miou("css_only"))
    assert e["best"] != sc.FULL and "An ablation wins here" in sc.explain(e)
    ideal = sc.term_effects(res["ideal"])
    assert "Nothing fails here" in sc.explain(ideal) and "released" not in ideal["mious"]
    assert e["dials"] == {"dense_blur": SimConfig().dense_blur, "dense_downsample": SimConfig().dense_downsample}
    assert np.isfinite(e["css_recall"])
    fx = sc.preset_effects(coarse, ["paper", "released"])  # read from the same numbers, nothing else
    assert fx["paper"]["vs_baseline"] == pytest.approx(coarse.miou("s2c2seg") - coarse.miou("baseline"))
    assert fx["released"]["vs_paper"] == pytest.approx(coarse.miou("released") - coarse.miou("s2c2seg"))
    assert 1 <= fx["released"]["kept_classes"] <= 21 and 0 <= fx["released"]["recall"] <= 100
    with pytest.raises(ValueError, match="released"):
        sc.preset_effects(coarse, ["released++"])  # its point was not evaluated
    text = sc.explain_presets("coarse_localisation", fx, 21)
    assert f"{fx['released']['miou']:.1f} mIoU" in text and "against `paper`" in text


def test_preset_points_name_registry_points():
    from s2c2seg import experiments
    from s2c2seg.presets import PRESETS
    from s2c2seg.session import preset_point

    assert set(sc.PRESET_POINTS) == set(PRESETS)
    for name in PRESETS:
        p = experiments.point(preset_point(name))
        assert p.method == "s2c2seg" and p.preset == name and not p.overrides
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_point("nope")
