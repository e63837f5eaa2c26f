"""Encode cost of the S2C2Seg release's per-window sources on top of ProxyCLIP, bundle bytes, and peak RSS.

Three paths on the same images, alternating in one process (full-size ViT-B/16 CLIP, DINO ViT-B/8 and a CLIPSeg
of the rd64-refined shape, RANDOM WEIGHTS: timings do not depend on the weights), VOC21 under ProxyCLIP's
protocol (short side 336, crop 336, stride 112: 2 windows on a 500 x 375 image) with ProxyCLIP's name file
(21 classes, 46 queries):

* ``baseline``: ``Segmenter.dense`` (ProxyCLIP's dense logits alone);
* ``paper``: ``Segmenter.encode`` with ``window_sources=False`` (+ global embedding, whole-image CLIPSeg);
* ``released``: ``Segmenter.encode`` with the default ``window_sources=True`` (+ per-window CLS cosine and
  CLIPSeg fed every window as the release does, vision once per window, all queries' decoder).

Text embeddings are computed on the warm-up image and reused, as in an evaluation. Prints the medians, the
ratios, the bundle bytes per image (measured, and the same computed from the shapes for COCO-Stuff's 171
queries) and the process's peak RSS (target <= 4 GB).

    .venv/bin/python benchmarks/released_sources.py [--images 2] [--threads 0] [--cache-dir DIR]

Writes ``benchmarks/results/released_sources.json`` (``bench_common.Run``; ``--out-dir DIR``); ``--quick``: tiny
test models, one small image and protocol (the smoke test).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from bench_common import (
    Run, add_output_arguments, add_protocol_arguments, figure, parse_quick, peak_rss_gb, protocol_from_args,
    quick_backend)

FLOAT32, FLOAT16, INT64 = 4, 2, 8
QUICK = {"images": 1, "image_hw": (48, 64), "short_side": 48, "crop": 32, "stride": 16}
"""``--quick``: tiny models (``bench_common.quick_backend``), one small image and protocol."""


def bundle_bytes(n: int, q: int, grid: int, window: tuple[int, int], resized: tuple[int, int], store: int,
                 local_bytes: int) -> dict[str, int]:
    """Bytes per field of a ProxyCLIP bundle from its shapes (N windows, Q queries, DINO grid, window size)."""
    return {
        "dense_logits": n * q * grid * grid * FLOAT32,
        "window_local": n * q * window[0] * window[1] * local_bytes,
        "window_global": n * q * FLOAT32,
        "input_image": 3 * resized[0] * resized[1] * FLOAT32,
        "clipseg_maps": q * store * store * FLOAT16,
        "per-query vectors + geometry": 2 * q * FLOAT32 + q * INT64 + n * 4 * INT64 + 2 * 2 * INT64 + 4 * INT64,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2, help="timed images per path (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--cache-dir", default=None, help="text-embedding cache to reuse across runs (default: temporary)")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    add_protocol_arguments(ap)
    add_output_arguments(ap, quick="tiny models, one small image and protocol (the smoke test)")
    args = parse_quick(ap, argv, QUICK)
    run = Run("released_sources", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    from s2c2seg.data import Sample
    from s2c2seg.data.names import vocabulary
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.segmenter import Segmenter, SegmenterConfig
    from s2c2seg.factories import build_backend

    protocol = protocol_from_args(get_protocol("voc21", "proxyclip"), args)
    vocab = vocabulary("voc21", "proxyclip")
    rng = np.random.default_rng(0)
    h, w = args.image_hw
    images = [Sample(f"r{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(args.images + 1)]

    with tempfile.TemporaryDirectory() as tmp:
        seg = (quick_backend("proxyclip", args.cache_dir or tmp) if args.quick else
               build_backend("random", baseline="proxyclip", size="full", cache_dir=args.cache_dir or tmp))
        paper = Segmenter(seg.baseline, seg.clip, seg.clipseg, seg.text, vfm=seg.vfm,
                          config=SegmenterConfig(window_sources=False))
        paths = {
            "baseline": lambda s: seg.dense(s, vocab, protocol),
            "paper": lambda s: paper.encode(s, vocab, protocol),
            "released": lambda s: seg.encode(s, vocab, protocol),
        }
        t = time.perf_counter()
        for fn in paths.values():
            fn(images[0])
        warm = time.perf_counter() - t
        times: dict[str, list[float]] = {k: [] for k in paths}
        for sample in images[1:]:
            for name, fn in paths.items():
                t = time.perf_counter()
                out = fn(sample)
                times[name].append(time.perf_counter() - t)
                if name == "released":
                    bundle = out
    med = {k: statistics.median(v) for k, v in times.items()}
    q, n = len(vocab.queries), len(bundle.crop_boxes)
    label = "RANDOM WEIGHTS" + (" (tiny test models)" if args.quick else "")
    print(f"ProxyCLIP + the release's per-window sources ({label}), VOC21 protocol (short "
          f"{protocol.short_side}, crop {protocol.crop}, stride {protocol.stride}), {vocab.num_classes} classes / "
          f"{q} queries, {w}x{h} image, {n} windows {tuple(bundle.window_local.shape[-2:])}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"warm-up image (all paths, text embeddings included): {warm:.1f} s")
    for name in paths:
        print(f"{name:9s} {med[name] * 1000:8.0f} ms / image  (runs: {[round(t, 2) for t in times[name]]})")
    print(f"released / baseline: {med['released'] / med['baseline']:.2f}x; released / paper: "
          f"{med['released'] / med['paper']:.2f}x; peak RSS {peak_rss_gb():.2f} GB (target <= 4 GB)")
    grid = int(bundle.dense_logits.shape[-1])
    window = tuple(int(v) for v in bundle.window_local.shape[-2:])
    resized = tuple(int(v) for v in bundle.resized_hw)
    store = int(bundle.clipseg_maps.shape[-1])
    shapes = bundle_bytes(n, q, grid, window, resized, store, FLOAT32)
    print(f"VOC21 bundle, measured: {bundle.nbytes():,} B; from shapes: {sum(shapes.values()):,} B "
          f"({', '.join(f'{k} {v:,}' for k, v in shapes.items())})")
    figures = {f"{k} (encode)": figure(round(med[k], 2), "s / image") for k in paths}
    figures.update({"paper / baseline": figure(round(med["paper"] / med["baseline"], 2), "x"),
                    "released / baseline": figure(round(med["released"] / med["baseline"], 2), "x"),
                    "released / paper": figure(round(med["released"] / med["paper"], 2), "x"),
                    "peak RSS": figure(round(peak_rss_gb(), 2), "GB"),
                    "bundle bytes, measured": figure(bundle.nbytes(), "B")})
    for name, queries in (("VOC21", q), ("COCO-Stuff (640x480 -> 336x448, 2 windows)", 171)):
        for storage, nbytes in (("exact", FLOAT32), ("compact-float16", FLOAT16)):
            total = sum(bundle_bytes(n, queries, grid, window, resized, store, nbytes).values())
            print(f"  {name}, {queries} queries, storage {storage}: {total / 1e6:.1f} MB / image")
            figures[f"{name.split(' ')[0]} bundle from the shapes, {queries} queries, {storage}"] = figure(
                round(total / 1e6, 1), "MB / image")
    return run.finish("Encode cost of the release's per-window sources on top of ProxyCLIP, VOC21 protocol", label,
                      figures)


if __name__ == "__main__":
    main()
