"""The notebooks' session: backend, data, vocabulary, protocol, output folder, figures and the record.

:func:`open_session` builds it (``auto`` resolves to pretrained weights when they load, else the
simulation; data from a real root, else the simulation's scenes or generated fixture data);
:func:`evaluate_points` evaluates named experiment points (:mod:`s2c2seg.experiments`) on its images
through the one evaluation pass, :func:`s2c2seg.evaluate.run_points`.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .analysis import ConfigResult, finite_tree, markdown_table
from .store import atomic_write, dumps_checked

__all__ = ["Session", "open_session", "evaluate_points", "evaluate_datasets", "class_similarity", "PRESET_POINTS",
           "preset_point"]

PRESET_POINTS = {"paper": "s2c2seg", "released": "released", "released++": "released++"}
"""Preset (:data:`s2c2seg.presets.PRESETS`) -> the experiment point of its full method (the notebooks'
``preset`` parameter)."""


def preset_point(preset: str) -> str:
    """The experiment point key of ``preset``'s full method."""
    if preset not in PRESET_POINTS:
        raise ValueError(f"preset must be one of {list(PRESET_POINTS)}, got {preset!r}")
    return PRESET_POINTS[preset]


class _Remembering:
    """A backend that keeps each bundle it encodes, keyed by everything the encode reads (the sample id, the
    vocabulary's full JSON, the frozen protocol), so a session encodes an image once per vocabulary and protocol."""

    def __init__(self, backend):
        self.backend = backend
        self.bundles: dict[str, Any] = {}

    def describe(self) -> dict:
        return self.backend.describe()

    def encode(self, sample, vocab, protocol):
        key = (sample.id, json.dumps(vocab.to_json(), sort_keys=True), protocol)
        if key not in self.bundles:
            self.bundles[key] = self.backend.encode(sample, vocab, protocol)
        return self.bundles[key]


_LABEL_NOTES = {
    "SIMULATED": "SIMULATED: features come from the simulation backend (a teaching and testing instrument, "
                 "never evidence for the paper's numbers)",
    "RANDOM WEIGHTS": "RANDOM WEIGHTS: the real architectures with random weights (numbers are meaningless)",
}


