"""The released S2C2Seg runs' per-dataset operating points, in one table (next to ``protocols.py``).

Read from the authors' repository ``yhflq/S2c2seg`` @ e0f0d6f: ``configs/cfg_<dataset>.py`` (tau, lambda,
prob_thd) + ``scripts/run_conference.sh`` (``released``, the conference paper's S2C2Seg row) and
``scripts/run_journal.sh`` (``released++``, the journal's S2C2Seg++). Values not listed for a dataset are the
release's ``models/config.py`` defaults, which live in the preset dataclasses (``s2c2seg.presets``).
``prob_thd``, the resize and the sliding window are the ProxyCLIP protocol's (``protocols.py``): the release's
configs repeat ProxyCLIP's values there.
"""
from __future__ import annotations

__all__ = ["RUNS", "DATASETS", "OPERATING_POINTS", "RUN_SOURCES", "operating_point"]

RUNS = ("released", "released++")
DATASETS = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff164k", "ade20k", "cityscapes")

_SR = dict(sr_iterations=3, sr_temperature=100.0)
"""``X_SPATIAL_REFINE=3 X_SPATIAL_REFINE_TEMP=100`` of the journal script (all datasets but Cityscapes)."""

_CONFERENCE = dict(t_max=0, global_score="patch_mean", residual_beta=0.0, adaptive_admit=False)
"""What ``run_conference.sh`` passes to every dataset (spatial refinement, its temperature and Otsu off)."""

OPERATING_POINTS: dict[str, dict[str, dict]] = {
    "released": {
        "voc20": dict(tau=0.3, lam=0.15, **_CONFERENCE),
        "voc21": dict(tau=0.4, lam=0.15, **_CONFERENCE),
        "cityscapes": dict(tau=0.6, lam=0.08, **_CONFERENCE),
        "ade20k": dict(tau=0.4, lam=0.15, **_CONFERENCE),
        "context59": dict(tau=0.4, lam=0.15, **_CONFERENCE),
        "context60": dict(tau=0.3, lam=0.15, **_CONFERENCE),
        "coco_object": dict(tau=0.4, lam=0.15, **_CONFERENCE),
        "coco_stuff164k": dict(tau=0.3, lam=0.15, **_CONFERENCE),
    },
    "released++": {
        "voc20": dict(tau=0.3, lam=0.10, **_SR),
        "voc21": dict(tau=0.4, lam=0.15, otsu_c=0.5, **_SR),
        "cityscapes": dict(tau=0.6, lam=0.08, local_text="template"),
        "ade20k": dict(tau=0.4, lam=0.10, local_text="template", **_SR),
        "context59": dict(tau=0.4, lam=0.15, **_SR),
        "context60": dict(tau=0.4, lam=0.15, otsu_c=0.35, **_SR),
        "coco_object": dict(tau=0.4, lam=0.15, otsu_c=0.5, **_SR),
        "coco_stuff164k": dict(tau=0.3, lam=0.12, **_SR),
    },
}
"""run -> dataset -> the values that differ from the preset dataclasses' defaults (the release's config.py)."""

RUN_SOURCES = {
    "released": "yhflq/S2c2seg@e0f0d6f scripts/run_conference.sh + configs/cfg_<dataset>.py + models/config.py",
    "released++": "yhflq/S2c2seg@e0f0d6f scripts/run_journal.sh + configs/cfg_<dataset>.py + models/config.py",
}


def operating_point(run: str, dataset: str) -> dict:
    """The table's row for ``run`` on ``dataset`` (a copy); unknown run or dataset raises ``ValueError``."""
    if run not in OPERATING_POINTS:
        raise ValueError(f"unknown released run {run!r}; known: {list(RUNS)}")
    if dataset not in OPERATING_POINTS[run]:
        raise ValueError(f"unknown dataset {dataset!r} for an operating point; known: {list(DATASETS)}")
    return dict(OPERATING_POINTS[run][dataset])
