"""``s2c2seg segment`` and ``segment_image`` (issue 18) on generated images: the tiny random-weight models (one
build for the file, through the process's backend memo) and the simulation. The CLI runs in process
(``cli.console``: the real error contract); the pretrained-without-weights case in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2c2seg import segment as seg_mod
from s2c2seg.cli import console
from s2c2seg.segment import parse_classes, segment_image

CLASSES = "cat; kitty, sofa, floor"
RANDOM = ["--backend", "random", "--size", "tiny", "--no-progress"]
REPO = Path(__file__).resolve().parents[1]


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A generated picture: three flat regions plus noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 3] = (200, 60, 40)
    img[:, w // 3: 2 * w // 3] = (40, 160, 70)
    img[:, 2 * w // 3:] = (50, 60, 190)
    img[: h // 2, : w // 2] = (230, 220, 90)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _run(args, capsys) -> tuple[int, str, str]:
    rc = console(["segment", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_error(rc: int, err: str) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2c2seg: error: ") and "Traceback" not in err, err
    return lines[0]


def _labels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Two images in a folder (one square: one sliding window; one wider: two), a name file, and one CLI run
    over the folder with --explain (tiny random weights, a shared bundle cache)."""
    root = tmp_path_factory.mktemp("segment")
    imgs = root / "imgs"
    imgs.mkdir()
    Image.fromarray(_image(32, 32, 0)).save(imgs / "a.png")
    Image.fromarray(_image(32, 40, 1)).save(imgs / "b.png")
    (root / "names.txt").write_text("cat; kitty\nsofa\nfloor\n")
    cache = root / "cache"
    out = root / "batch"
    rc = console(["segment", str(imgs), "--classes", CLASSES, *RANDOM, "--explain", "--cache-dir", str(cache),
                  "--out", str(out)])
    assert rc == 0
    return {"root": root, "imgs": imgs, "cache": cache, "out": out}


# ---------------------------------------------------------------------------------------------- the words
def test_parse_classes():
    assert parse_classes("cat; kitty, sofa, floor") == [["cat", "kitty"], ["sofa"], ["floor"]]
    assert parse_classes(" a ,b;c ") == [["a"], ["b", "c"]]
    with pytest.raises(ValueError, match="empty"):
        parse_classes(" , ;")
    with pytest.raises(ValueError, match="empty class at position 2"):
        parse_classes("cat, , dog")


# ---------------------------------------------------------------------------------------------- outputs
def test_batch_writes_every_output(world):
    names = sorted(p.name for p in world["out"].iterdir())
    assert names == ["a.json", "a.png", "a_explain.png", "a_labels.png",
                     "b.json", "b.png", "b_explain.png", "b_labels.png"]
    for stem, (h, w) in (("a", (32, 32)), ("b", (32, 40))):
        lab = Image.open(world["out"] / f"{stem}_labels.png")
        assert lab.mode == "L" and lab.size == (w, h)
        over = Image.open(world["out"] / f"{stem}.png")
        assert over.size[0] == w and over.size[1] > h  # the legend under the image
        rec = json.loads((world["out"] / f"{stem}.json").read_text())
        assert rec["label"] == "RANDOM WEIGHTS" and rec["run"]["backend"]["label"] == "RANDOM WEIGHTS"
        assert rec["run"]["baseline"] == "proxyclip" and rec["run"]["preset"]["preset"] == "released"
        assert "voc20" in rec["run"]["protocol_source"] and rec["run"]["protocol"]["prob_thd"] == 0.0
        assert [c["synonyms"] for c in rec["classes"]] == [["cat", "kitty"], ["sofa"], ["floor"]]


def test_areas_are_the_label_counts_and_sum_to_100(world):
    for stem in ("a", "b"):
        rec = json.loads((world["out"] / f"{stem}.json").read_text())
        lab = _labels(world["out"] / f"{stem}_labels.png")
        counts = np.bincount(lab.reshape(-1), minlength=3)
        assert [c["area_percent"] for c in rec["classes"]] == pytest.approx(list(100 * counts / lab.size))
        assert sum(c["area_percent"] for c in rec["classes"]) == pytest.approx(100.0)


