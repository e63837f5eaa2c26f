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
# The main table (8 benchmarks + average: Baseline / + S2C2Seg (paper) / + S2C2Seg (released) / + S2C2Seg++),
# the component ablation, the CSS-scoring ablation, the CSG fusion comparison and the released pipeline's
# selection unit × scope (per window / per image × per query / per class, a 2×2 no anchor has), as markdown
# and LaTeX, through `s2c2seg.tables` (the same code as `s2c2seg tables`; rows from the experiment registry's
# layouts, `s2c2seg.experiments`). `preset` names the full method the main table's notes compare against.
#
# Records come from `records_from` when given (folders of your own `s2c2seg eval` / `s2c2seg sweep` runs);
# otherwise this notebook produces them: one sweep per dataset and baseline over exactly the settings the
# tables need (each image encoded once; with the runner's shared cache, the bundles of notebooks 02–06 are
# reused). The figures of the other notebooks of the same run (`records_dir`) are listed in the record.
#
# The paper's figures and tables then go to the top-level `figures/` (`figures_dir`): PDF (Type-42 fonts) +
# PNG at CVPR widths, LaTeX + markdown tables, each file with a JSON sidecar naming the run record it came
# from, the backend label and the image count (`s2c2seg.figures`). A file from another run is never replaced:
# the new one gets a versioned name (`main_results.v2.pdf`) unless `replace_figures = True`.

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
# the main table's reference row: "paper", "released" or "released++" (every preset's row is in the table)
preset = "released"
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
# the run folder of the other notebooks (set by the runner)
records_dir = ""
# where the paper's figures and tables go; "" = the project's top-level figures/
figures_dir = ""
replace_figures = False     # True: overwrite figures/ files from another run instead of versioning
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
              k_min=k_min, k_max=k_max, lam=lam, temperature=temperature, figures_dir=figures_dir,
              replace_figures=replace_figures, preset=preset)
S = session.open_session("07_paper_tables", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baselines[0], n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

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
cols = [d for d in tables.BENCHMARKS if any(d in r for r in rows.values())]
avg_label = "Avg" if len(cols) == len(tables.BENCHMARKS) else f"Avg ({len(cols)}/{len(tables.BENCHMARKS)})"
fig, ax = plots.figure(1, 1, width="double", aspect=0.3, label=S.label,
                       title=f"main results (mIoU; {len(cols)} benchmark(s), {n_images} image(s) each)")
width = 0.8 / max(1, len(rows))


def point_of(layout, name):
    """The registry point behind a table row (its template with the baseline's name filled in)."""
    matches = [(len(tpl), p) for tpl, p in experiments.layout_rows(layout) if name.endswith(tpl.split("}", 1)[1])]
    return max(matches, key=lambda m: m[0])[1] if matches else None


colours = plots.method_colours(list(rows))
for j, (name, r) in enumerate(rows.items()):
    vals = [r.get(d, np.nan) for d in cols]
    vals.append(float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan)
    key = point_of("main", name).key
    colour = plots.METHOD_COLOURS[key] if len(baselines) == 1 and key in plots.METHOD_COLOURS else colours[name]
    ax[0, 0].bar(np.arange(len(cols) + 1) + j * width, vals, width, label=name, color=colour)
ax[0, 0].axvline(len(cols) - 0.1, color="0.6", linewidth=0.5)
ax[0, 0].set_xticks(np.arange(len(cols) + 1) + 0.4 - width / 2, [*cols, avg_label], rotation=30, ha="right")
ax[0, 0].set_ylabel("mIoU")
ax[0, 0].legend(frameon=False, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.35))
S.save(fig, "main_results", close=False)

# %%
from s2c2seg import scenarios as sc

