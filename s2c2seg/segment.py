"""Segment your own images with your own words: :func:`segment_image` and the engine of ``s2c2seg segment``.

One path for both (issue 18): the words become a :class:`~s2c2seg.data.vocab.Vocabulary`
(:func:`parse_classes`: classes separated by ``,``, synonyms of one class by ``;``), the protocol is the
dataset's (``dataset=``) or the baseline's :data:`DEFAULT_PROTOCOL_DATASET` row, the preset is resolved by
:func:`method_run`, the backend is built once per process (``segment_backends``: the memo ``BACKENDS``), and
each image runs ``backend.encode`` then ``predict.predict`` (with a :class:`~s2c2seg.predict.BundleView`, so the
explanation, :mod:`s2c2seg.explain`, reads the numbers the prediction used).

``--backend sim`` on a user's image: the simulation builds its features from a ground truth, and a user's image
has none. :func:`simulated_truth` draws one with the simulation's own scene rules (``sim.make_scene``) at the
image's size, seeded by the image's pixels; the image's content is not read. The output is SIMULATED and says so.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary
from .encode_side import EncodeSpec
from .segment_backends import (BACKEND_MEMO_SIZE, BACKENDS, BackendSpec, clear_backends, get_backend, patch_size,
                               simulated_truth)

__all__ = ["DEFAULT_BASELINE", "DEFAULT_PROTOCOL_DATASET", "CUSTOM_DATASET", "METHOD_CHOICES", "BACKEND_MEMO_SIZE",
           "DEFAULT_BACKEND", "BACKENDS", "BackendSpec", "ClassSummary", "Segmentation", "ImageSegmenter",
           "segment_image", "parse_classes", "load_input", "method_run", "get_backend", "clear_backends",
           "simulated_truth"]

DEFAULT_BASELINE = "proxyclip"
"""The baseline of ``segment`` when none is named: the one the authors' release wraps."""
DEFAULT_PROTOCOL_DATASET = "voc20"
"""The protocol row a vocabulary of one's own takes without ``dataset``: the baseline's VOC-20 row (no background
class, ``prob_thd`` 0, the baseline's resize and sliding window). Every run description names it."""
CUSTOM_DATASET = "custom"
"""The dataset name a preset is resolved for without ``dataset``: no published operating point, so the release's
config defaults (``presets.get_preset``; for ``released`` these include one refinement round)."""
METHOD_CHOICES = ("s2c2seg", "baseline")
"""What ``segment`` runs (the oracle needs a ground truth, which a user's image has not)."""
DEFAULT_BACKEND = "auto"
"""The backend of ``segment`` when none is named: real weights when they load, else the simulation (labelled)."""


# ---------------------------------------------------------------------------------------------- inputs
def parse_classes(text: str) -> list[list[str]]:
    """``"cat; kitty, sofa, floor"`` -> ``[["cat", "kitty"], ["sofa"], ["floor"]]``: classes split on ``,``,
    synonyms on ``;``, each name stripped. Empty or repeated names raise naming them."""
    if not isinstance(text, str):
        raise ValueError(f"classes must be a string such as 'cat; kitty, sofa, floor', got {type(text).__name__}")
    classes = [[n.strip() for n in part.split(";")] for part in text.split(",")]
    classes = [[n for n in names if n] for names in classes]
    if not any(classes):
        raise ValueError(f"the class list {text!r} is empty (give names separated by ',', synonyms by ';', "
                         "e.g. --classes 'cat; kitty, sofa, floor')")
    empty = [i for i, names in enumerate(classes) if not names]
    if empty:
        raise ValueError(f"the class list {text!r} has an empty class at position {empty[0] + 1} (remove the "
                         "stray ',' or ';')")
    return classes


def _check_repeats(vocab: Vocabulary, where: str) -> None:
    seen: set[str] = set()
    for name in vocab.queries:
        if name in seen and name not in vocab.shared:
            raise ValueError(f"{where}: the name {name!r} is given twice (every name once: remove the repeat)")
        seen.add(name)


