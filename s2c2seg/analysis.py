"""Small analyses the notebooks show: pure functions on tensors, bundles, confusion matrices and results.

Subset recall and precision, the CSS scoring steps of one image (every step taken from ``css.py``), the CSG
quantities of one image (``csg.py`` through ``predict.BundleView``), top-confused pairs, GT boundary
co-occurrence, the split of a confusion reduction into semantically similar and spatially adjacent pairs,
tables of results. The notebooks' set-up and evaluation live in :mod:`s2c2seg.session`, the named
experiment points in :mod:`s2c2seg.experiments`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .csg import CSGConfig
from .css import CSSConfig

__all__ = [
    "subset_recall_precision", "scoring_steps", "ScoringSteps", "row_normalise", "top_confused_pairs",
    "top_classes", "boundary_cooccurrence", "cosine_similarity", "split_confusion_reduction", "finite_tree",
    "ConfigResult", "FusionSteps", "fusion_steps", "miou_table", "markdown_table", "missed_classes",
    "per_image_gaps",
]

# ---------------------------------------------------------------------------------------------- subsets
def _as_index_set(x, name: str) -> set[int]:
    if isinstance(x, torch.Tensor):
        x = x.reshape(-1).tolist()
    try:
        return {int(v) for v in x}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of class indices, got {x!r}") from exc


def subset_recall_precision(subset, gt_classes) -> tuple[float, float]:
    """Recall = |subset ∩ GT| / |GT| and precision = |subset ∩ GT| / |subset| of one image's subset.

    An empty GT gives recall NaN; an empty subset gives precision NaN.
    """
    s, g = _as_index_set(subset, "subset"), _as_index_set(gt_classes, "gt_classes")
    hit = len(s & g)
    recall = hit / len(g) if g else math.nan
    precision = hit / len(s) if s else math.nan
    return recall, precision


@dataclass
class ScoringSteps:
    """Every intermediate quantity of CSS for one image (all (C,) tensors unless noted)."""

    s_glob: torch.Tensor
    s_spat: torch.Tensor
    g_bar: torch.Tensor
    """L1 distribution of ``s_glob``."""
    s_bar: torch.Tensor
    """L1 distribution of ``s_spat``."""
    alpha: float
    p: torch.Tensor
    entropy: torch.Tensor
    conf: torch.Tensor
    m: int
    """Stage-1 size ``max(1, ⌊τC⌋)`` per score."""
    stage1: dict[str, torch.Tensor]
    """Score name -> bool mask of its top-m."""
    union: torch.Tensor
    """Bool mask of ``C_init``."""
    k: int
    """Subset size K kept by stage 2 (before ``always_keep``)."""
    pool: torch.Tensor
    """Bool mask of the stage-2 pool (``css.stage2_candidates``: honours ``stage2_pool``)."""
    normalised: dict[str, torch.Tensor]
    """Score name -> min-max-normalised score over the pool (0 outside)."""
    s_final: torch.Tensor
    """``css.final_score`` over the pool."""
    selected: torch.Tensor
    """Sorted LongTensor of the selected indices (equals ``css.select_categories``)."""


def scoring_steps(s_glob, s_spat, css: CSSConfig, always_keep: Iterable[int] = ()) -> ScoringSteps:
    """CSS step by step under ``css`` (its ``use``, τ, K bounds and ``stage2_pool``), every step one of
    ``css.py``'s functions, so the pieces equal ``css.select_categories``."""
    from . import css as c

    scores = c.css_scores(s_glob, s_spat)
    chosen = [scores.get(u) for u in css.use]
    union = c.stage1_union(chosen, css.tau)
    pool, k = c.stage2_candidates(union, css.k_min, css.k_max, css.stage2_pool)
    scales = [c.rounding_scale(scores, u) for u in css.use]
    normalised = {u: c.min_max_normalise(scores.get(u), pool, sc) for u, sc in zip(css.use, scales)}
    selected = css.select(scores.glob, scores.spat, always_keep=list(always_keep))
    return ScoringSteps(s_glob=scores.glob, s_spat=scores.spat, g_bar=c.dist(scores.glob),
                        s_bar=c.dist(scores.spat), alpha=float(scores.alpha), p=scores.p, entropy=scores.entropy,
                        conf=scores.conf, m=int(c.stage1_size(scores.glob.numel(), css.tau)),
                        stage1={u: c.stage1_union([scores.get(u)], css.tau) for u in css.use}, union=union, k=k,
                        pool=pool, normalised=normalised, s_final=c.final_score(chosen, pool, scales),
                        selected=selected)


