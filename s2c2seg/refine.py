"""S2C2Seg++'s refinement round on one window (the release's ``models/iterative.py`` + ``models/adaptive_k.py``).

Given a window's selection and its fused rows, one round (``t_max`` rounds at most):

1. confidence = max over the selected rows of ``softmax(logit_scale · fused)``; high = confidence > θ_high;
2. feedback: per selected query, its share of the high-confidence pixels; ``g' = g + β·feedback``;
3. the vocabulary-expansion pool: the K best outsiders by the whole-vocabulary composite score;
4. residual evidence: per outsider, its mean CLIPSeg map over the low-confidence pixels; ``g' += β_res·f``,
   and the ``admit_cap`` best outsiders by f join the pool;
5. composite score with ``g'`` over the candidate set (selected ∪ pool);
6. quota: the score-gap target size minus K (adaptive admission), else the pool size; capped at ``admit_cap``;
7. admit the quota best outsiders, re-fuse; the admit trial keeps those that win a low-confidence pixel;
8. stop when the set IoU with the previous set is at least ``1 − δ``.

Incumbents are never dropped. Pure tensor math, float32 as released.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .released_scores import composite_score

__all__ = ["RefineConfig", "RoundLog", "window_confidence", "high_confidence_counts", "feedback_signal",
           "expansion_pool", "residual_evidence", "score_gap_k", "set_iou", "refine_window"]


FEEDBACK_EPS = 1e-6
"""The release's ``eps`` of ``feedback_signal``."""


