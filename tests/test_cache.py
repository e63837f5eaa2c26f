"""The bundle cache: keys (with the code fingerprint), checksums, corrupt / foreign entries, atomic writes, modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import os
import shutil
import stat

from s2c2seg import cache as cache_mod
from s2c2seg.bundle import BundleError, FeatureBundle
from s2c2seg.cache import BUNDLE_SOURCES, BundleCache, bundle_key, code_fingerprint, fingerprint_sources
from s2c2seg.data import Protocol, Sample, Vocabulary


def _bundle(seed=0):
    g = torch.Generator().manual_seed(seed)
    return FeatureBundle(dense_logits=torch.randn(1, 3, 2, 2, generator=g), crop_boxes=torch.tensor([[0, 8, 0, 8]]),
                         resized_hw=torch.tensor([8, 8]), image_hw=torch.tensor([8, 8]), global_sim=torch.rand(3),
                         clipseg_mean=torch.rand(3), clipseg_maps=torch.rand(3, 4, 4).half(),
                         query_to_class=torch.tensor([0, 1, 1]))


def _sample(seed=0, sid="a"):
    return Sample(sid, np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8))


VOCAB = Vocabulary.from_names(["cat", ["dog", "puppy"]])
DESC = {"backend": "fake", "model": "x", "label": ""}


def test_key_covers_what_determines_a_bundle():
    k = bundle_key(DESC, Protocol(), VOCAB, _sample(), "voc21")
    assert len(k) == 64 and k == bundle_key(dict(DESC), Protocol(), VOCAB, _sample(), "voc21")
    changed = [
        bundle_key({**DESC, "model": "y"}, Protocol(), VOCAB, _sample(), "voc21"),
        bundle_key(DESC, Protocol(short_side=448), VOCAB, _sample(), "voc21"),
        bundle_key(DESC, Protocol(crop=0), VOCAB, _sample(), "voc21"),
        bundle_key(DESC, Protocol(vote=True), VOCAB, _sample(), "voc21"),
        bundle_key(DESC, Protocol(), Vocabulary.from_names(["cat", "dog"]), _sample(), "voc21"),
        bundle_key(DESC, Protocol(), VOCAB, _sample(1), "voc21"),
        bundle_key(DESC, Protocol(), VOCAB, _sample(sid="b"), "voc21"),
        bundle_key(DESC, Protocol(), VOCAB, _sample(), "voc20"),
    ]
    assert len({k, *changed}) == len(changed) + 1
    # post-processing knobs do not change a bundle, so they share the entry
    assert k == bundle_key(DESC, Protocol(prob_thd=0.3, area_thd=0.1, logit_scale=65.0), VOCAB, _sample(), "voc21")


def test_put_get_corrupt_and_foreign(tmp_path):
    cache = BundleCache(tmp_path)
    k1 = bundle_key(DESC, Protocol(), VOCAB, _sample(), "d")
    k2 = bundle_key(DESC, Protocol(), VOCAB, _sample(1), "d")
    b = _bundle()
    cache.put(k1, b)
    got = cache.get(k1)
    assert torch.equal(got.dense_logits, b.dense_logits) and torch.equal(got.clipseg_maps, b.clipseg_maps)
    assert got.meta["key"] == k1 and cache.stats.hits == 1
    assert not list(tmp_path.rglob("*.tmp"))
    # truncated entry: detected, deleted, reported as missing
    path = cache.path(k1)
    path.write_bytes(path.read_bytes()[:50])
    assert cache.get(k1) is None and cache.stats.corrupt == 1 and not path.exists()
    # another key's bundle under k2's name is never served
    cache.put(k1, _bundle())
    cache.path(k2).parent.mkdir(parents=True, exist_ok=True)
    cache.path(k2).write_bytes(cache.path(k1).read_bytes())
    assert cache.get(k2) is None and cache.stats.corrupt == 2
    with pytest.raises(BundleError):
        FeatureBundle.load(cache.path(k1), expected_key=k2)
    cache.put(k2, _bundle(5))
    assert len(cache) == 2 and cache.nbytes() > 0
    with pytest.raises(ValueError, match="key"):
        cache.path("../../etc")


# ---------------------------------------------------------------------------------------------- code fingerprint
def _copy_package(tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(cache_mod.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_fingerprint_follows_each_bundle_source_and_nothing_else(tmp_path):
    root = _copy_package(tmp_path)
    base = fingerprint_sources(root, BUNDLE_SOURCES)
    assert len(base) == 64 and base == code_fingerprint()  # a faithful copy has the installed code's print
    fix = b"# a fix\n"
    sim = "sim.py" if (root / "sim.py").is_file() else next((root / "sim").glob("*.py")).relative_to(root)
    for rel in ("models/clip.py", "models/baselines.py", "segmenter.py", "slide.py", "bundle.py",
                "data/datasets.py", str(sim)):
        f = root / rel
        old = f.read_bytes()
        f.write_bytes(old + fix)
        assert fingerprint_sources(root, BUNDLE_SOURCES) != base, rel
        f.write_bytes(old)
    (root / "tables.py").write_bytes(b"# downstream code does not make bundles\n")
    assert fingerprint_sources(root, BUNDLE_SOURCES) == base
    with pytest.raises(ValueError, match="BUNDLE_SOURCES"):
        fingerprint_sources(root, (*BUNDLE_SOURCES, "no_such_module"))


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The bundle cache fingerprints a copy of the package (restored, and re-fingerprinted, afterwards)."""
    root = _copy_package(tmp_path)
    monkeypatch.setattr(cache_mod, "PACKAGE_ROOT", root)
    code_fingerprint.cache_clear()
    yield root
    code_fingerprint.cache_clear()


