"""Time per image of ``s2c2seg.css.select_categories`` against the vocabulary size C (float32, CPU).

Targets (issue 2): at most 10 ms per image at C = 20,000, and a 2,000 → 20,000 time ratio of at most 12×.
All sizes are timed side by side in one process, interleaved round by round so that machine load hits
every size alike; the reported time is the median wall time over rounds (the targets apply to it). The
process CPU time per image is printed next to it, and the load average before and after: on a shared
machine wall time grows with the load, CPU time much less. Inputs are random (labelled so below).

    python benchmarks/css_scaling.py [--rounds 30] [--calls 20] [--threads N] [--quick] [--out-dir DIR]

Writes ``benchmarks/results/css_scaling.json`` (``bench_common.Run``; ``--quick``: 2 rounds x 2 images).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from bench_common import Run, add_output_arguments, figure, target

from s2c2seg.css import CSSConfig, select_categories

SIZES = (21, 171, 2000, 20000)
TARGET_MS_AT_20000 = 10.0
TARGET_RATIO = 12.0


def make_inputs(c: int, n: int, seed: int = 0):
    """Random CSS inputs: global cosines ~ N(0.2, 0.05) (some negative), spatial means in [0, 1]."""
    gen = torch.Generator().manual_seed(seed + c)
    return [(torch.randn(c, generator=gen) * 0.05 + 0.2, torch.rand(c, generator=gen) ** 2) for _ in range(n)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (median reported)")
    ap.add_argument("--calls", type=int, default=20, help="images per size per round")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    add_output_arguments(ap, quick="2 rounds x 2 images (the smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 2
    run = Run("css_scaling", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = CSSConfig()
    inputs = {c: make_inputs(c, args.calls) for c in SIZES}
    for c in SIZES:  # warm-up
        for g, s in inputs[c][:3]:
            select_categories(g, s, tau=cfg.tau, k_min=cfg.k_min, k_max=cfg.k_max, use=cfg.use, always_keep=[0])
    load_before = os.getloadavg()[0]
    times = {c: [] for c in SIZES}
    cpu = {c: [] for c in SIZES}
    for _ in range(args.rounds):
        for c in SIZES:
            t0, p0 = time.perf_counter(), time.process_time()
            for g, s in inputs[c]:
                select_categories(g, s, tau=cfg.tau, k_min=cfg.k_min, k_max=cfg.k_max, use=cfg.use,
                                  always_keep=[0])
            times[c].append((time.perf_counter() - t0) / len(inputs[c]) * 1e3)
            cpu[c].append((time.process_time() - p0) / len(inputs[c]) * 1e3)
    load_after = os.getloadavg()[0]
    med = {c: statistics.median(v) for c, v in times.items()}
    print("CSS select_categories, time per image (RANDOM INPUTS, float32, CPU)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.rounds} rounds x {args.calls} images, median")
    print(f"1-min load average: {load_before:.2f} before, {load_after:.2f} after")
    print(f"{'C':>7} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'cpu ms':>8} {'K':>4}")
    for c in SIZES:
        k = len(select_categories(*inputs[c][0], always_keep=[0]))
        print(f"{c:>7} {med[c]:>10.3f} {min(times[c]):>8.3f} {max(times[c]):>8.3f} "
              f"{statistics.median(cpu[c]):>8.3f} {k:>4}")
    ratio = med[20000] / med[2000]
    ok_time = med[20000] <= TARGET_MS_AT_20000
    ok_ratio = ratio <= TARGET_RATIO
    print(f"C=20000: {med[20000]:.3f} ms (target <= {TARGET_MS_AT_20000} ms): {'PASS' if ok_time else 'FAIL'}")
    print(f"ratio 2000 -> 20000: {ratio:.2f}x (target <= {TARGET_RATIO}x): {'PASS' if ok_ratio else 'FAIL'}")
    figures = {f"median wall time, C = {c}": figure(round(med[c], 3), "ms") for c in SIZES}
    figures.update({f"median CPU time, C = {c}": figure(round(statistics.median(cpu[c]), 3), "ms") for c in SIZES})
    figures["ratio 2000 -> 20000"] = figure(round(ratio, 2), "x")
    return run.finish("CSS select_categories, time per image against the vocabulary size",
                      "RANDOM INPUTS (float32, CPU)", figures,
                      [target("median wall time, C = 20000", "<=", TARGET_MS_AT_20000, issue=2),
                       target("ratio 2000 -> 20000", "<=", TARGET_RATIO, issue=2)])


if __name__ == "__main__":
    sys.exit(0 if all(t["pass"] for t in main()["targets"]) else 1)
