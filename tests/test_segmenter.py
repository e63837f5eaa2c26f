"""Segmenter with tiny random models: bundle shapes, sliding window vs whole image, global views, labels, errors."""
import dataclasses
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2c2seg.data import Protocol, Sample, Vocabulary
from s2c2seg.models.clipseg import ClipSeg, ClipSegSettings, tiny_clipseg_config
from s2c2seg.models.offline import ModelUnavailableError
from s2c2seg.segmenter import RANDOM_LABEL, Segmenter, SegmenterConfig, mean_direction
from s2c2seg.factories import build_backend
from s2c2seg.slide import slide_average, slide_boxes

PROTO = Protocol(short_side=64, crop=32, stride=16)
VOCAB = Vocabulary.from_names(["cat", ["dog", "puppy"], "sky"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("seg_cache")


SMALL = ClipSegSettings(input_size=96)  # CLIPSeg at 96 x 96 instead of 352 keeps the tests fast on 2 cores


@pytest.fixture(scope="module")
def seg(cache):
    seg = build_backend("random", baseline="sclip", size="tiny", cache_dir=cache)
    seg.clipseg = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache, settings=SMALL)
    return seg


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
    return Sample("img0", img, regions=rng.integers(0, 4, (45, 60)).astype(np.int32))


def test_bundle_shapes_and_dtypes(seg, sample):
    b = seg.encode(sample, VOCAB, PROTO)
    assert b.resized_hw.tolist() == [64, 85] and b.image_hw.tolist() == [45, 60]
    assert b.crop_boxes.tolist() == slide_boxes(64, 85, 32, 16).tolist()
    n = len(b.crop_boxes)
    assert b.dense_logits.shape == (n, 4, 4, 4) and b.dense_logits.dtype == torch.float32
    assert b.global_sim.shape == (4,) and b.global_sim.dtype == torch.float32
    assert b.clipseg_mean.shape == (4,) and b.clipseg_maps.shape == (4, 88, 88)
    assert b.clipseg_maps.dtype == torch.float16
    assert b.query_to_class.tolist() == [0, 1, 1, 2]
    assert torch.equal(b.regions, torch.from_numpy(sample.regions))
    assert b.dense_logits.abs().max() <= 1 + 1e-5 and b.global_sim.abs().max() <= 1 + 1e-5
    assert b.meta["image_id"] == "img0" and b.meta["label"] == RANDOM_LABEL
    assert b.nbytes() == sum(t.numel() * t.element_size() for t in b.tensors().values())


def test_dense_logits_are_cosines_of_the_baseline(seg, sample):
    b = seg.encode(sample, VOCAB, PROTO)
    image = seg.preprocess(sample.image, PROTO)
    text = seg.text.encode(VOCAB)
    y1, y2, x1, x2 = b.crop_boxes[3].tolist()
    out = seg.baseline(seg.clip, image[None, :, y1:y2, x1:x2], return_global=True)
    ref = torch.einsum("hwd,qd->qhw", out.patch[0], text)
    assert torch.allclose(b.dense_logits[3], ref, atol=1e-5)
    # global (crops view): mean direction of every crop's vanilla embedding
    crops = torch.stack([image[:, a:b_, c:d] for a, b_, c, d in b.crop_boxes.tolist()])
    glob = mean_direction(seg.baseline(seg.clip, crops).global_)
    assert torch.allclose(b.global_sim, text @ glob, atol=1e-5)
    # CLIPSeg: mean of the full-resolution maps; stored maps are their resize
    maps = seg.clipseg(sample.image, VOCAB.queries)
    assert torch.allclose(b.clipseg_mean, maps.mean((1, 2)), atol=1e-6)
    small = F.interpolate(maps[None], size=(88, 88), mode="bilinear", antialias=True)[0]
    assert (b.clipseg_maps.float() - small).abs().max() < 1e-3


def test_sliding_window_equals_whole_image_when_crop_covers_it(seg, sample):
    whole = seg.encode(sample, VOCAB, PROTO.replace(crop=0))
    big = seg.encode(sample, VOCAB, PROTO.replace(crop=128))
    assert whole.crop_boxes.tolist() == big.crop_boxes.tolist() == [[0, 64, 0, 85]]
    assert torch.allclose(whole.dense_logits, big.dense_logits, atol=1e-6)
    full = slide_average(big.dense_logits, big.crop_boxes, (64, 85))
    ref = F.interpolate(whole.dense_logits, size=(64, 85), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(full, ref, atol=1e-6)


def test_global_view_image(seg, sample):
    other = Segmenter(seg.baseline, seg.clip, seg.clipseg, seg.text, config=SegmenterConfig(global_view="image"))
    b = other.encode(sample, VOCAB, PROTO)
    image = seg.preprocess(sample.image, PROTO)
    x = F.interpolate(image[None], size=(56, 56), mode="bilinear", antialias=True)
    with torch.no_grad():
        g = F.normalize(seg.clip.model.encode_image(x), dim=-1)[0]
    assert torch.allclose(b.global_sim, seg.text.encode(VOCAB) @ g, atol=1e-5)
    assert other.describe()["config"]["global_view"] == "image"


def test_float16_dense_option(seg, sample):
    half = Segmenter(seg.baseline, seg.clip, seg.clipseg, seg.text, config=SegmenterConfig(dense_dtype="float16"))
    b = half.encode(sample, VOCAB, PROTO)
    assert b.dense_logits.dtype == torch.float16


def test_large_vocabulary_is_chunked(seg, sample, cache):
    names = [f"thing {i}" for i in range(7)]
    vocab = Vocabulary.from_names(names)
    chunked = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache,
                      settings=dataclasses.replace(SMALL, decoder_chunk=3, text_chunk=4))
    a = seg.encode(sample, vocab, PROTO)
    b = Segmenter(seg.baseline, seg.clip, chunked, seg.text, config=SegmenterConfig(crop_batch=2)).encode(
        sample, vocab, PROTO)
    assert chunked.text_calls == 2
    assert torch.allclose(a.dense_logits, b.dense_logits, atol=1e-5)
    assert torch.allclose(a.global_sim, b.global_sim, atol=1e-5)
    assert torch.allclose(a.clipseg_mean, b.clipseg_mean, atol=1e-4)


def test_describe_labels(seg):
    d = seg.describe()
    assert d["backend"] == "random" and d["label"] == "RANDOM WEIGHTS" and d["baseline"] == "sclip"
    clip = dataclasses.replace(seg.clip, pretrained="openai")
    clipseg = ClipSeg.__new__(ClipSeg)
    clipseg.__dict__.update(seg.clipseg.__dict__, weights="pretrained")
    text = seg.text
    fake = Segmenter(seg.baseline, clip, clipseg, type("T", (), {"clip": clip, "template_id": "x"})())
    assert fake.describe()["label"] == "" and fake.describe()["backend"] == "pretrained"
    del text


def test_bad_input(seg, sample):
    with pytest.raises(ValueError, match="patch size"):
        seg.encode(Sample("tiny", np.zeros((5, 40, 3), np.uint8)), VOCAB, PROTO)
    with pytest.raises(ValueError, match="vocab"):
        seg.encode(sample, ["cat"], PROTO)
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.from_names([])
    with pytest.raises(ValueError, match="global_view"):
        SegmenterConfig(global_view="both")
    with pytest.raises(ValueError, match="name"):
        build_backend("bogus")
    with pytest.raises(ValueError, match="tiny"):
        build_backend("pretrained", size="tiny")


def test_vfm_baseline_needs_vfm(seg):
    from s2c2seg.models.baselines import make_baseline

    with pytest.raises(ValueError, match="vfm"):
        Segmenter(make_baseline("proxyclip"), seg.clip, seg.clipseg, seg.text)


def test_proxyclip_tiny(cache, sample):
    seg = build_backend("random", baseline="proxyclip", size="tiny", cache_dir=cache)
    b = seg.encode(sample, VOCAB, PROTO)
    assert b.window_pad.tolist() == [12, 12, 12, 12]  # ProxyCLIP pads each 32 x 32 window to 56 x 56
    assert b.dense_logits.shape[-2:] == (14, 14)  # the VFM grid (patch 4 on the padded 56 window)
    assert seg.describe()["vfm_weights"] == "random"


@pytest.fixture(scope="module")
def proxy(cache):
    seg = build_backend("random", baseline="proxyclip", size="tiny", cache_dir=cache)
    seg.clipseg = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache, settings=SMALL)
    return seg


