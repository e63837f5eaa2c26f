"""Sliding-window geometry against mmcv / mmseg rules, and count-map averaging."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2c2seg.slide import rescale_size, resize_short_side, slide_average, slide_boxes, window_padding


def test_rescale_size_mmcv_rule():
    # VOC 500x375 (w x h) at short side 336: factor 336/375 -> (336, 448)
    assert rescale_size(375, 500, 336) == (336, 448)
    # the long side caps at 2048: 100 x 4000 at short 336 -> factor min(2048/4000, 3.36) = 0.512
    assert rescale_size(100, 4000, 336) == (int(100 * 0.512 + 0.5), 2048)
    # upscaling too (mmcv keep_ratio scales up small images)
    assert rescale_size(100, 150, 448) == (448, 672)
    # int(x + 0.5) rounding: 333 x 500 at 336 -> 336/333 * 500 = 504.5 -> 505
    assert rescale_size(333, 500, 336) == (336, int(500 * 336 / 333 + 0.5))
    with pytest.raises(ValueError, match="short_side"):
        rescale_size(10, 10, 0)


def _mmseg_boxes(h, w, crop, stride):
    """The mmseg loop written out longhand, for comparison."""
    out = []
    hg = max(h - crop + stride - 1, 0) // stride + 1
    wg = max(w - crop + stride - 1, 0) // stride + 1
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * stride, j * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out.append([y1, y2, x1, x2])
    return out


@pytest.mark.parametrize("h,w", [(336, 448), (224, 224), (225, 300), (100, 500), (500, 100), (50, 60)])
def test_slide_boxes(h, w):
    b = slide_boxes(h, w, 224, 112)
    assert b.tolist() == _mmseg_boxes(h, w, 224, 112)
    assert (b[:, 1] == h).any() and (b[:, 3] == w).any()  # last window snapped to the border


def test_slide_boxes_cases():
    assert slide_boxes(336, 448, 224, 112).tolist() == [
        [0, 224, 0, 224], [0, 224, 112, 336], [0, 224, 224, 448],
        [112, 336, 0, 224], [112, 336, 112, 336], [112, 336, 224, 448]]
    assert slide_boxes(100, 120, 224, 112).tolist() == [[0, 100, 0, 120]]  # smaller than the crop
    assert slide_boxes(100, 500, 224, 112).tolist() == [  # one short side: slides along the other only
        [0, 100, 0, 224], [0, 100, 112, 336], [0, 100, 224, 448], [0, 100, 276, 500]]
    assert slide_boxes(300, 400, 0, 112).tolist() == [[0, 300, 0, 400]]  # crop 0: whole image
    with pytest.raises(ValueError, match="stride"):
        slide_boxes(300, 400, 224, 0)
    with pytest.raises(ValueError, match="crop"):
        slide_boxes(300, 400, -1, 112)


def test_slide_average_matches_loop():
    torch.manual_seed(0)
    h, w = 336, 448
    boxes = slide_boxes(h, w, 224, 112)
    logits = torch.randn(len(boxes), 5, 14, 14)
    preds, count = torch.zeros(5, h, w), torch.zeros(1, h, w)
    for lg, (y1, y2, x1, x2) in zip(logits, boxes.tolist()):
        up = F.interpolate(lg[None], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
        preds += F.pad(up, (x1, w - x2, y1, h - y2))
        count[:, y1:y2, x1:x2] += 1
    ref = preds / count
    out = slide_average(logits, boxes, (h, w))
    assert out.shape == (5, h, w) and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-6)
    full = slide_average(logits, boxes, (h, w), out_hw=(375, 500))
    assert torch.allclose(full, F.interpolate(ref[None], size=(375, 500), mode="bilinear")[0], atol=1e-6)


def test_slide_average_whole_image_equals_upsample():
    x = torch.randn(1, 3, 7, 9)
    out = slide_average(x, slide_boxes(112, 144, 0, 0), (112, 144))
    assert torch.allclose(out, F.interpolate(x, size=(112, 144), mode="bilinear")[0])


def test_slide_average_bad_boxes():
    with pytest.raises(ValueError, match="rows"):
        slide_average(torch.zeros(2, 1, 2, 2), torch.tensor([[0, 4, 0, 4]]), (4, 4))
    with pytest.raises(ValueError, match="cover"):
        slide_average(torch.zeros(1, 1, 2, 2), torch.tensor([[0, 2, 0, 4]]), (4, 4))
    with pytest.raises(ValueError, match="inside"):
        slide_average(torch.zeros(1, 1, 2, 2), torch.tensor([[0, 5, 0, 4]]), (4, 4))


def _cv_coeffs(src: int, dst: int):
    """OpenCV INTER_LINEAR taps per output index, written out: half-pixel source position in float32,
    borders clamped, weights ``round((1 - f) * 2048)`` and ``2048 - that`` (11 fractional bits)."""
    taps = []
    for d in range(dst):
        f = np.float32((d + 0.5) * (src / dst) - 0.5)
        s = int(np.floor(f))
        f = np.float32(f - s)
        if s < 0:
            s, f = 0, np.float32(0)
        if s >= src - 1:
            s, f = src - 1, np.float32(0)
        c0 = int(np.round(np.float32(1 - f) * 2048))
        taps.append((s, min(s + 1, src - 1), c0, 2048 - c0))
    return taps


def _cv_linear_uint8(img: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """Independent re-derivation of OpenCV's vectorised uint8 bilinear: horizontal pass in int32, then
    ``((row >> 4) * b) >> 16`` per vertical tap, summed, ``(+2) >> 2`` (22 fractional bits in all)."""
    h, w = img.shape[:2]
    img = img.astype(np.int64)
    rows = np.stack([img[:, a] * c0 + img[:, b] * c1 for a, b, c0, c1 in _cv_coeffs(w, nw)], 1) >> 4
    out = np.stack([((rows[a] * c0) >> 16) + ((rows[b] * c1) >> 16) for a, b, c0, c1 in _cv_coeffs(h, nh)], 0)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def test_resize_short_side_is_mmcv_cv2_linear():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)           # VOC size -> 336 x 448
    out = resize_short_side(torch.from_numpy(img).permute(2, 0, 1).contiguous(), 336)
    assert out.shape == (3, 336, 448) and out.dtype == torch.uint8
    assert np.array_equal(out.permute(1, 2, 0).numpy(), _cv_linear_uint8(img, 336, 448))
    # and it is not a float bilinear rounded to uint8: that differs by one grey level on ~12 % of values
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].double(), size=(336, 448), mode="bilinear",
                        align_corners=False)[0]
    diff = (out.double() - (ref + 0.5).floor())
    assert diff.abs().max() == 1 and 0.05 < (diff != 0).double().mean() < 0.2


def test_resize_short_side_hand_values():
    # 1 x 2 -> 6 x 12 (x6). Column d samples f = (d + 0.5)/6 - 0.5; f <= 0 -> 0, f >= 1 -> 3; else
    # w1 = 2048 - round(2048 (1 - f)), row = 3 w1 >> 4, v = row * 2048 >> 16, out = (v + 2) >> 2:
    # d=3: w1 171 -> 32 -> 1 -> 0; d=4: 512 -> 96 -> 3 -> 1; d=5: 853 -> 159 -> 4 -> 1; d=6: 1195 -> 224 -> 7 -> 2;
    # d=7: 1536 -> 288 -> 9 -> 2; d=8: 1877 -> 351 -> 10 -> 3.
    img = torch.tensor([0, 3], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2).contiguous()
    out = resize_short_side(img, 6)
    assert out.shape == (3, 6, 12)
    assert out[0, 0].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert (out == out[:1, :1]).all()                                     # every row and channel alike
    const = torch.full((3, 50, 70), 77, dtype=torch.uint8)
    assert (resize_short_side(const, 100) == 77).all()
    with pytest.raises(ValueError, match="uint8"):
        resize_short_side(img.float(), 336)


def test_window_padding_release_rule():
    assert window_padding(336, 336, 56) == (0, 0, 0, 0)                 # already a multiple: untouched
    assert window_padding(336, 300, 56) == (0, 0, 18, 18)               # 300 -> 336: 36 = 18 + 18
    assert window_padding(100, 335, 56) == (6, 6, 0, 1)                 # 100 -> 112; 335 -> 336: 0 before, 1 after
    assert window_padding(10, 10, 0) == (0, 0, 0, 0)                    # 0: no padding
    with pytest.raises(ValueError, match="multiple"):
        window_padding(10, 10, -1)


def test_slide_average_cuts_the_padding_as_forward_slide():
    # ProxyCLIP's forward_slide: logits of the padded window upsampled to the padded size, padding cut, averaged
    torch.manual_seed(0)
    h, w, crop = 100, 130, 100
    boxes = slide_boxes(h, w, crop, 50)                                 # windows 100 x 100 -> padded 112 x 112
    pad = window_padding(100, 100, 56)
    logits = torch.randn(len(boxes), 3, 14, 14, dtype=torch.float64)
    preds, count = torch.zeros(3, h, w, dtype=torch.float64), torch.zeros(1, h, w, dtype=torch.float64)
    for lg, (y1, y2, x1, x2) in zip(logits, boxes.tolist()):
        up = F.interpolate(lg[None], size=(112, 112), mode="bilinear", align_corners=False)[0]
        up = up[:, pad[0]:pad[0] + y2 - y1, pad[2]:pad[2] + x2 - x1]
        preds += F.pad(up, (x1, w - x2, y1, h - y2))
        count[:, y1:y2, x1:x2] += 1
    out = slide_average(logits, boxes, (h, w), pad=torch.tensor(pad))
    assert pad == (6, 6, 6, 6) and out.dtype == torch.float64
    assert torch.allclose(out, preds / count, atol=1e-12)
    assert not torch.allclose(out, slide_average(logits, boxes, (h, w)), atol=1e-3)   # padding matters
