"""Teaching worlds: the paper's failure modes as named simulation scenarios, each isolating its dials.

A scenario is the simulation's *ideal* world (:meth:`s2c2seg.sim.SimConfig.ideal`: every effect off, every
source exact) with only its own effect dials switched back on, each at the simulation's default value
(``SimConfig()``: one source for every value, nothing tuned here). ``all_at_once`` is the default world,
every dial at its default. Nothing here is calibrated against CLIP or CLIPSeg: the worlds show *mechanisms*
(what CSS and CSG can and cannot fix), never evidence about the real models.

:func:`run_scenarios` evaluates named experiment points (:mod:`s2c2seg.experiments`, e.g. the components'
2×2 :data:`COMPONENTS` and the presets' full methods :data:`PRESET_POINTS`) in each world through
:func:`s2c2seg.session.evaluate_points`; :func:`term_effects` turns the numbers into what CSS and CSG each
changed and where they hurt, :func:`preset_effects` into what each preset does against the baseline and the
paper reading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np

from .session import PRESET_POINTS
from .sim import EFFECT_DIALS, LABEL, SimConfig

__all__ = ["Scenario", "SCENARIOS", "BASELINE", "CSS_ONLY", "CSG_ONLY", "FULL", "COMPONENTS", "PRESET_POINTS",
           "HURT_TOLERANCE", "NO_FAILURE", "scenario", "world_description", "explain", "ablation_note", "WITHOUT",
           "world_names", "world_config", "dial_contributions", "ScenarioResult", "run_scenarios", "term_effects",
           "preset_effects", "explain_presets", "scenario_table"]

BASELINE, CSS_ONLY, CSG_ONLY, FULL = "baseline", "css_only", "no_css", "s2c2seg"
"""Experiment points (:mod:`s2c2seg.experiments`) of the 2×2 components the effects are read from: no CSS no
CSG, CSS only (global maps), CSG only (every class fused), both (the paper reading's full method)."""
COMPONENTS = (BASELINE, CSS_ONLY, CSG_ONLY, FULL)
assert PRESET_POINTS["paper"] == FULL, "the paper preset's full method is the components' FULL point"
HURT_TOLERANCE = 0.05
"""mIoU points (per image) below which a change counts as no change, not as harm."""
NO_FAILURE = 99.95
"""mIoU at or above which every method counts as exact (the world shows no failure)."""


@dataclass(frozen=True)
class Scenario:
    """One failure mode: the dials it switches on (at the simulation's defaults) and what it stands for."""

    name: str
    failure: str
    """The failure mode in the paper's words, one line."""
    dials: tuple[str, ...]
    """Effect dials switched on; empty = the ideal world; ``("*",)`` = every dial (the default world)."""
    mechanism: str
    """What the dials do to the sources and which term can act on it (a property of the simulation's code)."""

    @property
    def isolates(self) -> bool:
        """True for a failure mode (some dials, not all): it also has a leave-one-out world."""
        return bool(self.dials) and self.dials != ("*",)

    def config(self, *, leave_out: bool = False, **scene: Any) -> SimConfig:
        """The scenario's world: the ideal world with only its dials on (at the simulation's defaults), or,
        with ``leave_out``, the default world with only its dials off. ``scene`` sets non-effect fields
        (``seed``, ``image_size``, ...)."""
        bad = set(scene) & set(EFFECT_DIALS)
        if bad:
            raise ValueError(f"scenario {self.name!r}: {sorted(bad)} are effect dials; pick another scenario "
                             f"instead of overriding them")
        if leave_out:
            if not self.isolates:
                raise ValueError(f"scenario {self.name!r} has no leave-one-out world (it isolates no dial)")
            return SimConfig(**scene).replace(**{d: 0 for d in self.dials})
        if self.dials == ("*",):
            return SimConfig(**scene)
        defaults = SimConfig()
        return SimConfig.ideal(**{d: getattr(defaults, d) for d in self.dials}, **scene)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("ideal", "none: every source exact (the reference)", (),
             "Global cosines, dense logits and CLIPSeg maps all carry the ground truth; nothing to fix."),
    Scenario("coarse_localisation", "the baseline localises coarsely (ViT patch grid, blurred responses)",
             ("dense_blur", "dense_downsample"),
             "Only the baseline's dense logits are blurred and pooled to a 16-pixel grid; CLIPSeg stays sharp, "
             "so CSG (which adds CLIPSeg's maps) can sharpen boundaries and local_only is exact here."),
    Scenario("similar_overlap", "similar categories overlap (near-synonyms light up together)",
             ("global_leak_similar", "dense_leak_similar"),
             "Absent near-synonyms of present categories get part of their global and dense response; CSS can "
             "drop them from the vocabulary, CSG adds CLIPSeg's (here exact) maps to the baseline's."),
    Scenario("cooccur_leakage", "co-occurring categories leak into each other",
             ("global_leak_cooccur", "dense_leak_cooccur"),
             "Categories that often appear together get part of each other's response; CSS can drop the absent "
             "partners, CSG adds CLIPSeg's (here exact) maps."),
    Scenario("clipseg_errors", "CLIPSeg hallucinates absent categories and misses present ones",
             ("clipseg_false_positive", "clipseg_miss"),
             "Only CLIPSeg is wrong; the baseline is exact. Whatever uses CLIPSeg (s_spat in CSS, S_spat in CSG, "
             "local_only) can only lose here; the consistency terms of CSS are meant to limit that."),
    Scenario("all_at_once", "every failure mode together, plus noise (the simulation's default world)", ("*",),
             "Every effect dial at its default: coarse, leaky baseline; CLIPSeg sharper but with false positives "
             "and misses; noise and per-category biases everywhere."),
)}
"""The named teaching worlds, in teaching order."""


