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
# without CSG (+ the paper's "w/o CSG" row: CSS with uniform weights).

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
S = session.open_session("03_fusion_variants", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(S.banner())

# %%
configs = experiments.group("fusion", "components")  # every fusion mode after CSS, and the components
results, sessions = session.evaluate_datasets(
    datasets, configs, css=css_cfg, csg=csg_cfg, notebook="03_fusion_variants", base=S, data_roots=data_roots, baseline=baseline,
    n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend, cache_dir=cache_dir)
table = analysis.miou_table(results)
fusion_rows = {p.configs(css_cfg, csg_cfg)[1].mode: table[p.key] for _, p in experiments.layout_rows("fusion")}
component_rows = {p.key: table[p.key] for _, p in experiments.layout_rows("components")}
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
cols = [plots.OKABE_ITO[5] if n == "category_aware" else plots.OKABE_ITO[4] for n in names]
ax[0, 0].bar(np.arange(len(names)), [fusion_rows[n]["Avg"] for n in names], color=cols)
ax[0, 0].set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
ax[0, 0].set_ylabel("mIoU")
ax[0, 0].set_title("fusion (with CSS)")
plots.heatmap(ax[0, 1], grid, ["w/o CSS", "with CSS"], ["w/o CSG", "with CSG"], annotate=True, fmt="{:.1f}",
              title="2×2 components (mIoU)")
fig.tight_layout()
S.save(fig, "fusion_variants", close=False)

# %%
S.write_record({"table": table, "fusion": fusion_rows, "components": component_rows,
                "component_grid": grid, "datasets": datasets, "configs": list(configs),
                "data_sources": {d: s.data_source for d, s in sessions.items()}})
