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
# # 00 · Quickstart: your image, your words
#
# One call, `s2c2seg.segment_image(image, classes)`, the same path as the command line
# `s2c2seg segment IMAGE --classes "cat; kitty, sofa, floor"`: the words become a vocabulary (classes split on
# `,`, synonyms of one class on `;`), the models encode the image once, and S2C2Seg's default preset chooses
# a class subset and fuses the baseline's maps with CLIPSeg's. Below: the baseline and S2C2Seg side by side,
# then the explanation figure (`docs/segment.md`): the class scores, what was selected in each sliding
# window, and the fusion weights.
#
# Your photo: `image_path = "photo.jpg"`; your words: `classes = "dog, grass; lawn, sky"`. The preset is
# named, never typed out: `preset = ""` is the package's default (`s2c2seg.presets.DEFAULT_PRESET`),
# `"released++"` or `"paper"` the others, and `overrides = {"select.tau": 0.5}` changes one of its values
# (as `--set select.tau=0.5` does).
#
# With `backend="auto"` real weights are used when they load, otherwise the simulation, and every figure and
# the record say so (`SIMULATED` / `RANDOM WEIGHTS`). The simulation does not look at the picture: it draws
# a simulated scene at the image's size, so its overlay shows the pipeline working, not a segmentation of
# the picture.

# %% tags=["parameters"]
backend = "auto"            # auto (real weights when they load, else sim), pretrained, random or sim
baseline = "proxyclip"      # proxyclip | sclip | clearclip | naclip | maskclip
size = "full"               # model size for backend="random": "full" or "tiny" (CI)
# your photo; empty = a generated picture
image_path = ""
# your words: classes separated by ",", synonyms of one class by ";"
classes = "cat; kitty, sofa, floor"
# a benchmark key (e.g. "voc21") for its protocol, and its names when classes is empty
dataset = ""
# empty = the default preset; "released++" or "paper"
preset = ""
# the preset's values to change, by dotted key (as --set KEY=VALUE)
overrides = {}
seed = 0
# empty = runs/notebooks/interactive/NOTEBOOK
out_dir = ""
# bundle cache shared by the notebooks of a run; empty = none
cache_dir = ""
records_dir = ""
backend_requested = ""

# %%
from pathlib import Path

import numpy as np

from s2c2seg import explain_plot, plots, segment_image, session

plots.use_style()

if image_path:
    image, source = image_path, f"your image {image_path}"
else:  # a picture painted from a simulated scene over the words (not a photo)
    from s2c2seg.segment import parse_classes
    from s2c2seg.sim import SimConfig, make_scene

    words = parse_classes(classes) if classes else dataset
    image = make_scene(words, SimConfig(seed=seed, image_size=(375, 500)), index=0).image
    source = "a generated picture (a simulated scene, painted; not a photo)"

res = segment_image(image, classes or None, baseline=baseline, preset=preset or None, overrides=overrides,
                    backend=backend, size=size, dataset=dataset or None, cache_dir=cache_dir or None, explain=True)
run = res.run
out = Path(out_dir) if out_dir else Path("runs") / "notebooks" / "interactive" / "00_quickstart"
S = session.Session(notebook="00_quickstart", backend=None, info=run["backend"],
                    backend_requested=backend_requested or backend, dataset_name=dataset or "custom",
                    dataset=[res.image], data_source=source, vocab=res.vocab, protocol=run["protocol"],
                    out_dir=out.resolve(), params=dict(backend=backend, baseline=baseline, size=size,
                                                       image_path=image_path, classes=classes, dataset=dataset,
                                                       preset=preset, overrides=overrides, seed=seed))
print(S.banner())
print(f"preset {run['preset']['preset']!r} on {run['preset']['dataset']!r}; protocol: {run['protocol_source']}")

# %%
rows = {c.name: {"synonyms": ", ".join(c.synonyms), "area %": c.area_percent, "kept by CSS": c.selected,
                 "global": c.scores["global"], "spatial": c.scores["spatial"], "confidence": c.scores["confidence"]}
        for c in res.classes}
print(S.markdown_table(rows, "class"))

# %%
palette = plots.label_palette(dataset or None, len(res.classes))
fig = plots.plot_label_maps(res.image, {f"baseline ({baseline})": res.baseline_map,
                                        f"S2C2Seg ({run['preset']['preset']})": res.label_map},
                            res.class_names, palette=palette, title=f"{baseline} vs S2C2Seg on {res.name}",
                            label=S.label)
S.save(fig, "overlays", close=False)

# %% [markdown]
# ## Why S2C2Seg kept each class
#
# Top row: the image with its sliding windows, the baseline and S2C2Seg. Bottom row: each class's global,
# spatial and confidence scores (coloured per column, values printed; α in the title), what each window's
# selection did with each class (candidate union, selected, admitted by the refinement round of
# `released++`), and the fusion weights `w` of the kept classes (the paper preset: its stage-1 union, the
# subset and CSG's `w`).

# %%
fig = explain_plot.explain_figure(res)
S.save(fig, "explanation", close=False)

# %%
values = {"image": res.name, "size": list(res.label_map.shape), "preset": run["preset"]["preset"],
          "subset": res.selected, "subset_names": [res.class_names[i] for i in res.selected],
          "num_classes": len(res.classes), "alpha": res.alpha,
          "areas": {c.name: c.area_percent for c in res.classes},
          "baseline_classes": sorted(int(v) for v in np.unique(res.baseline_map)),
          "s2c2seg_classes": sorted(int(v) for v in np.unique(res.label_map)), "run": run}
print(f"CSS kept {len(res.selected)} of {len(res.classes)} classes:", ", ".join(values["subset_names"]))
S.write_record(values)
