"""Small analyses the notebooks show, kept here so the notebooks only call and plot.

Two parts:

* pure functions on tensors / confusion matrices: subset recall and precision, the CSS scoring steps of one
  image, top-confused pairs, GT boundary co-occurrence, the split of a confusion reduction into semantically
  similar and spatially adjacent pairs;
* :class:`Session` (via :func:`open_session`): the notebooks' common set-up — backend (``auto`` resolves to
  pretrained weights when they load, else the simulation), dataset (a real root, else the simulation's
  scenes or generated fixture data), vocabulary, protocol, an output folder, figure saving with the backend's
  label, and the JSON record every notebook writes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "SCORE_SUBSETS", "subset_name", "subset_recall_precision", "scoring_steps", "ScoringSteps",
    "row_normalise", "top_confused_pairs", "top_classes", "boundary_cooccurrence", "cosine_similarity",
    "split_confusion_reduction", "finite_tree", "Session", "open_session",
]

SCORE_SUBSETS: tuple[tuple[str, ...], ...] = (
    (), ("glob",), ("spat",), ("conf",), ("glob", "spat"), ("glob", "conf"), ("spat", "conf"),
    ("glob", "spat", "conf"),
)
"""The CSS score-subset ablation: no selection, each score alone, each pair, all three (oracle is separate)."""


def subset_name(use: Sequence[str]) -> str:
    """Display name of a score subset: ``none`` for no selection, else ``glob+spat`` etc."""
    return "+".join(use) if use else "none"


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
    """Subset size K."""
    pool: torch.Tensor
    """Bool mask of the stage-2 pool."""
    normalised: dict[str, torch.Tensor]
    """Score name -> min-max-normalised score over the pool (0 outside)."""
    s_final: torch.Tensor
    selected: torch.Tensor
    """Sorted LongTensor of the selected indices (equals ``css.select_categories``)."""


def scoring_steps(s_glob, s_spat, *, tau: float = 0.3, k_min: int = 6, k_max: int = 20,
                  use: Sequence[str] = ("glob", "spat", "conf"), always_keep: Iterable[int] = ()) -> ScoringSteps:
    """CSS step by step, with the package's own functions (``css.py``) so the pieces equal the whole."""
    from . import css

    scores = css.css_scores(s_glob, s_spat)
    g_bar, s_bar = css.dist(scores.glob), css.dist(scores.spat)
    use = tuple(use)
    chosen = [scores.get(u) for u in use]
    c = scores.glob.numel()
    union = css.stage1_union(chosen, tau)
    m = int(css.stage1_size(c, tau))
    stage1 = {u: css.stage1_union([scores.get(u)], tau) for u in use}
    n_init = int(union.sum())
    k = css.subset_size(n_init, c, k_min, k_max)
    pool = union if n_init >= k else torch.ones_like(union)
    normalised = {u: css.min_max_normalise(scores.get(u), pool, css.rounding_scale(scores, u)) for u in use}
    s_final = sum(normalised.values())
    selected = css.select_categories(scores.glob, scores.spat, tau=tau, k_min=k_min, k_max=k_max, use=use,
                                     always_keep=list(always_keep))
    return ScoringSteps(s_glob=scores.glob, s_spat=scores.spat, g_bar=g_bar, s_bar=s_bar,
                        alpha=float(scores.alpha), p=scores.p, entropy=scores.entropy, conf=scores.conf, m=m,
                        stage1=stage1, union=union, k=k, pool=pool, normalised=normalised, s_final=s_final,
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


# ---------------------------------------------------------------------------------------------- session
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

    def bundle(self, i: int):
        """The ``i``-th sample's feature bundle (encoded once per session; through the on-disk bundle cache
        when ``cache_dir`` was given, so the notebooks of one run encode each image once)."""
        key = ("bundle", i)
        if key not in self._cache:
            cache_dir = self.params.get("cache_dir") or None
            if cache_dir:
                from .cache import BundleCache
                from .evaluate import iter_bundles

                item = next(iter_bundles(self.dataset, self.backend, self.vocab, self.protocol, [i],
                                         BundleCache(cache_dir)))
                self._cache[("sample", i)] = item.sample
                self._cache[key] = item.bundle
            else:
                self._cache[key] = self.backend.encode(self.sample(i), self.vocab, self.protocol)
        return self._cache[key]

    def pairs(self, n: int | None = None) -> list:
        """``[(sample, bundle), ...]`` for the first ``n`` images (all when None)."""
        n = len(self) if n is None else min(int(n), len(self))
        return [(self.sample(i), self.bundle(i)) for i in range(n)]

    def always_keep(self) -> tuple[int, ...]:
        return () if self.background is None else (int(self.background),)

    # ------------------------------------------------------------------ outputs
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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(finite_tree(rec), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
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
      through :func:`s2c2seg.segmenter.build_backend` with ``baseline`` and ``size`` (``tiny`` for CI).
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
    from .segmenter import build_backend

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
    import warnings

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


def evaluate_configs(session: Session, configs: Mapping[str, Mapping[str, Any]],
                     n_images: int | None = None) -> dict[str, ConfigResult]:
    """Evaluate several downstream settings on the session's images, each image encoded once.

    ``configs``: name -> keyword arguments of :func:`s2c2seg.predict.predict` besides the bundle, protocol and
    label (``method``, ``css`` (CSSConfig), ``csg`` (CSGConfig), ...).
    """
    from .css import oracle_categories
    from .metrics import ConfusionMatrix
    from .predict import BundleView, predict

    c = session.num_classes
    results = {name: ConfigResult(name, ConfusionMatrix(c)) for name in configs}
    for sample, bundle in session.pairs(n_images):
        if sample.label is None:
            raise ValueError(f"sample {sample.id!r} has no label: evaluation needs ground truth")
        label = torch.as_tensor(np.asarray(sample.label))
        gt = oracle_categories(label, c).tolist()
        view = BundleView(bundle)  # full-size maps computed once for all configurations
        for name, kw in configs.items():
            kw = {"background": session.background, **kw}
            pred = predict(view, session.protocol, label=label, **kw)
            lm = torch.as_tensor(np.asarray(pred.label_map))
            results[name].confusion.update(lm, label)
            one = ConfusionMatrix(c).update(lm, label)
            results[name].per_image_miou.append(100.0 * float(one.miou()))
            sub = getattr(pred, "subset", None)
            results[name].subsets.append(None if sub is None else torch.as_tensor(sub).reshape(-1).tolist())
            results[name].gt_classes.append(gt)
    return results


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


def fusion_steps(bundle, subset, vocab, *, mode: str = "category_aware", lam: float = 0.6,
                 temperature: float = 0.01) -> FusionSteps:
    """The CSG quantities ``predict`` uses for ``subset`` (same path: ``predict.BundleView`` maps,
    ``csg.category_weights`` / ``csg.fuse``)."""
    from .csg import category_weights, fuse
    from .predict import BundleView

    view = bundle if isinstance(bundle, BundleView) else BundleView(bundle)
    q2c = view.query_to_class
    queries = torch.nonzero(torch.isin(q2c, torch.as_tensor(subset).long())).reshape(-1)
    g = view.dense(queries)
    s = view.clipseg(queries)
    w = (category_weights(g, mode=mode, temperature=temperature) if mode != "local_only"
         else torch.ones(len(queries)))
    names = [vocab.queries[int(q)] for q in queries]
    return FusionSteps(queries, names, g, s, w, fuse(g, s, mode=mode, lam=lam, temperature=temperature))


# ---------------------------------------------------------------------------------------------- ablations
def score_subset_configs(css_cfg, csg_cfg, *, baseline: bool = True, oracle: bool = True) -> dict[str, dict]:
    """``predict`` settings of the CSS score-subset ablation: ``none`` (CSG on every class) and each subset of
    {glob, spat, conf} (CSS with only those scores, then CSG), plus the baseline and the oracle subset."""
    from dataclasses import replace

    out: dict[str, dict] = {"baseline": {"method": "baseline"}} if baseline else {}
    for use in SCORE_SUBSETS:
        if not use:
            out["none"] = {"method": "s2c2seg", "select": False, "csg": csg_cfg}
        else:
            out[subset_name(use)] = {"method": "s2c2seg", "css": replace(css_cfg, use=use), "csg": csg_cfg}
    if oracle:
        out["oracle"] = {"method": "oracle", "csg": csg_cfg}
    return out


def fusion_configs(css_cfg, csg_cfg) -> dict[str, dict]:
    """The CSG fusion comparison (every mode, after CSS) and the 2×2 component ablation against the baseline.

    2×2: ``baseline`` (no CSS, no CSG), ``+CSS`` (subset, global maps only), ``+CSG`` (every class, fused),
    ``+CSS+CSG`` (the full method); ``+CSS+uniform`` is the paper's "w/o CSG" row (uniform weights).
    """
    from dataclasses import replace

    from .csg import FUSION_MODES

    out = {f"fusion:{m}": {"method": "s2c2seg", "css": css_cfg, "csg": replace(csg_cfg, mode=m)}
           for m in FUSION_MODES}
    out.update({
        "baseline": {"method": "baseline"},
        "+CSS": {"method": "s2c2seg", "css": css_cfg, "csg": replace(csg_cfg, mode="global_only")},
        "+CSG": {"method": "s2c2seg", "select": False, "csg": csg_cfg},
        "+CSS+CSG": {"method": "s2c2seg", "css": css_cfg, "csg": csg_cfg},
        "+CSS+uniform": {"method": "s2c2seg", "css": css_cfg, "csg": replace(csg_cfg, mode="uniform")},
    })
    return out


def evaluate_datasets(datasets: Sequence[str], configs: Mapping[str, Mapping[str, Any]], *, notebook: str,
                      base: Session | None = None, data_roots: Mapping[str, str] | None = None,
                      **session_kw) -> tuple[dict[str, dict[str, ConfigResult]], dict]:
    """:func:`evaluate_configs` on each dataset (one session per dataset, one backend for all).

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
        results[ds] = evaluate_configs(s, configs)
    return results, sessions


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


def markdown_table(rows: Mapping[str, Mapping[str, Any]], first: str = "", fmt: str = "{:.1f}") -> str:
    """A markdown table from ``{row: {column: value}}`` (numbers formatted with ``fmt``)."""
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


# ---------------------------------------------------------------------------------------------- paper tables
TABLE_POINTS: tuple[dict, ...] = (
    {"method": "baseline"},
    {},  # the full method: CSS (all three scores) + category-aware CSG
    {"mode": "global_only"}, {"mode": "uniform"}, {"mode": "add"}, {"mode": "local_only"},
    {"select": False},
    {"use": ["glob"]}, {"use": ["spat"]}, {"use": ["conf"]}, {"use": ["glob", "spat"]}, {"use": ["glob", "conf"]},
    {"use": ["spat", "conf"]},
    {"method": "oracle"},
)
"""Sweep points that fill the four paper tables (main, components, CSS scoring, fusion) for one dataset."""
