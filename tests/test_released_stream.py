"""The released reading streamed over chunks of queries (issue 21) equals the whole computation on small
vocabularies: labels equal, for ``released`` and ``released++``, with a budget that forces every chunked path.
SIMULATED bundles."""
from __future__ import annotations

import pytest
import torch
from capped import run_capped  # tests/ is on the path, as for fakes

from s2c2seg.budget import MemoryBudget
from s2c2seg.data.protocols import Protocol
from s2c2seg.predict import BundleView, ViewConfig, predict
from s2c2seg.presets import get_preset
from s2c2seg.released import released_view
from s2c2seg.sim import SimBackend, SimConfig, SimDataset

TINY = ViewConfig(budget=MemoryBudget(work_bytes=1, logits_bytes=1))
"""One aligned chunk of 64 rows at a time, the union's logits never whole."""
PROTO = Protocol(short_side=64, crop=32, stride=16)


def _pairs(vocab, n=2, seed=3):
    cfg = SimConfig(seed=seed)
    ds = SimDataset(vocab, cfg, n)
    backend = SimBackend(cfg)
    return [(s, backend.encode(s, ds.vocab, PROTO)) for s in ds]


@pytest.mark.parametrize("overrides", [{}, {"post.otsu_c": 0.5}, {"post.spatial.iterations": 2}, 
                                       {"score.global_score": "patch_mean"}, {"fusion.form": "paper"}])
@pytest.mark.parametrize("name", ["released", "released++"])
def test_streamed_labels_equal_the_whole_computation(name, overrides):
    """200 queries: chunks of 64 (four per window), every post-processing pass over class chunks."""
    proto = PROTO.replace(prob_thd=0.2)
    preset = get_preset(name, "custom", **overrides)
    for _, bundle in _pairs(200):
        whole, streamed = BundleView(bundle), BundleView(bundle, TINY)
        a = predict(whole, proto, "s2c2seg", preset=preset)
        b = predict(streamed, proto, "s2c2seg", preset=preset)
        rv = released_view(streamed)
        assert not released_view(whole).streams and rv.streams and rv.chunk == 64
        assert rv.image_streams(200)
        assert torch.equal(a.label_map, b.label_map), (name, overrides)
        assert a.meta["selected_per_window"] == b.meta["selected_per_window"]
        assert a.meta["admitted_per_window"] == b.meta["admitted_per_window"]


def test_streamed_rows_and_scores_are_the_whole_ones():
    """Window rows of any order, the window means and the fused rows: bit-equal to the whole (Q, ph, pw) maps."""
    _, bundle = _pairs(150, n=1)[0]
    whole, streamed = released_view(BundleView(bundle)), released_view(BundleView(bundle, TINY))
    idx = torch.tensor([149, 3, 70, 64, 63, 0])
    for which in ("dense", "local"):
        assert torch.equal(streamed.rows(1, idx, which), whole.rows(1, idx, which))
    assert streamed.rows(0, torch.zeros(0, dtype=torch.long), "dense").shape == (0, *bundle.window_size())
    for gs in ("cls", "patch_mean"):
        for x, y in zip(streamed.scores(2, gs), whole.scores(2, gs)):
            assert torch.equal(x, y)
    preset = get_preset("released", "custom")
    sel = torch.tensor([1, 5, 64, 100, 140])
    blocks = list(streamed.fused_blocks(0, sel, preset))
    assert len(blocks) == 3
    assert torch.equal(torch.cat(blocks), preset.fusion.fuse(whole.dense(0)[sel], whole.local(0)[sel]))


def test_logits_on_request_and_refused_beyond_the_budget():
    _, bundle = _pairs(100, n=1)[0]
    preset = get_preset("released", "custom")
    a = predict(BundleView(bundle), PROTO, "s2c2seg", preset=preset, return_logits=True)
    h, w = (int(v) for v in bundle.image_hw)
    roomy = ViewConfig(budget=MemoryBudget(work_bytes=1, logits_bytes=4 * 100 * h * w))
    b = predict(BundleView(bundle, roomy), PROTO, "s2c2seg", preset=preset, return_logits=True)
    assert torch.equal(a.label_map, b.label_map)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="return_logits.*logits_bytes"):
        predict(BundleView(bundle, TINY), PROTO, "s2c2seg", preset=preset, return_logits=True)


BIG = """  # after capped.CAP_PREAMBLE: 4 GiB writable
from s2c2seg.data.protocols import Protocol
from s2c2seg.predict import predict
from s2c2seg.sim import SimBackend, SimConfig, SimDataset
cfg = SimConfig(seed=0, image_size=(32, 48))
ds = SimDataset(20000, cfg, 1)
proto = Protocol(short_side=64, crop=32, stride=16)  # 15 windows of 56 x 56 (padded): O(Q·ph·pw) is 3.7 GB
sample = next(iter(ds))
bundle = SimBackend(cfg).encode(sample, ds.vocab, proto)  # the default options: window_storage="auto"
assert bundle.meta["storage"].startswith("compact-") and bundle.meta["storage"].endswith("-float16")
for preset in ("released", "paper"):
    pred = predict(bundle, proto, "s2c2seg", preset=preset)
    assert pred.label_map.shape == (32, 48)
print(bundle.meta["storage"], "OK")
"""


@pytest.mark.slow
def test_20000_classes_default_method_under_a_cap():
    """SIMULATED, 20,000 classes, the default options (window storage by the budget): released and paper."""
    out = run_capped(BIG)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("OK")
