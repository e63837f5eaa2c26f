"""``s2c2seg eval`` (the command line of ``evaluate.py``), and the options it shares with ``s2c2seg sweep``:
data, backend, vocabulary, protocol, cache and output (:func:`add_common_arguments`), the method, its preset and
the paper preset's CSS / CSG (:func:`add_method_arguments`), and their reading into the objects the API takes
(:func:`data_from_args`, :func:`backend_from_args`, :func:`method_from_args`, :func:`run_from_args`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .cli import OUT_FOLDER, PathRule, add_path_argument
from .css import STAGE2_POOLS, CSSConfig
from .csg import FUSION_MODES, CSGConfig
from .data.datasets import DATASETS
from .data.protocols import Protocol
from .data.vocab import Vocabulary
from .distributed import env_rank
from .evaluate import ON_ERROR, ON_ERROR_DEFAULT, evaluate
from .factories import MODEL_BACKENDS, SIM_IMAGES, backend_by_name, benchmark_key, dataset_by_name
from .encode_side import EncodeSpec
from .predict import METHODS, SCORE_SOURCES
from .presets import PRESETS, resolve_preset
from .records import claim_out_dir
from .runspec import RunSpec, resolve_run

__all__ = ["add_common_arguments", "add_method_arguments", "data_from_args", "backend_from_args",
           "method_from_args", "run_from_args", "eval_setup", "register_cli", "SOURCE_CHOICES"]


METHOD_OPTIONS = "--tau, --k-min, --k-max, --use, --stage2-pool, --mode, --lam, --temperature"
"""The options that set :class:`CSSConfig` / :class:`CSGConfig` fields (named when one of them is invalid)."""
PAPER_OPTIONS = {"tau": "css", "k_min": "css", "k_max": "css", "use": "css", "stage2_pool": "css",
                 "no_keep_background": "css", "mode": "csg", "lam": "csg", "temperature": "csg"}
"""The paper preset's options (argument dest -> the config it sets)."""
SOURCE_CHOICES = ("needed", "all")
"""``--sources``: the bundle sources a model backend computes: what the run reads, or every group (one cache
entry then serves the baseline, the paper reading and the released presets alike)."""
RELEASED_ALIASES = {"tau": "select.tau", "k_min": "select.k_min", "k_max": "select.k_max", "lam": "fusion.lam"}
"""Paper options that a released preset has too, as its dotted keys; the others need ``--preset paper``."""


DATA_ROOT = PathRule("folder", "give the dataset's root folder; see docs/datasets.md", must_exist=False)
"""``--data-root``: a missing or empty root is the dataset's own error, which names the layout it expects."""


