"""Files the package writes: atomic writes that honour the umask, and checksummed tensor files verified when read.

:func:`atomic_write` writes a temporary file in the target's folder (a unique name, so two writers never share
one), fsyncs it and renames it into place (``os.replace``): a reader sees the old file or the new one, never a
part, and a process killed mid-write leaves only a ``.*.tmp`` file that no reader opens. The temporary file is
created with ``os.open(..., 0o666)``, so the kernel applies the umask (``tempfile.mkstemp`` would give 0o600).
:func:`save_tensors` / :func:`load_tensors` store tensors as safetensors with the SHA-256 of their bytes
(:func:`tensors_checksum`) in the header; a file that is truncated, garbled or fails its checksum raises
:class:`CorruptFileError`, which a cache counts, deletes and recomputes. JSON files that are read back (run
records, notebook records, figure sidecars) carry the SHA-256 of their canonical form (:func:`dumps_checked`),
verified by :func:`read_json_checked`.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # torch is imported where tensors are written (the other writers do not need it)
    import torch

__all__ = ["CorruptFileError", "TEMP_GLOB", "temp_path", "atomic_write", "replacing", "json_checksum", "dumps_checked",
           "read_json_checked", "tensors_checksum", "save_tensors", "load_tensors"]

TEMP_GLOB = ".*.tmp*"
"""What every temporary file of :func:`temp_path` matches (no reader of the package opens such a name)."""

CHECKSUM_KEY = "checksum"
"""The safetensors header field holding :func:`tensors_checksum`; the JSON field holding :func:`json_checksum`."""


class CorruptFileError(ValueError):
    """A file exists but cannot be read back intact (truncated, garbled, or failing its checksum)."""


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """A fresh temporary name next to ``path`` (``.<name>.<pid>.<random>.tmp<suffix>``; matches :data:`TEMP_GLOB`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _into_place(tmp: Path, path: Path, exclusive: bool = False) -> None:
    """Rename ``tmp`` to ``path`` (``exclusive``: never over an existing one); a folder in the way is named."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder where a file belongs (remove it, or write elsewhere)")
    if exclusive:
        os.link(tmp, path)  # fails if path exists
    else:
        os.replace(tmp, path)


def atomic_write(path: str | Path, data: bytes | str, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename), with mode
    ``0o666 & ~umask``. ``exclusive``: never replace an existing ``path`` (``FileExistsError``, even under a race)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError:
        raise PermissionError(f"cannot write {path}: no write permission in {path.parent} (make it writable, or "
                              "write elsewhere)") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        _into_place(tmp, path, exclusive)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def replacing(path: str | Path, *, suffix: str = "", keep_partial: bool = False) -> Iterator[Path]:
    """For writers that want a file name (papermill): yield a :func:`temp_path` that the block writes (with the
    umask, as any ``open``), then rename it onto ``path``. When the block raises, the temporary file is removed,
    or, with ``keep_partial``, renamed into place as well (a failed notebook keeps its traceback)."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
    except BaseException:
        if keep_partial and tmp.is_file():
            _into_place(tmp, path)
        raise
    else:
        _into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def json_checksum(obj: dict) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace, ASCII) of ``obj`` less its ``checksum`` field."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def dumps_checked(obj: dict, **kwargs) -> str:
    """``json.dumps(obj, **kwargs)`` with the :func:`json_checksum` of ``obj`` added as its ``checksum`` field,
    plus a final newline (what :func:`read_json_checked` verifies)."""
    obj = json.loads(json.dumps(obj, **{k: v for k, v in kwargs.items() if k in ("default", "allow_nan")}))
    return json.dumps({**obj, CHECKSUM_KEY: json_checksum(obj)}, **kwargs) + "\n"


def read_json_checked(path: str | Path) -> Any:
    """The JSON in ``path``, verified: :class:`CorruptFileError` when it is empty, truncated, garbled or fails its
    ``checksum`` (an object without one, written before checksums, is returned as read)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path} is damaged (not valid JSON: {exc})") from exc
    if isinstance(obj, dict) and CHECKSUM_KEY in obj and obj[CHECKSUM_KEY] != json_checksum(obj):
        raise CorruptFileError(f"{path} is damaged (its contents do not match their checksum)")
    return obj


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of tensors: each one's name, dtype, shape and bytes, in the dict's order."""
    import torch

    h = hashlib.sha256()
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` (safetensors) with ``meta`` and their checksum in the header, atomically."""
    from safetensors.torch import save

    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    header = {"meta": json.dumps(meta, sort_keys=True), CHECKSUM_KEY: tensors_checksum(tensors)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, save(tensors, metadata=header))


def load_tensors(path: str | Path, order: list[str] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a :func:`save_tensors` file, verified; :class:`CorruptFileError` when it is not intact.
    ``order``: the tensor order the checksum was taken in (default: the file's sorted names)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("meta", "{}"))
    except Exception as exc:  # safetensors raises several types for truncated / garbled files
        raise CorruptFileError(f"cannot read {path}: {exc}") from exc
    names = [n for n in (order or sorted(tensors)) if n in tensors]
    if header.get(CHECKSUM_KEY) != tensors_checksum({n: tensors[n] for n in names}):
        raise CorruptFileError(f"{path}: its tensors do not match their checksum")
    return tensors, meta
