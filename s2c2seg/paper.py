"""The paper reading's downstream (issue 2): CSS's subset, CSG's fusion on it, the anchors' post-processing.

``s2c2seg``: CSS chooses a class subset from the class scores (``css.select_categories``, memoised by the view),
then CSG fuses, per query (or per class, ``csg.unit="class"``) of the subset, the baseline's dense cosine with
CLIPSeg's map (``csg.fuse``), and ``postprocess.postprocess`` runs on the subset only. ``oracle``: the same with
the image's ground-truth classes as the subset. See ``predict.py``'s docstring for the details of each method.
"""
from __future__ import annotations

import torch

from .css import CSSConfig, oracle_categories
from .csg import CSGConfig
from .data.protocols import Protocol
from .postprocess import postprocess, synonym_max
from .prediction import Prediction
from .view import BundleView

__all__ = ["predict_paper", "fuse_subset"]


def _background_keep(css: CSSConfig, background: int | None, num_classes: int) -> tuple[int, ...]:
    if background is None or not css.keep_background:
        return ()
    if not 0 <= int(background) < num_classes:
        raise ValueError(f"background must be a class index in [0, {num_classes}) or None, got {background!r}")
    return (int(background),)


def predict_paper(view: BundleView, protocol: Protocol, method: str, css: CSSConfig, csg: CSGConfig, *,
                  label=None, background: int | None = None, score_source: str = "clipseg", select: bool = True,
                  ignore_index: int = 255) -> Prediction:
    """``method="s2c2seg"`` under the paper reading, or ``"oracle"``, on one view (inputs checked by ``predict``)."""
    b, c, q2c = view.bundle, view.num_classes, view.query_to_class
    b.require_paper_sources(f"method={method!r} with the paper reading")
    keep = _background_keep(css, background, c)
    s_glob = s_spat = None
    if method == "oracle":
        if label is None:
            raise ValueError("label: method='oracle' needs the image's label map")
        lab = torch.as_tensor(label)
        if tuple(lab.shape) != view.image_hw:
            raise ValueError(f"label has size {tuple(lab.shape)}, the bundle's image is {view.image_hw}")
        subset = oracle_categories(lab, c, ignore_index=ignore_index, always_keep=keep)
        if subset.numel() == 0:  # an all-ignore label: nothing is scored, keep every class
            subset = torch.arange(c)
    else:
        s_glob, s_spat = view.class_scores(score_source, protocol.logit_scale)
        subset = view.select(css, score_source, protocol.logit_scale, keep) if select else torch.arange(c)
    queries = torch.nonzero(torch.isin(q2c, subset)).reshape(-1)
    fused, units = fuse_subset(view, queries, csg)
    label_map, voted = postprocess(fused, units, c, protocol, b.regions, consume=True)  # fused is ours
    return Prediction(label_map, subset, s_glob, s_spat, voted=voted)


def fuse_subset(view: BundleView, queries: torch.Tensor, csg: CSGConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """CSG on the subset's ``queries``: -> (fused maps, class of each fused row).

    ``csg.unit="query"``: every query (synonym) is fused with its own CLIPSeg map, ``w`` normalised over the
    subset's queries; ``"class"`` (the paper's literal reading): per class the synonym max of ``S_glob`` and of
    ``S_spat`` first, then the fusion over the K classes, ``w`` normalised over the classes.
    """
    s_glob, s_spat = view.subset_maps(queries)
    q2c = view.query_to_class[queries]
    if csg.unit == "query":
        return csg.fuse(s_glob, s_spat), q2c
    classes, inverse = torch.unique(q2c, sorted=True, return_inverse=True)
    k = classes.numel()
    return csg.fuse(synonym_max(s_glob, inverse, k), synonym_max(s_spat, inverse, k)), classes
