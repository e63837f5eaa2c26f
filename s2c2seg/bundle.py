"""The per-image feature bundle: everything downstream (CSS, CSG, metric) needs, computed once per image.

A bundle is the only thing that crosses from the models (``segmenter.py``, ``sim/``) to the pure math
downstream (``predict.py``), and the unit the evaluation cache stores on disk (safetensors, no pickle).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

__all__ = ["FeatureBundle", "BundleError", "PAPER_SOURCES", "WINDOW_SOURCES", "SOURCE_GROUPS", "storage_label",
           "stored_window_hw"]

EXACT_STORAGE = "exact"
"""``meta["storage"]`` of a lossless ``window_local``: float32 at the window size."""
_COMPACT_SIZE = re.compile(r"^compact-(\d+)-")


def stored_window_hw(window_hw: tuple[int, int], store_size: int) -> tuple[int, int]:
    """(hs, ws) at which ``window_local`` of a (ph, pw) window is stored: the long side reduced to ``store_size``
    (aspect kept, each side rounded, at least 1); the window's own size when ``store_size`` is 0 or not smaller."""
    h, w = window_hw
    if store_size <= 0 or max(h, w) <= store_size:
        return h, w
    scale = store_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def storage_label(dtype: torch.dtype, store_size: int = 0) -> str:
    """``meta["storage"]`` of ``window_local``: ``exact`` (float32, window size), ``compact-float16`` (float16,
    window size) or ``compact-<s>-<dtype>`` (long side reduced to s, upsampled bilinearly downstream)."""
    name = str(dtype).removeprefix("torch.")
    if store_size > 0:
        return f"compact-{store_size}-{name}"
    return EXACT_STORAGE if dtype == torch.float32 else f"compact-{name}"


PAPER_SOURCES = ("global_sim", "clipseg_mean", "clipseg_maps")
"""The paper reading's whole-image sources (CLIP's global embedding, CLIPSeg on the whole image): read by the
``paper`` preset and the oracle, never by the released presets; optional (``SegmenterConfig.paper_sources``)."""
WINDOW_SOURCES = ("window_local", "window_global", "input_image")
"""The release's per-window sources (``SegmenterConfig.window_sources``); ``window_local`` marks the group.
``window_pad`` is geometry, not a source: every bundle whose windows were padded has it."""
SOURCE_GROUPS = {"paper": PAPER_SOURCES, "window": WINDOW_SOURCES}
"""The optional source groups of a bundle, by the name a backend's ``describe()["sources"]`` lists."""