def _opt_float(text: str):
    return None if text.lower() in ("none", "off", "") else float(text)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset, backend, vocabulary, protocol overrides, cache and output: shared by ``eval`` and ``sweep``."""
    g = p.add_argument_group("data")
    g.add_argument("dataset", help=f"benchmark key ({', '.join(DATASETS)}), or sim:<key> for SIMULATED scenes "
                                   "(use --backend sim)")
    g.add_argument("--sim-images", type=int, default=SIM_IMAGES, help="number of scenes for sim:<key>")
    add_path_argument(g, "--data-root", rule=DATA_ROOT, help="the dataset's root folder (see docs/datasets.md)")
    g.add_argument("--split", default="val")
    add_path_argument(g, "--region-dir", rule=PathRule("folder", "give the folder of CorrCLIP's <image stem>.npz "
                      "region masks"), help="folder of CorrCLIP's <image stem>.npz region masks (for the vote)")
    g.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    g = p.add_argument_group("backend")
    g.add_argument("--baseline", default="sclip", help="sclip, proxyclip, corrclip, naclip, clearclip, maskclip")
    g.add_argument("--backend", default="pretrained",
                   help="pretrained (default, real weights), random (RANDOM WEIGHTS), sim (SIMULATED), auto, or "
                        "module:factory")
    g.add_argument("--size", default="full", choices=["full", "tiny"], help="model size for --backend random")
    g.add_argument("--device", default=None, help="torch device for the models (default: the backend's)")
    g.add_argument("--sources", choices=SOURCE_CHOICES, default=SOURCE_CHOICES[0],
                   help="bundle sources to compute: those the run reads (default; a released run skips the paper "
                        "reading's whole-image CLIPSeg, a baseline run every S2C2Seg source), or all of them, so "
                        "that one --cache-dir serves later runs of every method")
    g = p.add_argument_group("vocabulary")
    add_path_argument(g, "--names", rule=PathRule("file", "give a name file: one class per line, synonyms on the line"),
                      help="a name file (one class per line, synonyms on the line) instead of the packaged one")
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
    add_path_argument(g, "--cache-dir", rule=OUT_FOLDER, help="feature-bundle cache folder (resume, sweeps)")
    add_path_argument(g, "--out", rule=OUT_FOLDER, required=True,
                      help="output folder (refused if it holds a finished record)")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR_DEFAULT,
                   help="an image that fails: stop naming it (default), or skip it and list it in the record")


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """The method, its preset and the paper preset's CSS / CSG options (unset = the preset's values)."""
    g = p.add_argument_group("method (preset; CSS / CSG of the paper preset)")
    g.add_argument("--method", default="s2c2seg", choices=list(METHODS))
    g.add_argument("--preset", choices=list(PRESETS),
                   help="method s2c2seg's computation: the authors' conference run (released, the default), their "
                        "journal run (released++), or the paper's formulas (paper; the default when an option "
                        "only the paper reading has is given: --mode, --use, --stage2-pool, --temperature, "
                        "--no-keep-background, --score-source baseline, --no-select); see docs/released.md")
    g.add_argument("--set", dest="preset_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset value by its dotted key, e.g. select.tau=0.5 (repeatable; keys: "
                        "s2c2seg.presets.preset_keys)")
    g.add_argument("--tau", type=float, help=f"CSS tau (paper: {CSSConfig.tau}; released: select.tau)")
    g.add_argument("--k-min", type=int, help=f"paper: {CSSConfig.k_min}; released: select.k_min")
    g.add_argument("--k-max", type=int, help=f"paper: {CSSConfig.k_max}; released: select.k_max")
    g.add_argument("--stage2-pool", choices=STAGE2_POOLS,
                   help="paper preset: stage 2's pool when |C_init| < K: all categories (the issue, default) or "
                        "C_init (the summary)")
    g.add_argument("--use", help="paper preset: CSS scores, comma-separated (default glob,spat,conf)")
    g.add_argument("--no-keep-background", action="store_true", default=None,
                   help="paper preset: do not force the background into the subset")
    g.add_argument("--score-source", default="clipseg", choices=list(SCORE_SOURCES),
                   help="CSS's s_spat: CLIPSeg (paper) or the baseline's softmax maps (ablation)")
    g.add_argument("--no-select", action="store_true", help="CSG on all classes (w/o CSS)")
    g.add_argument("--mode", choices=list(FUSION_MODES), help=f"paper preset: CSG fusion (default {CSGConfig.mode})")
    g.add_argument("--lam", type=float, help=f"CSG lambda (paper: {CSGConfig.lam}; released: fusion.lam)")
    g.add_argument("--temperature", type=float, help=f"paper preset: CSG temperature ({CSGConfig.temperature})")


def _parse_set(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set select.tau=0.5")
        out[key.strip()] = value.strip()
    return out


def method_from_args(args, dataset: str, *, per_point: bool = False):
    """``(preset, css, csg)`` of the method options for ``dataset``: ``--preset``, else the one default rule
    (:func:`s2c2seg.presets.resolve_preset`: the paper reading when an option only it has is given, else the
    default preset). ``per_point`` (sweeps): with no method option at all, ``(None, None, None)``: each grid point
    resolves its own."""
    given = {k: getattr(args, k) for k in PAPER_OPTIONS if getattr(args, k, None) is not None}
    overrides = _parse_set(args.preset_set)
    if args.method != "s2c2seg":
        if args.preset is not None or overrides:
            raise ValueError(f"--preset / --set are options of --method s2c2seg; --method {args.method} reads no "
                             "preset (drop them, or use --method s2c2seg)")
        css, csg = _paper_configs(given)
        return None, css, csg
    paper_only = bool(set(given) - set(RELEASED_ALIASES)) or args.score_source != SCORE_SOURCES[0] or args.no_select
    if per_point and args.preset is None and not given and not overrides and not paper_only:
        return None, None, None
    # the rule picks the preset when none is named; a named one is checked against the options below
    preset, _, _ = resolve_preset("s2c2seg", dataset, args.preset, paper_options=paper_only and args.preset is None)
    if preset.reading == "paper":  # the paper preset: its options set CSSConfig / CSGConfig
        css, csg = _paper_configs(given, preset.css, preset.csg)
        try:
            preset = dataclasses.replace(preset, css=css, csg=csg).override(overrides)
        except ValueError as exc:
            raise ValueError(f"{exc} (fix --set KEY=VALUE)") from exc
        return preset, preset.css, preset.csg
    other = sorted(set(given) - set(RELEASED_ALIASES))
    if other:
        raise ValueError(f"--{other[0].replace('_', '-')} is an option of --preset paper; preset {preset.name!r} "
                         f"takes --set KEY=VALUE (keys: s2c2seg.presets.preset_keys({preset.name!r}))")
    if paper_only:
        raise ValueError(f"--no-select / --score-source baseline are ablations of --preset paper; preset "
                         f"{preset.name!r} takes --set KEY=VALUE (e.g. --set select.tau=1.0 keeps every query)")
    try:
        preset = preset.override({**{RELEASED_ALIASES[k]: v for k, v in given.items()}, **overrides})
    except ValueError as exc:
        options = ", ".join(f"--{k.replace('_', '-')}" for k in RELEASED_ALIASES)
        raise ValueError(f"{exc} (fix the option that sets it: {options} or --set KEY=VALUE)") from exc
    return preset, None, None


def _paper_configs(given: dict, css: CSSConfig | None = None, csg: CSGConfig | None = None):
    """The paper preset's :class:`CSSConfig` / :class:`CSGConfig` with the given options applied."""
    css_kw = {k: v for k, v in given.items() if PAPER_OPTIONS[k] == "css" and k != "no_keep_background"}
    if "use" in css_kw:
        css_kw["use"] = tuple(u.strip() for u in css_kw["use"].split(",") if u.strip())
    if given.get("no_keep_background"):
        css_kw["keep_background"] = False
    csg_kw = {k: v for k, v in given.items() if PAPER_OPTIONS[k] == "csg"}
    try:
        return (dataclasses.replace(css or CSSConfig(), **css_kw), dataclasses.replace(csg or CSGConfig(), **csg_kw))
    except ValueError as exc:
        raise ValueError(f"{exc} (fix the method option that sets it: {METHOD_OPTIONS})") from exc


