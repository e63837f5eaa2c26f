"""Run the notebook collection headless: jupytext ``.py`` -> ``.ipynb`` -> papermill, one run folder per call.

``s2c2seg notebooks run [NAMES...] [-f params.yaml] [--grid grid.yaml] [--out DIR]``

* Each invocation makes a new folder ``<out>/<UTC time>`` (never reusing one) holding, per notebook, the
  executed notebook, its JSON record and its figures (``<run>/<name>/``), plus ``summary.json`` / ``summary.md``.
* A failing notebook does not stop the others; the exit status is 0 only when all of them passed.
* Parameters come from YAML (papermill's ``-p`` would turn lists into strings): top-level keys go to every
  notebook that declares them, a key naming a notebook (``05``, ``"05"``, ``05_confusion``) holds overrides
  for that notebook only. A name no notebook declares is an error listing the known ones
  (``--allow-unknown`` passes it on); a malformed file is an error naming the file and line. ``--grid`` is a YAML
  mapping ``parameter: [values...]``; every point of the Cartesian product runs the selected notebooks into its own
  sub-folder.
* The kernel is the interpreter running this command (``sys.executable``), given to papermill through an
  in-process kernel spec, so a fresh virtual environment needs no ``ipykernel install``.
* ``backend="auto"`` is resolved by the first notebook that runs (it records what it resolved to); the later
  notebooks of the same run get the resolved backend, so a missing model hub is paid for once.
"""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .notebook_params import (NOTEBOOKS, ParameterError, check_params, declared_parameters, grid_points,
                              key_lines, load_params, notebook_key, params_for)
from .store import CorruptFileError, atomic_write, read_json_checked, replacing

__all__ = [
    "NOTEBOOKS", "KERNEL_NAME", "RECORD_NAME", "NotebookResult", "notebooks_dir", "resolve_notebooks",
    "to_ipynb", "interpreter_kernel_spec", "execute_notebook", "ParameterError", "load_params", "notebook_key",
    "params_for", "key_lines", "declared_parameters", "check_params", "grid_points", "new_run_dir",
    "run_collection", "format_summary",
]

KERNEL_NAME = "s2c2seg-python"
"""Kernel name given to papermill; it resolves to ``sys.executable -m ipykernel_launcher`` (no install needed)."""
RECORD_NAME = "record.json"
"""File each notebook writes into its ``out_dir`` (see :func:`s2c2seg.session.Session.write_record`)."""


# ---------------------------------------------------------------------------------------------- locating
def notebooks_dir() -> Path:
    """The folder holding the ``NN_name.py`` notebooks: the checkout's ``notebooks/`` (editable install), or
    the copy packaged as ``s2c2seg/notebooks_src`` (wheel install)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "notebooks", here / "notebooks_src"):
        if (cand / f"{NOTEBOOKS[0]}.py").is_file():
            return cand
    raise FileNotFoundError(f"notebook sources not found in {here.parent / 'notebooks'} or {here / 'notebooks_src'}")


def resolve_notebooks(names: Sequence[str] = (), directory: str | Path | None = None) -> list[Path]:
    """Map names (``"02"``, ``"02_css_score_subsets"``, ``"css_score_subsets"`` or a path) to ``.py`` files,
    in collection order when no names are given. Unknown names raise ``ValueError`` listing the known ones."""
    directory = Path(directory) if directory is not None else notebooks_dir()
    if not names:
        return [directory / f"{n}.py" for n in NOTEBOOKS]
    out = []
    for name in names:
        p = Path(name)
        if p.suffix in (".py", ".ipynb") and p.is_file():
            out.append(p)
            continue
        stem = p.stem
        hits = [n for n in NOTEBOOKS if n == stem or n.split("_", 1)[0] == stem or n.split("_", 1)[1] == stem]
        if len(hits) != 1:
            raise ValueError(f"unknown notebook {name!r}; known: {', '.join(NOTEBOOKS)}")
        out.append(directory / f"{hits[0]}.py")
    return out


# ---------------------------------------------------------------------------------------------- kernel
def interpreter_kernel_spec():
    """A jupyter ``KernelSpec`` that starts ipykernel with this very interpreter."""
    from ipykernel.kernelspec import RESOURCES
    from jupyter_client.kernelspec import KernelSpec

    return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                      display_name=f"Python ({sys.executable})", language="python", resource_dir=RESOURCES,
                      metadata={"debugger": False})


def _kernel_manager_class():
    """An nbclient kernel manager whose spec manager knows :data:`KERNEL_NAME` (built lazily: jupyter imports)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _SpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):  # noqa: D401 - jupyter API
            if kernel_name == KERNEL_NAME:
                return interpreter_kernel_spec()
            return super().get_kernel_spec(kernel_name)

    class InterpreterKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_spec_manager(self):
            return _SpecManager(data_dir=self.data_dir)

    return InterpreterKernelManager


