"""S2C2Seg++'s spatial-refinement propagation: the shifted-view sum (``spatial_refine.propagate``) vs the unfold form.

The unfold form is the same sum taken through ``spatial_refine.neighbours`` (a (C, 8, H, W) copy per dilation,
as the release writes it); both run on the same random maps and weights in one process, alternating, and the
ratio of the medians is printed with the largest difference. Default shapes: VOC21 under ProxyCLIP (21 class
maps at 375 x 500, the release's 6 dilations), one iteration. No model is involved.

    .venv/bin/python benchmarks/spatial_refine_speed.py [--classes 21] [--hw 375 500] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from s2c2seg.spatial_refine import SpatialRefineConfig, neighbours, propagate


def unfold_propagate(maps: torch.Tensor, weights: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """The same iteration through the (C, 8, H, W) neighbour tensor of every dilation."""
    return sum((neighbours(maps, d) * weights[None, 8 * j:8 * (j + 1)]).sum(dim=1) for j, d in enumerate(dilations))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--hw", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dil = SpatialRefineConfig().dilations
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(args.classes, *args.hw, generator=g).softmax(0)
    weights = torch.rand(8 * len(dil), *args.hw, generator=g).softmax(0)
    times: dict[str, list[float]] = {"unfold": [], "shifted": []}
    outs = {}
    for _ in range(args.repeats):
        for name, fn in (("unfold", unfold_propagate), ("shifted", propagate)):
            t = time.perf_counter()
            outs[name] = fn(maps, weights, dil)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float((outs["unfold"] - outs["shifted"]).abs().max())
    print(f"spatial refinement, one iteration: {args.classes} maps x {args.hw[0]}x{args.hw[1]}, dilations {dil}; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    for k, runs in times.items():
        print(f"  {k:<8} {med[k] * 1000:8.0f} ms  (runs: {[round(t, 3) for t in runs]})")
    print(f"speed-up unfold / shifted: {med['unfold'] / med['shifted']:.1f}x; max |difference| {diff:.2e}")
    return {"medians": med, "max_diff": diff}


if __name__ == "__main__":
    main()
