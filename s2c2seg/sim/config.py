"""The simulation's configuration: one named dial per effect (SIMULATED)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..budget import MemoryBudget

__all__ = ["LABEL", "IGNORE_INDEX", "SHAPES", "WINDOW_STORAGES", "SimConfig", "EFFECT_DIALS"]

LABEL = "SIMULATED"
"""What every output of this module says it is."""
IGNORE_INDEX = 255
SHAPES = ("ellipse", "rectangle", "voronoi")
WINDOW_STORAGES = ("auto", "exact", "compact-float16")
"""How ``window_local`` is stored (recorded in ``bundle.meta["storage"]``, as the contract asks): ``auto`` is the
budget's rule (:func:`s2c2seg.budget.window_storage`), the others a fixed dtype at the window size."""
_STORAGE_DTYPES = {"auto": "auto", "exact": "float32", "compact-float16": "float16"}
"""``SimConfig.window_storage`` -> the request :func:`s2c2seg.budget.window_storage` reads."""


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
    # ---- the released pipeline's per-window sources (``window_local``, ``window_global``, ``window_pad``,
    # ``input_image``; see docs/simulation.md)
    released_sources: bool = True
    """Also produce the released pipeline's per-window sources (False: those bundle fields are None, e.g. for
    very large vocabularies, where ``window_local`` is N·Q·crop² values)."""
    window_storage: str = "auto"
    """``auto`` (exact while ``budget.window_bytes`` holds it, else float16, else float16 reduced to the largest
    long side that fits: ``compact-<s>-float16``), ``exact`` (float32) or ``compact-float16`` (lossy, half the
    bytes); an explicit storage that does not fit the budget stops the encode before any source is built."""
    budget: MemoryBudget = MemoryBudget()
    """The bytes one image may hold (:class:`s2c2seg.budget.MemoryBudget`): the window storage and the chunks."""
    window_multiple: int = 56
    """Sliding windows (crop > 0) are zero-padded, centred, to a multiple of this side, as the release does
    (its 336 / 224 crops already are; only images smaller than the crop get padding); 0 = never pad."""

    def __post_init__(self) -> None:
        def bad(name, why):
            raise ValueError(f"SimConfig.{name}: {why}, got {getattr(self, name)!r}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _NONNEG_FLOATS and (isinstance(v, bool) or not isinstance(v, (int, float))
                                             or not math.isfinite(v) or v < 0):
                bad(f.name, "must be a finite number >= 0")
        for name in ("seed", "similar_group", "cooccur_group", "similar_neighbours", "dense_downsample",
                     "clipseg_max_side", "window_multiple"):
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
        for name in ("whole_image", "released_sources"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be a bool")
        if self.window_storage not in WINDOW_STORAGES:
            bad("window_storage", f"must be one of {WINDOW_STORAGES}")
        try:
            object.__setattr__(self, "budget", MemoryBudget.of(self.budget))
        except (TypeError, ValueError) as exc:
            bad("budget", f"must be a MemoryBudget ({exc})")
        if self.similarity is not None and not isinstance(self.similarity, (str, Path)):
            bad("similarity", "must be a file path or None")

    @property
    def storage_request(self) -> str:
        """``window_storage`` as :func:`s2c2seg.budget.window_storage` reads it (``auto``, ``float32``, ``float16``)."""
        return _STORAGE_DTYPES[self.window_storage]

    @property
    def n_present_range(self) -> tuple[int, int]:
        n = self.n_present
        return (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))

    def replace(self, **overrides) -> SimConfig:
        """A copy with ``overrides``; an unknown dial raises ``ValueError`` naming it."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown SimConfig field(s): {sorted(unknown)}")
        return replace(self, **overrides)

    @classmethod
    def ideal(cls, **overrides) -> SimConfig:
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
