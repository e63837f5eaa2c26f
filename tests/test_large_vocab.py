"""Large vocabularies in bounded memory (issue 13 item 3): 20,000 classes on the simulation under an address-space
cap, and the streamed / subset-only paths against the unchunked ones on small vocabularies. SIMULATED."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from s2c2seg.css import CSSConfig
from s2c2seg.data.protocols import Protocol
from s2c2seg.predict import BundleView, ViewConfig, class_scores, predict
from s2c2seg.sim import SimBackend, SimConfig, SimDataset

CAP_MB = 4096
"""Address-space cap of the 20,000-class run. The previous code needed two (C, C) float32 matrices (3.2 GB) for the
category structure alone and fails under it (checked: "Unable to allocate 1.49 GiB for an array with shape
(20000, 20000) and data type float32")."""

BIG = textwrap.dedent(f"""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, ({CAP_MB} * 2**20, {CAP_MB} * 2**20))
    from s2c2seg.data.protocols import Protocol
    from s2c2seg.predict import predict
    from s2c2seg.sim import SimBackend, SimConfig, SimDataset
    cfg = SimConfig(seed=0, released_sources=False, image_size=(32, 32))
    ds = SimDataset(20000, cfg, 1)
    backend = SimBackend(cfg)
    proto = Protocol(short_side=32, crop=0, stride=1)
    for sample in ds:
        bundle = backend.encode(sample, ds.vocab, proto)
        s2 = predict(bundle, proto, "s2c2seg")
        base = predict(bundle, proto, "baseline")
        present = set(sample.meta["present"])
        assert s2.subset.numel() == 20 and base.label_map.shape == (32, 32)
        print(sample.id, len(present & set(s2.subset.tolist())), "of", len(present), "present kept")
    print("OK")
""")


def test_20000_classes_encode_and_predict_under_a_cap():
    out = subprocess.run([sys.executable, "-c", BIG], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("OK")


def _bundles(vocab, protocol, n=3, seed=2, **dials):
    cfg = SimConfig(seed=seed, **dials)
    ds = SimDataset(vocab, cfg, n)
    backend = SimBackend(cfg)
    return ds, [(s, backend.encode(s, ds.vocab, protocol)) for s in ds]


STREAMED = ViewConfig(full_maps_bytes=0, query_chunk=5)
"""Forces the large-vocabulary path (subset-only maps, streamed all-query passes) on a small vocabulary."""


@pytest.mark.parametrize("proto", [Protocol(short_side=64, crop=32, stride=16),
                                   Protocol(short_side=64, crop=32, stride=16, prob_thd=0.3),
                                   Protocol(short_side=64, crop=0, stride=1, logit_scale=65.0, area_thd=0.1),
                                   Protocol(short_side=64, crop=32, stride=16, prob_thd=0.1, area_thd=0.3)])
@pytest.mark.parametrize("vocab", ["voc21", "context59"])  # VOC21 (sclip names) has synonyms on the background
def test_streamed_path_equals_the_unchunked_one(proto, vocab):
    ds, pairs = _bundles(vocab, proto)
    if vocab == "voc21":
        assert ds.vocab.query_to_class.numel() > ds.vocab.num_classes
    for sample, bundle in pairs:
        full, streamed = BundleView(bundle), BundleView(bundle, STREAMED)
        assert not full.streams and streamed.streams
        for method in ("baseline", "s2c2seg"):
            a = predict(full, proto, method, label=sample.label, background=ds.spec.background)
            b = predict(streamed, proto, method, label=sample.label, background=ds.spec.background)
            assert torch.equal(a.label_map, b.label_map), (method, sample.id)
        sa = full.class_scores("baseline", proto.logit_scale)[1]
        sb = streamed.class_scores("baseline", proto.logit_scale)[1]
        torch.testing.assert_close(sb, sa, rtol=1e-5, atol=1e-7)


def test_streamed_chunks_are_whole_classes():
    _, [(_, bundle)] = _bundles("voc21", Protocol(short_side=64, crop=0, stride=1), n=1)
    view = BundleView(bundle, ViewConfig(full_maps_bytes=0, query_chunk=4))
    chunks = view.class_chunks()
    q2c = bundle.query_to_class
    assert torch.equal(torch.cat(chunks), torch.arange(q2c.numel()))
    seen = [set(q2c[c].tolist()) for c in chunks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert all(len(c) <= 4 or len(s) == 1 for c, s in zip(chunks, seen))  # VOC21's background: one big class


def test_subset_maps_are_memoised_per_subset():
    _, [(_, bundle)] = _bundles("context59", Protocol(short_side=64, crop=0, stride=1), n=1)
    view = BundleView(bundle, ViewConfig(full_maps_bytes=0, subset_cache=2))
    a = view.subset_maps(torch.tensor([1, 2]))
    assert view.subset_maps(torch.tensor([1, 2]))[0] is a[0]
    view.subset_maps(torch.tensor([3]))
    view.subset_maps(torch.tensor([4]))
    assert view.subset_maps(torch.tensor([1, 2]))[0] is not a[0]  # dropped: least recently used
    assert torch.equal(view.subset_maps(torch.tensor([1, 2]))[0], a[0])


def test_sim_scores_select_present_classes_at_scale():
    """SIMULATED: the bundle's (Q,) scores alone drive CSS at 2,000 classes (nothing of size (Q, H, W))."""
    _, pairs = _bundles(2000, Protocol(short_side=64, crop=0, stride=1), n=2, released_sources=False)
    for sample, bundle in pairs:
        s_glob, s_spat = class_scores(bundle)
        subset = CSSConfig().select(s_glob, s_spat)
        assert set(sample.meta["present"]) <= set(subset.tolist())
