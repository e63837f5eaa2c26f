"""The experiment registry, the notebooks' analysis path (one evaluation loop, CSS from css.py), and the
one-key grid tests: two points that differ in exactly one key each equal a separate evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2c2seg import analysis, experiments
from s2c2seg.csg import CSGConfig
from s2c2seg.css import CSSConfig, select_categories
from s2c2seg.data import Vocabulary, get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import evaluate
from s2c2seg.sweep import make_points, sweep
from fakes import LABEL, FakeBackend


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = write_fixture("voc21", tmp_path_factory.mktemp("d") / "VOC2012", n_images=3, seed=5)
    return (load_dataset("voc21", root), vocabulary("voc21", "sclip"),
            get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16))


# ---------------------------------------------------------------------------------------------- the registry
def test_each_layout_row_is_one_point_and_points_are_told_apart():
    assert len({p.key for p in experiments.POINTS}) == len(experiments.POINTS)
    for layout in experiments.LAYOUT_TITLES:
        rows = experiments.layout_rows(layout)
        assert rows, layout
        sigs = [p.signature() for _, p in rows]
        assert len(set(sigs)) == len(sigs), layout  # a record can fall in one row only
    assert [p.key for _, p in experiments.layout_rows("components")] == [
        "baseline", "css_only", "no_csg", "no_css", "s2c2seg"]
    full = experiments.point("s2c2seg")
    assert full.signature() == ("s2c2seg", True, "clipseg", CSSConfig().use, CSGConfig().mode, "paper")
    with pytest.raises(ValueError, match="unknown experiment point"):
        experiments.point("nope")
    with pytest.raises(ValueError, match="unknown layout"):
        experiments.layout_rows("nope")


def test_a_sweep_point_from_the_registry_is_the_points_setting():
    proto = get_protocol("voc21", "sclip")
    css, csg = CSSConfig(tau=0.4), CSGConfig(lam=0.9)
    swept = make_points(experiments.table_grid(), proto, css=css, csg=csg)
    pts = [p for p in experiments.POINTS if p.rows]
    assert len(swept) == len(pts)
    for s, p in zip(swept, pts):
        want = p.setting(proto, css, csg)
        assert (s.method, s.css, s.csg, s.score_source, s.select) == (
            want.method, want.css, want.csg, want.score_source, want.select), p.key


def test_a_point_of_another_preset_is_one_entry_and_not_a_paper_row():
    unknown = experiments.Point("s2c2seg_x", preset="x", rows=(("main", "{baseline} + S2C2Seg (x)"),))
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        unknown.signature()
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        make_points([unknown.grid_point()], get_protocol("voc21", "sclip"), dataset="voc21")
    released = experiments.point("released")
    assert released.signature("voc21") == ("s2c2seg", "released", ("query", "window"))
    assert released.signature("voc21") != experiments.point("s2c2seg").signature()
    (swept,) = make_points([experiments.point("released:class/image").grid_point()], get_protocol("voc21", "sclip"),
                           dataset="voc21", css=CSSConfig(tau=0.9))  # paper defaults do not reach a released point
    assert (swept.preset.name, swept.preset.select.unit, swept.preset.select.scope) == ("released", "class", "image")
    assert swept.preset.select.tau == 0.4  # VOC21's released operating point


# ---------------------------------------------------------------------------------------------- notebook 01's view
@pytest.mark.parametrize("pool", ["all", "init"])
def test_stage2_view_equals_select_categories(pool):
    g = torch.tensor([0.30, 0.25, 0.21, 0.20, 0.19, 0.22, 0.18, 0.24, 0.17, 0.26], dtype=torch.float64)
    s = torch.tensor([0.9, 0.1, 0.05, 0.3, 0.02, 0.6, 0.01, 0.2, 0.03, 0.4], dtype=torch.float64)
    cfg = CSSConfig(tau=0.1, k_min=6, k_max=8, stage2_pool=pool)  # |C_init| <= 3 < K = 6: the pools differ
    st = analysis.scoring_steps(g, s, cfg, always_keep=[4])
    want = select_categories(g, s, tau=0.1, k_min=6, k_max=8, always_keep=[4], stage2_pool=pool)
    assert torch.equal(st.selected, want)
    n_init = int(st.union.sum())
    assert n_init <= 3
    if pool == "all":
        assert bool(st.pool.all()) and st.k == 6
    else:
        assert torch.equal(st.pool, st.union) and st.k == n_init
    # the view's own pieces rebuild the selection: top-k of s_final over the pool, plus always_keep
    sf = np.where(st.pool.numpy(), st.s_final.numpy(), -np.inf)
    top = set(np.argsort(-sf, kind="stable")[: st.k].tolist())
    assert top | {4} == set(st.selected.tolist())
    assert float(st.s_final[~st.pool].abs().sum()) == 0.0


# ---------------------------------------------------------------------------------------------- one-key grids
ONE_KEY = [("use", ["glob"], ["spat"]), ("tau", 0.1, 0.9), ("k_max", 3, 20), ("stage2_pool", "all", "init"),
           ("score_source", "clipseg", "baseline"), ("mode", "category_aware", "add")]


@pytest.mark.parametrize("key,a,b", ONE_KEY, ids=[k for k, _, _ in ONE_KEY])
def test_points_differing_in_one_key_each_equal_a_separate_evaluation(voc, key, a, b):
    ds, vocab, proto = voc
    base = {"tau": 0.05, "k_min": 6} if key == "stage2_pool" else {"k_min": 1}
    grid = [{**base, key: a}, {**base, key: b}]
    res = sweep(ds, FakeBackend(noise=0.3), vocab, proto, grid, progress=False)
    mats = [torch.tensor(r.confusion["matrix"]) for r in res.records]
    assert not torch.equal(mats[0], mats[1]), f"{key}: {a} and {b} give one result: the test has no power"
    for point, m in zip(res.points, mats):
        alone = evaluate(ds, FakeBackend(noise=0.3), vocab, proto, method=point.method, css=point.css,
                         csg=point.csg, score_source=point.score_source, select=point.select, progress=False)
        assert torch.equal(torch.tensor(alone.confusion["matrix"]), m), (key, dict(point.settings))


PRESET_ONE_KEY = [("released", "select.tau", 0.1, 0.9), ("released", "fusion.lam", 0.0, 0.9),
                  ("released", "fusion.guide_weight", 0.0, 0.9), ("released", "select.k_max", 2, None),
                  ("released", "select.unit", "query", "class"), ("released", "select.scope", "window", "image"),
                  ("released", "score.global_score", "patch_mean", "cls"),
                  ("released", "score.alpha", "bhattacharyya", "sigmoid"),
                  ("released", "fusion.form", "convex", "paper"),
                  ("released", "fusion.fill", -1e9, float("-inf")),
                  ("released++", "refine.t_max", 0, 1), ("released++", "refine.theta_high", 0.05, 0.99),
                  ("released++", "refine.admit_cap", 1, 3), ("released++", "refine.beta", 0.0, 5.0),
                  ("released++", "post.otsu_c", 0.02, 0.99), ("released++", "post.spatial.iterations", 0, 3)]
"""(preset, dotted key, value a, value b): released preset fields, each varied alone."""


@pytest.mark.parametrize("preset,key,a,b", PRESET_ONE_KEY, ids=[f"{p}:{k}" for p, k, _, _ in PRESET_ONE_KEY])
def test_preset_points_differing_in_one_key_each_equal_a_separate_evaluation(voc, preset, key, a, b):
    """The released presets' memo (per view: resized maps, scores, selections, refinement, last results)
    never serves one setting's result to another that differs in one key."""
    ds, vocab, proto = voc
    # one name per class (the unit needs synonyms): with VOC's 26 background synonyms the stand-in's per-query
    # pool fills with background, and nothing downstream of it can change a label
    if key != "select.unit":
        vocab = Vocabulary.from_names([names[0] for names in vocab.classes])
    proto = proto.replace(prob_thd=0.01)  # Otsu's clamp to [prob_thd, C] acts only with a background threshold
    # a small pool leaves the refinement round something to admit and windows that disagree (the fill)
    tau = 0.3 if key.startswith(("select.", "fusion.lam", "fusion.guide", "fusion.form", "score.", "post.")) else 0.05
    base = {"select.k_min": 1} if key == "select.tau" else {"select.tau": tau, "select.k_min": 1}
    grid = [{"preset": preset, **base, key: a}, {"preset": preset, **base, key: b}]
    res = sweep(ds, FakeBackend(noise=0.3), vocab, proto, grid, progress=False)
    mats = [torch.tensor(r.confusion["matrix"]) for r in res.records]
    assert not torch.equal(mats[0], mats[1]), f"{key}: {a} and {b} give one result: the test has no power"
    for point, m in zip(res.points, mats):
        assert point.preset.get(key) == (a if point is res.points[0] else b)
        alone = evaluate(ds, FakeBackend(noise=0.3), vocab, proto, method="s2c2seg", preset=point.preset,
                         progress=False)
        assert torch.equal(torch.tensor(alone.confusion["matrix"]), m), (key, dict(point.settings))


