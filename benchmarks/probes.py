"""Counting and timing probes on a Segmenter's model calls, installed on the instances (no library change).

:class:`Probes` wraps, on one backend's shared parts:

* the baseline (``Segmenter.baseline(clip, crops, ..., return_global=...)``): ``baseline`` calls, ``baseline+cls``
  those asked for the vanilla CLS embedding too;
* CLIPSeg's vision tower (``ClipSeg.encode_image``, once per image or window) and decoder batches
  (``ClipSeg.decode_chunks``, counted per chunk);
* CLIP's whole-image forward (``clip.model.encode_image``, ``global_view="image"`` only).

and times the encode's stages on any :class:`~s2c2seg.segmenter.Segmenter` given to :meth:`Probes.segmenter`:
``dense`` (the baseline's pass, with the CLS embedding when a group needs it), ``paper`` (``clipseg_summary`` +
``_global_image``: the paper reading's whole-image sources) and ``window`` (``window_local``: CLIPSeg per window).
"""
from __future__ import annotations

import time
from collections import Counter

STAGES = ("dense", "paper", "window")
"""The encode's stages, in the order they run."""


class _CountingBaseline:
    """The baseline, delegating every attribute, counting its calls (and those returning the global embedding)."""

    def __init__(self, inner, counts: Counter):
        self._inner, self._counts = inner, counts

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, *args, **kw):
        self._counts["baseline"] += 1
        if kw.get("return_global"):
            self._counts["baseline+cls"] += 1
        return self._inner(*args, **kw)


class Probes:
    """Call counts and stage seconds of one backend's encodes; :meth:`reset` before each measured call."""

    def __init__(self, seg):
        self.counts: Counter = Counter()
        self.seconds: dict[str, float] = {}
        self.baseline = _CountingBaseline(seg.baseline, self.counts)
        self.clip, self.clipseg, self.text, self.vfm = seg.clip, seg.clipseg, seg.text, seg.vfm
        self._count(self.clipseg, "encode_image", "clipseg vision")
        self._count(self.clipseg, "decode_chunks", "clipseg decoder chunks", per_item=True)
        self._count(self.clip.model, "encode_image", "clip whole image")

    def _count(self, obj, name: str, key: str, per_item: bool = False) -> None:
        inner, counts = getattr(obj, name), self.counts

        def counted(*args, **kw):
            if not per_item:
                counts[key] += 1
                return inner(*args, **kw)
            return _counted_items(inner(*args, **kw), counts, key)

        setattr(obj, name, counted)

    def segmenter(self, config):
        """A Segmenter with ``config`` on the probed parts, its stages timed into :attr:`seconds`."""
        from s2c2seg.segmenter import Segmenter

        seg = Segmenter(self.baseline, self.clip, self.clipseg, self.text, vfm=self.vfm, config=config)
        for stage, names in (("dense", ("dense",)), ("paper", ("clipseg_summary", "_global_image")),
                             ("window", ("window_local",))):
            for name in names:
                self._time(seg, name, stage)
        return seg

    def _time(self, seg, name: str, stage: str) -> None:
        inner, seconds = getattr(seg, name), self.seconds

        def timed(*args, **kw):
            t = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t

        setattr(seg, name, timed)

    def reset(self) -> None:
        self.counts.clear()
        self.seconds.clear()

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        """``(counts, seconds per stage)`` since the last :meth:`reset` (every key present, zeros included)."""
        keys = ("baseline", "baseline+cls", "clipseg vision", "clipseg decoder chunks", "clip whole image")
        return {k: self.counts[k] for k in keys}, {s: self.seconds.get(s, 0.0) for s in STAGES}


def _counted_items(items, counts: Counter, key: str):
    for item in items:
        counts[key] += 1
        yield item
