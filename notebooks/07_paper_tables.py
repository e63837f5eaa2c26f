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
# # 07 · The paper's tables, from run records
#
# The main table (8 benchmarks + average, baseline vs + S2C2Seg), the component ablation, the CSS-scoring
# ablation and the CSG fusion comparison, as markdown and LaTeX, through `s2c2seg.tables` (the same code as
# `s2c2seg tables`).
#
# Records come from `records_from` when given (folders of your own `s2c2seg eval` / `s2c2seg sweep` runs);
# otherwise this notebook produces them: one sweep per dataset and baseline over exactly the settings the
# tables need (each image encoded once; with the runner's shared cache, the bundles of notebooks 02–06 are
# reused). The figures of the other notebooks of the same run (`records_dir`) are listed in the record.

# %% tags=["parameters"]
backend = "auto"
datasets = ["voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff164k", "cityscapes", "ade20k"]
baselines = ["sclip"]
# dataset -> root of its real files; missing = simulated scenes or generated data
data_roots = {}
# folders of existing run records (eval / sweep); empty = run the sweeps here
records_from = []
size = "full"
n_images = 2
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
# the run folder of the other notebooks (set by the runner)
records_dir = ""
backend_requested = ""

# %%
from pathlib import Path

import numpy as np

from s2c2seg import experiments, plots, session, tables
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig
from s2c2seg.records import load_records
from s2c2seg.sweep import sweep

plots.use_style()
css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(lam=lam, temperature=temperature)
params = dict(datasets=datasets, baselines=baselines, data_roots=data_roots, records_from=records_from, tau=tau,
              k_min=k_min, k_max=k_max, lam=lam, temperature=temperature)
S = session.open_session("07_paper_tables", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baselines[0], n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(S.banner())

# %%
if records_from:
    records = load_records(records_from)
    source = f"records from {records_from}"
else:
    records = []
    for bl in baselines:
        base = S if bl == baselines[0] else session.open_session(
            "07_paper_tables", backend=backend, dataset=datasets[0], data_root=data_roots.get(datasets[0], ""),
            baseline=bl, n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), cache_dir=cache_dir)
        for ds in datasets:
            s = base if ds == base.dataset_name else session.open_session(
                "07_paper_tables", backend=backend, dataset=ds, data_root=data_roots.get(ds, ""), baseline=bl,
                n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), cache_dir=cache_dir, reuse=base)
            res = sweep(s.dataset, s.backend, s.vocab, s.protocol, experiments.table_grid(), css=css_cfg,
                        csg=csg_cfg, cache_dir=cache_dir or None, out_dir=S.out_dir / "records" / bl / ds,
                        max_images=n_images, baseline=bl, progress=False)
            records += res.records
    source = f"sweeps run here ({n_images} images per dataset)"
print(f"{len(records)} run records ({source})")

# %%
layouts = list(tables.LAYOUTS)
md = tables.render(records, layouts, "markdown")
tex = tables.render(records, layouts, "latex")
(S.out_dir / "tables.md").write_text(md + "\n")
(S.out_dir / "tables.tex").write_text(tex + "\n")
print(md)

# %%
main = tables.build_table(records, "main")
rows = main.rows
fig, ax = plots.figure(1, 1, width="double", aspect=0.3, label=S.label, title="main results (mIoU)")
cols = [d for d in tables.BENCHMARKS if any(d in r for r in rows.values())]
width = 0.8 / max(1, len(rows))
for j, ((name, r), c_) in enumerate(zip(rows.items(), plots.categorical(len(rows)))):
    ax[0, 0].bar(np.arange(len(cols)) + j * width, [r.get(d, np.nan) for d in cols], width, label=name, color=c_)
ax[0, 0].set_xticks(np.arange(len(cols)) + 0.4 - width / 2, cols)
ax[0, 0].set_ylabel("mIoU")
ax[0, 0].legend(frameon=False, ncol=2)
S.save(fig, "main_results", close=False)

# %%
figures = sorted(str(p.relative_to(records_dir)) for p in Path(records_dir).glob("*/figures/*.pdf")) \
    if records_dir and Path(records_dir).is_dir() else []
print(f"{len(figures)} figures from this run's notebooks:", *figures, sep="\n  ")
S.write_record({"source": source, "n_records": len(records),
                "tables": {name: tables.build_table(records, name).rows for name in layouts},
                "markdown": md, "latex": tex, "run_figures": figures})
