"""Why S2C2Seg kept or dropped each class on one image: the explanation data of ``s2c2seg segment --explain``.

Read from the memo the prediction itself filled (``released.released_view`` of the same :class:`BundleView`,
``analysis.scoring_steps`` / ``analysis.fusion_steps`` for the paper reading), so every number is the one the
prediction used; nothing here recomputes a selection by another rule. ``docs/segment.md`` describes the figure.

* released presets (``released``, ``released++``), per sliding window: the scores ``g`` / ``s`` / ``c`` of every
  query and α (``released_scores.released_confidence``), the candidate union (the top-``int(τQ)`` union of
  the three scores: the selection with ``select.k_max`` unset), the queries CSS selected, those the refinement
  round admitted (S2C2Seg++) and the final set, and the fusion weights
  (``released_fusion.released_guide_weights`` of the final rows, or the paper form's
  ``csg.category_weights``) with the convex form's three coefficients;
* the ``paper`` preset, per image: ``s_glob``, ``s_spat``, ``s_conf`` and α (``css.css_scores``), the stage-1
  union, the subset, and CSG's weights ``w`` over the subset's queries.

Every list is indexed as the vocabulary's queries (``queries``) or classes (``classes``); JSON-ready.
"""
from __future__ import annotations

import dataclasses

import torch

from .csg import WEIGHTED_MODES, category_weights
from .released_fusion import released_guide_weights
from .postprocess import synonym_max
from .predict import BundleView, Prediction

__all__ = ["explain_released", "explain_paper", "class_scores", "alpha_of", "SCORE_KEYS"]

SCORE_KEYS = ("global", "spatial", "confidence")
"""The three CSS scores each class is summarised by, in the paper's order (``glob``, ``spat``, ``conf``)."""


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def _ints(t) -> list[int]:
    return sorted(int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t))


def _fusion_weights(dense_rows: torch.Tensor, preset) -> list[float] | None:
    """The fusion's per-row weights on one window: the release's guide weights (convex form), the paper form's
    ``w`` (a weighted mode), or None (``local_only``)."""
    fusion = preset.fusion
    if dense_rows.shape[0] == 0:
        return []
    if fusion.form == "convex":
        return _floats(released_guide_weights(dense_rows.float()))
    if fusion.paper.mode not in WEIGHTED_MODES:
        return None
    return _floats(category_weights(dense_rows.float(), fusion.paper))


def _fusion_json(preset) -> dict:
    f = preset.fusion
    out = {"form": f.form, "lam": f.lam, "guide_weight": f.guide_weight, "fill": f.fill}
    if f.form == "convex":  # (1 − gw)·((1 − λ)·G + λ·L) + gw·L·w
        out["coefficients"] = {"global": (1 - f.guide_weight) * (1 - f.lam), "local": (1 - f.guide_weight) * f.lam,
                               "guided": f.guide_weight}
    else:
        out["paper"] = f.paper.to_json()
    return out


def explain_released(view: BundleView, protocol, preset) -> dict:
    """The released pipeline's choices on every window of ``view`` (after ``predict(view, ..., preset=preset)``:
    the windows' results come from the same memo)."""
    from .released import released_view

    rv = released_view(view)
    results, _, _ = rv.image(preset, protocol.logit_scale)
    uncut = dataclasses.replace(preset, select=dataclasses.replace(preset.select, k_max=None))
    image_scope = preset.select.scope == "image"
    windows = []
    for n, result in enumerate(results):
        g, s = rv.scores(n, preset.score.global_score)
        m = None if image_scope else n
        selected, c, alpha = rv.selection(m, preset)
        candidates = rv.selection(m, uncut)[0]
        final = result.selected
        windows.append({
            "box": [int(v) for v in view.bundle.crop_boxes[n].tolist()],
            "alpha": float(alpha),
            "global": _floats(g), "spatial": _floats(s), "confidence": _floats(c),
            "candidates": _ints(candidates), "selected": _ints(selected),
            "admitted": [int(q) for q in result.log.admitted], "final": _ints(final),
            "fusion_weights": _fusion_weights(rv.dense(n).index_select(0, final), preset),
        })
    return {"kind": "released", "preset": preset.name, "unit": preset.select.unit, "scope": preset.select.scope,
            "tau": preset.select.tau, "k_max": preset.select.k_max, "global_score": preset.score.global_score,
            "alpha_form": preset.score.alpha, "refine_rounds": preset.refine.t_max,
            "resized_hw": [int(v) for v in view.bundle.resized_hw.tolist()],
            "query_to_class": [int(v) for v in view.query_to_class.tolist()],
            "fusion": _fusion_json(preset), "windows": windows}


def explain_paper(view: BundleView, prediction: Prediction, preset, vocab, background: int | None = None) -> dict:
    """The paper reading's choices on ``view``: its class scores, α, the stage-1 union, the subset (the
    prediction's) and CSG's weights over the subset's queries."""
    from .analysis import fusion_steps, scoring_steps

    keep = () if background is None or not preset.css.keep_background else (int(background),)
    steps = scoring_steps(prediction.s_glob, prediction.s_spat, preset.css, keep)
    subset = prediction.subset
    fusion = fusion_steps(view, subset, vocab, preset.csg)
    return {"kind": "paper", "preset": preset.name, "use": list(preset.css.use), "tau": preset.css.tau,
            "k_min": preset.css.k_min, "k_max": preset.css.k_max, "alpha": float(steps.alpha),
            "global": _floats(steps.s_glob), "spatial": _floats(steps.s_spat), "confidence": _floats(steps.conf),
            "stage1_union": _ints(torch.nonzero(steps.union).reshape(-1)), "subset": _ints(subset),
            "query_to_class": [int(v) for v in view.query_to_class.tolist()],
            "csg": {**preset.csg.to_json(), "queries": _ints(fusion.queries), "weights": _floats(fusion.weights)}}


def class_scores(explanation: dict, num_classes: int) -> list[dict]:
    """Per class its scores: the paper reading's own; for the released presets, per window the max over the
    class's queries, then the mean over the windows, with the windows whose final set holds the class."""
    q2c = torch.tensor(explanation["query_to_class"], dtype=torch.long)
    if explanation["kind"] == "paper":
        table = {k: explanation[k] for k in SCORE_KEYS}
        return [{k: table[k][i] for k in SCORE_KEYS} for i in range(num_classes)]
    windows = explanation["windows"]
    per_window = {k: torch.stack([synonym_max(torch.tensor(w[k]), q2c, num_classes) for w in windows])
                  for k in SCORE_KEYS}
    kept = torch.zeros(len(windows), num_classes, dtype=torch.bool)
    admitted = torch.zeros(num_classes, dtype=torch.bool)
    for n, w in enumerate(windows):
        kept[n, q2c[torch.tensor(w["final"], dtype=torch.long)]] = True
        admitted[q2c[torch.tensor(w["admitted"], dtype=torch.long)]] = True
    return [{**{k: float(per_window[k][:, i].mean()) for k in SCORE_KEYS}, "windows_selected": int(kept[:, i].sum()),
             "windows": len(windows), "admitted": bool(admitted[i])} for i in range(num_classes)]


def alpha_of(explanation: dict) -> float | list[float]:
    """The consistency weight α of CSS: the image's (paper), or one per window (released)."""
    if explanation["kind"] == "paper":
        return explanation["alpha"]
    return [w["alpha"] for w in explanation["windows"]]