def scenario(name: str) -> Scenario:
    """Look a scenario up by name (``ValueError`` listing the known ones)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def world_description(cfg: SimConfig) -> str:
    """Markdown: the world's effect dials (with the ones that are off), and what the world is not."""
    on = [f"`{d}={getattr(cfg, d)}`" for d in EFFECT_DIALS if getattr(cfg, d)]
    off = [d for d in EFFECT_DIALS if not getattr(cfg, d)]
    scales = [f"`{f.name}={getattr(cfg, f.name)}`" for f in fields(cfg)
              if f.name.startswith(("global_floor", "global_span", "dense_floor", "dense_span", "clipseg_gain"))]
    lines = [f"**{LABEL} world** (seed {cfg.seed}, scenes {cfg.image_size[0]}×{cfg.image_size[1]}, "
             f"{cfg.n_present_range[0]}–{cfg.n_present_range[1]} categories per scene, shape {cfg.shape}).",
             f"- effects on: {', '.join(on) if on else 'none'}",
             f"- effects off: {', '.join(off) if off else 'none'}",
             f"- scales: {', '.join(scales)}",
             "- What it is not: uncalibrated. The dial values were chosen to make each effect visible, not "
             "measured on CLIP, SCLIP or CLIPSeg; which method wins here is a property of this world, and "
             "nothing in it is evidence about the real models or the paper's numbers."]
    return "\n".join(lines)


WITHOUT = "without:"
"""Prefix of a leave-one-out world's name: ``without:coarse_localisation`` = the default world minus its dials."""


def world_names(names: Sequence[str], leave_out: bool = True) -> list[str]:
    """The worlds to run for ``names``: each scenario alone, then (``leave_out``) the default world without
    each failure mode's dials."""
    for n in names:
        scenario(n)
    out = list(names)
    if leave_out:
        out += [WITHOUT + n for n in names if SCENARIOS[n].isolates]
    return out


def world_config(world: str, **scene: Any) -> SimConfig:
    """The :class:`SimConfig` of a world named by :func:`world_names`."""
    if world.startswith(WITHOUT):
        return scenario(world[len(WITHOUT):]).config(leave_out=True, **scene)
    return scenario(world).config(**scene)


@dataclass
class ScenarioResult:
    """One world evaluated: per experiment point, the :class:`s2c2seg.analysis.ConfigResult`."""

    world: str
    scenario: Scenario
    config: SimConfig
    results: dict = field(default_factory=dict)
    class_names: list = field(default_factory=list)

    def miou(self, method: str) -> float:
        return self.results[method].miou


def run_scenarios(worlds: Sequence[str], points: Mapping[str, Any], *, css=None, csg=None,
                  dataset: str = "voc21", n_images: int = 4, seed: int = 0, baseline: str = "sclip",
                  image_size: Sequence[int] = (96, 128), out_dir: str = "",
                  notebook: str = "scenarios") -> dict[str, ScenarioResult]:
    """Evaluate experiment points (``{key: experiments.Point}``, e.g. ``experiments.group(*COMPONENTS)``) in
    each world (:func:`world_names`) with :func:`s2c2seg.session.evaluate_points` (``css`` / ``csg``: the paper
    points' base configs), on ``n_images`` simulated scenes of ``dataset``'s vocabulary (the same scenes in
    every world: same seed)."""
    from .session import evaluate_points, open_session

    if not points:
        raise ValueError("points must name at least one experiment point (e.g. experiments.group(*COMPONENTS))")
    out = {}
    for world in worlds:
        cfg = world_config(world, seed=seed, image_size=tuple(int(v) for v in image_size))
        s = open_session(notebook, backend="sim", dataset=dataset, baseline=baseline, n_images=n_images,
                         seed=seed, out_dir=out_dir, backend_kwargs={"cfg": cfg})
        sc = scenario(world[len(WITHOUT):] if world.startswith(WITHOUT) else world)
        out[world] = ScenarioResult(world, sc, cfg, evaluate_points(s, points, css, csg), s.class_names)
    return out


