"""The paper's figures and tables in one stable place: the top-level ``figures/`` folder.

``07_paper_tables`` (so ``make notebooks``) exports, from the run it belongs to:

* figures: PDF (TrueType / Type-42 fonts, as saved by :func:`s2c2seg.plots.save_figure`) + PNG, made at a
  CVPR width (:data:`s2c2seg.plots.CVPR_SINGLE` / :data:`~s2c2seg.plots.CVPR_DOUBLE`);
* tables: LaTeX + markdown, one file per table layout.

Every exported file ``X`` gets a sidecar ``X.json`` naming the run record it came from, the run folder, the
notebook, the backend and its label (``SIMULATED`` / ``RANDOM WEIGHTS`` / ``""`` for real weights), the
datasets and the image count. A file from another run is never silently replaced: the new one gets the next
free versioned name (``main_results.v2.pdf``) unless ``replace=True``; a re-export from the same record
overwrites its own files. Every file is written atomically, its sidecar first (so a file never stands without the
sidecar that makes it ours); a sidecar that is damaged (it carries its checksum), or a folder in a file's place,
is not ours: the export takes the next free name and leaves it as it is.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .store import CorruptFileError, atomic_write, dumps_checked, read_json_checked

__all__ = ["FIGURES_DIRNAME", "PAPER_FIGURES", "SIDECAR_SUFFIX", "default_dir", "provenance", "pdf_width_in",
           "export_file", "export_text", "export_notebook_figures"]

FIGURES_DIRNAME = "figures"
SIDECAR_SUFFIX = ".json"
PAPER_FIGURES: dict[str, tuple[str, ...]] = {
    "02_css_score_subsets": ("css_score_subsets",),
    "03_fusion_variants": ("fusion_variants",),
    "05_confusion": ("confusion_matrices", "confusion_reduction_split"),
    "06_hparam_robustness": ("hparam_robustness",),
    "07_paper_tables": ("main_results", "unit_scope"),
}
"""Notebook -> the figures of its ``figures/`` folder that belong in the paper."""
FIGURE_SUFFIXES = (".pdf", ".png")
MAX_VERSIONS = 1000


def default_dir() -> Path:
    """``figures/`` at the project root (the checkout holding ``pyproject.toml`` above the package), else in
    the working directory (a wheel install)."""
    root = Path(__file__).resolve().parent.parent
    base = root if (root / "pyproject.toml").is_file() else Path.cwd()
    return base / FIGURES_DIRNAME


def provenance(record_path: str | Path, record: Mapping[str, Any] | None = None) -> dict:
    """The sidecar facts of a notebook's run record (read from ``record_path`` unless ``record`` is given)."""
    record_path = Path(record_path).resolve()
    if record is None:
        if not record_path.is_file():
            raise FileNotFoundError(f"run record not found: {record_path} (run its notebook first)")
        try:
            record = read_json_checked(record_path)
        except CorruptFileError as exc:
            raise CorruptFileError(f"run record {exc} (run its notebook again)") from None
    params = record.get("params", {}) or {}
    datasets = params.get("datasets") or [record.get("dataset")]
    return {"record": str(record_path), "run_dir": str(record_path.parent.parent),
            "notebook": record.get("notebook"), "backend": record.get("backend"), "label": record.get("label", ""),
            "n_images": record.get("n_images"), "n_images_is": "per dataset", "datasets": datasets,
            "package_version": record.get("package_version")}


def pdf_width_in(path: str | Path) -> float | None:
    """Width in inches of a PDF's first page (its ``/MediaBox``), None when it cannot be read."""
    m = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", Path(path).read_bytes())
    return None if m is None else round((float(m.group(3)) - float(m.group(1))) / 72.0, 3)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _same_record(path: Path, record: str) -> bool:
    side = _sidecar(path)
    if not side.is_file():
        return False
    try:  # a damaged sidecar is not ours: the new export takes the next free name, the old file stays
        return read_json_checked(side).get("record") == record
    except (CorruptFileError, AttributeError):
        return False


