# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · CSG fusion variants and the 2×2 component ablation
#
# With CSS on, the fusion of the baseline's global maps `S_glob` with CLIPSeg's local maps `S_spat`:
# `global_only` (S_glob), `local_only` (S_spat), `add` (w = 1), `uniform` (w = 1/K) and `category_aware`
# (w = softmax(mean S_glob / T)). Then the components against the baseline: with / without CSS × with /
# without CSG (+ the paper's "w/o CSG" row: CSS with uniform weights). Then the **teaching worlds**: the
# paper's failure modes as simulated scenarios, each isolating its dials, with what CSS and CSG each change
# there and where they hurt (`s2c2seg.scenarios`), and the same worlds run with the three presets (`paper`,
# `released`, `released++`: `s2c2seg.presets`). The rows are experiment points of the registry
# (`s2c2seg.experiments`: layouts `fusion` and `components`); `preset` adds that preset's full method beside
# the components (the fusion modes and the 2×2 exist in the paper reading only).

# %% tags=["parameters"]
backend = "auto"
datasets = ["voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff164k", "ade20k", "cityscapes"]
# dataset -> root of its real files; missing = simulated scenes or generated data
data_roots = {}
baseline = "sclip"
size = "full"
n_images = 2
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
fusion = "category_aware"
# the preset whose full method is shown beside the components: "paper" (none extra), "released", "released++"
preset = "released"
# teaching worlds (s2c2seg.scenarios.SCENARIOS); [] = skip
scenarios = ["ideal", "coarse_localisation", "similar_overlap", "cooccur_leakage", "clipseg_errors", "all_at_once"]
scenario_leave_out = True   # also run the default world without each failure mode's dials
scenario_dataset = "voc21"
scenario_images = 2
# the presets the teaching worlds also run with (s2c2seg.presets.PRESETS); [] = the paper reading's points only
scenario_presets = ["paper", "released", "released++"]
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
import numpy as np

from s2c2seg import analysis, experiments, plots, session

plots.use_style()
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig

css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
params = dict(datasets=datasets, data_roots=data_roots, tau=tau, k_min=k_min, k_max=k_max, lam=lam,
              temperature=temperature, fusion=fusion, scenarios=scenarios, scenario_leave_out=scenario_leave_out,
              scenario_dataset=scenario_dataset, scenario_images=scenario_images, preset=preset,
              scenario_presets=scenario_presets)
