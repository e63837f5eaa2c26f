"""The segmentation metric, exactly MMSeg's ``IoUMetric`` (``iou_metrics=['mIoU']``), as a confusion matrix.

Pixels labelled ``ignore_index`` are dropped; per class, intersections ``I`` and unions ``U`` are summed over the
whole split; ``IoU = I/U``; ``mIoU`` is the NaN-mean over classes (a class with ``U = 0`` is NaN and skipped, a
class predicted but never in the ground truth has IoU 0). ``aAcc = ΣI / Σ(label area)``; ``mAcc`` is the
NaN-mean of ``I / (label area)``. Values are fractions in [0, 1] (MMSeg prints percentages).

The matrix has ground-truth rows and predicted columns: ``I = diag``, label area = row sums, prediction area =
column sums, ``U = rows + cols − diag``. It is an int64 torch tensor so that it can be summed across processes.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "reduce_zero_label"]


def reduce_zero_label(label):
    """MMSeg's ``reduce_zero_label``: 0 → 255 (ignored), every other label − 1 (255 stays 255); numpy or torch."""
    if isinstance(label, np.ndarray):
        out = label.copy()
        out[label == 0] = 255
        out = out - 1
        out[out == 254] = 255
        return out.astype(label.dtype, copy=False)
    if isinstance(label, torch.Tensor):
        out = label.clone()
        out[label == 0] = 255
        out = out - 1
        out[out == 254] = 255
        return out
    raise ValueError(f"label must be a numpy array or a torch tensor, got {type(label).__name__}")


def _as_long(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{name} must hold integer class ids, got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x)).long()
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class ids, got dtype {x.dtype}")
        return x.long()
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


class ConfusionMatrix:
    """Accumulates a (C, C) int64 confusion matrix (GT rows, prediction columns) over a split."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={int(self.matrix.sum())})")

    def update(self, pred, label) -> ConfusionMatrix:
        """Add one image (or a batch): ``pred`` and ``label`` integer maps of the same shape."""
        p = _as_long(pred, "pred")
        t = _as_long(label, "label")
        if p.shape != t.shape:
            raise ValueError(f"pred and label must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}")
        p = p.reshape(-1).to(self.matrix.device)
        t = t.reshape(-1).to(self.matrix.device)
        c = self.num_classes
        keep = t != self.ignore_index
        p, t = p[keep], t[keep]
        if t.numel() == 0:
            return self
        if int(t.min()) < 0 or int(t.max()) >= c:
            bad = t[(t < 0) | (t >= c)].unique()[:10].tolist()
            raise ValueError(f"label has values outside [0, {c}) ∪ {{{self.ignore_index}}}: {bad}")
        if int(p.min()) < 0 or int(p.max()) >= c:
            bad = p[(p < 0) | (p >= c)].unique()[:10].tolist()
            raise ValueError(f"pred has values outside [0, {c}) on labelled pixels: {bad}")
        self.matrix += torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (same classes and ignore index) into this one; returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"other must be a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"other has num_classes={other.num_classes}, ignore_index={other.ignore_index}; "
                             f"expected {self.num_classes}, {self.ignore_index}")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    # the per-class areas, float64
    def _areas(self):
        m = self.matrix.double()
        inter = torch.diagonal(m)
        label = m.sum(dim=1)
        pred = m.sum(dim=0)
        return inter, label, pred

    def iou(self) -> torch.Tensor:
        """Per-class IoU = I / (label + pred − I), float64 (C,), NaN where the union is 0."""
        inter, label, pred = self._areas()
        return inter / (label + pred - inter)

    def acc(self) -> torch.Tensor:
        """Per-class accuracy = I / label area, float64 (C,), NaN where the class never occurs in the labels."""
        inter, label, _ = self._areas()
        return inter / label

    def miou(self) -> float:
        """mIoU: NaN-mean of ``iou()`` (NaN if no class has a union)."""
        return _nanmean(self.iou())

    def macc(self) -> float:
        """mAcc: NaN-mean of ``acc()``."""
        return _nanmean(self.acc())

    def aacc(self) -> float:
        """aAcc: correctly labelled pixels / labelled pixels (NaN if none)."""
        total = int(self.matrix.sum())
        return float(torch.diagonal(self.matrix).sum()) / total if total else math.nan

    def summary(self, names=None) -> dict:
        """The numbers as a JSON-able dict (``per_class`` keyed by name when ``names`` is given)."""
        if names is not None and len(names) != self.num_classes:
            raise ValueError(f"names has {len(names)} entries for {self.num_classes} classes")
        keys = list(names) if names is not None else list(range(self.num_classes))
        iou, acc = self.iou().tolist(), self.acc().tolist()
        return {"mIoU": self.miou(), "mAcc": self.macc(), "aAcc": self.aacc(),
                "per_class": {str(k): {"IoU": i, "Acc": a} for k, i, a in zip(keys, iou, acc)}}

    def to_json(self) -> dict:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "matrix": self.matrix.cpu().tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ConfusionMatrix:
        cm = cls(d["num_classes"], d.get("ignore_index", 255))
        m = torch.as_tensor(d["matrix"], dtype=torch.int64)
        if m.shape != cm.matrix.shape:
            raise ValueError(f"matrix has shape {tuple(m.shape)}, expected {tuple(cm.matrix.shape)}")
        cm.matrix = m
        return cm


def _nanmean(x: torch.Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else math.nan