def test_changing_a_baseline_invalidates_its_cached_bundles(tmp_path, package_copy):
    from s2c2seg.data import get_protocol, load_dataset, vocabulary
    from s2c2seg.data.fixtures import write_fixture
    from s2c2seg.evaluate import evaluate
    from fakes import FakeBackend

    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=2, seed=3)
    ds, vocab = load_dataset("voc21", root), vocabulary("voc21", "sclip")
    proto = get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16)

    def run():
        backend = FakeBackend()
        code_fingerprint.cache_clear()  # a new process
        rec = evaluate(ds, backend, vocab, proto, cache_dir=tmp_path / "cache", progress=False)
        return backend.calls, rec.cache

    assert run()[0] == 2
    calls, info = run()
    assert calls == 0 and info["hits"] == 2  # same code: served from the cache
    f = package_copy / "models" / "baselines.py"
    f.write_bytes(f.read_bytes() + b"# a fix to a baseline\n")
    calls, info = run()
    assert calls == 2 and info["misses"] == 2 and info["hits"] == 0  # the stale bundles are not served


# ---------------------------------------------------------------------------------------------- checksum, modes
def test_flipped_byte_inside_a_tensor_is_detected_and_recomputed(tmp_path):
    from s2c2seg.data import get_protocol, load_dataset, vocabulary
    from s2c2seg.data.fixtures import write_fixture
    from s2c2seg.evaluate import evaluate
    from fakes import FakeBackend

    root = write_fixture("voc21", tmp_path / "VOC2012", n_images=2, seed=4)
    ds, vocab = load_dataset("voc21", root), vocabulary("voc21", "sclip")
    proto = get_protocol("voc21", "sclip", short_side=64, crop=32, stride=16)
    first = evaluate(ds, FakeBackend(), vocab, proto, cache_dir=tmp_path / "cache", progress=False)
    entry = sorted((tmp_path / "cache").glob("*/*.safetensors"))[0]
    data = bytearray(entry.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + 5] ^= 0x01  # one bit of the first tensor's payload (the header stays valid)
    entry.write_bytes(bytes(data))
    backend = FakeBackend()
    again = evaluate(ds, backend, vocab, proto, cache_dir=tmp_path / "cache", progress=False)
    assert backend.calls == 1 and again.cache["corrupt"] == 1 and again.cache["hits"] == 1
    assert again.confusion == first.confusion  # the recomputed bundle, not the damaged one


def test_entries_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cache = BundleCache(tmp_path / "c")
        path = cache.put(bundle_key(DESC, Protocol(), VOCAB, _sample(), "d"), _bundle())
    finally:
        os.umask(old)
    assert stat.filemode(path.stat().st_mode) == "-rw-r--r--"