# ---------------------------------------------------------------------------------------------- conversion
def to_ipynb(src: str | Path, dst: str | Path) -> Path:
    """Convert a jupytext ``py:percent`` notebook to ``.ipynb`` (cell tags kept), with this interpreter's kernel."""
    import jupytext
    import nbformat

    src, dst = Path(src), Path(dst)
    nb = jupytext.read(src) if src.suffix == ".py" else nbformat.read(src, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ValueError(f"notebook {src} has no cell tagged 'parameters'")
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python (s2c2seg)", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata.pop("jupytext", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, nbformat.writes(nb))
    return dst


# ---------------------------------------------------------------------------------------------- results
@dataclass
class NotebookResult:
    """Outcome of one notebook execution."""

    name: str
    ok: bool
    seconds: float
    out_dir: str
    notebook: str
    params: dict = field(default_factory=dict)
    error: str = ""
    record: dict | None = None
    """The notebook's JSON record (None when it did not write one)."""

    @property
    def backend(self) -> str:
        rec = self.record or {}
        return str(rec.get("backend", self.params.get("backend", "?")))

    @property
    def label(self) -> str:
        return str((self.record or {}).get("label", ""))


def _error_summary(exc: BaseException) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()[:500]


def execute_notebook(src: str | Path, out_dir: str | Path, parameters: Mapping[str, Any] | None = None, *,
                     cwd: str | Path | None = None, timeout: float | None = None,
                     start_timeout: float = 120.0, defaults: Mapping[str, Any] | None = None) -> NotebookResult:
    """Execute one notebook into ``out_dir`` (``<name>.ipynb`` executed, ``out_dir`` injected as parameter).

    ``defaults`` are the runner's own settings: each is passed only when the notebook declares it in its
    ``parameters`` cell (and ``parameters`` does not set it), so no notebook is handed a name it does not use.

    Never raises for a failure inside the notebook: the result says ``ok=False`` with the error, and the
    partially executed notebook is kept (papermill saves it with the traceback).
    """
    import papermill as pm

    src = Path(src)
    name = src.stem
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(parameters or {})
    params["out_dir"] = str(out_dir)
    source_nb = out_dir / f"{name}.source.ipynb"
    executed = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    error = ""
    try:
        to_ipynb(src, source_nb)
        if defaults:
            declared = pm.inspect_notebook(str(source_nb))
            params = {**{k: v for k, v in defaults.items() if k in declared}, **params}
        # papermill saves as it goes: into a temporary name, renamed when it ends (a failure's traceback kept)
        with replacing(executed, suffix=".ipynb", keep_partial=True) as tmp:
            try:
                pm.execute_notebook(str(source_nb), str(tmp), parameters=params, kernel_name=KERNEL_NAME,
                                    kernel_manager_class=_kernel_manager_class(), cwd=str(cwd) if cwd else None,
                                    progress_bar=False, log_output=False, execution_timeout=timeout,
                                    start_timeout=start_timeout)
            finally:
                _name_output(tmp, executed)
    except Exception as exc:  # noqa: BLE001 - any failure of one notebook is reported, never fatal
        error = _error_summary(exc)
    finally:
        source_nb.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    record = None
    rec_path = out_dir / RECORD_NAME
    if rec_path.is_file():
        try:
            record = read_json_checked(rec_path)
        except CorruptFileError as exc:
            error = error or f"record {exc}"
    if not error and record is None:
        error = f"notebook finished but wrote no {RECORD_NAME}"
    return NotebookResult(name=name, ok=not error, seconds=round(seconds, 2), out_dir=str(out_dir),
                          notebook=str(executed), params=params, error=error, record=record)


def _name_output(tmp: Path, executed: Path) -> None:
    """The executed notebook's ``metadata.papermill.output_path``: its final name, not the temporary one."""
    import nbformat

    if tmp.is_file():
        nb = nbformat.read(tmp, as_version=4)
        nb.metadata.setdefault("papermill", {})["output_path"] = str(executed)
        nbformat.write(nb, tmp)


def _point_tag(point: Mapping[str, Any]) -> str:
    if not point:
        return ""
    text = "_".join(f"{k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9=._-]+", "-", text)[:120]


def new_run_dir(root: str | Path) -> Path:
    """A fresh folder ``root/<UTC yyyymmdd-HHMMSS>[-N]``; an existing one is never reused."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        cand = root / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {root}")


# ---------------------------------------------------------------------------------------------- run
def run_collection(names: Sequence[str] = (), *, params: Mapping[str, Any] | None = None,
                   grid: Mapping[str, Sequence[Any]] | None = None, out: str | Path = "runs/notebooks",
                   run_dir: str | Path | None = None, notebook_dir: str | Path | None = None,
                   timeout: float | None = None, allow_unknown: bool = False, params_source: str = "parameters",
                   grid_source: str = "grid", params_lines: Mapping[tuple, int] | None = None,
                   grid_lines: Mapping[tuple, int] | None = None, echo=print) -> tuple[Path, list[NotebookResult]]:
    """Execute the selected notebooks (all by default) for every grid point; write the summary; return
    ``(run_dir, results)``. ``echo`` receives one progress line per notebook (None = silent).

    Parameters are checked first (:func:`check_params`; ``allow_unknown`` passes unknown names on to
    papermill, which warns); ``params_source`` / ``grid_source`` name their files in the errors, and
    ``params_lines`` / ``grid_lines`` (:func:`key_lines`) their lines.
    ``summary.json`` / ``summary.md`` are written however the run ends."""
    sources = resolve_notebooks(names, notebook_dir)
    params = dict(params or {})
    points = grid_points(grid, grid_source)
    declared = {} if allow_unknown else check_params(sources, params, grid, where=params_source,
                                                     grid_where=grid_source, lines=params_lines,
                                                     grid_lines=grid_lines)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    results: list[NotebookResult] = []
    try:
        for point in points:
            tag = _point_tag(point)
            base = run_dir / tag if tag else run_dir
            resolved_backend: str | None = None
            for src in sources:
                known = declared.get(src.stem)
                p = params_for(src.stem, params, known)
                p.update(point)
                defaults = {"records_dir": str(base.resolve()),
                            "interactive": False,  # headless: static figures instead of widgets
                            "cache_dir": str((base / "cache").resolve())}  # each image encoded once per run
                if p.get("backend", "auto") == "auto" and resolved_backend:
                    defaults.update(backend=resolved_backend, backend_requested="auto")
                    p.pop("backend", None)
                if echo:
                    echo(f"[notebooks] {tag + ' ' if tag else ''}{src.stem} ...")
                res = execute_notebook(src, base / src.stem, p, cwd=cwd, timeout=timeout, defaults=defaults)
                results.append(res)
                if res.record and res.record.get("backend") and resolved_backend is None:
                    resolved_backend = str(res.record["backend"])
                if echo:
                    status = "ok" if res.ok else f"FAILED ({res.error})"
                    echo(f"[notebooks]   {status} in {res.seconds:.1f} s, backend {res.backend}"
                         f"{' [' + res.label + ']' if res.label else ''}")
    finally:
        _write_summary(run_dir, results, params, grid)
    return run_dir, results


def _write_summary(run_dir: Path, results: Sequence[NotebookResult], params: Mapping, grid) -> None:
    rows = [{k: v for k, v in asdict(r).items() if k != "record"} | {"backend": r.backend, "label": r.label}
            for r in results]
    summary = {"all_passed": bool(results) and all(r.ok for r in results), "params": _str_keys(params),
               "grid": _str_keys(grid or {}), "python": sys.executable, "notebooks": rows}
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, default=str, sort_keys=True) + "\n")
    atomic_write(run_dir / "summary.md", format_summary(results, run_dir) + "\n")


def _str_keys(obj: Any) -> Any:
    """``obj`` with every mapping key a string (YAML reads ``05:`` as the integer 5; JSON sorts keys)."""
    if isinstance(obj, Mapping):
        return {str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_str_keys(v) for v in obj]
    return obj


def format_summary(results: Iterable[NotebookResult], run_dir: str | Path | None = None) -> str:
    """A markdown table: notebook, status, seconds, backend (+ label), folder."""
    results = list(results)
    lines = ["| notebook | status | seconds | backend | output |", "|---|---|---:|---|---|"]
    for r in results:
        where = Path(r.out_dir)
        if run_dir is not None:
            try:
                where = where.relative_to(Path(run_dir).resolve())
            except ValueError:
                pass
        backend = r.backend + (f" ({r.label})" if r.label else "")
        status = "ok" if r.ok else "FAILED: " + r.error.replace("|", "/").replace("\n", " ")[:120]
        lines.append(f"| {r.name} | {status} | {r.seconds:.1f} | {backend} | {where} |")
    n_ok = sum(r.ok for r in results)
    lines.append("")
    lines.append(f"{n_ok}/{len(results)} notebooks passed" + (f"; run folder: {run_dir}" if run_dir else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI
