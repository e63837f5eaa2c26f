"""ADE-847 and PC-459 (16-bit .tif labels, 65535 ignore) and the release's 303-class union vocabulary."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from s2c2seg.data import DATASETS, DatasetError, load_dataset, name_file, vocabulary
from s2c2seg.data.fixtures import fixture_region_dir, write_fixture
from s2c2seg.data.names import packaged_variants
from s2c2seg.evaluate import dataset_info
from s2c2seg.records import RunRecord

LARGE = ("ade847", "context459")

# Full sha256 of the packaged copies. ProxyCLIP e7b767f configs/cls_ade20k847.txt (git blob eed13af) and
# configs/cls_context459.txt (blob b04d79c, CRLF line ends); CorrCLIP 103bc18 CorrCLIPv2/configs/ (ade847 the
# same blob eed13af, context459 blob e3d1644: the same names with LF ends); S2c2seg e0f0d6f configs/cls_union.txt.
SHA256 = {
    "proxyclip/cls_ade847.txt": "5d6612d2a2f9778fc7270baf0db7bc800b054d1aa1f107e323197e8c54e33e26",
    "corrclip/cls_ade847.txt": "5d6612d2a2f9778fc7270baf0db7bc800b054d1aa1f107e323197e8c54e33e26",
    "proxyclip/cls_context459.txt": "883209fb0be7f54a6e0e8a530e6cfdf0400a5dafa509809c8141bd78b3ce759f",
    "corrclip/cls_context459.txt": "c9fe8ff7083d2572021691666a700755d8f4e1c634585ba9919a3f3a2c834538",
    "release/cls_union303.txt": "c5b9dfd34beb5ccaffed94d4146d7684f025cd358dac8bc2ebf3d70720c42d45",
}


def _git_blob(data: bytes) -> str:
    """git's object id of a file's bytes (``git hash-object``), computed independently of git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("rel", sorted(SHA256))
def test_name_files_are_the_sources_bytes(rel):
    variant, fname = rel.split("/")
    path = name_file(fname[len("cls_"):-len(".txt")], variant)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[rel]


def test_anchor_blob_ids():
    # the ids `git rev-parse <commit>:<path>` gives in the anchors' repositories
    assert _git_blob(name_file("ade847", "proxyclip").read_bytes()).startswith("eed13afb4820")
    assert _git_blob(name_file("context459", "proxyclip").read_bytes()).startswith("b04d79c30d18")
    assert _git_blob(name_file("context459", "corrclip").read_bytes()).startswith("e3d1644b8c88")


@pytest.mark.parametrize("key,variant,n", [("ade847", "proxyclip", 847), ("ade847", "corrclip", 847),
                                           ("context459", "proxyclip", 459), ("context459", "corrclip", 459),
                                           ("union303", "release", 303)])
def test_counts_and_no_duplicate_names(key, variant, n):
    v = vocabulary(key, variant)
    # one query per line: the files hold no "; " (ADE-847's ", " stays inside a name, as ProxyCLIP reads it)
    assert v.num_classes == len(v.queries) == n and v.variant == variant
    assert len(set(v.queries)) == n
    if key in DATASETS:
        assert DATASETS[key].num_classes == n


def test_quirks_kept_as_in_the_files():
    ade = vocabulary("ade847", "proxyclip")
    assert ade.classes[1] == ("building, edifice",) and ade.classes[255] == ("pier",)
    assert ade.classes[-1] == ("adding machine, totalizer, totaliser",)
    pc = vocabulary("context459", "proxyclip")
    assert pc.names[:3] == ["accordion", "aeroplane", "air conditioner"] and pc.names[-1] == "wool"
    assert vocabulary("context459", "corrclip").classes == pc.classes  # CRLF vs LF: the same vocabulary
    union = vocabulary("union303", "release")
    assert union.names[:3] == ["wall", "building", "sky"] and union.names[-1] == "background"
    assert {"traffic light", "trafficlight", "tvmonitor", "tv"} <= set(union.names)


def test_variants_without_a_file_say_which_exist():
    assert packaged_variants("ade847") == packaged_variants("context459") == ["corrclip", "proxyclip"]
    assert packaged_variants("union303") == ["release"] and len(packaged_variants("voc21")) == 4
    with pytest.raises(ValueError) as e:
        vocabulary("ade847", "sclip")
    assert "ade847" in str(e.value) and "vocabulary('ade847', 'proxyclip')" in str(e.value)
    with pytest.raises(ValueError, match=r"vocabulary\('union303', 'release'\)"):
        vocabulary("union303")
    with pytest.raises(ValueError, match="nope"):
        vocabulary("nope", "proxyclip")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("large")
    return {"ade847": write_fixture("ade847", base / "ADE20K_2021_17_01", n_images=3, with_regions=True),
            "context459": write_fixture("context459", base / "VOC2010", n_images=3, with_regions=True)}