def _padded_windows(seg, sample, b):
    image = seg.preprocess(sample.image, PROTO)
    t, bo, left, r = b.window_pad.tolist()
    return [F.pad(image[:, y1:y2, x1:x2], (left, r, t, bo)) for y1, y2, x1, x2 in b.crop_boxes.tolist()]


def test_release_window_fields(proxy, sample):
    b = proxy.encode(sample, VOCAB, PROTO)
    n = len(b.crop_boxes)
    assert b.window_local.shape == (n, 4, 56, 56) and b.window_local.dtype == torch.float32
    assert b.window_global.shape == (n, 4) and b.input_image.shape == (3, 64, 85)
    assert b.meta["storage"] == "exact" and b.meta["local_text"] == "plain" and b.meta["precision"] == "fp32"
    assert torch.equal(b.input_image, proxy.preprocess(sample.image, PROTO))
    d = proxy.describe()
    assert d["precision"] == "fp32" and d["config"]["local_text"] == "plain"
    assert d["storage"] == "auto"  # chosen per image by the budget's rule: exact at this size (the bundle's label)
    # the padding is zeros in normalised space, i.e. what the baseline saw: dense logits of the padded window
    w = _padded_windows(proxy, sample, b)[2]
    text = proxy.text.encode(VOCAB)
    out = proxy.baseline(proxy.clip, w[None], vfm=proxy.vfm)
    assert torch.allclose(b.dense_logits[2], torch.einsum("hwd,qd->qhw", out.patch[0], text), atol=1e-5)