def _vocabulary(classes, dataset: str | None, protocol: Protocol) -> tuple[Vocabulary, str]:
    """(vocabulary, where it came from) of ``classes`` (a string, a list of names / synonym lists, a Vocabulary,
    or a name file :class:`~pathlib.Path`), else ``dataset``'s packaged names in the protocol's variant."""
    from .data.names import NAME_VARIANTS, vocabulary

    if classes is None:
        if dataset is None:
            raise ValueError("no classes: give classes (e.g. 'cat; kitty, sofa, floor'), a name file or a dataset")
        return vocabulary(dataset, protocol.name_variant), f"{dataset} ({protocol.name_variant} name file)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a repeated synonym: refused below, on one line
        if isinstance(classes, Vocabulary):
            vocab, where = classes, "the vocabulary given"
        elif isinstance(classes, Path):
            sep = NAME_VARIANTS.get(protocol.name_variant, "; ")
            vocab, where = Vocabulary.from_file(classes, sep=sep), f"{classes} (synonyms split on {sep!r})"
        elif isinstance(classes, str):
            vocab, where = Vocabulary.from_names(parse_classes(classes)), "classes"
        else:
            items = list(classes)
            if not items:
                raise ValueError("the class list is empty (give at least one name)")
            vocab, where = Vocabulary.from_names(items), "classes"
    _check_repeats(vocab, where)
    return vocab, where


def load_input(image) -> tuple[np.ndarray, str]:
    """((H, W, 3) uint8 RGB, name) of a path (``io.load_image``), a PIL image or an (H, W, 3) uint8 array."""
    from .io import load_image, to_rgb_uint8

    if isinstance(image, (str, Path)):
        return load_image(image), Path(image).stem
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return np.ascontiguousarray(image), "image"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return to_rgb_uint8(image), Path(getattr(image, "filename", "") or "image").stem
    raise ValueError(f"image must be a path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")


# ---------------------------------------------------------------------------------------------- preset
def method_run(method: str, dataset: str, protocol, preset=None, overrides=None, baseline: str | None = None):
    """The :class:`~s2c2seg.runspec.RunSpec` of one run of ``method`` on ``dataset`` with ``overrides`` (dotted
    keys, e.g. ``{"select.tau": "0.5"}``): the one resolver (``runspec.resolve_run``), as ``eval``'s."""
    from .runspec import resolve_run

    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of {list(METHOD_CHOICES)}, got {method!r}")
    if overrides and method != "s2c2seg":
        raise ValueError(f"--set {next(iter(overrides))}: method {method!r} has no preset to override "
                         "(use --method s2c2seg)")
    try:
        return resolve_run(method, dataset, protocol, preset=preset, overrides=dict(overrides or {}),
                           baseline=baseline)
    except ValueError as exc:
        raise ValueError(f"{exc} (fix --set KEY=VALUE or --preset)") from exc


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ClassSummary:
    """One class on one image: its share of the pixels, whether CSS kept it, and its scores."""

    index: int
    name: str
    synonyms: tuple[str, ...]
    area_percent: float
    selected: bool | None
    """In the prediction's subset (``Prediction.subset``); None for the baseline (no selection)."""
    scores: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "synonyms": list(self.synonyms),
                "area_percent": self.area_percent, "selected": self.selected, "scores": self.scores}


@dataclass
class Segmentation:
    """What :func:`segment_image` returns for one image."""

    name: str
    image: np.ndarray
    """(H, W, 3) uint8 RGB, as read."""
    label_map: np.ndarray
    """(H, W) int64 class indices of the vocabulary."""
    classes: list[ClassSummary]
    prediction: Any
    """The :class:`~s2c2seg.predict.Prediction`."""
    run: dict
    """The run's description: backend (its ``label``), baseline, method, preset values, protocol, vocabulary."""
    vocab: Vocabulary | None = None
    """The vocabulary the words became."""
    baseline_map: np.ndarray | None = None
    """(H, W) the baseline's label map on the same bundle (``method="s2c2seg"``), for comparison."""
    explanation: dict | None = None
    """:mod:`s2c2seg.explain`'s data (``explain=True``)."""
    alpha: float | list[float] | None = None
    """CSS's consistency weight α: the image's (paper preset) or one per sliding window (released presets)."""

    @property
    def label(self) -> str:
        """``""`` for real weights, else ``SIMULATED`` / ``RANDOM WEIGHTS``."""
        return str(self.run["backend"].get("label", ""))

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def selected(self) -> list[int] | None:
        """The classes CSS kept (sorted), None for the baseline."""
        sub = self.prediction.subset
        return None if sub is None else sorted(int(i) for i in sub.tolist())

    def to_json(self) -> dict:
        h, w = self.label_map.shape
        return {"image": self.name, "size": [h, w], "label": self.label, "selected": self.selected,
                "alpha": self.alpha, "classes": [c.to_json() for c in self.classes], "run": self.run}


