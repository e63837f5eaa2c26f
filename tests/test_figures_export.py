"""figures/: exported files carry a sidecar naming their run record, a file from another run is never
silently replaced, PDFs keep Type-42 fonts and their CVPR width."""
from __future__ import annotations

import json

import pytest

from s2c2seg import figures, plots

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _record(run, notebook="02_css_score_subsets", label="SIMULATED"):
    d = run / notebook
    (d / "figures").mkdir(parents=True)
    rec = {"notebook": notebook, "backend": "sim", "label": label, "n_images": 3, "dataset": "voc21",
           "params": {"datasets": ["voc21", "ade20k"]}, "package_version": "0"}
    (d / "record.json").write_text(json.dumps(rec))
    fig, ax = plots.figure(1, 1, width="single", title="x", label=label)
    ax[0, 0].plot([0, 1], [0, 1])
    plots.save_figure(fig, d / "figures" / "css_score_subsets", close=True)
    return d / "record.json"


def test_export_sidecars_and_versioning(tmp_path):
    rec_a = _record(tmp_path / "run_a")
    rec_b = _record(tmp_path / "run_b")
    dest = tmp_path / "figures"
    written, skipped = figures.export_notebook_figures(tmp_path / "run_a", dest)
    assert sorted(p.name for p in written) == ["css_score_subsets.pdf", "css_score_subsets.png"]
    assert any("05_confusion" in s for s in skipped)  # did not run: said, not guessed
    side = json.loads((dest / "css_score_subsets.pdf.json").read_text())
    assert side["record"] == str(rec_a.resolve()) and side["label"] == "SIMULATED" and side["backend"] == "sim"
    assert side["n_images"] == 3 and side["datasets"] == ["voc21", "ade20k"]
    assert side["pdf_fonttype"] == 42 and side["cvpr_column"] == "single"
    assert 2.5 < side["width_in"] <= plots.CVPR_SINGLE + 0.5
    assert b"/FontFile2" in (dest / "css_score_subsets.pdf").read_bytes()  # TrueType embedded (Type 42)
    # the same run again: its own files are overwritten, nothing new
    again, _ = figures.export_notebook_figures(tmp_path / "run_a", dest)
    assert [p.name for p in again] == [p.name for p in written]
    # another run: a versioned name, the first run's files untouched
    before = (dest / "css_score_subsets.pdf.json").read_text()
    other, _ = figures.export_notebook_figures(tmp_path / "run_b", dest)
    assert sorted(p.name for p in other) == ["css_score_subsets.v2.pdf", "css_score_subsets.v2.png"]
    assert (dest / "css_score_subsets.pdf.json").read_text() == before
    assert json.loads((dest / "css_score_subsets.v2.png.json").read_text())["record"] == str(rec_b.resolve())
    # explicit flag: replaces
    rep, _ = figures.export_notebook_figures(tmp_path / "run_b", dest, replace=True)
    assert sorted(p.name for p in rep) == ["css_score_subsets.pdf", "css_score_subsets.png"]
    assert json.loads((dest / "css_score_subsets.pdf.json").read_text())["record"] == str(rec_b.resolve())


def test_export_tables_and_missing_files(tmp_path):
    prov = figures.provenance(tmp_path / "run" / "07_paper_tables" / "record.json",
                              record={"notebook": "07_paper_tables", "backend": "random", "label": "RANDOM WEIGHTS",
                                      "n_images": 2, "params": {"datasets": ["voc21"]}})
    out = figures.export_text({".tex": "\\begin{table}\\end{table}", ".md": "| a |"}, "table_main",
                              tmp_path / "f", prov)
    assert [p.name for p in out] == ["table_main.tex", "table_main.md"]
    side = json.loads((tmp_path / "f" / "table_main.md.json").read_text())
    assert side["label"] == "RANDOM WEIGHTS" and side["file"] == "table_main.md"
    assert side["record"].endswith("07_paper_tables/record.json")
    with pytest.raises(FileNotFoundError, match="figure files not found"):
        figures.export_file(tmp_path / "nope", tmp_path / "f", prov)
    with pytest.raises(FileNotFoundError, match="run record not found"):
        figures.provenance(tmp_path / "missing" / "record.json")


def test_default_dir_is_the_project_root():
    d = figures.default_dir()
    assert d.name == "figures" and (d.parent / "pyproject.toml").is_file()
    assert (d / "README.md").is_file() and "!README.md" in (d / ".gitignore").read_text()
