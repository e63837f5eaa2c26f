"""Sliding-window geometry against mmcv / mmseg rules, and count-map averaging."""
import pytest
import torch
import torch.nn.functional as F

from s2c2seg.slide import rescale_size, resize_short_side, slide_average, slide_boxes


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


def test_resize_short_side_bilinear():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8)
    out = resize_short_side(img, 336)
    assert out.shape == (3, 336, 448) and out.dtype == torch.uint8
    ref = F.interpolate(img[None].float(), size=(336, 448), mode="bilinear", align_corners=False)[0]
    assert (out.float() - ref).abs().max() <= 0.5 + 1e-4
    const = torch.full((3, 50, 70), 77, dtype=torch.uint8)
    assert (resize_short_side(const, 100) == 77).all()
    with pytest.raises(ValueError, match="uint8"):
        resize_short_side(img.float(), 336)
