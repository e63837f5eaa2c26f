"""The 8 benchmarks and the two large-vocabulary ones (ADE-847, PC-459) in the on-disk layouts the anchors use,
without mmseg.

A :class:`DatasetSpec` says where the files of one benchmark lie (image and label folders, suffixes, split
file), how its label maps are encoded (``reduce_zero_label``, background index, the ignore value: 255 for
the 8, 65535 for the 16-bit ``.tif`` labels of ADE-847 and PC-459, whose class ids pass 255) and which
conversion produces the files. :func:`load_dataset` lists one split exactly as MMSeg 1.x does (the split
file's order when there is one, otherwise every image under the image folder, recursively, sorted by path)
and yields :class:`~s2c2seg.data.sample.Sample` objects with the label already encoded.

Every mistake a user can make with the files (wrong root, COCO-Object vs COCO-Stuff label files, missing
split file, a label map of another dataset) raises an error that names the path and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from ..io import load_image, load_label
from ..metrics import reduce_zero_label
from ..regions import load_region_mask, region_mask_path
from .sample import Sample, SampleSequence

__all__ = ["DatasetSpec", "DATASETS", "Dataset", "DatasetError", "IGNORE_INDEX", "TIF_IGNORE_INDEX", "encode_label",
           "get_spec", "load_dataset"]

IGNORE_INDEX = 255
"""Label value the anchors ignore in the metric on the 8 benchmarks (mmseg ``IoUMetric(ignore_index=255)``)."""
TIF_IGNORE_INDEX = 65535
"""Ignore value of the 16-bit ``.tif`` labels CAT-Seg's preparation writes (detectron2 ``ignore_label=65535``)."""


class DatasetError(ValueError):
    """The files of a dataset are missing, empty or do not match the dataset's layout and encoding."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where one benchmark's files lie and how its labels are encoded (MMSeg 1.x conventions)."""

    name: str
    """Our key (``voc21``, ...)."""
    title: str
    """Display name used in tables (``VOC21``, ``PC59``, ...)."""
    num_classes: int
    """C after encoding: labels are in ``[0, C)`` or ``ignore_index``."""
    background: int | None
    """Index of the background class (0 for VOC21, Context60, COCO-Object), None when there is none."""
    reduce_zero_label: bool
    """MMSeg's ``reduce_zero_label``: stored 0 becomes 255 (ignored), every other stored value − 1."""
    img_dir: str
    """Image folder relative to the dataset root (mmseg ``data_prefix.img_path``)."""
    ann_dir: str
    """Label folder relative to the dataset root (mmseg ``data_prefix.seg_map_path``)."""
    img_suffix: str
    seg_suffix: str
    split_file: str | None
    """Split list relative to the root (mmseg ``ann_file``), or None: every image under ``img_dir`` is used."""
    converter: str
    """What produces the label files (named in every missing-file error)."""
    root_name: str
    """The folder the root usually is (``VOC2012``, ``VOC2010``, ``coco``, ``ADEChallengeData2016``, ``cityscapes``)."""
    region_group: str
    """Sub-folder of CorrCLIP's pre-generated masks (``data/region_masks/<group>``)."""
    mmseg_class: str
    """The dataset class the anchors' configs name (``custom`` = the anchors' ``custom_datasets.py``)."""
    anchor_name_file: str
    """The anchors' ``configs/cls_*.txt`` file name for this dataset."""
    ignore_index: int = IGNORE_INDEX
    """Label value the metric ignores, stored and after encoding (255; 65535 for the ``.tif`` datasets)."""

    @property
    def stored_max(self) -> int:
        """Largest valid stored (raw) label value other than ``ignore_index``."""
        return self.num_classes if self.reduce_zero_label else self.num_classes - 1

    def to_json(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "background": self.background,
                "reduce_zero_label": self.reduce_zero_label, "img_dir": self.img_dir, "ann_dir": self.ann_dir,
                "img_suffix": self.img_suffix, "seg_suffix": self.seg_suffix, "split_file": self.split_file,
                "ignore_index": self.ignore_index}


_VOC_CONVERTER = ("the PASCAL VOC 2012 trainval tar (VOCtrainval_11-May-2012.tar) unpacked: root = "
                  "VOCdevkit/VOC2012 (no conversion; palette PNGs in SegmentationClass, 255 = boundary)")
