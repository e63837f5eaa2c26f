"""Smoke runs of the benchmarks with tiny random-weight models, a small image and protocol: they run end to end,
report what they promise and write a valid JSON result to the folder given (behaviour only, never wall time)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmarks' quick modes: the slow tier (`make test-slow`, run by .ci/run)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMALL = ["--size", "tiny", "--image-hw", "48", "64", "--short-side", "48", "--crop", "32", "--stride", "16"]


@pytest.fixture(autouse=True)
def _bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


QUICK = ["css_scaling", "text_embedding", "clipseg_encode_once", "s2c2seg_overhead", "corrclip_overhead",
         "sweep_cost", "released_sources", "large_vocab", "released_downstream", "released_overhead",
         "efficiency_suite", "cost_matrix"]
"""Every benchmark script (each has a ``--quick`` mode)."""


def test_every_benchmark_script_is_listed():
    helpers = ("bench_common", "probes", "report")
    assert sorted(QUICK) == sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in helpers)


OWN_TEST = ("efficiency_suite", "cost_matrix")
"""Quick modes checked by their own tests (below; tests/test_cost_matrix.py), each run once."""


@pytest.mark.parametrize("name", [n for n in QUICK if n not in OWN_TEST])
def test_quick_mode_writes_a_valid_result(name, tmp_path, capsys):
    import importlib

    import bench_common

    module = importlib.import_module(name)
    module.main(["--quick", "--out-dir", str(tmp_path)])
    files = list(tmp_path.glob("*.json"))
    assert [f.name for f in files] == [f"{name}.json"]
    result = bench_common.validate(json.loads(files[0].read_text()), name)
    assert result["mode"] == "quick" and result["command"] == f"benchmarks/{name}.py --quick"
    assert result["figures"]
    assert "tiny" in result["label"] or name in ("css_scaling", "released_downstream")  # no model / no weights
    assert all(t["pass"] is not None for t in result["targets"])
    assert f"result: {files[0]}" in capsys.readouterr().out


def test_released_overhead_tiny(capsys, tmp_path):
    import released_overhead

    out = released_overhead.main(["--images", "1", *SMALL, "--out-dir", str(tmp_path)])
    assert set(out["ratios"]) == {"released", "released++", "released, all sources"}
    assert all(r > 0 for r in out["ratios"].values())
    med = out["medians"]
    assert med["released"] == pytest.approx(med["encode"] + med["predict released"])
    assert med["released++"] == pytest.approx(med["encode"] + med["predict released++"])
    text = capsys.readouterr().out
    assert "RANDOM WEIGHTS (tiny test models)" in text and "ratio released / ProxyCLIP" in text
    saved = json.loads((tmp_path / "released_overhead.json").read_text())
    assert saved["mode"] == "full" and saved["label"] == "RANDOM WEIGHTS (tiny test models)"
    assert saved["figures"]["ratio released / ProxyCLIP"]["value"] == round(out["ratios"]["released"], 2)


def test_released_grid_covers_the_issue_keys():
    import sweep_cost

    grid = sweep_cost.released_grid()
    assert len(grid) == 100 and grid[0] == {}
    assert set(grid[1]) == {"select.tau", "fusion.lam", "fusion.guide_weight", "select.conf_weight", "select.k_max",
                            "refine.t_max", "refine.theta_high", "refine.admit_cap", "post.otsu_c",
                            "post.spatial.iterations"}
    for key, values in sweep_cost.RELEASED_AXES.items():  # every value of every axis is drawn at least once
        assert {p[key] for p in grid[1:]} == set(values), key
    assert sweep_cost.released_grid() == grid  # seeded


def test_sweep_cost_released_reads_each_bundle_once(tmp_path, capsys):
    import sweep_cost

    out = sweep_cost.main(["--images", "2", "--preset", "released++", "--points", "4", "--workdir", str(tmp_path),
                           "--out-dir", str(tmp_path / "results"), *SMALL])
    assert out["points"] == 4 and out["ratio"] > 0
    assert out["eval_cache"]["misses"] == 2 and out["sweep_cache"]["hits"] == 2
    assert out["sweep_cache"]["misses"] == 0
    assert [r.parameters["preset"] for r in out["records"]] == ["released++"] * 4
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_efficiency_suite_quick(tmp_path, capsys):
    import efficiency_suite

    fig = tmp_path / "scaling.png"
    out = efficiency_suite.main(["--quick", "--figure", str(fig), "--json", str(tmp_path / "suite.json"),
                                 "--out-dir", str(tmp_path)])
    # (main stops if a timed label map differs from predict())
    rows = {r["vocab"]: r for r in out["results"]}
    assert list(rows) == ["cityscapes", "voc21", "union303"]
    assert (rows["cityscapes"]["queries"], rows["voc21"]["classes"], rows["union303"]["queries"]) == (19, 21, 303)
    assert rows["union303"]["operating_point"] == "ade20k"
    for r in rows.values():
        assert set(r["total"]) == {"released", "no CSS", "released++"}
        assert r["downstream"]["released"]["refinement"] == 0.0  # the conference run has no refinement round
        assert r["downstream"]["released++"]["refinement"] > 0.0
        assert r["peak_rss_gb"]["encode"] > 0
    flops = rows["voc21"]["flops"]
    assert flops["dense"] > 0 and flops["clipseg decoder"] > 0 and flops["released"]["csg"] > 0
    assert rows["union303"]["flops"] == {}
    assert fig.stat().st_size > 0 and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RANDOM WEIGHTS (tiny test models)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert [r["queries"] for r in saved["results"]] == [19, 46, 303] and "RANDOM WEIGHTS" in saved["header"]
    import bench_common

    result = bench_common.validate(json.loads((tmp_path / "efficiency_suite.json").read_text()))
    assert result["mode"] == "quick" and result["label"] == "RANDOM WEIGHTS (tiny test models)"
    assert result["figures"]["voc21: released"]["value"] == round(rows["voc21"]["total"]["released"], 2)
    assert result["command"].startswith("benchmarks/efficiency_suite.py --quick --figure ")
