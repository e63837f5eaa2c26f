"""Datasets on generated fixtures in the real layouts: listing, label encoding, regions, every bad input."""
import numpy as np
import pytest
from PIL import Image

from s2c2seg.data import DATASETS, DatasetError, Sample, load_dataset
from s2c2seg.data.fixtures import fixture_region_dir, fixture_stems, write_fixture

ALL = sorted(DATASETS)


def _raw(path):
    return np.asarray(Image.open(path)).astype(np.int64)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixtures")
    return {name: write_fixture(name, base / name, n_images=4, with_regions=True) for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_fixture_loads_and_labels_are_encoded(fixtures, name):
    spec = DATASETS[name]
    ds = load_dataset(name, fixtures[name], region_dir=fixture_region_dir(name, fixtures[name]))
    assert len(ds) == 4 and ds.spec is spec
    stems = fixture_stems(name, 4) if spec.split_file else sorted(fixture_stems(name, 4))  # scan = sorted
    assert ds.ids == [s.split("/")[-1] for s in stems]
    seen = set()
    for i, sample in enumerate(ds):
        assert isinstance(sample, Sample) and sample.id == ds.ids[i]
        assert sample.image.dtype == np.uint8 and sample.image.shape == (48, 64, 3)
        assert sample.label.dtype == np.int64 and sample.label.shape == (48, 64)
        assert sample.regions.dtype == np.int32 and sample.regions.shape == (48, 64)
        raw = _raw(ds.seg_paths[i])
        if spec.reduce_zero_label:
            expected = np.where(raw == 0, 255, np.where(raw == 255, 255, raw - 1))
            assert (raw == 0).any()  # the fixture stores the raw 0 that becomes 255
        else:
            expected = raw
        np.testing.assert_array_equal(sample.label, expected)
        vals = np.unique(sample.label)
        assert ((vals >= 0) & (vals < spec.num_classes) | (vals == spec.ignore_index)).all()
        assert sample.meta["ignore_index"] == spec.ignore_index
        seen |= set(vals.tolist())
        assert sample.meta["img_path"].endswith(spec.img_suffix)
        assert sample.meta["seg_path"].endswith(spec.seg_suffix)
    if name == "coco_object":
        assert 255 not in seen  # cvt_coco_object.py maps "unlabeled" to background 0
    else:
        assert spec.ignore_index in seen
    if spec.background is not None:
        assert spec.background in seen


@pytest.mark.parametrize("name", ALL)
def test_verify_counts_pixels_and_matches_samples(fixtures, name):
    ds = load_dataset(name, fixtures[name], region_dir=fixture_region_dir(name, fixtures[name]))
    stats = ds.verify()
    labels = np.stack([s.label for s in ds])
    ignore = DATASETS[name].ignore_index
    ref = np.bincount(labels[labels != ignore], minlength=DATASETS[name].num_classes)
    assert stats["images"] == 4 and stats["class_pixels"].tolist() == ref.tolist()
    assert stats["ignore_pixels"] == int((labels == ignore).sum())


def test_verify_raises_on_bad_label_and_size(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=2)
    ds = load_dataset("voc21", root)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds.seg_paths[1])
    with pytest.raises(DatasetError, match="2007_000039"):
        ds.verify()
    Image.fromarray(np.full((48, 64), 30, np.uint8)).save(ds.seg_paths[1])
    with pytest.raises(DatasetError, match="value 30"):
        ds.verify()


