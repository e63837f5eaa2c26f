"""evaluate(): cached == uncached, resume after interruption, corrupt entries, records, metric vs reference."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from s2c2seg.bundle import FeatureBundle
from s2c2seg.cache import BundleCache
from s2c2seg.csg import CSGConfig
from s2c2seg.css import CSSConfig
from s2c2seg.data import get_protocol, load_dataset, vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import ImageError, evaluate
from s2c2seg.io import ImageLoadError
from s2c2seg.predict import predict
from s2c2seg.records import RecordExistsError, RunRecord

from fakes import LABEL, FakeBackend


@pytest.fixture
def voc(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=5, seed=1)
    ds = load_dataset("voc21", root)
    vocab = vocabulary("voc21", "sclip")
    proto = get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16)
    return ds, vocab, proto


def _run(ds, vocab, proto, tmp_path, name, **kw):
    kw.setdefault("method", "s2c2seg")
    return evaluate(ds, FakeBackend(), vocab, proto, out_dir=tmp_path / name, progress=False, **kw)


def test_cached_equals_uncached(voc, tmp_path):
    ds, vocab, proto = voc
    a = _run(ds, vocab, proto, tmp_path, "nocache")
    b = _run(ds, vocab, proto, tmp_path, "fill", cache_dir=tmp_path / "cache")
    c = _run(ds, vocab, proto, tmp_path, "fromcache", cache_dir=tmp_path / "cache")
    assert a.confusion == b.confusion == c.confusion
    assert b.cache["misses"] == 5 and c.cache["hits"] == 5 and c.cache["misses"] == 0
    # per image too: the prediction from the stored bundle equals the one from the fresh bundle
    cache = BundleCache(tmp_path / "cache")
    assert len(cache) == 5
    for path in sorted((tmp_path / "cache").glob("*/*.safetensors")):
        stored = FeatureBundle.load(path)
        sample = next(s for s in ds if s.id == stored.meta["id"])
        fresh = FakeBackend().encode(sample, vocab, proto)
        for m in ("baseline", "s2c2seg"):
            assert torch.equal(predict(stored, proto, m, background=0).label_map,
                               predict(fresh, proto, m, background=0).label_map)


def test_resume_after_interruption_is_bit_identical(voc, tmp_path):
    ds, vocab, proto = voc
    full = _run(ds, vocab, proto, tmp_path, "full")

    class Killed(Exception):
        pass

    class Dying(FakeBackend):
        def encode(self, sample, vocab, protocol):
            if self.calls == 3:
                raise Killed
            return super().encode(sample, vocab, protocol)

    with pytest.raises(ImageError, match="Killed") as err:  # the run stops, naming the image it died on
        evaluate(ds, Dying(), vocab, proto, method="s2c2seg", cache_dir=tmp_path / "cache",
                 out_dir=tmp_path / "killed", progress=False)
    assert isinstance(err.value.__cause__, Killed) and repr(ds.ids[3]) in str(err.value)
    assert not (tmp_path / "killed" / "record.json").exists()
    assert len(BundleCache(tmp_path / "cache")) == 3
    backend = FakeBackend()
    resumed = evaluate(ds, backend, vocab, proto, method="s2c2seg", cache_dir=tmp_path / "cache",
                       out_dir=tmp_path / "killed", progress=False)
    assert backend.calls == 2  # only the missing images are encoded
    assert resumed.confusion == full.confusion
    assert json.dumps(resumed.to_json()["metrics"]) == json.dumps(full.to_json()["metrics"])


def test_corrupt_and_foreign_entries_are_recomputed(voc, tmp_path):
    ds, vocab, proto = voc
    ref = _run(ds, vocab, proto, tmp_path, "ref", cache_dir=tmp_path / "cache")
    paths = sorted((tmp_path / "cache").glob("*/*.safetensors"))
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])  # truncated
    paths[1].write_bytes(paths[2].read_bytes())  # another key's bundle under this name
    backend = FakeBackend()
    again = evaluate(ds, backend, vocab, proto, method="s2c2seg", cache_dir=tmp_path / "cache",
                     out_dir=tmp_path / "again", progress=False)
    assert backend.calls == 2
    assert again.cache["corrupt"] == 2 and again.cache["hits"] == 3
    assert again.confusion == ref.confusion


def test_metric_over_split_equals_per_pixel_reference(voc, tmp_path):
    ds, vocab, proto = voc
    rec = _run(ds, vocab, proto, tmp_path, "m", method="baseline")
    c = vocab.num_classes
    inter, union, area = np.zeros(c), np.zeros(c), np.zeros(c)
    correct = total = 0
    backend = FakeBackend()
    for s in ds:
        pred = predict(backend.encode(s, vocab, proto), proto, "baseline").label_map.numpy()
        lab = s.label
        for y in range(lab.shape[0]):
            for x in range(lab.shape[1]):
                t, p = int(lab[y, x]), int(pred[y, x])
                if t == 255:
                    continue
                total += 1
                area[t] += 1
                if t == p:
                    inter[t] += 1
                    correct += 1
                union[t] += 1
                if p != t:
                    union[p] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        acc = inter / area
    assert math.isclose(rec.metrics["mIoU"], float(np.nanmean(iou)), rel_tol=1e-12)
    assert math.isclose(rec.metrics["aAcc"], correct / total, rel_tol=1e-12)
    assert math.isclose(rec.metrics["mAcc"], float(np.nanmean(acc)), rel_tol=1e-12)
    got = [v["IoU"] for v in rec.metrics["per_class"].values()]
    for g, r in zip(got, iou):
        assert (g is None and np.isnan(r)) or (isinstance(g, float) and math.isnan(g) and np.isnan(r)) \
            or math.isclose(g, r, rel_tol=1e-12)


def test_record_contents_and_no_overwrite(voc, tmp_path):
    ds, vocab, proto = voc
    rec = _run(ds, vocab, proto, tmp_path, "r", max_images=3, baseline="sclip",
               css=CSSConfig(tau=0.5), csg=CSGConfig(lam=0.3))
    d = json.loads((tmp_path / "r" / "record.json").read_text())
    assert d["num_images"] == 3 and d["label"] == LABEL
    assert d["protocol"]["short_side"] == 64 and d["protocol"]["area_thd"] == 0.1
    assert d["parameters"]["css"]["tau"] == 0.5 and d["parameters"]["csg"]["lam"] == 0.3
    assert d["vocabulary"]["variant"] == "sclip" and d["vocabulary"]["num_queries"] == len(vocab.queries)
    assert d["environment"]["packages"]["torch"] and "git_revision" in d["environment"]
    assert d["timing"]["seconds_per_image"] > 0
    assert 0 < d["extra"]["subset"]["mean_subset_size"] <= vocab.num_classes
    csv_lines = (tmp_path / "r" / "per_class.csv").read_text().splitlines()
    assert csv_lines[0] == "index,class,IoU,Acc" and len(csv_lines) == 1 + vocab.num_classes
    assert RunRecord.load(tmp_path / "r").metrics["mIoU"] == pytest.approx(rec.metrics["mIoU"])
    before = (tmp_path / "r" / "record.json").read_bytes()
    backend = FakeBackend()
    with pytest.raises(RecordExistsError, match="never overwritten"):
        evaluate(ds, backend, vocab, proto, out_dir=tmp_path / "r", progress=False)
    assert backend.calls == 0  # refused before any work
    assert (tmp_path / "r" / "record.json").read_bytes() == before


def test_methods_and_bad_input(voc, tmp_path):
    ds, vocab, proto = voc
    oracle = _run(ds, vocab, proto, tmp_path, "o", method="oracle")
    assert oracle.extra["subset"]["gt_class_recall"] == 1.0
    with pytest.raises(ValueError, match="method"):
        evaluate(ds, FakeBackend(), vocab, proto, method="nope", progress=False)
    with pytest.raises(ValueError, match="max_images"):
        evaluate(ds, FakeBackend(), vocab, proto, max_images=0, progress=False)
    with pytest.raises(ValueError, match="classes"):
        evaluate(ds, FakeBackend(), vocabulary("voc20", "sclip"), proto, progress=False)


def test_cli_with_tiny_random_models_and_sim(tmp_path):
    """The whole evaluation through the CLI with the real segmenter at tiny random-weight sizes, and on the sim."""
    from s2c2seg.cli import main

    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=2, seed=5)
    args = ["eval", "voc21", "--data-root", str(root), "--backend", "random", "--size", "tiny", "--no-progress",
            "--short-side", "64", "--crop", "32", "--stride", "32", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # from the cache
    a, b = RunRecord.load(tmp_path / "a"), RunRecord.load(tmp_path / "b")
    assert a.label == "RANDOM WEIGHTS" and a.cache["misses"] == 2 and b.cache["hits"] == 2
    assert a.confusion == b.confusion and a.protocol["crop"] == 32
    assert main(["eval", "sim:voc21", "--backend", "sim", "--sim-images", "2", "--method", "oracle",
                 "--no-progress", "--out", str(tmp_path / "s")]) == 0
    s = RunRecord.load(tmp_path / "s")
    assert s.label == "SIMULATED" and s.num_images == 2 and s.extra["subset"]["gt_class_recall"] == 1.0


# ---------------------------------------------------------------------------------------------- bad images
def _truncate(root, k: int) -> str:
    """Cut image ``k`` of the split in half (a truncated JPEG); returns its id."""
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    path = root / "JPEGImages" / f"{ids[k]}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ids[k]


def test_a_bad_image_stops_the_run_naming_it_by_default(voc, tmp_path):
    ds, vocab, proto = voc
    bad = _truncate(ds.root, 2)
    backend = FakeBackend()
    with pytest.raises(ImageError, match=rf"image '{bad}' \(voc21 #2\) failed: ImageLoadError: cannot decode") as e:
        evaluate(ds, backend, vocab, proto, out_dir=tmp_path / "r", progress=False)
    assert isinstance(e.value.__cause__, ImageLoadError) and "--on-error skip" in str(e.value)
    assert backend.calls == 2 and not (tmp_path / "r" / "record.json").exists()


def test_skip_equals_the_split_without_the_bad_image_with_and_without_cache(voc, tmp_path):
    ds, vocab, proto = voc
    bad = _truncate(ds.root, 1)
    split = ds.root / "ImageSets" / "Segmentation" / "val.txt"
    ids = split.read_text().split()
    # the reference: the same fixture with the bad image left out of the split file
    ref_root = write_fixture("voc21", tmp_path / "ref" / "VOC2012", n_images=5, seed=1)
    (ref_root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(i for i in ids if i != bad) + "\n")
    ref = evaluate(load_dataset("voc21", ref_root), FakeBackend(), vocab, proto, progress=False)
    assert ref.num_images == 4
    runs = [evaluate(ds, FakeBackend(), vocab, proto, on_error="skip", progress=False, out_dir=tmp_path / "plain")]
    for name in ("fill", "hit"):
        runs.append(evaluate(ds, FakeBackend(), vocab, proto, on_error="skip", cache_dir=tmp_path / "cache",
                             out_dir=tmp_path / name, progress=False))
    for rec in runs:
        assert rec.confusion == ref.confusion and rec.num_images == 4
        assert json.dumps(rec.metrics) == json.dumps(ref.metrics)  # NaN-safe equality
        assert rec.extra["num_skipped"] == 1 and [s["id"] for s in rec.extra["skipped"]] == [bad]
        assert rec.extra["skipped"][0]["error"].startswith("ImageLoadError: cannot decode image")
        assert "truncated" in rec.extra["skipped"][0]["error"]
    assert runs[1].cache["misses"] == 4 and runs[2].cache["hits"] == 4 and runs[2].cache["misses"] == 0
    saved = json.loads((tmp_path / "hit" / "record.json").read_text())
    assert saved["extra"]["skipped"] == runs[2].extra["skipped"] and saved["extra"]["num_skipped"] == 1
    assert ref.extra["num_skipped"] == 0 and ref.extra["skipped"] == []


def test_skip_counts_an_image_for_no_setting_when_its_prediction_fails(voc, tmp_path):
    """A failure after the bundle (here: in predict, through a bundle of the wrong size) is skipped whole."""
    ds, vocab, proto = voc

    class WrongSize(FakeBackend):
        def encode(self, sample, vocab, protocol):
            bundle = super().encode(sample, vocab, protocol)
            if sample.id == ds.ids[3]:
                bundle.image_hw = bundle.image_hw + 1
            return bundle

    rec = evaluate(ds, WrongSize(), vocab, proto, on_error="skip", progress=False)
    assert rec.extra["skipped"][0]["id"] == ds.ids[3] and "BundleError" in rec.extra["skipped"][0]["error"]
    assert sum(sum(row) for row in rec.confusion["matrix"]) == sum(
        int((s.label != 255).sum()) for s in ds if s.id != ds.ids[3])


def test_every_image_bad_and_bad_on_error_value(voc, tmp_path):
    ds, vocab, proto = voc
    for k in range(len(ds)):
        _truncate(ds.root, k)
    with pytest.raises(ImageError, match="every one of the 5 images failed"):
        evaluate(ds, FakeBackend(), vocab, proto, on_error="skip", progress=False)
    with pytest.raises(ValueError, match="on_error"):
        evaluate(ds, FakeBackend(), vocab, proto, on_error="ignore", progress=False)
