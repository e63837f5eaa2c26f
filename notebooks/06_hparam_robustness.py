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
# # 06 · Hyper-parameter robustness: λ, τ, k_max, k_min and the CSG temperature
#
# One sweep per dataset through the package's sweep API (`s2c2seg.sweep.sweep`, the same code as
# `s2c2seg sweep`): each image's bundle is read once and every grid point is evaluated on it. Each parameter
# is varied alone, the others at the preset's values (dashed line). `preset = "paper"` varies the paper
# reading's λ, τ, k_max, k_min and the CSG temperature; `"released"` / `"released++"` vary the preset's own
# keys `fusion.lam`, `select.tau`, `select.k_max`, `select.k_min` and `fusion.guide_weight` around the
# dataset's operating point (`s2c2seg.presets`; λ > 1 does not exist in the convex fusion and is left out).

# %% tags=["parameters"]
backend = "auto"
datasets = ["voc21", "context59"]
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
# "paper" (the paper reading's parameters below) or "released" / "released++" (the preset's dotted keys)
preset = "released"
lam_values = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5]
tau_values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
k_max_values = [6, 10, 15, 20, 30, 40]
k_min_values = [1, 3, 6, 10]
temperature_values = [0.001, 0.005, 0.01, 0.05, 0.1, 1.0]
guide_weight_values = [0.0, 0.03, 0.07, 0.15, 0.3]   # released presets only (fusion.guide_weight)
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
from s2c2seg import plots, session

plots.use_style()
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig
from s2c2seg.presets import get_preset
from s2c2seg.sweep import sweep

css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
if preset == "paper":
    dials = {"lam": (lam_values, lam, "λ"), "tau": (tau_values, tau, "τ"), "k_max": (k_max_values, k_max, "k_max"),
             "k_min": (k_min_values, k_min, "k_min"), "temperature": (temperature_values, temperature, "temperature")}
    sweep_kw = dict(preset="paper", css=css_cfg, csg=csg_cfg)
else:  # the preset's keys; the dashed default is the first dataset's operating point
    op = get_preset(preset, datasets[0])
    dials = {key: (vals, op.get(key), sym) for key, vals, sym in (
        ("fusion.lam", [v for v in lam_values if v <= 1], "λ"), ("select.tau", tau_values, "τ"),
        ("select.k_max", k_max_values, "k_max"), ("select.k_min", k_min_values, "k_min"),
        ("fusion.guide_weight", guide_weight_values, "guide weight"))}
    sweep_kw = dict(preset=preset)
params = dict(datasets=datasets, data_roots=data_roots, tau=tau, k_min=k_min, k_max=k_max, lam=lam,
              temperature=temperature, fusion=fusion, preset=preset, lam_values=lam_values, tau_values=tau_values,
              k_max_values=k_max_values, k_min_values=k_min_values, temperature_values=temperature_values,
              guide_weight_values=guide_weight_values)
S = session.open_session("06_hparam_robustness", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

# %%
k_min_at = dials.get("k_min", dials.get("select.k_min"))[1]
k_max_at = dials.get("k_max", dials.get("select.k_max"))[1]
points = [{key: v} for key, (vals, _, _) in dials.items() for v in vals
          if not (key.endswith("k_min") and k_max_at is not None and v > k_max_at)
          and not (key.endswith("k_max") and v < k_min_at)]
curves = {key: {} for key in dials}
sessions = {}
for ds in datasets:
    s = S if ds == S.dataset_name else session.open_session(
        "06_hparam_robustness", backend=backend, dataset=ds, data_root=data_roots.get(ds, ""), baseline=baseline,
        n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), cache_dir=cache_dir, reuse=S)
    sessions[ds] = s
    result = sweep(s.dataset, s.backend, s.vocab, s.protocol, points, **sweep_kw,
                   cache_dir=cache_dir or None, out_dir=S.out_dir / "sweeps" / ds, max_images=n_images,
                   baseline=baseline, progress=False)
    for p, rec in zip(result.points, result.records):
        (key, value), = p.settings
        curves[key].setdefault(ds, []).append((value, 100 * rec.metrics["mIoU"]))
    print(result.markdown())

# %%
import pandas as pd
import seaborn as sns

frame = pd.DataFrame([{"dial": key, "value": v, "dataset": ds, "mIoU": m}
                      for key, c in curves.items() for ds, pts in c.items() for v, m in pts])
fig, ax = plots.figure(1, len(dials), width="double", aspect=0.3, label=S.label,
                       title=f"robustness ({baseline}, preset {preset}, {len(datasets)} dataset(s), "
                             f"{n_images} image(s) each): "
                             f"mean over datasets ± sd, thin lines per dataset, dashed = default")
line_colour = plots.METHOD_COLOURS[session.preset_point(preset)]  # the preset's colour in every notebook
for j, (a, (key, (_vals, default, sym))) in enumerate(zip(ax[0], dials.items())):
    d = frame[frame["dial"] == key]
    sns.lineplot(data=d, x="value", y="mIoU", units="dataset", estimator=None, ax=a, color="0.75",
                 linewidth=0.5)
    sns.lineplot(data=d, x="value", y="mIoU", errorbar="sd", ax=a, color=line_colour, marker="o",
                 markersize=3, linewidth=1)
    if default is not None:
        a.axvline(default, color="0.5", linestyle="--", linewidth=0.8)
    a.set_xlabel(sym)
    a.set_ylabel("mIoU" if j == 0 else "")
    a.grid(True, linewidth=0.3, alpha=0.5)
    if key == "temperature":
        a.set_xscale("log")
fig.tight_layout()
S.save(fig, "hparam_robustness", close=False)

# %%
S.write_record({"curves": {k: {ds: [[v, m] for v, m in pts] for ds, pts in c.items()} for k, c in curves.items()},
                "datasets": datasets, "n_points": len(points), "preset": preset,
                "range": {k: {ds: max(m for _, m in pts) - min(m for _, m in pts) for ds, pts in c.items()}
                          for k, c in curves.items()},
                "data_sources": {d: s.data_source for d, s in sessions.items()}})
