"""Evaluation of one method on one dataset split: cached, resumable, shardable.

For each image: the sample is read, its bundle is taken from the cache or computed by the backend (and
stored), ``predict.predict`` turns it into a label map, and the image's confusion matrix is added. The
prediction path is the same with or without the cache, so both give the same predictions. A run killed at
any point is resumed by running it again with the same ``cache_dir``: every finished image's bundle is read
back, and the result is bit-identical (the predictions are a deterministic function of the bundles).

Under ``torchrun`` the images are sharded by rank and the confusion matrices all-reduced
(``distributed.py``); rank 0 writes the record. Output folders are never overwritten (``records.py``).

An image that fails (an unreadable file, a bundle that does not fit, an error in the backend or in the
prediction) stops the run with an :class:`ImageError` naming it. With ``on_error="skip"`` (``--on-error skip``)
the run goes on: the image counts for no setting, and the record lists it (``extra["skipped"]``, a list of
``{"id", "error"}``, and ``extra["num_skipped"]``; under torchrun gathered from every rank).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .bundle import BundleError, FeatureBundle
from .cache import BundleCache, bundle_key
from .css import CSSConfig
from .csg import CSGConfig
from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary
from .distributed import DistContext, all_gather_objects, all_reduce_sum, finish, init_from_env, shard
from .metrics import ConfusionMatrix
from .encode_side import EncodeSpec
from .predict import BundleView
from .presets import Preset
from .runspec import RunSpec, resolve_run
from .records import RunRecord, claim_out_dir, environment_info

__all__ = ["ON_ERROR", "ON_ERROR_DEFAULT", "ImageError", "check_on_error", "evaluate", "run_points", "Setting", "Tally",
           "make_record", "load_item", "iter_bundles", "Item", "DatasetInfo", "dataset_info", "image_id",
           "check_bundle", "check_sources", "encode_of", "describe_backend", "image_indices"]


ON_ERROR = ("stop", "skip")
"""What a pass does when one image fails (its file, its bundle or its prediction): ``stop`` raises
:class:`ImageError` naming it (the default), ``skip`` records it in the run record and goes on."""
ON_ERROR_DEFAULT = ON_ERROR[0]


class ImageError(ValueError):
    """One image could not be evaluated; the message names it, ``__cause__`` is the original error."""


# ------------------------------------------------------------------------------------------------ helpers
def check_on_error(on_error: str) -> None:
    """``on_error`` must be one of :data:`ON_ERROR` (else ``ValueError``)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


@dataclass
class DatasetInfo:
    name: str
    split: str
    num_classes: int | None
    background: int | None
    ignore_index: int = 255


def dataset_info(dataset) -> DatasetInfo:
    """Name, split, class count and background of a dataset (a ``data.Dataset`` or any object with a spec)."""
    spec = getattr(dataset, "spec", None)
    name = getattr(spec, "name", None) or getattr(dataset, "name", None) or type(dataset).__name__
    return DatasetInfo(str(name), str(getattr(dataset, "split", "val")), getattr(spec, "num_classes", None),
                       getattr(spec, "background", getattr(dataset, "background", None)),
                       getattr(spec, "ignore_index", DatasetInfo.ignore_index))


def check_bundle(bundle: FeatureBundle, vocab: Vocabulary, sample: Sample) -> None:
    """A bundle must match the vocabulary's queries and the sample's size (else :class:`BundleError`)."""
    if not isinstance(bundle, FeatureBundle):
        raise BundleError(f"the backend returned {type(bundle).__name__}, not a FeatureBundle")
    if not torch.equal(bundle.query_to_class.long().cpu(), vocab.query_to_class):
        raise BundleError(f"bundle of {sample.id!r} has {bundle.num_queries} queries / query_to_class not matching "
                          f"the vocabulary ({len(vocab.queries)} queries)")
    if tuple(int(v) for v in bundle.image_hw) != tuple(sample.image.shape[:2]):
        raise BundleError(f"bundle of {sample.id!r} is for a {tuple(bundle.image_hw.tolist())} image, the sample is "
                          f"{tuple(sample.image.shape[:2])}")


def describe_backend(backend) -> dict:
    """``backend.describe()``, checked: a backend must have ``.encode(sample, vocab, protocol)`` and ``.describe()``."""
    if not (hasattr(backend, "encode") and hasattr(backend, "describe")):
        raise ValueError(f"backend must have .encode(sample, vocab, protocol) and .describe(), got "
                         f"{type(backend).__name__}")
    desc = backend.describe()
    if not isinstance(desc, dict):
        raise ValueError(f"backend.describe() must return a dict, got {type(desc).__name__}")
    return desc


