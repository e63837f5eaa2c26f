"""The simulation backend: a controlled world with a known ground truth and one dial per failure mode.

SIMULATED. Nothing produced here is evidence for the paper's numbers: it is a teaching and testing
instrument that makes each scoring term of CSS / CSG visible, offline, without model weights.

Pieces
------
* :class:`SimConfig` — every effect is one named dial with a documented default (``EFFECT_DIALS``);
  :meth:`SimConfig.ideal` turns every effect off.
* :class:`CategoryStructure` — which categories are near-synonyms ("similar": their text embeddings overlap)
  and which co-occur, as two symmetric (C, C) weight matrices in [0, 1]; generated from a seed
  (:meth:`CategoryStructure.generate`) or built from a similarity matrix the user supplies
  (:meth:`CategoryStructure.from_similarity`, e.g. computed from real CLIP text embeddings with
  :func:`similarity_from_embeddings` and saved with ``numpy.save``).
* :func:`make_scene` — a label map over a real vocabulary (a dataset key such as ``"voc21"``, a
  :class:`~s2c2seg.data.vocab.Vocabulary`, a list of names, or a class count), with ``n_present`` categories
  drawn with a bias towards co-occurring ones, region shapes, an optional background class; the image is the
  label map painted with the dataset palette plus noise. Reproducible from ``(seed, index)``.
* :class:`SimDataset` — the same interface as the real datasets (``len``, ``sample(i)``, iteration, ``.ids``,
  ``.spec`` with ``num_classes``, ``background``, ``reduce_zero_label=False``).
* :class:`SimBackend` — ``encode(sample, vocab, protocol) -> FeatureBundle`` exactly like the real
  segmenter (dense logits per sliding-window crop on a patch grid, global cosines, CLIPSeg maps and means),
  and ``describe()`` (``backend="sim"``, ``label="SIMULATED"``, the dials). **It reads the scene's ground
  truth from ``sample.label``**: that is what a simulation is. Downstream code cannot tell it apart from a
  real backend.

The world, per image (M_c = one-hot map of class c, presence_c ∈ [0, 1], W_sim / W_co the structure):

* global cosine of a query of class c: ``floor + span·(presence_c + leak_sim·max_c' W_sim[c,c']·presence_c'
  + leak_co·max_c' W_co[c,c']·presence_c') + bias_c + noise`` (:func:`global_scores`);
* dense cosine: ``floor + span·(B_c + leak_sim·Σ_c' W_sim[c,c']·B_c' + leak_co·Σ_c' W_co[c,c']·B_c') + bias_c``
  with ``B = blur(M)``, resized to the protocol's short side, cut into its crops and area-pooled to a patch
  grid, plus per-cell noise (:func:`dense_class_maps`, :meth:`SimBackend.encode`);
* CLIPSeg map: ``sigmoid(gain·(keep_c·B'_c + fp_c·F_c + noise − 0.5))`` with ``B'`` a (lightly) blurred
  one-hot, ``keep_c`` weakened by misses and ``F_c`` a false-positive support (:func:`clipseg_class_maps`).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .bundle import FeatureBundle
from .data.protocols import Protocol
from .data.sample import Sample, SampleSequence
from .data.vocab import Vocabulary

__all__ = [
    "LABEL", "EFFECT_DIALS", "SHAPES", "SimConfig", "CategoryStructure", "SimSpec", "SimDataset", "SimBackend",
    "make_scene", "resolve_vocabulary", "similarity_from_embeddings", "load_matrix", "global_scores",
    "dense_class_maps", "clipseg_class_maps", "gaussian_blur",
]

LABEL = "SIMULATED"
"""What every output of this module says it is."""
IGNORE_INDEX = 255
SHAPES = ("ellipse", "rectangle", "voronoi")


@dataclass(frozen=True)
class SimConfig:
    """One named dial per effect (see ``EFFECT_DIALS``), the scene generator's settings and the value scales.

    Defaults give a world where the baseline confuses similar categories and CLIPSeg hallucinates a few,
    so that CSS and CSG have something to fix. :meth:`ideal` switches every effect off.
    """

    # ---- scenes
    seed: int = 0
    """Seeds the category structure, every scene (with its index) and every bundle (with the image id)."""
    image_size: tuple[int, int] = (64, 64)
    """(H, W) of generated scenes."""
    n_present: int | tuple[int, int] = (2, 4)
    """Foreground categories per scene: an int, or an inclusive (lo, hi) range drawn per scene."""
    background: int | None | str = "auto"
    """Background class index (fills the canvas behind the objects), None for none, ``"auto"``: the dataset's
    own (VOC21, Context60, COCO-Object: 0) when the vocabulary is given as a dataset key, else None."""
    shape: str = "ellipse"
    """Region shapes: ``ellipse`` / ``rectangle`` objects on the canvas, or a ``voronoi`` partition."""
    min_area: float = 0.03
    """Smallest visible area fraction of every present category (scenes are redrawn until it holds)."""
    scene_cooccur_bias: float = 0.7
    """Probability that each further category is drawn among the co-occurring ones of those already chosen."""
    image_noise: float = 0.08
    """Std of the Gaussian pixel noise of the rendered image, as a fraction of 255 (the image is only for
    plots: no simulated source reads it)."""
    # ---- category structure (generated)
    similar_group: int = 3
    """Largest group of near-synonym ("similar") categories in a generated structure."""
    cooccur_group: int = 5
    """Size of a group of co-occurring categories in a generated structure."""
    similarity: str | None = None
    """Path of a user-supplied (C, C) similarity matrix (.npy, .pt, .csv/.txt) defining the similar groups;
    None: generated from ``seed``."""
    similar_neighbours: int = 2
    """With ``similarity``: each category's top-n most similar categories count as similar."""
    # ---- global CLIP cosine (one per query)
    global_floor: float = 0.18
    """Cosine of a query whose category is absent and unrelated (no leakage, no noise)."""
    global_span: float = 0.08
    """Cosine gained by a fully present category."""
    global_area_power: float = 0.5
    """Presence = (area fraction)^power: large objects dominate the global embedding; 0 = binary presence."""
    global_leak_similar: float = 0.6
    """Share of a present category's presence given to its similar (near-synonym) categories."""
    global_leak_cooccur: float = 0.25
    """Share of a present category's presence given to categories that co-occur with it."""
    global_noise: float = 0.01
    """Std of Gaussian noise per query and image."""
    global_class_bias: float = 0.005
    """Std of a fixed per-category offset (some names always score higher), drawn once from ``seed``."""
    # ---- baseline dense logits (patch-text cosines per crop)
    dense_floor: float = 0.12
    """Dense cosine of an absent, unrelated category."""
    dense_span: float = 0.12
    """Dense cosine gained inside a category's region."""
    dense_blur: float = 0.04
    """Gaussian σ of the coarse localisation, as a fraction of the image's short side; 0 = sharp."""
    dense_downsample: int = 16
    """Side of one dense grid cell in pixels of the resized image (a ViT-B/16 patch); 0 or 1 = per pixel."""
    dense_leak_similar: float = 0.75
    """Share of a category's dense response that its similar categories also get, in the same pixels."""
    dense_leak_cooccur: float = 0.3
    """Share of a category's dense response that co-occurring categories also get, in the same pixels."""
    dense_noise: float = 0.02
    """Std of Gaussian noise per query, crop and grid cell."""
    dense_class_bias: float = 0.01
    """Std of a fixed per-category dense offset, drawn once from ``seed``."""
    # ---- CLIPSeg (sharp maps in [0, 1])
    clipseg_gain: float = 10.0
    """Sharpness of CLIPSeg's sigmoid: map = sigmoid(gain·(x − 0.5)); not an effect (x ∈ {0, 1} stays exact)."""
    clipseg_blur: float = 0.01
    """Gaussian σ of CLIPSeg's localisation, as a fraction of the short side; 0 = sharp."""
    clipseg_false_positive: float = 0.5
    """Largest false-positive strength: an absent category lights up (on a similar present category's region,
    else on a random blob) with strength fp·susceptibility_c·u, susceptibility fixed per category."""
    clipseg_miss: float = 0.2
    """Largest weakening of a present category's response (drawn per category and image)."""
    clipseg_noise: float = 0.05
    """Std of Gaussian pixel noise before the sigmoid."""
    clipseg_max_side: int = 128
    """CLIPSeg maps are stored at the image size up to this side, area-downsampled beyond it."""
    whole_image: bool = False
    """True: one whole-image crop at the resized size instead of the protocol's sliding windows."""

    def __post_init__(self) -> None:
        def bad(name, why):
            raise ValueError(f"SimConfig.{name}: {why}, got {getattr(self, name)!r}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _NONNEG_FLOATS and (isinstance(v, bool) or not isinstance(v, (int, float))
                                             or not math.isfinite(v) or v < 0):
                bad(f.name, "must be a finite number >= 0")
        for name in ("seed", "similar_group", "cooccur_group", "similar_neighbours", "dense_downsample",
                     "clipseg_max_side"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(name, "must be an integer >= 0")
        for name in ("similar_group", "cooccur_group", "clipseg_max_side"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        size = tuple(self.image_size) if isinstance(self.image_size, (tuple, list)) else None
        if size is None or len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 8
                                                 for s in size):
            bad("image_size", "must be (H, W) integers >= 8")
        object.__setattr__(self, "image_size", size)
        n = self.n_present
        lohi = (n, n) if isinstance(n, int) and not isinstance(n, bool) else tuple(n) if isinstance(
            n, (tuple, list)) else None
        if lohi is None or len(lohi) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in lohi) \
                or not 1 <= lohi[0] <= lohi[1]:
            bad("n_present", "must be an int >= 1 or an inclusive (lo, hi) range with 1 <= lo <= hi")
        if isinstance(n, list):
            object.__setattr__(self, "n_present", tuple(n))
        if self.shape not in SHAPES:
            bad("shape", f"must be one of {SHAPES}")
        if not (self.background is None or self.background == "auto"
                or (isinstance(self.background, int) and not isinstance(self.background, bool)
                    and self.background >= 0)):
            bad("background", "must be a class index >= 0, None or 'auto'")
        if not 0 <= self.min_area < 0.5:
            bad("min_area", "must lie in [0, 0.5)")
        if not 0 <= self.scene_cooccur_bias <= 1:
            bad("scene_cooccur_bias", "must lie in [0, 1]")
        if isinstance(self.dense_floor, bool) or not isinstance(self.dense_floor, (int, float)) \
                or not math.isfinite(self.dense_floor):
            bad("dense_floor", "must be a finite number")
        if self.global_span <= 0 or self.dense_span <= 0 or self.clipseg_gain <= 0:
            raise ValueError("SimConfig.global_span, dense_span and clipseg_gain must be > 0")
        if not isinstance(self.whole_image, bool):
            bad("whole_image", "must be a bool")
        if self.similarity is not None and not isinstance(self.similarity, (str, Path)):
            bad("similarity", "must be a file path or None")

    @property
    def n_present_range(self) -> tuple[int, int]:
        n = self.n_present
        return (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))

    def replace(self, **overrides) -> "SimConfig":
        """A copy with ``overrides``; an unknown dial raises ``ValueError`` naming it."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown SimConfig field(s): {sorted(unknown)}")
        return replace(self, **overrides)

    @classmethod
    def ideal(cls, **overrides) -> "SimConfig":
        """Every effect in ``EFFECT_DIALS`` off (0): the sources then carry the ground truth exactly."""
        return cls(**{**{d: 0 for d in EFFECT_DIALS}, **overrides})

    def to_json(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        if isinstance(self.n_present, tuple):
            d["n_present"] = list(self.n_present)
        if self.similarity is not None:
            d["similarity"] = str(self.similarity)
        return d


EFFECT_DIALS: tuple[str, ...] = (
    "image_noise",
    "global_area_power", "global_leak_similar", "global_leak_cooccur", "global_noise", "global_class_bias",
    "dense_blur", "dense_downsample", "dense_leak_similar", "dense_leak_cooccur", "dense_noise",
    "dense_class_bias",
    "clipseg_blur", "clipseg_false_positive", "clipseg_miss", "clipseg_noise",
)
"""The dials that each switch one effect on (0 = off). Everything else is a scale or a scene setting."""

_NONNEG_FLOATS = {"min_area", "scene_cooccur_bias", "image_noise", "global_floor", "global_span",
                  "global_area_power", "global_leak_similar", "global_leak_cooccur", "global_noise",
                  "global_class_bias", "dense_span", "dense_blur", "dense_leak_similar", "dense_leak_cooccur",
                  "dense_noise", "dense_class_bias", "clipseg_gain", "clipseg_blur", "clipseg_false_positive",
                  "clipseg_miss", "clipseg_noise"}
# dense_floor may be negative (cosines of absent categories can be): only finiteness is checked for it.


# ======================================================================================== category structure
@dataclass(frozen=True)
class CategoryStructure:
    """Which categories are similar (near-synonyms) and which co-occur: symmetric (C, C) weights in [0, 1]."""

    similar: torch.Tensor
    """(C, C) float32, zero diagonal: W_sim[c, c'] = how much c' is mistaken for c."""
    cooccur: torch.Tensor
    """(C, C) float32, zero diagonal: W_co[c, c'] = how strongly c and c' appear together."""
    global_bias: torch.Tensor
    """(C,) fixed per-category offset of the global cosine (unit std; scaled by ``global_class_bias``)."""
    dense_bias: torch.Tensor
    """(C,) fixed per-category offset of the dense cosine (unit std; scaled by ``dense_class_bias``)."""
    fp_susceptibility: torch.Tensor
    """(C,) in [0, 1]: how prone CLIPSeg is to hallucinate each category (fixed per category)."""
    source: str = "generated"

    def __post_init__(self) -> None:
        c = self.similar.shape[0] if self.similar.ndim == 2 else -1
        for name in ("similar", "cooccur"):
            m = getattr(self, name)
            if m.shape != (c, c) or c < 1:
                raise ValueError(f"CategoryStructure.{name} must be a square (C, C) matrix, got {tuple(m.shape)}")
            if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
                raise ValueError(f"CategoryStructure.{name} must hold weights in [0, 1]")
        for name in ("global_bias", "dense_bias", "fp_susceptibility"):
            if tuple(getattr(self, name).shape) != (c,):
                raise ValueError(f"CategoryStructure.{name} must have shape ({c},)")

    @property
    def num_classes(self) -> int:
        return int(self.similar.shape[0])

    def similar_to(self, c: int) -> list[int]:
        """Categories similar to ``c`` (weight > 0), strongest first."""
        return _neighbours(self.similar, c)

    def cooccurring_with(self, c: int) -> list[int]:
        """Categories co-occurring with ``c`` (weight > 0), strongest first."""
        return _neighbours(self.cooccur, c)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def generate(cls, num_classes: int, *, seed: int = 0, similar_group: int = 3, cooccur_group: int = 5,
                 background: int | None = None) -> "CategoryStructure":
        """Random groups from ``seed``: near-synonym groups of 1..``similar_group`` categories (weights in
        [0.6, 1]) and co-occurrence groups of ``cooccur_group`` (weights in [0.5, 1]). The background class,
        if any, is in no group."""
        _check_num_classes(num_classes)
        rng = np.random.default_rng([seed, 0x5EED])
        fg = [c for c in range(num_classes) if c != background]
        sim = np.zeros((num_classes, num_classes), np.float32)
        for group in _random_groups(rng, fg, lambda: int(rng.integers(1, similar_group + 1))):
            _fill_group(sim, group, rng, 0.6)
        co = np.zeros((num_classes, num_classes), np.float32)
        for group in _random_groups(rng, fg, lambda: cooccur_group):
            _fill_group(co, group, rng, 0.5)
        return cls._with_biases(sim, co, rng, "generated(seed=%d)" % seed)

    @classmethod
    def from_similarity(cls, similarity, *, neighbours: int = 2, cooccurrence=None, seed: int = 0,
                        cooccur_group: int = 5, background: int | None = None,
                        source: str = "user similarity") -> "CategoryStructure":
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
        sim = np.zeros((c, c), np.float32)
        if c > 1 and off.any():
            mean, top = s[off].mean(), s[off].max()
            scaled = np.clip((s - mean) / (top - mean if top > mean else 1.0), 0, 1)
            for i in range(c):
                cand = np.where(off[i])[0]
                best = cand[np.argsort(-s[i, cand], kind="stable")[:neighbours]]
                sim[i, best] = np.maximum(sim[i, best], scaled[i, best])
            sim = np.maximum(sim, sim.T)
        rng = np.random.default_rng([seed, 0x5EED])
        if cooccurrence is None:
            co = np.zeros((c, c), np.float32)
            fg = [i for i in range(c) if i != background]
            for group in _random_groups(rng, fg, lambda: cooccur_group):
                _fill_group(co, group, rng, 0.5)
        else:
            co = np.asarray(cooccurrence, dtype=np.float64)
            if co.shape != (c, c) or not np.isfinite(co).all() or (co < 0).any():
                raise ValueError(f"cooccurrence must be a ({c}, {c}) matrix of finite values >= 0")
            co = (co + co.T) / 2
            np.fill_diagonal(co, 0)
            co = (co / co.max() if co.max() > 0 else co).astype(np.float32)
        return cls._with_biases(sim, co, rng, source)

    @classmethod
    def from_file(cls, path, **kw) -> "CategoryStructure":
        """:meth:`from_similarity` on a matrix read by :func:`load_matrix`."""
        return cls.from_similarity(load_matrix(path), source=f"similarity file {path}", **kw)

    @classmethod
    def for_config(cls, num_classes: int, cfg: SimConfig, background: int | None = None) -> "CategoryStructure":
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
    def _with_biases(cls, sim, co, rng, source) -> "CategoryStructure":
        c = sim.shape[0]
        np.fill_diagonal(sim, 0)
        np.fill_diagonal(co, 0)
        return cls(torch.from_numpy(sim), torch.from_numpy(co.astype(np.float32)),
                   torch.from_numpy(rng.standard_normal(c).astype(np.float32)),
                   torch.from_numpy(rng.standard_normal(c).astype(np.float32)),
                   torch.from_numpy((rng.random(c) ** 2).astype(np.float32)), source)


def _neighbours(m: torch.Tensor, c: int) -> list[int]:
    row = m[c]
    idx = torch.nonzero(row > 0).flatten()
    order = torch.argsort(-row[idx], stable=True)
    return idx[order].tolist()


def _check_num_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")


def _random_groups(rng, items: Sequence[int], size) -> list[list[int]]:
    perm = [items[i] for i in rng.permutation(len(items))]
    groups, i = [], 0
    while i < len(perm):
        n = max(1, size())
        groups.append(perm[i:i + n])
        i += n
    return groups


def _fill_group(m: np.ndarray, group: Sequence[int], rng, low: float) -> None:
    for a in range(len(group)):
        for b in range(a + 1, len(group)):
            w = np.float32(rng.uniform(low, 1.0))
            m[group[a], group[b]] = m[group[b], group[a]] = w


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


# ======================================================================================== vocabulary
def resolve_vocabulary(vocab, variant: str = "sclip") -> tuple[Vocabulary, str | None, int | None]:
    """(Vocabulary, dataset key or None, dataset background index or None) from a dataset key (``"voc21"``),
    a :class:`Vocabulary`, a list of names / synonym lists, or a class count."""
    if isinstance(vocab, Vocabulary):
        return vocab, None, None
    if isinstance(vocab, str):
        from .data.datasets import get_spec
        from .data.names import vocabulary

        spec = get_spec(vocab)
        return vocabulary(vocab, variant), spec.name, spec.background
    if isinstance(vocab, int) and not isinstance(vocab, bool):
        _check_num_classes(vocab)
        return Vocabulary.from_names([f"class{i}" for i in range(vocab)], variant="sim"), None, None
    if isinstance(vocab, (list, tuple)):
        return Vocabulary.from_names(vocab), None, None
    raise ValueError(f"vocab must be a dataset key, a Vocabulary, a list of names or a class count, got "
                     f"{type(vocab).__name__}")


def _background(cfg: SimConfig, num_classes: int, dataset_bg: int | None) -> int | None:
    bg = dataset_bg if cfg.background == "auto" else cfg.background
    if bg is not None and bg >= num_classes:
        raise ValueError(f"SimConfig.background {bg} is not a class index of a {num_classes}-class vocabulary")
    return bg


# ======================================================================================== scenes
def _shape_mask(rng, kind: str, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    if kind == "rectangle":
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _voronoi(rng, classes: Sequence[int], h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    sites = rng.uniform(0, 1, size=(len(classes), 2)) * (h, w)
    d = (yy[None] - sites[:, 0, None, None]) ** 2 + (xx[None] - sites[:, 1, None, None]) ** 2
    return np.asarray(classes, dtype=np.int64)[d.argmin(0)]


def _draw_categories(rng, cfg: SimConfig, structure: CategoryStructure, bg: int | None) -> list[int]:
    c = structure.num_classes
    fg = [i for i in range(c) if i != bg]
    if not fg:
        raise ValueError("the vocabulary has no category besides the background")
    lo, hi = cfg.n_present_range
    n = min(int(rng.integers(lo, hi + 1)), len(fg))
    chosen = [fg[int(rng.integers(len(fg)))]]
    while len(chosen) < n:
        friends = sorted({j for i in chosen for j in structure.cooccurring_with(i)} - set(chosen) - {bg})
        if friends and rng.random() < cfg.scene_cooccur_bias:
            chosen.append(friends[int(rng.integers(len(friends)))])
        else:
            rest = [i for i in fg if i not in chosen]
            chosen.append(rest[int(rng.integers(len(rest)))])
    return chosen


def _layout(rng, cfg: SimConfig, chosen: list[int], bg: int | None) -> np.ndarray:
    h, w = cfg.image_size
    need = max(1, int(math.ceil(cfg.min_area * h * w)))
    classes = chosen + ([bg] if bg is not None else [])
    for _ in range(50):
        if cfg.shape == "voronoi":
            label = _voronoi(rng, classes, h, w)
        else:
            canvas, objects = (bg, chosen) if bg is not None else (chosen[0], chosen[1:])
            label = np.full((h, w), canvas, dtype=np.int64)
            for cls_ in objects:
                label[_shape_mask(rng, cfg.shape, h, w)] = cls_
        counts = np.array([(label == k).sum() for k in classes])
        if (counts >= need).all():
            return label
    for _ in range(200):  # a partition with even sites always succeeds for feasible min_area
        label = _voronoi(rng, classes, h, w)
        if all((label == k).sum() >= need for k in classes):
            return label
    raise ValueError(f"cannot place {len(classes)} categories of area >= min_area={cfg.min_area} in a "
                     f"{h}x{w} image: lower SimConfig.min_area or n_present")


def _render(rng, cfg: SimConfig, label: np.ndarray, dataset: str | None, num_classes: int) -> np.ndarray:
    from .plots import label_palette

    pal = label_palette(dataset, num_classes).astype(np.float32)
    img = pal[label]
    if cfg.image_noise > 0:
        img = img + rng.standard_normal(img.shape).astype(np.float32) * (cfg.image_noise * 255.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_scene(vocab, cfg: SimConfig | None = None, index: int = 0, *,
               structure: CategoryStructure | None = None, variant: str = "sclip") -> Sample:
    """One simulated scene (SIMULATED): a label map over ``vocab`` and its rendering, reproducible from
    ``(cfg.seed, index)``. ``meta`` records the present categories, the background and ``label="SIMULATED"``."""
    cfg = cfg or SimConfig()
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    v, dataset, dataset_bg = resolve_vocabulary(vocab, variant)
    c = v.num_classes
    bg = _background(cfg, c, dataset_bg)
    structure = structure or CategoryStructure.for_config(c, cfg, bg)
    if structure.num_classes != c:
        raise ValueError(f"structure has {structure.num_classes} classes, the vocabulary {c}")
    rng = np.random.default_rng([cfg.seed, index, 0x5CE7E])
    chosen = _draw_categories(rng, cfg, structure, bg)
    label = _layout(rng, cfg, chosen, bg)
    image = _render(rng, cfg, label, dataset, c)
    present = sorted(int(k) for k in np.unique(label))
    meta = {"dataset": f"sim:{dataset or v.variant}", "index": index, "seed": cfg.seed, "present": present,
            "background": bg, "label": LABEL}
    return Sample(id=f"sim_{cfg.seed}_{index:06d}", image=image, label=label, regions=None, meta=meta)


@dataclass(frozen=True)
class SimSpec:
    """The dataset spec of a simulated split (the fields downstream reads from a real ``DatasetSpec``)."""

    name: str
    title: str
    num_classes: int
    background: int | None
    reduce_zero_label: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "num_classes": self.num_classes,
                "background": self.background, "reduce_zero_label": self.reduce_zero_label, "label": LABEL}


class SimDataset(SampleSequence):
    """``n_images`` simulated scenes over ``vocab``, with the real datasets' interface (SIMULATED)."""

    def __init__(self, vocab="voc21", cfg: SimConfig | None = None, n_images: int = 8, *,
                 structure: CategoryStructure | None = None, variant: str = "sclip",
                 indices: Sequence[int] | None = None):
        if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
            raise ValueError(f"n_images must be an integer >= 1, got {n_images!r}")
        self.cfg = cfg or SimConfig()
        self.vocab, self.dataset, dataset_bg = resolve_vocabulary(vocab, variant)
        c = self.vocab.num_classes
        bg = _background(self.cfg, c, dataset_bg)
        self.structure = structure or CategoryStructure.for_config(c, self.cfg, bg)
        self.variant = variant
        self.n_images = n_images
        self._indices = list(range(n_images)) if indices is None else [int(i) for i in indices]
        name = f"sim_{self.dataset or self.vocab.variant}"
        self.spec = SimSpec(name=name, title=f"SIM-{self.dataset or 'custom'}", num_classes=c, background=bg)
        self.ids = [f"sim_{self.cfg.seed}_{i:06d}" for i in self._indices]

    def __repr__(self) -> str:
        return f"SimDataset({self.spec.name!r}, n={len(self)}, seed={self.cfg.seed}, {LABEL})"

    def sample(self, i: int) -> Sample:
        if isinstance(i, bool) or not isinstance(i, int) or not -len(self) <= i < len(self):
            raise IndexError(f"image index {i!r} out of range for {len(self)} images")
        vocab = self.dataset if self.dataset is not None else self.vocab
        return make_scene(vocab, self.cfg, self._indices[i], structure=self.structure, variant=self.variant)

    def select(self, indices: Sequence[int]) -> "SimDataset":
        """A dataset over a subset of the images (e.g. one torchrun shard); the scenes stay the same."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < len(self):
                raise ValueError(f"indices: {i} is out of range for {len(self)} images")
        vocab = self.dataset if self.dataset is not None else self.vocab
        return SimDataset(vocab, self.cfg, self.n_images, structure=self.structure, variant=self.variant,
                          indices=[self._indices[i] for i in idx])


# ======================================================================================== the sources
def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (σ in pixels, reflect padding) of (C, H, W) maps; σ = 0 returns them unchanged."""
    if sigma <= 0:
        return maps
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c, h, w = maps.shape
    out = maps[:, None]
    pad_y, pad_x = min(r, h - 1), min(r, w - 1)
    ky = k[r - pad_y:r + pad_y + 1]
    kx = k[r - pad_x:r + pad_x + 1]
    out = F.conv2d(F.pad(out, (0, 0, pad_y, pad_y), mode="reflect"), (ky / ky.sum()).view(1, 1, -1, 1))
    out = F.conv2d(F.pad(out, (pad_x, pad_x, 0, 0), mode="reflect"), (kx / kx.sum()).view(1, 1, 1, -1))
    return out[:, 0]


def _one_hot(label: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    valid = label != ignore_index
    oh = F.one_hot(torch.where(valid, label, 0), num_classes).permute(2, 0, 1).float()
    return oh * valid[None].float()


def _present(onehot: torch.Tensor) -> torch.Tensor:
    """Indices of the categories with at least one pixel."""
    return torch.nonzero(onehot.flatten(1).amax(1) > 0).flatten()


def _blur_present(onehot: torch.Tensor, present: torch.Tensor, blur: float) -> torch.Tensor:
    """``gaussian_blur(onehot, blur·short side)``, computed only on the present categories (the rest are 0)."""
    if blur <= 0:
        return onehot
    out = torch.zeros_like(onehot)
    out[present] = gaussian_blur(onehot[present], blur * min(onehot.shape[-2:]))
    return out


def global_scores(presence: torch.Tensor, structure: CategoryStructure, cfg: SimConfig) -> torch.Tensor:
    """Global cosine per class (C,) before noise: ``floor + span·(p_c + leak_sim·max W_sim·p + leak_co·max W_co·p)
    + class_bias·b_c``."""
    leak_sim = (structure.similar * presence[None]).amax(dim=1)
    leak_co = (structure.cooccur * presence[None]).amax(dim=1)
    signal = presence + cfg.global_leak_similar * leak_sim + cfg.global_leak_cooccur * leak_co
    return cfg.global_floor + cfg.global_span * signal + cfg.global_class_bias * structure.global_bias


def dense_class_maps(onehot: torch.Tensor, structure: CategoryStructure, cfg: SimConfig) -> torch.Tensor:
    """Dense cosine per class (C, H, W) before resizing and noise: ``floor + span·(B + leak_sim·W_sim B + leak_co·W_co B)
    + class_bias·b_c`` with ``B`` the blurred one-hot maps."""
    present = _present(onehot)
    b = _blur_present(onehot, present, cfg.dense_blur)
    signal = b
    for leak, w in ((cfg.dense_leak_similar, structure.similar), (cfg.dense_leak_cooccur, structure.cooccur)):
        if leak > 0:  # only the present categories' maps are non-zero
            signal = signal + leak * torch.einsum("cd,dhw->chw", w[:, present], b[present])
    bias = cfg.dense_class_bias * structure.dense_bias
    return cfg.dense_floor + cfg.dense_span * signal + bias[:, None, None]


def clipseg_class_maps(onehot: torch.Tensor, structure: CategoryStructure, cfg: SimConfig,
                       rng: np.random.Generator) -> torch.Tensor:
    """CLIPSeg's pre-sigmoid evidence per class (C, H, W): ``keep_c·B'_c + fp_c·F_c`` (noise is added by the
    caller per query). ``keep_c = 1 − miss·u``; ``fp_c = false_positive·susceptibility_c·u'`` for absent c, with
    support ``F_c`` = the region of its most similar present category, else a random blob."""
    c, h, w = onehot.shape
    present_idx = _present(onehot)
    b = _blur_present(onehot, present_idx, cfg.clipseg_blur)
    present = torch.zeros(c, dtype=torch.bool)
    present[present_idx] = True
    keep = 1.0 - cfg.clipseg_miss * torch.from_numpy(rng.random(c).astype(np.float32))
    fp_strength = cfg.clipseg_false_positive * structure.fp_susceptibility * torch.from_numpy(
        rng.random(c).astype(np.float32))
    x = keep[:, None, None] * b
    if cfg.clipseg_false_positive > 0:
        for k in torch.nonzero(~present).flatten().tolist():
            partners = [j for j in structure.similar_to(k) if present[j]]
            if partners:
                support = b[partners[0]]
            else:
                support = torch.from_numpy(_shape_mask(rng, "ellipse", h, w).astype(np.float32)) * 0.5
            x[k] = x[k] + fp_strength[k] * support
    return x


def clipseg_activation(x: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """CLIPSeg's sigmoid map: ``sigmoid(gain·(x − 0.5))``."""
    return torch.sigmoid(cfg.clipseg_gain * (x - 0.5))


class SimBackend:
    """A backend whose sources are simulated from the ground truth (``sample.label``): SIMULATED.

    ``encode`` returns the same :class:`~s2c2seg.bundle.FeatureBundle` the real segmenter returns, on the
    protocol's geometry (short-side resize, sliding-window crops, a patch grid per crop) or one whole-image
    crop (``cfg.whole_image``). Everything downstream runs on it unchanged.
    """

    def __init__(self, cfg: SimConfig | None = None, structure: CategoryStructure | None = None, **dials):
        """``cfg`` (default :class:`SimConfig`), with any field overridden by ``dials`` (e.g. ``dense_blur=0.1``);
        ``structure``: a fixed :class:`CategoryStructure` (default: the one ``cfg`` implies per vocabulary)."""
        cfg = SimConfig() if cfg is None else cfg
        if not isinstance(cfg, SimConfig):
            raise ValueError(f"cfg must be a SimConfig, got {type(cfg).__name__}")
        self.cfg = cfg.replace(**dials) if dials else cfg
        if structure is not None and not isinstance(structure, CategoryStructure):
            raise ValueError(f"structure must be a CategoryStructure, got {type(structure).__name__}")
        self._structure = structure
        self._structures: dict[tuple[int, int | None], CategoryStructure] = {}

    def describe(self) -> dict:
        return {"backend": "sim", "label": LABEL, "model": "simulation (no weights)", "config": self.cfg.to_json(),
                "structure": self._structure.source if self._structure is not None else (
                    f"file {self.cfg.similarity}" if self.cfg.similarity else f"generated(seed={self.cfg.seed})")}

    def structure(self, num_classes: int, background: int | None = None) -> CategoryStructure:
        """The category structure used for a ``num_classes`` vocabulary (cached)."""
        if self._structure is not None:
            if self._structure.num_classes != num_classes:
                raise ValueError(f"the backend's structure has {self._structure.num_classes} classes, the "
                                 f"vocabulary {num_classes}")
            return self._structure
        key = (num_classes, background)
        if key not in self._structures:
            self._structures[key] = CategoryStructure.for_config(num_classes, self.cfg, background)
        return self._structures[key]

    def encode(self, sample: Sample, vocab, protocol: Protocol | None = None) -> FeatureBundle:
        """The simulated feature bundle of ``sample`` for ``vocab`` under ``protocol`` (None: whole image at its
        own size). Reproducible from ``(cfg.seed, sample.id)``."""
        cfg = self.cfg
        if not isinstance(sample, Sample):
            raise ValueError(f"sample must be a Sample, got {type(sample).__name__}")
        if sample.label is None:
            raise ValueError(f"sample {sample.id!r} has no label: the simulation backend builds its features "
                             f"from the ground truth (sample.label)")
        v, _, dataset_bg = resolve_vocabulary(vocab)
        c = v.num_classes
        label = torch.from_numpy(np.asarray(sample.label, dtype=np.int64))
        ignore = int(sample.meta.get("ignore_index", IGNORE_INDEX))  # 65535 for the 16-bit .tif datasets
        bad = label[(label != ignore) & ((label < 0) | (label >= c))]
        if bad.numel():
            raise ValueError(f"sample {sample.id!r}: label value {int(bad[0])} is not a class of the "
                             f"{c}-class vocabulary")
        if cfg.background == "auto" and dataset_bg is None:
            bg = sample.meta.get("background")  # a simulated scene records it; a real image has none
            bg = bg if isinstance(bg, int) and 0 <= bg < c else None
        else:
            bg = _background(cfg, c, dataset_bg)
        structure = self.structure(c, bg)
        h, w = label.shape
        if protocol is None:
            protocol = Protocol(short_side=min(h, w), crop=0, stride=1)
        if not isinstance(protocol, Protocol):
            raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
        rng = np.random.default_rng([cfg.seed, zlib.crc32(sample.id.encode("utf-8")), 0xB0D1E])
        q2c = v.query_to_class
        q = q2c.numel()
        onehot = _one_hot(label, c, ignore)
        labelled = float((label != ignore).sum().clamp(min=1))
        area = onehot.flatten(1).sum(1) / labelled

        # global cosines
        presence = torch.where(area > 0, area ** cfg.global_area_power, torch.zeros_like(area))
        g = global_scores(presence, structure, cfg)[q2c]
        g = g + cfg.global_noise * torch.from_numpy(rng.standard_normal(q).astype(np.float32))

        # dense logits per crop
        from .slide import rescale_size, slide_boxes

        rh, rw = rescale_size(h, w, protocol.short_side)
        boxes = torch.tensor([[0, rh, 0, rw]]) if cfg.whole_image else slide_boxes(rh, rw, protocol.crop,
                                                                                    protocol.stride)
        dense = dense_class_maps(onehot, structure, cfg)
        if (rh, rw) != (h, w):
            dense = F.interpolate(dense[None], size=(rh, rw), mode="bilinear", align_corners=False)[0]
        d = max(1, cfg.dense_downsample)
        bh, bw = int(boxes[0, 1] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 2])
        gh, gw = max(1, math.ceil(bh / d)), max(1, math.ceil(bw / d))
        crops = torch.stack([F.adaptive_avg_pool2d(dense[:, y1:y2, x1:x2], (gh, gw))
                             for y1, y2, x1, x2 in boxes.tolist()])
        dense_q = crops[:, q2c]
        if cfg.dense_noise > 0:
            dense_q = dense_q + cfg.dense_noise * torch.from_numpy(
                rng.standard_normal(tuple(dense_q.shape)).astype(np.float32))

        # CLIPSeg
        x = clipseg_class_maps(onehot, structure, cfg, rng)[q2c]
        if cfg.clipseg_noise > 0:
            x = x + cfg.clipseg_noise * torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
        maps = clipseg_activation(x, cfg)
        mean = maps.mean(dim=(1, 2))
        if max(h, w) > cfg.clipseg_max_side:
            s = cfg.clipseg_max_side / max(h, w)
            maps = F.interpolate(maps[None], size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")[0]

        meta = {"backend": "sim", "label": LABEL, "image_id": sample.id, "seed": cfg.seed,
                "structure": structure.source}
        return FeatureBundle(
            dense_logits=dense_q.float().contiguous(), crop_boxes=boxes.long(),
            resized_hw=torch.tensor([rh, rw], dtype=torch.long), image_hw=torch.tensor([h, w], dtype=torch.long),
            global_sim=g.float(), clipseg_mean=mean.float(), clipseg_maps=maps.to(torch.float16),
            query_to_class=q2c.clone(), regions=None if sample.regions is None else torch.from_numpy(
                np.asarray(sample.regions, dtype=np.int32)), meta=meta)
