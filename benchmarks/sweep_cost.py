"""Cost of a 100-point sweep over a cached split vs one uncached evaluation of the same split (one process).

RANDOM WEIGHTS: full-size architectures (open_clip ViT-B/16, CLIPSeg rd64 with the refined decoder config, and
for the released presets ProxyCLIP's DINO ViT-B/8) with random weights; the timings do not depend on the
weights, the mIoU numbers are meaningless and not printed. The split is generated (VOC21 layout, 375 x 500
images, the VOC size).

    .venv/bin/python benchmarks/sweep_cost.py --images 4 --threads 1                       # paper preset, SCLIP
    .venv/bin/python benchmarks/sweep_cost.py --images 2 --preset released++               # released, ProxyCLIP

Steps: (1) the vocabulary's text embeddings are computed once and cached (a per-vocabulary cost, not a
per-image one, so it is excluded from both sides); (2) one uncached evaluation of ``--images`` images with
``method=s2c2seg`` under ``--preset``, writing the bundle cache (the Segmenter computes the sources that preset
reads, as ``s2c2seg eval`` builds it); (3) a sweep of 100 grid points read from that
cache. Target: (3) <= 2 x (2).

* ``--preset paper`` (SCLIP, the anchors' VOC21/SCLIP protocol): 5 tau x 5 lambda x 4 fusion modes.
* ``--preset released`` / ``released++`` (ProxyCLIP, its VOC21 protocol, the release's only baseline): point 0
  is the preset itself, points 1..99 draw each of :data:`RELEASED_AXES`' dotted keys (τ, λ, guide weight,
  rerank weight, k_max, t_max, θ_high, admit cap, Otsu C, spatial-refinement iterations) from its values
  (seeded, :func:`released_grid`), every other key the preset's VOC21 value.
Also printed: the cache's bytes per image, measured on the bundles just written, and computed from the
bundle shapes of full-size models at the VOC21 and COCO-Stuff protocols.

Writes ``benchmarks/results/sweep_cost.json`` (paper) or ``sweep_cost_released.json`` (``released`` /
``released++``) through ``bench_common.Run`` (``--out-dir DIR``); ``--quick``: tiny test models, 2 small images and
a small protocol (and 4 points for a released preset; the smoke test).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
from bench_common import (Run, add_output_arguments, add_protocol_arguments, figure, parse_quick, protocol_from_args,
                          target)

from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import evaluate
from s2c2seg.runspec import EncodeSpec
from s2c2seg.presets import get_preset
from s2c2seg.factories import build_backend
from s2c2seg.slide import rescale_size, slide_boxes
from s2c2seg.sweep import sweep

GRID = {"tau": [0.1, 0.2, 0.3, 0.5, 1.0], "lam": [0.2, 0.6, 1.0, 1.5, 2.0],
        "mode": ["category_aware", "uniform", "add", "global_only"]}
"""The paper preset's 100-point grid."""
RELEASED_AXES = {
    "select.tau": [0.2, 0.3, 0.4, 0.5, 0.6],
    "fusion.lam": [0.05, 0.1, 0.15, 0.2, 0.3],
    "fusion.guide_weight": [0.0, 0.03, 0.07, 0.1],
    "select.conf_weight": [0.1, 0.2, 0.3],
    "select.k_max": [None, 8, 12],
    "refine.t_max": [0, 1, 2],
    "refine.theta_high": [0.7, 0.8, 0.9],
    "refine.admit_cap": [1, 3, 5],
    "post.otsu_c": [None, 0.35, 0.5],
    "post.spatial.iterations": [0, 1, 3],
}
"""The released presets' downstream settings swept, each key's values (issue 10's list)."""
N_POINTS = 100
GRID_SEED = 0
TARGET = 2.0
"""Issues 4 and 10: a 100-point sweep from the cache costs at most this times one uncached pass."""
QUICK = {"size": "tiny", "images": 2, "image_hw": (48, 64), "short_side": 48, "crop": 32, "stride": 16}
"""``--quick``: tiny models, two small images and a small protocol."""