def test_real_layout_and_16_bit_tif(roots):
    ade, pc = roots["ade847"], roots["context459"]
    assert (ade / "images_detectron2/validation/ADE_val_00000001.jpg").is_file()
    assert (pc / "JPEGImages/2008_000002.jpg").is_file()
    assert (pc / "ImageSets/SegmentationContext/val.txt").read_text().split() == ["2008_000002", "2008_000005",
                                                                                  "2008_000008"]
    for path in (ade / "annotations_detectron2/validation/ADE_val_00000001.tif",
                 pc / "annotations_detectron2/pc459_val/2008_000002.tif"):
        with Image.open(path) as im:
            assert im.format == "TIFF" and im.mode == "I;16"
            raw = np.asarray(im)
        assert raw.dtype == np.uint16 and 65535 in raw and int(raw[raw != 65535].max()) > 255
    assert (fixture_region_dir("ade847", ade) == ade / "region_masks/ade847")
    assert (fixture_region_dir("context459", pc) == pc / "region_masks/context")  # PC60's masks: same images


@pytest.mark.parametrize("name", LARGE)
def test_loads_with_65535_ignored_and_255_a_class(roots, name, tmp_path):
    spec = DATASETS[name]
    assert spec.ignore_index == 65535 and not spec.reduce_zero_label and spec.background is None
    ds = load_dataset(name, roots[name], region_dir=fixture_region_dir(name, roots[name]))
    assert len(ds) == 3 and dataset_info(ds).ignore_index == 65535
    s = ds.sample(0)
    raw = np.asarray(Image.open(ds.seg_paths[0])).astype(np.int64)
    np.testing.assert_array_equal(s.label, raw)  # no reduce_zero_label, no remapping
    assert s.meta["ignore_index"] == 65535 and s.regions.shape == s.label.shape
    # hand-made label: class 255 is a class here (ADE-847 line 256: "pier"), 65535 is the ignore
    root = write_fixture(name, tmp_path / name, n_images=1)
    one = load_dataset(name, root)
    arr = np.asarray(Image.open(one.seg_paths[0])).copy()
    arr[0, :4] = [0, 255, spec.num_classes - 1, 65535]
    Image.fromarray(arr).save(one.seg_paths[0], format="TIFF")
    assert one.sample(0).label[0, :4].tolist() == [0, 255, spec.num_classes - 1, 65535]
    stats = one.verify()
    assert stats["ignore_pixels"] == int((arr == 65535).sum()) and stats["class_pixels"][255] >= 1
    arr[0, 0] = spec.num_classes
    Image.fromarray(arr).save(one.seg_paths[0], format="TIFF")
    with pytest.raises(DatasetError) as e:
        one.sample(0)
    assert str(one.seg_paths[0]) in str(e.value) and f"value {spec.num_classes}" in str(e.value)
    assert "65535 (ignore)" in str(e.value)


def test_missing_tif_labels_name_the_cat_seg_script(tmp_path):
    root = write_fixture("ade847", tmp_path / "ADE20K_2021_17_01", n_images=1)
    for p in (root / "annotations_detectron2/validation").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="prepare_ade20k_847.py"):
        load_dataset("ade847", root)
    with pytest.raises(DatasetError, match="did you mean root="):
        load_dataset("ade847", tmp_path)  # the parent folder
    pc = write_fixture("context459", tmp_path / "VOC2010", n_images=1)
    (pc / "annotations_detectron2/pc459_val/2008_000002.tif").unlink()
    with pytest.raises(DatasetError, match="prepare_pascal_context_459.py"):
        load_dataset("context459", pc)


def _cli(args):
    from s2c2seg.cli import main

    return main(["eval", *args, "--no-progress", "--short-side", "48", "--crop", "32", "--stride", "32"])


def _labelled_pixels(ds) -> int:
    """Pixels of the split's labels that are not 65535, read straight from the .tif files."""
    return sum(int((np.asarray(Image.open(p)) != 65535).sum()) for p in ds.seg_paths)


