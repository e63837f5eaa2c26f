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
# mIoU of S2C2Seg when CSS ranks categories with a subset of its three scores (`none` = no selection, CSG on
# every class; each score alone; each pair; all three) and with the ground-truth classes as the subset
# (`oracle`, the upper bound), per dataset and on average; and each subset's recall / precision against the
# GT classes of the image (mean over images).

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
              temperature=temperature, fusion=fusion)
S = session.open_session("02_css_score_subsets", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir, backend_requested=backend_requested, params=params)
print(S.banner())

# %%
configs = experiments.group("baseline", "scoring")  # the baseline, w/o selection, each score subset, oracle
results, sessions = session.evaluate_datasets(
    datasets, configs, css=css_cfg, csg=csg_cfg, notebook="02_css_score_subsets", base=S, data_roots=data_roots, baseline=baseline,
    n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend, cache_dir=cache_dir)
table = analysis.miou_table(results)
for name in configs:
    r = [results[d][name].recall_precision() for d in datasets]
    table[name]["recall %"] = 100 * float(np.nanmean([v[0] for v in r])) if name not in ("baseline", "no_css") else float("nan")
    table[name]["precision %"] = 100 * float(np.nanmean([v[1] for v in r])) if name not in ("baseline", "no_css") else float("nan")
    table[name]["mean K"] = float(np.mean([np.mean([len(s) for s in results[d][name].subsets])
                                           for d in datasets])) if name != "baseline" else float("nan")
md = S.markdown_table(table, first="scores")
print(md)
(S.out_dir / "css_score_subsets.md").write_text(md + "\n")

# %%
names = list(configs)
fig, ax = plots.figure(1, 2, width="double", aspect=0.36, label=S.label,
                       title=f"CSS score subsets ({baseline}, {len(datasets)} dataset(s), {n_images} images each)")
avg = [table[n]["Avg"] for n in names]
cols = [plots.OKABE_ITO[7] if n in ("baseline", "oracle") else plots.OKABE_ITO[4] for n in names]
cols[names.index("s2c2seg")] = plots.OKABE_ITO[5]
ax[0, 0].bar(np.arange(len(names)), avg, color=cols)
ax[0, 0].set_xticks(np.arange(len(names)), names, rotation=60, ha="right")
ax[0, 0].set_ylabel("mIoU (avg over datasets)")
ax[0, 0].set_title("mIoU")
for n, c_ in zip([n for n in names if n not in ("baseline", "no_css")], plots.categorical(len(names))):
    ax[0, 1].scatter(table[n]["recall %"], table[n]["precision %"], color=c_, s=12, label=n)
ax[0, 1].set_xlabel("subset recall of GT classes")
ax[0, 1].set_ylabel("subset precision")
ax[0, 1].set_title("recall / precision")
ax[0, 1].legend(frameon=False, fontsize=5, ncol=2)
fig.tight_layout()
S.save(fig, "css_score_subsets", close=False)

# %%
if len(datasets) > 1:
    fig, ax = plots.figure(1, 1, width="double", aspect=0.3, label=S.label, title="mIoU per dataset")
    width = 0.8 / len(names)
    for j, (n, c_) in enumerate(zip(names, plots.categorical(len(names)))):
        ax[0, 0].bar(np.arange(len(datasets)) + j * width, [table[n][d] for d in datasets], width, color=c_, label=n)
    ax[0, 0].set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax[0, 0].legend(frameon=False, ncol=5, fontsize=5)
    S.save(fig, "css_score_subsets_per_dataset", close=False)

# %%
S.write_record({"table": table, "datasets": datasets, "configs": names,
                "per_dataset": {d: {n: {"mIoU": results[d][n].miou,
                                        "recall_precision": list(results[d][n].recall_precision())}
                                    for n in names} for d in datasets},
                "data_sources": {d: s.data_source for d, s in sessions.items()}})
