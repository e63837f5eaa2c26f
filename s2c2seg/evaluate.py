"""Evaluation of one method on one dataset split: cached, resumable, shardable; ``s2c2seg eval``.

For each image: the sample is read, its bundle is taken from the cache or computed by the backend (and
stored), ``predict.predict`` turns it into a label map, and the image's confusion matrix is added. The
prediction path is the same with or without the cache, so both give the same predictions. A run killed at
any point is resumed by running it again with the same ``cache_dir``: every finished image's bundle is read
back, and the result is bit-identical (the predictions are a deterministic function of the bundles).

Under ``torchrun`` the images are sharded by rank and the confusion matrices all-reduced
(``distributed.py``); rank 0 writes the record. Output folders are never overwritten (``records.py``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .bundle import BundleError, FeatureBundle
from .cache import BundleCache, bundle_key
from .css import STAGE2_POOLS, CSSConfig
from .csg import FUSION_MODES, CSGConfig
from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary
from .distributed import DistContext, all_reduce_sum, finish, init_from_env, shard
from .metrics import ConfusionMatrix
from .predict import METHODS, SCORE_SOURCES, BundleView, predict
from .records import RunRecord, claim_out_dir, environment_info

__all__ = ["evaluate", "make_record", "iter_bundles", "dataset_info", "check_bundle", "build_backend", "build_dataset",
           "register_cli", "add_common_arguments", "setup_from_args"]


# ------------------------------------------------------------------------------------------------ helpers
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


def _describe(backend) -> dict:
    if not (hasattr(backend, "encode") and hasattr(backend, "describe")):
        raise ValueError(f"backend must have .encode(sample, vocab, protocol) and .describe(), got "
                         f"{type(backend).__name__}")
    desc = backend.describe()
    if not isinstance(desc, dict):
        raise ValueError(f"backend.describe() must return a dict, got {type(desc).__name__}")
    return desc


def _indices(n: int, max_images: int | None) -> list[int]:
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


def iter_bundles(dataset, backend, vocab: Vocabulary, protocol: Protocol, indices: Sequence[int],
                 cache: BundleCache | None = None) -> Iterator[Item]:
    """Each image's sample and bundle (from ``cache`` when present, else encoded and stored)."""
    desc = _describe(backend)
    name = dataset_info(dataset).name
    for i in indices:
        t0 = time.perf_counter()
        sample = dataset.sample(i) if hasattr(dataset, "sample") else dataset[i]
        bundle, key = None, None
        if cache is not None:
            key = bundle_key(desc, protocol, vocab, sample, dataset=name)
            bundle = cache.get(key)
        t1 = time.perf_counter()
        cached = bundle is not None
        if not cached:
            bundle = backend.encode(sample, vocab, protocol)
        check_bundle(bundle, vocab, sample)
        if not cached and cache is not None:
            cache.stats.misses += 1
            cache.put(key, bundle)
        t2 = time.perf_counter()
        yield Item(i, sample, bundle, cached, encode_seconds=t2 - t1, load_seconds=t1 - t0)


def _label_tensor(sample: Sample) -> torch.Tensor:
    if sample.label is None:
        raise ValueError(f"sample {sample.id!r} has no label: evaluation needs labelled images")
    return torch.from_numpy(np.ascontiguousarray(sample.label)).long()


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)


