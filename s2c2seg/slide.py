"""Test-time geometry of the anchors (mmseg / mmcv): short-side resize, sliding windows, count-map averaging.

Pure functions, no model. ``rescale_size`` + ``resize_short_side`` reproduce mmcv's
``Resize(scale=(2048, S), keep_ratio=True)``; ``slide_boxes`` reproduces the window grid of mmseg's
``slide_inference`` (copied into SCLIP / ProxyCLIP / CorrCLIP as ``forward_slide``); ``window_padding`` is
ProxyCLIP's (and the S2C2Seg release's) ``compute_padsize`` of each window; ``slide_average``
rebuilds the full logit map from per-crop logits exactly as those loops do (bilinear upsampling of each
crop's logits to the crop size, sum into the image, divide by the number of windows covering each pixel).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["rescale_size", "resize_short_side", "slide_boxes", "window_padding", "slide_average"]

LONG_MAX = 2048
"""Long-side cap of mmcv's ``Resize(scale=(LONG_MAX, short_side), keep_ratio=True)`` in the anchors' test pipeline."""
PIXEL_MEAN = (122.771, 116.746, 104.094)
"""The anchors' ``SegDataPreProcessor`` mean (CLIP's mean x 255, rounded as in their configs)."""
PIXEL_STD = (68.501, 66.632, 70.323)
"""The anchors' ``SegDataPreProcessor`` std (CLIP's std x 255)."""

_SIZE_KEY_BASE = 100003
"""A prime larger than any window side: ``height * base + width`` is a unique key per window size."""


def rescale_size(h: int, w: int, short_side: int, long_max: int = LONG_MAX) -> tuple[int, int]:
    """mmcv ``rescale_size`` for ``scale=(long_max, short_side)``, keep_ratio: the new ``(h, w)``.

    The scale factor is ``min(long / max(h, w), short / min(h, w))`` with ``long = max(long_max, short_side)``
    and ``short = min(long_max, short_side)``; each side becomes ``int(side * factor + 0.5)``.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got h={h}, w={w}")
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    long_edge, short_edge = max(long_max, short_side), min(long_max, short_side)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


