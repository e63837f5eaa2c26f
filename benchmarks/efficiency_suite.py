"""The release's efficiency suite (``yhflq/S2c2seg`` ``scripts/run_efficiency_suite.sh``) measured on OUR pipeline.

RANDOM WEIGHTS (``build_backend("random", baseline="proxyclip")``: full size = CLIP ViT-B/16, DINO ViT-B/8 and a
CLIPSeg of the rd64-refined shape; timings and FLOPs do not depend on the weights). One process, one image,
ProxyCLIP's protocol (short side 336, crop 336, stride 112). For each of the release's nine vocabularies
(:data:`VOCABULARIES`: Cityscapes 19 ... the 303-class union ``configs/cls_union.txt``) and each downstream
setting (:data:`SETTINGS`: ``released`` at the dataset's operating point, ``no CSS`` = the same with
``select.tau=1.0``, every query kept, and ``released++``), the stages are timed one by one on the same image:

* models: ``dense`` (ProxyCLIP's dense logits + the per-window CLS embedding, ``Segmenter.dense``), ``clipseg
  vision`` (``ClipSeg.encode_image`` once per window, the release's uint8 + PIL input), ``clipseg decoder``
  (``ClipSeg.decode`` for all queries, sigmoid, resize to the window);
* downstream, on the bundle those parts make: ``css`` (window resize, scores, confidence, selection), ``csg``
  (the convex fusion), ``refinement`` (S2C2Seg++'s round), ``post`` (fill, window average, resize, softmax,
  synonym max, spatial refinement, background threshold). The label map of these timed steps is checked
  against ``predict(preset=...)`` on the same bundle (the run stops if they differ).

Per image time = models + the setting's downstream; peak RSS per vocabulary (reset before it, Linux); FLOPs per
stage from ``torch.profiler`` (``with_flops=True``: matmul / conv / elementwise ops with a FLOP formula; the
fused attention kernel has none, so attention FLOPs are missing) for ``--flops-vocabs``. Text features (a
per-vocabulary, cached cost) are computed before timing, CLIP's with one template per name instead of 80
(they are excluded, and the timed steps do not depend on them). A figure of time against vocabulary size goes
to ``--figure``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/efficiency_suite.py [--repeats 1] [--image-hw 336 336]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/efficiency_suite.py --quick   # tiny models, small image (smoke test)

Writes ``benchmarks/results/efficiency_suite.json`` (``bench_common.Run``; ``--out-dir DIR``): the per image
totals, CLIPSeg decoder and peak RSS per vocabulary as figures, every stage under ``data``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_common import (
    Run,
    add_output_arguments,
    add_protocol_arguments,
    figure,
    header,
    peak_rss_gb,
    protocol_from_args,
    reset_peak_rss,
)

VOCABULARIES = (("cityscapes", "proxyclip"), ("voc20", "proxyclip"), ("voc21", "proxyclip"),
                ("context59", "proxyclip"), ("context60", "proxyclip"), ("coco_object", "proxyclip"),
                ("ade20k", "proxyclip"), ("coco_stuff164k", "proxyclip"), ("union303", "release"))
"""The nine vocabularies of the release's suite: (dataset, name-file variant)."""
OPERATING_POINT = {"union303": "ade20k"}
"""A vocabulary without its own operating point -> the dataset whose point it runs at (the release's suite
runs the union with the ADE20k config)."""
SETTINGS = {"released": ("released", {}), "no CSS": ("released", {"select.tau": 1.0}),
            "released++": ("released++", {})}
"""Downstream setting -> (preset, overrides)."""
MODEL_STAGES = ("dense", "clipseg vision", "clipseg decoder")
DOWNSTREAM_STAGES = ("css", "csg", "refinement", "post")
STAGE_HEADER = ("| vocabulary | dense | clipseg vision | clipseg decoder | released css/csg/ref/post | "
                "no CSS css/csg/ref/post | released++ css/csg/ref/post |\n|---|---|---|---|---|---|---|")
"""Header of the per-stage tables (times and FLOPs share its columns)."""
QUICK = {"size": "tiny", "image_hw": (48, 64), "short_side": 48, "crop": 32, "stride": 16, "repeats": 1,
         "vocabs": ("cityscapes", "voc21", "union303"), "flops_vocabs": ("voc21",)}
"""``--quick``: tiny models, a small image and protocol, three vocabularies (the smoke test)."""


