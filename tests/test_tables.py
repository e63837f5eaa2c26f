"""Tables from run records: rows recognised by the resolved setting, provenance rules, rendering, the CLI."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from s2c2seg import experiments
from s2c2seg.cli import main
from s2c2seg.csg import CSGConfig
from s2c2seg.css import CSSConfig
from s2c2seg.records import RunRecord, load_records
from s2c2seg.tables import BENCHMARKS, TableError, build_table, render

SIM = {"backend": "sim", "label": "SIMULATED", "config": {"seed": 0}}
RANDOM = {"backend": "random", "label": "RANDOM WEIGHTS", "clip": "ViT-B/16"}


def rec(dataset, miou, method="s2c2seg", select=True, mode="category_aware", use=("glob", "spat", "conf"),
        baseline="sclip", backend=SIM, created="2026-01-01T00:00:00+00:00", tau=0.3, n=2, skipped=None):
    """A record as ``evaluate.make_record`` writes it (the fields tables read)."""
    css = CSSConfig(tau=tau, use=tuple(use)).to_json()
    return RunRecord(dataset=dataset, split="val", method=method, baseline=baseline, backend=dict(backend),
                     protocol={"short_side": 336}, vocabulary={"variant": "sclip", "names": ["a", "b"]},
                     parameters={"css": css, "csg": CSGConfig(mode=mode).to_json(), "score_source": "clipseg",
                                 "select": select, "background": 0, "max_images": None},
                     metrics={"mIoU": miou, "aAcc": 0.9, "mAcc": 0.5, "per_class": {}}, num_images=n, timing={},
                     confusion={}, environment={}, label=backend["label"], created=created,
                     extra={"skipped": skipped} if skipped else {})


def saved(tmp_path, *records):
    """Write each record to its own folder and read them back (so they carry their paths)."""
    for i, r in enumerate(records):
        r.save(tmp_path / "runs" / f"r{i}")
    return load_records([tmp_path / "runs"])


def test_main_table_average_and_rows():
    records = [rec(d, 0.30 + 0.01 * i, method="baseline") for i, d in enumerate(BENCHMARKS)]
    records += [rec(d, 0.40 + 0.01 * i) for i, d in enumerate(BENCHMARKS)]
    records += [rec("voc21", 0.99, mode="uniform")]  # not a main-table row
    t = build_table(records, "main")
    assert list(t.rows) == ["SCLIP", "SCLIP + S2C2Seg (paper)"]
    assert t.rows["SCLIP"]["voc21"] == pytest.approx(30.0)
    md = t.markdown()
    row = next(line for line in md.splitlines() if line.startswith("| SCLIP + S2C2Seg"))
    assert [c.strip() for c in row.strip("|").split("|")][1:] == ["40.0", "41.0", "42.0", "43.0", "44.0", "45.0",
                                                                  "46.0", "47.0", "43.5"]
    assert "SIMULATED" in md.splitlines()[0] and "Provenance: 16 record(s)" in md
    tex = t.latex()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and "SIMULATED" in tex


def test_partial_row_dagger():
    t = build_table([rec("voc21", 0.5), rec("voc20", 0.7)], "main")
    assert t.rows["SCLIP + S2C2Seg (paper)"] == {"voc21": pytest.approx(50.0), "voc20": pytest.approx(70.0)}
    assert "60.0† (2/8)" in t.markdown() and r"60.0$^\dagger$ (2/8)" in t.latex()


def test_rows_recognised_by_resolved_setting_in_every_layout():
    records = [rec("voc21", 0.61, method="baseline"), rec("voc21", 0.64, mode="global_only"),
               rec("voc21", 0.70, mode="uniform"), rec("voc21", 0.68, select=False, use=("glob",)),
               rec("voc21", 0.73), rec("voc21", 0.65, use=("glob",)), rec("voc21", 0.67, use=("glob", "spat")),
               rec("voc21", 0.9, method="oracle", use=("spat",)), rec("voc21", 0.66, mode="add"),
               rec("voc21", 0.5, use=("spat", "glob"))]  # an order the registry does not define: no row
    comp = build_table(records, "components")
    assert list(comp.rows) == ["SCLIP: Baseline", "SCLIP: + CSS only", "SCLIP: Ours (w/o CSG)",
                               "SCLIP: Ours (w/o CSS)", "SCLIP: Ours (Full)"]
    score = build_table(records, "scoring")
    assert list(score.rows) == ["SCLIP: w/o Sel.", "SCLIP: S_glob", "SCLIP: S_glob + S_spat", "SCLIP: Full CSS",
                                "SCLIP: Oracle (GT classes)"]
    fusion = build_table(records, "fusion")
    assert list(fusion.rows) == ["SCLIP: Global only", "SCLIP: Add.", "SCLIP: Uniform",
                                 "SCLIP: Category-aware (ours)"]
    assert fusion.rows["SCLIP: Add."]["voc21"] == pytest.approx(66.0)
    with pytest.raises(ValueError, match="layout"):
        render(records, ["nope"])


# ---------------------------------------------------------------------------------------------- the cases
def test_tau_03_and_09_in_one_cell_fail_naming_both(tmp_path):
    full = rec("voc21", 0.62, tau=0.3, created="2026-01-01T00:00:00+00:00")
    other = rec("voc21", 0.70, tau=0.9, created="2026-02-01T00:00:00+00:00")
    records = saved(tmp_path, full, other)
    with pytest.raises(TableError) as err:
        build_table(records, "main")
    msg = str(err.value)
    assert "r0" in msg and "r1" in msg and "css.tau: 0.3 vs 0.9" in msg and "--pick newest" in msg
    t = build_table(records, "main", pick="newest")
    assert t.rows["SCLIP + S2C2Seg (paper)"]["voc21"] == pytest.approx(70.0)
    # an identical record twice (e.g. two sweep points resolving to one setting) is not a conflict
    assert build_table(saved(tmp_path / "b", full, full), "main").rows["SCLIP + S2C2Seg (paper)"]["voc21"] == \
        pytest.approx(62.0)


def test_random_weights_and_simulated_in_one_row_fail_naming_both(tmp_path):
    records = saved(tmp_path, rec("voc21", 0.0, backend=SIM), rec("voc20", 0.754, backend=RANDOM))
    with pytest.raises(TableError, match="mixes backends") as err:
        build_table(records, "scoring")
    assert "r0" in str(err.value) and "r1" in str(err.value)
    assert "SIMULATED" in str(err.value) and "RANDOM WEIGHTS" in str(err.value)
    t = build_table(records, "scoring", allow_mixed=True)
    assert list(t.rows) == ["SCLIP: Full CSS"] and "SCLIP: Full CSS‡" in t.markdown()
    assert "RANDOM WEIGHTS / SIMULATED" in t.markdown().splitlines()[0]


def test_4_and_2_images_in_one_column_fail_naming_both(tmp_path):
    records = saved(tmp_path, rec("voc21", 0.5, method="baseline", n=4), rec("voc21", 0.6, n=2),
                    rec("voc20", 0.5, method="baseline", n=4), rec("voc20", 0.6, n=4))
    with pytest.raises(TableError) as err:
        build_table(records, "main")
    msg = str(err.value)
    assert ("row" in msg or "column VOC21" in msg) and "4 images" in msg and "2 images" in msg
    assert "r0" in msg or "r1" in msg
    # the column rule alone: every row consistent, the VOC21 column not
    records = saved(tmp_path / "c", rec("voc21", 0.5, method="baseline", n=4), rec("voc21", 0.6, n=2))
    with pytest.raises(TableError, match="column VOC21 mixes image counts") as err:
        build_table(records, "main")
    assert "r0" in str(err.value) and "r1" in str(err.value)
    assert "VOC21‡" in build_table(records, "main", allow_mixed=True).markdown()


def test_skipped_images_refused_unless_allowed(tmp_path):
    records = saved(tmp_path, rec("voc21", 0.5, skipped=[{"id": "2007_000042", "error": "truncated JPEG"}]))
    with pytest.raises(TableError, match="skipped 1 image"):
        build_table(records, "main")
    md = build_table(records, "main", allow_skipped=True).markdown()
    assert "50.0§" in md and "skipped" in md


def test_clean_run_folder_gives_every_layout(tmp_path):
    from s2c2seg.data import get_protocol, load_dataset, vocabulary
    from s2c2seg.data.fixtures import write_fixture
    from s2c2seg.sweep import sweep
    from fakes import FakeBackend

    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=2, seed=1)
    proto = get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16)
    sweep(load_dataset("voc21", root), FakeBackend(), vocabulary("voc21", "sclip"), proto, experiments.table_grid(),
          out_dir=tmp_path / "runs" / "sweep", progress=False, baseline="sclip")
    records = load_records([tmp_path / "runs"])
    assert len(records) == len(experiments.table_grid())
    md = render(records, fmt="markdown")
    for layout, title in experiments.LAYOUT_TITLES.items():
        t = build_table(records, layout)
        assert len(t.rows) == len(experiments.layout_rows(layout)), layout
        assert title in md
    assert md.count("Provenance:") == len(experiments.LAYOUT_TITLES) and "/record.json" in md and "Records under" in md
    tex = render(records, fmt="latex")
    assert tex.count(r"\begin{table}") == len(experiments.LAYOUT_TITLES)


def test_cli_flags(tmp_path, capsys):
    saved(tmp_path, rec("voc21", 0.3, method="baseline"), rec("ade20k", 0.4, method="baseline"))
    assert main(["tables", str(tmp_path / "runs"), "--layout", "main"]) == 0
    out = capsys.readouterr().out
    assert "30.0" in out and "40.0" in out and "Provenance: 2 record(s)" in out
    assert main(["tables", str(tmp_path / "runs"), "--format", "latex", "--out", str(tmp_path / "t.tex")]) == 0
    assert r"\begin{tabular}" in (tmp_path / "t.tex").read_text()
    rec("voc21", 0.35, method="baseline", tau=0.9).save(tmp_path / "runs" / "again")  # tau is read by no baseline
    with pytest.raises(TableError):
        main(["tables", str(tmp_path / "runs"), "--layout", "main"])
    assert main(["tables", str(tmp_path / "runs"), "--layout", "main", "--pick", "newest"]) == 0


def test_simulated_records_fill_their_benchmark_column():
    from s2c2seg.tables import benchmark_of

    assert benchmark_of("sim_voc21") == "voc21" and benchmark_of("ade20k") == "ade20k"


# ---------------------------------------------------------------------------------------------- rendering
AWKWARD = "my_base~^$\\&%#{x}"


def test_special_characters_are_escaped_in_latex_and_kept_in_markdown():
    t = build_table([rec("voc21", 0.5, baseline=AWKWARD, backend={"backend": "b_~$", "label": ""})], "main")
    assert AWKWARD + " + S2C2Seg (paper)" in t.markdown()
    tex = t.latex()
    assert r"my\_base\textasciitilde \textasciicircum \$\textbackslash \&\%\#\{x\}" in tex
    assert AWKWARD not in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_booktabs_latex_compiles(tmp_path):
    records = [rec(d, 0.4, baseline=AWKWARD, backend={"backend": "b_~$", "label": "RANDOM WEIGHTS"})
               for d in BENCHMARKS[:5]]
    records += [rec("voc21", 0.3, baseline=AWKWARD, method="baseline",
                    backend={"backend": "b_~$", "label": "RANDOM WEIGHTS"})]
    body = render(records, ["main"], "latex")
    doc = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
           "\\usepackage{booktabs}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0