_CONTEXT_CONVERTER = ("mmseg's tools/dataset_converters/pascal_context.py (VOC2010 + trainval_merged.json, needs "
                      "the 'detail' API) writing SegmentationClassContext/*.png and "
                      "ImageSets/SegmentationContext/{train,val}.txt: root = VOCdevkit/VOC2010")
_COCO_STUFF_CONVERTER = ("mmseg's tools/dataset_converters/coco_stuff164k.py on stuffthingmaps_trainval2017.zip "
                         "(writes annotations/val2017/*_labelTrainIds.png): root = the coco folder holding "
                         "images/ and annotations/")
_COCO_OBJECT_CONVERTER = ("the anchors' datasets/cvt_coco_object.py (from GroupViT; in SCLIP, ProxyCLIP and CorrCLIP) "
                          "run on the raw COCO-Stuff PNGs of BOTH train2017 and val2017 (writes "
                          "annotations/val2017/*_instanceTrainIds.png; NOT mmseg's coco_stuff164k.py, whose "
                          "*_labelTrainIds.png are COCO-Stuff-171 labels): root = the coco folder")
_ADE_CONVERTER = ("ADEChallengeData2016.zip unpacked (no conversion; 0 = 'other', ignored through "
                  "reduce_zero_label): root = ADEChallengeData2016")
_ADE847_CONVERTER = ("CAT-Seg's datasets/prepare_ade20k_847.py on ADE20K_2021_17_01.zip with its "
                     "index_ade20k.pkl, writing images_detectron2/validation/*.jpg and "
                     "annotations_detectron2/validation/*.tif (16-bit, class ids 0..846, 65535 = ignore): root = "
                     "ADE20K_2021_17_01")
_PC459_CONVERTER = ("CAT-Seg's datasets/prepare_pascal_context_459.py on VOC2010 + the 459-class trainval.tar.gz "
                    ".mat files (writes annotations_detectron2/pc459_val/*.tif: LabelMap - 1 as 16-bit, unlabelled "
                    "0 -> 65535 = ignore) and ImageSets/SegmentationContext/val.txt from mmseg's "
                    "tools/dataset_converters/pascal_context.py: root = VOCdevkit/VOC2010")
_CITY_CONVERTER = ("mmseg's tools/dataset_converters/cityscapes.py (cityscapesscripts, writes "
                   "gtFine/val/<city>/*_gtFine_labelTrainIds.png) on leftImg8bit_trainvaltest.zip + "
                   "gtFine_trainvaltest.zip: root = cityscapes")


def _voc(name, title, n, bg, rzl, cls, names):
    return DatasetSpec(name, title, n, bg, rzl, "JPEGImages", "SegmentationClass", ".jpg", ".png",
                       "ImageSets/Segmentation/val.txt", _VOC_CONVERTER, "VOC2012", "voc", cls, names)


def _context(name, title, n, bg, rzl, cls, names):
    return DatasetSpec(name, title, n, bg, rzl, "JPEGImages", "SegmentationClassContext", ".jpg", ".png",
                       "ImageSets/SegmentationContext/val.txt", _CONTEXT_CONVERTER, "VOC2010", "context", cls,
                       names)


