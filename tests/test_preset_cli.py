"""The presets through the command line: ``--preset released`` / ``released++`` / ``paper``, ``--set``, sweeps."""
from __future__ import annotations

import json

import pytest

from s2c2seg.cli import main
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.records import RunRecord

TINY = ["--backend", "random", "--size", "tiny", "--short-side", "64", "--crop", "56", "--stride", "28",
        "--no-progress"]
"""Tiny random models on a small protocol (the released window path pads 56-multiples as the release does)."""


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_fixture("voc21", tmp_path_factory.mktemp("data") / "VOC2012", n_images=1, seed=3)


@pytest.mark.parametrize("preset,source", [("released", "run_conference.sh"), ("released++", "run_journal.sh")])
def test_eval_proxyclip_with_a_released_preset(voc_root, tmp_path, preset, source):
    out = tmp_path / "run"
    assert main(["eval", "voc21", "--data-root", str(voc_root), "--baseline", "proxyclip", "--method", "s2c2seg",
                 "--preset", preset, *TINY, "--out", str(out)]) == 0
    rec = RunRecord.load(out / "record.json")
    assert rec.parameters["preset"] == preset and rec.label == "RANDOM WEIGHTS"
    values = rec.parameters["preset_values"]
    assert source in values["source"] and "note" not in values  # ProxyCLIP: what the authors ran
    # VOC21's operating point (facts file: tau 0.4, lambda 0.15; journal: Otsu C 0.5, spatial refinement 3 x 100)
    assert (values["select"]["tau"], values["fusion"]["lam"]) == (0.4, 0.15)
    assert values["post"]["otsu_c"] == (0.5 if preset == "released++" else None)
    assert "css" not in rec.parameters  # the paper reading's configs are not what ran


def test_default_preset_is_released_and_other_baselines_are_our_extension(voc_root, tmp_path):
    out = tmp_path / "run"
    assert main(["eval", "voc21", "--data-root", str(voc_root), "--baseline", "sclip", *TINY, "--set",
                 "select.tau=0.5", "--lam", "0.1", "--out", str(out)]) == 0
    rec = RunRecord.load(out / "record.json")
    values = rec.parameters["preset_values"]
    assert rec.parameters["preset"] == "released"
    assert (values["select"]["tau"], values["fusion"]["lam"]) == (0.5, 0.1)
    assert "extension" in values["note"] and "'sclip'" in values["note"]


def test_paper_preset_keeps_the_paper_options(voc_root, tmp_path):
    out = tmp_path / "run"
    assert main(["eval", "voc21", "--data-root", str(voc_root), "--baseline", "sclip", "--preset", "paper", *TINY,
                 "--tau", "0.5", "--mode", "uniform", "--out", str(out)]) == 0
    rec = RunRecord.load(out / "record.json")
    assert rec.parameters["preset"] == "paper"
    assert rec.parameters["css"]["tau"] == 0.5 and rec.parameters["csg"]["mode"] == "uniform"


def test_a_paper_option_with_a_released_preset_is_an_error(voc_root, tmp_path):
    with pytest.raises(ValueError, match="--mode is an option of --preset paper"):
        main(["eval", "voc21", "--data-root", str(voc_root), "--preset", "released", "--mode", "uniform", *TINY,
              "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="unknown 'released' preset key 'select.taus'"):
        main(["eval", "voc21", "--data-root", str(voc_root), "--set", "select.taus=0.5", *TINY,
              "--out", str(tmp_path / "o")])


def test_sweep_over_preset_keys_names_the_preset(voc_root, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("preset: [released++]\nselect.tau: [0.3, 0.6]\nrefine.t_max: [0, 1]\n", encoding="utf-8")
    out = tmp_path / "sweep"
    assert main(["sweep", "voc21", "--data-root", str(voc_root), "--baseline", "proxyclip", "--grid", str(grid),
                 *TINY, "--out", str(out)]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    records = sorted((out / "points").glob("*/record.json"))
    assert len(records) == 4
    seen = set()
    for path in records:
        rec = RunRecord.load(path)
        values = rec.parameters["preset_values"]
        assert rec.parameters["preset"] == "released++"
        seen.add((values["select"]["tau"], values["refine"]["t_max"]))
    assert seen == {(0.3, 0), (0.3, 1), (0.6, 0), (0.6, 1)}
    assert "released++" in json.dumps(rows)


def test_sweep_produces_the_registrys_points_and_tables_recognise_them(voc_root, tmp_path, capsys):
    from s2c2seg import experiments

    out = tmp_path / "sweep"
    assert main(["sweep", "voc21", "--data-root", str(voc_root), "--baseline", "proxyclip", "--points", "main",
                 *TINY, "--out", str(out)]) == 0
    assert len(list((out / "points").glob("*/record.json"))) == len(experiments.layout_rows("main")) == 4
    capsys.readouterr()
    assert main(["tables", str(out), "--layout", "main"]) == 0
    table = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ProxyCLIP")]
    assert rows == ["ProxyCLIP", "ProxyCLIP + S2C2Seg (paper)", "ProxyCLIP + S2C2Seg (released)",
                    "ProxyCLIP + S2C2Seg++"]
    assert "RANDOM WEIGHTS" in table
    with pytest.raises(ValueError, match="--points 'mian'"):
        main(["sweep", "voc21", "--data-root", str(voc_root), "--points", "mian", *TINY, "--out", str(tmp_path / "x")])


def test_without_preset_the_paper_options_mean_the_paper_reading(voc_root, tmp_path):
    out = tmp_path / "run"
    assert main(["eval", "voc21", "--data-root", str(voc_root), "--mode", "uniform", *TINY, "--out", str(out)]) == 0
    rec = RunRecord.load(out / "record.json")
    assert rec.parameters["preset"] == "paper" and rec.parameters["csg"]["mode"] == "uniform"
    grid = tmp_path / "grid.yaml"  # each point resolves its own preset when the command names none
    grid.write_text("- {method: baseline}\n- {tau: 0.2, mode: uniform}\n- {preset: released, select.tau: 0.5}\n"
                    "- {}\n", encoding="utf-8")
    assert main(["sweep", "voc21", "--data-root", str(voc_root), "--grid", str(grid), *TINY,
                 "--out", str(tmp_path / "sweep")]) == 0
    recs = [RunRecord.load(p) for p in sorted((tmp_path / "sweep" / "points").glob("*/record.json"))]
    assert [r.parameters["preset"] for r in recs] == [None, "paper", "released", "released"]
    assert recs[1].parameters["css"]["tau"] == 0.2 and recs[2].parameters["preset_values"]["select"]["tau"] == 0.5
