"""The bundle cache: keys, corrupt / foreign entries, atomic writes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2c2seg.bundle import BundleError, FeatureBundle
from s2c2seg.cache import BundleCache, bundle_key
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
    calls = []
    bundle, hit = cache.get_or_compute(k2, lambda: calls.append(1) or _bundle(5))
    assert not hit and calls == [1] and cache.get_or_compute(k2, lambda: 1 / 0)[1]
    assert len(cache) == 2 and cache.nbytes() > 0
    with pytest.raises(ValueError, match="key"):
        cache.path("../../etc")