def test_selected_equals_an_independent_prediction(world):
    """The JSON's kept classes are ``Prediction.subset`` of the documented API path, run here by hand."""
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.data.sample import Sample
    from s2c2seg.data.vocab import Vocabulary
    from s2c2seg.io import load_image
    from s2c2seg.encode_side import EncodeSpec
    from s2c2seg.factories import build_backend
    from s2c2seg.predict import BundleView, predict
    from s2c2seg.presets import get_preset

    vocab = Vocabulary.from_names([["cat", "kitty"], "sofa", "floor"])
    proto = get_protocol("voc20", "proxyclip")
    preset = get_preset("released", "custom")
    backend = build_backend("random", baseline="proxyclip", size="tiny",
                            config=EncodeSpec.of("s2c2seg", preset).segmenter_config())
    for stem in ("a", "b"):
        rec = json.loads((world["out"] / f"{stem}.json").read_text())
        bundle = backend.encode(Sample(stem, load_image(world["imgs"] / f"{stem}.png")), vocab, proto)
        pred = predict(BundleView(bundle), proto, "s2c2seg", preset=preset)
        assert rec["selected"] == pred.subset.tolist()
        assert [c["index"] for c in rec["classes"] if c["selected"]] == pred.subset.tolist()
        assert np.array_equal(_labels(world["out"] / f"{stem}_labels.png"), pred.label_map.numpy())


def test_segment_image_equals_the_cli(world):
    for stem in ("a", "b"):
        path = world["imgs"] / f"{stem}.png"
        res = segment_image(path, CLASSES, backend="random", size="tiny", cache_dir=world["cache"])
        assert res.name == stem and res.label == "RANDOM WEIGHTS"
        assert np.array_equal(res.label_map, _labels(world["out"] / f"{stem}_labels.png"))
    path = world["imgs"] / "a.png"
    as_array = segment_image(np.asarray(Image.open(path).convert("RGB")), CLASSES, backend="random",
                             size="tiny")  # no cache: encoded afresh, same numbers
    assert np.array_equal(as_array.label_map, _labels(world["out"] / "a_labels.png"))
    as_pil = segment_image(Image.open(path), CLASSES, backend="random", size="tiny", cache_dir=world["cache"])
    assert np.array_equal(as_pil.label_map, as_array.label_map)


def test_backend_is_built_once(world):
    before = dict(seg_mod.BACKENDS)
    a = segment_image(world["imgs"] / "a.png", CLASSES, backend="random", size="tiny", cache_dir=world["cache"])
    b = segment_image(world["imgs"] / "a.png", ["cat", "dog"], backend="random", size="tiny", cache_dir=world["cache"])
    assert a.run["backend"] == b.run["backend"]
    assert len(seg_mod.BACKENDS) == len(before) and all(seg_mod.BACKENDS[k] is v for k, v in before.items())


def test_explanation_is_consistent_with_the_selection(world):
    res = segment_image(world["imgs"] / "b.png", CLASSES, backend="random", size="tiny", cache_dir=world["cache"],
                        explain=True)
    e = res.explanation
    assert e["kind"] == "released" and len(e["windows"]) == 2  # a 32 x 40 image: 336 x 420 resized, two windows
    q2c = e["query_to_class"]
    assert q2c == [0, 0, 1, 2] and e["queries"] == ["cat", "kitty", "sofa", "floor"]
    kept = set()
    for w in e["windows"]:
        assert set(w["selected"]) <= set(w["candidates"])  # k_max unset: the selection is the whole union
        assert set(w["final"]) == set(w["selected"]) | set(w["admitted"])
        assert len(w["fusion_weights"]) == len(w["final"]) and sum(w["fusion_weights"]) == pytest.approx(1, abs=1e-5)
        assert 0 <= w["alpha"] <= 1 and len(w["global"]) == len(w["spatial"]) == len(w["confidence"]) == 4
        kept |= {q2c[q] for q in w["final"]}
    assert sorted(kept) == res.selected == res.prediction.subset.tolist()
    for c in res.classes:  # the class score is the window mean of the max over its synonyms
        want = np.mean([max(w["global"][q] for q in range(4) if q2c[q] == c.index) for w in e["windows"]])
        assert c.scores["global"] == pytest.approx(want)
    cfg = e["fusion"]["coefficients"]
    assert cfg["global"] + cfg["local"] + cfg["guided"] == pytest.approx(1.0)


