"""The released window pipeline: each step against hand-computed values, and the whole pipeline against an
independent float64 re-derivation written from the facts file (/work/shared/reference/s2c2seg_released.md).

The re-derivation below (``reference_*``) uses plain Python / numpy loops and torch's own ``F.interpolate`` and
never calls ``s2c2seg``'s released functions; the window output, window average and resize run in float32 as
the release does (the −1e9 fill swallows small logits there; float64 would not).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2c2seg import csg, css, refine, released_fusion, released_post, released_scores, spatial_refine
from s2c2seg.bundle import FeatureBundle
from s2c2seg.data.protocols import get_protocol
from s2c2seg.predict import BundleView, predict
from s2c2seg.presets import get_preset
from s2c2seg.slide import slide_boxes

Q2C = torch.tensor([0, 0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 9])  # 10 classes, synonyms on 0, 3 and 9


def make_bundle(seed=0, q2c=Q2C, resized=(30, 44), hw=(25, 37), crop=24, stride=12, pad=(2, 2, 1, 3)):
    g = torch.Generator().manual_seed(seed)
    q = q2c.numel()
    boxes = slide_boxes(*resized, crop, stride)
    n = boxes.shape[0]
    ph, pw = crop + pad[0] + pad[1], crop + pad[2] + pad[3]
    return FeatureBundle(
        dense_logits=0.2 + 0.1 * torch.randn(n, q, 4, 4, generator=g), crop_boxes=boxes,
        resized_hw=torch.tensor(resized), image_hw=torch.tensor(hw), global_sim=torch.rand(q, generator=g),
        clipseg_mean=torch.rand(q, generator=g), clipseg_maps=torch.rand(q, 5, 5, generator=g).half(),
        query_to_class=q2c, window_local=torch.rand(n, q, ph, pw, generator=g) ** 3,
        window_global=0.2 + 0.05 * torch.randn(n, q, generator=g), window_pad=torch.tensor(pad),
        input_image=torch.randn(3, *resized, generator=g))


# ------------------------------------------------------------------------------------------------ hand-computed steps
def test_positive_l1_hand():
    torch.testing.assert_close(released_scores.positive_l1(torch.tensor([1.0, -1.0, 3.0])),
                               torch.tensor([1 / (4 + 1e-6), 0.0, 3 / (4 + 1e-6)]))
    torch.testing.assert_close(released_scores.positive_l1(torch.tensor([-1.0, 0.0, -2.0, -0.5])),
                               torch.full((4,), 0.25))


def test_bhattacharyya_alpha_hand():
    a = released_scores.bhattacharyya_weight(torch.tensor([0.25, 0.0, 0.75]), torch.tensor([0.5, 0.5, 0.0]))
    assert float(a) == pytest.approx(math.sqrt(0.125), abs=1e-7)
    half = torch.tensor([0.5, 0.5])
    assert float(released_scores.bhattacharyya_weight(half, half)) == 1.0  # clamped


def test_released_residual_entropy_hand():
    h = released_scores.released_residual_entropy(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    # others of p_0: (0.5, 0.5) -> entropy log 2 / log 2 = 1; of p_1: (2/3, 1/3) -> 0.918296 / 1
    two_thirds = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(2)
    torch.testing.assert_close(h, torch.tensor([1.0, two_thirds, two_thirds], dtype=torch.float64))
    assert released_scores.released_residual_entropy(torch.tensor([0.7, 0.3])).tolist() == [0.0, 0.0]  # Q < 3
    assert float(released_scores.released_residual_entropy(torch.tensor([1.0, 0.0, 0.0]))[0]) == 0.0  # p_i >= 1


def test_candidate_size_is_the_float_product():
    assert released_scores.candidate_size(46, 0.4) == 18 and released_scores.candidate_size(46, 0.3) == 13
    assert released_scores.candidate_size(100, 0.29) == 28  # int(28.999999999999996): the release; the paper's m is 29
    assert css.stage1_size(100, 0.29) == 29
    assert released_scores.candidate_size(3, 0.1) == 1 and released_scores.candidate_size(5, 1.0) == 5


def test_candidate_pool_and_select_hand():
    g, s, c = torch.tensor([3.0, 1.0, 2.0, 0.0]), torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 0.5, 0.2])
    assert released_scores.candidate_pool((g, s, c), 1).tolist() == [0, 3]
    assert released_scores.candidate_pool((g, s, c), 2).tolist() == [0, 2, 3]
    cfg = released_scores.SelectConfig(tau=0.5, k_min=1, k_max=None)
    assert released_scores.released_select(g, s, c, cfg, (1, 1, 1)).tolist() == [0, 2, 3]  # k_max None: the whole union
    # composite over the pool [0, 2, 3]: mm(g) = (1, 2/3, 0), mm(s) = (0, 2/3, 1), mm(c) = (1, 3/8, 0) (eps 1e-6)
    comp = released_scores.composite_score(g, s, c, (0.65, 0.15, 0.2), torch.tensor([0, 2, 3]))
    expect = [0.65 * 3 / (3 + 1e-6) + 0.2 * 0.8 / (0.8 + 1e-6),
              0.65 * 2 / (3 + 1e-6) + 0.15 * 2 / (3 + 1e-6) + 0.2 * 0.3 / (0.8 + 1e-6),
              0.15 * 3 / (3 + 1e-6)]
    torch.testing.assert_close(comp, torch.tensor(expect))
    cut = released_scores.SelectConfig(tau=0.5, k_min=1, k_max=2)
    assert released_scores.released_select(g, s, c, cut, (0.65, 0.15, 0.2)).tolist() == [0, 2]
    few = released_scores.SelectConfig(tau=0.5, k_min=4, k_max=2 + 2)  # |pool| = 3 < k_min: the pool is kept
    assert released_scores.released_select(g, s, c, few, (0.65, 0.15, 0.2)).tolist() == [0, 2, 3]


def test_rerank_weights():
    assert released_scores.SelectConfig().weights(0.15) == pytest.approx((0.65, 0.15, 0.2))
    assert released_scores.SelectConfig(rerank="unweighted").weights(0.15) == (1.0, 1.0, 1.0)
    assert released_scores.SelectConfig(rerank=(0.5, 0.3, 0.2)).weights(0.15) == (0.5, 0.3, 0.2)


def test_convex_fusion_hand():
    G = torch.tensor([[[1.0]], [[0.0]]])
    L = torch.tensor([[[0.5]], [[1.0]]])
    w0 = math.exp(1) / (math.exp(1) + 1)
    expect = [0.93 * (0.85 + 0.075) + 0.07 * 0.5 * w0, 0.93 * 0.15 + 0.07 * (1 - w0)]
    out = released_fusion.convex_fuse(G, L, released_fusion.FusionConfig(lam=0.15, guide_weight=0.07))
    torch.testing.assert_close(out.flatten(), torch.tensor(expect))
    paper = released_fusion.FusionConfig(form="paper").fuse(G, L)
    torch.testing.assert_close(paper, csg.fuse(G, L))  # the paper's S_glob + 0.6·w·S_spat


def test_scatter_fill_and_the_float32_swallow():
    out = released_fusion.scatter_fill(torch.ones(1, 1, 2), torch.tensor([1]), 3, -1e9)
    assert out[:, 0].tolist() == [[-1e9, -1e9], [1.0, 1.0], [-1e9, -1e9]]
    # a query selected in one of two overlapping windows: (x + -1e9)/2 == -5e8 in float32 for |x| < 32
    x = torch.tensor([0.3, -7.0, 31.0])
    assert ((x + torch.tensor(-1e9)) / 2).tolist() == [-5e8] * 3


def test_score_gap_and_set_iou_hand():
    ranked = torch.tensor([1.0, 0.9, 0.8, 0.3, 0.2, 0.1])
    assert refine.score_gap_k(ranked, 2, 5) == 3  # gaps from position 1: .1, .5, .1, .1 -> 2 + 1
    assert refine.score_gap_k(ranked, 6, 9) == 6  # empty range: min(k_min, n)
    assert refine.set_iou(torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4])) == 0.5
    assert refine.set_iou(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 1.0


def test_feedback_and_residual_hand():
    winner = torch.tensor([[0, 1], [1, 1]])
    high = torch.tensor([[True, True], [False, True]])
    counts = refine.high_confidence_counts(winner, high, 2)
    assert counts.tolist() == [1.0, 2.0]
    sig = refine.feedback_signal(counts, 3, torch.tensor([2, 5]), 6)
    torch.testing.assert_close(sig, torch.tensor([0, 0, 1 / (3 + 1e-6), 0, 0, 2 / (3 + 1e-6)]))
    local = torch.arange(12.0).view(3, 2, 2)
    f = refine.residual_evidence(local, ~high, torch.tensor([0, 2]))
    assert f.tolist() == [2.0, 10.0]  # only pixel (1, 0) is low-confidence
    assert refine.expansion_pool(torch.tensor([0.1, 0.9, 0.5, 0.7]), torch.tensor([1]), 2).tolist() == [3, 2]


def test_refinement_round_admits_a_winning_outsider():
    """Two selected rows fight everywhere (low confidence); outsider 2 has strong CLIPSeg evidence on the left."""
    q, h, w = 4, 2, 4
    dense = torch.zeros(q, h, w)
    local = torch.zeros(q, h, w)
    local[2, :, :2] = 1.0  # outsider 2 is present on the left half
    g, s = torch.tensor([0.3, 0.3, 0.1, 0.0]), torch.tensor([0.1, 0.1, 0.0, 0.0])
    c = torch.tensor([0.2, 0.2, 0.0, 0.0])
    cfg = refine.RefineConfig(adaptive_admit=False)
    fusion = released_fusion.FusionConfig(lam=0.5, guide_weight=0.0)
    fuse_rows = lambda idx: fusion.fuse(dense[idx], local[idx])  # noqa: E731
    sel = torch.tensor([0, 1])
    out, fused, log = refine.refine_window(sel, fuse_rows(sel), (g, s, c), local, fuse_rows, cfg, (1.0, 1.0, 1.0),
                                           k_min=1, logit_scale=40.0)
    # every pixel is a 0.5/0.5 tie (low); the pool is {2, 3} (composite) ∪ {2, 3} (residual: f = 0.5, 0);
    # quota min(2, 3) = 2: both admitted provisionally; the trial keeps 2 (wins the left half), drops 3
    assert out.tolist() == [0, 1, 2] and log.admitted == (2,) and log.rounds_run == 1
    assert log.set_iou == pytest.approx(2 / 3)
    torch.testing.assert_close(fused, fuse_rows(out))


def test_otsu_and_background_hand():
    values = torch.tensor([0.1] * 50 + [0.9] * 50)
    assert released_post.otsu_threshold(values) == pytest.approx(25.5 / 256)  # first centre of the flat optimum
    assert released_post.background_threshold(values, 0.2, 0.5) == 0.2  # clamped to [prob_thd, C]
    assert released_post.background_threshold(torch.tensor([0.1] * 5 + [0.99] * 5), 0.0, 0.5) == 0.0  # off at 0
    assert released_post.background_threshold(values, 0.05, None) == 0.05


def test_spatial_refine_hand():
    """A flat image: every affinity is 1/48 (no difference anywhere but at the zero border, scaled by the mean)."""
    image = torch.zeros(3, 3, 3)
    maps = torch.ones(1, 3, 3)
    cfg = spatial_refine.SpatialRefineConfig(iterations=1, dilations=(1,))
    out = spatial_refine.spatial_refine(image, maps, cfg)
    # uniform weights 1/8 over the 8 neighbours, zero outside: centre 8/8, edge 5/8, corner 3/8
    torch.testing.assert_close(out[0], torch.tensor([[3, 5, 3], [5, 8, 5], [3, 5, 3]]) / 8.0)
    cap = spatial_refine.SpatialRefineConfig(iterations=1, max_side=2)
    assert spatial_refine.spatial_refine(torch.randn(3, 4, 6), torch.rand(2, 4, 6), cap).shape == (2, 4, 6)
    off = spatial_refine.SpatialRefineConfig()
    assert spatial_refine.spatial_refine(image, maps, off) is maps


# ------------------------------------------------------------------------------------------------ the re-derivation
def reference_scores(D, L, cls, p):
    """One window's (g, s) per query, float64 (facts file section 2, steps 1-2)."""
    g = D.mean(axis=(1, 2)) if p["global"] == "patch_mean" else cls.copy()
    return g, L.mean(axis=(1, 2))