def test_real_layout_on_disk(fixtures):
    voc = fixtures["voc21"]
    assert (voc / "ImageSets/Segmentation/val.txt").read_text().split() == fixture_stems("voc21", 4)
    assert Image.open(voc / "SegmentationClass" / "2007_000033.png").mode == "P"  # VOC palette PNGs
    assert (voc / "JPEGImages" / "2007_000033.jpg").is_file()
    ctx = fixtures["context59"]
    assert (ctx / "ImageSets/SegmentationContext/val.txt").is_file()
    assert (ctx / "SegmentationClassContext" / "2008_000002.png").is_file()
    coco = fixtures["coco_object"]
    assert (coco / "annotations/val2017/000000000139_instanceTrainIds.png").is_file()
    assert (fixtures["coco_stuff164k"] / "annotations/val2017/000000000139_labelTrainIds.png").is_file()
    assert (fixtures["ade20k"] / "annotations/validation/ADE_val_00000001.png").is_file()
    city = fixtures["cityscapes"]
    assert (city / "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png").is_file()
    assert (city / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png").is_file()
    assert (city / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png").is_file()  # ignored
    assert (city / "region_masks/city/frankfurt_000000_000019_leftImg8bit.npz").is_file()  # <image stem>.npz
    assert "GENERATED" in (voc / "FIXTURE.txt").read_text()


def test_fixture_is_deterministic(tmp_path):
    a = write_fixture("ade20k", tmp_path / "a", n_images=2, seed=3)
    b = write_fixture("ade20k", tmp_path / "b", n_images=2, seed=3)
    c = write_fixture("ade20k", tmp_path / "c", n_images=2, seed=4)
    rel = "annotations/validation/ADE_val_00000001.png"
    rel_img = "images/validation/ADE_val_00000001.jpg"
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / rel_img).read_bytes() == (b / rel_img).read_bytes()
    assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_fixture_size_and_count(tmp_path):
    root = write_fixture("cityscapes", tmp_path / "city", n_images=5, size=(32, 40))
    ds = load_dataset("cityscapes", root)
    assert len(ds) == 5 and ds.sample(4).image.shape == (32, 40, 3) and ds.sample(0).regions is None
    with pytest.raises(ValueError, match="n_images"):
        write_fixture("voc21", tmp_path / "x", n_images=0)
    with pytest.raises(ValueError, match="size"):
        write_fixture("voc21", tmp_path / "x", size=(4, 4))


def test_split_file_order_is_kept(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=3)
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000045\n2007_000033\n\n")
    assert load_dataset("voc21", root).ids == ["2007_000045", "2007_000033"]


def test_scan_is_recursive_and_sorted(tmp_path):
    root = write_fixture("cityscapes", tmp_path / "city", n_images=6)
    ds = load_dataset("cityscapes", root)
    paths = [p.relative_to(root).as_posix() for p in ds.img_paths]
    assert paths == sorted(paths) and len(ds) == 6
    assert ds.ids[0].startswith("frankfurt_")


def test_select_index_and_repr(fixtures):
    ds = load_dataset("voc20", fixtures["voc20"])
    sub = ds.select([2, 0])
    assert sub.ids == [ds.ids[2], ds.ids[0]] and len(sub) == 2
    assert ds[-1].id == ds.ids[-1] and ds.sample(1).id == ds.ids[1]
    with pytest.raises(IndexError):
        ds.sample(4)
    with pytest.raises(ValueError, match="indices"):
        ds.select([9])
    assert "voc20" in repr(ds)


# ----------------------------------------------------------------------------------------- bad input
def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="voc22"):
        load_dataset("voc22", tmp_path)


