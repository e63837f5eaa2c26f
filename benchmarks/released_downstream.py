"""Downstream cost of the released presets on one VOC21-sized bundle (RANDOM-TENSOR inputs, no model is run).

Measured side by side in one process, on the CPU:

1. per image, each on a fresh bundle: ProxyCLIP's own post-processing (``method="baseline"``), ``released`` and
   ``released++``;
2. the sweep of ``sweep_cost.released_grid()`` (issue 10's 100 ``released++`` points; ``--points N``), each point
   on ONE shared ``BundleView`` (as ``sweep()`` runs them: the per-view memo of ``released.ReleasedView``) and
   on a fresh ``BundleView`` of its own (no memo), interleaved point by point; per-point ms and their ratio;
3. with ``--before DIR`` (the repository root of another checkout, e.g. ``git archive bfd9578 s2c2seg | tar -x
   -C DIR``), the same points with that code too, imported as a second package, interleaved with this code's
   point by point, and whether both codes give the same label maps.

Shapes: 375x500 image resized to 336x448, 2 windows of 336², 46 queries (ProxyCLIP's VOC21 names); the values are
random tensors, so the selections are those of random scores.

    PYTHONPATH=. python benchmarks/released_downstream.py [--points 100] [--threads 2] [--before DIR]

Writes ``benchmarks/results/released_downstream.json`` (``bench_common.Run``; ``--out-dir DIR``); ``--quick``: 2
points, no per-image timings (the smoke test).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch
from bench_common import Run, add_output_arguments, figure
from sweep_cost import N_POINTS, released_grid

from s2c2seg.bundle import FeatureBundle
from s2c2seg.slide import slide_boxes

Q, CLASSES, GRID = 46, 21, 42
THREADS = 2
"""Torch threads of the measurement (the project machine's cores)."""
BEFORE_NAME = "s2c2seg_before"
"""The module name ``--before``'s package is imported under."""
HEADER = "RANDOM-TENSOR inputs (no model; random tensors with VOC21 x ProxyCLIP shapes)"


def voc_bundle(seed=0, bundle_class=FeatureBundle) -> FeatureBundle:
    """A random-tensor bundle with the shapes of a VOC21 image under ProxyCLIP (of ``bundle_class``: another
    checkout's FeatureBundle for ``--before``)."""
    g = torch.Generator().manual_seed(seed)
    q2c = torch.cat([torch.zeros(Q - CLASSES + 1, dtype=torch.long), torch.arange(1, CLASSES)])
    boxes = slide_boxes(336, 448, 336, 112)
    n = boxes.shape[0]
    return bundle_class(
        dense_logits=0.2 + 0.05 * torch.randn(n, Q, GRID, GRID, generator=g), crop_boxes=boxes,
        resized_hw=torch.tensor([336, 448]), image_hw=torch.tensor([375, 500]),
        global_sim=torch.rand(Q, generator=g), clipseg_mean=torch.rand(Q, generator=g),
        clipseg_maps=torch.rand(Q, 88, 88, generator=g).half(), query_to_class=q2c,
        window_local=torch.rand(n, Q, 336, 336, generator=g) ** 4,
        window_global=0.2 + 0.05 * torch.randn(n, Q, generator=g),
        window_pad=torch.zeros(4, dtype=torch.long), input_image=torch.randn(3, 336, 448, generator=g))


def load_package(root: Path, name: str = BEFORE_NAME) -> str:
    """Import the ``s2c2seg`` package of the checkout at ``root`` as ``name`` (its imports are relative)."""
    init = Path(root) / "s2c2seg" / "__init__.py"
    if not init.is_file():
        raise ValueError(f"--before {root}: no s2c2seg/__init__.py there (give a checkout's repository root)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return name


class Side:
    """One code base (the package named ``package``): its bundle, protocol, the grid's presets, a shared view."""

    def __init__(self, package: str, points: list[dict]):
        self.predict = importlib.import_module(f"{package}.predict")
        self.presets = importlib.import_module(f"{package}.presets")
        self.bundle = voc_bundle(bundle_class=importlib.import_module(f"{package}.bundle").FeatureBundle)
        self.protocol = importlib.import_module(f"{package}.data.protocols").get_protocol("voc21", "proxyclip")
        base = self.presets.get_preset("released++", "voc21")
        self.grid = [base.override(p) for p in points]
        self.view = self.predict.BundleView(self.bundle)

    def run(self, i: int, fresh: bool) -> tuple[float, torch.Tensor]:
        """(seconds, label map) of grid point ``i`` on the shared view or a fresh one."""
        t = time.perf_counter()
        view = self.predict.BundleView(self.bundle) if fresh else self.view
        label = self.predict.predict(view, self.protocol, "s2c2seg", preset=self.grid[i]).label_map
        return time.perf_counter() - t, label


def median_time(fn, repeats=3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def per_image(side: Side) -> dict:
    """Seconds per image of the baseline post-processing and the two released presets (fresh bundles)."""
    pred, b, proto = side.predict, side.bundle, side.protocol
    out = {"baseline": median_time(lambda: pred.predict(b, proto, "baseline"))}
    for name in ("released", "released++"):
        preset = side.presets.get_preset(name, "voc21")
        out[name] = median_time(lambda preset=preset: pred.predict(b, proto, "s2c2seg", preset=preset))
    return out


def sweep_grid(sides: dict[str, Side], n_points: int) -> dict:
    """Each grid point on every side's shared view and on a fresh view, interleaved point by point:
    -> {side: {"shared": [s], "fresh": [s]}, "same_labels": points where every run's labels agree}."""
    times = {name: {"shared": [], "fresh": []} for name in sides}
    same = 0
    for i in range(n_points):
        labels = []
        for fresh in (False, True):
            for name, side in sides.items():
                seconds, label = side.run(i, fresh)
                times[name]["fresh" if fresh else "shared"].append(seconds)
                labels.append(label)
        same += all(torch.equal(labels[0], other) for other in labels[1:])
    return {"times": times, "same_labels": same}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=N_POINTS, help="the first N points of sweep_cost.released_grid()")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch threads")
    ap.add_argument("--before", type=Path, default=None,
                    help="repository root of another checkout whose s2c2seg is timed beside this one")
    ap.add_argument("--no-per-image", action="store_true", help="skip the per-image timings (part 1)")
    add_output_arguments(ap, quick="2 points, no per-image timings (the smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.no_per_image = 2, True
    record = Run("released_downstream", argv, args.out_dir, args.quick)
    torch.set_num_threads(args.threads)
    points = released_grid(args.points)
    sides = {"this code": Side("s2c2seg", points)}
    if args.before is not None:
        sides[f"before ({args.before})"] = Side(load_package(args.before), points)
    print(f"{HEADER}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    result: dict = {"points": len(points)}
    if not args.no_per_image:
        result["per_image"] = {}
        for name, side in sides.items():
            t = result["per_image"][name] = per_image(side)
            print(f"{name}: per image, fresh bundle: baseline post-processing {1000 * t['baseline']:.0f} ms, "
                  f"released {1000 * t['released']:.0f} ms, released++ {1000 * t['released++']:.0f} ms")
    run = sweep_grid(sides, len(points))
    result.update(run)
    print(f"sweep_cost.released_grid({len(points)}) on released++ (RANDOM-TENSOR inputs), ms per point, "
          f"interleaved point by point:")
    means = {}
    for name, t in run["times"].items():
        shared, fresh = (1000 * sum(t[k]) / len(points) for k in ("shared", "fresh"))
        means[name] = (shared, fresh)
        print(f"  {name:<40} shared view {shared:8.1f}   fresh view {fresh:8.1f}   fresh / shared {fresh / shared:.2f}")
    if len(means) > 1:
        (_, (s_now, f_now)), (_, (s_old, f_old)) = means.items()
        print(f"  speed-up before / this code: shared view {s_old / s_now:.2f}x, fresh view {f_old / f_now:.2f}x")
    print(f"  label maps identical across {'both codes and ' if len(sides) > 1 else ''}both views: "
          f"{run['same_labels']} / {len(points)} points")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    result["means_ms"] = means
    figures = {}
    for side, t in result.get("per_image", {}).items():
        for k, label in (("baseline", "baseline post-processing"), ("released", "released"),
                         ("released++", "released++")):
            figures[f"{side}: per image, {label}"] = figure(round(1000 * t[k]), "ms")
    for side, (shared, fresh) in means.items():
        figures[f"{side}: sweep point, shared view"] = figure(round(shared, 1), "ms")
        figures[f"{side}: sweep point, fresh view"] = figure(round(fresh, 1), "ms")
    if len(means) > 1:
        (_, (s_now, f_now)), (_, (s_old, f_old)) = means.items()
        figures["speed-up before / this code, shared view"] = figure(round(s_old / s_now, 2), "x")
        figures["speed-up before / this code, fresh view"] = figure(round(f_old / f_now, 2), "x")
    figures["points"] = figure(len(points))
    figures["points with identical label maps"] = figure(run["same_labels"])
    result["json"] = record.finish("Downstream cost of the released presets on one VOC21-sized bundle", HEADER,
                                   figures)
    return result


if __name__ == "__main__":
    main()
