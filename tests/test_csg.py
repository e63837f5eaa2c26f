"""CSG: hand-computed weights and fusion for every mode, expansion to the vocabulary, bad input."""
import math

import pytest
import torch

from s2c2seg.csg import FUSION_MODES, CSGConfig, category_weights, fuse
from s2c2seg.released_fusion import scatter_fill

T64 = dict(dtype=torch.float64)


def maps():
    # K = 2 categories on a 1×2 image: spatial means of s_glob are 0.2 and 0.1
    g = torch.tensor([[[0.1, 0.3]], [[0.0, 0.2]]], **T64)
    s = torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]], **T64)
    return g, s


def test_category_weights_hand():
    g, _ = maps()
    w = category_weights(g, mode="category_aware", temperature=0.1)
    e = math.exp(1.0)  # softmax([2, 1]) = [e, 1] / (e + 1)
    torch.testing.assert_close(w, torch.tensor([e / (e + 1), 1 / (e + 1)], **T64))
    torch.testing.assert_close(category_weights(g, mode="uniform"), torch.tensor([0.5, 0.5], **T64))
    torch.testing.assert_close(category_weights(g, mode="add"), torch.tensor([1.0, 1.0], **T64))
    torch.testing.assert_close(category_weights(g, mode="global_only"), torch.tensor([0.0, 0.0], **T64))
    # the default temperature 0.01 makes the weights nearly one-hot: softmax([20, 10])
    w = category_weights(g)
    torch.testing.assert_close(w, torch.softmax(torch.tensor([20.0, 10.0], **T64), 0))


def test_fuse_hand_every_mode():
    g, s = maps()
    e = math.exp(1.0)
    w = [e / (e + 1), 1 / (e + 1)]
    out = fuse(g, s, mode="category_aware", lam=0.6, temperature=0.1)
    expect = torch.stack([g[0] + 0.6 * w[0] * s[0], g[1] + 0.6 * w[1] * s[1]])
    torch.testing.assert_close(out, expect)
    assert float(out[0, 0, 0]) == pytest.approx(0.1 + 0.6 * e / (e + 1))
    torch.testing.assert_close(fuse(g, s, mode="uniform", lam=0.6), g + 0.3 * s)
    torch.testing.assert_close(fuse(g, s, mode="add", lam=0.6), g + 0.6 * s)
    torch.testing.assert_close(fuse(g, s, mode="global_only"), g)
    torch.testing.assert_close(fuse(g, s, mode="local_only"), s)
    assert fuse(g, s).shape == (2, 1, 2)


def test_fuse_batched_and_dtypes():
    g = torch.rand(3, 4, 5, 6)
    s = torch.rand(3, 4, 5, 6, dtype=torch.float16)
    out = fuse(g, s)
    assert out.shape == g.shape and out.dtype == torch.float32
    torch.testing.assert_close(out[1], fuse(g[1], s[1]))


def test_config():
    cfg = CSGConfig()
    assert (cfg.mode, cfg.lam, cfg.temperature) == ("category_aware", 0.6, 0.01)
    g, s = maps()
    torch.testing.assert_close(cfg.fuse(g, s), fuse(g, s))
    assert cfg.to_json() == {"mode": "category_aware", "lam": 0.6, "temperature": 0.01, "unit": "query"}
    for m in FUSION_MODES:
        CSGConfig(mode=m)
    with pytest.raises(ValueError, match="mode"):
        CSGConfig(mode="nope")
    with pytest.raises(ValueError, match="temperature"):
        CSGConfig(temperature=0)


def test_pipeline_prediction():
    # the selected subset decides the argmax: category 0 would win everywhere, but it is not selected
    full = torch.tensor([[[9.0, 9.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    subset = torch.tensor([1, 2])
    fused = fuse(full[subset], torch.zeros(2, 1, 2), mode="add")
    assert scatter_fill(fused, subset, 3, -math.inf).argmax(0).tolist() == [[1, 2]]


@pytest.mark.parametrize("call, name", [
    (lambda g, s: fuse(g, s, mode="bogus"), "mode"),
    (lambda g, s: fuse(g, s[:1]), "s_spat"),
    (lambda g, s: fuse(g[0], s[0]), "s_glob"),
    (lambda g, s: fuse(g * math.nan, s), "s_glob"),
    (lambda g, s: fuse(g, s * math.inf), "s_spat"),
    (lambda g, s: fuse(g, s, temperature=0.0), "temperature"),
    (lambda g, s: fuse(g, s, temperature=-1.0), "temperature"),
    (lambda g, s: fuse(g, s, lam=math.nan), "lam"),
    (lambda g, s: fuse(g[:0], s[:0]), "s_glob"),
    (lambda g, s: fuse(g.long(), s), "s_glob"),
    (lambda g, s: category_weights(g, mode="local_only"), "mode"),
])
def test_bad_input_raises(call, name):
    g, s = maps()
    with pytest.raises(ValueError, match=name):
        call(g, s)