def reference_confidence(g, s):
    """c = p·(1 − H) with the Bhattacharyya α over the entries of g, s (steps 3-5)."""
    q = len(g)

    def pos_l1(x):
        r = np.maximum(x, 0)
        return r / (r.sum() + 1e-6) if r.sum() > 0 else np.full(q, 1.0 / q)

    gb, sb = pos_l1(g), pos_l1(s)
    alpha = min(max(sum(math.sqrt(gb[i] * sb[i]) for i in range(q)), 0.0), 1.0)
    pr = alpha * gb + (1 - alpha) * sb
    conf = np.zeros(q)
    for i in range(q):
        m = max(1 - pr[i], 1e-8)
        rest = sum(pr[j] * math.log(max(pr[j], 1e-8)) for j in range(q) if j != i)
        hn = (-rest / m + math.log(m)) / math.log(q - 1)
        hn = 0.0 if pr[i] >= 1 else min(max(hn, 0.0), 1.0)
        conf[i] = pr[i] * (1 - hn)
    return conf


def reference_composite(scores, among, wts):
    """Weighted sum of the min-max normalised scores over ``among`` (eps 1e-6), as a dict index -> value."""
    out = {}
    for wt, x in zip(wts, scores):
        lo, hi = min(x[i] for i in among), max(x[i] for i in among)
        for i in among:
            out[i] = out.get(i, 0.0) + wt * (x[i] - lo) / (hi - lo + 1e-6)
    return out


