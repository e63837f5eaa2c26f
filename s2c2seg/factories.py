"""Backends and datasets by the names the command line uses (``--backend``, the dataset argument)."""
from __future__ import annotations

import importlib

__all__ = ["SIM_IMAGES", "SIM_PREFIX", "benchmark_key", "backend_by_name", "dataset_by_name"]

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
    """A backend by name: ``pretrained`` / ``random`` / ``sim`` / ``auto`` (:func:`s2c2seg.segmenter.build_backend`)
    or ``package.module:factory`` (a user's callable, called with ``baseline=``, ``size=`` and ``kwargs``)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"backend {name!r}: cannot import {attr!r} from {module!r} ({exc})") from exc
        return factory(baseline=baseline, size=size, **kwargs)
    from .segmenter import build_backend

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
