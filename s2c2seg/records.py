"""Run records: what was run, with which knobs, on what, and the numbers (JSON + a per-class CSV).

A record names everything that changes a number: the protocol, the CSS/CSG parameters, the vocabulary
variant, the backend's ``describe()`` (with its label: ``""`` for pretrained weights, ``RANDOM WEIGHTS`` or
``SIMULATED`` otherwise), package versions and the git revision. Tables (``tables.py``) are built from records
only.

Output folders are never overwritten: :func:`claim_out_dir` refuses a folder that already holds a finished
``record.json``, before any work starts, and :func:`write_json_new` creates the final file with an
exclusive link, so two runs racing into one folder cannot replace each other's record either.

A record carries the SHA-256 of its contents (``checksum``, :func:`s2c2seg.store.dumps_checked`), verified
whenever it is read: a damaged record (truncated, a flipped byte, empty) is never used. :func:`load_records`
raises :class:`DamagedRecordError` naming every damaged record it met (``s2c2seg tables``: one line, exit 2),
never a table built without them. A record written before checksums (no ``checksum`` field) is read as it is.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .store import CorruptFileError, atomic_write, dumps_checked, read_json_checked

__all__ = ["RECORD_NAME", "CSV_NAME", "RecordExistsError", "DamagedRecordError", "RunRecord", "claim_out_dir",
           "write_json_new", "environment_info", "git_revision", "load_records", "method_label"]

RECORD_NAME = "record.json"
CSV_NAME = "per_class.csv"


class RecordExistsError(FileExistsError):
    """The output folder already holds a finished run record."""


class DamagedRecordError(CorruptFileError):
    """A run record that cannot be read back intact (not JSON, or failing its checksum)."""

    FIX = "rerun the run that wrote it into a new --out folder, or move the file out of the records' folders"


def git_revision(path: str | Path | None = None) -> str | None:
    """The checkout's ``git rev-parse HEAD`` (+ ``-dirty`` when tracked files changed), or None outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def environment_info() -> dict[str, Any]:
    """Package versions, python, platform, the git revision, and the device torch runs on."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("s2c2seg", "torch", "torchvision", "open_clip_torch", "transformers", "safetensors", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    import torch

    return {"packages": versions, "python": platform.python_version(), "platform": platform.platform(),
            "git_revision": git_revision(), "cuda": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads()}


def _clean(x):
    """JSON-safe: NaN/inf -> None (JSON has no NaN), tuples -> lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def method_label(method: str, select: bool = True, mode: str = "category_aware", use=None) -> str:
    """A short human name of a downstream configuration (used by tables and sweeps)."""
    if method == "baseline":
        return "baseline"
    name = "oracle" if method == "oracle" else ("S2C2Seg" if select else "S2C2Seg w/o CSS")
    if mode != "category_aware":
        name += f" [{mode}]"
    if method == "s2c2seg" and select and use is not None and tuple(use) != ("glob", "spat", "conf"):
        name += " {" + "+".join(use) + "}"
    return name


