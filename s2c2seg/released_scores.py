"""The release's Category Subset Selection per sliding window (``yhflq/S2c2seg`` ``models/scoring.py``,
``models/css.py``): each step named after the release, next to the paper step of ``css.py`` it replaces.

``positive_l1`` (paper step 1), ``bhattacharyya_weight`` (2), ``released_mixture`` (3),
``released_residual_entropy`` (4), ``released_confidence`` (1-5), ``candidate_size`` / ``candidate_pool`` (6),
``release_min_max`` / ``composite_score`` / ``released_select`` (7), configured by :class:`ScoreConfig` and
:class:`SelectConfig`. They run on the queries of one window in float32 and break ties as ``torch.topk`` does,
as released. ``ScoreConfig.alpha="sigmoid"`` switches step 2 to the paper's ``css.consistency_weight``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from .css import consistency_weight
from .primitives import is_int as _is_int

__all__ = ["RELEASE_EPS_NORM", "RELEASE_EPS_LOG", "ALPHA_FORMS", "GLOBAL_SCORES", "RERANK_FORMS", "SELECTION_UNITS",
           "SELECTION_SCOPES", "ScoreConfig", "SelectConfig", "positive_l1", "bhattacharyya_weight",
           "released_mixture", "released_residual_entropy", "released_confidence", "candidate_size",
           "candidate_pool", "release_min_max", "composite_score", "released_select"]


RELEASE_EPS_NORM = 1e-6
"""The release's ``scoring.EPS_NORM``: added to positive-part sums and to min-max spans."""
RELEASE_EPS_LOG = 1e-8
"""The release's ``scoring.EPS_LOG``: floor inside the logs and on the residual mass of its entropy."""
ALPHA_FORMS = ("bhattacharyya", "sigmoid")
"""Released α (Bhattacharyya coefficient) or the paper's ``sigmoid(⟨ḡ, s̄⟩ − 0.5)``."""
GLOBAL_SCORES = ("patch_mean", "cls")
"""Released global score: the window mean of the dense logits, or the window's CLS cosine."""
RERANK_FORMS = ("weighted", "unweighted")
"""Released rerank weights ``(1 − λ − w_c, λ, w_c)`` or the paper's ``(1, 1, 1)``; a 3-tuple gives them explicitly."""
SELECTION_UNITS = ("query", "class")
"""Select queries (the release) or classes (the paper; a class's score is the max over its synonyms)."""
SELECTION_SCOPES = ("window", "image")
"""Select per sliding window (the release) or once per image (scores averaged over the windows)."""


