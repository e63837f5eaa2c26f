"""Simulated scenes and datasets (SIMULATED): label maps over a real vocabulary, drawn with the category
structure, and a dataset with the real datasets' interface."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.sample import Sample, SampleSequence
from ..data.vocab import Vocabulary
from .config import LABEL, SimConfig
from .structure import CategoryStructure, _check_num_classes

__all__ = ["resolve_vocabulary", "make_scene", "SimSpec", "SimDataset"]


def resolve_vocabulary(vocab, variant: str = "sclip") -> tuple[Vocabulary, str | None, int | None]:
    """(Vocabulary, dataset key or None, dataset background index or None) from a dataset key (``"voc21"``),
    a :class:`Vocabulary`, a list of names / synonym lists, or a class count."""
    if isinstance(vocab, Vocabulary):
        return vocab, None, None
    if isinstance(vocab, str):
        from ..data.datasets import get_spec
        from ..data.names import vocabulary

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


def shape_params(rng, h: int, w: int) -> tuple[float, float, float, float]:
    """A random shape's (centre y, centre x, radius y, radius x) in an ``h x w`` image."""
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    return cy, cx, ry, rx


def shape_mask(kind: str, h: int, w: int, params: tuple[float, float, float, float]) -> np.ndarray:
    """(h, w) bool mask of an ``ellipse`` or ``rectangle`` with :func:`shape_params`."""
    cy, cx, ry, rx = params
    yy, xx = np.mgrid[0:h, 0:w]
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
                label[shape_mask(cfg.shape, h, w, shape_params(rng, h, w))] = cls_
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
    from ..palettes import label_palette

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

    def select(self, indices: Sequence[int]) -> SimDataset:
        """A dataset over a subset of the images (e.g. one torchrun shard); the scenes stay the same."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < len(self):
                raise ValueError(f"indices: {i} is out of range for {len(self)} images")
        vocab = self.dataset if self.dataset is not None else self.vocab
        return SimDataset(vocab, self.cfg, self.n_images, structure=self.structure, variant=self.variant,
                          indices=[self._indices[i] for i in idx])