@dataclass
class Session:
    """What a notebook works with: backend, data, vocabulary, protocol, output folder, record."""

    notebook: str
    backend: Any
    """Object with ``encode(sample, vocab, protocol) -> FeatureBundle`` and ``describe() -> dict``."""
    info: dict
    """``backend.describe()``."""
    backend_requested: str
    dataset_name: str
    dataset: Any
    """Indexable samples (``len``, ``sample(i)`` or ``[i]``)."""
    data_source: str
    """``root <path>``, ``simulation`` or ``generated fixture`` — said in the banner and the record."""
    vocab: Any
    protocol: Any
    out_dir: Path
    params: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ facts
    @property
    def backend_name(self) -> str:
        """What actually ran: ``pretrained``, ``random`` or ``sim``."""
        return str(self.info.get("backend", self.backend_requested))

    @property
    def label(self) -> str:
        """``""`` for pretrained weights, ``"SIMULATED"`` or ``"RANDOM WEIGHTS"`` otherwise."""
        return str(self.info.get("label", ""))

    @property
    def num_classes(self) -> int:
        return int(self.vocab.num_classes)

    @property
    def class_names(self) -> list[str]:
        """One display name per class; the background class (whose first synonym is e.g. ``sky`` in SCLIP's
        VOC21 file) is shown as ``background``."""
        names = list(self.vocab.names)
        bg = self.background
        if bg is not None and not self.params.get("vocabulary") and bg < len(names):
            names[bg] = "background"
        return names

    @property
    def background(self) -> int | None:
        """Index of the dataset's background class (kept by CSS), or None."""
        from .data import get_spec

        try:
            return get_spec(self.dataset_name).background
        except ValueError:
            return None

    def banner(self) -> str:
        """One paragraph for the top of the notebook: which backend ran (and why), on what data."""
        req = self.backend_requested
        how = f"backend {self.backend_name}" + (f" (requested {req!r}" if req != self.backend_name else "")
        if req != self.backend_name:
            reason = self.info.get("fallback_reason") or self.info.get("reason") or ""
            how += f": {reason})" if reason else ")"
        line = f"[{self.notebook}] {how}; data: {self.dataset_name}, {self.data_source}; {len(self)} image(s)"
        if self.label:
            line = f"{self.label} — {line}\n{_LABEL_NOTES.get(self.label, self.label)}"
        return line

    def __len__(self) -> int:
        return len(self.dataset)

    # ------------------------------------------------------------------ data
    def sample(self, i: int):
        """The ``i``-th sample (cached)."""
        key = ("sample", i)
        if key not in self._cache:
            ds = self.dataset
            self._cache[key] = ds.sample(i) if hasattr(ds, "sample") else ds[i]
        return self._cache[key]

    @property
    def encoder(self) -> _Remembering:
        """The backend, remembering what it encoded in this session."""
        if "encoder" not in self._cache:
            self._cache["encoder"] = _Remembering(self.backend)
        return self._cache["encoder"]

    def encoder_for(self, encode) -> _Remembering:
        """The session's backend for runs needing ``encode`` (an :class:`~s2c2seg.encode_side.EncodeSpec`): itself
        when it encodes that side, else a sibling sharing its models (:func:`s2c2seg.factories.backend_for`)."""
        from .factories import backend_for

        backend = backend_for(self.backend, encode)
        if backend is self.backend:
            return self.encoder
        key = ("encoder", encode)
        if key not in self._cache:
            self._cache[key] = _Remembering(backend)
        return self._cache[key]

    def bundle(self, i: int, encode=None):
        """The ``i``-th sample's feature bundle (encoded once per session; through the on-disk bundle cache
        when ``cache_dir`` was given, so the notebooks of one run encode each image once); ``encode``: the encode
        side the caller's run needs (default: the session backend's)."""
        from .cache import BundleCache
        from .evaluate import iter_bundles

        cache = BundleCache(self.cache_dir) if self.cache_dir else None
        encoder = self.encoder if encode is None else self.encoder_for(encode)
        item = next(iter_bundles(self.dataset, encoder, self.vocab, self.protocol, [i], cache))
        self._cache[("sample", i)] = item.sample
        return item.bundle

    @property
    def cache_dir(self) -> str | None:
        return self.params.get("cache_dir") or None


    def pairs(self, n: int | None = None) -> list:
        """``[(sample, bundle), ...]`` for the first ``n`` images (all when None)."""
        n = len(self) if n is None else min(int(n), len(self))
        return [(self.sample(i), self.bundle(i)) for i in range(n)]

    def always_keep(self) -> tuple[int, ...]:
        return () if self.background is None else (int(self.background),)

    # ------------------------------------------------------------------ outputs
    def markdown_table(self, rows: Mapping[str, Mapping[str, Any]], first: str = "") -> str:
        """:func:`s2c2seg.analysis.markdown_table` labelled with the session's backend label."""
        return markdown_table(rows, first, label=self.label)

    def title(self, text: str) -> str:
        from .plots import labelled_title

        return labelled_title(text, self.label)

    def save(self, fig, name: str, close: bool = True) -> dict:
        """Save ``fig`` as ``out_dir/figures/<name>.pdf|.png`` with the backend's label in its title."""
        from .plots import save_figure

        paths = save_figure(fig, self.out_dir / "figures" / name, label=self.label, close=False)
        self.figures.append({"name": name, **{k: str(Path(v).relative_to(self.out_dir)) for k, v in paths.items()}})
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return paths

    def write_record(self, values: Mapping[str, Any]) -> Path:
        """Write ``out_dir/record.json``: backend facts, data, protocol, parameters, figures and ``values``."""
        from . import __version__

        protocol = self.protocol.to_json() if hasattr(self.protocol, "to_json") else self.protocol
        rec = {
            "notebook": self.notebook, "backend": self.backend_name, "backend_requested": self.backend_requested,
            "label": self.label, "describe": self.info, "dataset": self.dataset_name,
            "data_source": self.data_source, "n_images": len(self), "num_classes": self.num_classes,
            "name_variant": getattr(self.vocab, "variant", None), "protocol": protocol, "params": self.params,
            "figures": self.figures, "package_version": __version__, "values": values,
        }
        path = self.out_dir / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dumps_checked(finite_tree(rec), indent=2, sort_keys=True))
        return path


def _default_out_dir(notebook: str) -> Path:
    return Path("runs") / "notebooks" / "interactive" / (notebook or "notebook")


