"""sweep(): grid validation before any work, one bundle read per image, points equal single evaluations."""
from __future__ import annotations

import csv
import json

import pytest

from s2c2seg.csg import CSGConfig
from s2c2seg.css import CSSConfig
from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import evaluate
from s2c2seg.records import RecordExistsError, load_records
from s2c2seg.sweep import GRID_KEYS, expand_grid, load_grid, make_points, sweep
from fakes import LABEL, FakeBackend


@pytest.fixture
def voc(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=3, seed=2)
    return (load_dataset("voc21", root), vocabulary("voc21", "sclip"),
            get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16))


def test_expand_grid_product_and_points():
    pts = expand_grid({"tau": [0.2, 0.3], "use": [["glob"], "glob,spat", ["glob", "spat", "conf"]], "lam": 0.5})
    assert len(pts) == 6 and pts[0] == {"tau": 0.2, "use": ["glob"], "lam": 0.5}
    assert expand_grid({"use": ["glob", "spat"]}) == [{"use": ["glob", "spat"]}]  # one subset, not two
    assert expand_grid([{"method": "baseline"}, {"mode": "uniform"}]) == [{"method": "baseline"}, {"mode": "uniform"}]
    proto = get_protocol("voc21", "sclip")
    p = make_points({"prob_thd": [0.0, 0.4], "area_thd": ["none"]}, proto)
    assert [x.protocol.prob_thd for x in p] == [0.0, 0.4] and p[0].protocol.area_thd is None
    assert set(GRID_KEYS) >= {"use", "tau", "k_min", "k_max", "mode", "lam", "temperature", "method", "prob_thd",
                              "select"}


@pytest.mark.parametrize("grid,match", [({"tau": [0.3], "bogus": [1]}, "unknown grid key"),
                                        ([{"method": "s2c2seg"}, {"lamda": 1}], "unknown grid key"),
                                        ({"tau": [0.3, 1.5]}, "tau"), ({"method": ["nope"]}, "method"),
                                        ({"use": [["glob", "xyz"]]}, "use"), ({"mode": ["sum"]}, "mode"),
                                        ({"k_min": [30], "k_max": [20]}, "k_min"), ({"tau": []}, "no values")])
def test_bad_grid_raises_before_any_work(voc, tmp_path, grid, match):
    ds, vocab, proto = voc
    backend = FakeBackend()
    with pytest.raises(ValueError, match=match):
        sweep(ds, backend, vocab, proto, grid, out_dir=tmp_path / "s", progress=False)
    assert backend.calls == 0 and not (tmp_path / "s").exists()


def test_sweep_equals_separate_evaluations(voc, tmp_path):
    ds, vocab, proto = voc
    grid = [{"method": "baseline"}, {"method": "baseline", "prob_thd": 0.3},
            {"tau": 0.2, "k_min": 2, "k_max": 4, "mode": "uniform"},
            {"use": ["glob", "conf"], "lam": 1.0, "temperature": 0.1},
            {"select": False}, {"method": "oracle"}, {"mode": "global_only", "score_source": "baseline"}]
    backend = FakeBackend()
    res = sweep(ds, backend, vocab, proto, grid, cache_dir=tmp_path / "cache", out_dir=tmp_path / "s",
                progress=False, baseline="sclip")
    assert backend.calls == 3  # each image encoded once for all 7 points
    for point, rec in zip(res.points, res.records):
        single = evaluate(ds, FakeBackend(), vocab, point.protocol, method=point.method, css=point.css,
                          csg=point.csg, score_source=point.score_source, select=point.select,
                          cache_dir=tmp_path / "cache", progress=False)
        assert single.confusion == rec.confusion, point
    # from the cache: no encoding at all, same numbers
    again = FakeBackend()
    res2 = sweep(ds, again, vocab, proto, grid, cache_dir=tmp_path / "cache", progress=False)
    assert again.calls == 0 and [r.confusion for r in res2.records] == [r.confusion for r in res.records]
    # outputs
    rows = list(csv.DictReader((tmp_path / "s" / "sweep.csv").open()))
    assert len(rows) == 7 and {"mIoU", "aAcc", "mAcc", "mean_K", "recall", "method", "prob_thd"} <= set(rows[0])
    assert float(rows[0]["mIoU"]) == pytest.approx(100 * res.records[0].metrics["mIoU"], abs=0.01)
    md = (tmp_path / "s" / "sweep.md").read_text()
    assert LABEL in md and md.count("\n|") >= 8
    assert len(load_records([tmp_path / "s"])) == 7
    meta = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert meta["points"][2]["settings"]["mode"] == "uniform"
    with pytest.raises(RecordExistsError):
        sweep(ds, FakeBackend(), vocab, proto, grid, out_dir=tmp_path / "s", progress=False)


