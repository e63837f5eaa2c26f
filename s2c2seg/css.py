"""Category Subset Selection (CSS, S2C2Seg section 3.1): prune a vocabulary of C categories to K per image.

The steps are numbered as in the project's issue 2 (the paper's equations):

1. ``dist(x) = relu(x) / sum(relu(x))`` (uniform ``1/C`` when the sum is 0);
2. ``ḡ = dist(s_glob)``, ``s̄ = dist(s_spat)``, ``α = sigmoid(⟨ḡ, s̄⟩ − 0.5)``;
3. ``p = α·ḡ + (1 − α)·s̄``, renormalised;
4. ``H_i = −(1/log(C−1)) Σ_{j≠i} q_j log q_j`` with ``q_j = p_j / (1 − p_i)`` (closed form, O(C));
5. ``s_conf = p·(1 − H)``;
6. stage 1: union of the top-``max(1, ⌊τC⌋)`` indices of every enabled score;
7. stage 2: ``K = min(C, clamp(|C_init|, k_min, k_max))``, min-max normalised score sum, top-K;
8. ``always_keep`` indices are added whatever their scores.

Every function works on one image: 1-D tensors of length C, on any device, float32 or float64.
Ties always break towards the lower category index.

The authors' released code computes each step differently: its versions are in ``released_scores.py``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import torch

from .primitives import is_int as _is_int
from .primitives import replace_fields

__all__ = [
    "SCORE_NAMES",
    "STAGE2_POOLS",
    "CSSConfig",
    "CSSScores",
    "dist",
    "consistency_weight",
    "fused_distribution",
    "conditional_entropy",
    "confidence_score",
    "stage1_size",
    "stage1_union",
    "stage2_candidates",
    "final_score",
    "stage2_rerank",
    "top_k_mask",
    "subset_size",
    "min_max_normalise",
    "css_scores",
    "rounding_scale",
    "select_categories",
    "oracle_categories",
]

SCORE_NAMES = ("glob", "spat", "conf")
"""The three CSS scores, in the order the paper lists them; ``use`` is any non-empty subset."""

ALPHA_OFFSET = 0.5
"""The constant subtracted from the inner product inside the sigmoid of step 2 (part of the equation)."""

RESIDUAL_EPS = 1e-12
"""Step 4: ``H_i = 0`` when the residual mass ``1 − p_i`` is at most this (the issue's guard)."""

ROUNDING_ULPS = 4
"""Step 7: a min-max span of at most this many units in the last place of the score's magnitude is rounding."""


@dataclass(frozen=True)
class CSSConfig:
    """CSS hyper-parameters (paper defaults: τ = 0.3, K ∈ [6, 20], all three scores)."""

    tau: float = 0.3
    """Stage-1 retention ratio τ ∈ (0, 1]: the top ``max(1, ⌊τC⌋)`` of each score enter the union."""
    k_min: int = 6
    """Lower bound on the subset size K (a vocabulary smaller than this is kept whole)."""
    k_max: int = 20
    """Upper bound on the subset size K."""
    use: tuple[str, ...] = SCORE_NAMES
    """Which scores take part in both stages (the score-subset ablation); non-empty."""
    keep_background: bool = True
    """Read by the caller: when the dataset has a background class, pass its index as ``always_keep``."""
    stage2_pool: str = "all"
    """Stage 2's pool when ``|C_init| < K``: ``"all"`` C categories (the issue's reading, default) or ``"init"``
    (the paper summary's reading: rank ``C_init`` only, so fewer than K may be kept)."""

    def __post_init__(self):
        object.__setattr__(self, "use", tuple(_check_use(self.use)))
        _check_hyper(self.tau, self.k_min, self.k_max)
        _check_pool(self.stage2_pool)

    def select(self, s_glob, s_spat, always_keep: Iterable[int] | int = ()) -> torch.Tensor:
        """``select_categories`` with this configuration."""
        return select_categories(s_glob, s_spat, self, always_keep=always_keep)

    def replace(self, **fields) -> CSSConfig:
        """A copy with ``fields`` changed (unknown names raise ``ValueError``)."""
        return replace_fields(self, fields)

    def to_json(self) -> dict:
        d = asdict(self)
        d["use"] = list(self.use)
        return d


@dataclass(frozen=True)
class CSSScores:
    """The per-category CSS quantities of one image (all (C,) except the scalar ``alpha``)."""

    glob: torch.Tensor
    """The raw global score ``s_glob`` (as given)."""
    spat: torch.Tensor
    """The raw spatial score ``s_spat`` (as given)."""
    conf: torch.Tensor
    """The consistency score ``s_conf = p·(1 − H)`` ∈ [0, 1]."""
    p: torch.Tensor
    """The fused distribution ``p`` (sums to 1)."""
    entropy: torch.Tensor
    """The normalised conditional entropy ``H`` ∈ [0, 1]."""
    alpha: torch.Tensor
    """The 0-d fusion weight ``α`` ∈ (0, 1)."""

    def get(self, name: str) -> torch.Tensor:
        """The score called ``name`` (one of ``SCORE_NAMES``)."""
        if name not in SCORE_NAMES:
            raise ValueError(f"score name must be one of {SCORE_NAMES}, got {name!r}")
        return getattr(self, name)


# ----------------------------------------------------------------------------------------------------------
# input checks


def _as_scores(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per category), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: the vocabulary must have at least one category")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _check_pair(s_glob, s_spat) -> tuple[torch.Tensor, torch.Tensor]:
    g = _as_scores(s_glob, "s_glob")
    s = _as_scores(s_spat, "s_spat")
    if g.shape != s.shape:
        raise ValueError(f"s_glob and s_spat must have the same length, got {g.numel()} and {s.numel()}")
    if g.device != s.device:
        raise ValueError(f"s_glob and s_spat must be on the same device, got {g.device} and {s.device}")
    dtype = torch.promote_types(torch.promote_types(g.dtype, s.dtype), torch.float32)  # half → float32
    return g.to(dtype), s.to(dtype)


def _check_use(use) -> tuple[str, ...]:
    if isinstance(use, str):
        raise ValueError(f"use must be a sequence of score names such as ('glob',), got the string {use!r}")
    use = tuple(use)
    if not use:
        raise ValueError(f"use must name at least one score of {SCORE_NAMES}")
    unknown = [u for u in use if u not in SCORE_NAMES]
    if unknown:
        raise ValueError(f"use has unknown score name(s) {unknown}; allowed: {SCORE_NAMES}")
    if len(set(use)) != len(use):
        raise ValueError(f"use names a score twice: {use}")
    return use


def _check_hyper(tau, k_min, k_max) -> None:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or not 0 < tau <= 1:
        raise ValueError(f"tau must be a number in (0, 1], got {tau!r}")
    if not _is_int(k_min) or k_min < 1:
        raise ValueError(f"k_min must be an integer >= 1, got {k_min!r}")
    if not _is_int(k_max) or k_max < k_min:
        raise ValueError(f"k_max must be an integer >= k_min ({k_min}), got {k_max!r}")


STAGE2_POOLS = ("all", "init")


def _check_pool(stage2_pool) -> None:
    if stage2_pool not in STAGE2_POOLS:
        raise ValueError(f"stage2_pool must be one of {STAGE2_POOLS}, got {stage2_pool!r}")


def _check_indices(idx, num_classes: int, name: str, device) -> torch.Tensor:
    if isinstance(idx, torch.Tensor):
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer category indices, got dtype {idx.dtype}")
        t = idx.long()
    else:
        items = [idx] if _is_int(idx) else list(idx)
        if not all(_is_int(i) or (isinstance(i, torch.Tensor) and i.numel() == 1
                                   and not i.is_floating_point()) for i in items):
            raise ValueError(f"{name} must hold integer category indices, got {items!r}")
        t = torch.as_tensor([int(i) for i in items], dtype=torch.long)
    t = t.reshape(-1).to(device)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"{name} must hold category indices in [0, {num_classes}), got {t.tolist()}")
    return t


