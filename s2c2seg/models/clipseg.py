"""CLIPSeg through transformers, encode once / decode K: the local dense model of S2C2Seg.

``CLIPSegForImageSegmentation.forward`` insists on one image per prompt, so K prompts run the CLIP vision
tower K times. :class:`ClipSeg` runs the vision tower once per image (``model.clip.vision_model`` with
``output_hidden_states=True``, activations ``hidden_states[i + 1]`` for ``i in model.extract_layers``), and
the decoder once for all prompts (the batch-1 activations broadcast against the K conditional embeddings
inside the decoder's FiLM and residual sums), in chunks of ``decoder_chunk`` prompts. The result equals
transformers' own forward with the image repeated K times (tested to 1e-5).

Input as the ``CIDAS/clipseg-rd64-refined`` processor: 352 x 352, PIL bilinear resize of the uint8 image,
1/255, ImageNet mean/std. Output: sigmoid maps (K, 352, 352).

Prompt text: the raw name by default (CLIPSeg's own inference setting); ``prompt="templates"`` averages the
(unnormalised) text embeddings of open_clip's 80 OpenAI ImageNet templates. Synonyms are separate queries;
the class-level max is taken downstream.

Per window, as the S2C2Seg release feeds CLIPSeg (``window_maps``): the CLIP-normalised (padded) window is
un-normalised with CLIP's mean/std, clipped to [0, 1], x 255 and truncated to uint8 (``window_uint8``), then
the processor's PIL path above; vision once, decoder for all queries, sigmoid at 352², bilinear
(align_corners=False) back to the window's size. Its text is ``local_text``: ``plain`` (the bare query word,
= ``raw``) or ``template`` (the unnormalised mean over the 80 templates, = ``templates``).
"""
from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ClipSeg", "ClipSegSettings", "LOCAL_TEXT_PROMPTS", "window_uint8", "tiny_clipseg_config",
           "rd64_clipseg_config", "build_clip_tokenizer_dir",
           "load_clipseg_tokenizer", "DEFAULT_CLIPSEG_ID"]

DEFAULT_CLIPSEG_ID = "CIDAS/clipseg-rd64-refined"

LOCAL_TEXT_PROMPTS = {"plain": "raw", "template": "templates"}
"""The release's ``local_text`` names -> :class:`ClipSegSettings` ``prompt``."""
RELEASE_TEMPLATES = "openai_imagenet"
"""The template set of the release's ``local_text="template"`` (its ``openai_imagenet_template``, 80 prompts)."""

UINT8_MAX = 255
CONTEXT_LENGTH = 77
"""CLIP's text context (tokens), shared by CLIPSeg's text tower."""


def window_uint8(window: torch.Tensor, mean, std) -> np.ndarray:
    """(h, w, 3) uint8 image of a (3, h, w) normalised window: ``x·std + mean`` per channel in float32,
    clipped to [0, 1], x 255, truncated (not rounded), as the release's ``unnormalize`` + ``to_uint8_image``."""
    if window.ndim != 3 or window.shape[0] != 3:
        raise ValueError(f"window must be a (3, h, w) normalised tensor, got {tuple(window.shape)}")
    def col(v):
        return torch.tensor(v, dtype=torch.float32).view(3, 1, 1)

    x = window.detach().float().cpu() * col(std) + col(mean)
    return (x.clamp_(0.0, 1.0) * UINT8_MAX).to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class ClipSegSettings:
    """Pre-processing and batching of :class:`ClipSeg` (the ``CIDAS/clipseg-rd64-refined`` processor's values)."""

    input_size: int = 352
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    prompt: str = "raw"
    """``raw`` (the name as is) or ``templates`` (mean text embedding over ``templates``)."""
    templates: str = "openai_imagenet"
    """Template set for ``prompt="templates"``: ``openai_imagenet`` (80) or ``simple_imagenet`` (open_clip's lists)."""
    decoder_chunk: int = 8
    """Prompts per decoder call. Bounds memory for large vocabularies (the decoder MLP holds K x 485 x 2048
    floats) and is faster on CPU than one large batch (measured in docs/benchmarks.md at e7201bb; git history)."""
    text_chunk: int = 256
    """Prompts per text-encoder call."""


def tiny_clipseg_config():
    """A small random CLIPSeg with rd64-refined's layout: patch 16, complex transposed conv, layers (3, 6, 9) of 10."""
    from transformers import CLIPSegConfig

    text = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=CONTEXT_LENGTH, eos_token_id=2)
    vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=10, num_attention_heads=4,
                  image_size=224, patch_size=16)
    return CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=24, extract_layers=[3, 6, 9],
                         reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                         conditional_layer=0, use_complex_transposed_convolution=True)


