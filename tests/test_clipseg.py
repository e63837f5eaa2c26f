"""CLIPSeg encode-once equals transformers' forward with the image repeated; offline tokenizer equals open_clip's."""
import time

import numpy as np
import pytest
import torch

from s2c2seg.models.clipseg import ClipSeg, ClipSegSettings, build_clip_tokenizer_dir, tiny_clipseg_config
from s2c2seg.models.offline import ModelUnavailableError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("clipseg_cache")


@pytest.fixture(scope="module")
def clipseg(cache):
    return ClipSeg(config=tiny_clipseg_config(), cache_dir=cache)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)


QUERIES = ["cat", "a dog", "traffic light", "sky", "potted plant"]


def test_encode_once_equals_forward_repeated(clipseg, image):
    fast = clipseg(image, QUERIES)
    ref = clipseg.naive_forward(image, QUERIES)
    assert fast.shape == (5, 352, 352) and fast.dtype == torch.float32
    assert (fast - ref).abs().max().item() <= 1e-5
    # the logits themselves (not only the squashed sigmoid) agree, and they vary across queries and pixels
    acts = clipseg.encode_image(clipseg.preprocess(image))
    logits = clipseg.decode(acts, clipseg.text_embeddings(QUERIES))
    assert logits.std() > 1e-3 and (logits[0] - logits[1]).abs().max() > 1e-4
    assert torch.allclose(logits.sigmoid(), ref, atol=1e-5)


def test_decoder_chunking_is_exact(cache, image):
    one = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache)
    chunked = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache,
                      settings=ClipSegSettings(decoder_chunk=2, text_chunk=3))
    a, b = one(image, QUERIES), chunked(image, QUERIES)
    assert (a - b).abs().max().item() <= 1e-4  # different text batch shapes: float rounding only
    assert chunked.text_calls == 2


def test_text_memo_and_synonyms(clipseg, image):
    clipseg.text_embeddings(["zebra", "horse"])
    calls = clipseg.text_calls
    e = clipseg.text_embeddings(["horse", "zebra", "horse"])
    assert clipseg.text_calls == calls and e.shape == (3, 24)
    assert torch.equal(e[0], e[2])


def test_template_prompt_option(cache, image):
    cs = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache,
                 settings=ClipSegSettings(prompt="templates", templates="simple_imagenet"))
    e = cs.text_embeddings(["cat"])
    from open_clip import zero_shot_metadata as zsm

    prompts = [t("cat") for t in zsm.SIMPLE_IMAGENET_TEMPLATES]
    tok = cs.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = cs.model.clip.get_text_features(**tok).pooler_output.mean(0)
    assert torch.allclose(e[0], ref, atol=1e-5)
    assert cs(image, ["cat"]).shape == (1, 352, 352)


def test_preprocess_matches_processor_rule(clipseg, image):
    from PIL import Image

    px = clipseg.preprocess(image)
    ref = np.asarray(Image.fromarray(image).resize((352, 352), Image.BILINEAR), np.float32) / 255.0
    ref = (ref - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    assert px.shape == (1, 3, 352, 352)
    assert np.abs(px[0].permute(1, 2, 0).numpy() - ref).max() < 1e-5


def test_tokenizer_ids_equal_open_clip(cache):
    import open_clip
    from transformers import CLIPTokenizer

    hf = CLIPTokenizer.from_pretrained(str(build_clip_tokenizer_dir(cache / "clip_bpe_tokenizer")))
    assert len(hf) == 49408
    oc = open_clip.get_tokenizer("ViT-B-16")
    prompts = ["a photo of a cat.", "Traffic-Light!!", "potted plant, tv monitor", "ÉCOLE naïve café",
               "a bad photo of the   aeroplane.", "rock-climbing; 2 people @ the beach", "tvmonitor"]
    for p, row in zip(prompts, oc(prompts)):
        assert hf(p)["input_ids"] == row[row != 0].tolist(), p


def test_bad_input(clipseg, image):
    with pytest.raises(ValueError, match="queries"):
        clipseg(image, [])
    with pytest.raises(ValueError, match="empty name"):
        clipseg(image, ["cat", " "])
    with pytest.raises(ValueError, match="uint8"):
        clipseg(image.astype(np.float32), ["cat"])
    with pytest.raises(ValueError, match="prompt"):
        ClipSeg(config=tiny_clipseg_config(), settings=ClipSegSettings(prompt="fancy"))


def test_pretrained_fails_fast_offline():
    t = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="CIDAS/clipseg-rd64-refined.*HF_HOME"):
        ClipSeg("CIDAS/clipseg-rd64-refined")
    assert time.perf_counter() - t < 60  # generous bound; fails in well under a second offline