FINITE_CHUNK = 2**22
"""Values per chunk of the finiteness check (no bool copy of a large field at once)."""


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite, checked chunk by chunk of :data:`FINITE_CHUNK` values."""
    flat = t.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + FINITE_CHUNK]).all()) for i in range(0, flat.numel(), FINITE_CHUNK))


class BundleError(ValueError):
    """A bundle (in memory or on disk) is malformed, truncated or belongs to another key."""


@dataclass
class FeatureBundle:
    """Models' outputs for one image and one vocabulary (Q queries = class names + synonyms).

    Shapes: Q queries, N sliding-window crops on a (gh, gw) grid each, CLIPSeg maps stored at (hs, ws).
    """

    dense_logits: torch.Tensor
    """(N, Q, gh, gw) float: the baseline's patch-text cosine similarity per crop, on the crop's own grid."""
    crop_boxes: torch.Tensor
    """(N, 4) int64: (y1, y2, x1, x2) of each crop in the resized image (whole image: one box)."""
    resized_hw: torch.Tensor
    """(2,) int64: size of the short-side-resized image that the crops tile."""
    image_hw: torch.Tensor
    """(2,) int64: original image (= label) size; predictions are made at this size."""
    query_to_class: torch.Tensor
    """(Q,) int64: class index of each query (synonyms share one class)."""
    global_sim: torch.Tensor | None = None
    """(Q,) float32: cosine of the vanilla global CLIP image embedding with each query's text embedding (a paper
    source: None in a released-only bundle, ``SegmenterConfig(paper_sources=False)``)."""
    clipseg_mean: torch.Tensor | None = None
    """(Q,) float32: spatial mean of CLIPSeg's sigmoid map per query, over its full-resolution output (paper)."""
    clipseg_maps: torch.Tensor | None = None
    """(Q, hs, ws) float16: CLIPSeg's whole-image sigmoid maps per query, stored at a reduced size (paper)."""
    regions: torch.Tensor | None = None
    """(H, W) int32 region ids at the original size (CorrCLIP's vote), or None."""
    window_local: torch.Tensor | None = None
    """(N, Q, ph, pw) float32 (float16 with the compact storage; (N, Q, hs, ws) reduced with ``compact-<s>-...``,
    :func:`stored_window_hw`): CLIPSeg's sigmoid map of every query on each (padded) window, fed as the S2C2Seg
    release feeds it, resized to the window; None when not produced."""
    window_global: torch.Tensor | None = None
    """(N, Q) float32: per-window cosine of the vanilla CLS embedding with the query text (release ``cls``)."""
    window_pad: torch.Tensor | None = None
    """(4,) int64: (top, bottom, left, right) zero padding added to every window before the models (all
    windows of one image share one size); ``dense_logits[n]`` and ``window_local[n]`` are on the padded window."""
    input_image: torch.Tensor | None = None
    """(3, rh, rw) float32: the network input (short-side resized, CLIP-normalised), read by spatial refinement."""
    meta: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable facts: image id, backend, key. Never used by the math."""

    _TENSORS = ("dense_logits", "crop_boxes", "resized_hw", "image_hw", "global_sim", "clipseg_mean",
                "clipseg_maps", "query_to_class", "regions", "window_local", "window_global", "window_pad",
                "input_image")
    _OPTIONAL = ("global_sim", "clipseg_mean", "clipseg_maps", "regions", "window_local", "window_global",
                 "window_pad", "input_image")
    """Fields a bundle may lack (older caches, backends or configurations that do not produce them)."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    @property
    def num_queries(self) -> int:
        return int(self.query_to_class.numel())

    @property
    def num_classes(self) -> int:
        return int(self.query_to_class.max().item()) + 1 if self.query_to_class.numel() else 0

    def window_size(self) -> tuple[int, int]:
        """(ph, pw): the padded size of every window (all windows of one image share one size)."""
        y1, y2, x1, x2 = (int(v) for v in self.crop_boxes[0])
        pad = [0, 0, 0, 0] if self.window_pad is None else [int(v) for v in self.window_pad]
        return y2 - y1 + pad[0] + pad[1], x2 - x1 + pad[2] + pad[3]

    def validate(self) -> None:
        """Raise :class:`BundleError` naming the field when shapes or values are inconsistent."""
        q = self.query_to_class.numel()
        if self.query_to_class.ndim != 1 or q == 0:
            raise BundleError("query_to_class must be a non-empty 1-D tensor")
        checks = {
            "dense_logits": self.dense_logits.ndim == 4 and self.dense_logits.shape[1] == q,
            "crop_boxes": self.crop_boxes.shape == (self.dense_logits.shape[0], 4),
            "resized_hw": tuple(self.resized_hw.shape) == (2,),
            "image_hw": tuple(self.image_hw.shape) == (2,),
        }
        if self.global_sim is not None:
            checks["global_sim"] = tuple(self.global_sim.shape) == (q,)
        if self.clipseg_mean is not None:
            checks["clipseg_mean"] = tuple(self.clipseg_mean.shape) == (q,)
        if self.clipseg_maps is not None:
            checks["clipseg_maps"] = self.clipseg_maps.ndim == 3 and self.clipseg_maps.shape[0] == q
        if self.regions is not None:
            checks["regions"] = tuple(self.regions.shape) == tuple(int(v) for v in self.image_hw)
        n = self.dense_logits.shape[0]
        if self.window_local is not None:
            checks["window_local"] = self.window_local.ndim == 4 and tuple(self.window_local.shape[:2]) == (n, q)
        if self.window_global is not None:
            checks["window_global"] = tuple(self.window_global.shape) == (n, q)
        if self.window_pad is not None:
            checks["window_pad"] = tuple(self.window_pad.shape) == (4,) and bool((self.window_pad >= 0).all())
        if self.input_image is not None:
            checks["input_image"] = tuple(self.input_image.shape) == (3, *(int(v) for v in self.resized_hw))
        for name, ok in checks.items():
            if not ok:
                shape = tuple(getattr(self, name).shape)
                raise BundleError(f"FeatureBundle.{name} has inconsistent shape {shape} (Q={q}, N={n})")
        if self.window_local is not None:
            self._check_window_storage()
        for name in ("dense_logits", "global_sim", "clipseg_mean", "clipseg_maps", "window_local", "window_global",
                     "input_image"):
            t = getattr(self, name)
            if t is not None and not _all_finite(t):
                raise BundleError(f"FeatureBundle.{name} contains NaN or inf")

    def _check_window_storage(self) -> None:
        """``window_local``'s dtype and stored size agree with ``meta["storage"]`` (:func:`storage_label`)."""
        dtype, stored = self.window_local.dtype, tuple(self.window_local.shape[-2:])
        if dtype not in (torch.float32, torch.float16):
            raise BundleError(f"FeatureBundle.window_local is {dtype}: store it as float32 or float16")
        storage = self.meta.setdefault("storage", storage_label(dtype))  # an absent label follows the dtype
        match = _COMPACT_SIZE.match(str(storage))
        size = int(match.group(1)) if match else 0
        if storage != storage_label(dtype, size):
            raise BundleError(f"FeatureBundle.window_local is {dtype} but meta['storage'] is {storage!r}: "
                              f"float32 needs 'exact', float16 'compact-float16' (reduced: 'compact-<size>-<dtype>')")
        if self.window_pad is None:
            return
        top, bottom, left, right = (int(v) for v in self.window_pad)
        sizes = {(int(y2 - y1) + top + bottom, int(x2 - x1) + left + right)
                 for y1, y2, x1, x2 in self.crop_boxes.tolist()}
        if {stored_window_hw(hw, size) for hw in sizes} != {stored}:
            raise BundleError(f"FeatureBundle.window_local is {stored} per window, but crop_boxes + window_pad give "
                              f"padded windows of sizes {sorted(sizes)} (meta['storage'] = {storage!r})")

    def require_paper_sources(self, reader: str) -> None:
        """Raise :class:`BundleError` naming the fix when a paper source (:data:`PAPER_SOURCES`) is missing."""
        missing = [n for n in PAPER_SOURCES if getattr(self, n) is None]
        if missing:
            raise BundleError(f"FeatureBundle lacks {', '.join(missing)} ({reader} reads the paper reading's "
                              "whole-image sources): encode with SegmenterConfig(paper_sources=True)")

    def source_groups(self) -> frozenset[str]:
        """The :data:`SOURCE_GROUPS` this bundle has (``paper``: every paper field; ``window``: ``window_local``)."""
        groups = set()
        if all(getattr(self, n) is not None for n in PAPER_SOURCES):
            groups.add("paper")
        if self.window_local is not None:
            groups.add("window")
        return frozenset(groups)

    def extended(self, other: FeatureBundle) -> FeatureBundle:
        """This bundle plus the source groups only ``other`` has: ``other`` must be an encode of the same image,
        models and settings that computed other groups (a cache entry being extended, never narrowed)."""
        new = other.source_groups() - self.source_groups()
        if not new:
            return self
        if other.query_to_class.shape != self.query_to_class.shape or not torch.equal(other.crop_boxes,
                                                                                       self.crop_boxes):
            raise BundleError("FeatureBundle.extended: the other bundle is of another image or vocabulary")
        fields_ = {n: getattr(other, n) for g in new for n in SOURCE_GROUPS[g] if getattr(other, n) is not None}
        meta = dict(self.meta)
        if "window" in new:
            meta.update({k: other.meta[k] for k in ("storage", "local_text") if k in other.meta})
        meta["sources"] = sorted(self.source_groups() | new)
        return FeatureBundle(**{**self.tensors(), **fields_}, meta=meta)

    def nbytes(self) -> int:
        """Bytes of tensor payload (what the cache stores, before the small JSON header)."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def tensors(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in self._TENSORS if getattr(self, n) is not None}

    # ------------------------------------------------------------------ disk
    def save(self, path: str | Path) -> None:
        """Write atomically to ``path`` (safetensors; ``meta`` in the header). A crash leaves no partial file."""
        from safetensors.torch import save

        from .store import atomic_write

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous().cpu() for k, v in self.tensors().items()}
        atomic_write(path, save(tensors, metadata={"meta": json.dumps(self.meta, sort_keys=True)}))

    @classmethod
    def load(cls, path: str | Path, expected_key: str | None = None) -> FeatureBundle:
        """Read a bundle; raise :class:`BundleError` if truncated, corrupt, or written under another key."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("meta", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises several types for truncated / garbled files
            raise BundleError(f"cannot read bundle {path}: {exc}") from exc
        if expected_key is not None and meta.get("key") != expected_key:
            raise BundleError(f"bundle {path} was written for key {meta.get('key')!r}, not {expected_key!r}")
        names = {f.name for f in fields(cls)} - {"meta"}
        missing = [n for n in cls._TENSORS if n not in cls._OPTIONAL and n not in tensors]
        if missing or set(tensors) - names:
            raise BundleError(f"bundle {path} lacks fields {missing}")
        return cls(**tensors, meta=meta)
