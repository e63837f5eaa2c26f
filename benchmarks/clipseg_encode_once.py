"""CLIPSeg encode-once vs transformers' forward with the image repeated K times (target >= 10x at K = 20).

Full-size ``CIDAS/clipseg-rd64-refined`` architecture with RANDOM WEIGHTS (timings do not depend on the weights),
352 x 352, one process, both paths timed side by side (median of ``--repeats``), text embeddings included in both.

    .venv/bin/python benchmarks/clipseg_encode_once.py [--k 20] [--repeats 3] [--threads 0] [--quick] [--out-dir DIR]

Writes ``benchmarks/results/clipseg_encode_once.json`` (``bench_common.Run``); ``--quick``: the tiny test CLIPSeg,
K = 4, one repeat (the smoke test).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from bench_common import Run, add_output_arguments, figure, target


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=20, help="number of prompts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    add_output_arguments(ap, quick="the tiny test CLIPSeg, K = 4, one repeat (the smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.k, args.repeats = 4, 1
    run = Run("clipseg_encode_once", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    from s2c2seg.models.clipseg import ClipSeg, rd64_clipseg_config, tiny_clipseg_config

    with tempfile.TemporaryDirectory() as cache:
        cs = ClipSeg(config=tiny_clipseg_config() if args.quick else rd64_clipseg_config(), cache_dir=cache)
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    prompts = [f"object number {i}" for i in range(args.k)]

    def encode_once():
        cs._text_cache.clear()  # count the text encoder in both paths
        return cs(image, prompts)

    def naive():
        return cs.naive_forward(image, prompts)

    fast_out, slow_out = encode_once(), naive()  # warm-up
    diff = (fast_out - slow_out).abs().max().item()
    t_fast, t_slow = [], []
    for _ in range(args.repeats):
        for fn, acc in ((naive, t_slow), (encode_once, t_fast)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    fast, slow = statistics.median(t_fast), statistics.median(t_slow)
    label = "RANDOM WEIGHTS" + (" (tiny test models)" if args.quick else "")
    print(f"CLIPSeg rd64 ({label}), 352x352, K={args.k}, torch threads={torch.get_num_threads()}")
    print(f"naive forward (image repeated K times): {slow * 1000:8.0f} ms  (runs: {[round(t, 2) for t in t_slow]})")
    print(f"encode once, decode K in one batch:     {fast * 1000:8.0f} ms  (runs: {[round(t, 2) for t in t_fast]})")
    print(f"speed-up: {slow / fast:.1f}x (target >= 10x); max |diff| of the sigmoid maps: {diff:.2e}")
    figures = {"naive forward (image repeated K times)": figure(round(slow * 1000), "ms"),
               "encode once, decode K in one batch": figure(round(fast * 1000), "ms"),
               "speed-up": figure(round(slow / fast, 1), "x"), "max |diff| of the sigmoid maps": figure(diff),
               "K": figure(args.k)}
    return run.finish(f"CLIPSeg encode-once vs transformers' forward, K = {args.k}", label, figures,
                      [target("speed-up", ">=", 10.0, issue=3)])


if __name__ == "__main__":
    main()
