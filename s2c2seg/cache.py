"""The evaluation's feature cache: one FeatureBundle per image on disk (safetensors, no pickle).

An entry's key is the SHA-256 of a canonical JSON of everything that determines the bundle: the backend's
``describe()`` (models, weights, settings), the protocol fields the encoder reads (short side, crop, stride,
name variant, vote), the vocabulary (every name of every class, in order), the package version, a
fingerprint of the source code that makes bundles (:data:`BUNDLE_SOURCES`: a fix to a baseline or to the
simulation changes every key, so a cache never serves bundles of older code), the dataset and image id, and
a hash of the image's pixels and region ids. Post-processing knobs (``logit_scale``,
``prob_thd``, ``area_thd``) are not part of the key: bundles hold cosines, and those knobs are applied
downstream by ``predict.py``, so a sweep over them reads the same entries.

Entries are written atomically (``FeatureBundle.save``: a temporary file renamed into place, created with
the user's umask), so a killed run leaves complete entries only and the next run resumes from them. Each
entry carries the SHA-256 of its tensors' bytes (:func:`tensor_checksum`), verified when read. An entry that
is truncated, corrupt (a flipped byte in a tensor included) or written under another key is deleted,
counted (``CacheStats.corrupt``, reported in the run record) and recomputed by the caller. A bundle is
never served to a different key.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleError, FeatureBundle
from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary
from .store import tensors_checksum

__all__ = ["ENCODER_PROTOCOL_FIELDS", "BUNDLE_SOURCES", "code_fingerprint", "fingerprint_sources", "tensor_checksum",
           "bundle_key", "key_payload", "BundleCache", "CacheStats"]

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


BUNDLE_SOURCES = ("bundle", "segmenter", "slide", "models", "data", "sim")
"""The package's modules / sub-packages whose code makes bundles (a name is ``<name>.py`` or a folder
``<name>/`` of ``.py`` files; either form, so ``sim`` may be a module or a package)."""

PACKAGE_ROOT = Path(__file__).resolve().parent
"""The installed package's folder, whose files :func:`code_fingerprint` hashes."""


def _source_files(root: Path, names) -> list[Path]:
    files = []
    for name in names:
        module, folder = root / f"{name}.py", root / name
        if not module.is_file() and not folder.is_dir():
            raise ValueError(f"bundle source {name!r}: neither {module} nor {folder}/ exists (update BUNDLE_SOURCES)")
        if module.is_file():
            files.append(module)
        if folder.is_dir():
            files += sorted(folder.rglob("*.py"))
    return files


def fingerprint_sources(root: Path, names: tuple[str, ...]) -> str:
    """SHA-256 over the relative paths and bytes of the source files ``names`` under ``root``."""
    h = hashlib.sha256()
    for f in _source_files(Path(root), names):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """:func:`fingerprint_sources` of the installed package's :data:`BUNDLE_SOURCES`, computed once per process."""
    return fingerprint_sources(PACKAGE_ROOT, BUNDLE_SOURCES)


def tensor_checksum(bundle: FeatureBundle) -> str:
    """SHA-256 of a bundle's tensors: each one's name, dtype, shape and bytes, in field order."""
    return tensors_checksum(bundle.tensors())


def _package_version() -> str:
    from . import __version__

    return __version__


SOURCE_GROUP_KEYS = ("sources", "storage", "local_text")
"""``describe()`` entries that only say which source groups a backend computes (its ``config`` keeps the settings
that shape them: CLIPSeg text, window storage); left out of the key, so one entry serves every run on the image."""
SOURCE_GROUP_CONFIG = ("paper_sources", "window_sources")


def without_source_groups(desc: dict) -> dict:
    """``desc`` less the parts that only choose source groups (:data:`SOURCE_GROUP_KEYS`): an entry's groups are
    checked when read (:meth:`BundleCache.get`), and extended when a run needs one it lacks."""
    out = {k: v for k, v in desc.items() if k not in SOURCE_GROUP_KEYS}
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items() if k not in SOURCE_GROUP_CONFIG}
    return out


def key_payload(backend_description: dict, protocol: Protocol, vocab: Vocabulary, sample: Sample,
                dataset: str | None = None) -> dict[str, Any]:
    """The JSON-able dict whose canonical form is hashed into the cache key (also stored for inspection)."""
    proto = protocol.to_json()
    return {
        "schema": 2,
        "package": _package_version(),
        "code": code_fingerprint(),
        "backend": without_source_groups(backend_description),
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
    """Entries that could not be read, failed their checksum or carried another key; each was deleted and
    recomputed."""

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

    def get(self, key: str, need=frozenset()) -> FeatureBundle | None:
        """The bundle stored under ``key``, or None: missing, unreadable / foreign (then deleted and counted
        corrupt), or lacking one of the source groups ``need`` (kept: :meth:`extend` adds the groups)."""
        bundle = self._read(key)
        if bundle is None or not set(need) <= bundle.source_groups():
            return None
        self.stats.hits += 1
        return bundle

    def _read(self, key: str) -> FeatureBundle | None:
        """The verified entry under ``key``, or None (missing; damaged or foreign: deleted and counted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            bundle = FeatureBundle.load(path, expected_key=key)
            if bundle.meta.get("checksum") != tensor_checksum(bundle):
                raise BundleError(f"bundle {path}: its tensors do not match their checksum")
        except BundleError:
            self.stats.corrupt += 1
            path.unlink(missing_ok=True)
            return None
        return bundle

    def put(self, key: str, bundle: FeatureBundle) -> Path:
        """Store ``bundle`` under ``key``, replacing any entry (its ``meta`` gets ``key`` and the tensors'
        ``checksum``); atomic. Returns the entry's path."""
        path = self.path(key)
        bundle.meta = {**bundle.meta, "key": key, "checksum": tensor_checksum(bundle)}
        bundle.save(path)
        return path

    def extend(self, key: str, bundle: FeatureBundle) -> Path:
        """Store ``bundle`` under ``key`` together with the source groups that only the existing entry has
        (``FeatureBundle.extended``: an entry is extended, never narrowed); atomic. Returns the entry's path."""
        old = self._read(key)
        return self.put(key, bundle if old is None else bundle.extended(old))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob(f"*/*{self.SUFFIX}"))

    def nbytes(self) -> int:
        """Bytes on disk of all entries."""
        return sum(p.stat().st_size for p in self.root.glob(f"*/*{self.SUFFIX}"))
