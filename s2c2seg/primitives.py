"""Primitives shared by both readings (the paper's and the release's): input checks and config helpers."""
from __future__ import annotations

import numbers
from dataclasses import fields as dataclass_fields
from dataclasses import replace as dataclass_replace

import numpy as np

__all__ = ["is_int", "replace_fields"]


def replace_fields(config, fields: dict):
    """``dataclasses.replace`` that names the known fields when one is unknown."""
    known = [f.name for f in dataclass_fields(config)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"unknown {type(config).__name__} field(s) {unknown}; known: {known}")
    return dataclass_replace(config, **fields) if fields else config


def is_int(v) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
