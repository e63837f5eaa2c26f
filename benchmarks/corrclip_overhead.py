"""Per-image time of CorrCLIP alone vs CorrCLIP + S2C2Seg's extra sources (target <= 1.5x).

Full-size architectures with RANDOM WEIGHTS (timings do not depend on the weights): CLIP ViT-B-16-quickgelu
(MetaCLIP's architecture), DINO ViT-B/8, CLIPSeg rd64-refined. One VOC-sized image (500 x 375 RGB), the
CorrCLIP VOC21 protocol (short side 336 -> 448 x 336, crop 336, stride 112: 2 crops), 21 VOC class names,
a random region map shaped like SAM2 masks (``--regions`` regions, a quarter of the pixels unsegmented).

* CorrCLIP alone: ``Segmenter.dense`` (DINO q+k, region merge, scope attention, the three branches, per crop)
  plus the anchors' post-processing with the region vote (``predict(method="baseline")``).
* CorrCLIP + S2C2Seg: ``Segmenter.encode`` (the same dense pass returning the vanilla global embedding from the
  shared blocks 0..L-2, CLIPSeg encode-once over the whole vocabulary) plus ``predict(method="s2c2seg")``
  (CSS + CSG + the same post-processing).

Text embeddings (CLIP and CLIPSeg) are computed once in the warm-up and reused, as over a dataset. The two paths
run interleaved in one process, ``--repeats`` times each; medians are reported.

    .venv/bin/python benchmarks/corrclip_overhead.py [--repeats 3] [--regions 40] [--threads 0] [--quick]

Writes ``benchmarks/results/corrclip_overhead.json`` (``bench_common.Run``; ``--out-dir DIR``); ``--quick``: tiny
test models, one small image and protocol, one repeat (the smoke test).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from bench_common import (
    Run, add_output_arguments, add_protocol_arguments, figure, parse_quick, peak_rss_gb, protocol_from_args,
    quick_backend, target)

QUICK = {"size": "tiny", "repeats": 1, "regions": 6, "image_hw": (48, 64), "short_side": 48, "crop": 32,
         "stride": 16}
"""``--quick``: tiny models, one small image and protocol."""


def sam_like_regions(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    """(h, w) int32: n Voronoi cells (ids 1..n) with a quarter of the pixels left unsegmented (id 0)."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform((0, 0), (h, w), size=(n, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    regions = d.argmin(-1).astype(np.int32) + 1
    unsegmented = rng.permutation(n)[: n // 4] + 1
    regions[np.isin(regions, unsegmented)] = 0
    return regions


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--regions", type=int, default=40, help="regions in the random SAM-like mask")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--size", default="full", choices=["full", "tiny"], help="tiny: the test models")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    add_protocol_arguments(ap)
    add_output_arguments(ap, quick="tiny models, one small image and protocol (the smoke test)")
    args = parse_quick(ap, argv, QUICK)
    run = Run("corrclip_overhead", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)

    from s2c2seg.bundle import FeatureBundle
    from s2c2seg.data.names import vocabulary
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.data.sample import Sample
    from s2c2seg.predict import predict
    from s2c2seg.factories import build_backend

    protocol = protocol_from_args(get_protocol("voc21", "corrclip"), args)
    vocab = vocabulary("voc21", "corrclip")
    rng = np.random.default_rng(0)
    h, w = args.image_hw
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    sample = Sample("bench", image, regions=sam_like_regions(h, w, args.regions))

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        seg = (quick_backend("corrclip", cache) if args.quick else
               build_backend("random", baseline="corrclip", size=args.size, cache_dir=cache))
        t_load = time.perf_counter() - t0
        seen = {}

        def corrclip_alone():
            logits, boxes, (rh, rw), _, _, _ = seg.dense(sample, vocab, protocol, with_global=False)
            seen.update(crops=len(boxes), resized=(rh, rw))
            bundle = FeatureBundle(  # no S2C2Seg source: the baseline path reads none
                dense_logits=logits, crop_boxes=boxes, resized_hw=torch.tensor([rh, rw]),
                image_hw=torch.tensor(image.shape[:2]), query_to_class=torch.as_tensor(vocab.query_to_class),
                regions=torch.from_numpy(sample.regions))
            return predict(bundle, protocol, method="baseline")

        def corrclip_s2c2seg():
            bundle = seg.encode(sample, vocab, protocol)
            return predict(bundle, protocol, method="s2c2seg", background=0)

        t0 = time.perf_counter()
        corrclip_s2c2seg()  # warm-up: text embeddings (CLIP templates, CLIPSeg names) are computed here once
        corrclip_alone()
        t_warm = time.perf_counter() - t0
        t_alone, t_both = [], []
        for _ in range(args.repeats):
            for fn, acc in ((corrclip_alone, t_alone), (corrclip_s2c2seg, t_both)):
                t = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t)

    alone, both = statistics.median(t_alone), statistics.median(t_both)
    rss_gb = peak_rss_gb()
    label = "RANDOM WEIGHTS" + ("" if args.size == "full" else " (tiny test models)")
    print(f"CorrCLIP vs CorrCLIP + S2C2Seg — {label}, {args.size} architectures "
          "(CLIP ViT-B-16-quickgelu, DINO ViT-B/8, CLIPSeg rd64)")
    print(f"image {w}x{h} -> {seen['resized'][1]}x{seen['resized'][0]} (short side {protocol.short_side}), "
          f"crop {protocol.crop}, stride {protocol.stride} ({seen['crops']} crops); {len(vocab.queries)} queries; "
          f"{args.regions} regions; "
          f"torch threads={torch.get_num_threads()}; load {t_load:.1f} s, warm-up {t_warm:.1f} s")
    print(f"CorrCLIP alone:     {alone * 1000:8.0f} ms/image  (runs: {[round(t, 2) for t in t_alone]})")
    print(f"CorrCLIP + S2C2Seg: {both * 1000:8.0f} ms/image  (runs: {[round(t, 2) for t in t_both]})")
    print(f"ratio: {both / alone:.2f}x (target <= 1.5x); peak RSS {rss_gb:.2f} GB; "
          f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    figures = {"CorrCLIP alone": figure(round(alone * 1000), "ms / image"),
               "CorrCLIP + S2C2Seg": figure(round(both * 1000), "ms / image"),
               "ratio": figure(round(both / alone, 2), "x"), "peak RSS": figure(round(rss_gb, 2), "GB"),
               "crops": figure(seen["crops"]), "queries": figure(len(vocab.queries))}
    return run.finish("CorrCLIP + S2C2Seg (the default encode) vs CorrCLIP alone, VOC21 protocol", label, figures,
                      [target("ratio", "<=", 1.5, issue=7)])


if __name__ == "__main__":
    main()