def open_session(notebook: str, *, backend: str = "auto", dataset: str = "voc21", data_root: str = "",
                 baseline: str = "sclip", n_images: int = 4, out_dir: str = "", size: str = "full", seed: int = 0,
                 backend_requested: str = "", name_variant: str = "", vocabulary: Sequence = (),
                 image_size: Sequence[int] = (96, 128),
                 params: Mapping[str, Any] | None = None, backend_kwargs: Mapping[str, Any] | None = None,
                 reuse: Session | None = None, cache_dir: str = "") -> Session:
    """Build the notebook's world.

    * ``backend``: ``pretrained`` | ``random`` | ``sim`` | ``auto`` (pretrained when the weights load, else sim),
      through :func:`s2c2seg.factories.build_backend` with ``baseline`` and ``size`` (``tiny`` for CI).
    * data: ``data_root`` when given (the real layout, first ``n_images`` of the val split); otherwise the
      simulation's scenes for the sim backend, or a generated fixture of ``dataset`` (written under
      ``out_dir``) for the others — both at ``image_size`` (H, W) and labelled as such.
    * ``vocabulary``: a user's class names (items: a name or a list of synonyms) instead of the dataset's;
      the protocol still comes from ``dataset``.
    * ``backend_requested``: set by the runner when it passes on what an earlier ``auto`` resolved to.
    * ``reuse``: another session whose backend (already built) to use, e.g. one session per dataset.
    * ``cache_dir``: the bundle cache (:mod:`s2c2seg.cache`) shared by the notebooks of a run ("" = none).
    """
    from .data import get_protocol
    from .data import vocabulary as vocabulary_of
    from .factories import build_backend

    if not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    out = Path(out_dir) if out_dir else _default_out_dir(notebook)
    out.mkdir(parents=True, exist_ok=True)
    protocol = get_protocol(dataset, baseline)
    if vocabulary:
        from .data import Vocabulary

        vocab = Vocabulary.from_names(list(vocabulary))
    else:
        vocab = vocabulary_of(dataset, name_variant or protocol.name_variant)
    if reuse is not None:
        be, info = reuse.backend, dict(reuse.info)
    else:
        kw = dict(backend_kwargs or {})
        if backend in ("sim", "auto") and "cfg" not in kw:
            from .sim import SimConfig

            kw["cfg"] = SimConfig(seed=seed, image_size=tuple(int(v) for v in image_size))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            be = build_backend(backend, baseline=baseline, size=size, **kw)
        info = dict(be.describe())
        fallback = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        if fallback and backend == "auto":
            info["fallback_reason"] = fallback[0]
    resolved = str(info.get("backend", backend))
    h, w = (int(v) for v in image_size)
    if data_root:
        from .data import load_dataset

        ds = load_dataset(dataset, data_root)
        if hasattr(ds, "select"):
            ds = ds.select(list(range(min(n_images, len(ds)))))
        source = f"root {data_root}"
    elif resolved == "sim":
        from .sim import SimDataset

        ds = SimDataset(vocab if vocabulary else dataset, be.cfg, n_images,
                        variant=name_variant or protocol.name_variant)
        source = "simulation (generated scenes)"
    else:
        from .data import load_dataset
        from .data.fixtures import write_fixture

        root = out / "fixture_data" / dataset
        write_fixture(dataset, root, n_images=n_images, seed=seed, size=(h, w))
        ds = load_dataset(dataset, root)
        source = "generated fixture data (not a benchmark)"
    setup = dict(backend=backend, dataset=dataset, data_root=data_root, baseline=baseline, n_images=n_images,
                 size=size, seed=seed, name_variant=name_variant, vocabulary=list(vocabulary), cache_dir=cache_dir,
                 image_size=[h, w])
    return Session(notebook=notebook, backend=be, info=info, backend_requested=backend_requested or backend,
                   dataset_name=dataset, dataset=ds, data_source=source, vocab=vocab, protocol=protocol,
                   out_dir=out.resolve(), params={**setup, **dict(params or {})})


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_points(session: Session, points: Mapping[str, Any], css=None, csg=None,
                    n_images: int | None = None) -> dict[str, ConfigResult]:
    """Evaluate named experiment points (``{name: experiments.Point}``) on the session's first ``n_images``
    images (all when None) in one pass of :func:`s2c2seg.evaluate.run_points`; ``css`` / ``csg``: the base
    configs the points modify (default: each point's preset)."""
    from .css import oracle_categories
    from .distributed import DistContext
    from .evaluate import dataset_info, encode_of, run_points
    from .metrics import ConfusionMatrix

    names = list(points)
    settings = [points[n].setting(session.protocol, css, csg, dataset=session.dataset_name) for n in names]
    n = len(session) if n_images is None else min(int(n_images), len(session))
    c = session.num_classes
    results = {name: ConfigResult(name, None) for name in names}
    gt: dict[int, list[int]] = {}
    info = dataset_info(session.dataset)

    def observe(index, j, pred, label):
        r = results[names[j]]
        if index not in gt:
            gt[index] = oracle_categories(label, c, ignore_index=info.ignore_index).tolist()
        r.gt_classes.append(gt[index])
        r.per_image_miou.append(
            100.0 * float(ConfusionMatrix(c, info.ignore_index).update(pred.label_map, label).miou()))
        r.subsets.append(None if pred.subset is None else pred.subset.reshape(-1).tolist())

    for group in _encode_groups(session, settings):  # one pass per encode side (two CLIPSeg texts: two)
        tally = run_points(session.dataset, session.encoder_for(encode_of([settings[j] for j in group])),
                           session.vocab, session.protocol, [settings[j] for j in group], info=info,
                           background=session.background, indices=list(range(n)), cache_dir=session.cache_dir,
                           ctx=DistContext(), progress=False, desc=f"{session.notebook} x{len(group)}",
                           observe=lambda index, j, pred, label, group=group: observe(index, group[j], pred, label))
        for j, cm in zip(group, tally.cms):
            results[names[j]].confusion = cm
    return results