@pytest.mark.parametrize("name,baseline", [("ade847", "proxyclip"), ("context459", "corrclip")])
def test_cli_eval_on_the_simulation(roots, tmp_path, name, baseline):
    """``s2c2seg eval <key> --backend sim`` on the fixture: every labelled pixel, and only those, is counted."""
    out = tmp_path / "out"
    args = [name, "--data-root", str(roots[name]), "--backend", "sim", "--baseline", baseline, "--out", str(out)]
    if baseline == "corrclip":
        args += ["--region-dir", str(fixture_region_dir(name, roots[name]))]
    assert _cli(args) == 0
    rec = RunRecord.load(out)
    assert rec.label == "SIMULATED" and rec.num_images == 3 and rec.dataset == name
    assert rec.confusion["ignore_index"] == 65535 and rec.confusion["num_classes"] == DATASETS[name].num_classes
    total = int(np.asarray(rec.confusion["matrix"]).sum())
    assert total == _labelled_pixels(load_dataset(name, roots[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_cli_eval_with_tiny_random_models(roots, tmp_path, name):
    """``--backend random --size tiny`` on one fixture image (the real segmenter; 847 / 459 text queries)."""
    out = tmp_path / "out"
    assert _cli([name, "--data-root", str(roots[name]), "--backend", "random", "--size", "tiny", "--baseline",
                 "proxyclip", "--max-images", "1", "--out", str(out)]) == 0
    rec = RunRecord.load(out)
    assert rec.label == "RANDOM WEIGHTS" and rec.num_images == 1 and rec.confusion["ignore_index"] == 65535
    ds = load_dataset(name, roots[name]).select([0])
    assert int(np.asarray(rec.confusion["matrix"]).sum()) == _labelled_pixels(ds)


def test_docs_large_vocabulary_table_matches_the_code():
    """docs/datasets.md §4's ADE847 / PC459 table shows the values of PROTOCOLS (guards against drift)."""
    from pathlib import Path

    from s2c2seg.data.protocols import PROTOCOLS

    docs = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"
    if not docs.is_file():
        pytest.skip("docs/datasets.md not present (installed package)")
    rows = {}
    for line in docs.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if line.startswith("| `") and cells[0].split(" ")[0].strip("`") in PROTOCOLS and len(cells) == 3:
            rows[cells[0].split(" ")[0].strip("`")] = cells[1:]
    assert set(rows) == {"proxyclip", "corrclip"}
    for name, cells in rows.items():
        p = [PROTOCOLS[name][d] for d in LARGE]
        assert cells == [f"{q.short_side} · {q.crop}/{q.stride} · {q.logit_scale:g}" for q in p], name
        assert all(q.prob_thd == 0 and q.area_thd is None for q in p)


def _mmseg_iou_255(pred: np.ndarray, label: np.ndarray, c: int) -> np.ndarray:
    """ProxyCLIP's metric on these labels, re-derived: mmseg ``intersect_and_union`` with ``ignore_index=255``
    (``histc`` over [0, c - 1] drops out-of-range values, so 65535 leaves the label area but not the prediction's)."""
    def hist(x):
        return np.bincount(x[(x >= 0) & (x < c)], minlength=c).astype(float)

    keep = label != 255
    p, t = pred[keep], label[keep]
    inter, area_p, area_t = hist(p[p == t]), hist(p), hist(t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_p + area_t - inter)


def test_metric_ignores_65535_and_counts_class_255_unlike_proxyclips_mmseg_metric():
    """The difference docs/datasets.md §2 describes, on 4 hand-made pixels of a 847-class map."""
    from s2c2seg.metrics import ConfusionMatrix

    label = np.array([[0, 255], [65535, 7]])
    pred = np.array([[0, 255], [0, 3]])
    cm = ConfusionMatrix(847, DATASETS["ade847"].ignore_index).update(pred, label)
    iou = cm.iou().numpy()
    # ours: pixel (1, 0) is ignored; 0 and 255 are right, 7 -> 3 wrong: IoU_0 = IoU_255 = 1, IoU_3 = IoU_7 = 0
    assert iou[0] == 1.0 and iou[255] == 1.0 and iou[3] == 0.0 and iou[7] == 0.0 and cm.miou() == 0.5
    anchor = _mmseg_iou_255(pred, label, 847)
    # ProxyCLIP's: class 255 dropped (NaN), the 65535 pixel predicted 0 enlarges class 0's union: 1 / 2
    assert np.isnan(anchor[255]) and anchor[0] == 0.5 and np.nanmean(anchor) == pytest.approx(0.5 / 3)


def test_oracle_reads_the_datasets_ignore_index(roots, tmp_path):
    """The oracle's subset is the GT classes without the 65535 ignore value (it raised on these datasets)."""
    out = tmp_path / "out"
    assert _cli(["ade847", "--data-root", str(roots["ade847"]), "--backend", "sim", "--baseline", "proxyclip",
                 "--method", "oracle", "--out", str(out)]) == 0
    rec = RunRecord.load(out)
    assert rec.extra["subset"]["gt_class_recall"] == 1.0
    ds = load_dataset("ade847", roots["ade847"])
    gt = [np.unique(np.asarray(Image.open(p))) for p in ds.seg_paths]
    want = np.mean([len(g[g != 65535]) for g in gt])  # the oracle keeps exactly the labelled classes
    assert rec.extra["subset"]["mean_subset_size"] == pytest.approx(want)