def reference_select(g, s, conf, p, q2c=None):
    """Step 7: the union of the three top-int(τ·n) sets, cut to k_max by composite when set; on classes
    (``q2c`` given) the synonym max of g and s first, then every query of a chosen class."""
    if q2c is not None:
        classes = sorted(set(q2c))
        gc = np.array([max(g[j] for j in range(len(g)) if q2c[j] == c) for c in classes])
        sc = np.array([max(s[j] for j in range(len(s)) if q2c[j] == c) for c in classes])
        chosen = reference_select(gc, sc, reference_confidence(gc, sc), p)
        return [j for j in range(len(g)) if classes.index(q2c[j]) in chosen]
    q = len(g)
    n = max(1, min(int(p["tau"] * q), q))

    def top(x, k):
        return sorted(range(len(x)), key=lambda i: -x[i])[:k]

    pool = sorted(set(top(g, n)) | set(top(s, n)) | set(top(conf, n)))
    k_max = p.get("k_max")
    if k_max is not None and len(pool) >= p["k_min"] and len(pool) > k_max:
        comp = reference_composite((g, s, conf), pool, p["wts"])
        pool = sorted(sorted(pool, key=lambda i: -comp[i])[:k_max])
    return pool


def reference_window(D, L, cls, p, selected=None):
    """One window, float64, from the facts file section 2 (D, L: (Q, h, w) numpy; p: the preset's values);
    ``selected`` given (the image scope): the window's own scores serve the refinement only."""
    q = D.shape[0]
    g, s = reference_scores(D, L, cls, p)
    conf = reference_confidence(g, s)
    if selected is None:
        selected = reference_select(g, s, conf, p)
    lam, gw = p["lam"], 0.07
    wts = p["wts"]
    beta, rbeta, cap, theta = p.get("beta", 0.5), p.get("residual_beta", 0.5), 3, 0.8

    def fuse(rows):
        means = np.array([D[r].mean() for r in rows])
        w = np.exp(means - means.max())
        w /= w.sum()
        return np.stack([(1 - gw) * ((1 - lam) * D[r] + lam * L[r]) + gw * L[r] * w[k] for k, r in enumerate(rows)])

    def winner_conf(fused):
        z = 40 * fused
        e = np.exp(z - z.max(axis=0))
        pr_ = e / e.sum(axis=0)
        return pr_.max(axis=0), pr_.argmax(axis=0)

    fused = fuse(selected)
    vocab = reference_composite((g, s, conf), list(range(q)), wts)
    for _ in range(p["t_max"]):
        confmap, win = winner_conf(fused)
        high = confmap > theta
        k = len(selected)
        gg = g.copy()
        nh = int(high.sum())
        if nh > 0:
            for pos, r in enumerate(selected):
                gg[r] += beta * (win[high] == pos).sum() / (nh + 1e-6)
        outsiders = [i for i in range(q) if i not in selected]
        pool = set(sorted(outsiders, key=lambda i: -vocab[i])[:k])
        low = ~high
        if rbeta > 0:
            f = {i: (L[i][low].mean() if low.any() else 0.0) for i in outsiders}
            for i in outsiders:
                gg[i] += rbeta * f[i]
            pool |= set(sorted(outsiders, key=lambda i: -f[i])[:min(cap, len(outsiders))])
        if not pool:
            break
        cand = sorted(set(selected) | pool)
        comp = reference_composite((gg, s, conf), cand, wts)
        ranked = sorted(comp.values(), reverse=True)
        upper = len(cand) - 1
        if upper < p["k_min"]:
            quota = 0
        else:
            gaps = [ranked[j - 1] - ranked[j] for j in range(p["k_min"], upper + 1)]
            quota = max(0, p["k_min"] + int(np.argmax(gaps)) - k)
        quota = min(quota, cap)
        if quota <= 0:
            break
        prov = sorted([i for i in cand if i not in selected], key=lambda i: -comp[i])[:quota]
        upd = sorted(set(selected) | set(prov))
        _, win2 = winner_conf(fuse(upd))
        kept = [i for i in prov if low.any() and (win2[low] == upd.index(i)).sum() > 0]
        if not kept:
            break
        upd = sorted(set(selected) | set(kept))
        iou = len(selected) / len(upd)
        selected = upd
        fused = fuse(selected)
        if iou >= 1 - p.get("delta", 0.1):  # the stop rule: the set barely changed
            break
    return selected, fused


