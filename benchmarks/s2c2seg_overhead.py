"""Per-image cost of S2C2Seg on top of SCLIP at VOC21's protocol, and the peak RSS of the run.

SCLIP alone: resize, sliding windows through SCLIP (no global embedding), patch-text cosines, the anchors'
post-processing (``predict(method="baseline")``). SCLIP + S2C2Seg: the full ``Segmenter.encode`` (the same dense
pass with the vanilla global embedding sharing blocks 0..L-2, plus CLIPSeg encode-once over every query) and
``predict(method="s2c2seg")`` (CSS + CSG). Full-size ViT-B/16 CLIP and CLIPSeg rd64 with RANDOM WEIGHTS
(timings do not depend on the weights); short side 336, crop 224, stride 112, the 21 VOC classes (SCLIP's name
file); a random 500 x 375 image. Text embeddings are computed on the first (warm-up) image and reused, as in an
evaluation. Both paths alternate in one process; the ratio of the medians is reported (target <= 2.0x), and the
peak RSS of the whole process (target <= 4 GB).

    .venv/bin/python benchmarks/s2c2seg_overhead.py [--images 3] [--threads 0] [--first-names] [--cache-dir DIR]

Writes ``benchmarks/results/s2c2seg_overhead.json`` (``bench_common.Run``); ``--quick``: tiny test models, one small
image and protocol (the smoke test). ``benchmarks/cost_matrix.py`` measures every baseline and preset.
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
    quick_backend, target)

QUICK = {"size": "tiny", "images": 1, "image_hw": (48, 64), "short_side": 48, "crop": 32, "stride": 16}
"""``--quick``: tiny models, one small image and protocol."""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3, help="timed images per path (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--first-names", action="store_true",
                    help="one query per class (its first name) instead of SCLIP's name file with synonyms")
    ap.add_argument("--cache-dir", default=None, help="text-embedding cache to reuse across runs (default: temporary)")
    ap.add_argument("--size", default="full", choices=["full", "tiny"], help="tiny: the test models")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    add_protocol_arguments(ap)
    add_output_arguments(ap, quick="tiny models, one small image and protocol (the smoke test)")
    args = parse_quick(ap, argv, QUICK)
    run = Run("s2c2seg_overhead", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    from s2c2seg.bundle import FeatureBundle
    from s2c2seg.data import Sample, Vocabulary
    from s2c2seg.data.names import vocabulary
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.predict import predict
    from s2c2seg.factories import build_backend

    protocol = protocol_from_args(get_protocol("voc21", "sclip"), args)
    vocab = vocabulary("voc21", "sclip")
    if args.first_names:
        vocab = Vocabulary.from_names(vocab.names, variant="voc21-first-names")
    rng = np.random.default_rng(0)
    h, w = args.image_hw
    images = [Sample(f"r{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(args.images + 1)]

    with tempfile.TemporaryDirectory() as tmp:
        seg = (quick_backend("sclip", args.cache_dir or tmp) if args.quick else
               build_backend("random", baseline="sclip", size=args.size, cache_dir=args.cache_dir or tmp))
        q = len(vocab.queries)

        def sclip_alone(sample):
            logits, boxes, hw, _, _, _ = seg.dense(sample, vocab, protocol)
            bundle = FeatureBundle(logits, boxes, torch.tensor(hw), torch.tensor(sample.image.shape[:2]),
                                   vocab.query_to_class)  # the baseline reads no S2C2Seg source
            return predict(bundle, protocol, method="baseline").label_map

        def with_s2c2seg(sample):
            bundle = seg.encode(sample, vocab, protocol)
            return predict(bundle, protocol, method="s2c2seg", background=0).label_map, bundle

        t = time.perf_counter()
        sclip_alone(images[0])
        _, bundle = with_s2c2seg(images[0])
        warm = time.perf_counter() - t
        t_base, t_s2 = [], []
        for sample in images[1:]:
            for fn, acc in ((sclip_alone, t_base), (with_s2c2seg, t_s2)):
                t = time.perf_counter()
                fn(sample)
                acc.append(time.perf_counter() - t)
    base, s2 = statistics.median(t_base), statistics.median(t_s2)
    label = "RANDOM WEIGHTS" + ("" if args.size == "full" else " (tiny test models)")
    print(f"SCLIP vs SCLIP + S2C2Seg ({label}), VOC21 protocol (short {protocol.short_side}, crop "
          f"{protocol.crop}, stride {protocol.stride}), {vocab.num_classes} classes / {q} queries, {w}x{h} image, "
          f"{len(bundle.crop_boxes)} crops, torch threads={torch.get_num_threads()}")
    print(f"warm-up image (both paths, text embeddings included): {warm:.1f} s")
    print(f"SCLIP alone:       {base * 1000:8.0f} ms / image  (runs: {[round(t, 2) for t in t_base]})")
    print(f"SCLIP + S2C2Seg:   {s2 * 1000:8.0f} ms / image  (runs: {[round(t, 2) for t in t_s2]})")
    print(f"ratio: {s2 / base:.2f}x (target <= 2.0x); bundle {bundle.nbytes() / 1024:.0f} KiB / image; "
          f"peak RSS {peak_rss_gb():.2f} GB (target <= 4 GB)")
    figures = {"SCLIP alone": figure(round(base * 1000), "ms / image"),
               "SCLIP + S2C2Seg": figure(round(s2 * 1000), "ms / image"),
               "ratio": figure(round(s2 / base, 2), "x"),
               "bundle": figure(round(bundle.nbytes() / 1024), "KiB / image"),
               "peak RSS": figure(round(peak_rss_gb(), 2), "GB"), "queries": figure(q),
               "windows": figure(len(bundle.crop_boxes))}
    return run.finish("SCLIP + S2C2Seg (the default encode) vs SCLIP alone, VOC21 protocol", label, figures,
                      [target("ratio", "<=", 2.0, issue=3), target("peak RSS", "<=", 4.0, issue=3)])


if __name__ == "__main__":
    main()
