"""Text embeddings: templates from open_clip, cut context == 77 tokens, chunking, disk cache, bad input."""
import json

import pytest
import torch
import torch.nn.functional as F

from s2c2seg.data.vocab import Vocabulary
from s2c2seg.models import TextEncoder, load_clip, tiny_clip_config
from s2c2seg.models.text import CacheKeyError, encode_prompts, get_templates

VOCAB = Vocabulary.from_names([["person", "person in shirt", "a person in a red and white striped sweater!"],
                               "cat", ["tv monitor", "screen"], "sky"])


@pytest.fixture(scope="module")
def clip():
    h = load_clip("tiny", config=tiny_clip_config())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in h.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return h


def reference(clip, names, templates):
    """77-token encode_text per name, each prompt normalised, averaged, renormalised."""
    rows = []
    for n in names:
        tokens = clip.tokenizer([t.format(n) for t in templates])
        assert tokens.shape[1] == 77
        f = F.normalize(clip.model.encode_text(tokens), dim=-1)
        rows.append(F.normalize(f.mean(0), dim=-1))
    return torch.stack(rows)


def test_templates_are_open_clips():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    tid, fmts = get_templates("openai_imagenet")
    assert tid == "openai_imagenet" and len(fmts) == 80
    assert fmts == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert get_templates("raw")[1] == ("{}",)
    with pytest.raises(ValueError, match="templates"):
        get_templates("nope")
    with pytest.raises(ValueError, match="placeholder"):
        get_templates(["a photo"])


def test_cut_context_equals_77_tokens(clip):
    enc = TextEncoder(clip, batch_size=37)                                  # chunks mix lengths
    emb = enc.encode(VOCAB)
    ref = reference(clip, VOCAB.queries, enc.templates)
    assert emb.shape == (len(VOCAB.queries), 32) == (7, 32)
    assert (emb - ref).abs().max() <= 1e-5
    assert torch.allclose(emb.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert enc.calls == -(-len(VOCAB.queries) * 80 // 37)
    full = TextEncoder(clip, cut_context=False, batch_size=80).encode(VOCAB)
    assert (emb - full).abs().max() <= 1e-5


def test_encode_prompts_at_full_context_is_encode_text(clip):
    tokens = clip.tokenizer(["a photo of a cat.", "sky"])
    assert torch.allclose(encode_prompts(clip, tokens), clip.model.encode_text(tokens), atol=1e-6)


def test_cache_second_call_zero_encoder_calls(clip, tmp_path):
    first = TextEncoder(clip, cache_dir=tmp_path)
    a = first.encode(VOCAB)
    assert first.calls > 0
    files = list(tmp_path.glob("text_*.safetensors"))
    assert len(files) == 1
    second = TextEncoder(clip, cache_dir=tmp_path)
    b = second.encode(VOCAB)
    assert second.calls == 0 and torch.equal(a, b)
    calls = first.calls
    first.encode(VOCAB)                                                     # in-memory hit too
    assert first.calls == calls
    from safetensors import safe_open
    with safe_open(str(files[0]), framework="pt") as f:
        key = json.loads(f.metadata()["meta"])["key"]                        # format 2: key inside "meta"
    assert key["names"] == VOCAB.queries and key["templates"] == "openai_imagenet"
    assert key["model"] == clip.model_name and key["weights"] == "random"


def test_cache_keys_separate_names_and_templates(clip, tmp_path):
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path)
    enc.encode(["cat", "dog"])
    enc.encode(["dog", "cat"])                                              # order is part of the key
    TextEncoder(clip, templates="simple_imagenet", cache_dir=tmp_path).encode(["cat", "dog"])
    assert len(list(tmp_path.glob("text_*.safetensors"))) == 3


def test_cache_file_for_another_key_raises(clip, tmp_path):
    enc = TextEncoder(clip, templates="raw", cache_dir=tmp_path)
    enc.encode(["cat"])
    src = enc.cache_path(["cat"])
    src.replace(enc.cache_path(["dog"]))                                    # a file under the wrong name
    with pytest.raises(CacheKeyError, match="another key"):
        TextEncoder(clip, templates="raw", cache_dir=tmp_path).encode(["dog"])


def test_bad_vocabularies(clip):
    enc = TextEncoder(clip, templates="raw")
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(ValueError, match="empty"):
        enc.encode(["cat", "  "])
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.from_names([])
    with pytest.raises(ValueError, match="vocab"):
        enc.encode("cat")
    with pytest.raises(ValueError, match="ClipHandle"):
        TextEncoder(object())


def test_progress_bar_for_large_vocabularies(clip, capsys):
    enc = TextEncoder(clip, templates="raw", batch_size=4, progress=True)
    enc.encode([f"class {i}" for i in range(10)])
    assert "text embeddings" in capsys.readouterr().err
    assert enc.calls == 3


def test_interrupted_encode_resumes_from_its_parts(clip, tmp_path, monkeypatch):
    """Raise inside the encoder after k calls: the finished parts are on disk and only the rest is computed."""
    from s2c2seg.models import text

    names = [f"class {i}" for i in range(7)]
    whole = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "whole", batch_size=2, names_per_part=2)
    ref = whole.encode(names)
    assert whole.calls == 4  # 4 parts of <= 2 names, one call each

    real = text.encode_prompts
    calls = {"n": 0}

    def failing(handle, tokens):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("interrupted")
        return real(handle, tokens)

    monkeypatch.setattr(text, "encode_prompts", failing)
    first = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "c", batch_size=2, names_per_part=2)
    with pytest.raises(RuntimeError, match="interrupted"):
        first.encode(names)
    assert len(list((tmp_path / "c").glob("*.part*"))) == 2
    monkeypatch.setattr(text, "encode_prompts", real)
    again = TextEncoder(clip, templates="raw", cache_dir=tmp_path / "c", batch_size=2, names_per_part=2)
    emb = again.encode(names)
    assert again.calls == 2 and torch.equal(emb, ref)
    assert not list((tmp_path / "c").glob("*.part*")) and len(list((tmp_path / "c").glob("text_*"))) == 1