def _encode_groups(session: Session, settings) -> list[list[int]]:
    """The settings' indices grouped by the CLIPSeg text they need, where the backend states one (the simulation
    does not: one group); settings reading no window map join the first group."""
    stated = "local_text" in session.backend.describe()
    texts: dict = {}
    for j, s in enumerate(settings):
        texts.setdefault(s.encode.local_text if stated else None, []).append(j)
    free = texts.pop(None, [])
    groups = list(texts.values()) or [[]]
    groups[0] = sorted(free + groups[0])
    return groups


def evaluate_datasets(datasets: Sequence[str], points: Mapping[str, Any], *, notebook: str, css=None, csg=None,
                      base: Session | None = None, data_roots: Mapping[str, str] | None = None,
                      **session_kw) -> tuple[dict[str, dict[str, ConfigResult]], dict]:
    """:func:`evaluate_points` on each dataset (one session per dataset, one backend for all).

    ``data_roots``: dataset -> root of its real files (missing: simulated scenes / generated data).

    Returns ``(results[dataset][config], sessions[dataset])``.
    """
    if not datasets:
        raise ValueError("datasets must name at least one dataset")
    results, sessions = {}, {}
    for ds in datasets:
        root = (data_roots or {}).get(ds, "")
        if base is not None and base.dataset_name == ds and base.params.get("data_root", "") == root:
            s = base  # already open (and its bundles encoded)
        else:
            s = open_session(notebook, dataset=ds, reuse=base, data_root=root, **session_kw)
        base = base or s
        sessions[ds] = s
        results[ds] = evaluate_points(s, points, css, csg)
    return results, sessions


def class_similarity(session: Session) -> tuple[np.ndarray, str]:
    """(C, C) semantic similarity of the session's classes and where it came from: the simulation's category
    structure (its near-synonym weights) for the sim backend, else the cosine of the class text embeddings
    (queries averaged per class) from the backend's text encoder."""
    be = session.backend
    if hasattr(be, "structure") and session.backend_name == "sim":
        st = be.structure(session.num_classes, session.background)
        return st.similar.detach().cpu().numpy().astype(np.float64), f"simulated category structure ({st.source})"
    text = getattr(be, "text", None)
    if text is None:
        raise ValueError(f"backend {session.backend_name!r} has neither a category structure nor a text encoder")
    from .sim import similarity_from_embeddings

    emb = text.encode(session.vocab)
    return similarity_from_embeddings(emb, session.vocab.query_to_class), "text-embedding cosine"