def data_from_args(args) -> tuple[Any, Vocabulary, Protocol]:
    """(dataset, vocabulary, protocol) from the common arguments (no model is loaded)."""
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
    return dataset, vocab, protocol


def backend_from_args(args, encode: EncodeSpec):
    """The backend of ``--backend``; a model backend's Segmenter encodes ``encode`` (the run's encode side,
    :meth:`EncodeSpec.segmenter_config`; ``--sources all``: every source group)."""
    extra = {}
    if args.cache_dir and ":" not in args.backend and args.backend != "sim":
        extra["cache_dir"] = str(Path(args.cache_dir) / "text")  # the text-embedding cache
    if args.backend in MODEL_BACKENDS:
        all_sources = getattr(args, "sources", SOURCE_CHOICES[0]) == "all"
        extra["config"] = encode.segmenter_config(args.device, all_sources=all_sources)
    return backend_by_name(args.backend, baseline=args.baseline, size=args.size, device=args.device, **extra)


def run_from_args(args, dataset: str, protocol: Protocol) -> RunSpec:
    """The :class:`~s2c2seg.runspec.RunSpec` of ``eval``'s method options (:func:`method_from_args`)."""
    preset, css, csg = method_from_args(args, dataset)
    return resolve_run(args.method, dataset, protocol, preset=preset, css=css, csg=csg,
                       score_source=args.score_source, select=not args.no_select, baseline=args.baseline)


def eval_setup(args):
    """``(dataset, vocab, protocol, spec, backend)`` of ``eval``'s arguments: the backend encodes the spec's side."""
    dataset, vocab, protocol = data_from_args(args)
    spec = run_from_args(args, benchmark_key(args.dataset), protocol)
    return dataset, vocab, protocol, spec, backend_from_args(args, spec.encode)


def _run_eval(args) -> int:
    claim_out_dir(args.out)  # refuse before loading any model
    dataset, vocab, protocol, spec, backend = eval_setup(args)
    record = evaluate(dataset, backend, vocab, protocol, method=spec.method, preset=spec.preset,
                      css=spec.css if spec.reading == "paper" else None,
                      csg=spec.csg if spec.reading == "paper" else None,
                      score_source=spec.score_source, select=spec.select, cache_dir=args.cache_dir,
                      out_dir=args.out, max_images=args.max_images, baseline=args.baseline,
                      progress=not args.no_progress, extra={"command": sys.argv}, on_error=args.on_error)
    preset = spec.preset
    if env_rank() == 0:
        label = f" [{record.label}]" if record.label else ""
        skipped = record.extra["num_skipped"]
        method = record.method + (f" ({preset.name})" if preset is not None else "")
        print(f"{record.dataset} {method}{label}: mIoU {100 * record.metrics['mIoU']:.2f}  "
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
