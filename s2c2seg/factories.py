"""Backends and datasets by name (``--backend``, the dataset argument): the one place where the Segmenter and the
simulation backend meet (:func:`build_backend`)."""
from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path

from .segmenter import Segmenter, SegmenterConfig, full_vfm_config

__all__ = ["build_backend", "backend_for", "MODEL_BACKENDS", "SIM_IMAGES", "SIM_PREFIX", "benchmark_key",
           "backend_by_name",
           "dataset_by_name"]

MODEL_BACKENDS = ("pretrained", "random", "auto")
"""Backend names that build a Segmenter (the others take no Segmenter settings)."""
SIM_IMAGES = 8
"""Number of SIMULATED scenes of a ``sim:<dataset>`` split unless told otherwise."""
SIM_PREFIX = "sim:"
"""A dataset name ``sim:<dataset>`` means SIMULATED scenes over that benchmark's vocabulary."""


def benchmark_key(name: str) -> str:
    """The benchmark a dataset name refers to (``sim:voc21`` -> ``voc21``); an unknown one raises naming the known."""
    from .data.datasets import DATASETS

    key = name[len(SIM_PREFIX):] if name.startswith(SIM_PREFIX) else name
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))}, each also as "
                         f"{SIM_PREFIX}<dataset> for SIMULATED scenes)")
    return key