DATASETS: dict[str, DatasetSpec] = {
    "voc21": _voc("voc21", "VOC21", 21, 0, False, "PascalVOCDataset", "cls_voc21.txt"),
    "voc20": _voc("voc20", "VOC20", 20, None, True, "PascalVOC20Dataset (custom)", "cls_voc20.txt"),
    "context60": _context("context60", "PC60", 60, 0, False, "PascalContext60Dataset (custom)",
                          "cls_context60.txt"),
    "context59": _context("context59", "PC59", 59, None, True, "PascalContext59Dataset (custom)",
                          "cls_context59.txt"),
    "coco_object": DatasetSpec("coco_object", "Object", 81, 0, False, "images/val2017", "annotations/val2017",
                               ".jpg", "_instanceTrainIds.png", None, _COCO_OBJECT_CONVERTER, "coco", "coco",
                               "COCOObjectDataset (custom)", "cls_coco_object.txt"),
    "coco_stuff164k": DatasetSpec("coco_stuff164k", "Stuff", 171, None, False, "images/val2017",
                                  "annotations/val2017", ".jpg", "_labelTrainIds.png", None, _COCO_STUFF_CONVERTER,
                                  "coco", "coco", "COCOStuffDataset", "cls_coco_stuff.txt"),
    "ade20k": DatasetSpec("ade20k", "ADE", 150, None, True, "images/validation", "annotations/validation", ".jpg",
                          ".png", None, _ADE_CONVERTER, "ADEChallengeData2016", "ade", "ADE20KDataset",
                          "cls_ade20k.txt"),
    "cityscapes": DatasetSpec("cityscapes", "City", 19, None, False, "leftImg8bit/val", "gtFine/val",
                              "_leftImg8bit.png", "_gtFine_labelTrainIds.png", None, _CITY_CONVERTER, "cityscapes",
                              "city", "CityscapesDataset", "cls_city_scapes.txt"),
    "ade847": DatasetSpec("ade847", "ADE847", 847, None, False, "images_detectron2/validation",
                          "annotations_detectron2/validation", ".jpg", ".tif", None, _ADE847_CONVERTER,
                          "ADE20K_2021_17_01", "ade847", "ADE20K847Dataset (custom)", "cls_ade20k847.txt",
                          TIF_IGNORE_INDEX),
    "context459": DatasetSpec("context459", "PC459", 459, None, False, "JPEGImages",
                              "annotations_detectron2/pc459_val", ".jpg", ".tif",
                              "ImageSets/SegmentationContext/val.txt", _PC459_CONVERTER, "VOC2010", "context",
                              "PascalContext459Dataset (custom)", "cls_context459.txt", TIF_IGNORE_INDEX),
}
"""The 8 benchmarks, in the paper's table order after VOC21/VOC20/PC60/PC59, then ADE-847 and PC-459 (the
anchors' large-vocabulary benchmarks; ProxyCLIP and CorrCLIPv2 ship their configs)."""


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by key; an unknown key raises naming it and the known keys."""
    if isinstance(name, DatasetSpec):
        return name
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def _missing(spec: DatasetSpec, what: str, path: Path, root: Path | None = None) -> DatasetError:
    hint = ""
    if root is not None:  # the usual slip: passing data/ or VOCdevkit/ instead of the dataset's own folder
        for cand in (root / spec.root_name, root / "VOCdevkit" / spec.root_name, root / "ade" / spec.root_name):
            if (cand / spec.img_dir).is_dir():
                hint = f"\n  did you mean root={cand}?"
                break
    return DatasetError(f"{spec.name}: {what} not found: {path}\n  expected layout: <root>/{spec.img_dir}/*"
                        f"{spec.img_suffix}, <root>/{spec.ann_dir}/*{spec.seg_suffix}"
                        + (f", <root>/{spec.split_file}" if spec.split_file else "")
                        + f" (root is usually a folder named {spec.root_name!r})\n  produced by: {spec.converter}"
                        + hint)


class Dataset(SampleSequence):
    """One split of a benchmark: ``len()``, ``sample(i)``, iteration, ``.ids``, ``.spec``.

    Files are only listed at construction; each :meth:`sample` reads one image, its label and (with
    ``region_dir``) its region mask, and checks them.
    """

    def __init__(self, spec: DatasetSpec, root: Path, split: str, ids: Sequence[str],
                 img_paths: Sequence[Path], seg_paths: Sequence[Path], region_dir: Path | None = None):
        if not (len(ids) == len(img_paths) == len(seg_paths)):
            raise ValueError("ids, img_paths and seg_paths must have the same length")
        self.spec = spec
        self.root = root
        self.split = split
        self.ids: list[str] = list(ids)
        self.img_paths: list[Path] = list(img_paths)
        self.seg_paths: list[Path] = list(seg_paths)
        self.region_dir = region_dir

    def __repr__(self) -> str:
        return f"Dataset({self.spec.name!r}, root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

    def select(self, indices: Sequence[int]) -> Dataset:
        """A dataset over a subset of the images (e.g. the first n, or one torchrun shard)."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < len(self):
                raise ValueError(f"indices: {i} is out of range for {len(self)} images")
        return Dataset(self.spec, self.root, self.split, [self.ids[i] for i in idx],
                       [self.img_paths[i] for i in idx], [self.seg_paths[i] for i in idx], self.region_dir)

    def region_path(self, i: int) -> Path | None:
        """The anchors' region mask of image i: ``<region_dir>/<image file stem>.npz`` (None without region_dir)."""
        if self.region_dir is None:
            return None
        return region_mask_path(self.region_dir, self.img_paths[i].name)

    def load_label(self, i: int) -> np.ndarray:
        """(H, W) int64 label of image i after the dataset's encoding; bad values raise naming file and value."""
        path = self.seg_paths[i]
        if not path.is_file():
            raise _missing(self.spec, "label file", path)
        raw = load_label(path)
        return encode_label(self.spec, raw, path)

    def verify(self) -> dict:
        """Read every label (and image header) once: raise on the first bad file, return pixel statistics.

        Checks what :meth:`sample` checks (label values, image/label size, region masks) without decoding the
        images, so a conversion mistake shows before a long run. Returns ``{"images": n, "class_pixels":
        (C,) int64 pixel count per class after encoding, "ignore_pixels": int}``.
        """
        from PIL import Image

        counts = np.zeros(self.spec.num_classes, dtype=np.int64)
        ignore = 0
        for i in range(len(self)):
            label = self.load_label(i)
            with Image.open(self.img_paths[i]) as img:
                w, h = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
                    w, h = h, w
            if label.shape != (h, w):
                raise DatasetError(f"{self.spec.name}: image {self.img_paths[i]} is {h}x{w} but label "
                                   f"{self.seg_paths[i]} is {label.shape[0]}x{label.shape[1]} (H x W)")
            rpath = self.region_path(i)
            if rpath is not None and load_region_mask(rpath).shape != label.shape:
                raise DatasetError(f"{self.spec.name}: region mask {rpath} does not match label "
                                   f"{self.seg_paths[i]} ({label.shape[0]}x{label.shape[1]})")
            valid = label != self.spec.ignore_index
            counts += np.bincount(label[valid], minlength=self.spec.num_classes)
            ignore += int((~valid).sum())
        return {"images": len(self), "class_pixels": counts, "ignore_pixels": ignore}

    def sample(self, i: int) -> Sample:
        """Image i with its encoded label (and regions when the dataset has a region_dir)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} images")
        i = i % len(self)
        img_path = self.img_paths[i]
        if not img_path.is_file():
            raise _missing(self.spec, "image file", img_path)
        image = load_image(img_path)
        label = self.load_label(i)
        if label.shape != image.shape[:2]:
            raise DatasetError(f"{self.spec.name}: image {img_path} is {image.shape[0]}x{image.shape[1]} but label "
                               f"{self.seg_paths[i]} is {label.shape[0]}x{label.shape[1]} (H x W)")
        regions = None
        rpath = self.region_path(i)
        if rpath is not None:
            regions = load_region_mask(rpath)
            if regions.shape != image.shape[:2]:
                raise DatasetError(f"{self.spec.name}: region mask {rpath} is {regions.shape[0]}x"
                                   f"{regions.shape[1]} but image {img_path} is {image.shape[0]}x{image.shape[1]}")
        meta = {"dataset": self.spec.name, "img_path": str(img_path), "seg_path": str(self.seg_paths[i]),
                "ignore_index": self.spec.ignore_index}
        if rpath is not None:
            meta["region_path"] = str(rpath)
        return Sample(id=self.ids[i], image=image, label=label, regions=regions, meta=meta)


def encode_label(spec: DatasetSpec, raw: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Stored label values -> class indices in ``[0, C)`` or ``spec.ignore_index``, as the anchors'
    ``LoadAnnotations`` does.

    Stored values outside ``[0, stored_max] ∪ {ignore_index}`` raise naming the file and the value.
    """
    raw = np.asarray(raw)
    values = np.unique(raw)
    bad = values[((values < 0) | (values > spec.stored_max)) & (values != spec.ignore_index)]
    if bad.size:
        raise DatasetError(f"{spec.name}: label file {path} has value {int(bad[0])} (all bad values: "
                           f"{bad[:10].tolist()}); valid stored values are 0..{spec.stored_max} and "
                           f"{spec.ignore_index} (ignore)" + (" before reduce_zero_label" if spec.reduce_zero_label
                                                         else "") + f"; is this a {spec.name} label map?\n"
                           f"  produced by: {spec.converter}")
    label = raw.astype(np.int64, copy=True)
    if spec.reduce_zero_label:
        label = np.asarray(reduce_zero_label(label), dtype=np.int64)
    return label


