"""The category structure of the simulated world: which categories are near-synonyms and which co-occur.

Stored as sparse neighbour lists (:class:`Neighbours`, O(C·degree)), never as (C, C) matrices, so that a
vocabulary of 20,000 classes costs megabytes; ``CategoryStructure.similar`` / ``.cooccur`` still give the
dense (C, C) view on request (O(C²): for inspection and plots of small vocabularies).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import SimConfig

__all__ = ["Neighbours", "CategoryStructure", "load_matrix", "similarity_from_embeddings"]

SIMILAR_LOW = 0.6
"""Smallest weight of a generated near-synonym pair (weights are uniform in [SIMILAR_LOW, 1])."""
COOCCUR_LOW = 0.5
"""Smallest weight of a generated co-occurring pair (uniform in [COOCCUR_LOW, 1])."""


@dataclass(frozen=True)
class Neighbours:
    """Symmetric sparse weights in [0, 1], zero diagonal: row c lists c's neighbours, strongest first (ties:
    lower index), padded with index −1 / weight 0."""

    index: torch.Tensor
    """(C, D) int64 neighbour indices, −1 where a row has fewer than D neighbours."""
    weight: torch.Tensor
    """(C, D) float32 weights > 0 (0 on padding)."""

    @classmethod
    def from_edges(cls, num: int, rows, cols, weights) -> Neighbours:
        """From (i, j, w) edges (either direction, repeats allowed: symmetrised by the max; w ≤ 0 dropped)."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        c = np.asarray(cols, dtype=np.int64).reshape(-1)
        w = np.asarray(weights, dtype=np.float32).reshape(-1)
        keep = (w > 0) & (r != c)
        r, c, w = r[keep], c[keep], w[keep]
        r, c, w = np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([w, w])
        order = np.lexsort((-w, c, r))  # per (row, col) the largest weight first
        r, c, w = r[order], c[order], w[order]
        first = np.ones(r.size, dtype=bool)
        first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        r, c, w = r[first], c[first], w[first]
        order = np.lexsort((c, -w, r))  # per row: strongest first, ties to the lower index
        r, c, w = r[order], c[order], w[order]
        counts = np.bincount(r, minlength=num)
        d = int(counts.max()) if r.size else 0
        slot = np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts)
        index = np.full((num, d), -1, dtype=np.int64)
        weight = np.zeros((num, d), dtype=np.float32)
        index[r, slot] = c
        weight[r, slot] = w
        return cls(torch.from_numpy(index), torch.from_numpy(weight))

    @classmethod
    def from_matrix(cls, m) -> Neighbours:
        """From a dense (C, C) matrix (its upper and lower parts symmetrised by the max)."""
        a = np.asarray(m, dtype=np.float32)
        r, c = np.nonzero(a)
        return cls.from_edges(a.shape[0], r, c, a[r, c])

    @property
    def num(self) -> int:
        return int(self.index.shape[0])

    def of(self, c: int) -> list[int]:
        """Neighbours of ``c``, strongest first."""
        row = self.index[c]
        return row[row >= 0].tolist()

    def max_weighted(self, values: torch.Tensor) -> torch.Tensor:
        """(C,) ``max_j W[c, j]·values_j`` over c's neighbours (0 without any; ``values`` ≥ 0)."""
        if self.index.shape[1] == 0:
            return torch.zeros(self.num, dtype=values.dtype)
        gathered = values[self.index.clamp(min=0)] * self.weight.to(values.dtype)
        return gathered.amax(dim=1).clamp(min=0)

    def towards(self, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges from the categories ``sources`` to their neighbours: (target (E,), position of the source in
        ``sources`` (E,), weight (E,))."""
        idx, w = self.index[sources], self.weight[sources]
        src = torch.arange(sources.numel())[:, None].expand_as(idx)
        valid = idx >= 0
        return idx[valid], src[valid], w[valid]

    def dense(self) -> torch.Tensor:
        """The (C, C) float32 matrix (O(C²))."""
        out = torch.zeros(self.num, self.num)
        rows = torch.arange(self.num)[:, None].expand_as(self.index)
        valid = self.index >= 0
        out[rows[valid], self.index[valid]] = self.weight[valid]
        return out


@dataclass(frozen=True)
class CategoryStructure:
    """Which categories are similar (near-synonyms) and which co-occur: symmetric sparse weights in [0, 1]."""

    similar_neighbours: Neighbours
    """W_sim as neighbour lists: W_sim[c, c'] = how much c' is mistaken for c."""
    cooccur_neighbours: Neighbours
    """W_co as neighbour lists: W_co[c, c'] = how strongly c and c' appear together."""
    global_bias: torch.Tensor
    """(C,) fixed per-category offset of the global cosine (unit std; scaled by ``global_class_bias``)."""
    dense_bias: torch.Tensor
    """(C,) fixed per-category offset of the dense cosine (unit std; scaled by ``dense_class_bias``)."""
    fp_susceptibility: torch.Tensor
    """(C,) in [0, 1]: how prone CLIPSeg is to hallucinate each category (fixed per category)."""
    source: str = "generated"

    def __post_init__(self) -> None:
        c = self.similar_neighbours.num
        if c < 1:
            raise ValueError("CategoryStructure needs at least one category")
        for name in ("similar_neighbours", "cooccur_neighbours"):
            nb = getattr(self, name)
            if not isinstance(nb, Neighbours) or nb.num != c:
                raise ValueError(f"CategoryStructure.{name} must be Neighbours over {c} categories")
            w = nb.weight
            if not torch.isfinite(w).all() or (w < 0).any() or (w > 1).any():
                raise ValueError(f"CategoryStructure.{name} must hold weights in [0, 1]")
            valid = nb.index >= 0
            rows = torch.arange(c)[:, None].expand_as(nb.index)
            if (nb.index[valid] == rows[valid]).any():
                raise ValueError(f"CategoryStructure.{name} must have a zero diagonal")
        for name in ("global_bias", "dense_bias", "fp_susceptibility"):
            if tuple(getattr(self, name).shape) != (c,):
                raise ValueError(f"CategoryStructure.{name} must have shape ({c},)")

    @property
    def num_classes(self) -> int:
        return self.similar_neighbours.num

    @property
    def similar(self) -> torch.Tensor:
        """(C, C) float32 W_sim, zero diagonal (built on request: O(C²))."""
        return self.similar_neighbours.dense()

    @property
    def cooccur(self) -> torch.Tensor:
        """(C, C) float32 W_co, zero diagonal (built on request: O(C²))."""
        return self.cooccur_neighbours.dense()

    def similar_to(self, c: int) -> list[int]:
        """Categories similar to ``c`` (weight > 0), strongest first."""
        return self.similar_neighbours.of(c)

    def cooccurring_with(self, c: int) -> list[int]:
        """Categories co-occurring with ``c`` (weight > 0), strongest first."""
        return self.cooccur_neighbours.of(c)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def generate(cls, num_classes: int, *, seed: int = 0, similar_group: int = 3, cooccur_group: int = 5,
                 background: int | None = None) -> CategoryStructure:
        """Random groups from ``seed``: near-synonym groups of 1..``similar_group`` categories (weights in
        [0.6, 1]) and co-occurrence groups of ``cooccur_group`` (weights in [0.5, 1]). The background class,
        if any, is in no group."""
        _check_num_classes(num_classes)
        rng = np.random.default_rng([seed, 0x5EED])
        fg = np.array([c for c in range(num_classes) if c != background], dtype=np.int64)
        sim = _group_edges(rng, _random_groups(rng, fg, lambda: int(rng.integers(1, similar_group + 1))),
                           SIMILAR_LOW)
        co = _group_edges(rng, _random_groups(rng, fg, lambda: cooccur_group), COOCCUR_LOW)
        return cls._with_biases(Neighbours.from_edges(num_classes, *sim), Neighbours.from_edges(num_classes, *co),
                                rng, f"generated(seed={seed:d})")

    @classmethod
    def from_similarity(cls, similarity, *, neighbours: int = 2, cooccurrence=None, seed: int = 0,
                        cooccur_group: int = 5, background: int | None = None,
                        source: str = "user similarity") -> CategoryStructure:
        """From a user-supplied (C, C) similarity (e.g. cosines of real CLIP class text embeddings).

        Each category's top-``neighbours`` most similar others count as similar, weighted by
        ``(S − mean off-diagonal S) / (max off-diagonal S − mean)`` clipped to [0, 1], symmetrised by max.
        ``cooccurrence``: an optional (C, C) matrix (e.g. label co-occurrence counts, rescaled to [0, 1] by
        its maximum); without it co-occurrence groups are generated from ``seed``.
        """
        s = np.asarray(similarity, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] < 1:
            raise ValueError(f"similarity must be a square (C, C) matrix, got shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError("similarity contains NaN or inf")
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 0:
            raise ValueError(f"neighbours must be an integer >= 0, got {neighbours!r}")
        c = s.shape[0]
        s = (s + s.T) / 2
        off = ~np.eye(c, dtype=bool)
        if background is not None:
            off[background, :] = off[:, background] = False
        rows, cols, weights = [], [], []
        if c > 1 and off.any():
            mean, top = s[off].mean(), s[off].max()
            span = top - mean if top > mean else 1.0
            for i in range(c):
                cand = np.where(off[i])[0]
                best = cand[np.argsort(-s[i, cand], kind="stable")[:neighbours]]
                rows.append(np.full(best.size, i))
                cols.append(best)
                weights.append(np.clip((s[i, best] - mean) / span, 0, 1))
        sim = Neighbours.from_edges(c, *(np.concatenate(x) if x else np.zeros(0) for x in (rows, cols, weights)))
        rng = np.random.default_rng([seed, 0x5EED])
        if cooccurrence is None:
            fg = np.array([i for i in range(c) if i != background], dtype=np.int64)
            co = Neighbours.from_edges(c, *_group_edges(rng, _random_groups(rng, fg, lambda: cooccur_group),
                                                        COOCCUR_LOW))
        else:
            m = np.asarray(cooccurrence, dtype=np.float64)
            if m.shape != (c, c) or not np.isfinite(m).all() or (m < 0).any():
                raise ValueError(f"cooccurrence must be a ({c}, {c}) matrix of finite values >= 0")
            m = (m + m.T) / 2
            np.fill_diagonal(m, 0)
            co = Neighbours.from_matrix(m / m.max() if m.max() > 0 else m)
        return cls._with_biases(sim, co, rng, source)

    @classmethod
    def from_file(cls, path, **kw) -> CategoryStructure:
        """:meth:`from_similarity` on a matrix read by :func:`load_matrix`."""
        return cls.from_similarity(load_matrix(path), source=f"similarity file {path}", **kw)

    @classmethod
    def for_config(cls, num_classes: int, cfg: SimConfig, background: int | None = None) -> CategoryStructure:
        """The structure a config implies: from ``cfg.similarity`` when set, else generated from ``cfg.seed``."""
        if cfg.similarity is not None:
            st = cls.from_file(cfg.similarity, neighbours=cfg.similar_neighbours, seed=cfg.seed,
                               cooccur_group=cfg.cooccur_group, background=background)
            if st.num_classes != num_classes:
                raise ValueError(f"SimConfig.similarity {cfg.similarity} is {st.num_classes}x{st.num_classes} "
                                 f"but the vocabulary has {num_classes} classes")
            return st
        return cls.generate(num_classes, seed=cfg.seed, similar_group=cfg.similar_group,
                            cooccur_group=cfg.cooccur_group, background=background)

    @classmethod
    def _with_biases(cls, sim: Neighbours, co: Neighbours, rng, source) -> CategoryStructure:
        c = sim.num
        return cls(sim, co, torch.from_numpy(rng.standard_normal(c).astype(np.float32)),
                   torch.from_numpy(rng.standard_normal(c).astype(np.float32)),
                   torch.from_numpy((rng.random(c) ** 2).astype(np.float32)), source)


def _check_num_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")


def _random_groups(rng, items: np.ndarray, size) -> list[np.ndarray]:
    perm = items[rng.permutation(len(items))]
    groups, i = [], 0
    while i < len(perm):
        n = max(1, size())
        groups.append(perm[i:i + n])
        i += n
    return groups


def _group_edges(rng, groups: Sequence[np.ndarray], low: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (a < b in group order) of every group, with a weight uniform in [low, 1] drawn pair by pair."""
    rows, cols = [], []
    for g in groups:
        a, b = np.triu_indices(len(g), k=1)
        rows.append(g[a])
        cols.append(g[b])
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return rows, cols, rng.uniform(low, 1.0, size=rows.size).astype(np.float32)


def load_matrix(path) -> np.ndarray:
    """A (C, C) matrix from ``.npy``, ``.pt`` (a tensor) or text (``.csv`` comma-separated, else whitespace)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"similarity matrix file not found: {path}")
    if path.suffix == ".npy":
        m = np.load(path, allow_pickle=False)
    elif path.suffix == ".pt":
        m = torch.load(path, map_location="cpu", weights_only=True)
        m = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
    else:
        m = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{path}: expected a square (C, C) matrix, got shape {m.shape}")
    return m


def similarity_from_embeddings(embeddings, query_to_class=None) -> np.ndarray:
    """(C, C) cosine similarity of class text embeddings: ``(Q, D)`` query embeddings are averaged per class
    (``query_to_class``, e.g. ``Vocabulary.query_to_class``) and L2-normalised. Save it with ``numpy.save``
    and pass the path as ``SimConfig(similarity=...)``."""
    e = torch.as_tensor(embeddings, dtype=torch.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (Q, D) matrix, got {tuple(e.shape)}")
    if query_to_class is not None:
        q2c = torch.as_tensor(query_to_class, dtype=torch.long)
        if q2c.shape != (e.shape[0],):
            raise ValueError(f"query_to_class must have shape ({e.shape[0]},), got {tuple(q2c.shape)}")
        c = int(q2c.max()) + 1
        e = torch.zeros(c, e.shape[1], dtype=e.dtype).index_add_(0, q2c, F.normalize(e, dim=-1))
    e = F.normalize(e, dim=-1)
    return (e @ e.T).numpy()
