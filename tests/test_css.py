"""CSS: hand-computed cases for every step, a plain-Python reference, hypothesis properties, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2c2seg import css
from s2c2seg.css import (CSSConfig, conditional_entropy, confidence_score, consistency_weight, css_scores, dist,
                         fused_distribution, oracle_categories, select_categories, stage1_union, stage2_rerank,
                         subset_size, top_k_mask)

T64 = dict(dtype=torch.float64)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def t(values):
    return torch.tensor(values, **T64)


# ---------------------------------------------------------------------------------------------- reference


def ref_entropy(p, literal=False):
    """The O(C²) definition of step 4 in plain Python floats.

    ``q_j = p_j / Σ_{k≠i} p_k`` (exactly summed), equal to ``p_j / (1 − p_i)`` when p sums to 1; ``literal``
    divides by the rounded ``1 − p_i`` instead (only well conditioned away from ``p_i ≈ 1``).
    """
    c = len(p)
    out = []
    for i in range(c):
        r = 1 - p[i]
        rest = r if literal else math.fsum(p[j] for j in range(c) if j != i)
        if c <= 2 or r <= 1e-12 or rest <= 0:
            out.append(0.0)
            continue
        h = 0.0
        for j in range(c):
            if j != i and p[j] > 0:
                q = p[j] / rest
                h -= q * math.log(q)
        out.append(h / math.log(c - 1))
    return out


def ref_select(scores, tau, k_min, k_max, always_keep=(), scales=None):
    """Steps 6-8 in plain Python (sorted with key (-score, index)) on the given score lists.

    A span of at most 4 float64 ulps of the score's magnitude (``scales``, default max |s|) is rounding: 0.
    """
    c = len(scores[0])
    m = max(1, (round(tau * 10**6) * c) // 10**6)  # τ given with ≤ 6 decimals in these tests

    def top(vals, k, among):
        return set(sorted(among, key=lambda i: (-vals[i], i))[:k])

    init = set()
    for s in scores:
        init |= top(s, m, range(c))
    k = min(c, max(k_min, min(len(init), k_max)))
    pool = sorted(init) if len(init) >= k else list(range(c))
    final = [0.0] * c
    for n, s in enumerate(scores):
        lo, hi = min(s[i] for i in pool), max(s[i] for i in pool)
        scale = max(abs(lo), abs(hi)) if scales is None or scales[n] is None else scales[n]
        for i in pool:
            final[i] += (s[i] - lo) / (hi - lo) if hi - lo > 4 * 2.220446049250313e-16 * scale else 0.0
    return sorted(top(final, k, pool) | set(always_keep))


# ---------------------------------------------------------------------------------------------- hand cases


def test_dist_hand():
    torch.testing.assert_close(dist(t([1.0, -1.0, 3.0])), t([0.25, 0.0, 0.75]))
    torch.testing.assert_close(dist(t([-1.0, 0.0, -0.5, -2.0])), t([0.25] * 4))
    torch.testing.assert_close(dist(t([0.0])), t([1.0]))


def test_alpha_hand():
    g_bar, s_bar = t([0.25, 0.0, 0.75]), t([0.5, 0.5, 0.0])
    a = consistency_weight(g_bar, s_bar)
    assert a.ndim == 0
    assert float(a) == pytest.approx(1 / (1 + math.exp(0.375)), abs=1e-15)  # σ(0.125 − 0.5)
    assert float(consistency_weight(t([1.0, 0.0]), t([1.0, 0.0]))) == pytest.approx(1 / (1 + math.exp(-0.5)))


def test_fused_distribution_hand():
    g_bar, s_bar = t([0.25, 0.0, 0.75]), t([0.5, 0.5, 0.0])
    a = torch.tensor(0.4, **T64)
    torch.testing.assert_close(fused_distribution(g_bar, s_bar, a), t([0.4, 0.3, 0.3]))


def test_entropy_hand():
    h = conditional_entropy(t([0.5, 0.25, 0.25]))
    hb = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(2)  # binary entropy in bits
    torch.testing.assert_close(h, t([1.0, hb, hb]))
    # a one-hot p: the residual of the peak is 0 (H = 0), the others leave a one-hot residual (H = 0)
    torch.testing.assert_close(conditional_entropy(t([1.0, 0.0, 0.0, 0.0])), t([0.0] * 4))
    # uniform p: every residual is uniform over C − 1 categories, H = 1
    torch.testing.assert_close(conditional_entropy(t([0.2] * 5)), t([1.0] * 5))
    # C ≤ 2: H = 0 by definition
    torch.testing.assert_close(conditional_entropy(t([0.3, 0.7])), t([0.0, 0.0]))
    torch.testing.assert_close(conditional_entropy(t([1.0])), t([0.0]))


def test_confidence_hand():
    p, h = t([0.5, 0.25, 0.25]), t([1.0, 0.5, 0.0])
    torch.testing.assert_close(confidence_score(p, h), t([0.0, 0.125, 0.25]))


def test_css_scores_hand():
    g, s = t([1.0, -1.0, 3.0]), t([0.5, 0.5, 0.0])
    sc = css_scores(g, s)
    a = 1 / (1 + math.exp(0.375))
    p = [a * 0.25 + (1 - a) * 0.5, (1 - a) * 0.5, a * 0.75]
    h = ref_entropy(p)
    torch.testing.assert_close(sc.alpha, torch.tensor(a, **T64))
    torch.testing.assert_close(sc.p, t(p))
    torch.testing.assert_close(sc.entropy, t(h))
    torch.testing.assert_close(sc.conf, t([pi * (1 - hi) for pi, hi in zip(p, h)]))
    assert sc.glob is not None and torch.equal(sc.glob, g) and torch.equal(sc.spat, s)


def test_stage1_hand():
    # C = 10, τ = 0.3 → m = 3; the union of the top-3 of two scores
    a = t([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    b = t([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert torch.nonzero(stage1_union([a, b], 0.3)).reshape(-1).tolist() == [0, 1, 2, 7, 8, 9]
    # τ = 0.01 with C = 10 → ⌊0.1⌋ = 0 → m = 1
    assert torch.nonzero(stage1_union([a], 0.01)).reshape(-1).tolist() == [0]
    # ⌊τC⌋ is exact on the decimal τ: 0.29 · 100 = 29 (the float product is 28.999…)
    assert int(stage1_union([torch.arange(100.0)], 0.29).sum()) == 29
    assert [css.stage1_size(c, tau) for c, tau in [(10, 0.3), (10, 0.01), (100, 0.29), (21, 0.3), (7, 1.0)]] == \
        [3, 1, 29, 6, 7]


def test_top_k_ties_lower_index():
    x = t([1.0, 3.0, 3.0, 2.0, 3.0])
    assert torch.nonzero(top_k_mask(x, 2)).reshape(-1).tolist() == [1, 2]
    assert torch.nonzero(top_k_mask(x, 4)).reshape(-1).tolist() == [1, 2, 3, 4]
    assert torch.nonzero(top_k_mask(torch.zeros(6), 3)).reshape(-1).tolist() == [0, 1, 2]


def test_subset_size_hand():
    assert subset_size(3, 100, 6, 20) == 6
    assert subset_size(13, 100, 6, 20) == 13
    assert subset_size(50, 100, 6, 20) == 20
    assert subset_size(3, 4, 6, 20) == 4


def test_stage2_hand():
    # init = {0, 1, 2} but K = k_min = 4 > 3 → the pool is all categories
    a = t([5, 4, 3, 2, 1, 0])
    b = t([0, 0, 0, 0, 9, 0])
    init = torch.tensor([True, True, True, False, False, False])
    # normalised over all 6: a/5 + b/9 → [1, .8, .6, .4, 1.2, 0] → top-4 = {4, 0, 1, 2}
    assert torch.nonzero(stage2_rerank([a, b], init, 4, 20)).reshape(-1).tolist() == [0, 1, 2, 4]
    # init of 5 ≥ K = clamp(5, 2, 3) = 3 → pool = init {0,1,2,3,4}; normalised on the pool: a: (a−1)/4, b: b/9
    init = torch.tensor([True, True, True, True, True, False])
    # s_final on the pool = [1, .75, .5, .25, 1] → ties 0 and 4 (1.0 each) then 1
    assert torch.nonzero(stage2_rerank([a, b], init, 2, 3)).reshape(-1).tolist() == [0, 1, 4]
    # a constant score normalises to 0 and leaves the order to the others
    assert torch.nonzero(stage2_rerank([torch.ones(6, **T64), a], init, 2, 2)).reshape(-1).tolist() == [0, 1]


def test_select_hand():
    # C = 10 (< nothing), τ = 0.3 → m = 3; k_min = 2, k_max = 3
    g = t([0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.1, 0.1, 0.1, 0.7])
    s = t([0.0, 0.9, 0.1, 0.1, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0])
    sc = css_scores(g, s)
    expect = ref_select([sc.glob.tolist(), sc.spat.tolist(), sc.conf.tolist()], 0.3, 2, 3)
    got = select_categories(g, s, tau=0.3, k_min=2, k_max=3)
    assert got.tolist() == expect
    assert got.dtype == torch.long and len(got) == 3
    # always_keep adds class 7 (the lowest scores) on top of the K = 3
    got = select_categories(g, s, tau=0.3, k_min=2, k_max=3, always_keep=[7])
    assert got.tolist() == sorted(expect + [7])
    assert select_categories(g, s, tau=0.3, k_min=2, k_max=3, always_keep=7).tolist() == got.tolist()
    assert select_categories(g, s, tau=0.3, k_min=2, k_max=3, always_keep=[np.int64(7)]).tolist() == got.tolist()
    assert select_categories(g, s, tau=0.3, k_min=2, k_max=3, always_keep=torch.tensor([7])).tolist() == got.tolist()


def test_small_vocabularies_keep_all():
    for c in (1, 2, 3, 5):
        g = torch.linspace(-0.2, 0.3, c)
        s = torch.linspace(0.9, 0.1, c)
        assert select_categories(g, s).tolist() == list(range(c))  # C < k_min = 6


def test_negative_cosines_and_zero_spatial():
    g = -torch.rand(50, **T64)  # all negative → uniform ḡ
    s = torch.zeros(50, **T64)  # all zero → uniform s̄
    sc = css_scores(g, s)
    torch.testing.assert_close(sc.p, torch.full((50,), 1 / 50, **T64))
    torch.testing.assert_close(sc.entropy, torch.ones(50, **T64))
    sel = select_categories(g, s).tolist()
    # glob still ranks (raw cosines); spat and conf are constant: stage 1 takes their first m by index,
    # stage 2 normalises them to 0, so the glob order decides
    assert sel == ref_select([g.tolist(), s.tolist(), sc.conf.tolist()], 0.3, 6, 20)
    top_glob = sorted(range(50), key=lambda i: -g[i])[:15]
    assert set(sel) == set(sorted(set(top_glob) | set(range(15)), key=lambda i: -g[i])[:20])


@pytest.mark.parametrize("use", [("glob",), ("spat",), ("conf",), ("glob", "spat"), ("spat", "conf"),
                                 ("glob", "conf"), ("glob", "spat", "conf")])
def test_score_subsets_match_reference(use):
    gen = torch.Generator().manual_seed(len(use) * 7 + len(use[0]))
    g = torch.randn(171, generator=gen, **T64) * 0.05 + 0.2
    s = torch.rand(171, generator=gen, **T64) ** 3
    sc = css_scores(g, s)
    expect = ref_select([sc.get(u).tolist() for u in use], 0.3, 6, 20)
    assert select_categories(g, s, use=use).tolist() == expect


def test_float32_and_int_inputs():
    g = torch.randn(300) * 0.05 + 0.2
    s = torch.rand(300)
    sel32 = select_categories(g, s)
    sel64 = select_categories(g.double(), s.double())
    assert sel32.dtype == torch.long and 6 <= len(sel32) <= 20
    assert len(set(sel32.tolist()) ^ set(sel64.tolist())) <= 2  # rounding may swap a near-tie
    assert css_scores(g, s).p.dtype == torch.float32
    assert css_scores(g.double(), s).p.dtype == torch.float64  # promotion
    assert css_scores(torch.tensor([1, 2, 3]), torch.tensor([0, 1, 0])).p.is_floating_point()
    half = select_categories(g.half(), s.half())  # float16 scores (e.g. cached CLIPSeg means) work in float32
    assert half.tolist() == select_categories(g.half().float(), s.half().float()).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    g = torch.randn(2000, **T64) * 0.05 + 0.2
    s = torch.rand(2000, **T64)
    out = select_categories(g.cuda(), s.cuda(), always_keep=[0])
    assert out.device.type == "cuda"
    assert out.cpu().tolist() == select_categories(g, s, always_keep=[0]).tolist()


def test_config():
    cfg = CSSConfig()
    assert (cfg.tau, cfg.k_min, cfg.k_max, cfg.use, cfg.keep_background) == (0.3, 6, 20, ("glob", "spat", "conf"), True)
    g, s = torch.randn(100) * 0.1, torch.rand(100)
    assert cfg.select(g, s, always_keep=[0]).tolist() == select_categories(g, s, always_keep=[0]).tolist()
    assert CSSConfig(use=["glob"]).use == ("glob",)
    assert cfg.to_json()["use"] == ["glob", "spat", "conf"]
    with pytest.raises(ValueError, match="tau"):
        CSSConfig(tau=0)
    with pytest.raises(ValueError, match="use"):
        CSSConfig(use=())


# ---------------------------------------------------------------------------------------------- oracle


def test_oracle():
    lab = np.array([[0, 3, 3], [255, 5, 0]], dtype=np.uint8)
    assert oracle_categories(lab, 6).tolist() == [0, 3, 5]
    assert oracle_categories(torch.from_numpy(lab), 6, always_keep=[1]).tolist() == [0, 1, 3, 5]
    assert oracle_categories(np.full((2, 2), 255), 6).tolist() == []
    assert oracle_categories(np.array([[7, 1]]), 6, ignore_index=7).tolist() == [1]
    with pytest.raises(ValueError, match="label_map"):
        oracle_categories(np.array([[6, 1]]), 6)
    with pytest.raises(ValueError, match="label_map"):
        oracle_categories(np.array([[0.5]]), 6)
    with pytest.raises(ValueError, match="num_classes"):
        oracle_categories(lab, 0)
    with pytest.raises(ValueError, match="always_keep"):
        oracle_categories(lab, 6, always_keep=[6])


# ---------------------------------------------------------------------------------------------- properties

finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=64)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, width=64)


@st.composite
def score_pairs(draw, max_c=40):
    c = draw(st.integers(1, max_c))
    g = draw(st.lists(finite, min_size=c, max_size=c))
    s = draw(st.lists(st.one_of(unit, st.just(0.0)), min_size=c, max_size=c))
    return t(g), t(s)


@PROPS
@given(score_pairs())
def test_prop_ranges(pair):
    sc = css_scores(*pair)
    assert bool(((sc.entropy >= 0) & (sc.entropy <= 1)).all())
    assert bool(((sc.conf >= 0) & (sc.conf <= 1)).all())
    assert float(sc.p.sum()) == pytest.approx(1.0, abs=1e-12)
    assert 0 < float(sc.alpha) < 1


@PROPS
@given(st.lists(st.one_of(unit, st.just(0.0), st.floats(0, 1e-6)), min_size=1, max_size=60))
def test_prop_entropy_closed_form_equals_definition(raw):
    x = t(raw)
    p = dist(x)
    closed = conditional_entropy(p)
    torch.testing.assert_close(closed, t(ref_entropy(p.tolist())), atol=1e-9, rtol=0)


@PROPS
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=60))
def test_prop_entropy_closed_form_equals_literal_definition(raw):
    # away from p_i ≈ 1 the literal q_j = p_j / (1 − p_i) is well conditioned and must agree too
    p = dist(t(raw))
    torch.testing.assert_close(conditional_entropy(p), t(ref_entropy(p.tolist(), literal=True)), atol=1e-9, rtol=0)


@PROPS
@given(score_pairs(), st.sampled_from([0.05, 0.1, 0.3, 0.5, 1.0]), st.integers(1, 8), st.integers(0, 12),
       st.lists(st.integers(0, 39), max_size=3))
def test_prop_selection_bounds_and_keep(pair, tau, k_min, extra, keep):
    g, s = pair
    c = g.numel()
    keep = [k for k in keep if k < c]
    k_max = k_min + extra
    sel = select_categories(g, s, tau=tau, k_min=k_min, k_max=k_max, always_keep=keep).tolist()
    assert sel == sorted(set(sel))
    assert all(0 <= i < c for i in sel)
    assert set(keep) <= set(sel)
    core = select_categories(g, s, tau=tau, k_min=k_min, k_max=k_max).tolist()
    assert min(c, k_min) <= len(core) <= min(c, k_max)
    assert set(sel) == set(core) | set(keep)
    sc = css_scores(g, s)
    assert core == ref_select([sc.glob.tolist(), sc.spat.tolist(), sc.conf.tolist()], tau, k_min, k_max,
                              scales=[None, None, float(sc.p.max())])


@PROPS
@given(st.integers(0, 2**31 - 1), st.integers(2, 300), st.sampled_from([0.1, 0.3, 0.7]))
def test_prop_permutation_equivariance(seed, c, tau):
    # continuous random scores (no ties): permuting the categories permutes the selection
    rng = np.random.default_rng(seed)
    g = t(rng.normal(0.2, 0.05, c))
    s = t(rng.random(c) ** 2)
    perm = torch.as_tensor(rng.permutation(c))
    keep = [int(rng.integers(c))]
    sel = select_categories(g, s, tau=tau, always_keep=keep)
    sel_p = select_categories(g[perm], s[perm], tau=tau, always_keep=[int((perm == keep[0]).nonzero())])
    assert sorted(perm[sel_p].tolist()) == sel.tolist()


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, name", [
    (dict(s_glob=[], s_spat=[]), "s_glob"),
    (dict(s_glob=[0.1, 0.2], s_spat=[0.1]), "s_spat"),
    (dict(s_glob=[0.1, math.nan], s_spat=[0.1, 0.2]), "s_glob"),
    (dict(s_glob=[0.1, 0.2], s_spat=[math.inf, 0.2]), "s_spat"),
    (dict(s_glob=[[0.1, 0.2]], s_spat=[[0.1, 0.2]]), "s_glob"),
    (dict(tau=0.0), "tau"),
    (dict(tau=1.5), "tau"),
    (dict(tau=math.nan), "tau"),
    (dict(k_min=0), "k_min"),
    (dict(k_min=7, k_max=6), "k_max"),
    (dict(k_min=2.5), "k_min"),
    (dict(use=()), "use"),
    (dict(use=("glob", "glob")), "use"),
    (dict(use=("global",)), "use"),
    (dict(use="glob"), "use"),
    (dict(always_keep=[3]), "always_keep"),
    (dict(always_keep=[-1]), "always_keep"),
    (dict(always_keep=[0.5]), "always_keep"),
    (dict(always_keep=torch.tensor([1.0])), "always_keep"),
])
def test_bad_input_raises(kwargs, name):
    args = dict(s_glob=[0.1, 0.2, 0.3], s_spat=[0.5, 0.1, 0.2])
    args.update(kwargs)
    g, s = args.pop("s_glob"), args.pop("s_spat")
    with pytest.raises(ValueError, match=name):
        select_categories(torch.tensor(g, **T64), torch.tensor(s, **T64), **args)


def test_bad_input_css_scores():
    with pytest.raises(ValueError, match="s_glob"):
        css_scores(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="s_spat"):
        css_scores(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="name"):
        css_scores(torch.ones(3), torch.ones(3)).get("nope")


def test_every_equation_function_is_documented():
    for f in (dist, consistency_weight, fused_distribution, conditional_entropy, confidence_score,
              css.stage1_size, stage1_union, subset_size, css.min_max_normalise, stage2_rerank):
        assert f.__doc__ and "Step" in f.__doc__.splitlines()[0]


def test_stage2_pool_switch_reads_the_summary():
    from s2c2seg.css import CSSConfig, stage1_union

    # C = 10, tau = 0.1: each score contributes its top-1; the scores agree, so |C_init| = 1 < K = 6
    g = torch.linspace(0.5, 0.1, 10)
    s = torch.linspace(0.9, 0.0, 10)
    assert int(stage1_union([g, s], 0.1).sum()) < 6
    assert select_categories(g, s, tau=0.1).numel() == 6  # the issue: the pool grows to all C
    init_only = select_categories(g, s, tau=0.1, stage2_pool="init")
    assert init_only.numel() < 6 and set(init_only.tolist()) <= set(range(10))
    assert CSSConfig(tau=0.1, stage2_pool="init").select(g, s).tolist() == init_only.tolist()
    with pytest.raises(ValueError, match="stage2_pool"):
        CSSConfig(stage2_pool="sometimes")


def test_min_max_of_a_rounding_constant_is_zero():
    """Issue 11: s_conf of a uniform p spreads by ~2e-17 (rounding of 1 − H); it must count as constant."""
    c = 10
    g, s = t([0.5] * c), t([0.2] * c)  # uniform scores: uniform p, H = 1 up to rounding
    sc = css_scores(g, s)
    assert float(sc.conf.max() - sc.conf.min()) > 0  # the rounding spread the issue names
    pool = torch.ones(c, dtype=torch.bool)
    assert css.min_max_normalise(sc.conf, pool, sc.p.max()).tolist() == [0.0] * c
    # all three scores constant: the rerank is a tie and breaks towards the lower index
    assert select_categories(g, s, tau=0.3, k_min=2, k_max=3).tolist() == [0, 1, 2]
    # a real spread still normalises
    torch.testing.assert_close(css.min_max_normalise(t([0.0, 1e-9, 2e-9]), torch.ones(3, dtype=torch.bool)),
                               t([0.0, 0.5, 1.0]))
