"""Optional bundle sources: a released-only encode skips the paper reading's whole-image pass and loses nothing."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from s2c2seg.bundle import PAPER_SOURCES, BundleError, FeatureBundle
from s2c2seg.cli_eval import add_common_arguments, add_method_arguments, eval_setup
from s2c2seg.data import Protocol, Sample, Vocabulary
from s2c2seg.data.fixtures import write_fixture
from s2c2seg.evaluate import ImageError, evaluate
from s2c2seg.models.clipseg import ClipSeg, ClipSegSettings, tiny_clipseg_config
from s2c2seg.css import CSSConfig
from s2c2seg.predict import bundle_sources, predict
from s2c2seg.presets import get_preset
from s2c2seg.segmenter import Segmenter, SegmenterConfig
from s2c2seg.factories import build_backend

PROTO = Protocol(short_side=64, crop=32, stride=16)
VOCAB = Vocabulary.from_names(["cat", ["dog", "puppy"], "sky"])


class CountingClipSeg:
    """A ClipSeg whose whole-image pass (``map_chunks``) and window pass (``window_map_chunks``) are counted."""

    def __init__(self, inner):
        self.inner, self.calls = inner, {"map_chunks": 0, "window_map_chunks": 0}

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name in self.calls:
            def counted(*a, **kw):
                self.calls[name] += 1
                return attr(*a, **kw)
            return counted
        return attr


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    cache = tmp_path_factory.mktemp("src_cache")
    seg = build_backend("random", baseline="proxyclip", size="tiny", cache_dir=cache)
    seg.clipseg = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache, settings=ClipSegSettings(input_size=96))
    return seg


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(1)
    return Sample("img0", rng.integers(0, 256, (45, 60, 3), dtype=np.uint8))


def _with(proxy, counting=None, **config):
    return Segmenter(proxy.baseline, proxy.clip, counting or proxy.clipseg, proxy.text, vfm=proxy.vfm,
                     config=SegmenterConfig(**config))


def test_released_only_encode_skips_the_whole_image_pass_and_keeps_every_other_field(proxy, sample):
    full = proxy.encode(sample, VOCAB, PROTO)
    counting = CountingClipSeg(proxy.clipseg)
    lean_seg = _with(proxy, counting, paper_sources=False)
    lean = lean_seg.encode(sample, VOCAB, PROTO)
    assert counting.calls["map_chunks"] == 0 and counting.calls["window_map_chunks"] == len(full.crop_boxes)
    assert all(getattr(lean, name) is None for name in PAPER_SOURCES)
    for name in ("dense_logits", "crop_boxes", "window_local", "window_global", "window_pad", "input_image"):
        assert torch.equal(getattr(lean, name), getattr(full, name)), name
    assert lean.meta["sources"] == ["window"] and full.meta["sources"] == ["paper", "window"]
    assert lean_seg.describe()["sources"] == ["window"] and lean_seg.describe() != proxy.describe()  # cache key
    assert lean.nbytes() < full.nbytes()
    # the full encode does run the whole-image pass (the counter can see it)
    counted_full = CountingClipSeg(proxy.clipseg)
    _with(proxy, counted_full).encode(sample, VOCAB, PROTO)
    assert counted_full.calls["map_chunks"] == 1


@pytest.mark.parametrize("name", ["released", "released++"])
def test_released_prediction_is_the_same_without_the_paper_sources(proxy, sample, name):
    full = proxy.encode(sample, VOCAB, PROTO)
    lean = _with(proxy, paper_sources=False).encode(sample, VOCAB, PROTO)
    preset = get_preset(name, "voc21")
    a = predict(full, PROTO, "s2c2seg", preset=preset, return_logits=True)
    b = predict(lean, PROTO, "s2c2seg", preset=preset, return_logits=True)
    assert torch.equal(a.label_map, b.label_map) and torch.equal(a.logits, b.logits)
    assert torch.equal(predict(full, PROTO).label_map, predict(lean, PROTO).label_map)  # the baseline too


def test_the_paper_reading_refuses_a_bundle_without_its_sources(proxy, sample, tmp_path):
    lean = _with(proxy, paper_sources=False).encode(sample, VOCAB, PROTO)
    lean.save(tmp_path / "b.safetensors")
    back = FeatureBundle.load(tmp_path / "b.safetensors")
    assert back.global_sim is None and torch.equal(back.window_local, lean.window_local)
    for method, preset, css in (("s2c2seg", get_preset("paper", "voc21"), None), ("s2c2seg", None, CSSConfig()),
                                ("oracle", None, None)):
        with pytest.raises(BundleError, match=r"lacks global_sim, clipseg_mean, clipseg_maps.*paper_sources=True"):
            predict(back, PROTO, method, preset=preset, css=css, label=torch.zeros(45, 60, dtype=torch.long))


def test_bundle_sources_of_each_reading():
    assert bundle_sources("baseline") == frozenset()
    assert bundle_sources("s2c2seg", get_preset("released", "voc21")) == {"window"}
    assert bundle_sources("s2c2seg", get_preset("released++", "voc21")) == {"window"}
    assert bundle_sources("s2c2seg", get_preset("paper", "voc21")) == {"paper"}
    assert bundle_sources("s2c2seg") == {"paper"} and bundle_sources("oracle") == {"paper"}


class NoEncode:
    """A backend that states its sources and must never be asked to encode."""

    def __init__(self, sources):
        self.sources = sources

    def describe(self):
        return {"backend": "random", "label": "RANDOM WEIGHTS", "sources": self.sources}

    def encode(self, *a):  # pragma: no cover - reaching it is the failure
        raise AssertionError("encode must not run")


def test_evaluate_refuses_a_setting_the_backend_cannot_feed_before_any_encode(tmp_path):
    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=1, seed=0)
    from s2c2seg.data import load_dataset, vocabulary

    ds = load_dataset("voc21", root)
    voc = vocabulary("voc21", "proxyclip")
    with pytest.raises(ValueError, match=r"reads the paper sources.*SegmenterConfig\(paper_sources=True\)"):
        evaluate(ds, NoEncode(["window"]), voc, PROTO, method="s2c2seg", preset=get_preset("paper", "voc21"))
    with pytest.raises(ValueError, match=r"reads the window sources.*window_sources=True"):
        evaluate(ds, NoEncode(["paper"]), voc, PROTO, method="s2c2seg", preset=get_preset("released", "voc21"))
    with pytest.raises(ImageError, match="encode must not run"):  # what it needs is there: it goes on
        evaluate(ds, NoEncode([]), voc, PROTO, method="baseline")


def _args(*argv):
    p = argparse.ArgumentParser()
    add_common_arguments(p)
    add_method_arguments(p)
    return p.parse_args(["voc21", "--backend", "random", "--size", "tiny", "--baseline", "proxyclip",
                         "--data-root", "unused", "--out", "unused", *argv])


@pytest.mark.parametrize("argv,grid,expected", [
    ((), None, ["window"]),                                            # released, the default preset
    (("--preset", "released++"), None, ["window"]),
    (("--preset", "paper"), None, ["paper"]),
    (("--method", "baseline"), None, []),
    (("--method", "oracle"), None, ["paper"]),
    (("--sources", "all"), None, ["paper", "window"]),
    ((), {"preset": ["paper", "released"]}, ["paper", "window"]),      # a sweep: any point's sources
    ((), {"select.tau": [0.3, 0.5]}, ["window"]),
    (("--method", "baseline"), {"method": ["baseline", "oracle"]}, ["paper"]),
])
def test_cli_backends_compute_the_sources_the_run_reads(monkeypatch, argv, grid, expected):
    import s2c2seg.cli_eval as cli_eval
    import s2c2seg.cli_sweep as cli_sweep

    built = {}
    monkeypatch.setattr(cli_eval, "dataset_by_name", lambda *a, **kw: object())
    monkeypatch.setattr(cli_eval, "backend_by_name", lambda *a, config=None, **kw: built.setdefault("config", config))
    monkeypatch.setattr(cli_sweep, "dataset_info", lambda ds: argparse.Namespace(name="voc21"))
    if grid is None:
        eval_setup(_args(*argv))
    else:
        cli_sweep.sweep_setup(_args(*argv), grid)
    cfg = built["config"]
    assert [n for n, on in (("paper", cfg.paper_sources), ("window", cfg.window_sources)) if on] == expected


class Counting:
    """A backend that counts its encodes."""

    def __init__(self, inner):
        self.inner, self.encodes = inner, 0

    def describe(self):
        return self.inner.describe()

    def encode(self, *a):
        self.encodes += 1
        return self.inner.encode(*a)


def test_one_cache_entry_serves_every_reading_and_is_extended_not_narrowed(proxy, tmp_path):
    from s2c2seg.cache import BundleCache, bundle_key
    from s2c2seg.data import load_dataset, vocabulary

    ds = load_dataset("voc21", write_fixture("voc21", tmp_path / "VOC2012", n_images=1, seed=2))
    voc = vocabulary("voc21", "proxyclip")
    cache = tmp_path / "cache"
    released, paper = get_preset("released", "voc21"), get_preset("paper", "voc21")
    backends = {name: Counting(_with(proxy, **cfg)) for name, cfg in {
        "released": {"paper_sources": False}, "baseline": {"paper_sources": False, "window_sources": False},
        "paper": {"window_sources": False}, "all": {}}.items()}
    # the key does not depend on which groups a backend computes; it does on a setting that shapes them
    keys = {bundle_key(b.describe(), PROTO, voc, ds[0], "voc21") for b in backends.values()}
    assert len(keys) == 1
    template = _with(proxy, paper_sources=False, local_text="template").describe()
    assert bundle_key(template, PROTO, voc, ds[0], "voc21") not in keys

    def metrics(record):  # NaN-safe comparison (classes absent from the image have NaN IoU)
        return json.dumps(record.metrics, sort_keys=True)

    def run(name, **kw):
        return metrics(evaluate(ds, backends[name], voc, PROTO, cache_dir=cache, progress=False, **kw))

    ref = {"released": metrics(evaluate(ds, backends["all"], voc, PROTO, method="s2c2seg", preset=released,
                                        progress=False)),
           "paper": metrics(evaluate(ds, backends["all"], voc, PROTO, method="s2c2seg", preset=paper,
                                     progress=False))}
    assert ref["released"] != ref["paper"]
    backends["all"].encodes = 0
    first = run("released", method="s2c2seg", preset=released)
    assert backends["released"].encodes == 1 and first == ref["released"]
    run("baseline", method="baseline")
    assert backends["baseline"].encodes == 0                                      # the entry serves the baseline
    again = run("paper", method="s2c2seg", preset=paper)                           # lacks paper: encoded, extended
    assert backends["paper"].encodes == 1 and again == ref["paper"]
    entry = BundleCache(cache).get(keys.pop())
    assert entry.source_groups() == {"paper", "window"} and entry.meta["sources"] == ["paper", "window"]
    assert entry.meta["storage"] == "exact"
    last = run("all", method="s2c2seg", preset=released)                           # both groups there now
    assert backends["all"].encodes == 0 and last == ref["released"]
    assert run("released", method="s2c2seg", preset=released) == ref["released"]
    assert backends["released"].encodes == 1 and backends["paper"].encodes == 1


def test_extended_refuses_another_image(proxy, sample):
    lean = _with(proxy, paper_sources=False).encode(sample, VOCAB, PROTO)
    other = proxy.encode(Sample("x", np.zeros((64, 64, 3), dtype=np.uint8)), VOCAB, PROTO)
    with pytest.raises(BundleError, match="another image"):
        lean.extended(other)
    assert lean.extended(lean) is lean


def test_the_padding_is_geometry_kept_without_the_window_sources(proxy, sample):
    # ProxyCLIP pads each 32 x 32 window to 56: the dense logits are of the padded windows, whatever the sources
    from s2c2seg.predict import dense_logits

    full = proxy.encode(sample, VOCAB, PROTO)
    for cfg in ({"window_sources": False}, {"window_sources": False, "paper_sources": False}):
        b = _with(proxy, **cfg).encode(sample, VOCAB, PROTO)
        assert b.window_pad.tolist() == [12, 12, 12, 12] and b.window_local is None
        assert torch.equal(dense_logits(b), dense_logits(full))
