"""The anchors' class-name files, packaged: ``names/<variant>/cls_<key>.txt``.

One class per line, synonyms on the line. The files are byte copies of the anchors' ``configs/cls_*.txt``
(renamed to our dataset keys; ``cls_coco_stuff.txt`` -> ``cls_coco_stuff164k.txt``, ``cls_city_scapes.txt``
-> ``cls_cityscapes.txt``, ``cls_ade20k847.txt`` -> ``cls_ade847.txt``):

* ``sclip``: wangf3014/SCLIP @ b56bd30, split on ``', '`` (NACLIP's files are identical);
* ``proxyclip``: mc-lan/ProxyCLIP @ e7b767f, split on ``'; '``;
* ``corrclip``: zdk258/CorrCLIP @ 103bc18 ``CorrCLIPv1/configs``, split on ``'; '`` (``person`` -> ``people``,
  COCO-Object's background line without ``bed``); ADE-847 and PC-459, which v1 does not ship, from
  ``CorrCLIPv2/configs`` of the same commit;
* ``clearclip``: mc-lan/ClearCLIP, split on ``','`` (line 0 of VOC21 / COCO-Object is the word ``background``).

The eight benchmarks have a file in every variant; ADE-847 and PC-459 only in ``proxyclip`` and ``corrclip``
(the anchors that ship them). Vocabularies that belong to no dataset live in :data:`STANDALONE`: the
release's 303-class union (``union303``: yhflq/S2c2seg @ e0f0d6f ``configs/cls_union.txt``, the vocabulary
of its efficiency suite), read as variant ``release``.

The variants move the numbers (separator, synonyms, ``person``/``people``, background words), so every run
records which one it used (``Vocabulary.variant``).
"""
from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from .vocab import Vocabulary

__all__ = ["NAME_VARIANTS", "PARTIAL", "STANDALONE", "name_file", "packaged_variants", "vocabulary"]

NAME_VARIANTS: dict[str, str] = {"sclip": ", ", "proxyclip": "; ", "corrclip": "; ", "clearclip": ","}
"""Variant -> the separator its anchor splits lines on (the benchmarks' name files)."""
ANCHOR_SHARED_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("coco_object", "sclip"): ("bed",), ("coco_object", "proxyclip"): ("bed",)}
"""(dataset, variant) -> names the anchor's file puts in two classes (``bed`` among COCO-Object's background
words and as its own class; CorrCLIP dropped it from the background line). Kept: the published numbers used them."""

STANDALONE: dict[str, tuple[str, str]] = {"union303": ("release", "; ")}
"""Vocabulary key that is no dataset -> (its only variant, the separator its source splits lines on).
``union303``: the release's ``bench_efficiency.py`` keeps ``line.split('; ')[0]``; the file has no ``'; '``."""

PARTIAL: dict[str, tuple[str, ...]] = {"ade847": ("corrclip", "proxyclip"), "context459": ("corrclip", "proxyclip")}
"""Datasets whose name file only some anchors ship -> those variants; every other dataset has all four."""


def packaged_variants(key: str) -> list[str]:
    """The variants with a packaged name file for a dataset key or a :data:`STANDALONE` key (sorted)."""
    if key in STANDALONE:
        return [STANDALONE[key][0]]
    from .datasets import DATASETS

    if key not in DATASETS:
        raise ValueError(f"unknown dataset {key!r}; known: {sorted(DATASETS)} (and the standalone vocabularies "
                         f"{sorted(STANDALONE)})")
    return list(PARTIAL.get(key, sorted(NAME_VARIANTS)))


def _separator(key: str, variant: str) -> str:
    """The separator of ``key`` in ``variant``; raises naming the variants that exist when there is no file."""
    if key not in STANDALONE and variant not in NAME_VARIANTS:
        raise ValueError(f"unknown name-file variant {variant!r}; known: {sorted(NAME_VARIANTS)}")
    have = packaged_variants(key)
    if variant not in have:
        calls = " or ".join(f"vocabulary({key!r}, {v!r})" for v in have)
        raise ValueError(f"no {variant!r} name file is packaged for {key!r} (its source ships none); packaged "
                         f"variants: {have} (use {calls})")
    return STANDALONE[key][1] if key in STANDALONE else NAME_VARIANTS[variant]


def name_file(key: str, variant: str = "sclip") -> Path:
    """Path of the packaged name file of ``key`` (a dataset or :data:`STANDALONE` key) in ``variant``."""
    _separator(key, variant)
    with as_file(files(__package__) / "names" / variant / f"cls_{key}.txt") as path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"packaged name file missing: {path} (is the s2c2seg install complete? "
                                    f"package data s2c2seg/data/names/*/*.txt must be installed)")
        return Path(path)


def vocabulary(key: str, variant: str = "sclip") -> Vocabulary:
    """The vocabulary of a benchmark as the anchor of ``variant`` reads it (its separator, its synonyms);
    ``vocabulary("union303", "release")`` for the release's 303-class union.

    A user's own names go through :class:`Vocabulary` directly (``Vocabulary.from_file(path, sep)`` or
    ``Vocabulary.from_names([...])``).
    """
    sep = _separator(key, variant)
    return Vocabulary.from_file(name_file(key, variant), sep=sep, variant=variant,
                                shared=ANCHOR_SHARED_NAMES.get((key, variant), ()))
