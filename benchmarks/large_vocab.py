"""Peak RSS and downstream time per image for large vocabularies, each C in a fresh subprocess (one process each).

SIMULATED (``--backend sim``) or RANDOM WEIGHTS (``--backend random``: the real Segmenter on tiny open_clip +
tiny CLIPSeg, ``build_backend("random", size="tiny")``, one text template, CLIPSeg at ``--clipseg-input``² for CPU
speed, ``window_local`` stored ``compact-<--window-store-size>-float16``); no number here is a segmentation result.

    .venv/bin/python benchmarks/large_vocab.py --classes 1000 4000 20000 --backend sim random

Per C: the vocabulary ``class0 .. class{C-1}`` (one name per class), ``--images`` simulated 64x64 scenes, a
whole-image protocol at short side 64. Encode (sim: the simulated sources; random: text embeddings + models)
then ``predict`` with ``method="s2c2seg"`` and ``"baseline"``. ``shapes``: RANDOM VALUES in the bundle shapes of
the real segmenter on a VOC-sized 375 x 500 image (SCLIP's protocol: short side 336, crop 224, stride 112, a
14 x 14 ViT-B/16 grid, 88-px CLIPSeg store), to measure the downstream at the real path's sizes.
Printed: encode seconds per image, downstream
(both predicts) seconds per image, peak RSS of the subprocess. Targets: <= 4 GB at 20,000 classes, time roughly
linear in C. Writes ``benchmarks/results/large_vocab.json`` (``bench_common.Run``; ``--out-dir DIR``); ``--quick``:
C = 16 on the sim and random backends (the smoke test).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

from bench_common import Run, add_output_arguments, figure, target

TARGET_MIB = 4096
"""Issue 13: peak RSS at most 4 GiB at 20,000 classes."""
LABELS = {"sim": "SIMULATED", "shapes": "RANDOM VALUES (real bundle shapes)", "random": "RANDOM WEIGHTS (tiny)"}

CHILD = textwrap.dedent("""
    import json, resource, sys, time, tempfile
    c, backend_name, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    CLIPSEG_INPUT, WINDOW_STORE = int(sys.argv[4]), int(sys.argv[5])
    import torch
    from s2c2seg.data.protocols import Protocol
    from s2c2seg.predict import predict
    from s2c2seg.factories import build_backend
    from s2c2seg.sim import SimConfig, SimDataset
    torch.set_num_threads(1)

    class ShapesBackend:
        # RANDOM VALUES in the real segmenter bundle shapes (ViT-B/16 grid, 88-px CLIPSeg store)
        def encode(self, sample, vocab, protocol):
            from s2c2seg.bundle import FeatureBundle
            from s2c2seg.slide import rescale_size, slide_boxes
            g = torch.Generator().manual_seed(0)
            h, w = sample.label.shape
            rh, rw = rescale_size(h, w, protocol.short_side)
            boxes = slide_boxes(rh, rw, protocol.crop, protocol.stride)
            q = len(vocab.queries)
            maps = torch.rand(q, 88, 88, generator=g).half()
            return FeatureBundle(dense_logits=0.2 + 0.05 * torch.randn(len(boxes), q, 14, 14, generator=g),
                                 crop_boxes=boxes, resized_hw=torch.tensor([rh, rw]), image_hw=torch.tensor([h, w]),
                                 global_sim=0.2 + 0.02 * torch.randn(q, generator=g),
                                 clipseg_mean=maps.float().mean((1, 2)),
                                 clipseg_maps=maps, query_to_class=vocab.query_to_class)

    class ShapesDataset:
        def __init__(self, c, n):
            import numpy as np
            from s2c2seg.data.sample import Sample
            from s2c2seg.data.vocab import Vocabulary
            self.vocab = Vocabulary.from_names([f"class{i}" for i in range(c)])
            self.items = [Sample(f"shape{i}", np.zeros((375, 500, 3), np.uint8), np.zeros((375, 500), np.int64))
                          for i in range(n)]
        def __iter__(self):
            return iter(self.items)
    ds = SimDataset(c, SimConfig(seed=0, released_sources=False), n)
    proto = Protocol(short_side=64, crop=0, stride=1)
    if backend_name == "shapes":
        ds = ShapesDataset(c, n)
        proto = Protocol(short_side=336, crop=224, stride=112)
        backend = ShapesBackend()
    elif backend_name == "sim":
        backend = build_backend("sim", cfg=SimConfig(seed=0, released_sources=False))
    else:
        # RANDOM WEIGHTS, the real Segmenter: one text template, CLIPSeg at a reduced input (speed on CPU),
        # window maps stored compact (window_store_size); encode decodes CLIPSeg in chunks of queries
        from s2c2seg.models.clipseg import ClipSeg, ClipSegSettings, tiny_clipseg_config
        from s2c2seg.models.text import TextEncoder
        from s2c2seg.segmenter import Segmenter, SegmenterConfig
        cache = tempfile.mkdtemp()
        cfg = SegmenterConfig(window_storage="float16", window_store_size=WINDOW_STORE)
        tiny = build_backend("random", size="tiny", cache_dir=cache, config=cfg)
        clipseg = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache,
                          settings=ClipSegSettings(input_size=CLIPSEG_INPUT, decoder_chunk=128))
        backend = Segmenter(tiny.baseline, tiny.clip, clipseg, TextEncoder(tiny.clip, templates="raw"), config=cfg)
        t = time.perf_counter(); backend.text.encode(ds.vocab); text_s = time.perf_counter() - t
    enc = down = 0.0
    for s in ds:
        t0 = time.perf_counter(); b = backend.encode(s, ds.vocab, proto); t1 = time.perf_counter()
        predict(b, proto, "s2c2seg"); predict(b, proto, "baseline"); t2 = time.perf_counter()
        enc += t1 - t0; down += t2 - t1
    out = {"C": c, "backend": backend_name, "encode_s": enc / n, "downstream_s": down / n,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if backend_name == "random":
        out["text_s"] = text_s
    print(json.dumps(out))
""")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[1000, 4000, 20000])
    ap.add_argument("--backend", nargs="+", default=["sim", "shapes", "random"], choices=["sim", "shapes", "random"])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--clipseg-input", type=int, default=96,
                    help="random: CLIPSeg input side (352 is the real processor's; smaller for CPU speed)")
    ap.add_argument("--window-store-size", type=int, default=32, help="random: SegmenterConfig.window_store_size")
    add_output_arguments(ap, quick="C = 16 on the sim and random backends, one image (the smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.classes, args.backend, args.images = [16], ["sim", "random"], 1
    record = Run("large_vocab", argv, args.out_dir, args.quick)
    figures, targets = {}, []
    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("| backend | C | encode s/image | downstream s/image | peak RSS MB |")
    print("|---|---|---|---|---|")
    for backend in args.backend:
        label = {"sim": "SIMULATED", "shapes": "RANDOM VALUES (real bundle shapes)",
                 "random": f"RANDOM WEIGHTS (tiny, CLIPSeg {args.clipseg_input}², "
                           f"compact-{args.window_store_size}-float16)"}[backend]
        for c in args.classes:
            run = subprocess.run([sys.executable, "-c", CHILD, str(c), backend, str(args.images),
                                  str(args.clipseg_input), str(args.window_store_size)],
                                 capture_output=True, text=True, check=False)
            if run.returncode != 0:
                print(f"| {label} | {c} | failed: {run.stderr.strip().splitlines()[-1]} | | |")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"| {label} | {c} | {r['encode_s']:.2f} | {r['downstream_s']:.2f} | {r['peak_rss_mb']:.0f} |",
                  flush=True)
            figures[f"{backend}, C = {c}: encode"] = figure(round(r["encode_s"], 2), "s / image")
            figures[f"{backend}, C = {c}: downstream"] = figure(round(r["downstream_s"], 2), "s / image")
            figures[f"{backend}, C = {c}: peak RSS"] = figure(round(r["peak_rss_mb"]), "MiB")
            if c == 20000:
                targets.append(target(f"{backend}, C = {c}: peak RSS", "<=", TARGET_MIB, issue=13))
    print("load average (1, 5, 15 min) at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    label = ", ".join(LABELS[b] for b in args.backend) + "; no number here is a segmentation result"
    return record.finish("Large vocabularies: encode and downstream time, peak RSS per subprocess", label,
                         figures, targets)


if __name__ == "__main__":
    main()