def reference_predict(b, p, prob_thd, otsu_c, sr):
    q = b.num_queries
    ph, pw = b.window_size()
    top, _, left, _ = b.window_pad.tolist()
    rh, rw = b.resized_hw.tolist()
    total = torch.zeros(q, rh, rw)
    count = torch.zeros(1, rh, rw)
    windows = []
    for n in range(len(b.crop_boxes)):
        D = F.interpolate(b.dense_logits[n:n + 1].double(), size=(ph, pw), mode="bilinear", align_corners=False)[0]
        windows.append((D.numpy(), b.window_local[n].double().numpy(), b.window_global[n].double().numpy()))
    q2c_unit = b.query_to_class.tolist() if p.get("unit") == "class" else None
    image_sel = None
    if p.get("scope") == "image":  # one selection from the scores averaged over the windows
        pairs = [reference_scores(D, L, cls, p) for D, L, cls in windows]
        g = np.mean([a for a, _ in pairs], axis=0)
        s = np.mean([c for _, c in pairs], axis=0)
        image_sel = reference_select(g, s, reference_confidence(g, s), p, q2c_unit)
    for (D, L, cls), (y1, y2, x1, x2) in zip(windows, b.crop_boxes.tolist()):
        sel = image_sel
        if sel is None and q2c_unit is not None:
            g, s = reference_scores(D, L, cls, p)
            sel = reference_select(g, s, reference_confidence(g, s), p, q2c_unit)
        sel, fused = reference_window(D, L, cls, p, sel)
        out = torch.full((q, ph, pw), -1e9, dtype=torch.float32)
        out[sel] = torch.from_numpy(fused).float()
        total[:, y1:y2, x1:x2] += out[:, top:top + y2 - y1, left:left + x2 - x1]
        count[:, y1:y2, x1:x2] += 1
    logits = F.interpolate((total / count)[None], size=tuple(b.image_hw.tolist()), mode="bilinear",
                           align_corners=False)[0]
    x = logits.double().numpy()
    q2c = b.query_to_class.tolist()
    ncls = max(q2c) + 1

    def class_probs(scale):
        z = scale * x
        e = np.exp(z - z.max(axis=0))
        pr = e / e.sum(axis=0)
        return np.stack([pr[[j for j in range(q) if q2c[j] == c]].max(axis=0) for c in range(ncls)])

    def refine_maps(maps):
        img = F.interpolate(b.input_image[None].double(), size=maps.shape[-2:], mode="bilinear",
                            align_corners=False)[0].numpy()
        H, W = maps.shape[-2:]
        offs = [(dy * d, dx * d) for d in (1, 2, 4, 8, 12, 24) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                if (dy, dx) != (0, 0)]

        def shifted(a, dy, dx):  # a[..., y + dy, x + dx], zero outside
            out = np.zeros_like(a)
            ys, yd = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
            xs, xd = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
            out[..., yd, xd] = a[..., ys, xs]
            return out

        diff = np.stack([np.abs(shifted(img, dy, dx) - img).mean(axis=0) for dy, dx in offs])
        z = -diff / (diff.mean() + 1e-8)
        aff = np.exp(z - z.max(axis=0))
        aff /= aff.sum(axis=0)
        for _ in range(3):
            maps = sum(shifted(maps, dy, dx) * aff[k] for k, (dy, dx) in enumerate(offs))
        return maps

    probs = class_probs(40.0)
    if sr:
        label = refine_maps(class_probs(100.0)).argmax(axis=0)
        if prob_thd > 0:
            probs = refine_maps(probs)
    else:
        label = probs.argmax(axis=0)
    maxp = probs.max(axis=0)
    thd = prob_thd
    if otsu_c is not None and prob_thd > 0:
        hist = np.zeros(256)
        for v in maxp.ravel():
            hist[min(int(v * 256), 255)] += 1
        pr = hist / hist.sum()
        centres = (np.arange(256) + 0.5) / 256
        om, mu = np.cumsum(pr), np.cumsum(pr * centres)
        den = om * (1 - om)
        var = np.where(den > 0, (mu[-1] * om - mu) ** 2 / np.maximum(den, 1e-12), 0.0)
        thd = min(max(centres[int(np.argmax(var))], prob_thd), otsu_c)
    label[maxp < thd] = 0
    return logits, torch.from_numpy(label)


