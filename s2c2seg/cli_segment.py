"""``s2c2seg segment IMAGE... --classes "cat; kitty, sofa, floor"``: segment your own images with your own words.

IMAGE is a file, a folder (its images, sorted) or a glob; a batch loads the models once and embeds the words
once. The words: ``--classes`` (classes separated by ``,``, synonyms of one class by ``;``), ``--vocab FILE`` (one
class per line, synonyms as in the baseline's anchor name files: ``; `` for ProxyCLIP / CorrCLIP, ``, `` for SCLIP),
or ``--dataset voc21`` (that dataset's names and protocol; with ``--classes`` / ``--vocab``, its protocol only).
Without ``--dataset`` the protocol is the baseline's VOC-20 row (no background class) and a preset has no published
operating point, so it takes the release's config defaults; ``<name>.json`` says both.

Per image, in ``--out``: ``<name>.png`` (the label map over the image, a legend, and ``SIMULATED`` / ``RANDOM
WEIGHTS`` drawn on it whenever real weights are not used), ``<name>_labels.png`` (class indices, 8-bit; 16-bit
beyond 256 classes), ``<name>.json`` (per class its area %, whether CSS kept it and its scores; the run's
description and backend label) and with ``--explain`` ``<name>_explain.png`` (``docs/segment.md``). Existing
outputs are never replaced without ``--force``. ``--backend sim`` does not read the image's content: it simulates a
scene at the image's size (``s2c2seg.segment.simulated_truth``).
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import uuid
from pathlib import Path

from .segment import DEFAULT_BACKEND, DEFAULT_BASELINE, METHOD_CHOICES

__all__ = ["IMAGE_SUFFIXES", "OUTPUT_SUFFIXES", "EXPLAIN_SUFFIX", "expand_images", "output_paths", "register_cli"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
"""What a folder's files must end with to be taken as images (case-insensitive)."""
OUTPUT_SUFFIXES = (".png", "_labels.png", ".json")
"""The files written per image (``<name><suffix>``)."""
EXPLAIN_SUFFIX = "_explain.png"
"""The explanation figure's suffix (``--explain``)."""


def expand_images(items: list[str]) -> list[Path]:
    """The image files of ``items``: files as given, a folder's images (sorted), a glob's matches (sorted)."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif path.is_file():
            out.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"no image matches {item!r}")
            out += found
        else:
            raise FileNotFoundError(f"image file not found: {path}")
    return out


def output_paths(images: list[Path], out: Path, explain: bool) -> dict[Path, list[Path]]:
    """Per image the files it writes; two images with one name (``a/x.jpg``, ``b/x.png``) raise."""
    suffixes = OUTPUT_SUFFIXES + ((EXPLAIN_SUFFIX,) if explain else ())
    seen: dict[str, Path] = {}
    paths = {}
    for image in images:
        if image.stem in seen and seen[image.stem] != image:
            raise ValueError(f"images {seen[image.stem]} and {image} would write the same outputs "
                             f"({image.stem}.png, ...): segment them in two runs with different --out")
        seen[image.stem] = image
        paths[image] = [out / f"{image.stem}{s}" for s in suffixes]
    return paths


def _claim_out(out: Path, outputs: dict[Path, list[Path]], force: bool) -> None:
    """Refuse an unwritable ``--out`` and existing outputs (without ``--force``), before any model loads."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder (give a folder to write into)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".s2c2seg-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"--out {out} is not writable ({exc.strerror or exc}; give a folder you can write "
                              "to)") from exc
    if force:
        return
    existing = [p for files in outputs.values() for p in files if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists" + (f" (and {len(existing) - 1} more outputs)"
                                                         if len(existing) > 1 else "")
                              + ": give --force to overwrite, or another --out")


def _check_headers(images: list[Path]) -> None:
    """Every image opens as an image (header only: the models are not loaded for a batch that cannot run)."""
    from PIL import Image, UnidentifiedImageError

    from .io import ImageLoadError

    for path in images:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(f"cannot read image {path}: {exc} (give an image file: "
                                 f"{', '.join(IMAGE_SUFFIXES)})") from exc


def _write(seg, files: list[Path], explain: bool) -> None:
    from .analysis import finite_tree
    from .explain_plot import labels_png, overlay_image, png_bytes
    from .store import atomic_write

    overlay, labels, record = files[:3]
    atomic_write(overlay, png_bytes(overlay_image(seg)))
    atomic_write(labels, labels_png(seg.label_map, len(seg.classes)))
    rec = {**seg.to_json(), "outputs": [p.name for p in files]}
    atomic_write(record, json.dumps(finite_tree(rec), indent=2, sort_keys=True) + "\n")
    if explain:
        import io

        import matplotlib.pyplot as plt

        from .explain_plot import explain_figure

        fig = explain_figure(seg)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=200, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        atomic_write(files[3], buf.getvalue())