class Timer:
    """Accumulates seconds per stage; with ``flops`` also the profiler's FLOPs per stage."""

    def __init__(self, flops: bool = False):
        self.seconds: dict[str, float] = {}
        self.flops: dict[str, int] = {}
        self.with_flops = flops

    def __call__(self, stage: str, fn, *args, **kw):
        prof = None
        if self.with_flops:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True)
            prof.__enter__()
        t = time.perf_counter()
        out = fn(*args, **kw)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t
        if prof is not None:
            prof.__exit__(None, None, None)
            self.flops[stage] = self.flops.get(stage, 0) + sum(int(e.flops or 0) for e in prof.key_averages())
        return out


def encode_parts(seg, sample, vocab, protocol, timer: Timer):
    """The released bundle of ``sample``, its model stages timed: dense (+ window CLS), CLIPSeg vision per
    window, CLIPSeg decoder per window. The paper-reading sources (never read by the released presets) are
    left empty."""
    from s2c2seg.bundle import FeatureBundle
    from s2c2seg.models.clipseg import LOCAL_TEXT_PROMPTS, window_uint8

    logits, boxes, (rh, rw), text, globals_, image = timer("dense", seg.dense, sample, vocab, protocol,
                                                           with_global=True)
    pad = seg.window_pad(boxes, protocol)
    top, bottom, left, right = pad
    cond = seg.clipseg.text_embeddings(vocab.queries, LOCAL_TEXT_PROMPTS[seg.config.local_text])
    local = []
    for y1, y2, x1, x2 in boxes.tolist():
        window = F.pad(image[:, y1:y2, x1:x2], (left, right, top, bottom))
        px = seg.clipseg.preprocess(window_uint8(window, seg.clip.mean, seg.clip.std))
        acts = timer("clipseg vision", seg.clipseg.encode_image, px)

        def decode(acts=acts, size=tuple(window.shape[-2:])):
            maps = seg.clipseg.decode(acts, cond).float().sigmoid_()
            return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]

        local.append(timer("clipseg decoder", decode))
    h, w = sample.image.shape[:2]
    return FeatureBundle(logits, boxes, torch.tensor([rh, rw]), torch.tensor([h, w]), vocab.query_to_class,
                         window_local=torch.stack(local), window_global=globals_.float() @ text.T,
                         window_pad=torch.tensor(pad, dtype=torch.long), input_image=image.float())