def _per_class_iou(res) -> np.ndarray:
    return res.confusion.iou().numpy()


def term_effects(r: ScenarioResult) -> dict[str, Any]:
    """What CSS and CSG each changed in one world, and where they hurt (all from the evaluated numbers).

    * CSS: ``css_only`` − ``baseline``; CSG: ``s2c2seg`` − ``css_only`` (CSG on top of CSS, as in the method);
    * ``*_hurt_images``: images whose mIoU fell by more than :data:`HURT_TOLERANCE`;
    * ``*_worst_class``: the class whose IoU fell most (None when none fell);
    * ``css_recall``: mean share of an image's GT classes that CSS kept (a dropped class cannot be segmented);
    * ``best``: the paper reading's point with the highest mIoU, and ``full``: the full method's (the other
      presets' points are another reading, not ablations: :func:`preset_effects`).
    """
    needed = {BASELINE, CSS_ONLY, FULL}
    if not needed <= set(r.results):
        raise ValueError(f"term_effects needs the methods {sorted(needed)}; got {sorted(r.results)}")
    out: dict[str, Any] = {"world": r.world, "scenario": r.scenario.name,
                           "dials": {d: getattr(r.config, d) for d in EFFECT_DIALS if getattr(r.config, d)}}
    for term, before, after in (("css", BASELINE, CSS_ONLY), ("csg", CSS_ONLY, FULL)):
        a, b = r.results[before], r.results[after]
        out[f"{term}_delta"] = b.miou - a.miou
        diffs = np.asarray(b.per_image_miou) - np.asarray(a.per_image_miou)
        out[f"{term}_hurt_images"] = int((diffs < -HURT_TOLERANCE).sum())
        out["n_images"] = len(diffs)
        dc = _per_class_iou(b) - _per_class_iou(a)
        dc = np.where(np.isfinite(dc), dc, 0.0)
        j = int(np.argmin(dc))
        out[f"{term}_worst_class"] = (r.class_names[j], 100.0 * float(dc[j])) if dc[j] < -HURT_TOLERANCE / 100 else None
    out["css_recall"], out["css_precision"] = (100.0 * v for v in r.results[CSS_ONLY].recall_precision())
    other_presets = set(PRESET_POINTS.values()) - {FULL}  # another reading, not an ablation (preset_effects)
    mious = {m: res.miou for m, res in r.results.items() if m not in other_presets}
    best = max(mious, key=lambda m: (mious[m], m == FULL))
    out.update(best=best, best_miou=mious[best], full_miou=mious[FULL], baseline_miou=mious[BASELINE],
               mious=mious)
    return out


def preset_effects(r: ScenarioResult, presets: Sequence[str] = tuple(PRESET_POINTS)) -> dict[str, dict]:
    """Per preset (its full method, :data:`PRESET_POINTS`) in one world: mIoU, the change against the baseline
    and against the paper reading, the images it hurt against the baseline, and its subset (the classes of
    every query selected in some window): mean recall / precision against the GT classes and mean size."""
    missing = [p for p in presets if PRESET_POINTS.get(p) not in r.results] + \
        ([BASELINE] if BASELINE not in r.results else [])
    if missing:
        raise ValueError(f"preset_effects needs the points of {missing}; got {sorted(r.results)}")
    base, paper = r.results[BASELINE], r.results.get(PRESET_POINTS["paper"])
    out = {}
    for name in presets:
        res = r.results[PRESET_POINTS[name]]
        diffs = np.asarray(res.per_image_miou) - np.asarray(base.per_image_miou)
        recall, precision = (100.0 * v for v in res.recall_precision())
        sizes = [len(s) for s in res.subsets if s is not None]
        out[name] = {"point": PRESET_POINTS[name], "miou": res.miou, "vs_baseline": res.miou - base.miou,
                     "vs_paper": res.miou - paper.miou if paper is not None else math.nan,
                     "hurt_images": int((diffs < -HURT_TOLERANCE).sum()), "n_images": len(diffs),
                     "recall": recall, "precision": precision,
                     "kept_classes": float(np.mean(sizes)) if sizes else math.nan}
    return out


def explain_presets(world: str, effects: Mapping[str, Mapping[str, Any]], num_classes: int) -> str:
    """One markdown line per preset from :func:`preset_effects`: what it did to the baseline, how it compares
    with the paper reading, and what its selection kept."""
    lines = [f"**{world}** (presets):"]
    for name, e in effects.items():
        txt = (f"- `{name}`: {e['miou']:.1f} mIoU ({_fmt_delta(e['vs_baseline'])} against the baseline, hurt "
               f"{e['hurt_images']}/{e['n_images']} image(s)")
        if name != "paper" and math.isfinite(e["vs_paper"]):
            txt += f"; {_fmt_delta(e['vs_paper'])} against `paper`"
        txt += ")"
        if math.isfinite(e["kept_classes"]):
            txt += (f"; kept {e['kept_classes']:.1f} of {num_classes} classes per image, recall "
                    f"{e['recall']:.0f}%, precision {e['precision']:.0f}%")
        lines.append(txt + ".")
    return "\n".join(lines)


