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
# # 04 · The oracle gap: how far is CSS from the ground-truth subset?
#
# S2C2Seg with CSS's subset vs the same pipeline with the image's GT classes as the subset (the oracle):
# the mIoU gap per dataset, the per-image recall of CSS's subset, which classes CSS misses most often, and a
# gallery of the images where CSS loses most against the oracle. The gap is the paper reading's (`s2c2seg`
# against `oracle`: the same fusion, only the subset differs). With `preset = "released"` (or `"released++"`)
# that preset's full method is shown beside them, with the recall of its subset (the classes of every query a
# window selected); the release has no oracle, so its distance to one is not a gap of the same kind.

# %% tags=["parameters"]
backend = "auto"
datasets = ["voc21", "context59", "ade20k"]
# dataset -> root of its real files; missing = simulated scenes or generated data
data_roots = {}
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
# the preset shown beside the paper reading's gap: "paper" (none extra), "released", "released++"
preset = "released"
n_worst = 3
top_missed = 15
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
from s2c2seg.predict import BundleView, predict

css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
params = dict(datasets=datasets, data_roots=data_roots, tau=tau, k_min=k_min, k_max=k_max, lam=lam,
              temperature=temperature, fusion=fusion, n_worst=n_worst, top_missed=top_missed,
              preset=preset)
S = session.open_session("04_oracle_gap", backend=backend, dataset=datasets[0],
                          data_root=data_roots.get(datasets[0], ""), baseline=baseline, n_images=n_images,
                          size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
                          backend_requested=backend_requested, params=params)
print(plots.banner(S, datasets, n_images))

# %%
configs = experiments.group("s2c2seg", "oracle", session.preset_point(preset))
results, sessions = session.evaluate_datasets(
    datasets, configs, css=css_cfg, csg=csg_cfg, notebook="04_oracle_gap", base=S, data_roots=data_roots,
    baseline=baseline, n_images=n_images, size=size, seed=seed, out_dir=str(S.out_dir), backend=backend,
    cache_dir=cache_dir)
table = analysis.miou_table(results)
gap = {d: table["oracle"][d] - table["s2c2seg"][d] for d in [*datasets, "Avg"]}
table["gap"] = gap
print(S.markdown_table(table, first="mIoU"))
missed = analysis.missed_classes(results, "s2c2seg", {d: s.class_names for d, s in sessions.items()})
images = analysis.per_image_gaps(results, "s2c2seg", "oracle")
recalls = [im["recall"] for im in images]
print(f"per-image recall of CSS's subset: mean {np.nanmean(recalls):.3f}, min {np.nanmin(recalls):.3f}")
preset_key = session.preset_point(preset)
preset_recall = {d: results[d][preset_key].recall_precision()[0] for d in datasets}
if preset != "paper":
    print(f"{preset} ({preset_key}): mIoU avg {table[preset_key]['Avg']:.1f}; mean recall of its subset per "
          "dataset: " + ", ".join(f"{d} {v:.3f}" for d, v in preset_recall.items()))

# %%
fig, ax = plots.figure(1, 3, width="double", aspect=0.32, label=S.label, title=f"oracle gap ({baseline})")
x = np.arange(len(datasets) + 1)
colours = plots.method_colours(["s2c2seg", "oracle"])
ax[0, 0].bar(x - 0.2, [table["s2c2seg"][d] for d in [*datasets, "Avg"]], 0.4, label="S2C2Seg (CSS subset)",
             color=colours["s2c2seg"])
ax[0, 0].bar(x + 0.2, [table["oracle"][d] for d in [*datasets, "Avg"]], 0.4, label="oracle (GT subset)",
             color=colours["oracle"])
ax[0, 0].set_xticks(x, [*datasets, "Avg"], rotation=45, ha="right")
ax[0, 0].set_ylabel("mIoU")
ax[0, 0].set_title("mIoU: CSS subset vs GT subset")
ax[0, 0].legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.62), ncol=1)
ax[0, 1].hist(recalls, bins=np.linspace(0, 1, 11), color=plots.OKABE_ITO[2])
ax[0, 1].set_xlabel("recall of GT classes (per image)")
ax[0, 1].set_ylabel("images")
ax[0, 1].set_title(f"recall of CSS's subset ({len(recalls)} images)")
top = [m for m in missed if m["missed"] > 0][:top_missed]
if top:
    ax[0, 2].barh(np.arange(len(top)), [m["missed"] for m in top], color=plots.OKABE_ITO[6])
    ax[0, 2].set_yticks(np.arange(len(top)), [f"{m['class']} ({m['dataset']})" for m in top])
    ax[0, 2].invert_yaxis()
    ax[0, 2].set_xlabel("images where CSS dropped the class")
else:
    ax[0, 2].text(0.5, 0.5, f"CSS kept every GT class\nin all {len(recalls)} images", ha="center", va="center",
                  transform=ax[0, 2].transAxes)
    ax[0, 2].set_axis_off()
ax[0, 2].set_title("classes CSS misses most")
fig.tight_layout()
S.save(fig, "oracle_gap", close=False)

# %% [markdown]
# ## Worst images: where the oracle subset helps most

# %%
worst = sorted(images, key=lambda im: -im["gap"])[:n_worst]
fig, ax = plots.figure(max(1, len(worst)), 4, width="double", aspect=0.25 * max(1, len(worst)), label=S.label,
                       title="largest per-image gap: GT, S2C2Seg, oracle")
for r, im in enumerate(worst):
    s = sessions[im["dataset"]]
    sample, bundle = s.sample(im["index"]), s.bundle(im["index"])
    pal = plots.label_palette(im["dataset"], s.num_classes)
    view = BundleView(bundle)
    ours = predict(view, s.protocol, "s2c2seg", css=css_cfg, csg=csg_cfg, background=s.background)
    orc = predict(view, s.protocol, "oracle", csg=csg_cfg, label=sample.label, background=s.background)
    panels = [(sample.image, f"{im['dataset']} {sample.id}"),
              (plots.overlay(sample.image, np.asarray(sample.label), pal), "GT"),
              (plots.overlay(sample.image, ours.label_map.numpy(), pal),
               f"S2C2Seg {im['miou']:.1f} (recall {im['recall']:.2f})"),
              (plots.overlay(sample.image, orc.label_map.numpy(), pal), f"oracle {im['miou_ref']:.1f}")]
    for c_, (img, title) in enumerate(panels):
        ax[r, c_].imshow(img)
        ax[r, c_].set_title(title, fontsize=5)
        ax[r, c_].set_axis_off()
fig.tight_layout()
S.save(fig, "worst_images", close=False)

# %%
S.write_record({"table": table, "gap": gap, "per_image": images, "missed": missed,
                "mean_recall": float(np.nanmean(recalls)), "worst": worst, "datasets": datasets,
                "preset": preset, "preset_recall": preset_recall,
                "data_sources": {d: s.data_source for d, s in sessions.items()}})
