"""Evaluation protocols: the anchors' per-dataset, per-baseline knobs, in one table, written into every record.

Every value below is read from the anchors' config files (``configs/cfg_<dataset>.py`` and the segmentor's
``__init__`` defaults); see ``docs/datasets.md`` for the table with its sources. ``get_protocol(dataset,
baseline)`` returns the row; any field can be overridden per run (``get_protocol("voc21", "sclip",
prob_thd=0.2)``), and the record names the final values.

Which anchor's table a baseline uses:

* ``sclip`` -> SCLIP (wangf3014/SCLIP @ b56bd30);
* ``proxyclip`` -> ProxyCLIP (mc-lan/ProxyCLIP @ e7b767f);
* ``corrclip`` -> CorrCLIP v1 (zdk258/CorrCLIP @ 103bc18, ``CorrCLIPv1/configs``), with the region vote;
  ADE-847 and PC-459, which v1 does not configure, from ``CorrCLIPv2/configs`` of the same commit;
* ``naclip`` -> NACLIP (sinahmr/NACLIP: SCLIP's name files, whole-image inference on VOC; NACLIP's default
  PAMR post-processing is not part of this toolkit and is off);
* ``clearclip`` and ``maskclip`` -> ClearCLIP (mc-lan/ClearCLIP, whose code evaluates both with one set of
  configs: short side 448, crop 448 / stride 224, logit scale 50, ``background`` as line 0).

ADE-847 and PC-459 have rows only in the ``proxyclip`` and ``corrclip`` tables: SCLIP, NACLIP and ClearCLIP
ship no config for them, and no value is made up for those baselines (``get_protocol`` says so).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real

__all__ = ["Protocol", "PROTOCOLS", "BASELINE_TABLE", "TABLE_SOURCES", "PAPER_SHORT_SIDE", "get_protocol"]


@dataclass(frozen=True)
class Protocol:
    """Every knob that changes a number. Defaults are overridden per dataset and baseline by the table."""

    short_side: int = 336
    """Test-time ``Resize(scale=(2048, short_side), keep_ratio=True)``."""
    crop: int = 224
    """Sliding-window crop (0 = whole-image inference)."""
    stride: int = 112
    logit_scale: float = 40.0
    """Multiplies the cosine logits before the softmax over queries."""
    prob_thd: float = 0.0
    """Pixels whose max class probability is below it become class 0 (only for datasets with a background)."""
    area_thd: float | None = None
    """SCLIP's image-level pruning (VOC21: 0.1); None = off."""
    name_variant: str = "sclip"
    """Which name file (``sclip``, ``proxyclip``, ``corrclip``, ``clearclip``) the vocabulary comes from."""
    vote: bool = False
    """CorrCLIP's per-region majority vote on the prediction."""

    def __post_init__(self) -> None:
        checks = {
            "short_side": isinstance(self.short_side, Integral) and self.short_side > 0,
            "crop": isinstance(self.crop, Integral) and self.crop >= 0,
            "stride": isinstance(self.stride, Integral) and self.stride > 0,
            "logit_scale": isinstance(self.logit_scale, Real) and self.logit_scale > 0,
            "prob_thd": isinstance(self.prob_thd, Real) and 0.0 <= self.prob_thd <= 1.0,
            "area_thd": self.area_thd is None or (isinstance(self.area_thd, Real) and 0.0 <= self.area_thd <= 1.0),
            "name_variant": isinstance(self.name_variant, str) and bool(self.name_variant),
            "vote": isinstance(self.vote, bool),
        }
        for name, ok in checks.items():
            if not ok or (name != "vote" and isinstance(getattr(self, name), bool)):
                raise ValueError(f"Protocol.{name}: invalid value {getattr(self, name)!r}")
        if self.crop and self.stride > self.crop:
            raise ValueError(f"Protocol.stride ({self.stride}) must not exceed crop ({self.crop})")

    def replace(self, **overrides) -> Protocol:
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown protocol field(s): {sorted(unknown)}")
        return replace(self, **overrides)

    def to_json(self) -> dict:
        return asdict(self)


def _table(base: Protocol, rows: dict[str, dict]) -> dict[str, Protocol]:
    return {ds: base.replace(**row) for ds, row in rows.items()}


_SCLIP = Protocol(short_side=336, crop=224, stride=112, logit_scale=40.0, name_variant="sclip")
_PROXY = Protocol(short_side=336, crop=336, stride=112, logit_scale=40.0, name_variant="proxyclip")
_CORR = Protocol(short_side=336, crop=336, stride=112, logit_scale=40.0, name_variant="corrclip", vote=True)
_NACLIP = Protocol(short_side=336, crop=224, stride=112, logit_scale=40.0, name_variant="sclip")
_CLEAR = Protocol(short_side=448, crop=448, stride=224, logit_scale=50.0, name_variant="clearclip")