def downstream(bundle, protocol, preset, timer: Timer) -> torch.Tensor:
    """``predict_released``'s label map with each step timed (``released.py``'s functions, window by window)."""
    from s2c2seg import released as r
    from s2c2seg.refine import refine_window

    view = r.ReleasedView(bundle)
    rows_sel, rows_fused = [], []
    weights = preset.select.weights(preset.fusion.lam)
    for n in range(view.num_windows):
        def css(n=n):
            g, s = view.scores(n, preset.score.global_score)
            selected, c, _ = view.selection(n, preset)
            return g, s, c, selected

        g, s, c, selected = timer("css", css)
        dense, local = view.dense(n), view.local(n)
        fused = timer("csg", preset.fusion.fuse, dense[selected], local[selected])
        if preset.refine.t_max > 0:
            selected, fused, _ = timer("refinement", refine_window, selected, fused, (g, s, c), local,
                                       lambda idx, d=dense, lo=local: preset.fusion.fuse(d[idx], lo[idx]),
                                       preset.refine,
                                       weights, preset.select.k_min, protocol.logit_scale)
        rows_sel.append(selected)
        rows_fused.append(fused)

    def post():
        union = torch.unique(torch.cat(rows_sel))
        rows = [(torch.searchsorted(union, sel), f) for sel, f in zip(rows_sel, rows_fused)]
        logits = r.assemble(rows, union.numel(), bundle, preset.fusion.fill)
        return r.released_postprocess(logits, view.query_to_class[union], protocol, preset.post, bundle.input_image)

    return timer("post", post)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats per vocabulary (median)")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(336, 336), metavar=("H", "W"),
                    help="the random image (default 336 x 336: one 336 window; a VOC image has two)")
    ap.add_argument("--vocabs", nargs="+", default=[v for v, _ in VOCABULARIES])
    ap.add_argument("--flops-vocabs", nargs="*", default=["voc21"],
                    help="vocabularies whose stages also run once under torch.profiler for FLOPs (the profiler's "
                         "records cost memory: union303 took the process to ~10 GB RSS)")
    ap.add_argument("--figure", default=None, help="PNG of time against vocabulary size (default: none)")
    ap.add_argument("--json", default=None, help="write the results (seconds, GB, FLOPs) to this JSON file")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    add_protocol_arguments(ap)
    add_output_arguments(ap, quick="tiny models, small image, three vocabularies")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if k in ("vocabs", "flops_vocabs"):
                v = list(v)
            setattr(args, k, v)
    unknown = set(args.vocabs) - {v for v, _ in VOCABULARIES}
    if unknown:
        ap.error(f"--vocabs: unknown {sorted(unknown)}; known: {[v for v, _ in VOCABULARIES]}")
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    record = Run("efficiency_suite", argv, args.out_dir, args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    from s2c2seg.data import Sample
    from s2c2seg.data.names import vocabulary
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.models.clipseg import LOCAL_TEXT_PROMPTS
    from s2c2seg.models.text import TextEncoder
    from s2c2seg.predict import predict
    from s2c2seg.presets import get_preset
    from s2c2seg.factories import build_backend

    protocol = protocol_from_args(get_protocol("voc21", "proxyclip"), args)
    h, w = args.image_hw
    sample = Sample("suite", np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    start = header(args.size)
    variants = dict(VOCABULARIES)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        seg = build_backend("random", baseline="proxyclip", size=args.size, cache_dir=tmp)
        seg.text = TextEncoder(seg.clip, templates="raw")  # text features are excluded: one template per name
        vocabs = {v: vocabulary(v, variants[v]) for v in args.vocabs}
        t = time.perf_counter()
        for vocab in vocabs.values():
            seg.text.encode(vocab)
            seg.clipseg.text_embeddings(vocab.queries, LOCAL_TEXT_PROMPTS[seg.config.local_text])
        text_s = time.perf_counter() - t
        encode_parts(seg, sample, next(iter(vocabs.values())), protocol, Timer())  # warm-up
        for name, vocab in vocabs.items():
            point = OPERATING_POINT.get(name, name)
            presets = {k: get_preset(p, point, **o) for k, (p, o) in SETTINGS.items()}
            reset_peak_rss()
            model_runs, down_runs, peaks = [], {k: [] for k in presets}, {}
            for _ in range(args.repeats):
                timer = Timer()
                bundle = encode_parts(seg, sample, vocab, protocol, timer)
                model_runs.append(timer.seconds)
                peaks["encode"] = peak_rss_gb()
                for k, preset in presets.items():
                    reset_peak_rss()
                    dt = Timer()
                    label = downstream(bundle, protocol, preset, dt)
                    peaks[k] = peak_rss_gb()
                    down_runs[k].append(dt.seconds)
                    ref = predict(bundle, protocol, method="s2c2seg", preset=preset).label_map
                    if not torch.equal(label, ref):
                        raise RuntimeError(f"{name} / {k}: the timed steps' labels differ from predict()")
            flops = {}
            if name in args.flops_vocabs:
                ft = Timer(flops=True)
                bundle = encode_parts(seg, sample, vocab, protocol, ft)
                flops = dict(ft.flops)
                for k, preset in presets.items():
                    dt = Timer(flops=True)
                    downstream(bundle, protocol, preset, dt)
                    flops[k] = dt.flops
            def med(runs, s):
                return statistics.median(r.get(s, 0.0) for r in runs)

            models = {s: med(model_runs, s) for s in MODEL_STAGES}
            down = {k: {s: med(v, s) for s in DOWNSTREAM_STAGES} for k, v in down_runs.items()}
            results.append({"vocab": name, "queries": len(vocab.queries), "classes": vocab.num_classes,
                            "operating_point": point, "windows": int(bundle.crop_boxes.shape[0]),
                            "models": models, "downstream": down,
                            "total": {k: sum(models.values()) + sum(d.values()) for k, d in down.items()},
                            "peak_rss_gb": peaks, "flops": flops})
    report(results, args, protocol, start, text_s)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": start, "image_hw": list(args.image_hw),
                                               "results": results}, indent=1))
    if args.figure:
        plot(results, args, Path(args.figure), start)
    figures = {}
    for r in results:
        v = r["vocab"]
        figures[f"{v}: models"] = figure(round(sum(r["models"].values()), 2), "s / image")
        figures.update({f"{v}: {k}": figure(round(t, 2), "s / image") for k, t in r["total"].items()})
        figures[f"{v}: CLIPSeg decoder"] = figure(round(1000 * r["models"]["clipseg decoder"]), "ms")
        figures[f"{v}: peak RSS, encode"] = figure(round(r["peak_rss_gb"]["encode"], 2), "GB")
    json_ = record.finish(f"The release's efficiency suite on our pipeline, ProxyCLIP, {results[0]['windows']} "
                          f"window(s)", start.split(";")[0], figures,
                          extra={"image_hw": list(args.image_hw), "text_seconds": text_s, "results": results})
    return {"results": results, "header": start, "json": json_}


