"""The backends ``segment`` uses: built once per process and kept by their build arguments (:data:`BACKENDS`), and
the simulation's ground truth for a user's image (:func:`simulated_truth`), for :mod:`s2c2seg.segment`."""
from __future__ import annotations

import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.vocab import Vocabulary
from .encode_side import EncodeSpec

__all__ = ["BACKEND_MEMO_SIZE", "BACKENDS", "BackendSpec", "get_backend", "clear_backends", "simulated_truth",
           "patch_size"]

BACKEND_MEMO_SIZE = 3
"""Backends :data:`BACKENDS` keeps, the least recently used dropped first (each holds its models)."""


@dataclass(frozen=True)
class BackendSpec:
    """The frozen build arguments of a backend: its key in :data:`BACKENDS`."""

    name: str
    baseline: str
    size: str = "full"
    device: str | None = None
    cache_dir: str | None = None
    encode: EncodeSpec = field(default_factory=EncodeSpec)
    """The run's encode side (source groups, CLIPSeg text, precision); empty for a backend without a Segmenter."""


BACKENDS: OrderedDict[BackendSpec, tuple[Any, dict]] = OrderedDict()
"""The process's built backends with their ``describe()`` (+ ``fallback_reason`` of ``auto``), by
:class:`BackendSpec`: every ``segment_image`` call with the same arguments reuses one (at most
:data:`BACKEND_MEMO_SIZE`); :func:`clear_backends` empties it."""


def get_backend(spec: BackendSpec) -> tuple[Any, dict]:
    """(backend, its description) for ``spec``, built on first use (``factories.backend_by_name``)."""
    from .factories import MODEL_BACKENDS, backend_by_name

    if spec in BACKENDS:
        BACKENDS.move_to_end(spec)
        return BACKENDS[spec]
    extra: dict[str, Any] = {}
    if spec.cache_dir and ":" not in spec.name and spec.name != "sim":
        extra["cache_dir"] = str(Path(spec.cache_dir) / "text")  # the text-embedding cache, as eval's
    if spec.name in MODEL_BACKENDS:
        extra["config"] = spec.encode.segmenter_config(spec.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        backend = backend_by_name(spec.name, baseline=spec.baseline, size=spec.size, device=spec.device, **extra)
    info = dict(backend.describe())
    fallback = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if fallback and spec.name == "auto":
        info["fallback_reason"] = fallback[0]
    BACKENDS[spec] = (backend, info)
    while len(BACKENDS) > BACKEND_MEMO_SIZE:
        BACKENDS.popitem(last=False)
    return BACKENDS[spec]


def clear_backends() -> None:
    """Empty :data:`BACKENDS` (the next call builds its backend afresh)."""
    BACKENDS.clear()


def simulated_truth(cfg, image: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, int | None]:
    """(label map, background) SIMULATED for a user's image: a scene of ``sim.make_scene`` over ``vocab`` at the
    image's size, drawn from ``cfg`` and a seed of the image's pixels (the same image gives the same scene)."""
    from .sim import make_scene

    h, w = image.shape[:2]
    scene = make_scene(vocab, cfg.replace(image_size=(h, w)), zlib.crc32(np.ascontiguousarray(image).tobytes()))
    return scene.label, scene.meta["background"]


def patch_size(backend) -> int | None:
    """The side of one model patch (a CLIP patch, or the simulation's dense cell), None if unknown."""
    clip = getattr(backend, "clip", None)
    if clip is not None:
        return int(clip.patch_size)
    cfg = getattr(backend, "cfg", None)
    return int(cfg.dense_downsample) if cfg is not None and hasattr(cfg, "dense_downsample") else None
