"""The release's downstream streamed over chunks of queries (issue 21): in O(chunk·H·W) memory, never (Q, H, W).

``released.py`` runs these where a window's rows (Q, ph, pw) or the union's logits (U, H, W) would not fit the
:class:`~s2c2seg.budget.MemoryBudget`: each pass asks a ``blocks()`` callable for the rows chunk by chunk (the
fused rows, the assembled logits), recomputing them rather than keeping them.

* :func:`streamed_confidence`: ``refine.window_confidence`` (max and arg-max of the softmax over the rows), a
  log-sum-exp pass then a probability pass;
* :func:`streamed_residual`: ``refine.residual_evidence`` over chunks of entries;
* :func:`streamed_postprocess`: ``released_post.released_postprocess``: the softmax at the logit scale over all
  queries (log-sum-exp pass), per chunk of whole classes the synonym max, the spatial refinement (independent per
  class) and a running max / arg-max (ties: the lower class), then Otsu / ``prob_thd`` on the (H, W) maximum.

Per row the numbers are those of the whole computation; the softmax's sums are taken chunk by chunk, so the
probabilities agree with it to float rounding (labels equal: tests/test_large_vocab.py).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from .data.protocols import Protocol
from .postprocess import BACKGROUND_LABEL, log_sum_exp_step, synonym_max
from .refine import window_confidence
from .released_post import PostConfig, background_threshold, image_at
from .spatial_refine import RefineWorkspace, image_affinity, spatial_refine_many

__all__ = ["chunks", "class_chunks", "log_sum_exp", "streamed_confidence", "streamed_residual",
           "streamed_postprocess"]

Blocks = Callable[[], Iterable[torch.Tensor]]
"""A fresh iterator over (k, H, W) row blocks, in row order, each call (a pass)."""


def chunks(index: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``index`` in consecutive pieces of at most ``size``."""
    return [index[i:i + size] for i in range(0, index.numel(), max(1, int(size)))]


def class_chunks(query_to_class: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Positions of ``query_to_class`` grouped by class, classes ascending, whole classes per chunk (about
    ``size`` positions each; a class with more synonyms is one chunk)."""
    order = torch.sort(query_to_class.long(), stable=True).indices
    _, counts = torch.unique_consecutive(query_to_class.long()[order], return_counts=True)
    out, start, end = [], 0, 0
    for n in counts.tolist():
        if end + n - start > size and end > start:
            out.append(order[start:end])
            start = end
        end += n
    out.append(order[start:end])
    return out


def log_sum_exp(blocks: Iterable[torch.Tensor], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel ``(M, Z)``: the max of ``scale·x`` over all rows and ``Z = Σ exp(scale·x − M)``, block by block."""
    m = z = None
    for x in blocks:
        m, z = log_sum_exp_step(m, z, x.float() * float(scale))
    return m, z


def streamed_confidence(blocks: Blocks, logit_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``refine.window_confidence`` of the rows ``blocks()`` yields: (max probability, winning row), the first
    maximum on ties; one block is handed to it whole (its own numbers)."""
    first = iter(blocks())
    head, second = next(first, None), next(first, None)
    if second is None:
        return window_confidence(head, logit_scale)
    m, z = log_sum_exp(blocks(), logit_scale)
    best = winner = None
    offset = 0
    for x in blocks():
        value, row = (torch.exp(x.float() * float(logit_scale) - m) / z).max(dim=0)
        row = row + offset
        offset += x.shape[0]
        if best is None:
            best, winner = value, row
        else:
            better = value > best  # strict: the earlier row keeps a tie
            best, winner = torch.where(better, value, best), torch.where(better, row, winner)
    return best, winner


def streamed_residual(local_rows: Callable[[torch.Tensor], torch.Tensor], low: torch.Tensor, entries: torch.Tensor,
                      size: int) -> torch.Tensor:
    """``refine.residual_evidence`` with the CLIPSeg rows of each chunk of ``entries`` from ``local_rows(idx)``."""
    if entries.numel() == 0 or not bool(low.any()):
        return torch.zeros(entries.numel(), dtype=torch.float32, device=entries.device)
    pixels = torch.nonzero(low.reshape(-1)).flatten()
    out = [local_rows(part).reshape(part.numel(), -1).index_select(1, pixels).float().mean(dim=1)
           for part in chunks(entries, size)]
    return torch.cat(out)


def streamed_postprocess(logits: Callable[[torch.Tensor], torch.Tensor], query_to_class: torch.Tensor,
                         protocol: Protocol, post: PostConfig, image: torch.Tensor | None, size: int,
                         weights: torch.Tensor | None = None, workspace: RefineWorkspace | None = None
                         ) -> torch.Tensor:
    """``released_postprocess`` of the rows ``logits(positions)`` (k, H, W) of the queries ``query_to_class``
    (U,), in chunks of whole classes of about ``size`` rows."""
    parts = class_chunks(query_to_class, size)
    scale = float(protocol.logit_scale)
    m, z = log_sum_exp((logits(p) for p in parts), scale)
    sr = post.spatial
    temp = sr.temperature if sr.iterations > 0 else None
    sharp_scale = None if temp is None or float(temp) == scale else float(temp)
    sharp_mz = None if sharp_scale is None else log_sum_exp((logits(p) for p in parts), sharp_scale)
    if sr.iterations > 0:
        if image is None:
            raise ValueError("bundle.input_image is None: the spatial refinement needs it (re-encode the bundle)")
        if weights is None:
            hw = tuple(m.shape)
            weights = image_affinity(image_at(image, hw), hw, sr)
    both = protocol.prob_thd > 0
    best = winner = sharp_best = sharp_winner = None
    for p in parts:
        x = logits(p).float()
        classes, inverse = torch.unique(query_to_class[p].long(), sorted=True, return_inverse=True)
        probs = synonym_max(torch.exp(x * scale - m) / z, inverse, classes.numel())
        sharp = None
        if sharp_mz is not None:
            sm, sz = sharp_mz
            sharp = synonym_max(torch.exp(x * sharp_scale - sm) / sz, inverse, classes.numel())
        if sr.iterations > 0:
            if sharp is not None:
                refined = spatial_refine_many(image, [sharp, probs] if both else [sharp], sr, weights, workspace)
                sharp, probs = refined if both else (refined[0], probs)
            else:
                probs = spatial_refine_many(image, [probs], sr, weights, workspace)[0]
        best, winner = _running_max(probs, classes, best, winner)
        if sharp is not None:
            sharp_best, sharp_winner = _running_max(sharp, classes, sharp_best, sharp_winner)
    label = (sharp_winner if sharp_winner is not None else winner).clone()
    label[best < background_threshold(best, protocol.prob_thd, post.otsu_c)] = BACKGROUND_LABEL
    return label


def _running_max(values: torch.Tensor, classes: torch.Tensor, best, label):
    """The running per-pixel max over class chunks (ascending classes) and its class; ties keep the lower class."""
    value, idx = values.max(dim=0)
    cls = classes[idx]
    if best is None:
        return value, cls
    better = value > best
    return torch.where(better, value, best), torch.where(better, cls, label)
