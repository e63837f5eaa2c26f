"""Text embeddings of 21 classes x 80 templates with a full-size ViT-B-16 text tower (RANDOM WEIGHTS).

Side by side in one process:
  naive   the anchors' loop: one ``encode_text`` call per class on its 80 prompts at the full 77-token context;
  first   ``TextEncoder.encode``: prompts sorted by length, chunks cut to their longest prompt (cache empty);
  second  a new ``TextEncoder`` on the same cache directory (expected: zero text-encoder calls).

Run:  .venv/bin/python benchmarks/text_embedding.py [--batch-size 256] [--repeats 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from s2c2seg.models.clip import builtin_clip_config, load_clip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="take the minimum over this many runs of each")
    args = parser.parse_args()

    clip = load_clip("ViT-B-16", config=builtin_clip_config("ViT-B-16"))
    print(f"model: {clip.model_name} RANDOM WEIGHTS ({clip.weights_id}); torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as cache:
        templates = TextEncoder(clip).templates
        print(f"vocabulary: {len(VOC21)} classes x {len(templates)} templates = {len(VOC21) * len(templates)} prompts")
        naive(clip, VOC21[:1], templates[:4])                                # warm-up
        t_naive, t_first, t_second = [], [], []
        for _ in range(args.repeats):
            ref, t = timed(lambda: naive(clip, VOC21, templates))
            t_naive.append(t)
            print(f"naive 77-token per-class batches : {t:8.2f} s  ({len(VOC21)} encoder calls)", flush=True)
            first_enc = TextEncoder(clip, cache_dir=cache + f"/{len(t_first)}", batch_size=args.batch_size)
            emb, t = timed(first_enc.encode, VOC21)
            t_first.append(t)
            print(f"first run (cut context, chunked) : {t:8.2f} s  ({first_enc.calls} encoder calls, "
                  f"batch {args.batch_size})", flush=True)
            second_enc = TextEncoder(clip, cache_dir=cache + f"/{len(t_second)}", batch_size=args.batch_size)
            emb2, t = timed(second_enc.encode, VOC21)
            t_second.append(t)
            print(f"second run (disk cache)          : {t:8.4f} s  ({second_enc.calls} encoder calls)", flush=True)
        tn, tf, ts = min(t_naive), min(t_first), min(t_second)
        print(f"speed-up first run vs naive: {tn / tf:5.2f}x (target >= 4x); second run vs naive: {tn / ts:8.0f}x; "
              f"second run encoder calls: {second_enc.calls}")
        print(f"max |first - naive| = {(emb - ref).abs().max().item():.2e}; "
              f"max |second - first| = {(emb2 - emb).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
