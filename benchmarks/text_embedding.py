"""Text embeddings of 21 classes x 80 templates with a full-size ViT-B-16 text tower (RANDOM WEIGHTS).

Side by side in one process:
  naive   the anchors' loop: one ``encode_text`` call per class on its 80 prompts at the full 77-token context;
  first   ``TextEncoder.encode``: prompts sorted by length, chunks cut to their longest prompt (cache empty);
  second  a new ``TextEncoder`` on the same cache directory (expected: zero text-encoder calls).

Run:  .venv/bin/python benchmarks/text_embedding.py [--batch-size 256] [--repeats 1] [--quick] [--out-dir DIR]

Writes ``benchmarks/results/text_embedding.json`` (``bench_common.Run``); ``--quick``: the tiny test CLIP, 3
classes x 8 templates (the smoke test).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_common import Run, add_output_arguments, figure, target

from s2c2seg.models.clip import builtin_clip_config, load_clip, tiny_clip_config
from s2c2seg.models.text import TextEncoder

VOC21 = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
         "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
         "tv monitor"]


@torch.no_grad()
def naive(clip, names, templates) -> torch.Tensor:
    rows = []
    for name in names:
        tokens = clip.tokenizer([t.format(name) for t in templates])
        f = F.normalize(clip.model.encode_text(tokens), dim=-1)
        rows.append(F.normalize(f.mean(0), dim=-1))
    return torch.stack(rows)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="take the minimum over this many runs of each")
    add_output_arguments(parser, quick="the tiny test CLIP, 3 classes x 8 templates (the smoke test)")
    args = parser.parse_args(argv)
    run = Run("text_embedding", argv, args.out_dir, args.quick)
    names = VOC21[:3] if args.quick else VOC21
    clip = load_clip("ViT-B-16", config=tiny_clip_config() if args.quick else builtin_clip_config("ViT-B-16"))
    label = "RANDOM WEIGHTS" + (" (tiny test models)" if args.quick else "")
    print(f"model: {clip.model_name} {label} ({clip.weights_id}); torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as cache:
        templates = TextEncoder(clip).templates[:8 if args.quick else None]
        print(f"vocabulary: {len(names)} classes x {len(templates)} templates = {len(names) * len(templates)} prompts")
        naive(clip, names[:1], templates[:4])                                # warm-up
        t_naive, t_first, t_second = [], [], []
        for _ in range(args.repeats):
            ref, t = timed(lambda: naive(clip, names, templates))
            t_naive.append(t)
            print(f"naive 77-token per-class batches : {t:8.2f} s  ({len(names)} encoder calls)", flush=True)
            first_enc = TextEncoder(clip, templates=templates, cache_dir=cache + f"/{len(t_first)}",
                                    batch_size=args.batch_size)
            emb, t = timed(first_enc.encode, names)
            t_first.append(t)
            print(f"first run (cut context, chunked) : {t:8.2f} s  ({first_enc.calls} encoder calls, "
                  f"batch {args.batch_size})", flush=True)
            second_enc = TextEncoder(clip, templates=templates, cache_dir=cache + f"/{len(t_second)}",
                                     batch_size=args.batch_size)
            emb2, t = timed(second_enc.encode, names)
            t_second.append(t)
            print(f"second run (disk cache)          : {t:8.4f} s  ({second_enc.calls} encoder calls)", flush=True)
        tn, tf, ts = min(t_naive), min(t_first), min(t_second)
        print(f"speed-up first run vs naive: {tn / tf:5.2f}x (target >= 4x); second run vs naive: {tn / ts:8.0f}x; "
              f"second run encoder calls: {second_enc.calls}")
        diff, diff2 = (emb - ref).abs().max().item(), (emb2 - emb).abs().max().item()
        print(f"max |first - naive| = {diff:.2e}; max |second - first| = {diff2:.2e}")
    figures = {"naive (77 tokens, per class)": figure(round(tn, 2), "s"),
               "first run (cut context, chunked)": figure(round(tf, 2), "s"),
               "second run (disk cache)": figure(round(ts, 4), "s"),
               "speed-up first run vs naive": figure(round(tn / tf, 2), "x"),
               "first run encoder calls": figure(first_enc.calls), "second run encoder calls": figure(second_enc.calls),
               "max |first - naive|": figure(float(f"{diff:.2e}")), "prompts": figure(len(names) * len(templates))}
    return run.finish(f"Text embeddings, {len(names)} classes x {len(templates)} templates, CLIP text tower",
                      label, figures, [target("speed-up first run vs naive", ">=", 4.0, issue=3),
                                       target("second run encoder calls", "==", 0, issue=3)])


if __name__ == "__main__":
    main()
