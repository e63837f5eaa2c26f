"""The anchors' class-name files, packaged: ``names/<variant>/cls_<dataset>.txt``.

One class per line, synonyms on the line. The files are byte copies of the anchors' ``configs/cls_*.txt``
(renamed to our dataset keys; ``cls_coco_stuff.txt`` -> ``cls_coco_stuff164k.txt``, ``cls_city_scapes.txt``
-> ``cls_cityscapes.txt``):

* ``sclip``: wangf3014/SCLIP @ b56bd30, split on ``', '`` (NACLIP's files are identical);
* ``proxyclip``: mc-lan/ProxyCLIP @ e7b767f, split on ``'; '``;
* ``corrclip``: zdk258/CorrCLIP @ 103bc18 ``CorrCLIPv1/configs``, split on ``'; '`` (``person`` -> ``people``,
  COCO-Object's background line without ``bed``);
* ``clearclip``: mc-lan/ClearCLIP, split on ``','`` (line 0 of VOC21 / COCO-Object is the word ``background``).

The variants move the numbers (separator, synonyms, ``person``/``people``, background words), so every run
records which one it used (``Vocabulary.variant``).
"""
from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from .vocab import Vocabulary

__all__ = ["NAME_VARIANTS", "name_file", "vocabulary"]

NAME_VARIANTS: dict[str, str] = {"sclip": ", ", "proxyclip": "; ", "corrclip": "; ", "clearclip": ","}
"""Variant -> the separator its anchor splits lines on."""
ANCHOR_SHARED_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("coco_object", "sclip"): ("bed",), ("coco_object", "proxyclip"): ("bed",)}
"""(dataset, variant) -> names the anchor's file puts in two classes (``bed`` among COCO-Object's background
words and as its own class; CorrCLIP dropped it from the background line). Kept: the published numbers used them."""


def _check(dataset: str, variant: str) -> None:
    from .datasets import DATASETS

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    if variant not in NAME_VARIANTS:
        raise ValueError(f"unknown name-file variant {variant!r}; known: {sorted(NAME_VARIANTS)}")


def name_file(dataset: str, variant: str = "sclip") -> Path:
    """Path of the packaged name file of ``dataset`` in ``variant``."""
    _check(dataset, variant)
    res = files(__package__) / "names" / variant / f"cls_{dataset}.txt"
    with as_file(res) as path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"packaged name file missing: {path} (is the s2c2seg install complete? "
                                    f"package data s2c2seg/data/names/*/*.txt must be installed)")
        return Path(path)


def vocabulary(dataset: str, variant: str = "sclip") -> Vocabulary:
    """The vocabulary of a benchmark as the anchor of ``variant`` reads it (its separator, its synonyms).

    A user's own names go through :class:`Vocabulary` directly (``Vocabulary.from_file(path, sep)`` or
    ``Vocabulary.from_names([...])``).
    """
    _check(dataset, variant)
    return Vocabulary.from_file(name_file(dataset, variant), sep=NAME_VARIANTS[variant], variant=variant,
                                shared=ANCHOR_SHARED_NAMES.get((dataset, variant), ()))
