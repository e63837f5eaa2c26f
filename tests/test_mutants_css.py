"""Tests written for mutants that survived ``make mutation`` (docs/mutation.md): the paper CSS's batch contract,
its guards and error messages, and the release's Otsu threshold. Each names the mutation it catches.

References are hand values or a plain per-row loop, never the function under test on the same input.
"""
import math

import pytest
import torch

from s2c2seg import css
from s2c2seg.released_post import OTSU_BINS, otsu_threshold

G = torch.Generator().manual_seed(7)
ROWS = torch.rand(3, 6, generator=G, dtype=torch.float64) - 0.2  # some negatives: relu matters


def test_the_css_steps_work_row_by_row_over_the_last_dimension():
    """Catches ``sum(dim=-1)`` -> ``sum()`` / ``keepdim`` dropped and ``argmax(dim=-1)`` -> over everything in
    steps 1-4: each row of a (B, C) batch must equal that row alone (the docstrings' "over the last dimension")."""
    for f in (css.dist,):
        batch = f(ROWS)
        for i in range(ROWS.shape[0]):
            torch.testing.assert_close(batch[i], f(ROWS[i]), rtol=0, atol=1e-15)
    g, s = css.dist(ROWS), css.dist(ROWS.flip(-1))
    alpha = css.consistency_weight(g, s)
    assert alpha.shape == (3,)
    p = css.fused_distribution(g, s, alpha)
    h = css.conditional_entropy(p)
    for i in range(3):
        assert float(alpha[i]) == pytest.approx(float(css.consistency_weight(g[i], s[i])), abs=1e-15)
        torch.testing.assert_close(p[i], css.fused_distribution(g[i], s[i], alpha[i]), rtol=0, atol=1e-15)
        torch.testing.assert_close(h[i], css.conditional_entropy(p[i]), rtol=0, atol=1e-12)


def test_fused_distribution_renormalises():
    """Catches ``p / p.sum()`` -> ``p * p.sum()``: inputs that do not sum to 1 come out summing to 1."""
    g, s = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 3.0, 1.0], dtype=torch.float64)
    p = css.fused_distribution(g, s, torch.tensor(0.25, dtype=torch.float64))
    want = torch.tensor([0.5, 2.5, 1.0], dtype=torch.float64) / 4.0  # 0.25·g + 0.75·s = (0.5, 2.5, 1.0), sum 4
    torch.testing.assert_close(p, want, rtol=0, atol=1e-15)


def test_the_entropy_guard_at_a_residual_mass_below_1e_12():
    """Catches ``&`` -> ``|`` and ``1 - p`` -> ``1 + p`` / ``2 - p`` in the guard: a category holding all but
    1e-13 of the mass has H = 0, although its residual (two equal halves) alone would give H = 1."""
    p = torch.tensor([1.0 - 1e-13, 5e-14, 5e-14], dtype=torch.float64)
    h = css.conditional_entropy(p)
    assert float(h[0]) == 0.0
    # the two others: residual (1 - 1e-13, 5e-14) -> q nearly one-hot -> H close to 0 but the guard does not apply
    assert 0.0 <= float(h[1]) < 1e-10


def test_top_k_mask_at_k_zero_and_k_at_least_n():
    """Catches ``k <= 0`` -> ``k < 0`` (k = 0 would reach ``topk(x, 0).min()`` of nothing and raise)."""
    x = torch.tensor([0.3, 0.1, 0.2])
    assert css.top_k_mask(x, 0).tolist() == [False, False, False]
    assert css.top_k_mask(x, 3).tolist() == [True, True, True]
    assert css.top_k_mask(x, 5).tolist() == [True, True, True]


def test_oracle_categories_edges_and_messages():
    """Catches ``num_classes < 1`` -> ``<= 1`` / ``< 2`` (one class is valid), ``or`` -> ``and`` in the dtype check
    (a complex label map is refused), the out-of-range list (``|`` -> ``&``, ``< 0`` -> ``<= 0`` / ``< 1``,
    ``>= C`` -> ``> C``) and the argument name in the ``always_keep`` error."""
    assert css.oracle_categories(torch.zeros(2, 2, dtype=torch.long), 1).tolist() == [0]
    with pytest.raises(ValueError, match="integer class ids"):
        css.oracle_categories(torch.zeros(2, 2, dtype=torch.complex64), 3)
    lab = torch.tensor([[0, 4, -1], [5, 255, 2]])
    with pytest.raises(ValueError, match=r"outside \[0, 5\) ∪ \{255\}: \[-1, 5\]$"):
        css.oracle_categories(lab, 5)
    with pytest.raises(ValueError, match="^always_keep must hold category indices in"):
        css.oracle_categories(torch.zeros(2, 2, dtype=torch.long), 3, always_keep=7)


def test_otsu_edge_cases_by_hand():
    """Catches ``hist.sum() <= 0`` -> ``< 0`` (no value in [0, 1]: 0.0, not NaN's arg-max), ``<= 0`` -> ``<= 1``
    (one value: the first bin centre, as every between-class variance is 0), and ``mu[-1]`` -> ``mu[-2]`` (the total
    mean; they differ when the last bin holds values)."""
    assert otsu_threshold(torch.tensor([])) == 0.0
    assert otsu_threshold(torch.tensor([1.5, 2.0])) == 0.0  # outside the histogram's range
    assert otsu_threshold(torch.tensor([0.7])) == pytest.approx(0.5 / OTSU_BINS)
    # two 0.05s, five 0.3s, one value in the last bin (bin centres 0.0508, 0.2988, 0.9980). By hand, the
    # between-class variance ω0·ω1·(μ0 − μ1)² is 0.25·0.75·(0.0508 − 0.4153)² = 0.0249 after the 0.05s and
    # 0.875·0.125·(0.2279 − 0.9980)² = 0.0649 after the 0.3s: the threshold is the 0.3s' bin centre. A total mean
    # without the last bin moves it to the 0.05s' bin
    values = torch.tensor([0.05] * 2 + [0.3] * 5 + [0.999])
    assert otsu_threshold(values) == pytest.approx((math.floor(0.3 * OTSU_BINS) + 0.5) / OTSU_BINS)
