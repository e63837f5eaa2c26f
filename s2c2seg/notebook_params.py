"""The runner's parameters: YAML files, per-notebook keys, the check against each notebook's ``parameters`` cell.

* A params file is a YAML mapping: top-level keys go to every notebook that declares them; a key naming a
  notebook (``05``, which YAML reads as the integer 5, ``"05"``, ``05_confusion``, ``confusion``) holds that
  notebook's overrides. A grid file maps ``parameter: [values...]``.
* A malformed file is a :class:`ParameterError` naming the file and the line; a name no selected notebook
  declares is one too, listing the known names (the runner's ``--allow-unknown`` skips that check).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["NOTEBOOKS", "ParameterError", "load_params", "key_lines", "notebook_key", "params_for",
           "declared_parameters", "check_params", "grid_points"]

NOTEBOOKS = ("00_quickstart", "01_scoring_terms", "02_css_score_subsets", "03_fusion_variants",
             "04_oracle_gap", "05_confusion", "06_hparam_robustness", "07_paper_tables")
"""The collection, in running order (``notebooks/<name>.py``); per-notebook keys name one of these."""

class ParameterError(ValueError):
    """A parameter or grid file that cannot be used as given (the message names the file and the fix)."""


def load_params(path: str | Path | None) -> dict:
    """Read a YAML parameter (or grid) file (``{}`` for None); a syntax error or a non-mapping raises
    :class:`ParameterError` naming the file and the line."""
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ParameterError(f"{where}: not valid YAML ({exc.problem or exc.context}); "
                             f"fix that line (a mapping such as `n_images: 2`)") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML ({exc})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ParameterError(f"{path}:1: must hold a mapping (`name: value` lines), got {type(data).__name__}")
    return data


def key_lines(path: str | Path | None) -> dict[tuple, int]:
    """1-based line of every key of a YAML mapping file: ``{(key,): line, (notebook key, key): line}`` (keys as
    YAML reads them, e.g. ``05`` -> 5), for errors that point at the line; ``{}`` when it cannot be read."""
    if path is None:
        return {}
    import yaml

    try:
        root = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[tuple, int] = {}

    def walk(node, prefix: tuple) -> None:
        if not isinstance(node, yaml.MappingNode) or len(prefix) > 1:
            return
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                key = yaml.safe_load(k.value) if k.style is None else k.value
                out[prefix + (key,)] = k.start_mark.line + 1
                walk(v, prefix + (key,))

    walk(root, ())
    return out


def notebook_key(key: Any) -> str | None:
    """The notebook a per-notebook key names (``5``, ``"05"``, ``"05_confusion"``, ``"confusion"``), or None
    for an ordinary parameter. A number that names no notebook raises :class:`ParameterError`."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        num = f"{int(key):02d}"
        hits = [n for n in NOTEBOOKS if n.split("_", 1)[0] == num]
        if not hits:
            raise ParameterError(f"per-notebook key {key!r} names no notebook; known: {', '.join(NOTEBOOKS)}")
        return hits[0]
    if isinstance(key, str):
        hits = [n for n in NOTEBOOKS if key in (n, n.split("_", 1)[1])]
        return hits[0] if hits else None
    return None


def params_for(name: str, params: Mapping[str, Any], declared: Iterable[str] | None = None) -> dict:
    """Common keys plus the overrides under the notebook's own key (see :func:`notebook_key`).

    With ``declared`` (the names of the notebook's ``parameters`` cell), common keys the notebook does not
    declare are left out: a top-level key goes to the notebooks that use it."""
    known = None if declared is None else set(declared)
    common, own = {}, {}
    for k, v in params.items():
        nb = notebook_key(k)
        if nb is None:
            if known is None or k in known:
                common[str(k)] = v
        elif nb == name:
            if not isinstance(v, dict):
                raise ParameterError(f"parameters for notebook {k!r} must be a mapping, got {v!r}")
            own.update({str(kk): vv for kk, vv in v.items()})
    return {**common, **own}


def declared_parameters(src: str | Path) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters``."""
    import ast

    import jupytext
    import nbformat

    src = Path(src)
    nb = jupytext.read(src) if src.suffix == ".py" else nbformat.read(src, as_version=4)
    names: list[str] = []
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_params(sources: Sequence[Path], params: Mapping[str, Any], grid: Mapping[str, Any] | None = None, *,
                 where: str = "parameters", grid_where: str = "grid", lines: Mapping[tuple, int] | None = None,
                 grid_lines: Mapping[tuple, int] | None = None) -> dict[str, list[str]]:
    """Every parameter must be declared by a notebook it goes to: a top-level or grid key by at least one of
    ``sources``, a per-notebook key by that notebook. Returns ``{notebook: declared names}``; an unknown name
    raises :class:`ParameterError` naming ``where`` (and the line, from ``lines``: see :func:`key_lines`) and
    listing the known names (``--allow-unknown`` skips this check)."""
    declared = {src.stem: declared_parameters(src) for src in sources}
    everyone = sorted(set().union(*declared.values())) if declared else []

    def at(name: str, table: Mapping[tuple, int] | None, key: tuple) -> str:
        line = (table or {}).get(key)
        return f"{name}:{line}" if line else name

    for k, v in params.items():
        nb = notebook_key(k)
        if nb is None:
            if str(k) not in everyone:
                raise ParameterError(f"{at(where, lines, (k,))}: unknown parameter {k!r} (top level); known: "
                                     f"{', '.join(everyone)} (or pass --allow-unknown)")
        elif isinstance(v, dict) and nb in declared:
            for kk in v:
                if str(kk) not in declared[nb]:
                    raise ParameterError(f"{at(where, lines, (k, kk))}: unknown parameter {kk!r} for notebook "
                                         f"{nb}; known: {', '.join(sorted(declared[nb]))} (or pass --allow-unknown)")
    for k in grid or {}:
        if str(k) not in everyone:
            raise ParameterError(f"{at(grid_where, grid_lines, (k,))}: unknown parameter {k!r}; known: "
                                 f"{', '.join(everyone)} (or pass --allow-unknown)")
    return declared


def grid_points(grid: Mapping[str, Sequence[Any]] | None, where: str = "grid") -> list[dict]:
    """Cartesian product of ``{param: [values]}`` (one empty point when there is no grid)."""
    if not grid:
        return [{}]
    for k, v in grid.items():
        if not isinstance(v, (list, tuple)) or len(v) == 0:
            raise ParameterError(f"{where}: grid entry {k!r} must be a non-empty list, got {v!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
