"""Packaged name files: class / query counts per variant, the anchors' quirks, user vocabularies."""
import hashlib

import pytest

from s2c2seg.data import DATASETS, NAME_VARIANTS, Vocabulary, name_file, vocabulary
from s2c2seg.data.names import packaged_variants

# (classes, queries) per dataset and variant, counted on the anchors' files (anchors.md §2.2).
COUNTS = {
    "voc21": {"sclip": (21, 56), "proxyclip": (21, 46), "corrclip": (21, 46), "clearclip": (21, 21)},
    "voc20": {"sclip": (20, 30), "proxyclip": (20, 20), "corrclip": (20, 20), "clearclip": (20, 20)},
    "context60": {v: (60, 60) for v in NAME_VARIANTS},
    "context59": {v: (59, 59) for v in NAME_VARIANTS},
    "coco_object": {"sclip": (81, 113), "proxyclip": (81, 97), "corrclip": (81, 96), "clearclip": (81, 81)},
    "coco_stuff164k": {v: (171, 171) for v in NAME_VARIANTS},
    "ade20k": {v: (150, 150) for v in NAME_VARIANTS},
    "cityscapes": {v: (19, 19) for v in NAME_VARIANTS},
}

# First 16 hex digits of the sha256 of each packaged file: byte copies of the anchors' configs/cls_*.txt
# (SCLIP b56bd30, ProxyCLIP e7b767f, CorrCLIP 103bc18 CorrCLIPv1, ClearCLIP main). Guards against edits.
SHA256 = {
    "clearclip/cls_ade20k.txt": "e53ded02c488bdb9", "clearclip/cls_cityscapes.txt": "6f6782fc1bf92bfd",
    "clearclip/cls_coco_object.txt": "1f17b53017e44225", "clearclip/cls_coco_stuff164k.txt": "fb98709b9ab1baff",
    "clearclip/cls_context59.txt": "cd808465f06a1616", "clearclip/cls_context60.txt": "5e620446a8699f29",
    "clearclip/cls_voc20.txt": "6b9a85ffb907e34a", "clearclip/cls_voc21.txt": "265d9ede93be451d",
    "corrclip/cls_ade20k.txt": "09ac710c57fc6591", "corrclip/cls_cityscapes.txt": "8dba4f1e3eeefc37",
    "corrclip/cls_coco_object.txt": "6d0d48b097983623", "corrclip/cls_coco_stuff164k.txt": "c39fe2dd982fa5da",
    "corrclip/cls_context59.txt": "106c0f1f2c9c4fac", "corrclip/cls_context60.txt": "5666dc439704e29a",
    "corrclip/cls_voc20.txt": "dd9755431039265b", "corrclip/cls_voc21.txt": "9ea46c7f20847255",
    "proxyclip/cls_ade20k.txt": "e53ded02c488bdb9", "proxyclip/cls_cityscapes.txt": "6f6782fc1bf92bfd",
    "proxyclip/cls_coco_object.txt": "87b6d3e1d3adf520", "proxyclip/cls_coco_stuff164k.txt": "fb98709b9ab1baff",
    "proxyclip/cls_context59.txt": "cd808465f06a1616", "proxyclip/cls_context60.txt": "5e620446a8699f29",
    "proxyclip/cls_voc20.txt": "6b9a85ffb907e34a", "proxyclip/cls_voc21.txt": "6a194e9134d44459",
    "sclip/cls_ade20k.txt": "e53ded02c488bdb9", "sclip/cls_cityscapes.txt": "6f6782fc1bf92bfd",
    "sclip/cls_coco_object.txt": "3475d03d61f85ce0", "sclip/cls_coco_stuff164k.txt": "fb98709b9ab1baff",
    "sclip/cls_context59.txt": "cd808465f06a1616", "sclip/cls_context60.txt": "5e620446a8699f29",
    "sclip/cls_voc20.txt": "c68f65a2b342397c", "sclip/cls_voc21.txt": "80e643a9a1439668",
}

BG26 = ("sky wall tree wood grass road sea river mountain sands desk bed building cloud lamp door window wardrobe "
        "ceiling shelf curtain stair floor hill rail fence").split()


@pytest.mark.parametrize("dataset", sorted(COUNTS))
@pytest.mark.parametrize("variant", sorted(NAME_VARIANTS))
def test_counts_match_spec_and_anchors(dataset, variant):
    vocab = vocabulary(dataset, variant)
    assert (vocab.num_classes, len(vocab.queries)) == COUNTS[dataset][variant]
    assert vocab.num_classes == DATASETS[dataset].num_classes
    assert vocab.variant == variant
    assert vocab.query_to_class.tolist() == [i for i, c in enumerate(vocab.classes) for _ in c]


@pytest.mark.parametrize("rel", sorted(SHA256))
def test_files_are_the_anchors_bytes(rel):
    variant, fname = rel.split("/")
    path = name_file(fname[len("cls_"):-len(".txt")], variant)
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == SHA256[rel]


def test_every_dataset_and_variant_has_a_file():
    # the 8 benchmarks; ADE-847 and PC-459 (two variants only): tests/test_large_vocab_datasets.py
    assert {f"{v}/cls_{d}.txt" for v in NAME_VARIANTS for d in COUNTS} == set(SHA256)