# ---------------------------------------------------------------------------------------------- the session
def _session(voc, tmp_path):
    from s2c2seg.session import Session

    ds, vocab, proto = voc
    backend = FakeBackend()
    return Session(notebook="t", backend=backend, info=backend.describe(), backend_requested="fake",
                   dataset_name="voc21", dataset=ds, data_source="fixture", vocab=vocab, protocol=proto,
                   out_dir=tmp_path), backend


def test_session_evaluates_points_through_run_points(voc, tmp_path):
    from s2c2seg.session import evaluate_points

    ds, vocab, proto = voc
    S, backend = _session(voc, tmp_path)
    points = experiments.group("baseline", "scoring")
    css, csg = CSSConfig(k_min=2), CSGConfig(lam=0.8)
    res = evaluate_points(S, points, css, csg)
    assert list(res) == list(points) and backend.calls == len(ds)
    for key, r in res.items():
        st = points[key].setting(proto, css, csg)
        alone = evaluate(ds, FakeBackend(), vocab, proto, method=st.method, css=st.css, csg=st.csg,
                         score_source=st.score_source, select=st.select, progress=False)
        assert torch.equal(r.confusion.matrix, torch.tensor(alone.confusion["matrix"])), key
        assert len(r.per_image_miou) == len(ds) and len(r.gt_classes) == len(ds)
        if st.method == "baseline":
            assert r.subsets == [None] * len(ds)
        else:
            assert len(r.subsets) == len(ds) and all(0 in sub for sub in r.subsets)  # background kept
    assert res["oracle"].recall_precision()[0] == pytest.approx(1.0)
    evaluate_points(S, experiments.group("s2c2seg"))  # a second pass re-uses the session's bundles
    assert backend.calls == len(ds)
    S.bundle(0)
    assert backend.calls == len(ds)


def test_markdown_tables_of_a_labelled_session_say_so(voc, tmp_path):
    S, _ = _session(voc, tmp_path)
    md = S.markdown_table({"x": {"a": 1.234}}, first="row")
    assert md.startswith(f"**{LABEL}**") and "| x | 1.2 |" in md
    assert analysis.markdown_table({"x": {"a": 1.0}}).startswith("|")  # pretrained: no label line