def test_vocab_file_and_classes_agree(world, capsys):
    out = world["root"] / "vocab_run"
    rc, _, err = _run([str(world["imgs"] / "a.png"), "--vocab", str(world["root"] / "names.txt"), *RANDOM,
                       "--cache-dir", str(world["cache"]), "--out", str(out)], capsys)
    assert rc == 0, err
    assert np.array_equal(_labels(out / "a_labels.png"), _labels(world["out"] / "a_labels.png"))
    rec = json.loads((out / "a.json").read_text())
    assert [c["synonyms"] for c in rec["classes"]] == [["cat", "kitty"], ["sofa"], ["floor"]]


def test_dataset_vocabulary_and_protocol(world, capsys):
    out = world["root"] / "voc"
    rc, stdout, err = _run([str(world["imgs"] / "a.png"), "--dataset", "voc21", *RANDOM, "--cache-dir",
                            str(world["cache"]), "--out", str(out)], capsys)
    assert rc == 0, err
    assert "a [RANDOM WEIGHTS]" in stdout
    rec = json.loads((out / "a.json").read_text())
    assert len(rec["classes"]) == 21 and rec["classes"][0]["name"] == "background"
    assert rec["run"]["protocol"]["prob_thd"] == 0.2 and rec["run"]["dataset"] == "voc21"  # ProxyCLIP's VOC21 row
    assert rec["run"]["preset"]["select"]["tau"] == 0.4  # the released VOC21 operating point
    assert sum(c["area_percent"] for c in rec["classes"]) == pytest.approx(100.0)


def test_no_overwrite_without_force(world, capsys):
    target = world["out"] / "a.json"
    before = target.read_bytes()
    rc, _, err = _run([str(world["imgs"] / "a.png"), "--classes", "cat, dog", *RANDOM, "--out", str(world["out"])],
                      capsys)
    assert "exists" in _one_error(rc, err) and "--force" in err
    assert target.read_bytes() == before
    out = world["root"] / "forced"
    for _ in range(2):
        rc, _, err = _run([str(world["imgs"] / "a.png"), "--classes", "cat, dog", *RANDOM, "--cache-dir",
                           str(world["cache"]), "--out", str(out), "--force"], capsys)
        assert rc == 0, err
    assert [c["name"] for c in json.loads((out / "a.json").read_text())["classes"]] == ["cat", "dog"]


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case, words", [
    ("unreadable", "cannot read image"), ("missing", "not found"), ("empty", "is empty"),
    ("duplicated", "in two classes"), ("repeated synonym", "given twice"), ("too small", "smaller than one"),
    ("out is a file", "is a file"), ("bad set", "fix --set"), ("no classes", "no classes"),
    ("explain baseline", "--explain")])
def test_bad_input_is_one_line(world, capsys, case, words):
    root, img = world["root"], str(world["imgs"] / "a.png")
    (root / "bad.png").write_text("not an image")
    Image.fromarray(_image(6, 6, 0)).save(root / "tiny.png")  # below the tiny CLIP's 8-pixel patch
    (root / "afile").write_text("x")
    out = ["--out", str(root / f"bad-{case.replace(' ', '-')}")]
    args = {
        "unreadable": [str(root / "bad.png"), "--classes", "cat", *out],
        "missing": [str(root / "nope.png"), "--classes", "cat", *out],
        "empty": [img, "--classes", " , ", *out],
        "duplicated": [img, "--classes", "cat, sofa, cat", *out],
        "repeated synonym": [img, "--classes", "cat; cat, sofa", *out],
        "too small": [str(root / "tiny.png"), "--classes", "cat, sofa", *out],
        "out is a file": [img, "--classes", "cat", "--out", str(root / "afile")],
        "bad set": [img, "--classes", "cat", "--set", "select.tau=2", *out],
        "no classes": [img, *out],
        "explain baseline": [img, "--classes", "cat", "--method", "baseline", "--explain", *out],
    }[case]
    rc, _, err = _run([*args, *RANDOM], capsys)
    assert words in _one_error(rc, err)
    if case != "too small":  # refused before --out is made or any image is encoded
        assert not Path(out[1]).exists()


def test_pretrained_without_weights_fails_fast(tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(_image(32, 32, 0)).save(img)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_hf_home"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, "-m", "s2c2seg", "segment", str(img), "--classes", "cat", "--backend",
                           "pretrained", "--out", str(tmp_path / "o")], env=env, capture_output=True, text=True,
                          timeout=300)
    line = _one_error(proc.returncode, proc.stderr)
    assert "cannot load the real weights" in line and "--backend random" in line