def test_truncated_vision_tower_equals_hidden_states(clipseg, image):
    px = clipseg.preprocess(image)
    with torch.no_grad():
        full = clipseg.model.clip.vision_model(px, output_hidden_states=True, interpolate_pos_encoding=True)
    acts = clipseg.encode_image(px)
    for a, i in zip(acts, clipseg.model.extract_layers):
        assert torch.allclose(a, full.hidden_states[i + 1], atol=1e-6)


def test_preprocess_is_the_processors_pil_path(clipseg):
    # rd64-refined's processor config: ViTImageProcessor, 352 x 352, resample BILINEAR (2), 1/255, ImageNet
    # mean/std. transformers 5's default (fast) class resizes with torchvision; the release (transformers
    # 4.37) ran the PIL path, which transformers 5 keeps as ViTImageProcessorPil.
    from PIL import Image
    from transformers import ViTImageProcessorPil

    img = np.random.default_rng(1).integers(0, 256, (336, 336, 3), dtype=np.uint8)
    proc = ViTImageProcessorPil(size={"height": 352, "width": 352}, resample=Image.BILINEAR, do_rescale=True,
                                rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                                image_std=[0.229, 0.224, 0.225])
    ref = proc(images=[Image.fromarray(img)], return_tensors="pt")["pixel_values"]
    assert ref.shape == (1, 3, 352, 352)
    assert (clipseg.preprocess(img) - ref).abs().max() < 1e-5


def test_window_uint8_truncates():
    from s2c2seg.models.clipseg import window_uint8

    mean, std = (0.5, 0.25, 0.0), (0.5, 0.5, 1.0)
    # channel 0: 0.5 * x + 0.5 ; x = 0.99 -> 0.995 -> 253.725 -> 253 (rounding would give 254)
    # channel 1: clip below 0 -> 0 ; channel 2: 1.5 clipped to 1 -> 255
    w = torch.tensor([[[0.99]], [[-1.0]], [[1.5]]])
    assert window_uint8(w, mean, std).tolist() == [[[253, 0, 255]]]
    with pytest.raises(ValueError, match="window"):
        window_uint8(torch.zeros(1, 3, 4, 4), mean, std)


def test_local_text_template_is_unnormalised_mean_of_80(clipseg, image):
    from open_clip import zero_shot_metadata as zsm

    e = clipseg.text_embeddings(["cat", "sky"], "templates")
    prompts = [t("sky") for t in zsm.OPENAI_IMAGENET_TEMPLATES]
    assert len(prompts) == 80
    tok = clipseg.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = clipseg.model.clip.get_text_features(**tok).pooler_output.mean(0)
    assert torch.allclose(e[1], ref, atol=1e-5)
    plain = clipseg.text_embeddings(["sky"], "raw")
    assert (plain[0] - e[1]).abs().max() > 1e-4               # memo keyed on the prompt kind too
    window = torch.randn(3, 40, 50)
    maps = clipseg.window_maps(window, ["cat", "sky"], mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28),
                               local_text="template")
    assert maps.shape == (2, 40, 50) and 0 <= maps.min() and maps.max() <= 1
    with pytest.raises(ValueError, match="local_text"):
        clipseg.window_maps(window, ["cat"], mean=(0, 0, 0), std=(1, 1, 1), local_text="raw")


def test_window_template_text_is_the_releases_80_whatever_the_settings(clipseg, cache):
    simple = ClipSeg(config=tiny_clipseg_config(), cache_dir=cache,
                     settings=ClipSegSettings(prompt="templates", templates="simple_imagenet"))
    window = torch.randn(3, 30, 30)
    kw = dict(mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), local_text="template")
    assert torch.allclose(simple.window_maps(window, ["cat"], **kw), clipseg.window_maps(window, ["cat"], **kw),
                          atol=1e-6)                                      # same seed, same weights: openai's 80
    assert (simple.text_embeddings(["cat"]) - simple.text_embeddings(["cat"], "templates", "openai_imagenet")
            ).abs().max() > 1e-4