# ----------------------------------------------------------------------------------------------------------
# the equations, one function each


def dist(x: torch.Tensor) -> torch.Tensor:
    """Step 1: ``relu(x) / Σ relu(x)`` over the last dimension; the uniform ``1/C`` when the sum is 0."""
    r = torch.relu(x)
    total = r.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(r, 1.0 / r.shape[-1])
    return torch.where(total > 0, r / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def consistency_weight(g_bar: torch.Tensor, s_bar: torch.Tensor) -> torch.Tensor:
    """Step 2: ``α = sigmoid(Σ_i ḡ_i·s̄_i − 0.5)`` (cross-view agreement of the two distributions)."""
    return torch.sigmoid((g_bar * s_bar).sum(dim=-1) - ALPHA_OFFSET)


def fused_distribution(g_bar: torch.Tensor, s_bar: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Step 3: ``p = α·ḡ + (1 − α)·s̄``, renormalised to sum 1."""
    a = alpha.unsqueeze(-1)
    p = a * g_bar + (1 - a) * s_bar
    return p / p.sum(dim=-1, keepdim=True)


def conditional_entropy(p: torch.Tensor) -> torch.Tensor:
    """Step 4: ``H_i = −(1/log(C−1)) Σ_{j≠i} q_j log q_j``, ``q_j = p_j/(1−p_i)``, in O(C) via ``Σ_j p_j log p_j``.

    With ``R_i = Σ_{j≠i} p_j`` (= ``1 − p_i``, as p sums to 1) and ``A_i = Σ_{j≠i} p_j log p_j = T − p_i log p_i``,
    ``T = Σ_j p_j log p_j`` (``0·log 0 = 0``): ``Σ_{j≠i} q_j log q_j = A_i/R_i − log R_i``. ``R_i`` and ``A_i`` are
    summed directly for the largest ``p_i`` (the one entry where ``T − p_i log p_i`` and ``1 − p_i`` cancel), so
    the residual q sums to 1 even when ``1 − p_i`` is tiny. ``H_i = 0`` when C ≤ 2 or ``1 − p_i ≤ 1e-12``; the
    result is clamped to [0, 1] against rounding.
    """
    c = p.shape[-1]
    if c <= 2:
        return torch.zeros_like(p)
    plogp = torch.special.xlogy(p, p)
    rest = p.sum(dim=-1, keepdim=True) - p  # R_i
    rest_plogp = plogp.sum(dim=-1, keepdim=True) - plogp  # A_i
    top = p.argmax(dim=-1, keepdim=True)
    others = torch.ones_like(p, dtype=torch.bool).scatter(-1, top, False)
    rest = rest.scatter(-1, top, torch.where(others, p, torch.zeros_like(p)).sum(dim=-1, keepdim=True))
    rest_plogp = rest_plogp.scatter(-1, top, torch.where(others, plogp, torch.zeros_like(p)).sum(-1, keepdim=True))
    valid = (1 - p > RESIDUAL_EPS) & (rest > 0)
    r_safe = torch.where(valid, rest, torch.ones_like(rest))
    # log R_i through the binary xlogy(1, R): torch's unary CPU log is split across threads from 2,048 elements,
    # which gains nothing at these sizes and costs milliseconds when the other cores are busy
    neg_h = rest_plogp / r_safe - torch.special.xlogy(torch.ones_like(r_safe), r_safe)
    h = torch.where(valid, -neg_h / math.log(c - 1), torch.zeros_like(p))
    return h.clamp(0.0, 1.0)


def confidence_score(p: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
    """Step 5: ``s_conf = p·(1 − H)`` (likely present and not entangled with the rest)."""
    return p * (1 - entropy)


def top_k_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of 1-D ``x``, ties broken towards the lower index; O(C)."""
    n = x.numel()
    if k >= n:
        return torch.ones_like(x, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(x, dtype=torch.bool)
    kth = torch.topk(x, k, sorted=False).values.min()  # the k-th largest value
    above = x > kth
    at = x == kth
    room = k - above.sum()
    return above | (at & (torch.cumsum(at, dim=0) <= room))


def stage1_size(num_classes: int, tau: float) -> int:
    """Step 6 (size): ``m = max(1, ⌊τ·C⌋)``, exact on τ's decimal value (``0.29·100`` gives 29, not 28)."""
    return max(1, math.floor(Fraction(repr(float(tau))) * num_classes))


def stage1_union(scores: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """Step 6 (stage 1, recall): mask of ``C_init`` = ∪ over enabled scores of their top-``max(1, ⌊τC⌋)``."""
    m = stage1_size(scores[0].numel(), tau)
    mask = torch.zeros_like(scores[0], dtype=torch.bool)
    for s in scores:
        mask |= top_k_mask(s, m)
    return mask


def subset_size(n_init: int, num_classes: int, k_min: int, k_max: int) -> int:
    """Step 7 (size): ``K = min(C, clamp(|C_init|, k_min, k_max))``."""
    return min(num_classes, max(k_min, min(n_init, k_max)))


def min_max_normalise(x: torch.Tensor, pool: torch.Tensor, scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """Step 7 (normalise): ``(x − min)/(max − min)`` over the pool (0 outside the pool).

    A score that is constant up to rounding gives 0, as a constant does: the span counts as rounding when it
    is at most ``ROUNDING_ULPS`` units of ``scale`` in the last place (``scale`` = the largest ``|x|`` in the
    pool by default; ``s_conf`` passes the magnitude of ``p``, since ``1 − H`` may cancel to ~0).
    """
    lo = torch.where(pool, x, torch.full_like(x, math.inf)).min()
    hi = torch.where(pool, x, torch.full_like(x, -math.inf)).max()
    span = hi - lo
    if scale is None:
        scale = torch.maximum(lo.abs(), hi.abs())
    varies = span > ROUNDING_ULPS * torch.finfo(x.dtype).eps * torch.as_tensor(scale, dtype=x.dtype)
    scaled = (x - lo) / torch.where(varies, span, torch.ones_like(span))
    return torch.where(pool & varies, scaled, torch.zeros_like(x))


def stage2_candidates(init: torch.Tensor, k_min: int, k_max: int,
                      stage2_pool: str = CSSConfig.stage2_pool) -> tuple[torch.Tensor, int]:
    """Step 7 (pool): ``(pool mask, K kept)``. The pool is ``C_init`` when ``|C_init| ≥ K``, else all C
    categories (``stage2_pool="init"``: always ``C_init``, keeping ``min(K, |C_init|)``)."""
    n_init = int(init.sum())
    k = subset_size(n_init, init.numel(), k_min, k_max)
    pool = init if n_init >= k or stage2_pool == "init" else torch.ones_like(init)
    return pool, min(k, int(pool.sum()))


def final_score(scores: Sequence[torch.Tensor], pool: torch.Tensor, scales: Sequence | None = None) -> torch.Tensor:
    """Step 7 (rank): ``s_final = Σ`` of the scores min-max-normalised over the pool (0 outside it); ``scales``
    (one per score, None = its own magnitude) sets what counts as a rounding-size span in :func:`min_max_normalise`."""
    s_final = torch.zeros_like(scores[0])
    for s, scale in zip(scores, scales or [None] * len(scores)):
        s_final = s_final + min_max_normalise(s, pool, scale)
    return s_final


def stage2_rerank(scores: Sequence[torch.Tensor], init: torch.Tensor, k_min: int, k_max: int,
                  stage2_pool: str = CSSConfig.stage2_pool, scales: Sequence | None = None) -> torch.Tensor:
    """Step 7 (stage 2, precision): mask of the top-K of the pool (:func:`stage2_candidates`) by ``s_final``."""
    pool, k = stage2_candidates(init, k_min, k_max, stage2_pool)
    s_final = final_score(scores, pool, scales)
    return top_k_mask(torch.where(pool, s_final, torch.full_like(s_final, -math.inf)), k)


# ----------------------------------------------------------------------------------------------------------
# public API


def css_scores(s_glob, s_spat) -> CSSScores:
    """Steps 1–5 for one image: ``s_glob`` (C,) CLIP global cosines, ``s_spat`` (C,) spatial means in [0, 1]."""
    g, s = _check_pair(s_glob, s_spat)
    g_bar, s_bar = dist(g), dist(s)
    alpha = consistency_weight(g_bar, s_bar)
    p = fused_distribution(g_bar, s_bar, alpha)
    h = conditional_entropy(p)
    return CSSScores(glob=g, spat=s, conf=confidence_score(p, h), p=p, entropy=h, alpha=alpha)


def rounding_scale(scores: CSSScores, name: str) -> torch.Tensor | None:
    """The magnitude a score's rounding is measured against in :func:`min_max_normalise`: ``max p`` for
    ``s_conf = p·(1 − H)`` (``1 − H`` may cancel to ~0), the score's own (None) for the others."""
    return scores.p.max() if name == "conf" else None


def select_categories(s_glob, s_spat, config: CSSConfig | None = None, *,
                      always_keep: Iterable[int] | int = (), **fields) -> torch.Tensor:
    """CSS for one image: the selected category indices (LongTensor, sorted ascending, on the input's device).

    ``config`` (default ``CSSConfig()``) with any of its ``fields`` overridden (``tau=0.4``, ``k_max=10``, ...).
    Size: ``K = min(C, clamp(|C_init|, k_min, k_max))`` plus any ``always_keep`` index not already chosen.
    """
    cfg = (config if config is not None else CSSConfig()).replace(**fields)
    scores = css_scores(s_glob, s_spat)
    c = scores.glob.numel()
    keep = _check_indices(always_keep, c, "always_keep", scores.glob.device)
    chosen = [scores.get(name) for name in cfg.use]
    scales = [rounding_scale(scores, name) for name in cfg.use]
    init = stage1_union(chosen, cfg.tau)
    mask = stage2_rerank(chosen, init, cfg.k_min, cfg.k_max, cfg.stage2_pool, scales)
    mask[keep] = True  # step 8
    return torch.nonzero(mask).reshape(-1)


def oracle_categories(label_map, num_classes: int, ignore_index: int = 255,
                      always_keep: Iterable[int] | int = ()) -> torch.Tensor:
    """The oracle subset: the ground-truth classes present in ``label_map`` (plus ``always_keep``), sorted."""
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    lab = torch.as_tensor(label_map)
    if lab.is_floating_point() or lab.dtype == torch.bool or lab.is_complex():
        raise ValueError(f"label_map must hold integer class ids, got dtype {lab.dtype}")
    lab = lab.reshape(-1).long()
    lab = lab[lab != ignore_index]
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        bad = lab[(lab < 0) | (lab >= num_classes)].unique()[:10].tolist()
        raise ValueError(f"label_map has values outside [0, {num_classes}) ∪ {{{ignore_index}}}: {bad}")
    keep = _check_indices(always_keep, num_classes, "always_keep", lab.device)
    present = torch.zeros(num_classes, dtype=torch.bool, device=lab.device)
    present[lab] = True
    present[keep] = True
    return torch.nonzero(present).reshape(-1)
