"""JupyterLab in the project's environment: ``.py`` notebooks open as notebooks (jupytext's viewer).

``python -m s2c2seg.lab`` (run by ``make env``) writes the default-viewer setting into the environment's own
configuration, ``<sys.prefix>/etc/jupyter/labconfig/default_setting_overrides.json``: JupyterLab's settings
server layers every ``labconfig/default_setting_overrides.json`` of the jupyter config path over the schema
defaults (``jupyterlab_server.settings_utils``). Nothing in the user's home is read or written, and a user's
own choice (set in JupyterLab's settings editor) still wins over this default.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Mapping

from .store import atomic_write

__all__ = ["DOCMANAGER_PLUGIN", "JUPYTEXT_VIEWER", "TEXT_NOTEBOOK_TYPES", "settings_path", "default_viewers",
           "install_lab_settings", "main"]

DOCMANAGER_PLUGIN = "@jupyterlab/docmanager-extension:plugin"
"""The JupyterLab plugin whose ``defaultViewers`` setting maps a file type to the viewer a double-click opens."""
JUPYTEXT_VIEWER = "Jupytext Notebook"
"""The widget factory jupyterlab-jupytext registers for text notebooks."""
TEXT_NOTEBOOK_TYPES = ("python",)
"""JupyterLab file types whose files open as notebooks: the collection's ``py:percent`` notebooks."""
OVERRIDES_FILE = Path("etc") / "jupyter" / "labconfig" / "default_setting_overrides.json"
"""Where, under an environment's prefix, JupyterLab looks for layered default settings."""


def settings_path(prefix: str | Path | None = None) -> Path:
    """The overrides file of the environment at ``prefix`` (default: the running interpreter's)."""
    return Path(sys.prefix if prefix is None else prefix) / OVERRIDES_FILE


def default_viewers() -> dict[str, str]:
    """``{file type: viewer}`` this project installs."""
    return {t: JUPYTEXT_VIEWER for t in TEXT_NOTEBOOK_TYPES}


def install_lab_settings(prefix: str | Path | None = None) -> Path:
    """Merge :func:`default_viewers` into the environment's overrides file (other settings kept); return it."""
    path = settings_path(prefix)
    current: dict = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it, then rerun "
                             f"`python -m s2c2seg.lab`") from None
        if not isinstance(current, dict):
            raise ValueError(f"{path} must hold a JSON object; fix or delete it, then rerun `python -m s2c2seg.lab`")
    plugin: Mapping = current.setdefault(DOCMANAGER_PLUGIN, {})
    plugin.setdefault("defaultViewers", {}).update(default_viewers())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(current, indent=2, sort_keys=True) + "\n")
    return path


def main() -> int:
    """Install the setting into this interpreter's environment and say where."""
    print(f"JupyterLab: {', '.join(TEXT_NOTEBOOK_TYPES)} files open with {JUPYTEXT_VIEWER!r} "
          f"(written to {install_lab_settings()})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