@dataclass(frozen=True)
class RefineConfig:
    """The refinement round (defaults: the release's ``models/config.py``; ``t_max=0`` switches it off)."""

    t_max: int = 1
    """Number of rounds at most (the journal runs one)."""
    beta: float = 0.5
    """Weight of the high-confidence feedback on the global score."""
    theta_high: float = 0.8
    """A pixel is high-confidence when its max softmax probability exceeds this."""
    delta: float = 0.1
    """Stop when the set IoU with the previous set is at least ``1 − delta``."""
    residual_beta: float = 0.5
    """Weight of the residual evidence (0: no residual evidence and no residual admissions)."""
    admit_cap: int = 3
    """At most this many queries are admitted per round, and this many enter the pool by residual evidence."""
    admit_trial: bool = True
    """Keep only the admitted queries that win at least one previously low-confidence pixel."""
    adaptive_admit: bool = True
    """Quota from the largest score gap (:func:`score_gap_k`) rather than the pool size."""

    def __post_init__(self):
        ints = {"t_max": 0, "admit_cap": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"RefineConfig.{name} must be an integer >= {lo}, got {v!r}")
        for name in ("beta", "theta_high", "delta", "residual_beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"RefineConfig.{name} must be a number >= 0, got {v!r}")
        for name in ("theta_high", "delta"):
            if getattr(self, name) > 1:
                raise ValueError(f"RefineConfig.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("admit_trial", "adaptive_admit"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RefineConfig.{name} must be a bool, got {getattr(self, name)!r}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RoundLog:
    """What the refinement did on one window (for notebooks and records)."""

    rounds_run: int = 0
    admitted: tuple[int, ...] = ()
    """Query indices admitted, in the order of the rounds."""
    high_fraction: float = 0.0
    set_iou: float = 1.0


def window_confidence(fused: torch.Tensor, logit_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(max probability, winning row) of ``softmax(logit_scale · fused)`` over the rows (``csg.confidence``)."""
    return (fused.float() * float(logit_scale)).softmax(dim=0).max(dim=0)


def high_confidence_counts(winner: torch.Tensor, mask: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows,) float32: how many pixels of ``mask`` each row wins (``iterative.high_confidence_counts``)."""
    hits = winner[mask]
    counts = torch.zeros(rows, dtype=torch.float32, device=winner.device)
    return counts.index_add_(0, hits, torch.ones_like(hits, dtype=torch.float32)) if hits.numel() else counts


def feedback_signal(counts: torch.Tensor, total: int, selected: torch.Tensor, size: int) -> torch.Tensor:
    """(Q,) each selected query's share ``count / (total + 1e-6)`` of the high pixels
    (``iterative.feedback_signal``)."""
    signal = torch.zeros(size, dtype=torch.float32, device=selected.device)
    if total > 0:
        signal[selected] = counts / (total + FEEDBACK_EPS)
    return signal


def expansion_pool(vocabulary_scores: torch.Tensor, selected: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best outsiders by the whole-vocabulary composite (``iterative.vocabulary_expansion_pool``)."""
    order = torch.argsort(vocabulary_scores, descending=True)
    outside = order[torch.isin(order, selected, invert=True)]
    return outside[:min(int(k), outside.numel())]


def residual_evidence(local: torch.Tensor, low: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
    """(E,) each entry's mean CLIPSeg map over the low-confidence pixels; 0 if none
    (``iterative.residual_evidence``)."""
    if entries.numel() == 0 or not bool(low.any()):
        return torch.zeros(entries.numel(), dtype=torch.float32, device=entries.device)
    pixels = torch.nonzero(low.reshape(-1)).flatten()  # the low pixels' columns first: one small gather
    return local.reshape(local.shape[0], -1).index_select(1, pixels).index_select(0, entries).float().mean(dim=1)


def score_gap_k(ranked: torch.Tensor, k_min: int, k_max: int) -> int:
    """Target size: ``k_min`` + the position of the largest drop between consecutive ranked scores within
    ``[k_min, min(k_max, n − 1)]``; ``min(k_min, n)`` when that range is empty (``adaptive_k.score_gap_k``)."""
    n = ranked.numel()
    upper, lower = min(int(k_max), n - 1), int(k_min)
    if upper < lower:
        return min(lower, n)
    gaps = ranked[lower - 1:upper] - ranked[lower:upper + 1]
    return lower + int(torch.argmax(gaps))


def set_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two index sets (1 for two empty sets) (``iterative.set_iou``)."""
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def refine_window(selected: torch.Tensor, fused: torch.Tensor, scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                  local: torch.Tensor, fuse_rows: Callable[[torch.Tensor], torch.Tensor], config: RefineConfig,
                  weights: tuple[float, float, float], k_min: int, logit_scale: float
                  ) -> tuple[torch.Tensor, torch.Tensor, RoundLog]:
    """The refinement rounds on one window (``iterative.refine``): -> (selected, fused rows, log).

    ``scores`` = (g, s, c) of every query; ``local`` (Q, h, w) the window's CLIPSeg maps; ``fuse_rows(idx)``
    the fused maps of the sorted query indices ``idx``; ``weights`` the rerank weights.
    """
    g, s, c = scores
    q = g.numel()
    log = RoundLog()
    vocabulary = composite_score(g, s, c, weights)
    known = None  # window_confidence(fused) when the admit trial computed it already
    for _ in range(config.t_max):
        conf, winner = known if known is not None else window_confidence(fused, logit_scale)
        high = conf > config.theta_high
        n_high = int(high.sum())
        log.rounds_run += 1
        log.high_fraction = n_high / high.numel()
        k = selected.numel()
        refined = g + config.beta * feedback_signal(high_confidence_counts(winner, high, k), n_high, selected, q)
        pool = expansion_pool(vocabulary, selected, k)
        if config.residual_beta > 0:
            outsiders = torch.ones(q, dtype=torch.bool, device=g.device)
            outsiders[selected] = False
            outsiders = outsiders.nonzero().flatten()
            f_low = residual_evidence(local, ~high, outsiders)
            boost = torch.zeros(q, dtype=torch.float32, device=g.device)
            boost[outsiders] = f_low
            refined = refined + config.residual_beta * boost
            if outsiders.numel():
                top = outsiders[torch.topk(f_low, min(config.admit_cap, outsiders.numel()))[1]]
                pool = torch.unique(torch.cat([pool, top]))
        if pool.numel() == 0:
            break
        candidates = torch.unique(torch.cat([selected, pool]))
        ranked_scores = composite_score(refined, s, c, weights, candidates)
        quota = _quota(ranked_scores, candidates.numel(), k, pool.numel(), config, k_min)
        if quota <= 0:
            break
        outside = torch.isin(candidates, selected, invert=True)
        pool_scores, pool_idx = ranked_scores[outside], candidates[outside]
        provisional = pool_idx[torch.topk(pool_scores, min(quota, pool_idx.numel()))[1]]
        updated = torch.sort(torch.unique(torch.cat([selected, provisional])))[0]
        fused_new = fuse_rows(updated)
        kept, known = _admit_trial(provisional, updated, fused_new, ~high, config, logit_scale)
        if kept.numel() == 0:
            log.set_iou = 1.0
            break
        if kept.numel() != provisional.numel():
            updated = torch.sort(torch.unique(torch.cat([selected, kept])))[0]
            fused_new, known = fuse_rows(updated), None
        log.set_iou = set_iou(updated, selected)
        log.admitted += tuple(int(i) for i in updated[torch.isin(updated, selected, invert=True)])
        selected, fused = updated, fused_new
        if log.set_iou >= 1.0 - config.delta:
            break
    return selected, fused, log


def _quota(ranked_scores: torch.Tensor, n_candidates: int, k: int, n_pool: int, config: RefineConfig,
           k_min: int) -> int:
    """How many outsiders to admit: the score-gap target minus K (adaptive) or the pool size, capped."""
    if config.adaptive_admit:
        upper = n_candidates - 1
        if upper < k_min:
            return 0
        target = score_gap_k(torch.sort(ranked_scores, descending=True)[0], k_min, upper)
        quota = max(0, target - k)
    else:
        quota = n_pool
    return min(quota, config.admit_cap)


def _admit_trial(provisional: torch.Tensor, updated: torch.Tensor, fused_new: torch.Tensor, low: torch.Tensor,
                 config: RefineConfig, logit_scale: float) -> tuple[torch.Tensor, tuple | None]:
    """(the admitted queries that win at least one previously low-confidence pixel (all without the trial),
    ``window_confidence(fused_new)`` if it was computed, else None)."""
    if not config.admit_trial:
        return provisional, None
    if not bool(low.any()):
        return provisional.new_empty((0,)), None
    confidence = window_confidence(fused_new, logit_scale)
    counts = high_confidence_counts(confidence[1], low, updated.numel())
    return provisional[counts[torch.searchsorted(updated, provisional)] > 0], confidence