# ---------------------------------------------------------------------------------------------- confusion
def _matrix(m) -> np.ndarray:
    m = m.matrix if hasattr(m, "matrix") else m
    m = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {m.shape}")
    return m.astype(np.float64)


def row_normalise(matrix) -> np.ndarray:
    """Each GT row divided by its sum (rows of absent classes stay 0)."""
    m = _matrix(matrix)
    rows = m.sum(axis=1, keepdims=True)
    return np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)


def top_confused_pairs(matrix, names: Sequence[str] | None = None, n: int = 10) -> list[dict]:
    """The ``n`` largest off-diagonal entries of the row-normalised matrix: ``{gt, pred, rate, pixels}``
    (``gt``/``pred`` are names when given, else indices; ``gt_index``/``pred_index`` always)."""
    m = _matrix(matrix)
    r = row_normalise(m)
    np.fill_diagonal(r, 0.0)
    flat = np.argsort(-r, axis=None, kind="stable")[: max(0, int(n))]
    out = []
    for f in flat:
        i, j = divmod(int(f), r.shape[1])
        if r[i, j] <= 0:
            break
        out.append({"gt_index": i, "pred_index": j, "gt": names[i] if names else i,
                    "pred": names[j] if names else j, "rate": float(r[i, j]), "pixels": int(m[i, j])})
    return out


def top_classes(matrices: Sequence, n: int = 20) -> np.ndarray:
    """Indices (sorted) of the ``n`` classes involved in the most confused pixels (off-diagonal, as GT row or
    as wrong prediction column) summed over the given matrices; classes never seen nor predicted are skipped.
    Keeps a 150–171-class matrix readable."""
    total = sum(_matrix(m) for m in matrices)
    diag = np.diag(total)
    off = (total.sum(axis=1) - diag) + (total.sum(axis=0) - diag)
    seen = np.flatnonzero(total.sum(axis=1) + total.sum(axis=0) > 0)
    order = seen[np.argsort(-off[seen], kind="stable")]
    return np.sort(order[: max(1, int(n))])