def resize_short_side(image: torch.Tensor, short_side: int, long_max: int = LONG_MAX) -> torch.Tensor:
    """Resize a (3, H, W) uint8 image with mmcv's keep-ratio rule, as mmcv does: ``cv2.resize(INTER_LINEAR)``.

    OpenCV's bilinear on uint8 samples at half-pixel centres (align_corners=False, no anti-aliasing) with
    11-bit fixed-point weights and its own integer rounding, so the result can differ from a float bilinear
    rounded to uint8 by one grey level (on ~12 % of values at VOC size).
    """
    import cv2

    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be a (3, H, W) uint8 tensor, got {tuple(image.shape)} {image.dtype}")
    h, w = image.shape[1:]
    nh, nw = rescale_size(h, w, short_side, long_max)
    if (nh, nw) == (h, w):
        return image.clone()
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
    out = cv2.resize(hwc, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


def slide_boxes(h: int, w: int, crop: int, stride: int) -> torch.Tensor:
    """(N, 4) int64 windows ``(y1, y2, x1, x2)`` of mmseg's slide inference over an ``h x w`` image.

    Rows of windows start every ``stride`` pixels; the last one is snapped to the border
    (``y1 = max(y2 - crop, 0)``). A side shorter than ``crop`` gets one window spanning it (so an image
    smaller than the crop in both sides is one whole-image window, and with one short side the windows
    slide along the other side only). ``crop == 0`` means whole-image inference: one box.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got h={h}, w={w}")
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop == 0:
        return torch.tensor([[0, h, 0, w]], dtype=torch.long)
    if stride <= 0:
        raise ValueError(f"stride must be positive when crop > 0, got {stride}")
    h_grids = max(h - crop + stride - 1, 0) // stride + 1
    w_grids = max(w - crop + stride - 1, 0) // stride + 1
    boxes = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2, x2 = min(hi * stride + crop, h), min(wi * stride + crop, w)
            boxes.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return torch.tensor(boxes, dtype=torch.long)


def window_padding(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` zero padding that makes an ``h x w`` window a multiple of ``multiple``.

    ProxyCLIP's ``compute_padsize`` (also the S2C2Seg release's ``forward_slide``): a side that is not a
    multiple gets ``multiple - side % multiple`` pixels, ``// 2`` before and the rest after; ``multiple=0``
    means no padding.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"window size must be positive, got h={h}, w={w}")
    if multiple < 0:
        raise ValueError(f"multiple must be >= 0, got {multiple}")

    def split(side: int) -> tuple[int, int]:
        extra = (multiple - side % multiple) % multiple if multiple else 0
        return extra // 2, extra - extra // 2

    return (*split(h), *split(w))


def slide_average(per_crop_logits: torch.Tensor, boxes: torch.Tensor, hw, out_hw=None, pad=None) -> torch.Tensor:
    """(Q, H, W) full logit map from per-crop logits: upsample, cut the padding, sum, divide by the window count.

    ``per_crop_logits`` (N, Q, gh, gw) on each crop's token grid; ``boxes`` (N, 4) ``(y1, y2, x1, x2)``
    in an image of size ``hw`` = (H, W). Each crop's logits are bilinearly upsampled (align_corners=False)
    to its (padded) window size, as the anchors' ``forward_feature`` does; ``pad`` = ``(top, bottom, left,
    right)`` (:func:`window_padding`, None = none) is then cut off; the rest is averaged where windows overlap.
    With ``out_hw`` the result is bilinearly resized once more (the anchors' resize to the label's size).
    Output dtype is float32 (or the input's, if float64).
    """
    if per_crop_logits.ndim != 4:
        raise ValueError(f"per_crop_logits must be (N, Q, gh, gw), got {tuple(per_crop_logits.shape)}")
    boxes = torch.as_tensor(boxes, dtype=torch.long).reshape(-1, 4)
    n, q = per_crop_logits.shape[:2]
    if boxes.shape[0] != n:
        raise ValueError(f"boxes has {boxes.shape[0]} rows, per_crop_logits has {n} crops")
    H, W = (int(v) for v in hw)
    if n == 0 or (boxes[:, 0] < 0).any() or (boxes[:, 2] < 0).any() or (boxes[:, 1] > H).any() \
            or (boxes[:, 3] > W).any() or (boxes[:, 1] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 2]).any():
        raise ValueError(f"boxes must be non-empty windows inside the {H}x{W} image, got {boxes.tolist()}")
    top, bottom, left, right = (0, 0, 0, 0) if pad is None else (int(v) for v in pad)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad must be non-negative (top, bottom, left, right), got {pad}")
    dtype = torch.float64 if per_crop_logits.dtype == torch.float64 else torch.float32
    logits = per_crop_logits.to(dtype)
    total = logits.new_zeros(q, H, W)
    count = logits.new_zeros(1, H, W)
    sizes = (boxes[:, 1] - boxes[:, 0]) * _SIZE_KEY_BASE + (boxes[:, 3] - boxes[:, 2])
    for key in sizes.unique():  # crops of one size are upsampled in one call (normally all of them)
        idx = (sizes == key).nonzero().flatten()
        y1, y2, x1, x2 = boxes[idx[0]].tolist()
        h, w = y2 - y1, x2 - x1
        up = F.interpolate(logits[idx], size=(h + top + bottom, w + left + right), mode="bilinear",
                           align_corners=False)[:, :, top:top + h, left:left + w]
        for j, i in enumerate(idx.tolist()):
            y1, y2, x1, x2 = boxes[i].tolist()
            total[:, y1:y2, x1:x2] += up[j]
            count[:, y1:y2, x1:x2] += 1
    if (count == 0).any():
        raise ValueError("boxes do not cover the whole image")
    out = total / count
    if out_hw is not None and tuple(int(v) for v in out_hw) != (H, W):
        out = F.interpolate(out[None], size=tuple(int(v) for v in out_hw), mode="bilinear",
                            align_corners=False)[0]
    return out