def _target(dest_dir: Path, stem: str, suffixes: Iterable[str], record: str, replace: bool) -> str:
    """The stem to write under: ``stem`` when free, ours (same record) or ``replace``; else ``stem.vN``."""
    suffixes = list(suffixes)
    for v in range(1, MAX_VERSIONS):
        cand = stem if v == 1 else f"{stem}.v{v}"
        paths = [dest_dir / f"{cand}{s}" for s in suffixes]
        if replace and v == 1:
            return cand
        if all(not p.exists() or _same_record(p, record) for p in paths):
            return cand
    raise RuntimeError(f"more than {MAX_VERSIONS} versions of {stem} in {dest_dir}; pass replace=True or clean it")


def _write_sidecar(path: Path, prov: Mapping[str, Any], **extra: Any) -> None:
    atomic_write(_sidecar(path), dumps_checked({"file": path.name, **prov, **extra}, indent=2, sort_keys=True))


def export_file(figure_stem: str | Path, dest_dir: str | Path, prov: Mapping[str, Any], *, name: str | None = None,
                replace: bool = False) -> list[Path]:
    """Copy a saved figure (``<figure_stem>.pdf`` and ``.png``) into ``dest_dir`` with a sidecar each; return
    the written files. A PDF's sidecar also gives its width and the CVPR column it fits."""
    from .plots import CVPR_DOUBLE, CVPR_SINGLE

    figure_stem = Path(figure_stem)
    sources = [figure_stem.with_suffix(s) for s in FIGURE_SUFFIXES]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"figure files not found: {', '.join(missing)}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = _target(dest_dir, name or figure_stem.name, FIGURE_SUFFIXES, prov["record"], replace)
    out = []
    for src in sources:
        dst = dest_dir / f"{stem}{src.suffix}"
        data = src.read_bytes()
        extra: dict[str, Any] = {"source": str(src.resolve())}
        if src.suffix == ".pdf":
            w = pdf_width_in(src)
            extra.update(width_in=w, pdf_fonttype=42,
                         cvpr_column=None if w is None else ("single" if w <= CVPR_SINGLE + 0.5 else
                                                             "double" if w <= CVPR_DOUBLE + 0.75 else "wider"))
        _write_sidecar(dst, prov, **extra)  # first: a file is never left without the sidecar that makes it ours
        atomic_write(dst, data)
        out.append(dst)
    return out


def export_text(texts: Mapping[str, str], stem: str, dest_dir: str | Path, prov: Mapping[str, Any], *,
                replace: bool = False) -> list[Path]:
    """Write one table in several forms (``{".tex": latex, ".md": markdown}``) as ``stem.<ext>``, with a
    sidecar each; return the written files."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = _target(dest_dir, stem, texts, prov["record"], replace)
    out = []
    for suffix, text in texts.items():
        dst = dest_dir / f"{stem}{suffix}"
        _write_sidecar(dst, prov)
        atomic_write(dst, text.rstrip("\n") + "\n")
        out.append(dst)
    return out


def export_notebook_figures(run_dir: str | Path, dest_dir: str | Path, *, notebooks: Mapping[str, Iterable[str]]
                            | None = None, replace: bool = False) -> tuple[list[Path], list[str]]:
    """Export the paper figures (:data:`PAPER_FIGURES` by default) of the notebooks of one run folder, each
    with the provenance of its own notebook's record. Returns ``(written files, skipped notes)``: a notebook
    that did not run or wrote no record is skipped and said so, never guessed."""
    run_dir = Path(run_dir)
    written, skipped = [], []
    for nb, names in (PAPER_FIGURES if notebooks is None else notebooks).items():
        rec = run_dir / nb / "record.json"
        if not rec.is_file():
            skipped.append(f"{nb}: no record in {run_dir / nb}")
            continue
        prov = provenance(rec)
        for name in names:
            stem = run_dir / nb / "figures" / name
            if not stem.with_suffix(".pdf").is_file():
                skipped.append(f"{nb}: no figure {name}")
                continue
            written += export_file(stem, dest_dir, prov, replace=replace)
    return written, skipped