def boundary_cooccurrence(labels: Iterable, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(C, C) symmetric counts of 4-neighbour pixel pairs with different GT classes (the spatial adjacency of
    classes), summed over the given label maps; ignored pixels do not count."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    for lab in labels:
        lab = np.asarray(lab.detach().cpu() if isinstance(lab, torch.Tensor) else lab).astype(np.int64)
        if lab.ndim != 2:
            raise ValueError(f"label maps must be (H, W), got shape {lab.shape}")
        for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
            ok = (a != b) & (a != ignore_index) & (b != ignore_index)
            a, b = a[ok], b[ok]
            if a.size and (a.max() >= num_classes or a.min() < 0 or b.max() >= num_classes or b.min() < 0):
                raise ValueError(f"label values must lie in [0, {num_classes}) or equal {ignore_index}")
            np.add.at(out, (a, b), 1)
    return out + out.T


def cosine_similarity(embeddings) -> np.ndarray:
    """(C, C) cosine similarity of row vectors (e.g. class text embeddings)."""
    e = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    e = e.astype(np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (C, D), got shape {e.shape}")
    n = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(n > 0, n, 1.0)
    return e @ e.T


def split_confusion_reduction(before, after, *, similarity, adjacency, similar_quantile: float = 0.9,
                              names: Sequence[str] | None = None, n: int = 10) -> dict:
    """How much off-diagonal confusion (row-normalised rate, summed over pairs) ``after`` removes vs ``before``,
    split into semantically similar pairs (``similarity`` ≥ its ``similar_quantile`` over off-diagonal pairs)
    and spatially adjacent pairs (``adjacency`` > 0). A pair may be both; ``other`` is neither.

    Returns ``{"similar": {...}, "adjacent": {...}, "other": {...}, "all": {...}, "pairs": [...]}`` where each
    group holds ``before``, ``after``, ``reduction`` and ``n_pairs``; ``pairs`` lists the ``n`` pairs with the
    largest reduction (and the group they fall in).
    """
    b, a = row_normalise(before), row_normalise(after)
    if b.shape != a.shape:
        raise ValueError(f"before {b.shape} and after {a.shape} differ in shape")
    c = b.shape[0]
    sim = np.asarray(similarity, dtype=np.float64)
    adj = np.asarray(adjacency, dtype=np.float64)
    if sim.shape != (c, c) or adj.shape != (c, c):
        raise ValueError(f"similarity {sim.shape} and adjacency {adj.shape} must be ({c}, {c})")
    if not 0.0 <= similar_quantile <= 1.0:
        raise ValueError(f"similar_quantile must be in [0, 1], got {similar_quantile}")
    off = ~np.eye(c, dtype=bool)
    thr = float(np.quantile(sim[off], similar_quantile)) if c > 1 else math.inf
    similar = off & (sim >= thr)
    adjacent = off & (adj > 0)
    other = off & ~similar & ~adjacent
    groups = {"similar": similar, "adjacent": adjacent, "other": other, "all": off}
    out: dict[str, Any] = {"similarity_threshold": thr}
    for k, mask in groups.items():
        out[k] = {"before": float(b[mask].sum()), "after": float(a[mask].sum()),
                  "reduction": float((b - a)[mask].sum()), "n_pairs": int(mask.sum())}
    red = np.where(off, b - a, -np.inf)
    pairs = []
    for f in np.argsort(-red, axis=None, kind="stable")[: max(0, int(n))]:
        i, j = divmod(int(f), c)
        if not np.isfinite(red[i, j]) or red[i, j] <= 0:
            break
        group = "+".join(g for g in ("similar", "adjacent") if groups[g][i, j]) or "other"
        pairs.append({"gt": names[i] if names else i, "pred": names[j] if names else j, "before": float(b[i, j]),
                      "after": float(a[i, j]), "reduction": float(red[i, j]), "group": group})
    out["pairs"] = pairs
    return out


# ---------------------------------------------------------------------------------------------- records
def finite_tree(obj) -> Any:
    """A JSON-safe copy: tensors / arrays to lists, numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, torch.Tensor):
        return finite_tree(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return finite_tree(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): finite_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_tree(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ConfigResult:
    """One downstream configuration evaluated over a session's images."""

    name: str
    confusion: Any
    """:class:`s2c2seg.metrics.ConfusionMatrix` summed over the images."""
    subsets: list = field(default_factory=list)
    """Per image: the selected class indices (None when the method keeps every class)."""
    gt_classes: list = field(default_factory=list)
    """Per image: the GT classes present."""
    per_image_miou: list = field(default_factory=list)

    @property
    def miou(self) -> float:
        return 100.0 * float(self.confusion.miou())

    def recall_precision(self) -> tuple[float, float]:
        """Mean over images of the subset's recall and precision against the GT classes (NaN without subsets)."""
        rp = [subset_recall_precision(s, g) for s, g in zip(self.subsets, self.gt_classes) if s is not None]
        if not rp:
            return math.nan, math.nan
        r = [v for v, _ in rp if math.isfinite(v)]
        p = [v for _, v in rp if math.isfinite(v)]
        return (float(np.mean(r)) if r else math.nan, float(np.mean(p)) if p else math.nan)


@dataclass
class FusionSteps:
    """CSG on one image's subset, per query (a class's synonyms are separate queries, merged by max after)."""

    queries: torch.Tensor
    """(K',) query indices of the subset's classes."""
    names: list
    """Query names."""
    s_glob: torch.Tensor
    """(K', H, W) the baseline's slide-averaged cosine maps."""
    s_spat: torch.Tensor
    """(K', H, W) CLIPSeg's maps at the image size."""
    weights: torch.Tensor
    """(K',) the CSG weights ``w`` of ``mode``."""
    fused: torch.Tensor
    """(K', H, W) ``s_glob + λ·w·s_spat`` (or the mode's variant)."""


def fusion_steps(bundle, subset, vocab, csg: CSGConfig) -> FusionSteps:
    """The CSG quantities ``predict`` uses for ``subset`` under ``csg`` (same path: ``predict.BundleView``
    maps, ``csg.category_weights`` / ``CSGConfig.fuse``)."""
    from .csg import category_weights
    from .predict import BundleView

    view = bundle if isinstance(bundle, BundleView) else BundleView(bundle)
    q2c = view.query_to_class
    queries = torch.nonzero(torch.isin(q2c, torch.as_tensor(subset).long())).reshape(-1)
    g = view.dense(queries)
    s = view.clipseg(queries)
    w = (category_weights(g, mode=csg.mode, temperature=csg.temperature) if csg.mode != "local_only"
         else torch.ones(len(queries)))
    names = [vocab.queries[int(q)] for q in queries]
    return FusionSteps(queries, names, g, s, w, csg.fuse(g, s))


def miou_table(results: Mapping[str, Mapping[str, ConfigResult]]) -> dict[str, dict[str, float]]:
    """``{config: {dataset: mIoU, ..., "Avg": mean over datasets}}`` (percent)."""
    datasets = list(results)
    configs = list(next(iter(results.values())))
    table = {}
    for c in configs:
        row = {d: results[d][c].miou for d in datasets}
        vals = [v for v in row.values() if math.isfinite(v)]
        row["Avg"] = float(np.mean(vals)) if vals else math.nan
        table[c] = row
    return table


def markdown_table(rows: Mapping[str, Mapping[str, Any]], first: str = "", fmt: str = "{:.1f}",
                   label: str = "") -> str:
    """A markdown table from ``{row: {column: value}}`` (numbers formatted with ``fmt``); with a ``label``
    (``SIMULATED`` / ``RANDOM WEIGHTS``) a bold line saying so comes first (``Session.markdown_table``
    passes the session's)."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    out = ["| " + " | ".join([first] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(fmt.format(v) if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                         else str(v))
        out.append("| " + " | ".join([str(name)] + cells) + " |")
    if label:
        out = [f"**{label}**: numbers from {label.lower()} features, not evidence for the paper.", ""] + out
    return "\n".join(out)


def missed_classes(results: Mapping[str, Mapping[str, ConfigResult]], config: str,
                   class_names: Mapping[str, Sequence[str]]) -> list[dict]:
    """GT classes left out of ``config``'s subset, counted over images: ``[{dataset, class, index, missed,
    present}]`` sorted by ``missed`` (most first)."""
    out = []
    for ds, res in results.items():
        r = res[config]
        missed: dict[int, int] = {}
        present: dict[int, int] = {}
        for sub, gt in zip(r.subsets, r.gt_classes):
            chosen = set(sub) if sub is not None else set(gt)
            for c in gt:
                present[c] = present.get(c, 0) + 1
                if c not in chosen:
                    missed[c] = missed.get(c, 0) + 1
        out += [{"dataset": ds, "class": class_names[ds][c], "index": c, "missed": n, "present": present[c]}
                for c, n in missed.items()]
    return sorted(out, key=lambda m: (-m["missed"], m["dataset"], m["index"]))


def per_image_gaps(results: Mapping[str, Mapping[str, ConfigResult]], config: str, reference: str) -> list[dict]:
    """Per image: ``config``'s mIoU, the ``reference``'s (e.g. the oracle), their gap and the subset's recall."""
    out = []
    for ds, res in results.items():
        a, b = res[config], res[reference]
        for i, (ma, mb, sub, gt) in enumerate(zip(a.per_image_miou, b.per_image_miou, a.subsets, a.gt_classes)):
            rec = subset_recall_precision(sub, gt)[0] if sub is not None else 1.0
            out.append({"dataset": ds, "index": i, "miou": ma, "miou_ref": mb, "gap": mb - ma, "recall": rec})
    return out