def report(results, args, protocol, start, text_s) -> None:
    print(f"Efficiency suite on s2c2seg ({start} -> {os.getloadavg()[0]:.1f}); image {args.image_hw[1]}x"
          f"{args.image_hw[0]}, protocol short {protocol.short_side} crop {protocol.crop} stride {protocol.stride}, "
          f"{results[0]['windows']} window(s); median of {args.repeats} run(s) after a warm-up; text features "
          f"(excluded) {text_s:.1f} s")
    print("\nPer image time (s) = models + downstream; peak RSS (GB) of the encode / of each downstream setting")
    print("| vocabulary | classes | queries | models | released | no CSS | released++ | peak RSS encode | "
          "released | no CSS | released++ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t, p = r["total"], r["peak_rss_gb"]
        print(f"| {r['vocab']} | {r['classes']} | {r['queries']} | {sum(r['models'].values()):.2f} | "
              f"{t['released']:.2f} | {t['no CSS']:.2f} | {t['released++']:.2f} | {p['encode']:.2f} | "
              f"{p['released']:.2f} | {p['no CSS']:.2f} | {p['released++']:.2f} |")
    print("\nPer stage (ms): models, then downstream per setting (css / csg / refinement / post)")
    print(STAGE_HEADER)
    for r in results:
        print(_stage_row(r["vocab"], r["models"], r["downstream"], lambda v: f"{1000 * v:.0f}",
                         lambda v: f"{1000 * v:.0f}"))
    flops = [r for r in results if r["flops"]]
    if flops:
        print("\nFLOPs per stage (GFLOP, torch.profiler with_flops; ops without a FLOP formula, e.g. the fused "
              "attention kernel, count 0)")
        print(STAGE_HEADER)
        for r in flops:
            print(_stage_row(r["vocab"], r["flops"], r["flops"], lambda v: f"{v / 1e9:.1f}",
                             lambda v: f"{v / 1e9:.3g}"))


def _stage_row(vocab: str, models: dict, downstream: dict, model_fmt, downstream_fmt) -> str:
    """One row of the per-stage tables: the three model stages, then each setting's downstream stages."""
    cells = [model_fmt(models.get(k, 0)) for k in ("dense", "clipseg vision", "clipseg decoder")]
    cells += ["/".join(downstream_fmt(downstream[k].get(s, 0)) for s in DOWNSTREAM_STAGES) for k in SETTINGS]
    return f"| {vocab} | " + " | ".join(cells) + " |"


def plot(results, args, path: Path, start: str) -> None:
    """Left: per image time against the number of queries, per downstream setting and the models alone. Right: the
    vocabulary-dependent part alone (CLIPSeg decoder + the setting's downstream), free of the dense pass's noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["queries"] for r in results]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4))
    ax.plot(x, [sum(r["models"].values()) for r in results], "k--", marker=".", label="models only")
    bx.plot(x, [r["models"]["clipseg decoder"] for r in results], "k--", marker=".", label="CLIPSeg decoder only")
    for k in SETTINGS:
        ax.plot(x, [r["total"][k] for r in results], marker="o", label=k)
        bx.plot(x, [r["models"]["clipseg decoder"] + sum(r["downstream"][k].values()) for r in results],
                marker="o", label=f"decoder + {k} downstream")
    for r in results:
        ax.annotate(r["vocab"], (r["queries"], r["total"]["no CSS"]), fontsize=7, rotation=35,
                    textcoords="offset points", xytext=(2, 4))
    ax.set_ylabel("seconds per image")
    ax.set_title("per image (models + downstream)", fontsize=9)
    bx.set_title("vocabulary-dependent stages", fontsize=9)
    for a in (ax, bx):
        a.set_xlabel("vocabulary size (queries)")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.suptitle(f"ProxyCLIP + S2C2Seg vs vocabulary size — {start.split(';')[0]} — image {args.image_hw[1]}x"
                 f"{args.image_hw[0]}, {results[0]['windows']} window(s), CPU, {start.split(';')[1].strip()}",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