# ---------------------------------------------------------------------------------------------- pictures
def test_label_png_depth_and_backend_label_on_the_overlay(world):
    import io

    from s2c2seg.explain_plot import labels_png, overlay_image

    lab = np.array([[0, 299], [256, 7]])
    img = Image.open(io.BytesIO(labels_png(lab, 300)))
    assert img.mode.startswith("I") and np.array_equal(np.asarray(img).astype(np.int64), lab)
    assert Image.open(io.BytesIO(labels_png(lab % 200, 200))).mode == "L"
    res = segment_image(_image(120, 160, 5), CLASSES, backend="sim")
    assert res.label == "SIMULATED"
    labelled = np.asarray(overlay_image(res))
    res.run = {**res.run, "backend": {**res.run["backend"], "label": ""}}  # as if real weights had run
    plain = np.asarray(overlay_image(res))
    assert labelled.shape == plain.shape and not np.array_equal(labelled[:8, :8], plain[:8, :8])
    assert np.array_equal(labelled[60:], plain[60:])  # only the label's corner differs


# ---------------------------------------------------------------------------------------------- simulation
def test_sim_backend_on_a_user_image():
    img = _image(375, 500, 3)
    a = segment_image(img, CLASSES, backend="sim", explain=True)
    b = segment_image(img.copy(), CLASSES, backend="sim")
    assert a.label == "SIMULATED" and a.label_map.shape == (375, 500)
    assert np.array_equal(a.label_map, b.label_map)  # the scene is seeded by the pixels
    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.data.sample import Sample
    from s2c2seg.predict import BundleView, predict
    from s2c2seg.presets import get_preset
    from s2c2seg.sim import SimBackend, SimConfig

    truth, bg = seg_mod.simulated_truth(SimConfig(), img, _vocab())  # documented: a scene at the image's size
    assert truth.shape == (375, 500) and bg is None and len(np.unique(truth)) >= 2
    proto = get_protocol("voc20", "proxyclip")
    bundle = SimBackend().encode(Sample("image", img, label=truth), _vocab(), proto)  # an array is "image"
    want = predict(BundleView(bundle), proto, "s2c2seg", preset=get_preset("released", "custom"))
    assert np.array_equal(a.label_map, want.label_map.numpy()) and a.selected == want.subset.tolist()
    kept = [c.index for c in a.classes if c.selected]
    assert kept == a.selected and len(kept) < 3  # this scene leaves a class out: the flags are not all True
    assert all(c.area_percent == 0 for c in a.classes if not c.selected)
    paper = segment_image(img, CLASSES, backend="sim", preset="paper", explain=True)
    e = paper.explanation
    assert e["kind"] == "paper" and e["subset"] == paper.prediction.subset.tolist() == paper.selected
    assert set(e["stage1_union"]) <= set(e["subset"])
    assert sum(e["csg"]["weights"]) == pytest.approx(1.0, abs=1e-5) and 0 < e["alpha"] < 1
    base = segment_image(img, CLASSES, backend="sim", method="baseline")
    assert base.selected is None and all(c.selected is None for c in base.classes)
    assert np.array_equal(base.label_map, a.baseline_map)  # the baseline on the same simulated bundle
    with pytest.raises(ValueError, match="no preset"):
        segment_image(img, CLASSES, backend="sim", method="baseline", overrides={"select.tau": "0.5"})


def _vocab():
    from s2c2seg.data.vocab import Vocabulary

    return Vocabulary.from_names(parse_classes(CLASSES))


def test_explain_figure_draws(world):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from s2c2seg.explain_plot import class_window_states, explain_figure

    res = segment_image(world["imgs"] / "b.png", CLASSES, backend="random", size="tiny", cache_dir=world["cache"],
                        explain=True)
    states = class_window_states(res.explanation, 3)
    assert states.shape == (3, 2)
    for n, w in enumerate(res.explanation["windows"]):  # state 2 = selected, 3 = admitted, per class
        sel = {res.explanation["query_to_class"][q] for q in w["selected"]}
        assert {i for i in range(3) if states[i, n] >= 2} == sel | {res.explanation["query_to_class"][q]
                                                                   for q in w["admitted"]}
    fig = explain_figure(res)
    assert fig._suptitle.get_text().startswith("RANDOM WEIGHTS")
    assert torch.is_tensor(res.prediction.label_map)
