"""Cost of a 100-point sweep over a cached split vs one uncached evaluation of the same split (one process).

RANDOM WEIGHTS: full-size architectures (open_clip ViT-B/16 for SCLIP, CLIPSeg rd64 with the refined
decoder config) with random weights; the timings do not depend on the weights, the mIoU numbers are
meaningless and not printed. The split is generated (VOC21 layout, 375 x 500 images, the VOC size).

    .venv/bin/python benchmarks/sweep_cost.py --images 4 --threads 1

Steps: (1) the vocabulary's text embeddings are computed once and cached (a per-vocabulary cost, not a
per-image one, so it is excluded from both sides); (2) one uncached evaluation of ``--images`` images with
``method=s2c2seg`` at the anchors' VOC21/SCLIP protocol, writing the bundle cache; (3) a sweep of 100 grid
points (5 tau x 5 lambda x 4 fusion modes) read from that cache. Target: (3) <= 2 x (2).
Also printed: the cache's bytes per image, measured on the bundles just written, and computed from the
bundle shapes of full-size models at the VOC21 and COCO-Stuff protocols.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import evaluate
from s2c2seg.segmenter import build_backend
from s2c2seg.slide import rescale_size, slide_boxes
from s2c2seg.sweep import sweep

GRID = {"tau": [0.1, 0.2, 0.3, 0.5, 1.0], "lam": [0.2, 0.6, 1.0, 1.5, 2.0],
        "mode": ["category_aware", "uniform", "add", "global_only"]}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sweep_cost_"))
    shutil.rmtree(work / "cache", ignore_errors=True)  # the uncached pass must start empty (text cache is kept)
    root = write_fixture("voc21", work / "VOC2012", n_images=args.images, seed=0, size=(375, 500))
    ds = load_dataset("voc21", root)
    proto = get_protocol("voc21", "sclip")
    vocab = vocabulary("voc21", proto.name_variant)
    backend = build_backend("random", baseline="sclip", size=args.size, cache_dir=work / "text")
    print(f"RANDOM WEIGHTS, size={args.size}: CLIP {backend.clip.model_name} {_params(backend.clip.model):.1f} M "
          f"params, CLIPSeg {_params(backend.clipseg.model):.1f} M params; torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"split: {len(ds)} generated VOC21 images 375x500; protocol {proto.to_json()}; "
          f"{vocab.num_classes} classes / {len(vocab.queries)} queries")
    t = time.perf_counter()
    backend.text.encode(vocab)  # per-vocabulary, cached on disk: excluded from both sides
    print(f"text embeddings (once per vocabulary, excluded): {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    rec = evaluate(ds, backend, vocab, proto, method="s2c2seg", cache_dir=work / "cache", progress=False)
    uncached = time.perf_counter() - t
    files = sorted((work / "cache").glob("*/*.safetensors"))
    measured = sum(f.stat().st_size for f in files) / len(files)
    print(f"uncached evaluation (encode + predict + write cache): {uncached:.1f} s "
          f"({uncached / len(ds):.2f} s/image; encode {rec.timing['encode_seconds']:.1f} s)")

    t = time.perf_counter()
    res = sweep(ds, backend, vocab, proto, GRID, cache_dir=work / "cache", progress=False)
    swept = time.perf_counter() - t
    n_points = len(res.points)
    print(f"{n_points}-point sweep from the cache: {swept:.1f} s ({swept / len(ds):.2f} s/image, "
          f"{1000 * swept / len(ds) / n_points:.1f} ms per image per point; bundle read + full-size maps "
          f"{res.bundle_seconds:.1f} s)")
    print(f"ratio sweep / uncached pass: {swept / uncached:.2f} (target <= 2.0)  "
          f"load average now {os.getloadavg()[0]:.1f}")
    print(f"cache bytes per image, measured (VOC21 375x500, SCLIP, {args.size}): {measured / 1e6:.2f} MB")
    print("cache bytes per image from the bundle shapes of full-size models (dense float32, CLIPSeg 88x88 fp16):")
    for row in (bundle_bytes(375, 500, "voc21", "sclip", 16), bundle_bytes(375, 500, "voc21", "proxyclip", 8),
                bundle_bytes(480, 640, "coco_stuff164k", "sclip", 16),
                bundle_bytes(480, 640, "coco_stuff164k", "proxyclip", 8)):
        print(f"  {row['dataset']:>15} {row['baseline']:>9} image {row['image']} -> {row['resized']}, "
              f"{row['crops']} crops x {row['queries']} queries: dense {row['dense_bytes'] / 1e6:.2f} MB, "
              f"total {row['total_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
