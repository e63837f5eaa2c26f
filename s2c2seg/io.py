"""Image and label-map loading: every image kind becomes (H, W, 3) uint8 RGB; label maps keep their values.

The anchors load images with mmcv (``cv2.imread(..., IMREAD_COLOR)``: EXIF orientation applied, alpha
dropped, 16-bit scaled to 8-bit by ``>> 8``, grey replicated) and labels with mmcv's pillow backend in
``unchanged`` mode (palette PNGs give their indices). Here both go through PIL with the same rules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ImageLoadError", "load_image", "load_label", "to_rgb_uint8"]


class ImageLoadError(ValueError):
    """An image or label file exists but cannot be decoded (corrupt, truncated, unsupported)."""


def _open(path: str | Path):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        img = Image.open(path)
        img.load()  # decode now so truncated files fail here, naming the path
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"cannot decode image {path}: {exc}") from exc
    return img


def to_rgb_uint8(img) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image of any mode (grey, RGBA, LA, palette, 1-bit, 16/32-bit, CMYK, YCbCr)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        arr = np.clip(arr, 0, 65535) >> 8  # 16-bit depth to 8 bits, as OpenCV's IMREAD_COLOR does
        arr = arr.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    if mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float64), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL's own path for palettes with transparency; alpha dropped below
    elif mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")  # grey, palette, 1-bit, CMYK, YCbCr, LAB, HSV
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[..., :3])  # alpha dropped, not composited


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Missing file: ``FileNotFoundError``; corrupt file: :class:`ImageLoadError`;
    both name ``path``."""
    from PIL import ImageOps

    img = _open(path)
    try:
        img = ImageOps.exif_transpose(img)
        return to_rgb_uint8(img)
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot convert image {path} to RGB: {exc}") from exc


def load_label(path: str | Path) -> np.ndarray:
    """(H, W) int64 label map with the stored values (palette PNGs give indices, not colours).

    A multi-channel label raises :class:`ImageLoadError` naming ``path``.
    """
    img = _open(path)
    if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "1"):
        return np.asarray(img).astype(np.int64)
    raise ImageLoadError(f"label map {path} has mode {img.mode!r}; expected a single-channel PNG")