# ---------------------------------------------------------------------------------------------- the engine
class ImageSegmenter:
    """One run's setting, checked and built once (vocabulary, protocol, preset, backend), applied to images."""

    def __init__(self, classes=None, *, baseline: str = DEFAULT_BASELINE, method: str = "s2c2seg", preset=None,
                 overrides=None, backend=DEFAULT_BACKEND, size: str = "full", device: str | None = None,
                 dataset: str | None = None, cache_dir: str | Path | None = None):
        from .data.datasets import get_spec
        from .data.protocols import get_protocol
        from .factories import MODEL_BACKENDS

        if dataset is not None:
            from .factories import benchmark_key

            dataset = benchmark_key(dataset)
        self.dataset, self.baseline, self.method = dataset, baseline, method
        self.protocol = get_protocol(dataset or DEFAULT_PROTOCOL_DATASET, baseline)
        self.protocol_source = (f"{dataset} row of the {baseline} table" if dataset else
                                f"{DEFAULT_PROTOCOL_DATASET} row of the {baseline} table (no dataset given: a "
                                "vocabulary without a background class)")
        self.vocab, self.vocab_source = _vocabulary(classes, dataset, self.protocol)
        self.run = method_run(method, dataset or CUSTOM_DATASET, self.protocol, preset, overrides, baseline)
        self.preset = self.run.preset
        self.background = get_spec(dataset).background if dataset else None
        self.sources = frozenset(self.run.encode.sources)
        self._backend: tuple[Any, dict] | None = None
        self._spec = None
        if isinstance(backend, str):
            model = backend in MODEL_BACKENDS  # only a Segmenter reads the encode side and the source groups
            self._spec = BackendSpec(backend, baseline, size, device, None if cache_dir is None else str(cache_dir),
                                     self.run.encode if model else EncodeSpec())
        else:
            self.run.encode.check(backend.describe(), "backend")
            self._backend = (backend, dict(backend.describe()))
        self.cache = None
        if cache_dir is not None:
            from .cache import BundleCache

            self.cache = BundleCache(cache_dir)

    @property
    def backend(self):
        """The backend, built (or taken from :data:`BACKENDS`) on first use: every check above runs first."""
        if self._backend is None:
            self._backend = get_backend(self._spec)
        return self._backend[0]

    @property
    def backend_info(self) -> dict:
        """The backend's ``describe()`` (plus ``fallback_reason`` when ``auto`` fell back to the simulation)."""
        self.backend  # noqa: B018 - builds it
        return self._backend[1]

    @property
    def label(self) -> str:
        return str(self.backend_info.get("label", ""))

    @property
    def class_names(self) -> list[str]:
        """One display name per class (a dataset's background class shown as ``background``)."""
        names = list(self.vocab.names)
        if self.background is not None and self.dataset is not None:
            names[self.background] = "background"
        return names

    def describe(self) -> dict:
        """The run's description (every ``<name>.json`` carries it)."""
        from . import __version__

        preset = self.preset.to_json(self.baseline) if self.preset is not None else None
        return {"backend": self.backend_info, "baseline": self.baseline, "method": self.method, "preset": preset,
                "dataset": self.dataset, "protocol": self.protocol.to_json(), "protocol_source": self.protocol_source,
                "vocabulary": {**self.vocab.to_json(), "source": self.vocab_source}, "package_version": __version__}

    def _is_sim(self) -> bool:
        return self.backend_info.get("backend") == "sim" and hasattr(self.backend, "cfg")

    def check_image(self, image: np.ndarray, name: str) -> None:
        """Raise naming the image when it is smaller than one model patch."""
        patch = patch_size(self.backend)
        h, w = image.shape[:2]
        if patch is not None and min(h, w) < patch:
            raise ValueError(f"image {name!r} is {h}x{w} pixels, smaller than one {patch}-pixel patch of the model "
                             f"(give an image at least {patch} pixels on each side)")

    def encode(self, image: np.ndarray, name: str):
        """The image's feature bundle (through ``cache_dir`` when given)."""
        label, meta = None, {}
        if self._is_sim():
            label, bg = simulated_truth(self.backend.cfg, image, self.vocab)
            meta = {"background": bg}
        sample = Sample(id=name, image=image, label=label, meta=meta)
        if self.cache is None:
            return self.backend.encode(sample, self.vocab, self.protocol)
        from .cache import bundle_key

        key = bundle_key(self.backend_info, self.protocol, self.vocab, sample, dataset="segment")
        bundle = self.cache.get(key, need=self.sources)
        if bundle is None:
            bundle = self.backend.encode(sample, self.vocab, self.protocol)
            self.cache.extend(key, bundle)
        return bundle

    def __call__(self, image, *, name: str | None = None, explain: bool = False) -> Segmentation:
        """Segment one image (path, PIL image or (H, W, 3) uint8 array)."""
        from .explain import alpha_of
        from .predict import BundleView, predict

        array, default_name = load_input(image)
        name = name or default_name
        self.check_image(array, name)
        view = BundleView(self.encode(array, name))
        pred = self.run.predict(view, background=self.background)
        baseline_map = None
        if self.method != "baseline":
            baseline_map = predict(view, self.protocol, "baseline").label_map.numpy()
        detail = self._explanation(view, pred) if self.method != "baseline" else None
        return Segmentation(name=name, image=array, label_map=pred.label_map.numpy(),
                            classes=self._summary(pred, detail), prediction=pred, run=self.describe(), vocab=self.vocab,
                            baseline_map=baseline_map, explanation=detail if explain else None,
                            alpha=None if detail is None else alpha_of(detail))

    def _explanation(self, view, pred) -> dict:
        from .explain import explain_paper, explain_released

        if self.run.reading == "released":
            out = explain_released(view, self.protocol, self.preset)
        else:
            out = explain_paper(view, pred, self.preset, self.vocab, self.background)
        return {**out, "queries": self.vocab.queries, "classes": self.class_names}

    def _summary(self, pred, detail: dict | None) -> list[ClassSummary]:
        from .explain import class_scores

        c = self.vocab.num_classes
        counts = np.bincount(pred.label_map.numpy().reshape(-1), minlength=c)[:c]
        total = max(1, int(counts.sum()))
        subset = None if pred.subset is None else {int(i) for i in pred.subset.tolist()}
        scores = class_scores(detail, c) if detail is not None else [{} for _ in range(c)]
        names = self.class_names
        return [ClassSummary(i, names[i], tuple(self.vocab.classes[i]), 100.0 * int(counts[i]) / total,
                             None if subset is None else i in subset, scores[i]) for i in range(c)]


def segment_image(image, classes: str | Sequence | Vocabulary | Path | None = None, *,
                  baseline: str = DEFAULT_BASELINE, method: str = "s2c2seg", preset=None, overrides=None,
                  backend=DEFAULT_BACKEND, size: str = "full", device: str | None = None, dataset: str | None = None,
                  cache_dir: str | Path | None = None, explain: bool = False) -> Segmentation:
    """Segment one image with one's own words (module docstring): ``classes`` is ``"cat; kitty, sofa, floor"``,
    a list of names / synonym lists, a Vocabulary or a name file (a Path), or None with ``dataset`` (its names and
    protocol). ``preset`` / ``overrides`` as ``--preset`` / ``--set``; ``backend`` a name (``auto`` | ``pretrained``
    | ``random`` | ``sim``, built once per process: :data:`BACKENDS`) or a backend object. ``explain=True`` fills
    :attr:`Segmentation.explanation`."""
    runner = ImageSegmenter(classes, baseline=baseline, method=method, preset=preset, overrides=overrides,
                            backend=backend, size=size, device=device, dataset=dataset, cache_dir=cache_dir)
    return runner(image, explain=explain)