@dataclass(frozen=True)
class ScoreConfig:
    """Released CSS scores per window (defaults: the release's ``models/config.py``)."""

    global_score: str = "cls"
    """One of ``GLOBAL_SCORES``."""
    alpha: str = "bhattacharyya"
    """One of ``ALPHA_FORMS``."""

    def __post_init__(self):
        for name, allowed in (("global_score", GLOBAL_SCORES), ("alpha", ALPHA_FORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ScoreConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SelectConfig:
    """Released CSS selection (defaults: the release's ``models/config.py``; ``k_max=None`` keeps the union)."""

    tau: float = 0.3
    """Each score's top ``int(τ·Q)`` enter the union pool."""
    k_min: int = 6
    """The pool is only cut when it holds at least ``k_min``; the refinement's score-gap lower bound."""
    k_max: int | None = None
    """Cut the pool to the ``k_max`` best by composite score (None: never, as in every released run)."""
    rerank: str | tuple = "weighted"
    """One of ``RERANK_FORMS`` or explicit ``(w_glob, w_spat, w_conf)``."""
    conf_weight: float = 0.2
    """``w_c`` of the weighted rerank (the release's ``rerank_conf_weight``)."""
    unit: str = "query"
    """One of ``SELECTION_UNITS``."""
    scope: str = "window"
    """One of ``SELECTION_SCOPES``."""

    def __post_init__(self):
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not 0 < self.tau <= 1:
            raise ValueError(f"SelectConfig.tau must be a number in (0, 1], got {self.tau!r}")
        if not _is_int(self.k_min) or self.k_min < 1:
            raise ValueError(f"SelectConfig.k_min must be an integer >= 1, got {self.k_min!r}")
        if self.k_max is not None and (not _is_int(self.k_max) or self.k_max < self.k_min):
            raise ValueError(f"SelectConfig.k_max must be None or an integer >= k_min, got {self.k_max!r}")
        rerank = self.rerank
        if isinstance(rerank, list):
            rerank = tuple(rerank)
            object.__setattr__(self, "rerank", rerank)
        if not (rerank in RERANK_FORMS or (isinstance(rerank, tuple) and len(rerank) == 3
                                           and all(isinstance(w, (int, float)) for w in rerank))):
            raise ValueError(f"SelectConfig.rerank must be one of {RERANK_FORMS} or a 3-tuple, got {rerank!r}")
        if self.unit not in SELECTION_UNITS:
            raise ValueError(f"SelectConfig.unit must be one of {SELECTION_UNITS}, got {self.unit!r}")
        if self.scope not in SELECTION_SCOPES:
            raise ValueError(f"SelectConfig.scope must be one of {SELECTION_SCOPES}, got {self.scope!r}")

    def weights(self, lam: float) -> tuple[float, float, float]:
        """The rerank weights; ``weighted`` is ``(1 − λ − w_c, λ, w_c)`` with the fusion's λ (``S2C2Config.rerank``)."""
        if isinstance(self.rerank, tuple):
            return tuple(float(w) for w in self.rerank)
        if self.rerank == "unweighted":
            return (1.0, 1.0, 1.0)
        return (1.0 - float(lam) - float(self.conf_weight), float(lam), float(self.conf_weight))

    def to_json(self) -> dict:
        d = asdict(self)
        d["rerank"] = list(self.rerank) if isinstance(self.rerank, tuple) else self.rerank
        return d


def positive_l1(x: torch.Tensor) -> torch.Tensor:
    """Released step 1: ``relu(x) / (Σ relu(x) + 1e-6)``; uniform ``1/Q`` when the sum is 0
    (``scoring._l1_positive``)."""
    r = x.clamp_min(0.0)
    total = r.sum()
    if float(total) <= 0.0:
        return torch.full_like(x, 1.0 / x.numel())
    return r / (total + RELEASE_EPS_NORM)


def bhattacharyya_weight(g_bar: torch.Tensor, s_bar: torch.Tensor) -> torch.Tensor:
    """Released step 2: ``α = clamp(Σ_i √(ḡ_i·s̄_i), 0, 1)``, the Bhattacharyya coefficient
    (``scoring.cross_view_confidence``)."""
    return torch.sqrt(g_bar * s_bar).sum().clamp(0.0, 1.0)


def released_mixture(g_bar: torch.Tensor, s_bar: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Released step 3: ``p = α·ḡ + (1 − α)·s̄``, not renormalised (``scoring.cross_view_confidence``)."""
    return alpha * g_bar + (1.0 - alpha) * s_bar


def released_residual_entropy(p: torch.Tensor) -> torch.Tensor:
    """Released step 4: ``−(Σ_{j≠i} p_j log max(p_j, 1e-8))/m_i + log m_i``, ``m_i = max(1 − p_i, 1e-8)``, over
    ``log(Q − 1)``; 0 where ``p_i ≥ 1`` and for Q < 3; clamped to [0, 1] (``scoring._residual_entropy``)."""
    count = p.numel()
    if count < 3:
        return torch.zeros_like(p)
    plogp = p * torch.log(p.clamp_min(RELEASE_EPS_LOG))
    mass = (1.0 - p).clamp_min(RELEASE_EPS_LOG)
    entropy = -((plogp.sum() - plogp) / mass - torch.log(mass))
    normalised = entropy / torch.log(torch.tensor(float(count - 1), dtype=p.dtype, device=p.device))
    return torch.where(p >= 1.0, torch.zeros_like(normalised), normalised).clamp(0.0, 1.0)


def candidate_size(num_queries: int, tau: float) -> int:
    """Released step 6 (size): ``max(1, min(int(Q·τ), Q))`` with the float product (``S2C2Config.candidate_size``)."""
    return max(1, min(int(num_queries * tau), num_queries))


def candidate_pool(scores: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Released step 6 (pool): sorted unique union of each score's ``torch.topk`` indices (``css.candidate_pool``)."""
    k = min(max(1, int(size)), scores[0].numel())
    return torch.unique(torch.cat([torch.topk(x, k)[1] for x in scores]))


def release_min_max(x: torch.Tensor) -> torch.Tensor:
    """Released rerank normalisation ``(x − min)/(max − min + 1e-6)`` (``scoring.minmax``); a span of rounding
    size (~1e-17) gives ~1e-11 here, i.e. 0 to the release's own epsilon, so it is kept exactly as released."""
    return (x - x.min()) / (x.max() - x.min() + RELEASE_EPS_NORM)


def composite_score(g: torch.Tensor, s: torch.Tensor, c: torch.Tensor, weights: Sequence[float],
                    index: torch.Tensor | None = None) -> torch.Tensor:
    """Released rerank: ``w_g·mm(g) + w_s·mm(s) + w_c·mm(c)`` over ``index`` (all by default)
    (``css.composite_score``)."""
    if index is not None:
        g, s, c = g[index], s[index], c[index]
    w_g, w_s, w_c = weights
    return w_g * release_min_max(g) + w_s * release_min_max(s) + w_c * release_min_max(c)


def released_select(g: torch.Tensor, s: torch.Tensor, c: torch.Tensor, config: SelectConfig,
                    weights: Sequence[float]) -> torch.Tensor:
    """Released step 7: the union pool, cut to the ``k_max`` best by composite only when ``k_max`` is set and the
    pool has at least ``k_min`` and more than ``k_max`` entries; sorted indices (``css.select``)."""
    pool = candidate_pool((g, s, c), candidate_size(g.numel(), config.tau))
    n = pool.numel()
    if n >= config.k_min and config.k_max is not None and n > config.k_max:
        pool = pool[torch.topk(composite_score(g, s, c, weights, pool), config.k_max)[1]]
    return torch.sort(pool)[0]


def released_confidence(g: torch.Tensor, s: torch.Tensor, alpha: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Released steps 1-5 on one window (float32 as released): ``(c = p·(1 − H), α)``; ``alpha`` is
    ``"bhattacharyya"`` (the release) or ``"sigmoid"`` (the paper's :func:`consistency_weight`)."""
    g_bar, s_bar = positive_l1(g.float()), positive_l1(s.float())
    a = bhattacharyya_weight(g_bar, s_bar) if alpha == "bhattacharyya" else consistency_weight(g_bar, s_bar)
    p = released_mixture(g_bar, s_bar, a)
    return p * (1.0 - released_residual_entropy(p)), a