def test_missing_root_names_path_and_converter(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("ade20k", tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "ADEChallengeData2016" in str(e.value)


def test_parent_folder_given_as_root_gets_a_hint(tmp_path):
    write_fixture("voc21", tmp_path / "VOCdevkit" / "VOC2012", n_images=1)
    with pytest.raises(DatasetError, match="did you mean root=.*VOC2012"):
        load_dataset("voc21", tmp_path)


def test_missing_folder_names_path_and_converter(tmp_path):
    root = write_fixture("context60", tmp_path / "ctx", n_images=1)
    import shutil
    shutil.rmtree(root / "SegmentationClassContext")
    with pytest.raises(DatasetError) as e:
        load_dataset("context60", root)
    msg = str(e.value)
    assert str(root / "SegmentationClassContext") in msg and "pascal_context.py" in msg


def test_missing_split_file_names_path_and_converter(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=1)
    (root / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("voc21", root)
    assert str(root / "ImageSets/Segmentation/val.txt") in str(e.value)
    with pytest.raises(DatasetError, match="train.txt"):
        load_dataset("voc21", root, split="train")


def test_coco_object_vs_stuff_label_files(tmp_path):
    # a COCO folder converted with mmseg's COCO-Stuff script only has *_labelTrainIds.png
    root = write_fixture("coco_stuff164k", tmp_path / "coco", n_images=2)
    with pytest.raises(DatasetError) as e:
        load_dataset("coco_object", root)
    msg = str(e.value)
    assert "_instanceTrainIds.png" in msg and "cvt_coco_object.py" in msg and "coco_stuff164k.py" in msg
    write_fixture("coco_object", root, n_images=2)  # both label kinds in one coco folder, as in practice
    assert len(load_dataset("coco_object", root)) == 2 and len(load_dataset("coco_stuff164k", root)) == 2


def test_missing_label_file_of_one_image(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=2)
    (root / "SegmentationClass/2007_000039.png").unlink()
    with pytest.raises(DatasetError, match="1 of 2 label files.*2007_000039.png"):
        load_dataset("voc21", root)


def test_missing_image_listed_in_split(tmp_path):
    root = write_fixture("context59", tmp_path / "ctx", n_images=2)
    (root / "ImageSets/SegmentationContext/val.txt").write_text("2008_000002\n2008_999999\n")
    with pytest.raises(DatasetError, match="1 of 2 image files.*2008_999999.jpg"):
        load_dataset("context59", root)


def test_label_deleted_after_listing_names_it(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=2)
    ds = load_dataset("voc21", root)
    (root / "SegmentationClass/2007_000039.png").unlink()
    ds.sample(0)
    with pytest.raises(DatasetError, match="2007_000039.png"):
        ds.sample(1)


def test_other_split_folders(tmp_path):
    root = write_fixture("ade20k", tmp_path / "ade", n_images=2)
    (root / "images/validation").rename(root / "images/training")
    (root / "annotations/validation").rename(root / "annotations/training")
    assert len(load_dataset("ade20k", root, split="train")) == 2
    with pytest.raises(DatasetError, match="images/validation"):
        load_dataset("ade20k", root)


@pytest.mark.parametrize("name,bad", [("voc21", 21), ("voc20", 21), ("context59", 60), ("ade20k", 151),
                                      ("cityscapes", 19), ("coco_object", 81), ("coco_stuff164k", 200)])
def test_label_value_out_of_range_names_file_and_value(tmp_path, name, bad):
    root = write_fixture(name, tmp_path / name, n_images=1)
    ds = load_dataset(name, root)
    path = ds.seg_paths[0]
    arr = np.asarray(Image.open(path)).copy()
    arr[0, 0] = bad
    Image.fromarray(arr).save(path)
    with pytest.raises(DatasetError) as e:
        ds.sample(0)
    assert str(path) in str(e.value) and f"value {bad}" in str(e.value)


def test_reduce_zero_label_edge_values_are_valid(tmp_path):
    root = write_fixture("ade20k", tmp_path / "ade", n_images=1)
    ds = load_dataset("ade20k", root)
    path = ds.seg_paths[0]
    arr = np.asarray(Image.open(path)).copy()
    arr[0, :3] = [0, 150, 255]
    Image.fromarray(arr).save(path)
    assert ds.sample(0).label[0, :3].tolist() == [255, 149, 255]


def test_size_mismatch_names_both_files(tmp_path):
    root = write_fixture("ade20k", tmp_path / "ade", n_images=1)
    ds = load_dataset("ade20k", root)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(ds.seg_paths[0])
    with pytest.raises(DatasetError) as e:
        ds.sample(0)
    assert str(ds.img_paths[0]) in str(e.value) and str(ds.seg_paths[0]) in str(e.value)


def test_empty_split_raises(tmp_path):
    root = write_fixture("voc20", tmp_path / "voc", n_images=1)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset("voc20", root)
    root2 = write_fixture("ade20k", tmp_path / "ade", n_images=1)
    (root2 / "images/validation/ADE_val_00000001.jpg").unlink()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset("ade20k", root2)


def test_missing_region_file_names_path(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=2, with_regions=True)
    rdir = fixture_region_dir("voc21", root)
    (rdir / "2007_000039.npz").unlink()
    ds = load_dataset("voc21", root, region_dir=rdir)
    assert ds.sample(0).regions is not None
    with pytest.raises(FileNotFoundError, match="2007_000039.npz"):
        ds.sample(1)
    with pytest.raises(DatasetError, match="region"):
        load_dataset("voc21", root, region_dir=tmp_path / "none")


def test_region_size_mismatch(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=1, with_regions=True)
    rdir = fixture_region_dir("voc21", root)
    np.savez_compressed(rdir / "2007_000033.npz", instance_mask=np.zeros((5, 5), np.int32))
    with pytest.raises(DatasetError, match="2007_000033.npz"):
        load_dataset("voc21", root, region_dir=rdir).sample(0)


def test_bad_split_argument(tmp_path):
    root = write_fixture("voc21", tmp_path / "voc", n_images=1)
    with pytest.raises(ValueError, match="split"):
        load_dataset("voc21", root, split="")