def test_window_global_equals_open_clip_encode_image(proxy, sample):
    # the padded 56 x 56 window is the tiny CLIP's native size: encode_image applies as is (release return_cls)
    b = proxy.encode(sample, VOCAB, PROTO)
    text = proxy.text.encode(VOCAB).double()
    with torch.no_grad():
        for n, w in enumerate(_padded_windows(proxy, sample, b)):
            g = F.normalize(proxy.clip.model.encode_image(w[None]).double(), dim=-1)[0]
            assert (b.window_global[n].double() - text @ g).abs().max() < 1e-5
    assert b.window_global.std() > 1e-4


def test_window_global_off_native_size_with_the_same_pos_embed(seg, sample):
    # SCLIP, 32 x 32 windows (4 x 4 grid, not native 7 x 7): encode_image of a model copy whose table is
    # the interpolated one (the same positions the shared trunk uses)
    import copy

    from s2c2seg.models.clip import interpolate_pos_embed

    b = seg.encode(sample, VOCAB, PROTO)
    assert b.window_pad.tolist() == [0, 0, 0, 0]
    model = copy.deepcopy(seg.clip.model)
    model.visual.positional_embedding = torch.nn.Parameter(
        interpolate_pos_embed(model.visual.positional_embedding, (4, 4)), requires_grad=False)
    image = seg.preprocess(sample.image, PROTO)
    text = seg.text.encode(VOCAB)
    with torch.no_grad():
        for n, (y1, y2, x1, x2) in enumerate(b.crop_boxes.tolist()):
            g = F.normalize(model.encode_image(image[None, :, y1:y2, x1:x2]), dim=-1)[0]
            assert torch.allclose(b.window_global[n], text @ g, atol=1e-5)