def make_record(*, info: DatasetInfo, method: str, baseline: str | None, backend: dict, protocol: Protocol,
                css: CSSConfig, csg: CSGConfig, score_source: str, select: bool, background: int | None,
                max_images: int | None, vocab: Vocabulary, cm: ConfusionMatrix, num_images: int,
                sums: torch.Tensor, world_size: int, cache: dict | None, extra: dict | None,
                predict_seconds: float | None = None) -> RunRecord:
    """The :class:`RunRecord` of one configuration from its confusion matrix and the summed counters.

    ``sums`` = (load s, encode s, predict s, wall s, subset sizes, GT classes, GT classes kept, images voted).
    """
    n = num_images
    subset_stats = None
    if method != "baseline":
        subset_stats = {"mean_subset_size": float(sums[4]) / n,
                        "gt_class_recall": float(sums[6] / sums[5]) if sums[5] > 0 else None}
    return RunRecord(
        dataset=info.name, split=info.split, method=method, baseline=baseline, backend=backend,
        protocol=protocol.to_json(),
        parameters={"css": css.to_json(), "csg": csg.to_json(), "score_source": score_source, "select": select,
                    "background": background, "max_images": max_images},
        vocabulary={"variant": vocab.variant, "num_classes": vocab.num_classes, "num_queries": len(vocab.queries),
                    "names": vocab.names},
        metrics=cm.summary(vocab.names), num_images=n,
        timing={"seconds_total": float(sums[3]), "seconds_per_image": float(sums[3]) / n,
                "load_seconds": float(sums[0]), "encode_seconds": float(sums[1]),
                "predict_seconds": float(sums[2]) if predict_seconds is None else predict_seconds},
        confusion=cm.to_json(), environment=environment_info(), cache=cache,
        extra={"subset": subset_stats, "images_voted": int(sums[7]), "world_size": world_size, **(extra or {})},
        label=str(backend.get("label", "")))


# ------------------------------------------------------------------------------------------------ evaluate
@dataclass(frozen=True)
class Setting:
    """One downstream configuration: what ``predict`` needs besides the bundle."""

    method: str
    css: CSSConfig
    csg: CSGConfig
    protocol: Protocol
    score_source: str = "clipseg"
    select: bool = True


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
    """(3,) int64: cache hits, misses, corrupt entries."""

    def cache_info(self, cache_dir) -> dict | None:
        """The run record's ``cache`` entry (None without a cache)."""
        if cache_dir is None:
            return None
        hits, misses, corrupt = (int(v) for v in self.cache_counts)
        return {"dir": str(cache_dir), "hits": hits, "misses": misses, "corrupt": corrupt}


def run_points(dataset, backend, vocab: Vocabulary, protocol: Protocol, settings: Sequence[Setting], *,
               info: DatasetInfo, background: int | None, indices: Sequence[int], cache_dir, ctx: DistContext,
               progress: bool, desc: str) -> Tally:
    """One pass over this rank's shard of ``indices``: each bundle read (or computed) once, every setting's
    prediction and confusion matrix updated from it; totals all-reduced. ``evaluate`` is one setting, a
    sweep many."""
    mine = shard(indices, ctx)
    cache = BundleCache(cache_dir) if cache_dir is not None else None
    cms = [ConfusionMatrix(vocab.num_classes, info.ignore_index) for _ in settings]
    sums = torch.zeros(len(settings), 8, dtype=torch.float64)
    bundle_time = torch.zeros(1, dtype=torch.float64)
    t_start = time.perf_counter()
    bar = _progress(len(mine), progress and ctx.is_main, desc)
    for item in iter_bundles(dataset, backend, vocab, protocol, mine, cache):
        label = _label_tensor(item.sample)
        view = BundleView(item.bundle)  # full-size maps built on first use, shared by every setting
        gt = label[label != info.ignore_index].unique()
        bundle_time += item.load_seconds + item.encode_seconds
        for j, p in enumerate(settings):
            t1 = time.perf_counter()
            pred = predict(view, p.protocol, p.method, css=p.css, csg=p.csg, label=label, background=background,
                           score_source=p.score_source, select=p.select)
            cms[j].update(pred.label_map, label)
            if pred.subset is not None:
                sums[j, 4] += pred.subset.numel()
                sums[j, 5] += gt.numel()
                sums[j, 6] += torch.isin(gt, pred.subset).sum()
            sums[j, 7] += pred.voted
            sums[j, 2] += time.perf_counter() - t1
        sums[:, 0] += item.load_seconds
        sums[:, 1] += item.encode_seconds
        bar.update(1)
    bar.close()
    sums[:, 3] = time.perf_counter() - t_start
    cache_counts = torch.tensor([cache.stats.hits, cache.stats.misses, cache.stats.corrupt]
                                if cache is not None else [0, 0, 0], dtype=torch.int64)
    matrices = all_reduce_sum(torch.stack([cm.matrix for cm in cms]), ctx)
    for cm, m in zip(cms, matrices):
        cm.matrix = m
    return Tally(cms, all_reduce_sum(sums, ctx), float(all_reduce_sum(bundle_time, ctx)),
                 all_reduce_sum(cache_counts, ctx))


