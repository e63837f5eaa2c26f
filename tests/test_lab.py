"""JupyterLab opens the ``.py`` notebooks as notebooks: the setting `make env` installs, as JupyterLab's own
settings server resolves it (no browser)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from s2c2seg import lab

settings_utils = pytest.importorskip("jupyterlab_server.settings_utils")


def _schemas_dir() -> Path:
    d = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    if not (d / "@jupyterlab" / "docmanager-extension" / "plugin.json").is_file():
        pytest.skip(f"JupyterLab's schemas are not installed under {d}")
    return d


def test_install_merges_into_existing_overrides(tmp_path):
    path = lab.settings_path(tmp_path)
    assert path == tmp_path / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
                                lab.DOCMANAGER_PLUGIN: {"defaultViewers": {"markdown": "Jupytext Notebook"}}}))
    assert lab.install_lab_settings(tmp_path) == path
    data = json.loads(path.read_text())
    assert data["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert data[lab.DOCMANAGER_PLUGIN]["defaultViewers"] == {"markdown": "Jupytext Notebook",
                                                             "python": "Jupytext Notebook"}
    path.write_text("{not json")
    with pytest.raises(ValueError, match="default_setting_overrides.json is not valid JSON"):
        lab.install_lab_settings(tmp_path)


def test_jupyterlab_resolves_python_files_to_the_jupytext_viewer(tmp_path, monkeypatch):
    """JupyterLab's settings server, pointed at a prefix where the setting was installed, gives the document
    manager ``defaultViewers = {"python": "Jupytext Notebook"}`` as its default; without it, none."""
    schemas = _schemas_dir()
    manager = pytest.importorskip("jupyter_server.services.config.manager")
    # the jupyter config path JupyterLab reads: only the temporary prefix's (no home, no real environment)
    monkeypatch.setattr(manager, "jupyter_config_path", lambda: [str(tmp_path / "etc" / "jupyter")])

    def default_viewers():
        result, _ = settings_utils.get_settings(str(tmp_path / "app_settings"), str(schemas),
                                                str(tmp_path / "user_settings"), schema_name=lab.DOCMANAGER_PLUGIN)
        return result["schema"]["properties"]["defaultViewers"]["default"]

    before = default_viewers()
    assert before.get("python") != lab.JUPYTEXT_VIEWER
    lab.install_lab_settings(tmp_path)
    assert default_viewers()["python"] == lab.JUPYTEXT_VIEWER


def test_environment_has_the_setting_and_the_viewer():
    """The project's environment (the interpreter running the tests): `make env` installed the setting, and
    jupyterlab-jupytext, which registers the viewer, is installed."""
    path = lab.settings_path()
    if not path.is_file():
        pytest.skip(f"{path} not written (run `python -m s2c2seg.lab` or `make env`)")
    viewers = json.loads(path.read_text())[lab.DOCMANAGER_PLUGIN]["defaultViewers"]
    assert viewers["python"] == lab.JUPYTEXT_VIEWER
    ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext" / "package.json"
    assert ext.is_file()