def released_grid(n_points: int = N_POINTS, seed: int = GRID_SEED) -> list[dict]:
    """Explicit points: the preset itself, then ``n_points - 1`` seeded draws of every axis of RELEASED_AXES."""
    rng = random.Random(seed)
    return [{}] + [{k: rng.choice(v) for k, v in RELEASED_AXES.items()} for _ in range(n_points - 1)]


def bundle_bytes(h: int, w: int, dataset: str, baseline: str, grid_stride: int, store: int = 88,
                 dense_bytes: int = 4) -> dict:
    """Bytes of a FeatureBundle computed from its shapes (safetensors payload; the JSON header adds ~1 kB)."""
    proto = get_protocol(dataset, baseline)
    q = len(vocabulary(dataset, proto.name_variant).queries)
    rh, rw = rescale_size(h, w, proto.short_side)
    boxes = slide_boxes(rh, rw, proto.crop, proto.stride)
    dense = sum((int(b[1] - b[0]) // grid_stride) * (int(b[3] - b[2]) // grid_stride) for b in boxes) * q * dense_bytes
    other = boxes.numel() * 8 + 2 * 8 * 2 + q * 4 * 2 + q * store * store * 2 + q * 8
    return {"dataset": dataset, "baseline": baseline, "image": f"{h}x{w}", "resized": f"{rh}x{rw}",
            "crops": int(boxes.shape[0]), "queries": q, "dense_bytes": dense, "total_bytes": dense + other}


def _params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--preset", default="paper", choices=["paper", "released", "released++"],
                    help="paper: SCLIP and the tau x lambda x mode grid; released*: ProxyCLIP and released_grid()")
    ap.add_argument("--points", type=int, default=N_POINTS, help="grid points of a released preset's sweep")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    add_protocol_arguments(ap)
    add_output_arguments(ap, quick="tiny models, 2 small images, a small protocol (the smoke test)")
    args = parse_quick(ap, argv, QUICK)
    if args.quick:
        args.points = min(args.points, 4)
    released = args.preset != "paper"
    run = Run("sweep_cost_released" if released else "sweep_cost", argv, args.out_dir, args.quick,
              script="sweep_cost")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sweep_cost_"))
    shutil.rmtree(work / "cache", ignore_errors=True)  # the uncached pass must start empty (text cache is kept)
    root = write_fixture("voc21", work / "VOC2012", n_images=args.images, seed=0, size=tuple(args.image_hw))
    ds = load_dataset("voc21", root)
    baseline = "proxyclip" if released else "sclip"
    proto = protocol_from_args(get_protocol("voc21", baseline), args)
    vocab = vocabulary("voc21", proto.name_variant)
    grid = released_grid(args.points) if released else GRID
    preset = args.preset
    resolved = get_preset(preset, "voc21")  # the Segmenter that `s2c2seg eval --preset <preset>` builds:
    config = EncodeSpec.of("s2c2seg", resolved).segmenter_config("cpu")  # its sources only
    backend = build_backend("random", baseline=baseline, size=args.size, cache_dir=work / "text", config=config)
    vfm = "" if backend.vfm is None else f", VFM {backend.vfm.name} {_params(backend.vfm.model):.1f} M params"
    print(f"RANDOM WEIGHTS, size={args.size}, preset {preset}, baseline {baseline}, bundle sources "
          f"{backend.describe()['sources']}: CLIP "
          f"{backend.clip.model_name} {_params(backend.clip.model):.1f} M params, CLIPSeg "
          f"{_params(backend.clipseg.model):.1f} M params{vfm}; torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"split: {len(ds)} generated VOC21 images {args.image_hw[0]}x{args.image_hw[1]}; protocol {proto.to_json()}; "
          f"{vocab.num_classes} classes / {len(vocab.queries)} queries")
    t = time.perf_counter()
    backend.text.encode(vocab)  # per-vocabulary, cached on disk: excluded from both sides
    print(f"text embeddings (once per vocabulary, excluded): {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    rec = evaluate(ds, backend, vocab, proto, method="s2c2seg", preset=preset, cache_dir=work / "cache",
                   progress=False)
    uncached = time.perf_counter() - t
    files = sorted((work / "cache").glob("*/*.safetensors"))
    measured = sum(f.stat().st_size for f in files) / len(files)
    print(f"uncached evaluation (encode + predict + write cache): {uncached:.1f} s "
          f"({uncached / len(ds):.2f} s/image; encode {rec.timing['encode_seconds']:.1f} s)")

    t = time.perf_counter()
    res = sweep(ds, backend, vocab, proto, grid, preset=preset, cache_dir=work / "cache", progress=False)
    swept = time.perf_counter() - t
    n_points = len(res.points)
    print(f"{n_points}-point sweep from the cache: {swept:.1f} s ({swept / len(ds):.2f} s/image, "
          f"{1000 * swept / len(ds) / n_points:.1f} ms per image per point; bundle read + full-size maps "
          f"{res.bundle_seconds:.1f} s)")
    print(f"ratio sweep / uncached pass: {swept / uncached:.2f} (target <= 2.0)  "
          f"load average now {os.getloadavg()[0]:.1f}")
    print(f"cache bytes per image, measured (VOC21 {args.image_hw[0]}x{args.image_hw[1]}, {baseline}, "
          f"{args.size}): {measured / 1e6:.2f} MB")
    result = {"uncached": uncached, "swept": swept, "ratio": swept / uncached, "points": n_points,
              "eval_cache": rec.cache, "sweep_cache": res.records[0].cache, "records": res.records}
    print(f"bundle cache: uncached pass {rec.cache}; sweep {res.records[0].cache} (each bundle read once for "
          f"all {n_points} points)")
    label = "RANDOM WEIGHTS" + ("" if args.size == "full" else " (tiny test models)")
    figures = {"uncached pass": figure(round(uncached, 1), "s"), "sweep from the cache": figure(round(swept, 1), "s"),
               "per image per point": figure(round(1000 * swept / len(ds) / n_points, 1), "ms"),
               "ratio sweep / uncached pass": figure(round(swept / uncached, 2), "x"), "points": figure(n_points),
               "images": figure(len(ds)), "cache bytes per image": figure(round(measured / 1e6, 2), "MB"),
               "bundle reads in the sweep (cache hits)": figure(res.records[0].cache["hits"]),
               "cache misses in the sweep": figure(res.records[0].cache["misses"])}
    result["json"] = run.finish(f"{n_points}-point sweep from the cache vs one uncached pass, preset {preset}, "
                                f"{baseline}, VOC21", label, figures,
                                [target("ratio sweep / uncached pass", "<=", TARGET, issue=10 if released else 4),
                                 target("cache misses in the sweep", "==", 0)])
    if released:
        return result
    print("cache bytes per image from the bundle shapes of full-size models (dense float32, CLIPSeg 88x88 fp16):")
    for row in (bundle_bytes(375, 500, "voc21", "sclip", 16), bundle_bytes(375, 500, "voc21", "proxyclip", 8),
                bundle_bytes(480, 640, "coco_stuff164k", "sclip", 16),
                bundle_bytes(480, 640, "coco_stuff164k", "proxyclip", 8)):
        print(f"  {row['dataset']:>15} {row['baseline']:>9} image {row['image']} -> {row['resized']}, "
              f"{row['crops']} crops x {row['queries']} queries: dense {row['dense_bytes'] / 1e6:.2f} MB, "
              f"total {row['total_bytes'] / 1e6:.2f} MB")
    return result


if __name__ == "__main__":
    main()