def image_indices(n: int, max_images: int | None) -> list[int]:
    """The indices of the first ``max_images`` of ``n`` images (all when None); an empty split raises."""
    if n == 0:
        raise ValueError("dataset: the split is empty")
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
        n = min(n, max_images)
    return list(range(n))


@dataclass
class Item:
    index: int
    sample: Sample
    bundle: FeatureBundle
    cached: bool
    encode_seconds: float
    load_seconds: float


def load_item(dataset, backend, vocab: Vocabulary, protocol: Protocol, index: int, cache: BundleCache | None,
              desc: dict) -> Item:
    """Image ``index``'s sample and bundle (from ``cache`` when present, else encoded by ``backend`` and stored);
    ``desc`` is ``backend``'s :func:`describe_backend` (part of the cache key)."""
    t0 = time.perf_counter()
    sample = dataset.sample(index) if hasattr(dataset, "sample") else dataset[index]
    bundle, key = None, None
    if cache is not None:
        key = bundle_key(desc, protocol, vocab, sample, dataset=dataset_info(dataset).name)
        bundle = cache.get(key, need=desc.get("sources", ()))
    t1 = time.perf_counter()
    cached = bundle is not None
    if not cached:
        bundle = backend.encode(sample, vocab, protocol)
    check_bundle(bundle, vocab, sample)
    if not cached and cache is not None:
        cache.stats.misses += 1
        cache.extend(key, bundle)  # keeps the source groups only an older entry has
    t2 = time.perf_counter()
    return Item(index, sample, bundle, cached, encode_seconds=t2 - t1, load_seconds=t1 - t0)


def iter_bundles(dataset, backend, vocab: Vocabulary, protocol: Protocol, indices: Sequence[int],
                 cache: BundleCache | None = None) -> Iterator[Item]:
    """Each image's sample and bundle (:func:`load_item`), in the order of ``indices``."""
    desc = describe_backend(backend)
    for i in indices:
        yield load_item(dataset, backend, vocab, protocol, i, cache, desc)


def image_id(dataset, index: int) -> str:
    """The id of image ``index`` without reading it (the dataset's ``ids`` when it has them, else ``#index``)."""
    ids = getattr(dataset, "ids", None)
    return str(ids[index]) if ids is not None else f"#{index}"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + "; ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())


def _label_tensor(sample: Sample) -> torch.Tensor:
    if sample.label is None:
        raise ValueError(f"sample {sample.id!r} has no label: evaluation needs labelled images")
    return torch.from_numpy(np.ascontiguousarray(sample.label)).long()


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)


def make_record(spec: RunSpec, *, info: DatasetInfo, backend: dict, background: int | None,
                max_images: int | None, vocab: Vocabulary, cm: ConfusionMatrix, num_images: int, sums: torch.Tensor,
                world_size: int, cache: dict | None, extra: dict | None, skipped: Sequence[dict],
                predict_seconds: float | None = None) -> RunRecord:
    """The :class:`RunRecord` of one run (its :class:`~s2c2seg.runspec.RunSpec`: method, reading, preset, encode
    side, protocol, baseline) from its confusion matrix and the summed counters.

    ``sums`` = (load s, encode s, predict s, wall s, subset sizes, GT classes, GT classes kept, images voted);
    ``num_images`` counts the evaluated images, ``skipped`` the others (``{"id", "error"}`` each).
    """
    n = num_images
    subset_stats = None
    if spec.method != "baseline":
        subset_stats = {"mean_subset_size": float(sums[4]) / n,
                        "gt_class_recall": float(sums[6] / sums[5]) if sums[5] > 0 else None}
    return RunRecord(
        dataset=info.name, split=info.split, method=spec.method, baseline=spec.baseline, backend=backend,
        protocol=spec.protocol.to_json(),
        parameters={**spec.parameters(), "background": background, "max_images": max_images},
        vocabulary={"variant": vocab.variant, "num_classes": vocab.num_classes, "num_queries": len(vocab.queries),
                    "names": vocab.names},
        metrics=cm.summary(vocab.names), num_images=n,
        timing={"seconds_total": float(sums[3]), "seconds_per_image": float(sums[3]) / n,
                "load_seconds": float(sums[0]), "encode_seconds": float(sums[1]),
                "predict_seconds": float(sums[2]) if predict_seconds is None else predict_seconds},
        confusion=cm.to_json(), environment=environment_info(), cache=cache,
        extra={"subset": subset_stats, "images_voted": int(sums[7]), "world_size": world_size,
               "num_skipped": len(skipped), "skipped": [dict(e) for e in skipped], **(extra or {})},
        label=str(backend.get("label", "")))


# ------------------------------------------------------------------------------------------------ evaluate
Setting = RunSpec
"""One downstream configuration of a pass: a :class:`~s2c2seg.runspec.RunSpec` (the name the sweeps use)."""