def evaluate(dataset, backend, vocab: Vocabulary, protocol: Protocol, *, method: str = "s2c2seg",
             css: CSSConfig = CSSConfig(), csg: CSGConfig = CSGConfig(), score_source: str = "clipseg",
             select: bool = True, background: int | None | str = "auto", cache_dir: str | Path | None = None,
             out_dir: str | Path | None = None, max_images: int | None = None, baseline: str | None = None,
             progress: bool = True, dist: DistContext | None = None, extra: dict | None = None) -> RunRecord:
    """Evaluate ``method`` over ``dataset`` (first ``max_images`` images) and return the :class:`RunRecord`.

    ``background="auto"`` takes the dataset spec's background class (None when it has none). With
    ``cache_dir`` bundles are read from / written to a :class:`~s2c2seg.cache.BundleCache`. With ``out_dir``
    the record (``record.json`` + ``per_class.csv``) is written there (rank 0); a folder holding a finished
    record raises :class:`~s2c2seg.records.RecordExistsError` before any work. Under torchrun the images are
    sharded and the result equals a single-process run.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if score_source not in SCORE_SOURCES:
        raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {score_source!r}")
    if not isinstance(css, CSSConfig) or not isinstance(csg, CSGConfig):
        raise ValueError("css must be a CSSConfig and csg a CSGConfig")
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    info = dataset_info(dataset)
    num_classes = vocab.num_classes
    if info.num_classes is not None and info.num_classes != num_classes:
        raise ValueError(f"vocab has {num_classes} classes, dataset {info.name!r} has {info.num_classes}")
    bg = info.background if background == "auto" else background
    desc = _describe(backend)
    indices = _indices(len(dataset), max_images)
    out = claim_out_dir(out_dir)
    ctx = dist if dist is not None else init_from_env()
    try:
        setting = Setting(method, css, csg, protocol, score_source, select)
        tally = run_points(dataset, backend, vocab, protocol, [setting], info=info, background=bg, indices=indices,
                           cache_dir=cache_dir, ctx=ctx, progress=progress, desc=f"{info.name} {method}")
    finally:
        if dist is None:
            finish(ctx)
    cm, sums = tally.cms[0], tally.sums[0]
    n = len(indices)
    record = make_record(
        info=info, method=method, baseline=baseline, backend=desc, protocol=protocol, css=css, csg=csg,
        score_source=score_source, select=select, background=bg, max_images=max_images, vocab=vocab, cm=cm,
        num_images=n, sums=sums, world_size=ctx.world_size,
        cache=tally.cache_info(cache_dir),
        extra=extra)
    if out is not None and ctx.is_main:
        record.save(out)
    return record


# ------------------------------------------------------------------------------------------------ CLI
def build_backend(name: str, baseline: str = "sclip", size: str = "full", device: str | None = None, **kwargs):
    """A backend by name: ``pretrained`` / ``random`` / ``sim`` / ``auto`` (``segmenter.build_backend``) or
    ``package.module:factory`` (a user's callable, called with ``baseline=``, ``size=`` and the extra kwargs)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"backend {name!r}: cannot import {attr!r} from {module!r} ({exc})") from exc
        return factory(baseline=baseline, size=size, **kwargs)
    from .segmenter import build_backend as _build

    if device is not None:
        kwargs["device"] = device
    return _build(name, baseline=baseline, size=size, **kwargs)


def build_dataset(name: str, data_root: str | None, split: str = "val", region_dir: str | None = None, *,
                  sim_images: int = 8, variant: str = "sclip"):
    """A benchmark by name (``data.DATASETS``) under ``data_root``, or ``sim:<dataset>`` (SIMULATED scenes over
    that dataset's vocabulary, :class:`s2c2seg.sim.SimDataset`, ``sim_images`` of them)."""
    from .data.datasets import DATASETS, load_dataset

    if name.startswith("sim:"):
        from .sim import SimDataset

        return SimDataset(name[4:], n_images=sim_images, variant=variant)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} or sim:<dataset>")
    if data_root is None:
        raise ValueError(f"--data-root is required for dataset {name!r} (the folder holding its images/labels)")
    return load_dataset(name, data_root, split=split, region_dir=region_dir)