@dataclass
class RunRecord:
    """One evaluation of one method on one dataset split."""

    dataset: str
    split: str
    method: str
    baseline: str | None
    backend: dict
    protocol: dict
    parameters: dict
    """``css``, ``csg`` (dicts), ``score_source``, ``select``, ``background``."""
    vocabulary: dict
    """``variant``, ``num_classes``, ``num_queries``, ``names``."""
    metrics: dict
    """``mIoU``, ``mAcc``, ``aAcc`` (fractions), ``per_class`` {name: {IoU, Acc}}."""
    num_images: int
    timing: dict
    """``seconds_total``, ``seconds_per_image``, ``encode_seconds``, ``predict_seconds`` (summed over ranks)."""
    confusion: dict
    """``ConfusionMatrix.to_json()``."""
    environment: dict = field(default_factory=environment_info)
    cache: dict | None = None
    extra: dict = field(default_factory=dict)
    """Subset statistics (mean K, CSS recall), vote count, world size, command line."""
    label: str = ""
    """``""`` for pretrained weights, else ``RANDOM WEIGHTS`` / ``SIMULATED`` (copied from the backend)."""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    kind: str = "eval"
    source: str = field(default="", compare=False)
    """The file this record was read from (set by :func:`load_records`; not written)."""

    @property
    def miou(self) -> float | None:
        return self.metrics.get("mIoU")

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return _clean(d)

    @classmethod
    def from_json(cls, d: dict) -> RunRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        path = Path(path)
        if path.is_dir():
            path = path / RECORD_NAME
        try:
            d = read_json_checked(path)
        except CorruptFileError as exc:
            raise DamagedRecordError(f"damaged run record: {exc} ({DamagedRecordError.FIX})") from exc
        try:
            return cls.from_json({**d, "source": str(path)})
        except (OSError, TypeError) as exc:
            raise ValueError(f"cannot read run record {path}: {exc}") from exc

    def per_class_rows(self) -> list[dict]:
        rows = []
        for i, (name, v) in enumerate(self.metrics.get("per_class", {}).items()):
            rows.append({"index": i, "class": name, "IoU": v.get("IoU"), "Acc": v.get("Acc")})
        return rows

    def per_class_csv(self) -> str:
        """The text of ``per_class.csv``: index, class, IoU, Acc (fractions; empty where undefined)."""
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=["index", "class", "IoU", "Acc"])
        w.writeheader()
        for row in self.per_class_rows():
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return buf.getvalue()

    def save(self, out_dir: str | Path) -> Path:
        """Write ``per_class.csv``, then ``record.json`` (never over an existing one), into ``out_dir``.

        The record is the commit point: a run killed before it leaves no record, so the folder may be used again.
        A run that loses the folder to another (its record exists) puts the winner's CSV back before it raises."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        _refuse_folders(out_dir)
        atomic_write(out_dir / CSV_NAME, self.per_class_csv())
        try:
            return write_json_new(out_dir / RECORD_NAME, self.to_json())
        except RecordExistsError:
            try:
                atomic_write(out_dir / CSV_NAME, RunRecord.load(out_dir).per_class_csv())
            except (ValueError, OSError):
                pass  # the winner's record is unreadable: nothing to put back
            raise


def write_json_new(path: str | Path, obj: Any) -> Path:
    """Write JSON to ``path`` atomically; raise :class:`RecordExistsError` if ``path`` exists (never replaced)."""
    path = Path(path)
    try:
        return atomic_write(path, dumps_checked(_clean(obj), indent=2, sort_keys=False, allow_nan=False),
                            exclusive=True)  # no overwrite, even under a race
    except FileExistsError:
        raise RecordExistsError(f"{path} already exists: a finished run is never overwritten; "
                                "choose another --out folder") from None


def _refuse_folders(out_dir: Path, names: Iterable[str] = (RECORD_NAME, CSV_NAME)) -> None:
    """A folder where a run's file belongs is an error naming it (before any work, or any file, is written)."""
    for name in names:
        if (out_dir / name).is_dir():
            raise IsADirectoryError(f"{out_dir / name} is a folder where the run's {name} belongs (remove it, or "
                                    "choose another --out folder)")


def claim_out_dir(out_dir: str | Path | None, name: str = RECORD_NAME) -> Path | None:
    """Check, before any work, that ``out_dir`` holds no finished ``name`` (nor a folder where a run's file
    belongs); create the folder."""
    if out_dir is None:
        return None
    out_dir = Path(out_dir).expanduser()
    _refuse_folders(out_dir, {name, RECORD_NAME, CSV_NAME})
    if (out_dir / name).exists():
        raise RecordExistsError(f"{out_dir / name} already exists: a finished run is never overwritten; "
                                "choose another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def load_records(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Every run record under ``paths`` (files, or folders searched recursively for ``*.json`` records).

    In a folder, a ``*.json`` that is not a record is passed over; a damaged record (a ``record.json`` that is
    not JSON, or a record failing its checksum) is not: :class:`DamagedRecordError` names them all."""
    out, damaged = [], []
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*.json") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                d = read_json_checked(f)
            except CorruptFileError:
                if not p.is_dir() or f.name == RECORD_NAME or _is_record(f):
                    damaged.append(str(f))
                continue
            except OSError as exc:
                if not p.is_dir():
                    raise ValueError(f"cannot read run record {f}: {exc}") from exc
                continue
            if isinstance(d, dict) and d.get("kind") == "eval" and "metrics" in d:
                out.append(RunRecord.from_json({**d, "source": str(f)}))
            elif not p.is_dir():
                raise ValueError(f"{f} is not a run record (no kind='eval' and metrics)")
    if damaged:
        raise DamagedRecordError(f"{len(damaged)} damaged run record{'s' if len(damaged) > 1 else ''} (truncated, "
                                 f"altered, empty or not a record): {', '.join(damaged)} ({DamagedRecordError.FIX})")
    return out


def _is_record(path: Path) -> bool:
    """Whether a file that failed its checksum is still JSON of a run record (else: another file, passed over)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(d, dict) and d.get("kind") == "eval"