@dataclass
class Tally:
    """What a pass over the split accumulates, per setting, already all-reduced over ranks."""

    cms: list
    """One :class:`ConfusionMatrix` per setting."""
    sums: torch.Tensor
    """(P, 8) float64: seconds (load, encode, predict, wall), subset size, GT classes, GT classes kept, votes."""
    bundle_seconds: float
    """Reading or computing the bundles (all ranks)."""
    cache_counts: torch.Tensor
    """(4,) int64: cache hits, misses, corrupt entries; damaged text-cache files (the backend's ``text.corrupt``)."""
    num_images: int
    """Images evaluated (all ranks): the requested ones less the skipped."""
    skipped: list
    """``{"id", "error"}`` of each skipped image (all ranks, in split order)."""

    def cache_info(self, cache_dir) -> dict | None:
        """The run record's ``cache`` entry (None without a cache)."""
        if cache_dir is None:
            return None
        hits, misses, corrupt, text_corrupt = (int(v) for v in self.cache_counts)
        return {"dir": str(cache_dir), "hits": hits, "misses": misses, "corrupt": corrupt,
                "text_corrupt": text_corrupt}


def encode_of(settings: Sequence[RunSpec]) -> EncodeSpec:
    """The one encode that serves every setting of a pass (:meth:`EncodeSpec.union`; two CLIPSeg texts raise)."""
    out = settings[0].encode
    for p in settings[1:]:
        out = out.union(p.encode)
    return out


def check_sources(backend_desc: dict, settings: Sequence[RunSpec]) -> None:
    """Refuse, before any image is encoded, a backend whose stated encode side (its ``describe()``: source groups,
    CLIPSeg text, precision) is not what the settings need (:meth:`EncodeSpec.check`)."""
    encode_of(settings).check(backend_desc, "backend")


def _text_corrupt(backend) -> int:
    """Damaged text-cache files the backend's text encoder has met so far (0 without one)."""
    return int(getattr(getattr(backend, "text", None), "corrupt", 0))


def run_points(dataset, backend, vocab: Vocabulary, protocol: Protocol, settings: Sequence[Setting], *,
               info: DatasetInfo, background: int | None, indices: Sequence[int], cache_dir, ctx: DistContext,
               progress: bool, desc: str, on_error: str = ON_ERROR_DEFAULT,
               observe: Callable | None = None) -> Tally:
    """One pass over this rank's shard of ``indices``: each bundle read (or computed) once, every setting's
    prediction and confusion matrix updated from it; totals all-reduced and skips gathered. ``evaluate`` is
    one setting, a sweep many. An image that fails counts for no setting (see :data:`ON_ERROR`).
    ``observe(index, j, prediction, label)``, when given, sees each image's prediction of setting ``j`` (the
    notebooks' per-image statistics)."""
    check_on_error(on_error)
    mine = shard(indices, ctx)
    cache = BundleCache(cache_dir) if cache_dir is not None else None
    text_corrupt0 = _text_corrupt(backend)
    backend_desc = describe_backend(backend)
    check_sources(backend_desc, settings)
    cms = [ConfusionMatrix(vocab.num_classes, info.ignore_index) for _ in settings]
    sums = torch.zeros(len(settings), 8, dtype=torch.float64)
    bundle_time = torch.zeros(1, dtype=torch.float64)
    skipped = []
    t_start = time.perf_counter()
    bar = _progress(len(mine), progress and ctx.is_main, desc)
    for i in mine:
        try:
            item = load_item(dataset, backend, vocab, protocol, i, cache, backend_desc)
            label = _label_tensor(item.sample)
            view = BundleView(item.bundle)  # full-size maps built on first use, shared by every setting
            preds, seconds = [], []
            for p in settings:
                t1 = time.perf_counter()
                preds.append(p.predict(view, label=label, background=background, ignore_index=info.ignore_index))
                seconds.append(time.perf_counter() - t1)
        except Exception as exc:  # one image's failure, whatever raised it: stop naming it, or skip it
            if on_error == "stop":
                raise ImageError(f"image {image_id(dataset, i)!r} ({info.name} #{i}) failed: {_error_text(exc)} "
                                 "(fix the file, or go on past bad images with --on-error skip / "
                                 "on_error='skip')") from exc
            skipped.append((i, {"id": image_id(dataset, i), "error": _error_text(exc)}))
            bar.update(1)
            continue
        gt = label[label != info.ignore_index].unique()
        bundle_time += item.load_seconds + item.encode_seconds
        for j, pred in enumerate(preds):
            cms[j].update(pred.label_map, label)
            if pred.subset is not None:
                sums[j, 4] += pred.subset.numel()
                sums[j, 5] += gt.numel()
                sums[j, 6] += torch.isin(gt, pred.subset).sum()
            sums[j, 7] += pred.voted
            sums[j, 2] += seconds[j]
            if observe is not None:
                observe(i, j, pred, label)
        sums[:, 0] += item.load_seconds
        sums[:, 1] += item.encode_seconds
        bar.update(1)
    bar.close()
    sums[:, 3] = time.perf_counter() - t_start
    counts = [cache.stats.hits, cache.stats.misses, cache.stats.corrupt] if cache is not None else [0, 0, 0]
    cache_counts = torch.tensor(counts + [_text_corrupt(backend) - text_corrupt0], dtype=torch.int64)
    matrices = all_reduce_sum(torch.stack([cm.matrix for cm in cms]), ctx)
    for cm, m in zip(cms, matrices):
        cm.matrix = m
    skipped = [entry for _, entry in sorted(e for rank in all_gather_objects(skipped, ctx) for e in rank)]
    num_images = len(indices) - len(skipped)
    if num_images == 0:
        raise ImageError(f"{info.name}: every one of the {len(indices)} images failed, e.g. {skipped[0]['id']!r}: "
                         f"{skipped[0]['error']} (fix the data or the backend; --debug with --on-error stop shows "
                         "the first failure's traceback)")
    return Tally(cms, all_reduce_sum(sums, ctx), float(all_reduce_sum(bundle_time, ctx)),
                 all_reduce_sum(cache_counts, ctx), num_images, skipped)


