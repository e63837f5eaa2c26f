"""``s2c2seg eval`` (the command line of ``evaluate.py``), and the options it shares with ``s2c2seg sweep``:
data, backend, vocabulary, protocol, cache and output (:func:`add_common_arguments`), CSS / CSG
(:func:`add_method_arguments`), and their reading into the objects the API takes (:func:`setup_from_args`,
:func:`configs_from_args`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .css import STAGE2_POOLS, CSSConfig
from .csg import FUSION_MODES, CSGConfig
from .data.datasets import DATASETS
from .data.protocols import Protocol
from .data.vocab import Vocabulary
from .distributed import env_rank
from .evaluate import ON_ERROR, ON_ERROR_DEFAULT, evaluate
from .factories import SIM_IMAGES, backend_by_name, benchmark_key, dataset_by_name
from .predict import METHODS, SCORE_SOURCES
from .records import claim_out_dir

__all__ = ["add_common_arguments", "add_method_arguments", "setup_from_args", "configs_from_args", "register_cli"]


METHOD_OPTIONS = "--tau, --k-min, --k-max, --use, --stage2-pool, --mode, --lam, --temperature"
"""The options that set :class:`CSSConfig` / :class:`CSGConfig` fields (named when one of them is invalid)."""


def _opt_float(text: str):
    return None if text.lower() in ("none", "off", "") else float(text)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset, backend, vocabulary, protocol overrides, cache and output: shared by ``eval`` and ``sweep``."""
    g = p.add_argument_group("data")
    g.add_argument("dataset", help=f"benchmark key ({', '.join(DATASETS)}), or sim:<key> for SIMULATED scenes "
                                   "(use --backend sim)")
    g.add_argument("--sim-images", type=int, default=SIM_IMAGES, help="number of scenes for sim:<key>")
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
    g.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR_DEFAULT,
                   help="an image that fails: stop naming it (default), or skip it and list it in the record")


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """CSS / CSG options (defaults: :class:`CSSConfig`, :class:`CSGConfig`)."""
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
    key = benchmark_key(args.dataset)
    protocol = get_protocol(key, args.baseline, **overrides)
    dataset = dataset_by_name(args.dataset, args.data_root, args.split, args.region_dir, sim_images=args.sim_images,
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
    backend = backend_by_name(args.backend, baseline=args.baseline, size=args.size, device=args.device, **extra)
    return dataset, backend, vocab, protocol


def configs_from_args(args) -> tuple[CSSConfig, CSGConfig]:
    """The :class:`CSSConfig` and :class:`CSGConfig` of the method options."""
    use = tuple(u.strip() for u in args.use.split(",") if u.strip())
    try:
        return (CSSConfig(tau=args.tau, k_min=args.k_min, k_max=args.k_max, use=use,
                          keep_background=not args.no_keep_background, stage2_pool=args.stage2_pool),
                CSGConfig(mode=args.mode, lam=args.lam, temperature=args.temperature))
    except ValueError as exc:
        raise ValueError(f"{exc} (fix the method option that sets it: {METHOD_OPTIONS})") from exc


def _run_eval(args) -> int:
    claim_out_dir(args.out)  # refuse before loading any model
    css, csg = configs_from_args(args)
    dataset, backend, vocab, protocol = setup_from_args(args)
    record = evaluate(dataset, backend, vocab, protocol, method=args.method, css=css, csg=csg,
                      score_source=args.score_source, select=not args.no_select, cache_dir=args.cache_dir,
                      out_dir=args.out, max_images=args.max_images, baseline=args.baseline,
                      progress=not args.no_progress, extra={"command": sys.argv}, on_error=args.on_error)
    if env_rank() == 0:
        label = f" [{record.label}]" if record.label else ""
        skipped = record.extra["num_skipped"]
        print(f"{record.dataset} {record.method}{label}: mIoU {100 * record.metrics['mIoU']:.2f}  "
              f"aAcc {100 * record.metrics['aAcc']:.2f}  mAcc {100 * record.metrics['mAcc']:.2f}  "
              f"({record.num_images} images" + (f", {skipped} skipped: see extra.skipped" if skipped else "")
              + f") -> {Path(args.out) / 'record.json'}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``eval`` to the ``s2c2seg`` command line."""
    from . import evaluate as evaluate_module

    p = subparsers.add_parser("eval", help="evaluate a method on a dataset split (cached, resumable, torchrun)",
                              description=evaluate_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    add_method_arguments(p)
    p.set_defaults(func=_run_eval)