def _list_split_file(spec: DatasetSpec, root: Path, split: str) -> list[str]:
    rel = spec.split_file.replace("/val.txt", f"/{split}.txt")
    path = root / rel
    if not path.is_file():
        raise _missing(spec, "split file", path)
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


def _scan(spec: DatasetSpec, img_dir: Path) -> list[str]:
    """Image paths relative to img_dir without the suffix, recursive, sorted (mmseg without ``ann_file``)."""
    rels = []
    for p in img_dir.rglob(f"*{spec.img_suffix}"):
        if p.is_file():
            rel = p.relative_to(img_dir).as_posix()
            rels.append(rel[: -len(spec.img_suffix)])
    return sorted(rels, key=lambda r: r + spec.img_suffix)


def _split_dirs(spec: DatasetSpec, split: str) -> tuple[str, str]:
    """The image/label folders of a split: the last folder of the val paths renamed after the split
    (``val`` -> ``train``, ``val2017`` -> ``train2017``, ``validation`` -> ``training``); VOC/Context keep one
    folder for all splits and choose by split file."""
    if split == "val" or spec.split_file is not None:
        return spec.img_dir, spec.ann_dir
    img, ann = PurePosixPath(spec.img_dir), PurePosixPath(spec.ann_dir)
    folder = {"val2017": f"{split}2017", "validation": {"train": "training"}.get(split, split)}.get(img.name, split)
    return str(img.parent / folder), str(ann.parent / folder)


