"""Protocol tables: the anchors' per-dataset values, overrides, bad input."""
import json

import pytest

from s2c2seg.data import DATASETS, Protocol, get_protocol
from s2c2seg.data.names import NAME_VARIANTS
from s2c2seg.data.protocols import BASELINE_TABLE, PAPER_SHORT_SIDE, PROTOCOLS, TABLE_SOURCES

# (short_side, crop, stride, logit_scale, prob_thd, area_thd) read from the anchors' configs (anchors.md §2.3).
SCLIP = {
    "voc21": (336, 224, 112, 65.0, 0.1, 0.1), "voc20": (336, 224, 112, 40.0, 0.0, None),
    "context60": (336, 224, 112, 50.0, 0.1, None), "context59": (336, 224, 112, 40.0, 0.0, None),
    "coco_object": (336, 224, 112, 50.0, 0.1, None), "coco_stuff164k": (448, 224, 112, 40.0, 0.0, None),
    "ade20k": (336, 224, 112, 40.0, 0.0, None), "cityscapes": (560, 224, 112, 40.0, 0.0, None),
}
PROXY = {
    "voc21": (336, 336, 112, 40.0, 0.2, None), "voc20": (336, 336, 112, 40.0, 0.0, None),
    "context60": (336, 336, 112, 40.0, 0.15, None), "context59": (336, 336, 112, 40.0, 0.0, None),
    "coco_object": (336, 336, 112, 40.0, 0.25, None), "coco_stuff164k": (336, 336, 112, 40.0, 0.0, None),
    "ade20k": (448, 336, 112, 40.0, 0.0, None), "cityscapes": (448, 224, 112, 40.0, 0.0, None),
}
NACLIP = {
    "voc21": (336, 0, 112, 40.0, 0.1, None), "voc20": (336, 0, 112, 40.0, 0.0, None),
    "context60": (336, 224, 112, 40.0, 0.1, None), "context59": (336, 224, 112, 40.0, 0.0, None),
    "coco_object": (336, 224, 112, 40.0, 0.1, None), "coco_stuff164k": (336, 224, 112, 40.0, 0.0, None),
    "ade20k": (336, 224, 112, 40.0, 0.0, None), "cityscapes": (560, 224, 112, 40.0, 0.0, None),
}
CLEAR = {
    "voc21": (448, 448, 224, 50.0, 0.5, None), "voc20": (448, 448, 224, 50.0, 0.0, None),
    "context60": (448, 448, 224, 50.0, 0.15, None), "context59": (448, 448, 224, 50.0, 0.0, None),
    "coco_object": (448, 448, 224, 50.0, 0.4, None), "coco_stuff164k": (448, 448, 224, 50.0, 0.0, None),
    "ade20k": (448, 448, 224, 50.0, 0.0, None), "cityscapes": (448, 224, 224, 50.0, 0.0, None),
}
EIGHT = sorted(SCLIP)
"""The paper's 8 benchmarks: every table has a row for each."""
LARGE = {  # ProxyCLIP e7b767f configs/cfg_{ade847,context459}.py; CorrCLIPv2 103bc18 configs/cfg_*.py
    "proxyclip": {"ade847": (448, 336, 112, 40.0, 0.0, None), "context459": (448, 336, 112, 40.0, 0.0, None)},
    "corrclip": {"ade847": (448, 336, 112, 40.0, 0.0, None), "context459": (336, 336, 112, 40.0, 0.0, None)},
}
EXPECTED = {"sclip": (SCLIP, "sclip", False), "proxyclip": (PROXY, "proxyclip", False),
            "corrclip": (PROXY, "corrclip", True), "naclip": (NACLIP, "sclip", False),
            "clearclip": (CLEAR, "clearclip", False), "maskclip": (CLEAR, "clearclip", False)}


def _row(p: Protocol):
    return (p.short_side, p.crop, p.stride, p.logit_scale, p.prob_thd, p.area_thd)


@pytest.mark.parametrize("baseline", sorted(EXPECTED))
@pytest.mark.parametrize("dataset", EIGHT)
def test_anchor_values(baseline, dataset):
    table, variant, vote = EXPECTED[baseline]
    p = get_protocol(dataset, baseline)
    assert _row(p) == pytest.approx(table[dataset]) and (p.area_thd is None) == (table[dataset][5] is None)
    assert p.name_variant == variant and p.vote is vote


