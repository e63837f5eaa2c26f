"""Tables from run records: row recognition, averages, markdown / LaTeX, the CLI."""
from __future__ import annotations

import pytest

from s2c2seg.cli import main
from s2c2seg.records import RunRecord, load_records
from s2c2seg.tables import BENCHMARKS, component_table, fusion_table, main_table, render, scoring_table


def rec(dataset, miou, method="s2c2seg", select=True, mode="category_aware", use=("glob", "spat", "conf"),
        baseline="sclip", label="", created="2026-01-01T00:00:00+00:00"):
    return RunRecord(dataset=dataset, split="val", method=method, baseline=baseline, backend={"label": label},
                     protocol={}, parameters={"css": {"use": list(use)}, "csg": {"mode": mode},
                                              "score_source": "clipseg", "select": select},
                     vocabulary={}, metrics={"mIoU": miou, "aAcc": 0.9, "mAcc": 0.5, "per_class": {}},
                     num_images=1, timing={}, confusion={}, environment={}, label=label, created=created)


def test_main_table_average_and_rows():
    records = [rec(d, 0.30 + 0.01 * i, method="baseline") for i, d in enumerate(BENCHMARKS)]
    records += [rec(d, 0.40 + 0.01 * i) for i, d in enumerate(BENCHMARKS)]
    records += [rec("voc21", 0.99, mode="uniform")]  # not a main-table row
    t = main_table(records)
    assert list(t.rows) == ["SCLIP", "SCLIP + S2C2Seg"]
    assert t.rows["SCLIP"]["voc21"] == pytest.approx(30.0)
    md = t.markdown()
    assert "| SCLIP + S2C2Seg | 40.0 | 41.0 |" in md and "| 43.5 |" in md  # avg of 40..47
    tex = t.latex()
    assert r"\toprule" in tex and "SCLIP + S2C2Seg & 40.0" in tex and tex.count(r"\\") >= 3


def test_partial_rows_newest_record_and_labels():
    records = [rec("voc21", 0.5, created="2026-01-01T00:00:00+00:00"),
               rec("voc21", 0.6, created="2026-02-01T00:00:00+00:00"),
               rec("voc20", 0.8, label="RANDOM WEIGHTS")]
    t = main_table(records)
    assert t.rows["SCLIP + S2C2Seg"]["voc21"] == pytest.approx(60.0)
    assert list(t.rows) == ["SCLIP + S2C2Seg", "SCLIP [RANDOM WEIGHTS] + S2C2Seg"]  # labelled rows stay apart
    assert "60.0† (1/8)" in t.markdown()
    assert "RANDOM WEIGHTS" in t.markdown() and "RANDOM WEIGHTS" in t.latex()


def test_ablation_layouts():
    records = [rec("voc21", 0.61, method="baseline"), rec("voc21", 0.64, mode="global_only"),
               rec("voc21", 0.70, mode="uniform"), rec("voc21", 0.68, select=False),
               rec("voc21", 0.73), rec("voc21", 0.65, use=("glob",)), rec("voc21", 0.67, use=("glob", "spat")),
               rec("voc21", 0.9, method="oracle"), rec("voc21", 0.66, mode="add")]
    comp = component_table(records)
    assert list(comp.rows) == ["SCLIP: Baseline", "SCLIP: + CSS only", "SCLIP: Ours (w/o CSG)",
                               "SCLIP: Ours (w/o CSS)", "SCLIP: Ours (Full)"]
    score = scoring_table(records)
    assert list(score.rows) == ["w/o Sel.", "S_glob", "S_glob + S_spat", "Full CSS", "Oracle (GT classes)"]
    fusion = fusion_table(records)
    assert list(fusion.rows) == ["Add.", "Uniform", "Category-aware (ours)", "Global only"]
    assert fusion.rows["Add."]["voc21"] == pytest.approx(66.0)
    with pytest.raises(ValueError, match="layout"):
        render(records, ["nope"])


def test_cli_from_folders(tmp_path, capsys):
    for i, d in enumerate(("voc21", "ade20k")):
        rec(d, 0.3 + i / 10, method="baseline").save(tmp_path / "runs" / d)
    assert len(load_records([tmp_path / "runs"])) == 2
    assert main(["tables", str(tmp_path / "runs"), "--layout", "main"]) == 0
    out = capsys.readouterr().out
    assert "| SCLIP | 30.0 |" in out and "40.0" in out
    assert main(["tables", str(tmp_path / "runs"), "--format", "latex", "--out", str(tmp_path / "t.tex")]) == 0
    assert r"\begin{tabular}" in (tmp_path / "t.tex").read_text()


def test_simulated_records_fill_their_benchmark_column():
    from s2c2seg.tables import benchmark_of

    assert benchmark_of("sim_voc21") == "voc21" and benchmark_of("ade20k") == "ade20k"
