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
# there and where they hurt (`s2c2seg.scenarios`).

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
# teaching worlds (s2c2seg.scenarios.SCENARIOS); [] = skip
scenarios = ["ideal", "coarse_localisation", "similar_overlap", "cooccur_leakage", "clipseg_errors", "all_at_once"]
scenario_leave_out = True   # also run the default world without each failure mode's dials
scenario_dataset = "voc21"
scenario_images = 2
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
import numpy as np

from s2c2seg import analysis, plots

plots.use_style()
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig

css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
params = dict(datasets=datasets, data_roots=data_roots, tau=tau, k_min=k_min, k_max=k_max, lam=lam,
              temperature=temperature, fusion=fusion, scenarios=scenarios, scenario_leave_out=scenario_leave_out,
              scenario_dataset=scenario_dataset, scenario_images=scenario_images)
S = analysis.open_session("03_fusion_variants", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

# %%
configs = analysis.fusion_configs(css_cfg, csg_cfg)
results, sessions = analysis.evaluate_datasets(
    datasets, configs, notebook="03_fusion_variants", base=S, data_roots=data_roots, baseline=baseline,
    n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend, cache_dir=cache_dir)
table = analysis.miou_table(results)
fusion_rows = {k.split(":", 1)[1]: v for k, v in table.items() if k.startswith("fusion:")}
component_rows = {k: table[k] for k in ("baseline", "+CSS", "+CSG", "+CSS+CSG", "+CSS+uniform")}
md = ("## Fusion variants (with CSS)\n\n" + analysis.markdown_table(fusion_rows, first="fusion") +
      "\n\n## Components\n\n" + analysis.markdown_table(component_rows, first="components"))
print(md)
(S.out_dir / "fusion_variants.md").write_text(md + "\n")

# %%
grid = np.array([[table["baseline"]["Avg"], table["+CSG"]["Avg"]],
                 [table["+CSS"]["Avg"], table["+CSS+CSG"]["Avg"]]])
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
print(sc.ablation_note({n: r["Avg"] for n, r in component_rows.items()}, "+CSS+CSG", S.label))

# %% [markdown]
# ## Teaching worlds: one failure mode at a time
#
# Each world is the simulation's ideal world (every source exact) with only its failure mode's dials on, at
# the simulation's default values (nothing tuned here); `all_at_once` is the default world. The
# `without:<scenario>` worlds are the default world with only that failure mode's dials off: what it costs
# among all the others. Every world is SIMULATED and uncalibrated: it shows mechanisms, never evidence about
# CLIP. `methods` can be any `predict` settings (e.g. the released-pipeline presets).

# %%
worlds = sc.world_names(scenarios, leave_out=scenario_leave_out) if scenarios else []
methods = dict(configs)
world_results = sc.run_scenarios(worlds, methods, dataset=scenario_dataset, n_images=scenario_images, seed=seed,
                                 baseline=baseline, out_dir=str(S.out_dir / "scenarios"),
                                 notebook="03_fusion_variants")
effects = {w: sc.term_effects(r) for w, r in world_results.items()}
if worlds:
    from IPython.display import Markdown, display

    for name in scenarios:
        s_ = sc.scenario(name)
        display(Markdown(f"*{name}*: {s_.failure}. {s_.mechanism}"))
    shown_methods = ["baseline", "+CSS", "+CSG", "+CSS+CSG", "+CSS+uniform", "fusion:add", "fusion:local_only"]
    wt = sc.scenario_table(world_results, [m for m in shown_methods if m in methods])
    print(f"SIMULATED — mIoU per world ({scenario_dataset}, {scenario_images} scene(s) each)")
    print(analysis.markdown_table(wt, first="world"))
    display(Markdown("\n\n".join(sc.explain(e) for e in effects.values())))
    if "all_at_once" in world_results and any(w.startswith(sc.WITHOUT) for w in worlds):
        contrib = sc.dial_contributions(world_results, [m for m in shown_methods if m in methods])
        print("SIMULATED — what each failure mode costs in the default world "
              "(mIoU(default) − mIoU(default without it); negative = it costs that much)")
        print(analysis.markdown_table(contrib, first="failure mode"))
    if {"all_at_once", "clipseg_errors"} <= set(world_results) and "fusion:local_only" in methods:
        r_, c_ = world_results["all_at_once"], world_results["clipseg_errors"]
        print(f"local_only (CLIPSeg's maps alone) in the default world: {r_.miou('fusion:local_only'):.1f}, full "
              f"method {r_.miou('+CSS+CSG'):.1f}; with only CLIPSeg's errors on, local_only reaches "
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
    ax[0, 1].barh(y - 0.2, [e["css_delta"] for e in eff], 0.4, color=plots.OKABE_ITO[4], label="CSS: +CSS − baseline")
    ax[0, 1].barh(y + 0.2, [e["csg_delta"] for e in eff], 0.4, color=plots.OKABE_ITO[5],
                  label="CSG: full − +CSS")
    ax[0, 1].set_yticks(y, [e["world"] for e in eff])
    ax[0, 1].invert_yaxis()
    ax[0, 1].axvline(0, color="0.3", linewidth=0.5)
    ax[0, 1].set_xlabel("mIoU change")
    ax[0, 1].set_title("what each term changes")
    ax[0, 1].legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    S.save(fig, "teaching_worlds", close=False)

# %%
S.write_record({"table": table, "fusion": fusion_rows, "components": component_rows,
                "component_grid": grid, "datasets": datasets, "configs": list(configs),
                "data_sources": {d: s.data_source for d, s in sessions.items()},
                "world": S.backend.cfg.to_json() if S.backend_name == "sim" else None,
                "scenarios": {"worlds": {w: {"config": r.config.to_json(),
                                             "miou": {m: r.miou(m) for m in r.results}} for w, r in world_results.items()},
                              "effects": effects, "dataset": scenario_dataset, "n_images": scenario_images}})
