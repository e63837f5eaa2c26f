"""The memory budget of one image, and the one rule that picks how ``window_local`` is stored (issue 21).

:class:`MemoryBudget` states the bytes a run may hold: the stored per-window CLIPSeg maps (``window_bytes``), the
downstream's transient work per chunk (``work_bytes``) and the assembled logits (``logits_bytes``).
:func:`window_storage` is the encode side's rule (docs/design.md, "Memory bounded in the vocabulary size"):
``auto`` stores float32 at the window size when it fits, else float16, else float16 reduced to the largest long
side that fits (``compact-<s>-float16``); an explicit storage that does not fit stops before encoding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .bundle import stored_window_hw
from .primitives import is_int

__all__ = ["MiB", "MemoryBudget", "WindowStorageError", "window_storage", "rows_per_chunk"]

MiB = 2**20


class WindowStorageError(ValueError):
    """A requested ``window_local`` storage that does not fit :attr:`MemoryBudget.window_bytes` (one line)."""


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes one image may hold, by kind (defaults: a 20,000-class run fits a 4 GiB address space, torch included)."""

    window_bytes: int = 256 * MiB
    """The stored per-window CLIPSeg maps ``window_local`` (N, Q, hs, ws) of one image."""
    work_bytes: int = 64 * MiB
    """The downstream's transient maps per chunk of queries (window rows, image rows); beyond it, passes over
    the queries stream in chunks."""
    logits_bytes: int = 256 * MiB
    """Image-size logits held at once: the union's assembled logits (else streamed) and ``Prediction.logits``
    (Q, H, W) on request (refused beyond it)."""

    def __post_init__(self):
        for name in ("window_bytes", "work_bytes", "logits_bytes"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ValueError(f"MemoryBudget.{name} must be an integer number of bytes >= 1, got {v!r}")

    @classmethod
    def of(cls, value) -> MemoryBudget:
        """A budget from itself or its JSON dict (a config read back)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"budget must be a MemoryBudget or its dict, got {type(value).__name__}")

    def to_json(self) -> dict:
        return asdict(self)


def _mb(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def window_storage(requested: str, store_size: int, num_windows: int, num_queries: int, window_hw: tuple[int, int],
                   budget: MemoryBudget, option: str) -> tuple[torch.dtype, int]:
    """(dtype, store size) of ``window_local`` for N windows of ``window_hw`` and Q queries.

    ``requested="auto"``: float32 at the window size if ``N·Q·ph·pw·4 <= budget.window_bytes``, else float16, else
    float16 at the largest long side s < max(ph, pw) that fits (:func:`~s2c2seg.bundle.stored_window_hw`).
    ``"float32"`` / ``"float16"`` (with ``store_size``): that storage, or :class:`WindowStorageError` naming
    ``option`` when it does not fit."""
    def size(dtype: torch.dtype, s: int) -> int:
        hs, ws = stored_window_hw(window_hw, s)
        return num_windows * num_queries * hs * ws * (torch.finfo(dtype).bits // 8)

    if requested != "auto":
        dtype = getattr(torch, requested)
        need = size(dtype, store_size)
        if need > budget.window_bytes:
            raise WindowStorageError(
                f"{option}={requested!r} stores window_local in {_mb(need)} ({num_windows} windows x {num_queries} "
                f"queries x {stored_window_hw(window_hw, store_size)}), over MemoryBudget.window_bytes "
                f"({_mb(budget.window_bytes)}): use {option}='auto' (a compact storage, labelled in the bundle), a "
                "smaller store size, or a larger budget")
        return dtype, store_size
    for dtype in (torch.float32, torch.float16):
        if size(dtype, 0) <= budget.window_bytes:
            return dtype, 0
    for s in range(max(window_hw) - 1, 0, -1):
        if size(torch.float16, s) <= budget.window_bytes:
            return torch.float16, s
    raise WindowStorageError(
        f"{option}='auto': even one value per window and query ({_mb(size(torch.float16, 1))} for {num_windows} "
        f"windows x {num_queries} queries) exceeds MemoryBudget.window_bytes ({_mb(budget.window_bytes)}): "
        "raise the budget")


def rows_per_chunk(row_bytes: int, budget_bytes: int) -> int:
    """How many rows of ``row_bytes`` a chunk of ``budget_bytes`` holds (at least one)."""
    return max(1, int(budget_bytes) // max(1, int(row_bytes)))