def test_load_grid_yaml(tmp_path):
    p = tmp_path / "grid.yaml"
    p.write_text("tau: [0.2, 0.3]\nuse:\n  - [glob]\n  - [glob, spat, conf]\nmethod: [s2c2seg, oracle]\n")
    assert len(expand_grid(load_grid(p))) == 8
    p.write_text("tau: [0.2]\nlambda: [1]\n")
    with pytest.raises(ValueError, match="unknown grid key"):
        load_grid(p)
    with pytest.raises(FileNotFoundError):
        load_grid(tmp_path / "missing.yaml")


def test_defaults_are_used_for_missing_keys():
    pts = make_points({"tau": [0.5]}, get_protocol("voc21", "sclip"), css=CSSConfig(k_max=9),
                      csg=CSGConfig(lam=0.2), method="oracle")
    assert pts[0].css.k_max == 9 and pts[0].css.tau == 0.5 and pts[0].csg.lam == 0.2 and pts[0].method == "oracle"


def test_sweep_cli_on_the_simulation(tmp_path, capsys):
    from s2c2seg.cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text("method: [baseline, s2c2seg, oracle]\nprob_thd: [0.0, 0.2]\n")
    assert main(["sweep", "sim:voc21", "--backend", "sim", "--sim-images", "2", "--grid", str(grid),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and out.count("\n|") >= 7
    rows = list(csv.DictReader((tmp_path / "s" / "sweep.csv").open()))
    assert [r["method"] for r in rows] == ["baseline", "baseline", "s2c2seg", "s2c2seg", "oracle", "oracle"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("tau: [0.3]\ntemprature: [0.1]\n")
    with pytest.raises(ValueError, match="unknown grid key"):
        main(["sweep", "sim:voc21", "--backend", "sim", "--grid", str(bad), "--out", str(tmp_path / "b")])
    assert not (tmp_path / "b").exists()


def test_grid_accepts_the_stage2_pool_switch():
    from s2c2seg.data import Protocol
    from s2c2seg.sweep import make_points

    pts = make_points({"stage2_pool": ["all", "init"]}, Protocol())
    assert [p.css.stage2_pool for p in pts] == ["all", "init"]


def test_sweep_skips_a_bad_image_for_every_point(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=3, seed=2)
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    path = root / "JPEGImages" / f"{ids[0]}.jpg"
    path.write_bytes(path.read_bytes()[:300])
    ds, vocab = load_dataset("voc21", root), vocabulary("voc21", "sclip")
    proto = get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16)
    res = sweep(ds, FakeBackend(), vocab, proto, {"method": ["baseline", "s2c2seg"]}, on_error="skip",
                progress=False, out_dir=tmp_path / "s")
    for r in res.records:
        assert r.num_images == 2 and [s["id"] for s in r.extra["skipped"]] == [ids[0]]
    assert "(2 images, 1 skipped)" in res.markdown()
    with pytest.raises(ValueError, match=f"image '{ids[0]}'"):
        sweep(ds, FakeBackend(), vocab, proto, {"method": ["baseline"]}, progress=False)