@pytest.mark.parametrize("baseline", sorted(LARGE))
@pytest.mark.parametrize("dataset", ["ade847", "context459"])
def test_large_vocabulary_rows(baseline, dataset):
    p = get_protocol(dataset, baseline)
    assert _row(p) == pytest.approx(LARGE[baseline][dataset]) and p.area_thd is None
    assert p.name_variant == baseline and p.vote is (baseline == "corrclip")


@pytest.mark.parametrize("baseline", ["sclip", "naclip", "clearclip", "maskclip"])
def test_no_row_is_made_up_for_anchors_without_a_config(baseline):
    for dataset in ("ade847", "context459"):
        with pytest.raises(ValueError) as e:
            get_protocol(dataset, baseline)
        assert dataset in str(e.value) and "--baseline corrclip" in str(e.value)


def test_tables_cover_every_dataset_and_name_variants_exist():
    for name, table in PROTOCOLS.items():
        assert set(table) == set(EIGHT) | set(LARGE.get(name, ())), name
        assert name in TABLE_SOURCES
        for p in table.values():
            assert p.name_variant in NAME_VARIANTS
    assert set(BASELINE_TABLE.values()) == set(PROTOCOLS)
    assert set(DATASETS) == set(EIGHT) | set(LARGE["proxyclip"]) == set(EIGHT) | set(LARGE["corrclip"])
    assert set(PAPER_SHORT_SIDE) == set(EIGHT)  # the paper reports no ADE-847 / PC-459 numbers


def test_background_thresholds_only_where_there_is_a_background():
    # SCLIP #2: a prob_thd on a dataset without background class ruins it (0.07 mIoU)
    for name, table in PROTOCOLS.items():
        for ds, p in table.items():
            if DATASETS[ds].background is None:
                assert p.prob_thd == 0.0 and p.area_thd is None, (name, ds)
            else:
                assert p.prob_thd > 0.0, (name, ds)


def test_overrides_and_json():
    p = get_protocol("voc21", "sclip", prob_thd=0.3, short_side=448)
    assert p.prob_thd == 0.3 and p.short_side == 448 and p.logit_scale == 65.0
    assert get_protocol("voc21", "sclip").prob_thd == 0.1  # the table is not mutated
    d = json.loads(json.dumps(p.to_json()))
    assert Protocol(**d) == p


def test_unknown_names_raise_naming_them():
    with pytest.raises(ValueError, match="nope_ds"):
        get_protocol("nope_ds", "sclip")
    with pytest.raises(ValueError, match="nope_bl"):
        get_protocol("voc21", "nope_bl")
    with pytest.raises(ValueError, match="probthd"):
        get_protocol("voc21", "sclip", probthd=0.1)


@pytest.mark.parametrize("field,value", [("prob_thd", 1.5), ("prob_thd", -0.1), ("short_side", 0),
                                         ("crop", -1), ("stride", 0), ("logit_scale", 0.0), ("area_thd", 2.0),
                                         ("vote", 1), ("short_side", True), ("name_variant", ""),
                                         ("stride", 400)])
def test_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        get_protocol("voc21", "proxyclip", **{field: value})


def test_whole_image_inference_allowed():
    assert get_protocol("voc20", "naclip").crop == 0
    assert get_protocol("voc21", "sclip", crop=0, stride=500).crop == 0


def test_docs_table_matches_the_code():
    """docs/datasets.md §4 shows the same values as PROTOCOLS (guards against drift)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"
    if not docs.is_file():
        pytest.skip("docs/datasets.md not present (installed package)")
    order = ["voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff164k", "ade20k", "cityscapes"]

    def cell(p: Protocol) -> str:
        s = f"{p.short_side} · " + (f"{p.crop}/{p.stride}" if p.crop else "whole") + f" · {p.logit_scale:g}"
        s += f" · p{p.prob_thd:g}" if p.prob_thd else ""
        s += f" · a{p.area_thd:g}" if p.area_thd else ""
        return s

    rows = {line.split("|")[1].strip().split(" ")[0]: [c.strip() for c in line.split("|")[2:-1]]
            for line in docs.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().split(" ")[0] in PROTOCOLS}
    assert set(rows) == set(PROTOCOLS)
    for name, table in PROTOCOLS.items():
        assert rows[name] == [cell(table[d]) for d in order], name
