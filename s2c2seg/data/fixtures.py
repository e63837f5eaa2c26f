"""Tiny generated datasets in the exact on-disk layouts of the 10 benchmarks (tests, notebook CI runs).

``write_fixture(dataset, root)`` writes a few small images with label maps that use the real folder names,
file names, suffixes, split files and label encodings: VOC labels are palette PNGs with 255 boundaries,
``reduce_zero_label`` datasets store raw 0 (which the loader turns into 255), COCO-Object labels have no
ignore pixels (as the anchors' ``cvt_coco_object.py`` writes them), Cityscapes files lie in per-city folders
next to the other ``gtFine`` files, ADE-847 and PC-459 labels are 16-bit ``.tif`` files with 65535 ignore
strips and at least one class id above 255 per image. Same arguments, same bytes: everything comes from ``seed``.
Generated data, not a benchmark: numbers measured on it say nothing about the real datasets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import IGNORE_INDEX, DatasetSpec, get_spec

__all__ = ["write_fixture", "fixture_region_dir", "fixture_stems"]

_CITIES = ("frankfurt", "lindau", "munster")
"""Cityscapes' three val cities."""
_UINT8_MAX = 255


def _voc_palette() -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved class index), 256 entries, flattened RGB."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def fixture_stems(dataset: str, n_images: int) -> list[str]:
    """The image names (relative to the image folder, without suffix) a fixture of ``n_images`` uses."""
    spec = get_spec(dataset)
    if spec.name in ("voc21", "voc20"):
        return [f"2007_{33 + 6 * i:06d}" for i in range(n_images)]
    if spec.name in ("context60", "context59", "context459"):
        return [f"2008_{2 + 3 * i:06d}" for i in range(n_images)]
    if spec.name in ("coco_object", "coco_stuff164k"):
        return [f"{139 + 146 * i:012d}" for i in range(n_images)]
    if spec.name in ("ade20k", "ade847"):
        return [f"ADE_val_{i + 1:08d}" for i in range(n_images)]
    return [f"{_CITIES[i % 3]}/{_CITIES[i % 3]}_{i // 3:06d}_{19 * (i + 1):06d}" for i in range(n_images)]


def fixture_region_dir(dataset: str, root: str | Path) -> Path:
    """Where ``write_fixture(..., with_regions=True)`` puts the region masks: ``root/region_masks/<group>``."""
    return Path(root) / "region_masks" / get_spec(dataset).region_group


def _stored_label(spec: DatasetSpec, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A label map as stored on disk: a background class, 2-4 rectangles of random classes, an ignore boundary.

    16-bit datasets (ignore 65535) draw the first rectangle's class above 255, so 8-bit reading would show."""
    lo = 1 if spec.reduce_zero_label else 0
    hi = spec.stored_max  # inclusive
    wide = spec.ignore_index > _UINT8_MAX
    fill = 0 if (spec.reduce_zero_label or spec.background is not None) else int(rng.integers(lo, hi + 1))
    label = np.full((h, w), fill, dtype=np.uint16 if wide else np.uint8)
    for k in range(int(rng.integers(2, 5))):
        y1, x1 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        y2, x2 = int(rng.integers(y1 + 6, h + 1)), int(rng.integers(x1 + 6, w + 1))
        cls = int(rng.integers(_UINT8_MAX + 1 if wide and k == 0 else lo, hi + 1))
        label[y1:y2, x1:x2] = cls
        if spec.name != "coco_object":  # the anchors' COCO-Object labels have no ignore pixels
            label[y1:y2, x1] = spec.ignore_index  # a boundary strip, like VOC's 255 outlines
    return label


def _image(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8: one fixed colour per stored class value, plus noise."""
    colours = np.random.default_rng(1234).integers(0, 256, size=(256, 3))
    img = colours[label.astype(np.int64) % len(colours)] + rng.integers(-20, 21, size=label.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8)


def _regions(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Region ids: connected-ish blocks of the label, id 0 = unsegmented pixels (the anchors' minimum id)."""
    _, inverse = np.unique(label, return_inverse=True)
    regions = inverse.reshape(label.shape).astype(np.int32) + 1
    h, w = label.shape
    y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    regions[y:y + h // 4, x:x + w // 4] = 0
    return regions


def write_fixture(dataset: str, root: str | Path, n_images: int = 3, seed: int = 0,
                  size: tuple[int, int] = (48, 64), with_regions: bool = False, split: str = "val") -> Path:
    """Write ``n_images`` generated images of ``dataset`` under ``root`` in the real layout; returns ``root``.

    ``root`` is the dataset root :func:`~s2c2seg.data.datasets.load_dataset` takes (the ``VOC2012`` /
    ``VOC2010`` / ``coco`` / ``ADEChallengeData2016`` / ``cityscapes`` folder). ``size`` is (H, W). With
    ``with_regions`` the anchors' ``<image stem>.npz`` region masks go to :func:`fixture_region_dir`.
    Generated data: labelled as such in ``root/FIXTURE.txt``.
    """
    from PIL import Image

    spec = get_spec(dataset)
    if not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive int, got {n_images!r}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least (16, 16), got {size!r}")
    if split != "val":
        raise ValueError(f"split: fixtures are written for 'val' only, got {split!r}")
    root = Path(root)
    img_dir, ann_dir = root / spec.img_dir, root / spec.ann_dir
    stems = fixture_stems(spec.name, n_images)
    rdir = fixture_region_dir(spec.name, root) if with_regions else None
    if rdir is not None:
        rdir.mkdir(parents=True, exist_ok=True)
    palette = _voc_palette() if spec.name in ("voc21", "voc20") else None
    for i, stem in enumerate(stems):
        rng = np.random.default_rng([seed, i])
        label = _stored_label(spec, rng, h, w)
        img_path = img_dir / f"{stem}{spec.img_suffix}"
        seg_path = ann_dir / f"{stem}{spec.seg_suffix}"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        seg_path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(_image(label, rng))
        if spec.img_suffix.endswith(".jpg"):
            image.save(img_path, format="JPEG", quality=95)
        else:
            image.save(img_path, format="PNG")
        seg = Image.fromarray(label)  # uint8 (H, W) -> mode "L"; uint16 -> "I;16"
        if palette is not None:
            seg.putpalette(palette)  # -> mode "P", as VOC's SegmentationClass PNGs
        seg.save(seg_path, format="TIFF" if spec.seg_suffix == ".tif" else "PNG")
        if spec.name == "cityscapes":  # the other gtFine files sit next to the train ids
            raw_ids = np.where(label == IGNORE_INDEX, 0, label.astype(np.int64) + 7).astype(np.uint8)
            Image.fromarray(raw_ids).save(ann_dir / f"{stem}_gtFine_labelIds.png", format="PNG")
        if rdir is not None:
            np.savez_compressed(rdir / f"{Path(img_path.name).stem}.npz", instance_mask=_regions(label, rng))
    if spec.split_file is not None:
        split_path = root / spec.split_file
        split_path.parent.mkdir(parents=True, exist_ok=True)
        split_path.write_text("".join(f"{s}\n" for s in stems), encoding="utf-8")
    (root / "FIXTURE.txt").write_text(f"GENERATED DATA (s2c2seg.data.fixtures): {spec.name}, {n_images} images, "
                                      f"seed {seed}, size {h}x{w}; not the real benchmark.\n", encoding="utf-8")
    return root