def rd64_clipseg_config():
    """The ``CIDAS/clipseg-rd64-refined`` architecture (ViT-B/16 vision, CLIP base text, reduce_dim 64), random
    weights."""
    from transformers import CLIPSegConfig

    return CLIPSegConfig(text_config=dict(eos_token_id=2), vision_config=dict(patch_size=16, image_size=224),
                         projection_dim=512, extract_layers=[3, 6, 9], reduce_dim=64, decoder_num_attention_heads=4,
                         decoder_intermediate_size=2048, conditional_layer=0, use_complex_transposed_convolution=True)


# ---------------------------------------------------------------------------------------------- tokenizer
def build_clip_tokenizer_dir(directory: str | Path) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` (transformers' CLIP format) from open_clip's shipped BPE file.

    The vocabulary is laid out as CLIP's: the 256 byte symbols, the same with ``</w>``, one entry per
    merge (the first 48,894 merges of the file), then ``<|startoftext|>`` and ``<|endoftext|>``
    (49,408 entries). Idempotent: an existing complete directory is reused.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    directory = Path(directory)
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    if vocab_file.is_file() and merges_file.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    n_merges = 49152 - 256 - 2  # CLIP's vocabulary size minus bytes, byte</w> and the two special tokens
    merges = [tuple(ln.split()) for ln in lines[1:n_merges + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    tmp = Path(tempfile.mkdtemp(dir=directory))
    (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                    encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                    encoding="utf-8")
    (tmp / "merges.txt").replace(merges_file)
    (tmp / "vocab.json").replace(vocab_file)
    tmp.rmdir()
    return directory


def load_clipseg_tokenizer(model_id: str | None = None, cache_dir: str | Path | None = None):
    """transformers ``CLIPTokenizer``: the model's own (``model_id``) or one built offline from open_clip's BPE.

    The offline one is written under ``cache_dir/clip_bpe_tokenizer`` (or a temporary directory when
    ``cache_dir`` is None) and loaded with ``CLIPTokenizer.from_pretrained`` (the constructor's
    ``vocab_file`` argument is ignored in transformers 5).
    """
    from transformers import CLIPTokenizer

    if model_id is not None:
        return CLIPTokenizer.from_pretrained(model_id)
    if cache_dir is not None:
        return CLIPTokenizer.from_pretrained(str(build_clip_tokenizer_dir(Path(cache_dir) / "clip_bpe_tokenizer")))
    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(str(build_clip_tokenizer_dir(tmp)))


# ---------------------------------------------------------------------------------------------- loading
def _load_pretrained(model_id: str):
    """Model + tokenizer from a local directory, the local HF cache, else the hub; raise within seconds otherwise."""
    from huggingface_hub import constants
    from transformers import CLIPSegForImageSegmentation, CLIPTokenizer

    from .offline import cached_hub_file, hub_offline, host_reachable, unavailable

    local = Path(model_id).is_dir() or cached_hub_file(model_id, ("config.json",)) is not None
    source = f"Hugging Face repo {model_id}"
    if not local:
        if hub_offline():
            raise unavailable(model_id, source, "not in the local cache and HF_HUB_OFFLINE is set")
        if not host_reachable(constants.ENDPOINT):
            raise unavailable(model_id, source, f"not in the local cache and {constants.ENDPOINT} is unreachable")
    try:
        return (CLIPSegForImageSegmentation.from_pretrained(model_id, local_files_only=local),
                CLIPTokenizer.from_pretrained(model_id, local_files_only=local))
    except OSError as exc:
        raise unavailable(model_id, source, str(exc)) from exc


# ---------------------------------------------------------------------------------------------- model
class ClipSeg:
    """CLIPSeg, vision tower once per image and decoder once per prompt batch; ``__call__`` -> sigmoid maps.

    ``ClipSeg()`` loads ``CIDAS/clipseg-rd64-refined`` (real weights; fails fast offline naming the id and
    the fix). ``ClipSeg(config=tiny_clipseg_config())`` builds a random model from a ``CLIPSegConfig``
    (full size: ``rd64_clipseg_config()``) with a tokenizer built offline from open_clip's BPE file.
    """

    def __init__(self, model_id: str = DEFAULT_CLIPSEG_ID, *, config=None, cache_dir: str | Path | None = None,
                 settings: ClipSegSettings = ClipSegSettings(), device: str | torch.device = "cpu", seed: int = 0):
        from transformers import CLIPSegForImageSegmentation

        if settings.prompt not in ("raw", "templates"):
            raise ValueError(f"settings.prompt must be 'raw' or 'templates', got {settings.prompt!r}")
        if settings.decoder_chunk < 1 or settings.text_chunk < 1:
            raise ValueError("settings.decoder_chunk and settings.text_chunk must be >= 1")
        self.settings = settings
        self.device = torch.device(device)
        if config is None:
            self.model, self.tokenizer = _load_pretrained(model_id)
            self.model_id, self.weights = model_id, "pretrained"
        else:
            torch.manual_seed(seed)
            self.model = CLIPSegForImageSegmentation(config)
            self.tokenizer = load_clipseg_tokenizer(None, cache_dir)
            self.model_id, self.weights = model_id, "random"
        self.model.eval().to(self.device)
        cfg = self.model.config
        self.patch_size = int(cfg.vision_config.patch_size)
        self.projection_dim = int(cfg.projection_dim)
        self._mean = torch.tensor(settings.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(settings.std, device=self.device).view(1, 3, 1, 1)
        self._text_cache: dict[tuple[str, str, str], torch.Tensor] = {}
        self.text_calls = 0
        """Number of text-encoder batches run (the per-name embedding memo avoids repeats across images)."""

    # ------------------------------------------------------------------ inputs
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """(1, 3, S, S) float: PIL bilinear resize of the (H, W, 3) uint8 image to S = input_size, 1/255, ImageNet
        norm."""
        from PIL import Image

        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', None)} "
                             f"{getattr(image, 'dtype', type(image))}")
        s = self.settings.input_size
        if min(image.shape[:2]) < 1:
            raise ValueError(f"image is empty: {image.shape}")
        resized = np.asarray(Image.fromarray(image).resize((s, s), Image.BILINEAR), dtype=np.float32)
        px = torch.from_numpy(resized).permute(2, 0, 1)[None].to(self.device) / 255.0
        return (px - self._mean) / self._std

    @staticmethod
    def _prompts(name: str, prompt: str, templates: str) -> list[str]:
        if prompt == "raw":
            return [name]
        from open_clip import zero_shot_metadata as zsm

        sets = {"openai_imagenet": zsm.OPENAI_IMAGENET_TEMPLATES, "simple_imagenet": zsm.SIMPLE_IMAGENET_TEMPLATES}
        if templates not in sets:
            raise ValueError(f"templates must be one of {sorted(sets)}, got {templates!r}")
        return [t(name) for t in sets[templates]]

    @torch.no_grad()
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), self.settings.text_chunk):
            tok = self.tokenizer(texts[i:i + self.settings.text_chunk], padding=True, truncation=True,
                                 max_length=CONTEXT_LENGTH, return_tensors="pt").to(self.device)
            out.append(self.model.clip.get_text_features(input_ids=tok["input_ids"],
                                                         attention_mask=tok["attention_mask"]).pooler_output)
            self.text_calls += 1
        return torch.cat(out)

    @torch.no_grad()
    def text_embeddings(self, queries: Sequence[str], prompt: str | None = None,
                        templates: str | None = None) -> torch.Tensor:
        """(Q, projection_dim) conditional embeddings (unnormalised, as CLIPSeg was trained); memoised per name.

        ``prompt``: ``raw`` | ``templates``; ``templates``: the set for ``templates`` (defaults: ``settings``)."""
        prompt = self.settings.prompt if prompt is None else prompt
        if prompt not in ("raw", "templates"):
            raise ValueError(f"prompt must be 'raw' or 'templates', got {prompt!r}")
        kind = (prompt, self.settings.templates if templates is None else templates) if prompt == "templates" \
            else (prompt, "")
        queries = list(queries)
        if not queries:
            raise ValueError("queries is empty: give at least one prompt")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"queries contains an empty name: {q!r}")
        todo = [q for q in dict.fromkeys(queries) if (*kind, q) not in self._text_cache]
        if todo:
            per = [self._prompts(q, *kind) for q in todo]
            emb = self._encode_texts([p for ps in per for p in ps])
            start = 0
            for q, ps in zip(todo, per):
                self._text_cache[(*kind, q)] = emb[start:start + len(ps)].mean(0)  # templates: mean; raw: itself
                start += len(ps)
        return torch.stack([self._text_cache[(*kind, q)] for q in queries])

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Vision tower once: the activations after the ``extract_layers`` blocks, each (1, 1 + n, width).

        Runs the unmodified modules of ``model.clip.vision_model`` (embeddings with interpolated positions,
        ``pre_layrnorm``, encoder layers) and stops after the deepest extracted layer: the blocks after it
        (2 of 12 for rd64) and ``post_layernorm`` do not feed the decoder. Equal to
        ``vision_model(px, output_hidden_states=True).hidden_states[i + 1]`` (tested through the full forward).
        """
        if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
            raise ValueError(f"pixel_values must be (1, 3, S, S), got {tuple(pixel_values.shape)}")
        if min(pixel_values.shape[-2:]) < self.patch_size:
            raise ValueError(f"image side {min(pixel_values.shape[-2:])} is smaller than CLIPSeg's patch size "
                             f"{self.patch_size}")
        vision = self.model.clip.vision_model
        wanted = list(self.model.extract_layers)
        x = vision.pre_layrnorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
        acts = {}
        for i, layer in enumerate(vision.encoder.layers[:max(wanted) + 1]):
            x = layer(x, None)
            if i in wanted:
                acts[i] = x
        return [acts[i] for i in wanted]

    @torch.no_grad()
    def decode(self, activations: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        """(K, S, S) logits: the decoder on one image's activations for K conditional embeddings, in chunks."""
        return torch.cat([logits for _, logits in self.decode_chunks(activations, cond)])

    @torch.no_grad()
    def decode_chunks(self, activations: list[torch.Tensor], cond: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, (k, S, S) logits)`` of the decoder for ``cond[start:start + k]``, k = ``decoder_chunk``."""
        if cond.ndim != 2 or cond.shape[1] != self.projection_dim or cond.shape[0] == 0:
            raise ValueError(f"cond must be (K>0, {self.projection_dim}), got {tuple(cond.shape)}")
        k = self.settings.decoder_chunk
        for i in range(0, len(cond), k):
            yield i, self.model.decoder(activations, cond[i:i + k]).logits

    @torch.no_grad()
    def __call__(self, image: np.ndarray, queries: Sequence[str]) -> torch.Tensor:
        """(Q, S, S) float32 sigmoid maps of the (H, W, 3) uint8 image for each query, S = input_size."""
        return torch.cat([maps for _, maps in self.map_chunks(image, queries)])

    @torch.no_grad()
    def map_chunks(self, image: np.ndarray, queries: Sequence[str]) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, (k, S, S) float32 sigmoid maps)`` of :meth:`__call__`, one decoder chunk at a time."""
        cond = self.text_embeddings(queries)
        acts = self.encode_image(self.preprocess(image))
        for i, logits in self.decode_chunks(acts, cond):
            yield i, logits.float().sigmoid_()

    @torch.no_grad()
    def window_maps(self, window: torch.Tensor, queries: Sequence[str], *, mean, std,
                    local_text: str = "plain") -> torch.Tensor:
        """(Q, h, w) float32 sigmoid maps of one (3, h, w) normalised window, as the release computes them.

        ``mean`` / ``std``: the normalisation to undo (CLIP's, 0-1). Vision once, decoder for all queries,
        sigmoid at S x S, then bilinear (align_corners=False) to the window's (h, w)."""
        return torch.cat([maps for _, maps in self.window_map_chunks(window, queries, mean=mean, std=std,
                                                                     local_text=local_text)])

    @torch.no_grad()
    def window_map_chunks(self, window: torch.Tensor, queries: Sequence[str], *, mean, std,
                          local_text: str = "plain") -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, (k, h, w) float32 maps)`` of :meth:`window_maps`, one decoder chunk at a time."""
        if local_text not in LOCAL_TEXT_PROMPTS:
            raise ValueError(f"local_text must be one of {sorted(LOCAL_TEXT_PROMPTS)}, got {local_text!r}")
        cond = self.text_embeddings(queries, LOCAL_TEXT_PROMPTS[local_text], RELEASE_TEMPLATES)
        acts = self.encode_image(self.preprocess(window_uint8(window, mean, std)))
        hw = tuple(window.shape[-2:])
        for i, logits in self.decode_chunks(acts, cond):
            maps = logits.float().sigmoid_()
            if tuple(maps.shape[-2:]) != hw:
                maps = F.interpolate(maps[None], size=hw, mode="bilinear", align_corners=False)[0]
            yield i, maps

    @torch.no_grad()
    def naive_forward(self, image: np.ndarray, queries: Sequence[str]) -> torch.Tensor:
        """(Q, S, S) sigmoid maps through transformers' own ``forward``, the image repeated Q times (reference)."""
        if self.settings.prompt != "raw":
            raise ValueError("naive_forward is the raw-prompt reference; settings.prompt must be 'raw'")
        queries = list(queries)
        px = self.preprocess(image).expand(len(queries), -1, -1, -1)
        tok = self.tokenizer(queries, padding=True, return_tensors="pt").to(self.device)
        out = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=px,
                         interpolate_pos_encoding=True)
        logits = out.logits if out.logits.ndim == 3 else out.logits[None]
        return logits.sigmoid()

    def describe(self) -> dict:
        return {"model_id": self.model_id, "weights": self.weights, "input_size": self.settings.input_size,
                "prompt": self.settings.prompt}
