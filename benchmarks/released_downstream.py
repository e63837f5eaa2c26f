"""Downstream cost of the released presets on one VOC21-sized bundle (RANDOM WEIGHTS inputs: random tensors).

Measured side by side in one process, on the CPU: ProxyCLIP's own post-processing (``method="baseline"``),
``released`` and ``released++`` per image, and a 100-point sweep over the released++ downstream settings on
one ``BundleView`` (memoised per-window maps, scores, selections) against 100 fresh uncached predictions.
Shapes: 375x500 image resized to 336x448, 2 windows of 336², 46 queries (ProxyCLIP's VOC21 names).

    PYTHONPATH=. python benchmarks/released_downstream.py [points]
"""
from __future__ import annotations

import itertools
import sys
import time

import torch

from s2c2seg.bundle import FeatureBundle
from s2c2seg.data.protocols import get_protocol
from s2c2seg.predict import BundleView, predict
from s2c2seg.presets import get_preset
from s2c2seg.slide import slide_boxes

Q, CLASSES, GRID = 46, 21, 42
SWEEP = {"select.tau": [0.3, 0.4], "fusion.lam": [0.1, 0.15], "fusion.guide_weight": [0.05, 0.07],
         "refine.theta_high": [0.7, 0.8], "post.otsu_c": [0.35, 0.5], "refine.admit_cap": [2, 3],
         "post.spatial.iterations": [1, 3]}


def voc_bundle(seed=0) -> FeatureBundle:
    g = torch.Generator().manual_seed(seed)
    q2c = torch.cat([torch.zeros(Q - CLASSES + 1, dtype=torch.long), torch.arange(1, CLASSES)])
    boxes = slide_boxes(336, 448, 336, 112)
    n = boxes.shape[0]
    return FeatureBundle(dense_logits=0.2 + 0.05 * torch.randn(n, Q, GRID, GRID, generator=g), crop_boxes=boxes,
                         resized_hw=torch.tensor([336, 448]), image_hw=torch.tensor([375, 500]),
                         global_sim=torch.rand(Q, generator=g), clipseg_mean=torch.rand(Q, generator=g),
                         clipseg_maps=torch.rand(Q, 88, 88, generator=g).half(), query_to_class=q2c,
                         window_local=torch.rand(n, Q, 336, 336, generator=g) ** 4,
                         window_global=0.2 + 0.05 * torch.randn(n, Q, generator=g),
                         window_pad=torch.zeros(4, dtype=torch.long), input_image=torch.randn(3, 336, 448, generator=g))


def median_time(fn, repeats=3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main(n_points: int = 100) -> None:
    torch.manual_seed(0)
    b = voc_bundle()
    proto = get_protocol("voc21", "proxyclip")
    base = median_time(lambda: predict(b, proto, "baseline"))
    print(f"RANDOM WEIGHTS inputs; torch threads {torch.get_num_threads()}")
    print(f"baseline post-processing       {base:7.3f} s/image")
    for name in ("released", "released++"):
        preset = get_preset(name, "voc21")
        t = median_time(lambda preset=preset: predict(b, proto, "s2c2seg", preset=preset))
        print(f"{name:<12} downstream          {t:7.3f} s/image  ({t / base:.2f}x the baseline post-processing)")
    points = [dict(zip(SWEEP, vals)) for vals in itertools.product(*SWEEP.values())][:n_points]
    presets = [get_preset("released++", "voc21", **p) for p in points]
    t = time.perf_counter()
    view = BundleView(b)
    for p in presets:
        predict(view, proto, "s2c2seg", preset=p)
    swept = time.perf_counter() - t
    one = median_time(lambda: predict(b, proto, "s2c2seg", preset=presets[0]), repeats=1)
    print(f"{len(points)}-point released++ sweep on one view {swept:7.2f} s = {swept / one:.1f} single uncached "
          f"downstream passes ({one:.3f} s each)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
