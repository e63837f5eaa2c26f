import numpy as np
import pytest
import torch

from s2c2seg.bundle import BundleError, FeatureBundle
from s2c2seg.data import Protocol, Sample, Vocabulary


def make_bundle(q=5, n=2, regions=False):
    g = torch.Generator().manual_seed(0)
    return FeatureBundle(
        dense_logits=torch.randn(n, q, 4, 4, generator=g),
        crop_boxes=torch.tensor([[0, 32, 0, 32], [0, 32, 16, 48]])[:n],
        resized_hw=torch.tensor([32, 48]),
        image_hw=torch.tensor([24, 36]),
        global_sim=torch.randn(q, generator=g),
        clipseg_mean=torch.rand(q, generator=g),
        clipseg_maps=torch.rand(q, 8, 8, generator=g).half(),
        query_to_class=torch.tensor([0, 0, 1, 2, 3])[:q],
        regions=torch.zeros(24, 36, dtype=torch.int32) if regions else None,
        meta={"key": "abc", "image_id": "x"},
    )


@pytest.mark.parametrize("regions", [False, True])
def test_roundtrip_is_exact(tmp_path, regions):
    b = make_bundle(regions=regions)
    b.save(tmp_path / "b.safetensors")
    c = FeatureBundle.load(tmp_path / "b.safetensors", expected_key="abc")
    for name, t in b.tensors().items():
        assert torch.equal(t, getattr(c, name)), name
    assert c.meta == b.meta
    assert (c.regions is None) == (not regions)
    assert b.nbytes() > 0 and b.num_classes == 4 and b.num_queries == 5


def test_wrong_key_and_truncation_detected(tmp_path):
    p = tmp_path / "b.safetensors"
    make_bundle().save(p)
    with pytest.raises(BundleError, match="key"):
        FeatureBundle.load(p, expected_key="other")
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(BundleError):
        FeatureBundle.load(p)


def test_inconsistent_shapes_and_nan_raise():
    b = make_bundle()
    with pytest.raises(BundleError, match="global_sim"):
        FeatureBundle(**{**b.tensors(), "global_sim": torch.zeros(3)})
    with pytest.raises(BundleError, match="NaN"):
        FeatureBundle(**{**b.tensors(), "global_sim": torch.full((5,), float("nan"))})


def with_windows(b: FeatureBundle, dtype=torch.float32, storage="exact") -> FeatureBundle:
    """``b`` plus the released pipeline's per-window fields: 2 windows of 32 x 32 padded by (2, 2, 1, 3)."""
    g = torch.Generator().manual_seed(1)
    n, q = b.dense_logits.shape[:2]
    return FeatureBundle(**b.tensors(), window_local=torch.rand(n, q, 36, 36, generator=g).to(dtype),
                         window_global=torch.randn(n, q, generator=g), window_pad=torch.tensor([2, 2, 1, 3]),
                         input_image=torch.randn(3, 32, 48, generator=g), meta={**b.meta, "storage": storage,
                                                                                "local_text": "plain"})


@pytest.mark.parametrize("dtype,storage", [(torch.float32, "exact"), (torch.float16, "compact-float16")])
def test_window_fields_roundtrip_and_bytes(tmp_path, dtype, storage):
    base = make_bundle()
    b = with_windows(base, dtype, storage)
    b.save(tmp_path / "w.safetensors")
    c = FeatureBundle.load(tmp_path / "w.safetensors", expected_key="abc")
    for name in ("window_local", "window_global", "window_pad", "input_image"):
        assert torch.equal(getattr(b, name), getattr(c, name)) and getattr(c, name).dtype == getattr(b, name).dtype
    assert c.meta["storage"] == storage and c.meta["local_text"] == "plain"
    extra = 2 * 5 * 36 * 36 * (4 if dtype == torch.float32 else 2) + 2 * 5 * 4 + 4 * 8 + 3 * 32 * 48 * 4
    assert b.nbytes() - base.nbytes() == extra


def test_bundle_without_window_fields_still_loads(tmp_path):
    base = make_bundle()
    base.save(tmp_path / "old.safetensors")                    # an old cache entry / another backend
    c = FeatureBundle.load(tmp_path / "old.safetensors")
    assert c.window_local is None and c.window_global is None and c.window_pad is None and c.input_image is None


def test_window_fields_validated():
    b = with_windows(make_bundle())
    t = b.tensors()
    with pytest.raises(BundleError, match="window_global"):
        FeatureBundle(**{**t, "window_global": torch.zeros(2, 4)}, meta=b.meta)
    with pytest.raises(BundleError, match="padded windows"):
        FeatureBundle(**{**t, "window_pad": torch.tensor([0, 0, 0, 0])}, meta=b.meta)
    with pytest.raises(BundleError, match="input_image"):
        FeatureBundle(**{**t, "input_image": torch.zeros(3, 30, 48)}, meta=b.meta)
    with pytest.raises(BundleError, match="storage"):
        FeatureBundle(**t, meta={**b.meta, "storage": "compact-float16"})
    with pytest.raises(BundleError, match="NaN"):
        FeatureBundle(**{**t, "window_local": torch.full_like(b.window_local, float("nan"))}, meta=b.meta)


def test_vocabulary_file_and_errors(tmp_path):
    f = tmp_path / "cls_x.txt"
    f.write_text("sky; wall\ncat\ndog\n")
    v = Vocabulary.from_file(f, sep="; ", variant="proxyclip")
    assert v.num_classes == 3 and v.queries == ["sky", "wall", "cat", "dog"]
    assert v.query_to_class.tolist() == [0, 0, 1, 2] and v.names == ["sky", "cat", "dog"]
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.from_names([])
    with pytest.raises(ValueError, match="empty name"):
        Vocabulary.from_names(["cat", " "])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Vocabulary.from_file(tmp_path / "missing.txt")


def test_sample_and_protocol_validation():
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="label"):
        Sample("a", img, label=np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="uint8"):
        Sample("a", img.astype(np.float32))
    p = Protocol().replace(prob_thd=0.2)
    assert p.to_json()["prob_thd"] == 0.2
    with pytest.raises(ValueError, match="nonsense"):
        Protocol().replace(nonsense=1)
