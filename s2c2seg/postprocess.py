"""The anchors' post-processing of query logits into a label map, and its streamed form for large vocabularies.

SCLIP ``clip_segmentor.py::postprocess_result`` (ProxyCLIP and CorrCLIP likewise): ``softmax(logit_scale ·
logits)`` over the queries, per class the max over its synonyms (:func:`synonym_max`), SCLIP's ``area_thd`` when
set, arg-max, ``prob_thd`` -> class 0, then CorrCLIP's region vote. :func:`streamed_postprocess` gives the same
labels over all queries in chunks of whole classes, with a running max and a running log-sum-exp.

Class 0 is the background of the anchors' ``prob_thd`` and ``area_thd`` (they have no ``bg_idx``: the
background is index 0 by construction, and the protocol tables only set these knobs for datasets with one).
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol as Interface

import torch

from .data.protocols import Protocol

__all__ = ["BACKGROUND_LABEL", "synonym_max", "query_probabilities", "area_prune", "postprocess",
           "streamed_postprocess", "streamed_softmax_means", "log_sum_exp_step"]

BACKGROUND_LABEL = 0
"""The label ``prob_thd`` assigns and the class ``area_thd`` never prunes (the anchors' class 0)."""


class StreamedMaps(Interface):
    """What the streamed post-processing reads: dense maps by query chunk (:class:`s2c2seg.view.BundleView` has it)."""

    num_classes: int
    query_to_class: torch.Tensor
    bundle: Any

    def class_chunks(self) -> Iterable[torch.Tensor]: ...

    def dense(self, queries: torch.Tensor) -> torch.Tensor: ...


def synonym_max(values: torch.Tensor, query_to_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per class, the max over its synonyms: (Q, ...) -> (num_classes, ...); classes with no query get −inf."""
    q2c = query_to_class.long().to(values.device)
    if q2c.numel() == 0:
        return values.new_full((num_classes, *values.shape[1:]), float("-inf"))
    if bool((q2c[1:] >= q2c[:-1]).all()):  # a vocabulary's layout: each class's synonyms are consecutive
        out = values.new_full((num_classes, *values.shape[1:]), float("-inf"))
        classes, counts = torch.unique_consecutive(q2c, return_counts=True)
        start = 0
        for c, n in zip(classes.tolist(), counts.tolist()):  # one pass over values, slices are views
            out[c] = values[start] if n == 1 else values[start:start + n].amax(dim=0)
            start += n
        return out
    # any other order: the r-th synonym of every class that has one, r = 0, 1, ...: a few vectorised steps,
    # no (Q, H, W) index
    order = torch.sort(q2c, stable=True).indices
    cls = q2c[order]
    rank = torch.arange(cls.numel(), device=cls.device) - torch.searchsorted(cls, cls, side="left")
    first = order[rank == 0]
    if first.numel() == num_classes:  # every class has a query: no −inf fill needed
        out = values.new_empty((num_classes, *values.shape[1:]))
    else:
        out = values.new_full((num_classes, *values.shape[1:]), float("-inf"))
    out[q2c[first]] = values[first]
    for r in range(1, int(rank.max()) + 1):
        pick = order[rank == r]
        c = q2c[pick]
        out[c] = torch.maximum(out[c], values[pick])
    return out


def query_probabilities(logits: torch.Tensor, logit_scale: float, inplace: bool = False) -> torch.Tensor:
    """The anchors' softmax over queries: ``softmax(logit_scale · logits, dim=0)`` (``inplace``: scales ``logits``)."""
    return torch.softmax(logits.mul_(logit_scale) if inplace else logits * logit_scale, dim=0)


def _labels(class_probs: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max over the C-class space where the classes outside ``classes`` have probability 0.

    Returns (label (H, W) int64, max probability (H, W)). Ties go to the lower class index, as ``argmax`` over
    all C classes would; a pixel whose subset probabilities are all 0 gets class 0 (the first of C zeros).
    """
    maxp, idx = class_probs.max(dim=0)
    label = classes[idx]
    label[maxp <= 0] = 0
    return label, maxp


def _kept_classes(label: torch.Tensor, classes: torch.Tensor, num_classes: int, area_thd: float) -> torch.Tensor:
    """SCLIP's ``area_thd`` rule: mask over ``classes`` of those kept (arg-max area > area_thd × foreground
    area, or the background)."""
    area = torch.bincount(label.reshape(-1), minlength=num_classes)
    foreground = area[1:].sum()
    return (area[classes] > area_thd * foreground) | (classes == BACKGROUND_LABEL)


def area_prune(class_probs: torch.Tensor, classes: torch.Tensor, num_classes: int, area_thd: float) -> None:
    """SCLIP's ``area_thd`` (in place): zero every non-background class whose arg-max area is
    ≤ area_thd × foreground area."""
    label, _ = _labels(class_probs, classes)
    class_probs[~_kept_classes(label, classes, num_classes, area_thd)] = 0.0


def _finish(label: torch.Tensor, maxp: torch.Tensor, protocol: Protocol, regions) -> tuple[torch.Tensor, bool]:
    """``prob_thd`` -> background, then CorrCLIP's region vote when asked and possible."""
    label[maxp < protocol.prob_thd] = BACKGROUND_LABEL
    voted = bool(protocol.vote and regions is not None)
    if voted:
        from .regions import majority_vote

        label = majority_vote(label, regions)
    return label, voted


def postprocess(logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int, protocol: Protocol,
                regions: torch.Tensor | None = None, consume: bool = False) -> tuple[torch.Tensor, bool]:
    """The anchors' post-processing on the queries given (all, or a subset): -> (label map (H, W), voted).

    softmax(logit_scale · logits) over the given queries; per class the max over its synonyms; classes not
    given have probability 0; SCLIP's ``area_thd`` when set; arg-max; max probability < ``prob_thd`` -> 0;
    CorrCLIP's majority vote per region when ``protocol.vote`` and ``regions`` is not None. ``consume=True``
    lets it scale a float32 ``logits`` in place (the caller owns it and does not read it again).
    """
    q2c = query_to_class.long()
    if logits.ndim != 3 or logits.shape[0] != q2c.numel():
        raise ValueError(f"logits must be (Q', H, W) with Q' = {q2c.numel()} queries, got {tuple(logits.shape)}")
    logits = logits.float()
    probs = query_probabilities(logits, protocol.logit_scale, inplace=consume and logits.dtype == torch.float32)
    classes, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
    class_probs = synonym_max(probs, inverse, classes.numel())
    if protocol.area_thd is not None:
        area_prune(class_probs, classes, num_classes, protocol.area_thd)
    label, maxp = _labels(class_probs, classes)
    return _finish(label, maxp, protocol, regions)


def _running_argmax(view: StreamedMaps, scale: float, classes: torch.Tensor | None = None):
    """One streamed pass over the queries (of ``classes``, default all) of scaled logits ``x = scale·S_glob``:
    per pixel the arg-max class of the synonym max (ties: lower class), its value, and (over all queries
    only) the running log-sum-exp ``(M, Z)`` with ``Z = Σ_q exp(x_q − M)``."""
    best = cls = m = z = None
    chunks = view.class_chunks() if classes is None else [
        torch.nonzero(torch.isin(view.query_to_class, classes)).reshape(-1)]
    for queries in chunks:
        x = view.dense(queries).mul_(scale)
        q2c = view.query_to_class[queries]
        present, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
        value, idx = synonym_max(x, inverse, present.numel()).max(dim=0)
        label = present[idx]
        if classes is None:
            m, z = log_sum_exp_step(m, z, x)
        if best is None:
            best, cls = value, label
        else:
            better = value > best  # strict: the earlier (lower) class keeps a tie
            best = torch.where(better, value, best)
            cls = torch.where(better, label, cls)
    return cls, best, m, z


def log_sum_exp_step(m: torch.Tensor | None, z: torch.Tensor | None, x: torch.Tensor):
    """One block of a running log-sum-exp over rows: ``(M, Z)`` of the rows so far (None at the start) and the
    block ``x`` (rows, ...) -> the max over all rows and ``Z = Σ exp(x − M)``, rescaled to the new max."""
    top = x.amax(dim=0)
    if m is None:
        return top, torch.exp(x - top).sum(dim=0)
    new = torch.maximum(m, top)
    return new, z * torch.exp(m - new) + torch.exp(x - new).sum(dim=0)


def streamed_postprocess(view: StreamedMaps, protocol: Protocol) -> tuple[torch.Tensor, bool]:
    """:func:`postprocess` on all queries of ``view`` in chunks of whole classes, in O(chunk·H·W) memory.

    The softmax's arg-max is the arg-max of ``x = logit_scale·S_glob`` (synonym max, ties to the lower class)
    and its max probability is ``exp(x_best − M) / Z`` from a running log-sum-exp; ``area_thd`` re-runs the
    arg-max over the kept classes only (the classes with arg-max area, plus the background).
    """
    scale = protocol.logit_scale
    label, best, m, z = _running_argmax(view, scale)
    maxp = torch.exp(best - m) / z
    if protocol.area_thd is not None:  # the kept classes always include the background, class 0
        classes = torch.arange(view.num_classes)
        kept = classes[_kept_classes(label, classes, view.num_classes, protocol.area_thd)]
        label, best, _, _ = _running_argmax(view, scale, kept)
        maxp = torch.exp(best - m) / z
    label = torch.where(maxp <= 0, torch.zeros_like(label), label)  # all kept probabilities underflowed
    return _finish(label, maxp, protocol, view.bundle.regions)


def streamed_softmax_means(view: StreamedMaps, logit_scale: float) -> torch.Tensor:
    """``score_source="baseline"`` in chunks: per class the spatial mean of the synonym max of
    ``softmax(logit_scale·S_glob)`` over all queries (a log-sum-exp pass, then a probability pass)."""
    _, _, m, z = _running_argmax(view, logit_scale)
    out = torch.zeros(view.num_classes)
    for queries in view.class_chunks():
        p = torch.exp(view.dense(queries).mul_(logit_scale) - m) / z
        q2c = view.query_to_class[queries]
        present, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
        out[present] = synonym_max(p, inverse, present.numel()).mean(dim=(1, 2))
    return out