def _opt_float(text: str):
    return None if text.lower() in ("none", "off", "") else float(text)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset, backend, vocabulary, protocol overrides, cache and output: shared by ``eval`` and ``sweep``."""
    g = p.add_argument_group("data")
    g.add_argument("dataset", help="benchmark key: voc21, voc20, context60, context59, coco_object, coco_stuff164k, "
                                   "ade20k, cityscapes; or sim:<key> for SIMULATED scenes (use --backend sim)")
    g.add_argument("--sim-images", type=int, default=8, help="number of scenes for sim:<key>")
    g.add_argument("--data-root", help="the dataset's root folder (see docs/datasets.md)")
    g.add_argument("--split", default="val")
    g.add_argument("--region-dir", help="folder of CorrCLIP's <image stem>.npz region masks (for the vote)")
    g.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    g = p.add_argument_group("backend")
    g.add_argument("--baseline", default="sclip", help="sclip, proxyclip, corrclip, naclip, clearclip, maskclip")
    g.add_argument("--backend", default="pretrained",
                   help="pretrained (default, real weights), random (RANDOM WEIGHTS), sim (SIMULATED), auto, or "
                        "module:factory")
    g.add_argument("--size", default="full", choices=["full", "tiny"], help="model size for --backend random")
    g.add_argument("--device", default=None, help="torch device for the models (default: the backend's)")
    g = p.add_argument_group("vocabulary")
    g.add_argument("--names", help="a name file (one class per line, synonyms on the line) instead of the packaged one")
    g.add_argument("--names-sep", default=None, help="synonym separator of --names (default: ', ' or '; ' by variant)")
    g = p.add_argument_group("protocol overrides (defaults: the anchors' table for dataset x baseline)")
    g.add_argument("--short-side", type=int)
    g.add_argument("--crop", type=int, help="sliding-window crop, 0 = whole image")
    g.add_argument("--stride", type=int)
    g.add_argument("--logit-scale", type=float)
    g.add_argument("--prob-thd", type=float)
    g.add_argument("--area-thd", type=_opt_float, default=argparse.SUPPRESS, help="a fraction, or 'none' (off)")
    g.add_argument("--name-variant", help="sclip, proxyclip, corrclip, clearclip")
    g.add_argument("--vote", dest="vote", action="store_true", default=None, help="CorrCLIP's region vote on")
    g.add_argument("--no-vote", dest="vote", action="store_false", help="region vote off")
    g = p.add_argument_group("cache and output")
    g.add_argument("--cache-dir", help="feature-bundle cache folder (resume, sweeps)")
    g.add_argument("--out", required=True, help="output folder (refused if it holds a finished record)")
    g.add_argument("--no-progress", action="store_true")


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method (CSS / CSG)")
    g.add_argument("--method", default="s2c2seg", choices=list(METHODS))
    g.add_argument("--tau", type=float, default=CSSConfig.tau)
    g.add_argument("--k-min", type=int, default=CSSConfig.k_min)
    g.add_argument("--k-max", type=int, default=CSSConfig.k_max)
    g.add_argument("--stage2-pool", choices=STAGE2_POOLS, default=CSSConfig.stage2_pool,
                   help="stage 2's pool when |C_init| < K: all categories (the issue) or C_init (the summary)")
    g.add_argument("--use", default=",".join(CSSConfig.use), help="CSS scores, comma-separated: glob,spat,conf")
    g.add_argument("--no-keep-background", action="store_true", help="do not force the background into the subset")
    g.add_argument("--score-source", default="clipseg", choices=list(SCORE_SOURCES),
                   help="CSS's s_spat: CLIPSeg (paper) or the baseline's softmax maps (ablation)")
    g.add_argument("--no-select", action="store_true", help="CSG on all classes (w/o CSS)")
    g.add_argument("--mode", default=CSGConfig.mode, choices=list(FUSION_MODES), help="CSG fusion")
    g.add_argument("--lam", type=float, default=CSGConfig.lam)
    g.add_argument("--temperature", type=float, default=CSGConfig.temperature)


def setup_from_args(args) -> tuple[Any, Any, Vocabulary, Protocol]:
    """(dataset, backend, vocabulary, protocol) from the common arguments."""
    from .data.names import vocabulary
    from .data.protocols import get_protocol

    overrides = {k: getattr(args, k) for k in ("short_side", "crop", "stride", "logit_scale", "prob_thd",
                                                "name_variant", "vote") if getattr(args, k, None) is not None}
    if hasattr(args, "area_thd"):
        overrides["area_thd"] = args.area_thd
    key = args.dataset[4:] if args.dataset.startswith("sim:") else args.dataset
    protocol = get_protocol(key, args.baseline, **overrides)
    dataset = build_dataset(args.dataset, args.data_root, args.split, args.region_dir, sim_images=args.sim_images,
                            variant=protocol.name_variant)
    if args.names:
        sep = args.names_sep or ("; " if protocol.name_variant in ("proxyclip", "corrclip") else ", ")
        vocab = Vocabulary.from_file(args.names, sep=sep)
    elif getattr(dataset, "vocab", None) is not None:
        vocab = dataset.vocab
    else:
        vocab = vocabulary(key, protocol.name_variant)
    extra = {}
    if args.cache_dir and ":" not in args.backend and args.backend != "sim":
        extra["cache_dir"] = str(Path(args.cache_dir) / "text")  # the text-embedding cache
    backend = build_backend(args.backend, baseline=args.baseline, size=args.size, device=args.device, **extra)
    return dataset, backend, vocab, protocol


def _css_csg(args) -> tuple[CSSConfig, CSGConfig]:
    use = tuple(u.strip() for u in args.use.split(",") if u.strip())
    return (CSSConfig(tau=args.tau, k_min=args.k_min, k_max=args.k_max, use=use,
                      keep_background=not args.no_keep_background, stage2_pool=args.stage2_pool),
            CSGConfig(mode=args.mode, lam=args.lam, temperature=args.temperature))


def _run_eval(args) -> int:
    claim_out_dir(args.out)  # refuse before loading any model
    css, csg = _css_csg(args)
    dataset, backend, vocab, protocol = setup_from_args(args)
    record = evaluate(dataset, backend, vocab, protocol, method=args.method, css=css, csg=csg,
                      score_source=args.score_source, select=not args.no_select, cache_dir=args.cache_dir,
                      out_dir=args.out, max_images=args.max_images, baseline=args.baseline,
                      progress=not args.no_progress, extra={"command": sys.argv})
    if int(record.extra.get("world_size", 1)) == 1 or _is_rank0():
        label = f" [{record.label}]" if record.label else ""
        print(f"{record.dataset} {record.method}{label}: mIoU {100 * record.metrics['mIoU']:.2f}  "
              f"aAcc {100 * record.metrics['aAcc']:.2f}  mAcc {100 * record.metrics['mAcc']:.2f}  "
              f"({record.num_images} images) -> {Path(args.out) / 'record.json'}")
    return 0


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a method on a dataset split (cached, resumable, torchrun)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    add_method_arguments(p)
    p.set_defaults(func=_run_eval)
