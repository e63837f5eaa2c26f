"""From a FeatureBundle to a label map: the pure downstream (no model is touched here).

``predict(bundle, protocol, method)`` is the one path every caller uses (``s2c2seg eval``, sweeps,
notebooks), with or without the cache, so that cached and uncached evaluations give the same predictions.

Methods
-------
* ``baseline``: the anchors' post-processing (SCLIP ``clip_segmentor.py::postprocess_result``, ProxyCLIP and
  CorrCLIP likewise) on the slide-averaged cosine logits of all queries: softmax(logit_scale · logits) over all
  queries (synonyms compete), per class the max over its synonyms, SCLIP's ``area_thd`` when set, arg-max,
  ``prob_thd`` -> class 0, then CorrCLIP's region vote when ``protocol.vote`` and the bundle has regions.
* ``s2c2seg``: CSS chooses a class subset from the class scores (``css.select_categories``), then CSG fuses,
  per query of the subset, the baseline's dense cosine ``S_glob`` with CLIPSeg's map ``S_spat``
  (``csg.fuse``). By default (``csg.unit="query"``) CSG's "categories" are the subset's *queries*: without
  synonyms this is exactly the paper's class-level formula; with synonyms each name is fused with its own
  CLIPSeg map (``w`` normalised over the subset's queries) and the synonyms are then merged by the max as the
  anchors do. ``csg.unit="class"`` is the paper's literal reading: synonym max of both maps first, then the
  fusion over the K classes (``w`` normalised over the K classes). The same post-processing follows,
  restricted to the subset: the softmax runs over the subset's queries only, the classes outside the subset
  have probability 0, and ``area_thd`` / ``prob_thd`` / the vote apply after the subset is chosen.
  ``select=False`` runs CSG on every class ("w/o CSS"); ``csg.mode="global_only"`` with ``select=True`` is
  "+CSS only".
* ``oracle``: as ``s2c2seg`` with the ground-truth classes of the image as the subset (the upper bound).

``predict`` is a dispatcher: it resolves the preset by the one rule, checks the bundle's encode side and hands
over to the baseline's post-processing (``postprocess.py``), the paper reading (``paper.py``) or the release's
window pipeline (``released.py``). The maps come from a :class:`~s2c2seg.view.BundleView` (``view.py``:
memoised, memory-bounded). The names of those modules are re-exported here (``from s2c2seg.predict import
BundleView`` keeps working).
"""
from __future__ import annotations



from .bundle import FeatureBundle
from .css import CSSConfig
from .csg import CSGConfig
from .data.protocols import Protocol
from .encode_side import EncodeSpec, bundle_sources
from .presets import resolve_preset
from .prediction import Prediction
from .released import predict_released
from .paper import fuse_subset, predict_paper
from .postprocess import BACKGROUND_LABEL, postprocess, streamed_postprocess, synonym_max
from .view import SCORE_SOURCES, BundleView, ViewConfig, class_scores, clipseg_maps, dense_logits

__all__ = ["METHODS", "IGNORE_INDEX", "SCORE_SOURCES", "BACKGROUND_LABEL", "Prediction", "ViewConfig", "BundleView",
           "synonym_max", "dense_logits", "clipseg_maps", "class_scores", "postprocess", "streamed_postprocess",
           "fuse_subset", "bundle_sources", "predict"]

METHODS = ("baseline", "s2c2seg", "oracle")
IGNORE_INDEX = 255
"""The default unlabelled value of a label map (the 16-bit .tif datasets use 65535: their spec says so)."""


# ------------------------------------------------------------------------------------------------ predict
def predict(bundle: FeatureBundle | BundleView, protocol: Protocol, method: str = "baseline",
            css: CSSConfig | None = None, csg: CSGConfig | None = None, label=None, background: int | None = None,
            score_source: str = "clipseg", select: bool = True, preset=None,
            return_logits: bool = False, ignore_index: int = IGNORE_INDEX, dataset: str = "") -> Prediction:
    """The prediction for one bundle (see the module docstring for the three methods).

    ``label`` (H, W) is only read by ``method="oracle"`` (``ignore_index``: its unlabelled value); ``background``
    (the dataset's background class or None) is kept in every subset when ``css.keep_background``.
    ``score_source`` picks CSS's ``s_spat``.
    ``method="s2c2seg"`` runs ``preset`` (a ``presets.Preset`` or its name), resolved by the one default rule
    (:func:`s2c2seg.presets.resolve_preset`, as ``evaluate`` and ``s2c2seg eval``): with none, ``css`` / ``csg``
    or a paper-only option mean the paper reading, nothing means the default preset (``released``) at
    ``dataset``'s operating point ("" = the release's config defaults). The paper reading runs this path with
    its ``css`` / ``csg``; the released one the window pipeline (``released.py``; ``return_logits`` adds
    ``Prediction.logits``). A bundle whose encode side is not the preset's is refused
    (:meth:`s2c2seg.encode_side.EncodeSpec.check`); a preset with another method raises.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if score_source not in SCORE_SOURCES:
        raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {score_source!r}")
    if preset is not None or method == "s2c2seg":
        preset, css, csg = resolve_preset(method, dataset, preset, css, csg,
                                          paper_options=not select or score_source != SCORE_SOURCES[0])
    css, csg = css or CSSConfig(), csg or CSGConfig()
    if preset is not None:
        meta = (bundle.bundle if isinstance(bundle, BundleView) else bundle).meta
        # the CLIPSeg text and precision; a missing source group is the BundleError of its first read
        EncodeSpec.of(method, preset).check({k: v for k, v in meta.items() if k != "sources"}, "bundle")
        if preset.reading == "released":
            return predict_released(bundle, protocol, preset, return_logits=return_logits)
    if not isinstance(protocol, Protocol):
        raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    view = bundle if isinstance(bundle, BundleView) else BundleView(bundle)
    if method == "baseline":
        if view.streams:
            label_map, voted = streamed_postprocess(view, protocol)
        else:
            label_map, voted = postprocess(view.dense(), view.query_to_class, view.num_classes, protocol,
                                           view.bundle.regions)
        return Prediction(label_map, None, voted=voted)
    return predict_paper(view, protocol, method, css, csg, label=label, background=background,
                         score_source=score_source, select=select, ignore_index=ignore_index)