# each table's reference row (main: the `preset`'s full method; unit_scope: the release's own per window ×
# per query; the paper ablations: the paper's full method) and any row that beats it (mean over the benchmarks
# present), per baseline
reference = {"main": session.preset_point(preset), "unit_scope": "released"}
for layout in layouts:
    t = tables.build_table(records, layout).rows
    ref_key = reference.get(layout, "s2c2seg")
    avg = {n: float(np.mean(list(r.values()))) for n, r in t.items()
           if r and point_of(layout, n) is not None and point_of(layout, n).key != "oracle"}
    for ref in [n for n in avg if point_of(layout, n).key == ref_key]:
        stem = ref[:len(ref) - len(next(tpl for tpl, p in experiments.layout_rows(layout)
                                         if p.key == ref_key).split("}", 1)[1])]
        group = {n: v for n, v in avg.items() if n.startswith(stem)}
        print(f"{layout}: " + sc.ablation_note(group, ref, S.label))

# %% [markdown]
# ## The released pipeline's selection unit × scope
#
# The release selects per sliding window on queries (synonyms); the paper describes one selection per image
# on classes. The 2×2 runs the `released` preset with `select.unit` ∈ {query, class} × `select.scope` ∈
# {window, image} (everything else at the dataset's operating point): this toolkit's ablation, no anchor has it.

# %%
unit_scope = tables.build_table(records, "unit_scope")
print(unit_scope.markdown())
us_grid = {}
for name, r in unit_scope.rows.items():
    p = point_of("unit_scope", name).preset_object()
    vals = [r[d] for d in cols if d in r]
    us_grid.setdefault(name.split(":")[0], {})[(p.get("select.scope"), p.get("select.unit"))] = \
        float(np.mean(vals)) if vals else np.nan
scopes, units = ("window", "image"), ("query", "class")
fig, ax = plots.figure(1, len(us_grid), width="single" if len(us_grid) == 1 else "double", aspect=0.8,
                       label=S.label, title=f"released: selection unit × scope (mIoU, {avg_label.lower()})")
for a, (bl_name, g) in zip(ax[0], us_grid.items()):
    plots.heatmap(a, np.array([[g.get((sc_, u), np.nan) for u in units] for sc_ in scopes]),
                  [f"per {s_}" for s_ in scopes], [f"per {u}" for u in units], annotate=True, fmt="{:.1f}",
                  title=bl_name)
fig.tight_layout()
S.save(fig, "unit_scope", close=False)

# %%
figures = sorted(str(p.relative_to(records_dir)) for p in Path(records_dir).glob("*/figures/*.pdf")) \
    if records_dir and Path(records_dir).is_dir() else []
print(f"{len(figures)} figures from this run's notebooks:", *figures, sep="\n  ")
# %% [markdown]
# ## Export to `figures/`

# %%
import s2c2seg
from s2c2seg import figures as paper_figures

dest = Path(figures_dir) if figures_dir else paper_figures.default_dir()
own = paper_figures.provenance(S.out_dir / "record.json", record={
    "notebook": S.notebook, "backend": S.backend_name, "label": S.label, "n_images": n_images,
    "params": {"datasets": datasets}, "package_version": s2c2seg.__version__})
exported = [f for name in paper_figures.PAPER_FIGURES[S.notebook]
            for f in paper_figures.export_file(S.out_dir / "figures" / name, dest, own, replace=replace_figures)]
for layout in layouts:
    exported += paper_figures.export_text({".tex": tables.render(records, [layout], "latex"),
                                           ".md": tables.render(records, [layout], "markdown")},
                                          f"table_{layout}", dest, own, replace=replace_figures)
skipped = []
if records_dir and Path(records_dir).is_dir():
    more, skipped = paper_figures.export_notebook_figures(
        records_dir, dest, notebooks={k: v for k, v in paper_figures.PAPER_FIGURES.items() if k != S.notebook},
        replace=replace_figures)
    exported += more
print(f"{len(exported)} files (+ one .json sidecar each) in {dest}:", *sorted(p.name for p in exported), sep="\n  ")
if skipped:
    print("not exported:", *skipped, sep="\n  ")

# %%
S.write_record({"source": source, "n_records": len(records), "figures_dir": str(dest),
                "exported": sorted(str(p) for p in exported), "not_exported": skipped,
                "tables": {name: tables.build_table(records, name).rows for name in layouts}, "preset": preset,
                "unit_scope": {bl: {f"{s_}/{u}": v for (s_, u), v in g.items()} for bl, g in us_grid.items()},
                "markdown": md, "latex": tex, "run_figures": figures})