def backend_by_name(name: str, *, baseline: str, size: str, device: str | None = None, **kwargs):
    """A backend by name: ``pretrained`` / ``random`` / ``sim`` / ``auto`` (:func:`build_backend`)
    or ``package.module:factory`` (a user's callable, called with ``baseline=``, ``size=`` and ``kwargs``)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"backend {name!r}: cannot import {attr!r} from {module!r} ({exc})") from exc
        return factory(baseline=baseline, size=size, **kwargs)
    if device is not None:
        kwargs["device"] = device
    return build_backend(name, baseline=baseline, size=size, **kwargs)


def dataset_by_name(name: str, data_root: str | None, split: str, region_dir: str | None = None, *,
                    sim_images: int = SIM_IMAGES, variant: str):
    """A benchmark by name (``data.DATASETS``) under ``data_root``, or ``sim:<dataset>`` (SIMULATED scenes over
    that dataset's vocabulary in name-file ``variant``, :class:`s2c2seg.sim.SimDataset`, ``sim_images`` of them)."""
    from .data.datasets import load_dataset

    key = benchmark_key(name)
    if name.startswith(SIM_PREFIX):
        from .sim import SimDataset

        return SimDataset(key, n_images=sim_images, variant=variant)
    if data_root is None:
        raise ValueError(f"dataset {name!r} needs its files (give --data-root, the folder holding its images and "
                         "labels; see docs/datasets.md)")
    return load_dataset(key, data_root, split=split, region_dir=region_dir)


def _sim_backend(**kw):
    from .sim import SimBackend

    return SimBackend(**kw)


def build_backend(name: str = "pretrained", baseline: str = "sclip", size: str = "full",
                  cache_dir: str | Path | None = None, *, device: str = "cpu", baseline_params: dict | None = None,
                  clip_model: str | None = None, clip_pretrained: str | None = None, vfm_name: str | None = None,
                  config: SegmenterConfig | None = None, seed: int = 0, **kw):
    """An object with ``.encode(sample, vocab, protocol)`` and ``.describe()``.

    ``pretrained``: real weights (CLIP through open_clip, CLIPSeg ``CIDAS/clipseg-rd64-refined``, the
    baseline's VFM); raises :class:`~s2c2seg.models.offline.ModelUnavailableError` within seconds when they
    cannot be loaded. ``random``: the same architectures with random weights (``size="full"``) or tiny ones
    (``size="tiny"``, tests). ``sim``: :class:`s2c2seg.sim.SimBackend` (``**kw`` go to it). ``auto``:
    pretrained, else the simulation backend with a warning. ``cache_dir`` holds the text-embedding cache and
    the offline CLIP tokenizer for CLIPSeg.
    """
    if name == "sim":
        return _sim_backend(**kw)
    if name == "auto":
        from .models.offline import ModelUnavailableError

        try:
            return build_backend("pretrained", baseline, size, cache_dir, device=device,
                                 baseline_params=baseline_params, clip_model=clip_model,
                                 clip_pretrained=clip_pretrained, vfm_name=vfm_name, config=config, seed=seed)
        except (ModelUnavailableError, OSError) as exc:
            warnings.warn(f"pretrained weights unavailable ({exc}); falling back to the SIMULATED backend: "
                          "its numbers are not real-model results", RuntimeWarning, stacklevel=2)
            return _sim_backend(**kw)
    config = config if config is not None else SegmenterConfig()
    if name not in ("pretrained", "random"):
        raise ValueError(f"name must be 'pretrained', 'random', 'sim' or 'auto', got {name!r}")
    if size not in ("full", "tiny"):
        raise ValueError(f"size must be 'full' or 'tiny', got {size!r}")
    if name == "pretrained" and size != "full":
        raise ValueError("size='tiny' exists only for random weights (name='random')")
    if kw:
        raise ValueError(f"unknown argument(s) for a {name} backend: {sorted(kw)}")

    from .models.baselines import make_baseline
    from .models.clip import builtin_clip_config, load_clip, tiny_clip_config
    from .models.clipseg import ClipSeg, rd64_clipseg_config, tiny_clipseg_config
    from .models.text import TextEncoder
    from .models.vfm import load_vfm, tiny_vfm_config

    bl = make_baseline(baseline, **(baseline_params or {}))
    default_model, default_tag = getattr(bl, "default_clip", ("ViT-B-16", "openai"))
    model_name = clip_model or default_model
    vfm_id = vfm_name or getattr(bl, "vfm_name", None) or getattr(bl, "default_vfm", None) or "dino_vitb8"
    cache = Path(cache_dir) if cache_dir is not None else None
    if name == "pretrained":
        clip = load_clip(model_name, clip_pretrained or default_tag, device=device)
        clipseg = ClipSeg(cache_dir=cache, device=device)
        vfm = load_vfm(vfm_id, device=device) if bl.needs_vfm else None
    else:
        clip_cfg = builtin_clip_config(model_name) if size == "full" else tiny_clip_config()
        clip = load_clip(model_name, config=clip_cfg, device=device, seed=seed)
        clipseg = ClipSeg(config=rd64_clipseg_config() if size == "full" else tiny_clipseg_config(),
                          cache_dir=cache, device=device, seed=seed)
        vfm = None
        if bl.needs_vfm:
            vfm = load_vfm(vfm_id, config=full_vfm_config() if size == "full" else tiny_vfm_config("dino"),
                           device=device, seed=seed)
    text = TextEncoder(clip, cache_dir=None if cache is None else cache / "text")
    return Segmenter(bl, clip, clipseg, text, vfm=vfm, config=config)


def backend_for(backend, encode):
    """``backend``, or a Segmenter sharing its models that encodes ``encode`` (an
    :class:`~s2c2seg.encode_side.EncodeSpec`) besides what it already computes: its CLIPSeg text, and the source
    groups of both. A backend that is not a Segmenter is returned when it satisfies ``encode``, else refused."""
    try:
        encode.check(backend.describe(), "backend")
        return backend
    except ValueError:
        if not isinstance(backend, Segmenter):
            raise
    cfg = backend.config
    cfg = dataclasses.replace(cfg, local_text=encode.local_text or cfg.local_text,
                              paper_sources=cfg.paper_sources or "paper" in encode.sources,
                              window_sources=cfg.window_sources or "window" in encode.sources)
    if encode.precision == "fp32" and cfg.precision == "fp16":
        raise ValueError("backend_for: this backend's models run in fp16; build an fp32 backend for an fp32 run")
    return Segmenter(backend.baseline, backend.clip, backend.clipseg, backend.text, vfm=backend.vfm, config=cfg)