S = session.open_session("03_fusion_variants", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

# %%
# every fusion mode after CSS, the components, and the preset's full method
configs = experiments.group("fusion", "components", session.preset_point(preset))
results, sessions = session.evaluate_datasets(
    datasets, configs, css=css_cfg, csg=csg_cfg, notebook="03_fusion_variants", base=S, data_roots=data_roots,
    baseline=baseline, n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend,
    cache_dir=cache_dir)
table = analysis.miou_table(results)
fusion_rows = {p.configs(css_cfg, csg_cfg)[1].mode: table[p.key] for _, p in experiments.layout_rows("fusion")}
component_rows = {p.key: table[p.key] for _, p in experiments.layout_rows("components")}
component_rows.update({k: table[k] for k in configs if k not in component_rows and k not in
                       {p.key for _, p in experiments.layout_rows("fusion")}})  # the preset's full method
md = ("## Fusion variants (with CSS)\n\n" + S.markdown_table(fusion_rows, first="fusion") +
      "\n\n## Components\n\n" + S.markdown_table(component_rows, first="components"))
print(md)
(S.out_dir / "fusion_variants.md").write_text(md + "\n")

# %%
grid = np.array([[table["baseline"]["Avg"], table["no_css"]["Avg"]],
                 [table["css_only"]["Avg"], table["s2c2seg"]["Avg"]]])
fig, ax = plots.figure(1, 2, width="double", aspect=0.36, label=S.label,
                       title=f"CSG fusion and components ({baseline}, avg over {len(datasets)} dataset(s))")
names = list(fusion_rows)
colours = plots.method_colours(names)
ax[0, 0].bar(np.arange(len(names)), [fusion_rows[n]["Avg"] for n in names], color=[colours[n] for n in names])
ax[0, 0].set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
ax[0, 0].set_ylabel("mIoU")
ax[0, 0].set_title("fusion (with CSS)")
plots.heatmap(ax[0, 1], grid, ["w/o CSS", "with CSS"], ["w/o CSG", "with CSG"], annotate=True, fmt="{:.1f}",
              title="2×2 components (mIoU)")
fig.tight_layout()
S.save(fig, "fusion_variants", close=False)

# %% [markdown]
# ## Reading the numbers above: which world produced them
#
# With the simulation backend these numbers come from the simulation's default world, printed below. Where an
# ablation beats the full method (e.g. `local_only` above `category_aware`), the teaching worlds that follow
# show which of the world's properties causes it.

# %%
from s2c2seg import scenarios as sc

if S.backend_name == "sim":
    from IPython.display import Markdown, display

    display(Markdown(sc.world_description(S.backend.cfg)))
print(sc.ablation_note({n: r["Avg"] for n, r in fusion_rows.items()}, "category_aware", S.label))
ablations = {p.key for _, p in experiments.layout_rows("components")}  # the preset's row is another reading
print(sc.ablation_note({n: r["Avg"] for n, r in component_rows.items() if n in ablations}, "s2c2seg", S.label))

# %% [markdown]
# ## Teaching worlds: one failure mode at a time
#
# Each world is the simulation's ideal world (every source exact) with only its failure mode's dials on, at
# the simulation's default values (nothing tuned here); `all_at_once` is the default world. The
# `without:<scenario>` worlds are the default world with only that failure mode's dials off: what it costs
# among all the others. Every world is SIMULATED and uncalibrated: it shows mechanisms, never evidence about
# CLIP. The points are the components' 2×2, the fusion modes and each preset's full method.

# %%
worlds = sc.world_names(scenarios, leave_out=scenario_leave_out) if scenarios else []
methods = experiments.group(*configs, *(session.preset_point(p) for p in scenario_presets))
world_results = sc.run_scenarios(worlds, methods, css=css_cfg, csg=csg_cfg, dataset=scenario_dataset,
                                 n_images=scenario_images, seed=seed, baseline=baseline,
                                 out_dir=str(S.out_dir / "scenarios"), notebook="03_fusion_variants")
effects = {w: sc.term_effects(r) for w, r in world_results.items()}
if worlds:
    from IPython.display import Markdown, display

    for name in scenarios:
        s_ = sc.scenario(name)
        display(Markdown(f"*{name}*: {s_.failure}. {s_.mechanism}"))
    shown_methods = [*sc.COMPONENTS, "no_csg", "fusion:add", "fusion:local_only",
                     *(session.preset_point(p) for p in scenario_presets if p != "paper")]
    wt = sc.scenario_table(world_results, [m for m in shown_methods if m in methods])
    print(f"SIMULATED — mIoU per world ({scenario_dataset}, {scenario_images} scene(s) each)")
    print(analysis.markdown_table(wt, first="world", label=sc.LABEL))
    display(Markdown("\n\n".join(sc.explain(e) for e in effects.values())))
    if "all_at_once" in world_results and any(w.startswith(sc.WITHOUT) for w in worlds):
        contrib = sc.dial_contributions(world_results, [m for m in shown_methods if m in methods])
        print("SIMULATED — what each failure mode costs in the default world "
              "(mIoU(default) − mIoU(default without it); negative = it costs that much)")
        print(analysis.markdown_table(contrib, first="failure mode", label=sc.LABEL))
    if {"all_at_once", "clipseg_errors"} <= set(world_results) and "fusion:local_only" in methods:
        r_, c_ = world_results["all_at_once"], world_results["clipseg_errors"]
        print(f"local_only (CLIPSeg's maps alone) in the default world: {r_.miou('fusion:local_only'):.1f}, full "
              f"method {r_.miou(sc.FULL):.1f}; with only CLIPSeg's errors on, local_only reaches "
              f"{c_.miou('fusion:local_only'):.1f}. The simulated CLIPSeg is that close to exact, so weight left "
              f"on the baseline's coarse maps can only cost IoU in this world; that is how the world is built "
              f"(clipseg_false_positive, clipseg_miss), not a property of the real CLIPSeg.")

# %%
if worlds:
    import seaborn as sns

    cols_ = [m for m in shown_methods if m in methods]
    mat = np.array([[wt[w][m] for m in cols_] for w in wt])
    fig, ax = plots.figure(1, 2, width="double", aspect=0.42, label=S.label,
                           title=f"teaching worlds ({scenario_dataset}, {scenario_images} scene(s) each)",
                           gridspec_kw={"width_ratios": [3, 2]})
    sns.heatmap(mat, ax=ax[0, 0], annot=True, fmt=".1f", cmap=plots.SEQUENTIAL_CMAP, vmin=min(50.0, mat.min()),
                vmax=100, xticklabels=cols_, yticklabels=list(wt), annot_kws={"fontsize": 5},
                cbar_kws={"label": "mIoU", "shrink": 0.8})
    ax[0, 0].set_title("mIoU per world and setting")
    ax[0, 0].tick_params(axis="x", rotation=45)
    eff = [e for e in effects.values()]
    y = np.arange(len(eff))
    ax[0, 1].barh(y - 0.2, [e["css_delta"] for e in eff], 0.4, color=plots.OKABE_ITO[2],
                  label="CSS: css_only − baseline")
    ax[0, 1].barh(y + 0.2, [e["csg_delta"] for e in eff], 0.4, color=plots.OKABE_ITO[5],
                  label="CSG: s2c2seg − css_only")
    ax[0, 1].set_yticks(y, [e["world"] for e in eff])
    ax[0, 1].invert_yaxis()
    ax[0, 1].axvline(0, color="0.3", linewidth=0.5)
    ax[0, 1].set_xlabel("mIoU change")
    ax[0, 1].set_title("what each term changes")
    ax[0, 1].legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    S.save(fig, "teaching_worlds", close=False)

# %% [markdown]
# ## The teaching worlds with the presets: `paper`, `released`, `released++`
#
# The same worlds and scenes, with each preset's full method (`s2c2seg.presets`; every value is printed below):
#
# - `paper`: the paper's formulas (issue 2): CSS once per image on **classes** (the union of the top-⌊τC⌋ of
#   the three scores, a K cap `k_max`, min-max rerank), then `S_glob + λ·w·S_spat` with `w = softmax(mean S_glob / T)`.
# - `released`: the authors' conference run: CSS per **sliding window** on **queries** (synonyms): the union
#   of the top-⌊τQ⌋ of g, s and c with no K cap, α a Bhattacharyya coefficient; the convex fusion
#   `(1 − λ)·G + λ·L + 0.07·L·w` with `w` a plain softmax of the window means; unselected queries −1e9; τ and λ
#   from the dataset's operating point.
# - `released++`: the journal run: `released` plus one refinement round (high-confidence feedback, adaptive
#   admission of more queries), the spatial refinement, the Otsu background threshold, and CLIPSeg's template
#   text (encode-side: it changes the bundle, and the simulation's CLIPSeg world does not read text).
#
# Nothing here is tuned: the worlds are those above. Read the selections below before the mIoU: in the ideal
# world every synonym of a class scores alike, so the released per-query top-⌊τQ⌋ is filled by whichever
# class has the most synonyms, and VOC21's background has 26 of its 56 queries.

# %%
from IPython.display import Markdown, display

from s2c2seg.presets import get_preset


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


if scenario_presets and worlds:
    resolved = {p: _flat(get_preset(p, scenario_dataset).to_json()) for p in scenario_presets}
    keys = sorted({k for v in resolved.values() for k in v} - {"preset", "source", "dataset", "encode_side"})
    differ = {k: {p: str(resolved[p].get(k, "—")) for p in scenario_presets} for k in keys
              if len({str(resolved[p].get(k, "—")) for p in scenario_presets}) > 1}
    print(f"preset values that differ on {scenario_dataset} ('—' = the preset has no such key):")
    print(analysis.markdown_table(differ, first="key"))
    preset_fx = {w: sc.preset_effects(r, scenario_presets) for w, r in world_results.items()}
    pt = {w: {p: e["miou"] for p, e in fx.items()} | {"baseline": world_results[w].miou(sc.BASELINE)}
          for w, fx in preset_fx.items()}
    print(f"SIMULATED — mIoU per world and preset ({scenario_dataset}, {scenario_images} scene(s) each)")
    print(analysis.markdown_table(pt, first="world", label=sc.LABEL))
    n_cls = len(next(iter(world_results.values())).class_names)
    display(Markdown("\n\n".join(sc.explain_presets(w, fx, n_cls) for w, fx in preset_fx.items())))
else:
    preset_fx = {}

# %% [markdown]
# What the released selection keeps, window by window, in the ideal world's first scene: how many queries
# each window selected, how many of them are synonyms of the background class, and how many are queries of a
# class actually in the scene (computed here from `predict(..., preset=...)`'s per-window selections).

# %%
from s2c2seg.predict import predict

selection_counts = {}
released_presets = [p for p in scenario_presets if p != "paper"]
if released_presets and worlds:
    ideal = session.open_session("03_fusion_variants", backend="sim", dataset=scenario_dataset, baseline=baseline,
                                 n_images=1, seed=seed, out_dir=str(S.out_dir / "scenarios"),
                                 backend_kwargs={"cfg": sc.world_config("ideal", seed=seed)})
    b0, s0 = ideal.bundle(0), ideal.sample(0)
    q2c = b0.query_to_class.long()
    present = set(np.unique(np.asarray(s0.label)).tolist())
    bg = -1 if ideal.background is None else ideal.background
    for p in released_presets:
        pr = get_preset(p, scenario_dataset)
        pred = predict(b0, ideal.protocol, method="s2c2seg", preset=pr)
        wins = pred.meta["selected_per_window"]
        n_q = int(q2c.numel())
        selection_counts[p] = {
            "⌊τQ⌋": int(pr.select.tau * n_q), "windows": len(wins),
            "selected / window": float(np.mean([len(w) for w in wins])),
            "background synonyms / window": float(np.mean([sum(int(q2c[q]) == bg for q in w) for w in wins])),
            "queries of present classes / window": float(np.mean([sum(int(q2c[q]) in present for q in w)
                                                                  for w in wins])),
            "of present objects (not background) / window": float(np.mean(
                [sum(int(q2c[q]) in present and int(q2c[q]) != bg for q in w) for w in wins])),
            "admitted (refinement) / window": float(np.mean([len(a) for a in pred.meta["admitted_per_window"]])),
        }
    print(f"SIMULATED — ideal world, one scene ({scenario_dataset}: {n_q} queries, "
          f"{int((q2c == bg).sum())} of them synonyms of the background class; classes present: "
          f"{sorted(ideal.class_names[c] for c in present if c < len(ideal.class_names))})")
    print(analysis.markdown_table(selection_counts, first="preset", label=sc.LABEL))
    for p, row in selection_counts.items():
        objects, n_bg = row["of present objects (not background) / window"], row["background synonyms / window"]
        admitted_w = row["admitted (refinement) / window"]
        text = (f"{p}: of the {row['selected / window']:.1f} queries a window selects, {n_bg:.1f} are background "
                f"synonyms and {objects:.1f} belong to the scene's objects. ")
        if objects < 1:
            text += ("The top-⌊τQ⌋ of each score is (almost) all background: in this world every synonym scores "
                     "like its class, and the background, which covers most of each window, has more synonyms "
                     "than ⌊τQ⌋; a query a window does not select is filled with −1e9, so the objects it misses "
                     "cannot win their pixels there (and averaging a −1e9 window into a pixel's other windows "
                     "loses it there too).")
        elif admitted_w > 0:
            text += f"The refinement round admitted {admitted_w:.1f} query(ies) per window on top of the selection."
        else:
            text += (f"The refinement admitted nothing here, so the objects' queries come from the selection itself "
                     f"(score.global_score = {get_preset(p, scenario_dataset).score.global_score!r}: its top-⌊τQ⌋ "
                     f"is not all background).")
        print(text)

# %%
S.write_record({"table": table, "fusion": fusion_rows, "components": component_rows,
                "component_grid": grid, "datasets": datasets, "configs": list(configs),
                "data_sources": {d: s.data_source for d, s in sessions.items()},
                "world": S.backend.cfg.to_json() if S.backend_name == "sim" else None,
                "scenarios": {"worlds": {w: {"config": r.config.to_json(),
                                             "miou": {m: r.miou(m) for m in r.results}}
                                         for w, r in world_results.items()},
                              "effects": effects, "dataset": scenario_dataset, "n_images": scenario_images,
                              "presets": preset_fx, "ideal_selection": selection_counts}})
