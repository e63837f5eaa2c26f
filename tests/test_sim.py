"""The simulation backend (SIMULATED): reproducibility, one dial per effect, and the ideal world.

Everything here runs on 64x64 scenes so that the file stays fast on 2 CPU cores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2c2seg.bundle import FeatureBundle
from s2c2seg.data.protocols import Protocol
from s2c2seg.data.sample import Sample
from s2c2seg.data.vocab import Vocabulary
from s2c2seg.metrics import ConfusionMatrix
from s2c2seg.predict import clipseg_maps, dense_logits, predict, synonym_max
from s2c2seg.sim import (EFFECT_DIALS, LABEL, CategoryStructure, SimBackend, SimConfig, SimDataset, load_matrix,
                         make_scene, similarity_from_embeddings)

SMALL = Protocol(short_side=64, crop=32, stride=16, logit_scale=40.0)
"""Sliding windows on the scene's own size (9 crops)."""
WHOLE = Protocol(short_side=64, crop=0, stride=1, logit_scale=40.0)


def _bundles(ds, cfg, protocol=WHOLE):
    be = SimBackend(cfg)
    return [(s, be.encode(s, ds.vocab, protocol)) for s in ds]


def _boundary(label: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` of a label change."""
    lab = torch.from_numpy(label)[None, None].float()
    mx = torch.nn.functional.max_pool2d(lab, 2 * width + 1, 1, width)
    mn = -torch.nn.functional.max_pool2d(-lab, 2 * width + 1, 1, width)
    return (mx != mn)[0, 0].numpy()


def _dense_argmax(bundle) -> np.ndarray:
    """The baseline's arg-max class, computed directly from the rebuilt dense logits."""
    cls = synonym_max(dense_logits(bundle), bundle.query_to_class, bundle.num_classes)
    return cls.argmax(0).numpy()


# ----------------------------------------------------------------------------------------------- reproducibility
def test_same_seed_same_scenes_and_bundles():
    cfg = SimConfig(seed=3)
    a, b = SimDataset("voc21", cfg, 3), SimDataset("voc21", SimConfig(seed=3), 3)
    assert a.ids == b.ids
    for (sa, ba), (sb, bb) in zip(_bundles(a, cfg, SMALL), _bundles(b, SimConfig(seed=3), SMALL)):
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.label, sb.label)
        for name, t in ba.tensors().items():
            assert torch.equal(t, bb.tensors()[name]), name
    other = make_scene("voc21", SimConfig(seed=4), 0)
    assert not np.array_equal(other.label, a.sample(0).label)
    assert not np.array_equal(a.sample(0).label, a.sample(1).label)


def test_scene_contents():
    cfg = SimConfig(n_present=3, min_area=0.05)
    for shape in ("ellipse", "rectangle", "voronoi"):
        for i in range(3):
            s = make_scene("voc21", cfg.replace(shape=shape), i)
            present = set(np.unique(s.label).tolist())
            assert present == set(s.meta["present"])
            assert 0 in present and len(present - {0}) == 3, (shape, present)
            areas = [(s.label == k).mean() for k in present]
            assert min(areas) >= 0.05
            assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
            assert s.meta["label"] == LABEL
    # no background for a dataset without one; a user list and a class count work too
    s = make_scene("context59", SimConfig(n_present=4), 0)
    assert len(np.unique(s.label)) == 4 and s.meta["background"] is None
    s = make_scene(["cat", ("dog", "puppy"), "grass"], SimConfig(n_present=2, background=2), 1)
    assert set(np.unique(s.label).tolist()) <= {0, 1, 2} and 2 in s.label
    assert make_scene(7, SimConfig(n_present=(1, 3)), 0).label.max() < 7


def test_dataset_interface():
    ds = SimDataset("voc21", SimConfig(), 5)
    assert len(ds) == 5 and len(ds.ids) == 5 and len(list(ds)) == 5
    assert ds.spec.num_classes == 21 and ds.spec.background == 0 and ds.spec.reduce_zero_label is False
    assert ds.sample(-1).id == ds.ids[-1]
    sub = ds.select([1, 3])
    assert sub.ids == [ds.ids[1], ds.ids[3]] and np.array_equal(sub.sample(1).label, ds.sample(3).label)
    assert SimDataset("ade20k", SimConfig(), 1).spec.background is None
    with pytest.raises(IndexError):
        ds.sample(5)


def test_bundle_shapes_geometry_and_ranges(tmp_path):
    ds = SimDataset("voc21", SimConfig(), 2)
    s = ds.sample(0)
    proto = Protocol(short_side=336, crop=224, stride=112)
    be = SimBackend()
    b = be.encode(s, ds.vocab, proto)
    q = len(ds.vocab.queries)
    assert b.dense_logits.shape == (4, q, 14, 14)  # 336 short side, crop 224 / stride 112, 16-px patches
    assert b.crop_boxes.tolist() == [[0, 224, 0, 224], [0, 224, 112, 336], [112, 336, 0, 224],
                                     [112, 336, 112, 336]]
    assert b.resized_hw.tolist() == [336, 336] and b.image_hw.tolist() == [64, 64]
    assert -0.1 <= float(b.dense_logits.min()) and float(b.dense_logits.max()) <= 0.4
    assert 0 <= float(b.clipseg_maps.min()) and float(b.clipseg_maps.max()) <= 1
    assert b.clipseg_maps.dtype == torch.float16 and b.clipseg_maps.shape == (q, 64, 64)
    assert torch.equal(b.query_to_class, ds.vocab.query_to_class)
    assert b.meta["label"] == LABEL and be.describe()["label"] == LABEL and be.describe()["backend"] == "sim"
    assert set(EFFECT_DIALS) <= set(be.describe()["config"])
    b.save(tmp_path / "b.safetensors")
    back = FeatureBundle.load(tmp_path / "b.safetensors")
    assert torch.equal(back.dense_logits, b.dense_logits) and back.meta["label"] == LABEL
    whole = SimBackend(whole_image=True).encode(s, ds.vocab, proto)
    assert whole.crop_boxes.tolist() == [[0, 336, 0, 336]] and whole.dense_logits.shape[-1] == 21
    big = SimBackend(clipseg_max_side=32).encode(s, ds.vocab, proto)
    assert big.clipseg_maps.shape[-2:] == (32, 32)


def test_synonyms_share_presence():
    vocab = Vocabulary.from_names([("cat", "kitty", "feline"), "dog", "grass"])
    s = make_scene(vocab, SimConfig(n_present=1, background=2), 0)
    b = SimBackend(SimConfig.ideal()).encode(s, vocab, WHOLE)
    present = set(np.unique(s.label).tolist())
    g = b.global_sim
    for cls_ in range(3):
        vals = g[b.query_to_class == cls_]
        assert torch.all(vals == vals[0])
        assert (vals[0] > 0.2) == (cls_ in present)


# ----------------------------------------------------------------------------------------------- one dial each
def _structure_pairs(ds, sample, kind):
    """(absent category, its present partner) pairs of ``kind`` ('similar' | 'cooccur') in a scene; for
    co-occurrence, categories also similar to a present one are left out."""
    st = ds.structure
    present = set(np.unique(sample.label).tolist())
    pairs = []
    for c in range(st.num_classes):
        if c in present:
            continue
        sim = [p for p in st.similar_to(c) if p in present]
        co = [p for p in st.cooccurring_with(c) if p in present]
        if kind == "similar" and sim:
            pairs.append((c, sim[0]))
        if kind == "cooccur" and co and not sim:
            pairs.append((c, co[0]))
    return pairs


def _unrelated_absent(ds, sample):
    st = ds.structure
    present = set(np.unique(sample.label).tolist())
    return [c for c in range(st.num_classes) if c not in present
            and not any(p in present for p in st.similar_to(c) + st.cooccurring_with(c))]


def _class_global(b):
    return synonym_max(b.global_sim, b.query_to_class, b.num_classes)


def _class_dense(b):
    return synonym_max(dense_logits(b), b.query_to_class, b.num_classes)


def _class_clipseg(b):
    return synonym_max(clipseg_maps(b), b.query_to_class, b.num_classes)


def m_image_noise(ds, cfg):
    clean = [make_scene("voc21", cfg.replace(image_noise=0), i).image.astype(float) for i in range(len(ds))]
    noisy = [make_scene("voc21", cfg, i).image.astype(float) for i in range(len(ds))]
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(noisy, clean)]))


def m_global_area_power(ds, cfg):
    out = []
    for s, b in _bundles(ds, cfg):
        fg = [k for k in np.unique(s.label).tolist() if k != 0]
        areas = {k: (s.label == k).mean() for k in fg}
        big, small = max(areas, key=areas.get), min(areas, key=areas.get)
        if areas[big] > areas[small]:
            g = _class_global(b)
            out.append(float(g[big] - g[small]))
    assert out
    return float(np.mean(out))


def _m_global_leak(kind):
    def m(ds, cfg):
        vals = [float(_class_global(b)[c]) for s, b in _bundles(ds, cfg) for c, _ in _structure_pairs(ds, s, kind)]
        assert vals, f"no absent {kind} category in the test scenes"
        return float(np.mean(vals))
    return m


def m_global_spread(ds, cfg):
    """Std of the global scores of absent, unrelated categories (0 in the ideal world)."""
    return float(np.mean([_class_global(b)[_unrelated_absent(ds, s)].std().item() for s, b in _bundles(ds, cfg)]))


def m_boundary_accuracy(ds, cfg):
    acc = []
    for s, b in _bundles(ds, cfg):
        edge = _boundary(s.label)
        acc.append((_dense_argmax(b)[edge] == s.label[edge]).mean())
    return float(np.mean(acc))


def _m_dense_leak(kind):
    def m(ds, cfg):
        vals = []
        for s, b in _bundles(ds, cfg):
            d = _class_dense(b)
            for c, partner in _structure_pairs(ds, s, kind):
                vals.append(float(d[c][torch.from_numpy(s.label == partner)].mean()))
        assert vals, f"no absent {kind} category in the test scenes"
        return float(np.mean(vals))
    return m


def m_dense_noise(ds, cfg):
    return float(np.mean([b.dense_logits[:, b.query_to_class == _unrelated_absent(ds, s)[0]].std().item()
                          for s, b in _bundles(ds, cfg)]))


def m_dense_class_spread(ds, cfg):
    """Std over absent unrelated categories of their mean dense cosine."""
    return float(np.mean([_class_dense(b)[_unrelated_absent(ds, s)].mean(dim=(1, 2)).std().item()
                          for s, b in _bundles(ds, cfg)]))


def m_clipseg_boundary_error(ds, cfg):
    err = []
    for s, b in _bundles(ds, cfg):
        edge = torch.from_numpy(_boundary(s.label, 1))
        maps = _class_clipseg(b)
        truth = torch.nn.functional.one_hot(torch.from_numpy(s.label), b.num_classes).permute(2, 0, 1).float()
        err.append(float((maps - truth).abs()[:, edge].mean()))
    return float(np.mean(err))


def m_clipseg_absent_mean(ds, cfg):
    vals = []
    for s, b in _bundles(ds, cfg):
        present = set(np.unique(s.label).tolist())
        mean = synonym_max(b.clipseg_mean, b.query_to_class, b.num_classes)
        vals += [float(mean[c]) for c in range(b.num_classes) if c not in present]
    return float(np.mean(vals))


def m_clipseg_present_response(ds, cfg):
    vals = []
    for s, b in _bundles(ds, cfg):
        maps = _class_clipseg(b)
        vals += [float(maps[k][torch.from_numpy(s.label == k)].mean()) for k in np.unique(s.label).tolist()]
    return float(np.mean(vals))


def m_clipseg_noise(ds, cfg):
    return float(np.mean([_class_clipseg(b)[_unrelated_absent(ds, s)].std().item() for s, b in _bundles(ds, cfg)]))


# dial -> (measurement, value to raise it to, expected direction of the measurement)
DIAL_EFFECTS = {
    "image_noise": (m_image_noise, 0.1, +1),
    "global_area_power": (m_global_area_power, 1.0, +1),
    "global_leak_similar": (_m_global_leak("similar"), 0.8, +1),
    "global_leak_cooccur": (_m_global_leak("cooccur"), 0.8, +1),
    "global_noise": (m_global_spread, 0.02, +1),
    "global_class_bias": (m_global_spread, 0.02, +1),
    "dense_blur": (m_boundary_accuracy, 0.08, -1),
    "dense_downsample": (m_boundary_accuracy, 16, -1),
    "dense_leak_similar": (_m_dense_leak("similar"), 0.8, +1),
    "dense_leak_cooccur": (_m_dense_leak("cooccur"), 0.8, +1),
    "dense_noise": (m_dense_noise, 0.03, +1),
    "dense_class_bias": (m_dense_class_spread, 0.03, +1),
    "clipseg_blur": (m_clipseg_boundary_error, 0.03, +1),
    "clipseg_false_positive": (m_clipseg_absent_mean, 1.0, +1),
    "clipseg_miss": (m_clipseg_present_response, 0.8, -1),
    "clipseg_noise": (m_clipseg_noise, 0.3, +1),
}


def test_every_dial_has_a_measured_effect():
    assert set(DIAL_EFFECTS) == set(EFFECT_DIALS)


@pytest.mark.parametrize("dial", EFFECT_DIALS)
def test_dial_moves_what_it_names(dial):
    measure, high, direction = DIAL_EFFECTS[dial]
    base = SimConfig.ideal(n_present=(2, 3), seed=1)
    ds = SimDataset("voc21", base, 3)
    low_value = measure(ds, base)
    high_value = measure(ds, base.replace(**{dial: high}))
    assert direction * (high_value - low_value) > 1e-4, (dial, low_value, high_value)
    # other dials at their defaults too: the effect survives in the default world
    default = SimConfig(n_present=(2, 3), seed=1)
    ds = SimDataset("voc21", default, 3)
    a, b = measure(ds, default.replace(**{dial: 0})), measure(ds, default.replace(**{dial: high}))
    assert direction * (b - a) > 0, (dial, a, b)


def test_class_bias_is_fixed_per_category():
    cfg = SimConfig.ideal(global_class_bias=0.02, dense_class_bias=0.02, n_present=2, seed=2)
    ds = SimDataset("voc21", cfg, 2)
    (s0, b0), (s1, b1) = _bundles(ds, cfg)
    both = sorted(set(_unrelated_absent(ds, s0)) & set(_unrelated_absent(ds, s1)))
    assert both
    assert torch.allclose(_class_global(b0)[both], _class_global(b1)[both])
    assert torch.allclose(_class_dense(b0)[both].mean(dim=(1, 2)), _class_dense(b1)[both].mean(dim=(1, 2)))


# ----------------------------------------------------------------------------------------------- the ideal world
@pytest.mark.parametrize("dataset,shape", [("voc21", "ellipse"), ("context59", "voronoi"), ("ade20k", "rectangle")])
def test_all_dials_zero_every_method_is_perfect(dataset, shape):
    cfg = SimConfig.ideal(shape=shape, n_present=(2, 5), seed=5)
    ds = SimDataset(dataset, cfg, 4)
    c, bg = ds.spec.num_classes, ds.spec.background
    cms = {m: ConfusionMatrix(c) for m in ("baseline", "s2c2seg", "oracle")}
    for s, b in _bundles(ds, cfg, SMALL):
        assert np.array_equal(_dense_argmax(b), s.label)
        for method, cm in cms.items():
            preset = "paper" if method == "s2c2seg" else None  # the paper reading, whose upper bound is the oracle
            pred = predict(b, SMALL, method, label=s.label, background=bg, preset=preset)
            cm.update(pred.label_map, s.label)
            if method == "s2c2seg":
                present = set(np.unique(s.label).tolist())
                assert present <= set(pred.subset.tolist())  # CSS recall 1
    for method, cm in cms.items():
        assert cm.miou() == pytest.approx(1.0), method


def test_default_world_shows_the_papers_ordering():
    """SIMULATED: with the default dials, baseline < S2C2Seg (the paper reading) < oracle (its upper bound: what
    the world was built to show)."""
    cfg = SimConfig(seed=0)
    ds = SimDataset("context59", cfg, 6)
    proto = Protocol(short_side=128, crop=64, stride=32, logit_scale=40.0)
    cms = {m: ConfusionMatrix(59) for m in ("baseline", "s2c2seg", "oracle")}
    for s, b in _bundles(ds, cfg, proto):
        for method, cm in cms.items():
            preset = "paper" if method == "s2c2seg" else None
            cm.update(predict(b, proto, method, label=s.label, preset=preset).label_map, s.label)
    miou = {m: cm.miou() for m, cm in cms.items()}
    assert miou["baseline"] < miou["s2c2seg"] < miou["oracle"], miou


# ----------------------------------------------------------------------------------------------- structure
def test_generated_structure():
    st = CategoryStructure.generate(21, seed=0, similar_group=3, cooccur_group=5, background=0)
    for m in (st.similar, st.cooccur):
        assert torch.equal(m, m.T) and torch.all(m.diagonal() == 0)
    assert st.similar[0].sum() == 0 and st.cooccur[0].sum() == 0  # the background is in no group
    assert max(len(st.similar_to(c)) for c in range(21)) <= 2
    assert torch.equal(st.similar, CategoryStructure.generate(21, seed=0, background=0).similar)


def test_user_similarity_matrix(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 16))
    emb[1] = emb[0] + 0.05 * rng.standard_normal(16)  # classes 0 and 1 are near-synonyms
    q2c = torch.tensor([0, 1, 2, 3, 4, 5])
    sim = similarity_from_embeddings(emb, q2c)
    assert sim.shape == (6, 6) and np.allclose(np.diag(sim), 1)
    path = tmp_path / "sim.npy"
    np.save(path, sim)
    assert np.allclose(load_matrix(path), sim)
    np.savetxt(tmp_path / "sim.csv", sim, delimiter=",")
    assert np.allclose(load_matrix(tmp_path / "sim.csv"), sim)
    cfg = SimConfig.ideal(similarity=str(path), similar_neighbours=1, global_leak_similar=0.8, n_present=1,
                          background=None)
    names = ["cat", "kitten", "car", "tree", "sky", "road"]
    st = CategoryStructure.for_config(6, cfg)
    assert st.similar_to(0)[0] == 1 and st.similar_to(1)[0] == 0
    be = SimBackend(cfg)
    # a scene with only "cat": "kitten" gets the leaked global score, the others do not
    label = np.zeros((64, 64), np.int64)
    s = Sample("cat_only", np.zeros((64, 64, 3), np.uint8), label)
    b = be.encode(s, names, WHOLE)
    g = b.global_sim
    assert g[1] > g[2:].max() + 0.05
    with pytest.raises(ValueError, match="similarity"):
        SimBackend(cfg).encode(make_scene(21, SimConfig(background=None), 0), 21, WHOLE)


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ValueError, match="dense_blur"):
        SimConfig(dense_blur=-1)
    with pytest.raises(ValueError, match="n_present"):
        SimConfig(n_present=(3, 2))
    with pytest.raises(ValueError, match="shape"):
        SimConfig(shape="star")
    with pytest.raises(ValueError, match="unknown SimConfig"):
        SimConfig().replace(blur=1)
    with pytest.raises(ValueError, match="unknown SimConfig"):
        SimBackend(blur=1)
    s = make_scene("voc21", SimConfig(), 0)
    with pytest.raises(ValueError, match="ground truth"):
        SimBackend().encode(Sample("x", s.image), "voc21", WHOLE)
    with pytest.raises(ValueError, match="not a class"):
        SimBackend().encode(s, ["a", "b"], WHOLE)
    with pytest.raises(ValueError, match="background"):
        make_scene(["a", "b"], SimConfig(background=5), 0)
    with pytest.raises(ValueError, match="min_area"):
        make_scene("voc21", SimConfig(n_present=12, min_area=0.2), 0)
    with pytest.raises(ValueError, match="protocol"):
        SimBackend().encode(s, "voc21", {"crop": 0})


def test_evaluation_runs_on_it_unchanged(tmp_path):
    """The evaluation loop, its bundle cache and its record take the backend as any other (SIMULATED)."""
    from s2c2seg.evaluate import evaluate
    from s2c2seg.factories import build_backend

    cfg = SimConfig.ideal(n_present=(2, 3), seed=7)
    ds = SimDataset("voc21", cfg, 3)
    backend = build_backend("sim", cfg=cfg)
    # the paper reading: in the ideal world a class's synonyms score alike, so the released presets' per-query
    # top-⌊τQ⌋ fills with VOC's 26 background synonyms (a property of that selection unit, not of this loop)
    first = evaluate(ds, backend, ds.vocab, SMALL, method="s2c2seg", preset="paper", cache_dir=tmp_path / "cache",
                     progress=False)
    again = evaluate(ds, backend, ds.vocab, SMALL, method="s2c2seg", preset="paper", cache_dir=tmp_path / "cache",
                     progress=False)
    assert first.miou == pytest.approx(1.0) and again.miou == pytest.approx(1.0)
    assert first.label == LABEL and first.backend["backend"] == "sim"
    assert again.cache is not None and first.confusion == again.confusion
    assert again.cache["hits"] == 3 and again.cache["misses"] == 0
    assert first.extra["subset"]["gt_class_recall"] == 1.0


# ----------------------------------------------------------------------------------------------- released sources
def test_released_per_window_sources_follow_the_world():
    """The contract's per-window fields: the CLIPSeg world cut per window, the global world per window, the
    release's padding to a multiple of 56, the CLIP-normalised network input (SIMULATED)."""
    cfg = SimConfig.ideal(n_present=2, seed=4)
    ds = SimDataset("voc21", cfg, 1)
    s = ds.sample(0)
    proto = Protocol(short_side=64, crop=32, stride=16)
    b = SimBackend(cfg).encode(s, ds.vocab, proto)
    q = len(ds.vocab.queries)
    assert b.window_pad.tolist() == [12, 12, 12, 12]                      # 32 -> 56, centred
    assert b.window_local.shape == (9, q, 56, 56) and b.window_local.dtype == torch.float32
    assert b.window_global.shape == (9, q) and b.input_image.shape == (3, 64, 64)
    assert b.dense_logits.shape[-2:] == (56, 56) and b.meta["storage"] == "exact"
    label = torch.from_numpy(s.label)
    q2c = b.query_to_class
    for n, (y1, y2, x1, x2) in enumerate(b.crop_boxes.tolist()):
        win = label[y1:y2, x1:x2]
        local = b.window_local[n][:, 12:44, 12:44]
        truth = (win[None] == q2c[:, None, None])
        assert torch.equal(local > 0.5, truth)                               # ideal CLIPSeg: the one-hot
        assert (b.window_local[n][:, :12] < 0.5).all()                       # the padding shows nothing
        area = torch.bincount(win.reshape(-1), minlength=21).float() / win.numel()
        presence = (area > 0).float()                                        # ideal: area power 0, no leaks
        expected = cfg.global_floor + cfg.global_span * presence[q2c]
        torch.testing.assert_close(b.window_global[n], expected)
    mean = torch.tensor([122.771, 116.746, 104.094]).view(3, 1, 1)
    std = torch.tensor([68.501, 66.632, 70.323]).view(3, 1, 1)
    img = torch.from_numpy(s.image).permute(2, 0, 1).float()
    torch.testing.assert_close(b.input_image, (img - mean) / std)
    compact = SimBackend(cfg, window_storage="compact-float16").encode(s, ds.vocab, proto)
    assert compact.window_local.dtype == torch.float16 and compact.meta["storage"] == "compact-float16"
    torch.testing.assert_close(compact.window_local.float(), b.window_local, atol=1e-3, rtol=0)
    off = SimBackend(cfg, released_sources=False).encode(s, ds.vocab, proto)
    assert off.window_local is None and off.window_global is None and "storage" not in off.meta
    whole = SimBackend(cfg).encode(s, ds.vocab, WHOLE)
    assert whole.window_pad.tolist() == [0, 0, 0, 0] and whole.window_local.shape == (1, q, 64, 64)


def test_sparse_structure_is_the_dense_one():
    st = CategoryStructure.generate(300, seed=3, background=0)
    dense = st.similar
    for c in (1, 7, 150):
        row = dense[c]
        idx = torch.nonzero(row > 0).flatten()
        assert st.similar_to(c) == idx[torch.argsort(-row[idx], stable=True)].tolist()
    presence = torch.rand(300)
    ref = (st.cooccur * presence[None]).amax(dim=1)
    assert torch.equal(st.cooccur_neighbours.max_weighted(presence), ref)
    assert st.similar_neighbours.index.shape[1] <= 2 and st.cooccur_neighbours.index.shape[1] <= 4