def test_window_local_equals_transformers_forward_one_query_at_a_time(proxy, sample):
    from PIL import Image

    from s2c2seg.models.clipseg import window_uint8

    b = proxy.encode(sample, VOCAB, PROTO)
    cs = proxy.clipseg
    for n in (0, len(b.crop_boxes) - 1):
        w = _padded_windows(proxy, sample, b)[n]
        # the release's pixel path, by hand: un-normalise, clip, x255, truncate; PIL bilinear 96; /255; ImageNet
        x = (w.permute(1, 2, 0).numpy() * np.array(proxy.clip.std, np.float32) + np.array(proxy.clip.mean, np.float32))
        u8 = (np.clip(x, 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(window_uint8(w, proxy.clip.mean, proxy.clip.std), u8)
        px = np.asarray(Image.fromarray(u8).resize((96, 96), Image.BILINEAR), np.float32) / 255.0
        px = (px - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        px = torch.from_numpy(px).permute(2, 0, 1)[None]
        for qi, query in enumerate(VOCAB.queries):
            tok = cs.tokenizer([query], padding=True, return_tensors="pt")
            with torch.no_grad():
                out = cs.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=px,
                               interpolate_pos_encoding=True)
            logits = out.logits.reshape(1, 1, 96, 96)
            ref = F.interpolate(logits.sigmoid(), size=(56, 56), mode="bilinear", align_corners=False)[0, 0]
            assert (b.window_local[n, qi] - ref).abs().max() < 5e-5, (n, query)  # fp32 rounding: text batch shape
    assert b.window_local.std() > 1e-4


def test_window_storage_local_text_and_precision_options(proxy, sample):
    exact = proxy.encode(sample, VOCAB, PROTO)
    half = Segmenter(proxy.baseline, proxy.clip, proxy.clipseg, proxy.text, vfm=proxy.vfm,
                     config=SegmenterConfig(window_storage="float16")).encode(sample, VOCAB, PROTO)
    assert half.window_local.dtype == torch.float16 and half.meta["storage"] == "compact-float16"
    assert (half.window_local.float() - exact.window_local).abs().max() < 1e-3
    assert half.nbytes() < exact.nbytes()
    tmpl = Segmenter(proxy.baseline, proxy.clip, proxy.clipseg, proxy.text, vfm=proxy.vfm,
                     config=SegmenterConfig(local_text="template"))
    t = tmpl.encode(sample, VOCAB, PROTO)
    assert t.meta["local_text"] == "template" and tmpl.describe()["config"]["local_text"] == "template"
    assert (t.window_local - exact.window_local).abs().max() > 1e-5
    assert torch.equal(t.dense_logits, exact.dense_logits)
    off = Segmenter(proxy.baseline, proxy.clip, proxy.clipseg, proxy.text, vfm=proxy.vfm,
                    config=SegmenterConfig(window_sources=False)).encode(sample, VOCAB, PROTO)
    assert off.window_local is None and off.window_global is None and "storage" not in off.meta
    assert torch.equal(off.dense_logits, exact.dense_logits)
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Segmenter(proxy.baseline, proxy.clip, proxy.clipseg, proxy.text, vfm=proxy.vfm,
                  config=SegmenterConfig(precision="fp16"))
    for bad in ({"local_text": "fancy"}, {"window_storage": "int8"}, {"precision": "bf16"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SegmenterConfig(**bad)


def test_pretrained_fails_fast_offline():
    t = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="ViT-B-16|clipseg"):
        build_backend("pretrained")
    assert time.perf_counter() - t < 60


def test_sim_and_auto_backends():
    pytest.importorskip("s2c2seg.sim")
    sim = build_backend("sim")
    assert sim.describe()["label"] == "SIMULATED"
    with pytest.warns(RuntimeWarning, match="SIMULATED"):
        auto = build_backend("auto")
    assert auto.describe()["label"] == "SIMULATED"