CASES = [("released", "voc21", dict(global_="patch_mean", t_max=0), 0.2, None, False),
         ("released", "context59", dict(global_="patch_mean", t_max=0), 0.0, None, False),
         ("released++", "voc21", dict(global_="cls", t_max=1), 0.2, 0.5, True),
         ("released++", "voc20", dict(global_="cls", t_max=1), 0.0, None, True)]


@pytest.mark.parametrize("name, dataset, run, prob_thd, otsu_c, sr", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_pipeline_equals_float64_rederivation(name, dataset, run, prob_thd, otsu_c, sr, seed):
    b = make_bundle(seed)
    preset = get_preset(name, dataset, **{"select.k_min": 3})
    proto = get_protocol(dataset, "proxyclip")
    assert proto.prob_thd == prob_thd and preset.post.otsu_c == otsu_c
    p = {"global": run["global_"], "t_max": run["t_max"], "tau": preset.select.tau, "lam": preset.fusion.lam,
         "k_min": 3, "wts": (1 - preset.fusion.lam - 0.2, preset.fusion.lam, 0.2)}
    logits, label = reference_predict(b, p, prob_thd, otsu_c, sr)
    pred = predict(b, proto, "s2c2seg", preset=preset, return_logits=True)
    assert pred.logits.shape == (b.num_queries, *b.image_hw.tolist()) and pred.logits.dtype == torch.float32
    torch.testing.assert_close(pred.logits, logits, atol=1e-5, rtol=1e-6)
    assert torch.equal(pred.label_map, label)
    if run["t_max"]:
        assert any(pred.meta["admitted_per_window"]) or seed  # the refinement admits somewhere on seed 0


def test_labels_without_logits_and_the_view_memo():
    b = make_bundle(2)
    proto = get_protocol("voc21", "proxyclip")
    view = BundleView(b)
    for name in ("released", "released++"):
        preset = get_preset(name, "voc21")
        plain = predict(b, proto, "s2c2seg", preset=preset)
        assert plain.logits is None
        memo = predict(view, proto, "s2c2seg", preset=preset)
        full = predict(view, proto, "s2c2seg", preset=preset, return_logits=True)
        assert torch.equal(plain.label_map, memo.label_map) and torch.equal(memo.label_map, full.label_map)
    # a sweep point that changes τ must not reuse the old selection
    a = predict(view, proto, "s2c2seg", preset=get_preset("released", "voc21", **{"select.tau": 0.1}))
    fresh = predict(b, proto, "s2c2seg", preset=get_preset("released", "voc21", **{"select.tau": 0.1}))
    assert a.meta["selected_per_window"] == fresh.meta["selected_per_window"]
    assert torch.equal(a.label_map, fresh.label_map)


def test_switches_mix_the_readings():
    b = make_bundle(3)
    proto = get_protocol("voc21", "proxyclip")
    base = get_preset("released", "voc21")
    runs = {}
    for key, value in [("score.alpha", "sigmoid"), ("select.rerank", "unweighted"), ("select.k_max", 8),
                       ("fusion.form", "paper"), ("select.unit", "class"), ("select.scope", "image"),
                       ("score.global_score", "cls"), ("fusion.fill", -math.inf)]:
        runs[key] = predict(b, proto, "s2c2seg", preset=base.override({key: value}), return_logits=True)
    assert all(len(s) <= 8 for s in runs["select.k_max"].meta["selected_per_window"])
    image_sel = runs["select.scope"].meta["selected_per_window"]
    assert all(s == image_sel[0] for s in image_sel)
    for sel in runs["select.unit"].meta["selected_per_window"]:  # whole classes: every synonym or none
        classes = set(Q2C[sel].tolist())
        assert sel == [i for i in range(Q2C.numel()) if Q2C[i].item() in classes]
    assert torch.isinf(runs["fusion.fill"].logits).any()
    with pytest.raises(ValueError, match="unit"):
        predict(b, proto, "s2c2seg", preset=get_preset("released++", "voc21", **{"select.unit": "class"}))


def test_missing_sources_raise():
    b = make_bundle(0)
    b.window_global = None
    proto = get_protocol("voc21", "proxyclip")
    with pytest.raises(ValueError, match="window_global"):
        predict(b, proto, "s2c2seg", preset=get_preset("released++", "voc21"))
    b.window_local = None
    with pytest.raises(ValueError, match="window_local"):
        predict(b, proto, "s2c2seg", preset=get_preset("released", "voc21"))


def test_memo_never_shares_a_wrong_entry():
    """Consecutive sweep points on one view equal fresh predictions, whichever section changes."""
    b = make_bundle(4)
    proto = get_protocol("voc21", "proxyclip")
    view = BundleView(b)
    for key, value in [("post.otsu_c", 0.3), ("post.spatial.iterations", 1), ("fusion.lam", 0.3),
                       ("refine.theta_high", 0.6), ("fusion.guide_weight", 0.0), ("score.global_score", "patch_mean")]:
        preset = get_preset("released++", "voc21", **{key: value})
        memo = predict(view, proto, "s2c2seg", preset=preset, return_logits=True)
        fresh = predict(b, proto, "s2c2seg", preset=preset, return_logits=True)
        assert torch.equal(memo.label_map, fresh.label_map), key
        assert torch.equal(memo.logits, fresh.logits), key


EXTENDED = [  # (overrides of released++ on VOC21, the re-derivation's extra values, the setting it must differ from)
    ({"select.unit": "class", "refine.t_max": 0}, {"unit": "class", "t_max": 0}, {"refine.t_max": 0}),
    ({"select.scope": "image", "refine.t_max": 0}, {"scope": "image", "t_max": 0}, {"refine.t_max": 0}),
    ({"select.scope": "image"}, {"scope": "image"}, {}),
    ({"select.scope": "image", "select.unit": "class", "refine.t_max": 0}, {"scope": "image", "unit": "class",
                                                                           "t_max": 0},
     {"select.unit": "class", "refine.t_max": 0}),
    ({"refine.t_max": 2}, {"t_max": 2}, {}),
    ({"refine.t_max": 2, "refine.delta": 0.9}, {"t_max": 2, "delta": 0.9}, {"refine.t_max": 2}),
    ({"refine.residual_beta": 0.0}, {"residual_beta": 0.0}, {}),
    ({"refine.t_max": 2, "refine.residual_beta": 0.0}, {"t_max": 2, "residual_beta": 0.0}, {"refine.t_max": 2}),
    ({"select.k_max": 5}, {"k_max": 5}, {}),
    ({"select.k_max": 4, "select.rerank": (0.1, 0.1, 0.8), "refine.t_max": 0}, {"k_max": 4, "t_max": 0,
                                                                               "wts": (0.1, 0.1, 0.8)},
     {"select.k_max": 4, "refine.t_max": 0}),
]
SEEDS = (0, 2, 5)


def extended_bundle(seed):
    """K ≠ H ≠ W everywhere: 14 queries, 28 × 29 padded windows, a 4 × 5 grid, a 25 × 37 image."""
    b = make_bundle(seed, pad=(2, 2, 1, 4))
    g = torch.Generator().manual_seed(100 + seed)
    b.dense_logits = 0.2 + 0.1 * torch.randn(b.dense_logits.shape[0], b.num_queries, 4, 5, generator=g)
    return b


@pytest.mark.parametrize("overrides, extra, _", EXTENDED, ids=[",".join(o) for o, _, _ in EXTENDED])
@pytest.mark.parametrize("seed", SEEDS)
def test_switched_pipeline_equals_float64_rederivation(overrides, extra, _, seed):
    """The class unit, the image scope, several rounds (and their stop rule), no residual evidence and the k_max
    rerank against the same re-derivation: protects each switch's branch, not just the default path."""
    b = extended_bundle(seed)
    preset = get_preset("released++", "voc21", **{"select.k_min": 3, **overrides})
    proto = get_protocol("voc21", "proxyclip")
    lam = preset.fusion.lam
    p = {"global": "cls", "t_max": 1, "tau": preset.select.tau, "lam": lam, "k_min": 3,
         "wts": (1 - lam - 0.2, lam, 0.2), **extra}
    logits, label = reference_predict(b, p, proto.prob_thd, preset.post.otsu_c, True)
    pred = predict(b, proto, "s2c2seg", preset=preset, return_logits=True)
    torch.testing.assert_close(pred.logits, logits, atol=1e-5, rtol=1e-6)
    assert torch.equal(pred.label_map, label)


@pytest.mark.parametrize("overrides, _, other", EXTENDED, ids=[",".join(o) for o, _, _ in EXTENDED])
def test_each_switch_changes_the_prediction_somewhere(overrides, _, other):
    """Each extended case differs from its neighbouring setting on some seed (else its re-derivation above could
    not tell that branch from the neighbour's)."""
    proto = get_protocol("voc21", "proxyclip")
    a_preset = get_preset("released++", "voc21", **{"select.k_min": 3, **overrides})
    b_preset = get_preset("released++", "voc21", **{"select.k_min": 3, **other})
    differs = False
    for seed in SEEDS:
        b = extended_bundle(seed)
        a = predict(b, proto, "s2c2seg", preset=a_preset, return_logits=True)
        c = predict(b, proto, "s2c2seg", preset=b_preset, return_logits=True)
        differs |= not torch.equal(a.logits, c.logits)
    assert differs