_PROXY_ROWS = {
    "voc21": dict(prob_thd=0.2),
    "voc20": {},
    "context60": dict(prob_thd=0.15),
    "context59": {},
    "coco_object": dict(prob_thd=0.25),
    "coco_stuff164k": {},
    "ade20k": dict(short_side=448),
    "cityscapes": dict(short_side=448, crop=224, stride=112),
    "ade847": dict(short_side=448),
    "context459": dict(short_side=448),
}
_CORR_V2_ROWS = {"ade847": dict(short_side=448), "context459": dict(short_side=336)}
"""CorrCLIPv2's ``cfg_ade847.py`` / ``cfg_context459.py`` (its segmentor's crop, stride, logit scale and
prob_thd defaults equal v1's)."""

PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "sclip": _table(_SCLIP, {
        "voc21": dict(logit_scale=65.0, prob_thd=0.1, area_thd=0.1),
        "voc20": {},
        "context60": dict(logit_scale=50.0, prob_thd=0.1),
        "context59": {},
        "coco_object": dict(logit_scale=50.0, prob_thd=0.1),
        "coco_stuff164k": dict(short_side=448),
        "ade20k": {},
        "cityscapes": dict(short_side=560),
    }),
    "proxyclip": _table(_PROXY, _PROXY_ROWS),
    "corrclip": _table(_CORR, {**_PROXY_ROWS, **_CORR_V2_ROWS}),  # CorrCLIP v1's configs repeat ProxyCLIP's values
    "naclip": _table(_NACLIP, {
        "voc21": dict(prob_thd=0.1, crop=0),
        "voc20": dict(crop=0),
        "context60": dict(prob_thd=0.1),
        "context59": {},
        "coco_object": dict(prob_thd=0.1),
        "coco_stuff164k": {},
        "ade20k": {},
        "cityscapes": dict(short_side=560),
    }),
    "clearclip": _table(_CLEAR, {
        "voc21": dict(prob_thd=0.5),
        "voc20": {},
        "context60": dict(prob_thd=0.15),
        "context59": {},
        "coco_object": dict(prob_thd=0.4),
        "coco_stuff164k": {},
        "ade20k": {},
        "cityscapes": dict(crop=224),  # stride stays at ClearCLIP's default 224
    }),
}
"""Anchor table -> dataset -> :class:`Protocol`."""

BASELINE_TABLE: dict[str, str] = {"sclip": "sclip", "proxyclip": "proxyclip", "corrclip": "corrclip",
                                  "naclip": "naclip", "clearclip": "clearclip", "maskclip": "clearclip"}
"""Baseline name -> the anchor table whose protocol it is evaluated with."""

TABLE_SOURCES: dict[str, str] = {
    "sclip": "wangf3014/SCLIP@b56bd30 configs/cfg_<dataset>.py + clip_segmentor.py defaults",
    "proxyclip": "mc-lan/ProxyCLIP@e7b767f configs/cfg_<dataset>.py + proxyclip_segmentor.py defaults",
    "corrclip": "zdk258/CorrCLIP@103bc18 CorrCLIPv1/configs/cfg_<dataset>.py + corrclip_segmentor.py defaults "
                "(ade847, context459: CorrCLIPv2/configs)",
    "naclip": "sinahmr/NACLIP configs/cfg_<dataset>.py + naclip.py defaults (PAMR off here)",
    "clearclip": "mc-lan/ClearCLIP configs/cfg_<dataset>.py + clearclip_segmentor.py defaults",
}
"""Where each table's values were read."""

PAPER_SHORT_SIDE: dict[str, int] = {"voc21": 336, "voc20": 336, "context60": 336, "context59": 336,
                                    "coco_object": 336, "coco_stuff164k": 448, "ade20k": 448, "cityscapes": 448}
"""Short sides the S2C2Seg paper states ("336 for VOC/Context and 448 for ADE20K/Cityscapes/COCO-Stuff"); not
the default (the anchors' tables are), pass ``short_side=PAPER_SHORT_SIDE[dataset]`` to use them. COCO-Object
is not named in that sentence; 336 is the anchors' value."""


def get_protocol(dataset: str, baseline: str, **overrides) -> Protocol:
    """The anchors' protocol for ``dataset`` evaluated with ``baseline``, with ``overrides`` applied.

    Unknown dataset, baseline or field raises ``ValueError`` naming it.
    """
    if baseline not in BASELINE_TABLE:
        raise ValueError(f"unknown baseline {baseline!r} for a protocol; known: {sorted(BASELINE_TABLE)}")
    table = PROTOCOLS[BASELINE_TABLE[baseline]]
    if dataset not in table:
        having = sorted(b for b, t in BASELINE_TABLE.items() if dataset in PROTOCOLS[t])
        if having:
            raise ValueError(f"no {baseline} protocol for dataset {dataset!r}: the {baseline} anchor ships no config "
                             f"for it; baselines with one: {having} (e.g. --baseline {having[0]})")
        raise ValueError(f"unknown dataset {dataset!r} for a protocol; known: {sorted(table)}")
    return table[dataset].replace(**overrides)
