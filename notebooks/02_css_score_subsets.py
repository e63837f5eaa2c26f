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
# # 02 · CSS score subsets: which scores does the selection need?
#
# mIoU of S2C2Seg (the paper reading) when CSS ranks categories with a subset of its three scores (`no_css` =
# no selection, CSG on every class; `use:…` each score alone and each pair; `s2c2seg` all three) and with the
# ground-truth classes as the subset (`oracle`, the upper bound), per dataset and on average; and each subset's
# recall / precision against the GT classes of the image (mean over images). The rows are the experiment
# registry's `scoring` layout (`s2c2seg.experiments`). With `preset = "released"` (or `"released++"`) the
# authors' released pipeline is shown beside them: its selection runs per sliding window on queries, so its
# "subset" is the classes of every query some window selected.

# %% tags=["parameters"]
backend = "auto"
datasets = ["voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff164k", "ade20k", "cityscapes"]
# dataset -> root of its real files; missing = simulated scenes or generated data
data_roots = {}
baseline = "sclip"
size = "full"
n_images = 2                # per dataset
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
fusion = "category_aware"
# the preset whose full method is shown beside the score subsets (which exist in the paper reading only):
# "paper" (none extra), "released" or "released++" (s2c2seg.presets.PRESETS)
preset = "released"
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
              temperature=temperature, fusion=fusion, preset=preset)
S = session.open_session("02_css_score_subsets", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

# %%
# the baseline, w/o selection, each score subset, oracle (paper reading), and the preset's full method
configs = experiments.group("baseline", "scoring", session.preset_point(preset))
results, sessions = session.evaluate_datasets(
    datasets, configs, css=css_cfg, csg=csg_cfg, notebook="02_css_score_subsets", base=S, data_roots=data_roots,
    baseline=baseline, n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend,
    cache_dir=cache_dir)
table = analysis.miou_table(results)
for name in configs:
    r = [results[d][name].recall_precision() for d in datasets]
    table[name]["recall %"] = (100 * float(np.nanmean([v[0] for v in r]))
                               if name not in ("baseline", "no_css") else float("nan"))
    table[name]["precision %"] = (100 * float(np.nanmean([v[1] for v in r]))
                                  if name not in ("baseline", "no_css") else float("nan"))
    table[name]["mean K"] = float(np.mean([np.mean([len(s) for s in results[d][name].subsets])
                                           for d in datasets])) if name != "baseline" else float("nan")
md = S.markdown_table(table, first="scores")
print(md)
(S.out_dir / "css_score_subsets.md").write_text(md + "\n")

# %% [markdown]
# Which world produced these numbers (with the simulation backend), and any setting that beats the full CSS:

# %%
from s2c2seg import scenarios as sc

if S.backend_name == "sim":
    from IPython.display import Markdown, display

    display(Markdown(sc.world_description(S.backend.cfg)))
ablations = {p.key for _, p in experiments.layout_rows("scoring")} - {"oracle"}  # not the preset's row
print(sc.ablation_note({n: table[n]["Avg"] for n in configs if n in ablations}, "s2c2seg", S.label))

# %%
names = list(configs)
colours = plots.method_colours(names)  # one colour per setting, the same in both figures
fig, ax = plots.figure(1, 2, width="double", aspect=0.36, label=S.label, gridspec_kw={"width_ratios": [3, 2]},
                       title=f"CSS score subsets ({baseline}, {len(datasets)} dataset(s), {n_images} image(s) each)")
avg = [table[n]["Avg"] for n in names]
ax[0, 0].bar(np.arange(len(names)), avg, color=[colours[n] for n in names])
ax[0, 0].set_xticks(np.arange(len(names)), names, rotation=60, ha="right")
ax[0, 0].set_ylabel("mIoU (avg over datasets)")
ax[0, 0].set_title("mIoU (grey: baseline, black: oracle, vermillion: full CSS"
                   + (f", {'blue' if preset == 'released' else 'purple'}: {preset})" if preset != "paper" else ")"))
points = {n: (table[n]["recall %"], table[n]["precision %"]) for n in names if n not in ("baseline", "no_css")}
plots.scatter_labelled(ax[0, 1], points, colours)
ax[0, 1].set_xlabel("subset recall of GT classes (%)")
ax[0, 1].set_ylabel("subset precision (%)")
ax[0, 1].set_title("recall / precision (coincident settings share a point)")
fig.tight_layout()
S.save(fig, "css_score_subsets", close=False)

# %%
if len(datasets) > 1:
    fig, ax = plots.figure(1, 1, width="double", aspect=0.3, label=S.label, title="mIoU per dataset")
    width = 0.8 / len(names)
    cols_ = [*datasets, "Avg"]
    for j, n in enumerate(names):
        ax[0, 0].bar(np.arange(len(cols_)) + j * width, [table[n][d] for d in cols_], width, color=colours[n],
                     label=n)
    ax[0, 0].set_xticks(np.arange(len(cols_)) + 0.4 - width / 2, cols_, rotation=30, ha="right")
    ax[0, 0].set_ylabel("mIoU")
    ax[0, 0].legend(frameon=False, ncol=5, fontsize=5, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    S.save(fig, "css_score_subsets_per_dataset", close=False)

# %%
S.write_record({"table": table, "datasets": datasets, "configs": names,
                "per_dataset": {d: {n: {"mIoU": results[d][n].miou,
                                        "recall_precision": list(results[d][n].recall_precision())}
                                    for n in names} for d in datasets},
                "data_sources": {d: s.data_source for d, s in sessions.items()}})
