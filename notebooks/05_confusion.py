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
# # 05 · Confusion: what do CSS and CSG each remove?
#
# Row-normalised confusion matrices (rows = GT classes) for the baseline, +CSS (subset, global maps only) and
# +CSS+CSG (the full method), restricted to the `top_n` most-confused classes so that 150–171-class
# vocabularies stay readable; the top-confused pairs; and the reduction of confusion split into
# **semantically similar** pairs (text-embedding cosine; in the simulation, the category structure's
# near-synonym weights) and **spatially adjacent** pairs (GT boundary co-occurrence). The paper's reading:
# CSS mainly removes confusion between similar classes, CSG between adjacent ones. The three settings are the
# paper reading's experiment points `baseline`, `css_only` and `s2c2seg`; with `preset = "released"` (or
# `"released++"`) that preset's full method is a fourth matrix and a third bar (baseline → preset: the
# release's selection and fusion run together per window, so they are not split into CSS and CSG).

# %% tags=["parameters"]
backend = "auto"
dataset = "context59"
data_root = ""
baseline = "sclip"
size = "full"
n_images = 4
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
fusion = "category_aware"
# a preset's full method shown beside the paper reading's terms: "paper" (none extra), "released", "released++"
preset = "released"
top_n = 20
n_pairs = 10
similar_quantile = 0.95
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
S = session.open_session("05_confusion", backend=backend, dataset=dataset, data_root=data_root, baseline=baseline,
                          n_images=n_images, size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested,
                          params=dict(tau=tau, k_min=k_min, k_max=k_max, lam=lam, temperature=temperature,
                                      fusion=fusion, top_n=top_n, n_pairs=n_pairs, similar_quantile=similar_quantile,
                                      preset=preset))
print(S.banner())

# %%
# baseline, +CSS (global maps only), +CSS+CSG, and the preset's full method
configs = experiments.group("baseline", "css_only", "s2c2seg", session.preset_point(preset))
res = session.evaluate_points(S, configs, css_cfg, csg_cfg)
names = S.class_names
mats = {k: r.confusion for k, r in res.items()}
# rows: the GT classes present, most confused first (off-diagonal share of the row, summed over the settings);
# a class never in the GT has an empty row and is left out of the matrices (it still shows in the pairs below)
rates = sum(analysis.row_normalise(m) for m in mats.values())
present = np.array(sorted(set().union(*map(set, res["baseline"].gt_classes))), dtype=np.int64)
row_conf = rates.sum(axis=1) - np.diag(rates)
shown = present[np.argsort(-row_conf[present], kind="stable")][:top_n]
print("mIoU: " + ", ".join(f"{k} {r.miou:.1f}" for k, r in res.items()))
print(f"showing {len(shown)} of the {len(present)} GT classes present ({S.num_classes} in the vocabulary), "
      f"most confused first")

# %%
import seaborn as sns

fig, ax = plots.figure(1, len(mats), width="double", aspect=0.4 * 3 / len(mats), label=S.label,
                       title=f"row-normalised confusion on {dataset} (GT rows: the {len(shown)} most confused "
                             f"GT classes, most confused first; a row's rest went to classes not shown)")
labels_ = [names[i] for i in shown]
for j, (a, (k, m)) in enumerate(zip(ax[0], mats.items())):
    r = analysis.row_normalise(m)[np.ix_(shown, shown)]
    sns.heatmap(r, ax=a, vmin=0, vmax=1, cmap=plots.SEQUENTIAL_CMAP, square=True, xticklabels=labels_,
                yticklabels=labels_ if j == 0 else False, cbar=False)
    a.set_title(f"{k} (mIoU {res[k].miou:.1f})")
    a.set_xlabel("predicted")
    if j == 0:
        a.set_ylabel("ground truth")
    a.tick_params(labelsize=4)
fig.tight_layout()
fig.colorbar(ax[0, -1].collections[0], ax=list(ax[0]), shrink=0.7, pad=0.02, label="share of the GT row")
S.save(fig, "confusion_matrices", close=False)

# %%
pairs = {k: analysis.top_confused_pairs(m, names, n=n_pairs) for k, m in mats.items()}
for k, ps in pairs.items():
    print(f"\n{k}: top-confused pairs (GT -> predicted, share of the GT row)")
    for p in ps:
        print(f"  {p['gt']:>16} -> {p['pred']:<16} {p['rate']:.3f}")

# %%
similarity, sim_source = session.class_similarity(S)
adjacency = analysis.boundary_cooccurrence([S.sample(i).label for i in range(len(S))], S.num_classes)
split_css = analysis.split_confusion_reduction(mats["baseline"], mats["css_only"], similarity=similarity,
                                               adjacency=adjacency, similar_quantile=similar_quantile, names=names)
split_csg = analysis.split_confusion_reduction(mats["css_only"], mats["s2c2seg"], similarity=similarity,
                                               adjacency=adjacency, similar_quantile=similar_quantile, names=names)
preset_key = session.preset_point(preset)
split_preset = (analysis.split_confusion_reduction(mats["baseline"], mats[preset_key], similarity=similarity,
                                                   adjacency=adjacency, similar_quantile=similar_quantile,
                                                   names=names) if preset != "paper" else None)
print(f"semantic similarity: {sim_source}; adjacency: GT boundary co-occurrence over {len(S)} images")
group_names = {"similar": "semantically\nsimilar", "adjacent": "spatially\nadjacent", "other": "other"}
groups = [g for g in group_names if split_css[g]["n_pairs"] > 0 and (split_css[g]["before"] > 0 or
                                                                     split_csg[g]["before"] > 0)]
empty = [g for g in group_names if g not in groups]
fig, ax = plots.figure(1, 1, width="single", aspect=0.7, label=S.label,
                       title="confusion removed by each term")
x = np.arange(len(groups))
series = [("CSS (baseline → css_only)", split_css, plots.OKABE_ITO[2]),
          ("CSG (css_only → s2c2seg)", split_csg, plots.METHOD_COLOURS["s2c2seg"])]
if split_preset is not None:
    series.append((f"{preset} (baseline → {preset_key})", split_preset, plots.METHOD_COLOURS[preset_key]))
bw = 0.8 / len(series)
for j, (lab, split, colour) in enumerate(series):
    ax[0, 0].bar(x - 0.4 + bw * (j + 0.5), [split[g]["reduction"] for g in groups], bw, label=lab, color=colour)
ax[0, 0].set_xticks(x, [group_names[g] for g in groups])
ax[0, 0].set_ylabel("confusion removed\n(Σ row-normalised rates over pairs)")
ax[0, 0].axhline(0, color="0.3", linewidth=0.5)
ax[0, 0].legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=1)
if empty:
    ax[0, 0].set_xlabel(f"no confused pairs in: {', '.join(empty)}", fontsize=5)
S.save(fig, "confusion_reduction_split", close=False)
print("CSS:", {g: round(split_css[g]["reduction"], 4) for g in groups})
print("CSG:", {g: round(split_csg[g]["reduction"], 4) for g in groups})
if split_preset is not None:
    print(f"{preset}:", {g: round(split_preset[g]["reduction"], 4) for g in groups})

# %%
S.write_record({"miou": {k: r.miou for k, r in res.items()}, "shown_classes": shown,
                "row_normalised": {k: analysis.row_normalise(m)[np.ix_(shown, shown)] for k, m in mats.items()},
                "top_pairs": pairs, "similarity_source": sim_source, "reduction_css": split_css,
                "reduction_csg": split_csg, "preset": preset, "reduction_preset": split_preset})
