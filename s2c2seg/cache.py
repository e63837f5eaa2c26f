"""The evaluation's feature cache: one FeatureBundle per image on disk (safetensors, no pickle).

An entry's key is the SHA-256 of a canonical JSON of everything that determines the bundle: the backend's
``describe()`` (models, weights, settings), the protocol fields the encoder reads (short side, crop, stride,
name variant, vote), the vocabulary (every name of every class, in order), the package version, the dataset
and image id, and a hash of the image's pixels and region ids. Post-processing knobs (``logit_scale``,
``prob_thd``, ``area_thd``) are not part of the key: bundles hold cosines, and those knobs are applied
downstream by ``predict.py``, so a sweep over them reads the same entries.

Entries are written atomically (``FeatureBundle.save``: a temporary file renamed into place), so a killed
run leaves complete entries only and the next run resumes from them. An entry that is truncated, corrupt or
written under another key raises ``BundleError`` when read; the cache then deletes it, counts it, and the
caller recomputes it. A bundle is never served to a different key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bundle import BundleError, FeatureBundle
from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary

__all__ = ["ENCODER_PROTOCOL_FIELDS", "bundle_key", "key_payload", "BundleCache", "CacheStats"]

ENCODER_PROTOCOL_FIELDS = ("short_side", "crop", "stride", "name_variant", "vote")
"""Protocol fields that can change a bundle (the rest only change the post-processing)."""


def _array_digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _package_version() -> str:
    from . import __version__

    return __version__


def key_payload(backend_description: dict, protocol: Protocol, vocab: Vocabulary, sample: Sample,
                dataset: str | None = None) -> dict[str, Any]:
    """The JSON-able dict whose canonical form is hashed into the cache key (also stored for inspection)."""
    proto = protocol.to_json()
    return {
        "schema": 1,
        "package": _package_version(),
        "backend": backend_description,
        "protocol": {k: proto[k] for k in ENCODER_PROTOCOL_FIELDS},
        "vocabulary": vocab.to_json(),
        "dataset": dataset,
        "image_id": sample.id,
        "image_sha256": _array_digest(sample.image),
        "regions_sha256": _array_digest(sample.regions),
    }


def bundle_key(backend_description: dict, protocol: Protocol, vocab: Vocabulary, sample: Sample,
               dataset: str | None = None) -> str:
    """SHA-256 (hex) of the canonical JSON (sorted keys, no whitespace) of :func:`key_payload`."""
    payload = key_payload(backend_description, protocol, vocab, sample, dataset)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    """Entries that could not be read or carried another key; each was deleted and recomputed."""

    def to_json(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}


class BundleCache:
    """A folder of ``<key[:2]>/<key>.safetensors`` bundles."""

    SUFFIX = ".safetensors"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"BundleCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        if not (isinstance(key, str) and len(key) == 64 and all(ch in "0123456789abcdef" for ch in key)):
            raise ValueError(f"key must be a 64-character lowercase hex SHA-256, got {key!r}")
        return self.root / key[:2] / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> FeatureBundle | None:
        """The bundle stored under ``key``, or None (missing, or unreadable/foreign: then deleted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            bundle = FeatureBundle.load(path, expected_key=key)
        except BundleError:
            self.stats.corrupt += 1
            path.unlink(missing_ok=True)
            return None
        self.stats.hits += 1
        return bundle

    def put(self, key: str, bundle: FeatureBundle) -> Path:
        """Store ``bundle`` under ``key`` (its ``meta["key"]`` is set to ``key``); atomic."""
        path = self.path(key)
        bundle.meta = {**bundle.meta, "key": key}
        bundle.save(path)
        return path

    def get_or_compute(self, key: str, compute: Callable[[], FeatureBundle]) -> tuple[FeatureBundle, bool]:
        """(bundle, hit): read the entry, or compute, store and return it."""
        bundle = self.get(key)
        if bundle is not None:
            return bundle, True
        self.stats.misses += 1
        bundle = compute()
        self.put(key, bundle)
        return bundle, False

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob(f"*/*{self.SUFFIX}"))

    def nbytes(self) -> int:
        """Bytes on disk of all entries."""
        return sum(p.stat().st_size for p in self.root.glob(f"*/*{self.SUFFIX}"))