def _summary_line(seg) -> str:
    shown = sorted((c for c in seg.classes if c.area_percent > 0), key=lambda c: -c.area_percent)
    text = ", ".join(f"{c.name} {c.area_percent:.1f}%" for c in shown[:6]) + (" ..." if len(shown) > 6 else "")
    return f"{seg.name}{' [' + seg.label + ']' if seg.label else ''}: {text}"


def _run_segment(args) -> int:
    from tqdm.auto import tqdm

    from .cli_eval import _parse_set
    from .segment import ImageSegmenter

    if args.method == "baseline" and args.explain:
        raise ValueError("--explain shows what S2C2Seg chose; --method baseline chooses nothing (drop one of them)")
    if args.classes is None and args.vocab is None and args.dataset is None:
        raise ValueError("no classes: give --classes 'cat; kitty, sofa, floor', --vocab FILE or --dataset KEY")
    if args.explain:
        try:
            import matplotlib
        except ImportError as exc:
            raise ValueError("--explain draws with matplotlib, which is not installed (pip install "
                             "'s2c2seg[notebooks]')") from exc
        matplotlib.use("Agg")
    images = expand_images(args.images)
    out = Path(args.out)
    outputs = output_paths(images, out, args.explain)
    classes = Path(args.vocab) if args.vocab is not None else args.classes
    runner = ImageSegmenter(classes, baseline=args.baseline, method=args.method, preset=args.preset,
                            overrides=_parse_set(args.preset_set), backend=args.backend, size=args.size,
                            device=args.device, dataset=args.dataset, cache_dir=args.cache_dir)  # no model yet
    _check_headers(images)
    _claim_out(out, outputs, args.force)
    reason = runner.backend_info.get("fallback_reason")
    if reason:
        print(f"s2c2seg: note: --backend auto fell back to the simulation: every output says SIMULATED "
              f"({reason.split(';')[0]})", file=sys.stderr)
    bar = tqdm(images, disable=args.no_progress, desc="segment", unit="img", dynamic_ncols=True, file=sys.stderr)
    for path in bar:
        seg = runner(path, explain=args.explain)
        _write(seg, outputs[path], args.explain)
        bar.write(_summary_line(seg), file=sys.stdout)
    print(f"{len(images)} image(s){' [' + runner.label + ']' if runner.label else ''} -> {out}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``segment`` to the ``s2c2seg`` command line."""
    from .presets import PRESETS

    p = subparsers.add_parser("segment", help="segment your own images with your own class names",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders of images, or globs")
    g = p.add_argument_group("words")
    words = g.add_mutually_exclusive_group()
    words.add_argument("--classes", help="class names separated by ',', synonyms of one class by ';', e.g. "
                                         "'cat; kitty, sofa, floor'")
    words.add_argument("--vocab", metavar="FILE", help="a name file: one class per line, synonyms on the line")
    g.add_argument("--dataset", help="a benchmark key (e.g. voc21): its protocol, and its names unless --classes "
                                     "or --vocab is given")
    g = p.add_argument_group("method")
    g.add_argument("--baseline", default=DEFAULT_BASELINE,
                   help="sclip, proxyclip (default), corrclip, naclip, clearclip, maskclip")
    g.add_argument("--method", default=METHOD_CHOICES[0], choices=list(METHOD_CHOICES))
    g.add_argument("--preset", choices=list(PRESETS), help="method s2c2seg's computation (default: released; "
                                                           "docs/released.md)")
    g.add_argument("--set", dest="preset_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset value by its dotted key, e.g. select.tau=0.5 (repeatable; keys: "
                        "s2c2seg.presets.preset_keys)")
    g = p.add_argument_group("backend")
    g.add_argument("--backend", default=DEFAULT_BACKEND,
                   help="auto (default: real weights when they load, else sim), pretrained, random (RANDOM WEIGHTS), "
                        "sim (SIMULATED), or module:factory")
    g.add_argument("--size", default="full", choices=["full", "tiny"], help="model size for --backend random")
    g.add_argument("--device", default=None, help="torch device for the models (default: the backend's)")
    g.add_argument("--cache-dir", help="feature-bundle and text-embedding cache folder")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="segments", help="output folder (default: %(default)s)")
    g.add_argument("--explain", action="store_true", help="also write <name>_explain.png (docs/segment.md)")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")
    g.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_segment)