def _fmt_delta(x: float) -> str:
    return "±0.0" if math.isfinite(x) and abs(x) < 0.05 else f"{x:+.1f}"


def explain(effects: Mapping[str, Any]) -> str:
    """One markdown paragraph from :func:`term_effects`: the dials, what each term did, where it hurt, and
    whether an ablation beat the full method (stated, not hidden)."""
    e = effects
    n = e["n_images"]
    if e["world"].startswith(WITHOUT):
        off = ", ".join(f"`{d}`" for d in SCENARIOS[e["scenario"]].dials)
        head = f"**{e['world']}** — the default world with {off} off."
    else:
        dials = ", ".join(f"`{k}={v}`" for k, v in e["dials"].items()) or "none (every source exact)"
        head = f"**{e['world']}** — dials on: {dials}."
    parts = [f"{head} Baseline {e['baseline_miou']:.1f} mIoU."]
    for term, what in (("css", f"CSS (`{BASELINE}` → `{CSS_ONLY}`)"), ("csg", f"CSG (`{CSS_ONLY}` → `{FULL}`)")):
        hurt = e[f"{term}_hurt_images"]
        worst = e[f"{term}_worst_class"]
        txt = f"{what}: {_fmt_delta(e[term + '_delta'])} mIoU; hurt {hurt}/{n} image(s)"
        if worst:
            txt += f", most on `{worst[0]}` ({worst[1]:+.1f} IoU)"
        parts.append(txt + ".")
    if math.isfinite(e["css_recall"]):
        parts.append(f"CSS kept {e['css_recall']:.0f}% of the GT classes present "
                     f"(precision {e['css_precision']:.0f}%).")
    if min(e["mious"].values()) >= NO_FAILURE:
        parts.append("Nothing fails here: at their default strengths these dials alone flip no pixel's "
                     "decision (each leak or error is weaker than the true response); the failure needs the "
                     "other effects, see the leave-one-out worlds.")
    elif e["best"] != FULL and e["best_miou"] > e["full_miou"] + HURT_TOLERANCE:
        parts.append(f"An ablation wins here: `{e['best']}` reaches {e['best_miou']:.1f} against the full "
                     f"method's {e['full_miou']:.1f}. That is a property of this world (see its mechanism), "
                     f"not a finding about the method.")
    else:
        parts.append(f"The full method is best ({e['full_miou']:.1f}).")
    return " ".join(parts)


def ablation_note(values: Mapping[str, float], full: str, label: str = "") -> str:
    """A sentence for any table where settings beat the full method ``full`` (mIoU by name): which ones, by
    how much, and, for a SIMULATED run, where to read why; ``""`` when the full method is best."""
    if full not in values:
        raise ValueError(f"ablation_note: {full!r} is not among {sorted(values)}")
    ref = values[full]
    better = sorted(((v, k) for k, v in values.items() if k != full and math.isfinite(v) and v > ref + HURT_TOLERANCE),
                    reverse=True)
    if not better:
        return f"The full method ({full}, {ref:.1f}) is best in this table."
    which = ", ".join(f"{k} {v:.1f}" for v, k in better)
    text = f"Settings that beat the full method ({full}, {ref:.1f}) here: {which}."
    if label == LABEL:
        text += (" This run is SIMULATED: the ranking is a property of the simulated world, not evidence about "
                 "the method; notebook 03's teaching worlds show which of the world's effects causes it.")
    return text


def scenario_table(results: Mapping[str, ScenarioResult], methods: Sequence[str] | None = None) -> dict:
    """``{world: {method: mIoU}}`` for :func:`s2c2seg.analysis.markdown_table`."""
    return {name: {m: r.miou(m) for m in (methods or list(r.results))} for name, r in results.items()}


def dial_contributions(results: Mapping[str, ScenarioResult], methods: Sequence[str]) -> dict:
    """``{scenario: {method: mIoU(default world) − mIoU(default world without its dials)}}``: what each failure
    mode costs each method among all the others (needs ``all_at_once`` and the ``without:`` worlds)."""
    if "all_at_once" not in results:
        raise ValueError("dial_contributions needs the 'all_at_once' world")
    full = results["all_at_once"]
    return {w[len(WITHOUT):]: {m: full.miou(m) - r.miou(m) for m in methods}
            for w, r in results.items() if w.startswith(WITHOUT)}