def test_sclip_voc21_background_words_and_synonyms():
    v = vocabulary("voc21", "sclip")
    assert list(v.classes[0]) == BG26
    assert v.classes[15][:2] == ("person", "person in shirt") and len(v.classes[15]) == 7
    assert v.classes[20] == ("television monitor", "tv monitor", "monitor", "television", "screen")
    assert "ship" in v.names and "table" in v.names


def test_proxyclip_and_corrclip_differ_as_the_anchors_do():
    p, c = vocabulary("voc21", "proxyclip"), vocabulary("voc21", "corrclip")
    assert list(p.classes[0]) == BG26 and p.classes[15] == ("person",) and p.classes[20] == ("tvmonitor",)
    assert c.classes[15] == ("people",) and "person" not in c.queries
    po, co, so = (vocabulary("coco_object", v) for v in ("proxyclip", "corrclip", "sclip"))
    assert len(so.classes[0]) == 26 and so.classes[1][-1] == "body"
    assert len(po.classes[0]) == 17 and "bed" in po.classes[0]
    assert len(co.classes[0]) == 16 and "bed" not in co.classes[0] and co.classes[1] == ("people",)
    for d in ("ade20k", "cityscapes", "coco_stuff164k", "context59", "context60", "voc20"):
        assert "people" in vocabulary(d, "corrclip").queries and "person" not in vocabulary(d, "corrclip").queries
        assert "person" in vocabulary(d, "proxyclip").queries


def test_single_name_quirks_kept():
    assert "chestofdrawers" in vocabulary("ade20k", "sclip").queries
    assert {"trafficlight", "trafficsign"} <= set(vocabulary("cityscapes", "proxyclip").queries)
    assert "building-other" in vocabulary("coco_stuff164k", "sclip").queries
    assert vocabulary("context60", "sclip").classes[0] == ("background",)
    assert vocabulary("voc21", "clearclip").classes[0] == ("background",)


def test_separator_matters():
    # reading SCLIP's file with the ProxyCLIP separator would glue the synonyms into one query
    from s2c2seg.data.names import name_file as nf
    wrong = Vocabulary.from_file(nf("voc21", "sclip"), sep="; ")
    assert len(wrong.queries) == 21 and ", " in wrong.classes[0][0]


def test_user_file_and_list(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("background; sky\ncat\ndog; puppy\n", encoding="utf-8")
    v = Vocabulary.from_file(f, sep="; ")
    assert v.num_classes == 3 and v.queries == ["background", "sky", "cat", "dog", "puppy"]
    assert v.variant == "mine"
    w = Vocabulary.from_names(["cat", ["dog", "puppy"]])
    assert w.num_classes == 2 and w.query_to_class.tolist() == [0, 1, 1]


def test_unknown_dataset_or_variant_raises():
    with pytest.raises(ValueError, match="nope"):
        vocabulary("nope", "sclip")
    with pytest.raises(ValueError, match="maskclip"):
        vocabulary("voc21", "maskclip")


# ---------------------------------------------------------------------------------------------- checks
def test_a_name_in_two_classes_is_an_error_naming_both_lines(tmp_path):
    f = tmp_path / "dup.txt"
    f.write_text("background; sky\ncat\n\ndog; puppy\nhound; dog\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Vocabulary.from_file(f, sep="; ")
    msg = str(err.value)
    # file lines 4 and 5 (the empty line 3 is skipped but still counted)
    assert "'dog'" in msg and f"{f} line 4" in msg and f"{f} line 5" in msg and "'hound'" in msg
    with pytest.raises(ValueError, match=r"'cat' is in two classes, class 0 \('cat'\) and class 2"):
        Vocabulary.from_names(["cat", "dog", ["kitty", "cat"]])


def test_a_repeated_synonym_warns_and_is_kept(tmp_path):
    f = tmp_path / "rep.txt"
    f.write_text("cat; kitty; cat\ndog\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=rf"{f} line 1 .*'cat'"):
        v = Vocabulary.from_file(f, sep="; ")
    assert v.queries == ["cat", "kitty", "cat", "dog"] and v.query_to_class.tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize("text", ["cat\n; \n", "cat\ndog; \n", "cat\n \n", "; dog\n"])
def test_empty_names_and_lone_separators_stay_errors(tmp_path, text):
    f = tmp_path / "bad.txt"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2 has an empty name|line 1 has an empty name"):
        Vocabulary.from_file(f, sep="; ")


def test_shared_names_are_allowed_only_when_named():
    v = Vocabulary.from_names([["background", "bed"], "bed"], shared=["bed"])
    assert v.query_to_class.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="'sky' is in two classes"):
        Vocabulary.from_names([["background", "bed", "sky"], "bed", "sky"], shared=["bed"])


def test_every_packaged_file_loads_without_warnings(recwarn):
    """Only SCLIP's and ProxyCLIP's COCO-Object files put a name in two classes ('bed'), as the anchors ship them."""
    shared = {}
    for d in DATASETS:
        for variant in packaged_variants(d):
            v = vocabulary(d, variant)
            if v.shared:
                shared[(d, variant)] = sorted(v.shared)
    assert shared == {("coco_object", "sclip"): ["bed"], ("coco_object", "proxyclip"): ["bed"]}
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    so = vocabulary("coco_object", "sclip")
    assert "bed" in so.classes[0] and so.classes[60] == ("bed",)
    with pytest.raises(ValueError, match="'bed' is in two classes"):  # the allowance is needed, not decoration
        Vocabulary.from_file(name_file("coco_object", "sclip"), sep=", ")
