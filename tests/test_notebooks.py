"""The notebook collection: plots and analysis helpers (unit), the papermill runner, and every notebook
executed headless through the runner with tiny parameters (SIMULATED backend, plus the tiny random-weight
models for the quickstart), each record checked for present, finite, right-shaped values."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from s2c2seg import analysis, experiments, notebooks, plots, cli_notebooks

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


# ---------------------------------------------------------------------------------------------- plots
def test_voc_palette_standard_colours():
    p = plots.voc_palette(256)
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert p[0].tolist() == [0, 0, 0]
    assert p[1].tolist() == [128, 0, 0]
    assert p[2].tolist() == [0, 128, 0]
    assert p[15].tolist() == [192, 128, 128]  # person
    assert len({tuple(c) for c in p.tolist()}) == 256


def test_ade_palette_and_choice():
    p = plots.ade_palette()
    assert p.shape == (150, 3)
    assert p[0].tolist() == [120, 120, 120] and p[-1].tolist() == [92, 0, 255]
    assert plots.label_palette("ade20k", 150).shape == (150, 3)
    assert plots.label_palette("coco_stuff164k", 171).shape[0] >= 171
    with pytest.raises(ValueError, match="num_classes"):
        plots.label_palette("voc21", 0)


def test_colorize_and_overlay():
    lab = np.array([[0, 1], [255, 2]])
    pal = plots.voc_palette()
    col = plots.colorize(lab, pal)
    assert col[0, 1].tolist() == [128, 0, 0] and col[1, 0].tolist() == [0, 0, 0]
    img = np.full((2, 2, 3), 200, np.uint8)
    ov = plots.overlay(img, lab, pal, alpha=1.0)
    assert ov[0, 1].tolist() == [128, 0, 0]
    assert ov[1, 0].tolist() == [200, 200, 200]  # ignored pixel shows the image
    with pytest.raises(ValueError, match="label values"):
        plots.colorize(np.array([[300]]), pal[:10])
    with pytest.raises(ValueError, match="alpha"):
        plots.overlay(img, lab, pal, alpha=2)
    with pytest.raises(ValueError, match="differ in size"):
        plots.overlay(img, np.zeros((3, 3), int), pal)


def test_categorical_is_colour_blind_palette():
    assert plots.categorical(3) == list(plots.OKABE_ITO[:3])
    assert len(plots.categorical(25)) == 25


def test_labelled_title():
    assert plots.labelled_title("x", "") == "x"
    assert plots.labelled_title("x", "SIMULATED") == "SIMULATED — x"
    assert plots.labelled_title("SIMULATED — x", "SIMULATED") == "SIMULATED — x"


def test_save_figure_reproducible_type42_labelled(tmp_path):
    def make():
        fig, ax = plots.figure(1, 2, width="double", title="scores")
        plots.bar_scores(ax[0, 0], [1.0, 3.0, 2.0], ["a", "b", "c"], highlight=[1])
        plots.line_sweep(ax[0, 1], [0, 1, 2], {"x": [1, 2, 3], "y": [2, 2, 2]}, default=1)
        return fig

    a = plots.save_figure(make(), tmp_path / "a", label="SIMULATED", close=True)
    b = plots.save_figure(make(), tmp_path / "b.pdf", label="SIMULATED", close=True)
    pa, pb = Path(a["pdf"]).read_bytes(), Path(b["pdf"]).read_bytes()
    assert pa == pb  # no timestamp: same content, same bytes
    assert b"CreationDate" not in pa
    assert b"/FontFile2" in pa  # TrueType outlines embedded (Type 42), not Type 3 procedures
    assert b"/Subtype /Type3" not in pa
    assert Path(a["png"]).read_bytes() == Path(b["png"]).read_bytes()
    fig = make()
    plots.save_figure(fig, tmp_path / "c", label="RANDOM WEIGHTS")
    assert fig._suptitle.get_text().startswith("RANDOM WEIGHTS")
    assert plots.CVPR_SINGLE == 3.25 and plots.CVPR_DOUBLE == 6.875
    fig1, _ = plots.figure(width="single")
    assert fig1.get_size_inches()[0] == pytest.approx(3.25)
    with pytest.raises(ValueError, match="width"):
        plots.figure(width="triple")


def test_heatmap_shape_check():
    fig, ax = plots.figure()
    with pytest.raises(ValueError, match="does not match"):
        plots.heatmap(ax[0, 0], np.zeros((2, 3)), ["a", "b"], ["a", "b"])


# ---------------------------------------------------------------------------------------------- analysis
def test_subset_recall_precision():
    assert analysis.subset_recall_precision([1, 2, 3, 4], [2, 4, 7]) == pytest.approx((2 / 3, 2 / 4))
    assert analysis.subset_recall_precision(torch.tensor([0]), [0]) == (1.0, 1.0)
    r, p = analysis.subset_recall_precision([], [])
    assert math.isnan(r) and math.isnan(p)
    with pytest.raises(ValueError, match="subset"):
        analysis.subset_recall_precision(["a"], [1])


def test_scoring_steps_match_css():
    from s2c2seg import css

    g = torch.tensor([0.30, 0.25, 0.21, 0.20, 0.19, 0.22, 0.18, 0.24, 0.17, 0.26])
    s = torch.tensor([0.9, 0.1, 0.05, 0.3, 0.02, 0.6, 0.01, 0.2, 0.03, 0.4])
    st = analysis.scoring_steps(g, s, css.CSSConfig(tau=0.3, k_min=2, k_max=4))
    assert torch.equal(st.selected, css.select_categories(g, s, tau=0.3, k_min=2, k_max=4))
    assert st.m == 3 and st.k == len(st.selected) <= 4
    assert torch.equal(st.union, st.stage1["glob"] | st.stage1["spat"] | st.stage1["conf"])
    assert float(st.g_bar.sum()) == pytest.approx(1.0) and float(st.p.sum()) == pytest.approx(1.0)
    assert 0 < st.alpha < 1
    for v in st.normalised.values():
        assert float(v.min()) >= 0 and float(v.max()) <= 1


def test_row_normalise_and_top_pairs():
    m = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    r = analysis.row_normalise(m)
    assert r[0].tolist() == [0.8, 0.2, 0.0] and r[2].tolist() == [0, 0, 0]
    pairs = analysis.top_confused_pairs(m, ["a", "b", "c"], n=5)
    assert [(p["gt"], p["pred"]) for p in pairs] == [("b", "a"), ("a", "b")]
    assert pairs[0]["rate"] == pytest.approx(0.5) and pairs[0]["pixels"] == 1
    with pytest.raises(ValueError, match="square"):
        analysis.row_normalise(np.zeros((2, 3)))


def test_top_classes_includes_wrongly_predicted():
    m = np.zeros((5, 5))
    m[0, 0], m[0, 3], m[1, 1], m[2, 2], m[2, 1] = 10, 5, 10, 10, 1
    assert analysis.top_classes([m], n=2).tolist() == [0, 3]  # class 3 is never GT but absorbs confusion
    assert set(analysis.top_classes([m], n=10).tolist()) == {0, 1, 2, 3}


def test_boundary_cooccurrence():
    lab = np.array([[0, 0, 1], [2, 2, 1], [255, 2, 1]])
    adj = analysis.boundary_cooccurrence([lab], 3)
    assert (adj == adj.T).all() and np.diag(adj).sum() == 0
    # 0|1 once horizontally, 0/2 twice vertically, 2|1 twice horizontally
    assert adj[0, 1] == 1 and adj[0, 2] == 2 and adj[1, 2] == 2
    with pytest.raises(ValueError, match="label values"):
        analysis.boundary_cooccurrence([np.array([[0, 7]])], 3)


def test_split_confusion_reduction():
    before = np.array([[6, 3, 1], [0, 10, 0], [0, 0, 10]])
    after = np.array([[9, 0, 1], [0, 10, 0], [0, 0, 10]])
    sim = np.array([[1, 0.9, 0.1], [0.9, 1, 0.1], [0.1, 0.1, 1]])
    adj = np.array([[0, 0, 5], [0, 0, 0], [5, 0, 0]])
    out = analysis.split_confusion_reduction(before, after, similarity=sim, adjacency=adj, similar_quantile=0.6,
                                             names=["a", "b", "c"])
    assert out["similar"]["reduction"] == pytest.approx(0.3)
    assert out["adjacent"]["reduction"] == pytest.approx(0.0)
    assert out["all"]["reduction"] == pytest.approx(0.3)
    assert out["pairs"][0] == {"gt": "a", "pred": "b", "before": 0.3, "after": 0.0, "reduction": 0.3,
                               "group": "similar"}
    with pytest.raises(ValueError, match="similarity"):
        analysis.split_confusion_reduction(before, after, similarity=np.eye(2), adjacency=adj)


def test_cosine_similarity_and_finite_tree_and_markdown():
    s = analysis.cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert s[0, 1] == pytest.approx(2 ** -0.5) and s[0, 0] == pytest.approx(1.0)
    t = analysis.finite_tree({"a": torch.tensor([1.0, float("nan")]), "b": np.float32(2.5), "c": (np.int64(3),)})
    assert t == {"a": [1.0, None], "b": 2.5, "c": [3]}
    md = analysis.markdown_table({"x": {"a": 1.234, "b": "q"}}, first="row")
    assert md.splitlines()[0] == "| row | a | b |" and "| x | 1.2 | q |" in md


# ---------------------------------------------------------------------------------------------- runner
def test_resolve_params_and_grid(tmp_path):
    files = notebooks.resolve_notebooks()
    assert [f.stem for f in files] == list(notebooks.NOTEBOOKS) and all(f.is_file() for f in files)
    assert [f.stem for f in notebooks.resolve_notebooks(["02", "confusion"])] == ["02_css_score_subsets",
                                                                                  "05_confusion"]
    with pytest.raises(ValueError, match="unknown notebook"):
        notebooks.resolve_notebooks(["nope"])
    params = {"backend": "sim", "n_images": 3, "05": {"n_images": 1}, "02_css_score_subsets": {"datasets": ["x"]}}
    assert notebooks.params_for("05_confusion", params) == {"backend": "sim", "n_images": 1}
    assert notebooks.params_for("02_css_score_subsets", params)["datasets"] == ["x"]
    assert notebooks.grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert notebooks.grid_points(None) == [{}]
    with pytest.raises(ValueError, match="non-empty list"):
        notebooks.grid_points({"a": []})
    (tmp_path / "p.yaml").write_text("datasets: [voc21, ade20k]\n")
    assert notebooks.load_params(tmp_path / "p.yaml") == {"datasets": ["voc21", "ade20k"]}
    (tmp_path / "bad.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        notebooks.load_params(tmp_path / "bad.yaml")
    a, b = notebooks.new_run_dir(tmp_path / "runs"), notebooks.new_run_dir(tmp_path / "runs")
    assert a != b and a.is_dir() and b.is_dir()


def test_every_notebook_has_literal_parameters_cell():
    import ast

    import jupytext

    for f in notebooks.resolve_notebooks():
        nb = jupytext.read(f)
        assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f.name
        tree = ast.parse(cells[0].source)
        names = set()
        for node in tree.body:
            assert isinstance(node, ast.Assign), f"{f.name}: parameters cell holds only assignments"
            ast.literal_eval(node.value)  # literals only
            names.add(node.targets[0].id)
        assert {"backend", "out_dir", "records_dir", "cache_dir"} <= names, f.name
        assert "dataset" in names or "datasets" in names
        assert "baseline" in names or "baselines" in names
        method = {"tau", "k_min", "k_max", "lam", "temperature"}
        if f.stem == "00_quickstart":  # your image, your words: the preset is named, never typed out (issue 18)
            assert not method & names and {"preset", "overrides", "classes", "image_path"} <= names
        else:
            assert method | {"n_images"} <= names, f.name


def _toy_notebook(path: Path, body: str) -> Path:
    path.write_text('# %% tags=["parameters"]\nvalue = 1\nout_dir = ""\n\n# %%\n' + body)
    return path


def test_runner_failure_does_not_stop_others(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    write = ("import json, pathlib, sys\n"
             "pathlib.Path(out_dir, 'record.json').write_text(json.dumps({'backend': 'sim', 'label': 'SIMULATED',"
             " 'values': {'value': value, 'python': sys.executable}}))\n")
    bad = _toy_notebook(d / "bad.py", "raise RuntimeError('boom')\n")
    good = _toy_notebook(d / "good.py", write)
    run_dir, results = notebooks.run_collection([str(bad), str(good)], params={"value": [1, 2]},
                                                out=tmp_path / "runs", echo=None)
    assert [r.ok for r in results] == [False, True]
    assert "boom" in results[0].error and (run_dir / "bad" / "bad.ipynb").is_file()
    rec = results[1].record
    assert rec["values"]["value"] == [1, 2]  # structured parameters survive (YAML, not -p strings)
    import sys

    assert Path(rec["values"]["python"]).resolve() == Path(sys.executable).resolve()  # the runner's interpreter
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["all_passed"] is False and len(summary["notebooks"]) == 2
    assert "1/2 notebooks passed" in (run_dir / "summary.md").read_text()


def test_cli_exit_status(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    _toy_notebook(d / "00_quickstart.py",
                  "import json, pathlib\npathlib.Path(out_dir, 'record.json').write_text('{}')\n")
    rc = cli_notebooks.main(["notebooks", "run", str(d / "00_quickstart.py"), "--out", str(tmp_path / "r")])
    assert rc == 0
    _toy_notebook(d / "x.py", "pass\n")  # writes no record: a failure
    rc = cli_notebooks.main(["notebooks", "run", str(d / "x.py"), "--out", str(tmp_path / "r")])
    assert rc == 1


# ---------------------------------------------------------------------------------------------- end to end
TINY = {
    "backend": "sim", "n_images": 1, "datasets": ["voc21"], "seed": 0,
    "01": {"tau_values": [0.2, 0.5], "k_max_values": [6, 20], "lam_values": [0.0, 0.6],
           "temperature_values": [0.01, 1.0], "top": 10},
    "03": {"scenario_images": 1, "scenarios": ["coarse_localisation", "all_at_once"]},
    "04": {"n_worst": 1},
    "05": {"dataset": "voc21", "n_images": 2, "top_n": 6},
    "06": {"lam_values": [0.0, 0.6], "tau_values": [0.3, 0.5], "k_max_values": [10, 20], "k_min_values": [3, 6],
           "temperature_values": [0.01, 0.1], "guide_weight_values": [0.0, 0.07]},
}


def _finite(x) -> bool:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return math.isfinite(x)
    return False


def _check_records(results, label: str, backend: str):
    recs = {r.name: r.record for r in results}
    for r in results:
        assert r.ok, f"{r.name}: {r.error}"
        rec = r.record
        assert rec["backend"] == backend and rec["label"] == label
        assert rec["figures"], f"{r.name} saved no figure"
        for fig in rec["figures"]:
            assert (Path(r.out_dir) / fig["pdf"]).is_file() and (Path(r.out_dir) / fig["png"]).is_file()
    return recs


@pytest.mark.slow
def test_all_notebooks_execute_on_simulation(tmp_path):
    params = {**TINY, "07": {"figures_dir": str(tmp_path / "figures")}}
    run_dir, results = notebooks.run_collection(params=params, out=tmp_path / "runs", echo=None)
    assert [r.name for r in results] == list(notebooks.NOTEBOOKS)
    recs = _check_records(results, "SIMULATED", "sim")
    c = 21
    _check_quickstart(recs["00_quickstart"])
    v = recs["01_scoring_terms"]["values"]
    for k in ("s_glob", "s_spat", "g_bar", "s_bar", "p", "entropy", "s_conf", "s_final"):
        assert len(v[k]) == c and all(_finite(x) for x in v[k]), k
    assert _finite(v["alpha"]) and v["K"] == len(v["selected"]) and len(v["csg_weights"]) >= v["K"]
    assert sum(v["csg_weights"]) == pytest.approx(1.0, abs=1e-4)
    assert set(v["stage1"]) == {"glob", "spat", "conf"} and len(v["dials"]["τ"]) == 2
    rel, q = v["released"], 56  # SCLIP's VOC21 names: 56 queries (26 background synonyms)
    assert all(len(rel[k]) == q for k in ("g", "s", "p", "entropy", "c"))
    assert 0 <= rel["alpha"] <= 1 and rel["pool_size"] == int(0.4 * q)  # the VOC21 operating point's τ = 0.4
    assert set(rel["selected"]) == set(rel["pool"])  # k_max = None keeps the whole union
    assert sum(rel["guide_weights"]) == pytest.approx(1.0, abs=1e-5)
    ref = rel["refine"]  # released++ on the same window: the admitted queries are new, and they are all it adds
    assert not set(ref["admitted"]) & set(ref["before"])
    assert set(ref["after"]) == set(ref["before"]) | set(ref["admitted"])
    v = recs["02_css_score_subsets"]["values"]
    # baseline, no_css, 3 single scores, 3 pairs, s2c2seg, oracle, and the preset's full method (released)
    assert len(v["table"]) == 11 and all(_finite(row["voc21"]) and _finite(row["Avg"]) for row in v["table"].values())
    assert "released" in v["table"] and 0 <= v["table"]["released"]["recall %"] <= 100
    assert v["table"]["oracle"]["recall %"] == pytest.approx(100.0)
    v = recs["03_fusion_variants"]["values"]
    assert np.array(v["component_grid"]).shape == (2, 2) and all(_finite(x) for x in np.ravel(v["component_grid"]))
    assert set(v["fusion"]) == {"category_aware", "uniform", "add", "global_only", "local_only"}
    worlds = v["scenarios"]["worlds"]
    assert set(worlds) == {"coarse_localisation", "all_at_once", "without:coarse_localisation"}
    assert v["world"]["dense_blur"] == worlds["all_at_once"]["config"]["dense_blur"]  # the default world
    for w, e in v["scenarios"]["effects"].items():  # the stated effects are the table's differences
        m = worlds[w]["miou"]
        assert e["css_delta"] == pytest.approx(m["css_only"] - m["baseline"])
        assert e["csg_delta"] == pytest.approx(m["s2c2seg"] - m["css_only"])
    for w, fx in v["scenarios"]["presets"].items():  # each preset's stated change is the table's difference
        m = worlds[w]["miou"]
        assert set(fx) == {"paper", "released", "released++"}
        for _name, e in fx.items():
            assert e["vs_baseline"] == pytest.approx(m[e["point"]] - m["baseline"])
    sel = v["scenarios"]["ideal_selection"]
    assert set(sel) == {"released", "released++"} and sel["released"]["⌊τQ⌋"] == 22
    v = recs["04_oracle_gap"]["values"]
    assert _finite(v["gap"]["Avg"]) and _finite(v["mean_recall"]) and len(v["per_image"]) == 1
    v = recs["05_confusion"]["values"]
    n = len(v["shown_classes"])
    assert 1 <= n <= 6 and all(np.array(m).shape == (n, n) for m in v["row_normalised"].values())
    assert all(_finite(v["reduction_css"][g]["reduction"]) for g in ("similar", "adjacent", "other"))
    v = recs["06_hparam_robustness"]["values"]
    assert v["preset"] == "released"
    assert set(v["curves"]) == {"fusion.lam", "select.tau", "select.k_max", "select.k_min", "fusion.guide_weight"}
    assert all(len(v["curves"][k]["voc21"]) == 2 for k in v["curves"])
    assert all(_finite(m) for k in v["curves"] for _, m in v["curves"][k]["voc21"])
    v = recs["07_paper_tables"]["values"]
    assert v["n_records"] == len(experiments.table_grid())
    assert set(v["tables"]) == {"main", "components", "scoring", "fusion", "unit_scope"}
    assert list(v["tables"]["main"]) == ["SCLIP", "SCLIP + S2C2Seg (paper)", "SCLIP + S2C2Seg (released)",
                                         "SCLIP + S2C2Seg++"]
    assert len(v["tables"]["unit_scope"]) == 4 and len(v["unit_scope"]["SCLIP"]) == 4
    assert all(_finite(row["voc21"]) for t in v["tables"].values() for row in t.values())
    assert "SIMULATED" in v["markdown"] and "\\begin{tabular}" in v["latex"]
    assert len(v["run_figures"]) >= 7
    exported = {Path(p).name for p in v["exported"]}
    assert {"main_results.pdf", "main_results.png", "table_main.tex", "table_main.md", "hparam_robustness.pdf",
            "confusion_matrices.png", "css_score_subsets.pdf", "fusion_variants.pdf", "unit_scope.pdf",
            "table_unit_scope.md"} <= exported
    for p in v["exported"]:
        side = json.loads(Path(p + ".json").read_text())
        assert side["label"] == "SIMULATED" and side["backend"] == "sim" and side["n_images"] >= 1
        assert Path(side["record"]).is_file()  # the run record it came from exists
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["all_passed"] is True


def _check_quickstart(rec):
    """Your image, your words: the default preset on the parameters' three classes, both figures, areas."""
    v = rec["values"]
    assert v["preset"] == "released" and v["num_classes"] == 3 and 1 <= len(v["subset"]) <= 3
    assert v["subset_names"] == [["cat", "sofa", "floor"][i] for i in v["subset"]]
    assert set(v["s2c2seg_classes"]) <= set(v["subset"])  # no background class: every pixel is a kept class
    assert sum(v["areas"].values()) == pytest.approx(100.0) and v["size"] == [375, 500]
    assert {f["name"] for f in rec["figures"]} == {"overlays", "explanation"}
    assert "generated picture" in rec["data_source"]


@pytest.mark.slow
def test_quickstart_on_tiny_random_weights(tmp_path):
    params = {"backend": "random", "size": "tiny"}
    _, results = notebooks.run_collection(["00"], params=params, out=tmp_path / "runs", echo=None)
    recs = _check_records(results, "RANDOM WEIGHTS", "random")
    _check_quickstart(recs["00_quickstart"])