def evaluate(dataset, backend, vocab: Vocabulary, protocol: Protocol, *, method: str = "s2c2seg",
             preset: str | Preset | None = None, css: CSSConfig | None = None, csg: CSGConfig | None = None,
             score_source: str = "clipseg",
             select: bool = True, background: int | None | str = "auto", cache_dir: str | Path | None = None,
             out_dir: str | Path | None = None, max_images: int | None = None, baseline: str | None = None,
             progress: bool = True, dist: DistContext | None = None, extra: dict | None = None,
             on_error: str = ON_ERROR_DEFAULT) -> RunRecord:
    """Evaluate ``method`` over ``dataset`` (first ``max_images`` images) and return the :class:`RunRecord`.

    ``background="auto"`` takes the dataset spec's background class (None when it has none). With
    ``cache_dir`` bundles are read from / written to a :class:`~s2c2seg.cache.BundleCache`. With ``out_dir``
    the record (``record.json`` + ``per_class.csv``) is written there (rank 0); a folder holding a finished
    record raises :class:`~s2c2seg.records.RecordExistsError` before any work. Under torchrun the images are
    sharded and the result equals a single-process run. ``on_error="skip"`` goes on past an image that fails
    and lists it in ``record.extra["skipped"]`` (see :data:`ON_ERROR`). ``method="s2c2seg"`` runs ``preset``
    (a name of :data:`s2c2seg.presets.PRESETS` or a :class:`~s2c2seg.presets.Preset`); without one, ``css`` /
    ``csg`` mean the paper reading with them, and neither means the default preset, ``released``
    (:func:`s2c2seg.presets.resolve_preset`).
    """
    check_on_error(on_error)
    if not isinstance(css, (CSSConfig, type(None))) or not isinstance(csg, (CSGConfig, type(None))):
        raise ValueError("css must be a CSSConfig and csg a CSGConfig (or None)")
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    info = dataset_info(dataset)
    spec = resolve_run(method, info.name, protocol, preset=preset, css=css, csg=csg, score_source=score_source,
                       select=select, baseline=baseline)
    num_classes = vocab.num_classes
    if info.num_classes is not None and info.num_classes != num_classes:
        raise ValueError(f"vocab has {num_classes} classes, dataset {info.name!r} has {info.num_classes}")
    bg = info.background if background == "auto" else background
    desc = describe_backend(backend)
    indices = image_indices(len(dataset), max_images)
    out = claim_out_dir(out_dir)
    ctx = dist if dist is not None else init_from_env()
    try:
        tally = run_points(dataset, backend, vocab, protocol, [spec], info=info, background=bg, indices=indices,
                           cache_dir=cache_dir, ctx=ctx, progress=progress, desc=f"{info.name} {method}",
                           on_error=on_error)
    finally:
        if dist is None:
            finish(ctx)
    record = make_record(
        spec, info=info, backend=desc, background=bg, max_images=max_images, vocab=vocab, cm=tally.cms[0],
        num_images=tally.num_images, sums=tally.sums[0], world_size=ctx.world_size,
        cache=tally.cache_info(cache_dir), extra=extra, skipped=tally.skipped)
    if out is not None and ctx.is_main:
        record.save(out)
    return record
