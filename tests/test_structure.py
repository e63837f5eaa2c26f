"""The package's structure drawn from its imports (issue 17): a one-way house.

Every module has a layer (:data:`LAYERS`, low to high, as ``docs/design.md`` draws it). A module imports only
from its own layer or below, counting every import (module level, inside functions, under ``TYPE_CHECKING``),
and no two modules import each other through any path. Command-line handling (``argparse``) lives in the CLI
layer only (``cli_*.py``).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s2c2seg"

LAYERS = [
    ("base", ["", "store", "io", "regions", "metrics", "slide", "distributed", "palettes", "lab", "notebook_params",
              "data.*", "prediction", "primitives"]),
    ("bundle", ["bundle", "records"]),
    ("models", ["models.*", "segmenter", "sim.*"]),
    ("math", ["css", "csg", "released_scores", "released_fusion", "refine", "spatial_refine", "postprocess",
              "released_post", "view"]),
    ("configuration", ["presets", "encode_side"]),
    ("methods", ["paper", "released", "predict", "analysis"]),
    ("run", ["runspec", "cache", "experiments", "factories", "plots", "figures", "explain", "explain_plot",
             "segment_backends"]),
    ("evaluation", ["evaluate", "sweep"]),
    ("applications", ["session", "scenarios", "tables", "notebooks", "segment"]),
    ("command line", ["cli", "cli_eval", "cli_sweep", "cli_segment", "cli_tables", "cli_notebooks", "__main__"]),
]
"""Layer name -> its modules (``""``: the package's ``__init__``; ``x.*``: every module of subpackage ``x``)."""
CLI_HOSTS: set[str] = set()
"""Library modules allowed to hold argparse code (none: every sub-command has its ``cli_*`` module)."""


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _layer_of(name: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if name == m or (m.endswith(".*") and (name == m[:-2] or name.startswith(m[:-1]))):
                return i
    raise AssertionError(f"module s2c2seg.{name} has no layer: add it to LAYERS (and to docs/design.md)")


def _imports(name: str) -> set[str]:
    """The package modules ``name`` imports, anywhere in its file."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1] if node.level > 1 else here
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("s2c2seg"):
                target = node.module[len("s2c2seg."):] if node.module != "s2c2seg" else ""
            else:
                continue
            for cand in (target, *(f"{target}.{a.name}".lstrip(".") for a in node.names)):
                if cand in MODULES and cand != name:
                    out.add(cand)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("s2c2seg.") and a.name[8:] in MODULES:
                    out.add(a.name[8:])
    return out - {""}


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer_of(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_back_up(module):
    mine = _layer_of(module)
    up = sorted(t for t in GRAPH[module] if _layer_of(t) > mine)
    assert not up, (f"s2c2seg.{module} ({LAYERS[mine][0]}) imports {up} from a layer above: "
                    f"{[LAYERS[_layer_of(t)][0] for t in up]}")


def test_no_import_circles():
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for t in GRAPH[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen

    circles = sorted(m for m in MODULES if m in reach(m))
    assert not circles, f"modules on an import circle: {circles}"


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above can fail: the graph of a deliberate circle and an upward edge is caught."""
    assert "view" in GRAPH["predict"] and _layer_of("predict") > _layer_of("view")
    assert _layer_of("cli") > _layer_of("evaluate") and "evaluate" in GRAPH["cli"]
    assert _layer_of("css") < _layer_of("predict")  # so "css imports predict" would run back up


def test_argparse_lives_in_the_cli_modules():
    for m, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if "import argparse" in text:
            assert _layer_of(m) == len(LAYERS) - 1 or m in CLI_HOSTS, f"s2c2seg.{m} handles command-line arguments"