def _check_files(spec: DatasetSpec, img_paths: list[Path], seg_paths: list[Path], ann_dir: Path) -> None:
    """Every listed image and label exists (one ``stat`` each), so a run never dies half-way for a missing file."""
    missing_seg = [p for p in seg_paths if not p.is_file()]
    if len(missing_seg) == len(seg_paths):
        # not one label file of the expected suffix: the COCO-Object / COCO-Stuff mix-up, or no conversion run
        raise _missing(spec, f"label files '*{spec.seg_suffix}' (none of {len(seg_paths)}, e.g. "
                             f"{seg_paths[0].name})", ann_dir)
    missing_img = [p for p in img_paths if not p.is_file()]
    for what, missing, total in (("image", missing_img, img_paths), ("label", missing_seg, seg_paths)):
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise DatasetError(f"{spec.name}: {len(missing)} of {len(total)} {what} files of the split are missing, "
                               f"e.g. {shown}\n  produced by: {spec.converter}")


def load_dataset(name: str | DatasetSpec, root: str | Path, split: str = "val",
                 region_dir: str | Path | None = None) -> Dataset:
    """One split of a benchmark at ``root`` (the folder holding the spec's ``img_dir``/``ann_dir``).

    ``region_dir``: folder of CorrCLIP's pre-generated ``<image stem>.npz`` region masks; each sample then
    carries ``regions`` (a missing mask file raises naming its path when the sample is read).
    Raises :class:`DatasetError` naming the expected path and the converter when a folder, split file, image
    or label file is missing, and when the split is empty (files are checked here, contents when read).
    """
    spec = get_spec(name)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _missing(spec, "dataset root", root)
    img_rel, ann_rel = _split_dirs(spec, split)
    img_dir, ann_dir = root / img_rel, root / ann_rel
    if not img_dir.is_dir():
        raise _missing(spec, "image folder", img_dir, root)
    if not ann_dir.is_dir():
        raise _missing(spec, "label folder", ann_dir, root)
    if spec.split_file is not None:
        rels = _list_split_file(spec, root, split)
        where = root / spec.split_file.replace("/val.txt", f"/{split}.txt")
    else:
        rels = _scan(spec, img_dir)
        where = img_dir / f"**/*{spec.img_suffix}"
    if not rels:
        raise DatasetError(f"{spec.name}: split {split!r} is empty: no images listed in {where}\n  produced by: "
                           f"{spec.converter}")
    ids = [Path(r).name for r in rels]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"{spec.name}: duplicate image names under {img_dir}: {dup}")
    img_paths = [img_dir / f"{r}{spec.img_suffix}" for r in rels]
    seg_paths = [ann_dir / f"{r}{spec.seg_suffix}" for r in rels]
    _check_files(spec, img_paths, seg_paths, ann_dir)
    rdir = None
    if region_dir is not None:
        rdir = Path(region_dir).expanduser()
        if not rdir.is_dir():
            raise DatasetError(f"{spec.name}: region mask folder not found: {rdir} (CorrCLIP's pre-generated SAM2 "
                               f"masks unpack to data/region_masks/{spec.region_group}; download region_masks.zip "
                               f"from the Hugging Face dataset dk258/CorrCLIP)")
    return Dataset(spec, root, split, ids, img_paths, seg_paths, rdir)
