"""The metric: MMSeg IoUMetric semantics against a per-pixel Python reference, merge, JSON, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2c2seg.metrics import ConfusionMatrix, reduce_zero_label


def reference(pairs, c, ignore=255):
    """Per-pixel Python loops: per-class intersection / label / prediction areas summed over all images."""
    inter, lab_area, pred_area = [0] * c, [0] * c, [0] * c
    for pred, label in pairs:
        for p, t in zip(np.asarray(pred).ravel().tolist(), np.asarray(label).ravel().tolist()):
            if t == ignore:
                continue
            lab_area[t] += 1
            pred_area[p] += 1
            if p == t:
                inter[p] += 1
    iou = [inter[i] / u if (u := lab_area[i] + pred_area[i] - inter[i]) else math.nan for i in range(c)]
    acc = [inter[i] / lab_area[i] if lab_area[i] else math.nan for i in range(c)]
    ok = [v for v in iou if not math.isnan(v)]
    oka = [v for v in acc if not math.isnan(v)]
    return dict(iou=iou, miou=sum(ok) / len(ok) if ok else math.nan, acc=acc,
                macc=sum(oka) / len(oka) if oka else math.nan,
                aacc=sum(inter) / sum(lab_area) if sum(lab_area) else math.nan)


def assert_matches(cm, ref):
    np.testing.assert_allclose(cm.iou().numpy(), ref["iou"], rtol=1e-12)
    np.testing.assert_allclose(cm.acc().numpy(), ref["acc"], rtol=1e-12)
    for k in ("miou", "macc", "aacc"):
        got = getattr(cm, k)()
        assert (math.isnan(got) and math.isnan(ref[k])) or got == pytest.approx(ref[k], rel=1e-12), k


def test_hand_case():
    # 2×3 image, 3 classes, one ignored pixel
    label = np.array([[0, 0, 1], [1, 255, 2]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    cm = ConfusionMatrix(3).update(pred, label)
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # GT rows, prediction columns
    # class 0: I=1, U=2+2-1=3; class 1: I=2, U=2+3-2=3; class 2: I=0, U=1
    torch.testing.assert_close(cm.iou(), torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.aacc() == pytest.approx(3 / 5)
    assert cm.macc() == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_absent_class_is_nan_and_skipped_predicted_absent_is_zero():
    label = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 2]])
    cm = ConfusionMatrix(4).update(pred, label)
    iou = cm.iou()
    assert math.isnan(float(iou[3]))  # never labelled, never predicted
    assert float(iou[2]) == 0.0  # predicted but absent from GT
    assert cm.miou() == pytest.approx((1 + 0.5 + 0) / 3)
    assert math.isnan(cm.acc()[2]) and cm.macc() == pytest.approx(0.75)


def test_empty_and_all_ignored():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou()) and math.isnan(cm.aacc()) and math.isnan(cm.macc())
    cm.update(np.zeros((2, 2), np.int64), np.full((2, 2), 255, np.uint8))
    assert int(cm.matrix.sum()) == 0
    # a prediction outside [0, C) on an ignored pixel is fine (MMSeg drops it)
    cm.update(np.array([[7, 0]]), np.array([[255, 0]]))
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(1, 4))
def test_matches_reference_on_random_maps(seed, c, n_images):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_images):
        h, w = rng.integers(1, 12, size=2)
        label = rng.integers(0, c, size=(h, w))
        label[rng.random((h, w)) < 0.2] = 255
        pred = rng.integers(0, c, size=(h, w))
        pairs.append((pred, label))
    cm = ConfusionMatrix(c)
    for i, (pred, label) in enumerate(pairs):  # mix numpy / torch / dtypes
        if i % 2:
            cm.update(torch.from_numpy(pred), torch.from_numpy(label.astype(np.uint8)))
        else:
            cm.update(pred.astype(np.int32), label)
    assert_matches(cm, reference(pairs, c))


def test_merge_equals_single_pass_and_json_roundtrip():
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 5, (6, 7)), np.where(rng.random((6, 7)) < 0.1, 255, rng.integers(0, 5, (6, 7))))
             for _ in range(4)]
    whole = ConfusionMatrix(5)
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    for i, (p, t) in enumerate(pairs):
        whole.update(p, t)
        (a if i < 2 else b).update(p, t)
    assert torch.equal(a.merge(b).matrix, whole.matrix)
    back = ConfusionMatrix.from_json(whole.to_json())
    assert torch.equal(back.matrix, whole.matrix) and back.ignore_index == 255
    s = whole.summary(names=list("abcde"))
    assert s["mIoU"] == whole.miou() and set(s["per_class"]) == set("abcde")
    assert_matches(whole, reference(pairs, 5))


def test_batched_update():
    rng = np.random.default_rng(1)
    pred, label = rng.integers(0, 3, (2, 4, 5)), rng.integers(0, 3, (2, 4, 5))
    one = ConfusionMatrix(3).update(pred, label)
    two = ConfusionMatrix(3).update(pred[0], label[0]).update(pred[1], label[1])
    assert torch.equal(one.matrix, two.matrix)


def test_custom_ignore_index():
    cm = ConfusionMatrix(3, ignore_index=-1).update(np.array([0, 1, 2]), np.array([0, -1, 2]))
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_reduce_zero_label():
    lab = np.array([[0, 1, 2], [255, 150, 0]], dtype=np.uint8)
    out = reduce_zero_label(lab)
    assert out.dtype == np.uint8 and out.tolist() == [[255, 0, 1], [255, 149, 255]]
    assert lab.tolist() == [[0, 1, 2], [255, 150, 0]]  # input untouched
    tl = torch.tensor([[0, 1, 2], [255, 150, 0]])
    assert reduce_zero_label(tl).tolist() == [[255, 0, 1], [255, 149, 255]]
    with pytest.raises(ValueError, match="label"):
        reduce_zero_label([0, 1])


@pytest.mark.parametrize("pred, label, name", [
    (np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64), "same shape"),
    (np.zeros((2, 2), np.int64), np.full((2, 2), 3), "label"),
    (np.zeros((2, 2), np.int64), np.full((2, 2), -2), "label"),
    (np.full((2, 2), 3), np.zeros((2, 2), np.int64), "pred"),
    (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64), "pred"),
    (np.zeros((2, 2), np.int64), torch.zeros(2, 2), "label"),
    ([[0]], np.zeros((1, 1), np.int64), "pred"),
])
def test_bad_input_raises(pred, label, name):
    with pytest.raises(ValueError, match=name):
        ConfusionMatrix(3).update(pred, label)


def test_bad_construction_and_merge():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=None)
    with pytest.raises(ValueError, match="other"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="names"):
        ConfusionMatrix(3).summary(names=["a"])
