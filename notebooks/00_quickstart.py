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
# # 00 · Quickstart: one image, any vocabulary, baseline vs S2C2Seg
#
# Encode one image once (the models run only here), then predict with the training-free baseline and with
# S2C2Seg (CSS picks a category subset, CSG fuses the baseline's global cosine maps with CLIPSeg's local
# maps). With `backend="auto"` real weights are used when they load, otherwise the simulation; the line
# printed below, every figure title and the JSON record say which (`SIMULATED` / `RANDOM WEIGHTS`).
#
# Your own vocabulary: set `vocabulary = ["cat", ["sofa", "couch"], "floor"]` (a list item may be a list of
# synonyms). Your own image: `image_path = "photo.jpg"` (no ground truth then).

# %% tags=["parameters"]
backend = "auto"            # pretrained, random, sim or auto (pretrained when it loads, else sim)
dataset = "voc21"           # protocol (and vocabulary unless `vocabulary` is given)
# a dataset root in its MMSeg layout; empty = simulated scenes or generated data
data_root = ""
baseline = "sclip"          # sclip | maskclip | clearclip | naclip | proxyclip | corrclip
size = "full"               # model size: "full" (the paper's) or "tiny" (CI, random weights)
n_images = 1
image_index = 0
# your own image (overrides the dataset's)
image_path = ""
# your own class names; empty = the dataset vocabulary
vocabulary = []
seed = 0
tau = 0.3
k_min = 6
k_max = 20
lam = 0.6
temperature = 0.01
fusion = "category_aware"
# empty = runs/notebooks/interactive/NOTEBOOK
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
import numpy as np

from s2c2seg import plots, session

plots.use_style()
from s2c2seg.css import CSSConfig
from s2c2seg.csg import CSGConfig
from s2c2seg.predict import BundleView, predict

S = session.open_session(
    "00_quickstart", backend=backend, dataset=dataset, data_root=data_root, baseline=baseline,
    n_images=max(n_images, image_index + 1), size=size, seed=seed, out_dir=out_dir, cache_dir=cache_dir,
    backend_requested=backend_requested, vocabulary=vocabulary,
    params=dict(tau=tau, k_min=k_min, k_max=k_max, lam=lam, temperature=temperature, fusion=fusion,
                image_index=image_index, image_path=image_path))
print(S.banner())

# %%
if image_path:
    if S.backend_name == "sim":
        raise ValueError("image_path needs a model backend (pretrained or random): the simulation makes its "
                         "features from a scene's ground truth, so it runs on its own scenes only")
    from s2c2seg.data import Sample
    from s2c2seg.io import load_image

    sample = Sample(id=image_path, image=load_image(image_path))
else:
    sample = S.sample(image_index)
bundle = S.backend.encode(sample, S.vocab, S.protocol)
css_cfg = CSSConfig(tau=tau, k_min=k_min, k_max=k_max)
csg_cfg = CSGConfig(mode=fusion, lam=lam, temperature=temperature)
view = BundleView(bundle)  # the full-size maps, computed once for both predictions
base = predict(view, S.protocol, "baseline", background=S.background)
ours = predict(view, S.protocol, "s2c2seg", css=css_cfg, csg=csg_cfg, background=S.background)
subset = ours.subset.tolist()
print(f"{S.num_classes} classes in the vocabulary; CSS kept {len(subset)}:",
      ", ".join(S.class_names[i] for i in subset))

# %%
maps = {}
# a custom vocabulary matches the labels only in simulated scenes (made over that vocabulary)
has_gt = sample.label is not None and not image_path and (not vocabulary or S.backend_name == "sim")
if has_gt:
    maps["ground truth"] = np.asarray(sample.label)
maps[f"baseline ({baseline})"] = base.label_map.numpy()
maps["S2C2Seg"] = ours.label_map.numpy()
palette = plots.label_palette(dataset, S.num_classes)
fig = plots.plot_label_maps(sample.image, maps, S.class_names, palette=palette,
                            title=f"{baseline} vs S2C2Seg on {sample.id}", label=S.label)
S.save(fig, "overlays", close=False)

# %%
values = {"image": sample.id, "subset": subset, "subset_names": [S.class_names[i] for i in subset],
          "num_classes": S.num_classes, "classes_predicted": {}}
for name, m in maps.items():
    values["classes_predicted"][name] = sorted(int(v) for v in np.unique(m) if v != 255)
if has_gt:
    from s2c2seg.metrics import ConfusionMatrix
    import torch

    lab = torch.as_tensor(np.asarray(sample.label))
    values["miou_baseline"] = 100 * ConfusionMatrix(S.num_classes).update(base.label_map, lab).miou()
    values["miou_s2c2seg"] = 100 * ConfusionMatrix(S.num_classes).update(ours.label_map, lab).miou()
    print(f"this image: baseline mIoU {values['miou_baseline']:.1f}, S2C2Seg {values['miou_s2c2seg']:.1f}")
S.write_record(values)
