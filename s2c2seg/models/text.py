"""Text embeddings of a vocabulary: template ensembles, cut-context encoding, chunking, a safetensors disk cache.

Large vocabularies are encoded in resumable parts (``names_per_part`` names each); with a cache directory each
part is saved as soon as it is done and the parts are merged into the entry at the end, so an interrupted run
resumes with the remaining parts only.

Per name (every synonym is its own query): each of the T templates is encoded, L2-normalised, the T vectors are
averaged and the mean is renormalised (the anchors' scheme). Prompts are tokenised to the model's 77-token
context, sorted by length and encoded in chunks whose context is cut to the chunk's longest tokenised prompt:
exact, because CLIP's text mask is causal (the pooled end token never attends to the padding after it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..data.vocab import Vocabulary
from ..store import CorruptFileError, load_tensors, save_tensors
from .clip import ClipHandle

__all__ = ["TextEncoder", "TEMPLATE_SETS", "get_templates", "encode_prompts", "CacheKeyError"]


class CacheKeyError(ValueError):
    """A cache file exists under the expected name but holds embeddings for another key."""


def _openai_imagenet() -> tuple[Callable[[str], str], ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return tuple(OPENAI_IMAGENET_TEMPLATES)


def _simple_imagenet() -> tuple[Callable[[str], str], ...]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
    return tuple(SIMPLE_IMAGENET_TEMPLATES)


def _raw() -> tuple[Callable[[str], str], ...]:
    return (lambda c: c,)


TEMPLATE_SETS: dict[str, Callable[[], tuple[Callable[[str], str], ...]]] = {
    "openai_imagenet": _openai_imagenet,   # the 80 templates of every anchor (identical to SCLIP's list)
    "simple_imagenet": _simple_imagenet,   # open_clip's 7-template subset
    "raw": _raw,                           # the name alone
}


def get_templates(templates: str | Sequence[str | Callable[[str], str]]) -> tuple[str, tuple[str, ...]]:
    """(id, format strings with ``{}``) of a named set or of a custom list (format strings or callables)."""
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"templates={templates!r} is not a known set {sorted(TEMPLATE_SETS)}")
        return templates, tuple(t("{}") for t in TEMPLATE_SETS[templates]())
    items = tuple(templates)
    if not items:
        raise ValueError("templates is empty")
    fmts = tuple(t("{}") if callable(t) else str(t) for t in items)
    for f in fmts:
        if "{}" not in f:
            raise ValueError(f"template {f!r} has no '{{}}' placeholder for the name")
    return "custom-" + hashlib.sha256("\n".join(fmts).encode()).hexdigest()[:8], fmts


@dataclass
class _Chunking:
    batch_size: int = 256
    """Prompts per text-encoder call (bounds peak memory: ~70 MB of activations per 256 prompts at ViT-B/16)."""
    progress_min_prompts: int = 2000
    """Show a tqdm bar from this many prompts on (``progress=None``)."""
    names_per_part: int = 1024
    """Names per resumable part: each part is encoded on its own and, with a cache, saved at once, so an
    interrupted run keeps every finished part (a vocabulary of at most this many names is one part)."""


def encode_prompts(clip: ClipHandle, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` on a context cut to ``tokens.shape[1]`` (positional embedding and causal mask
    sliced to the same length), unnormalised. Equal to the full-context result when no end token is cut."""
    model = clip.model
    n = tokens.shape[1]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast)
    x = x + model.positional_embedding[:n].to(cast)
    mask = model.attn_mask[:n, :n] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    from open_clip.transformer import text_global_pool
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) \
            else x @ model.text_projection
    return x


def _token_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens up to and including the last non-padding one (padding id 0; '!' is also 0 but never last)."""
    nonpad = tokens != 0
    return tokens.shape[1] - nonpad.flip(1).int().argmax(dim=1)


_CUT_POOLS = ("argmax", "eos")


class TextEncoder:
    """Template-averaged, L2-normalised text embeddings for the queries of a vocabulary, cached on disk.

    ``.calls`` counts text-encoder forward calls since construction (0 on a cache hit)."""

    def __init__(self, clip: ClipHandle, templates: str | Sequence = "openai_imagenet",
                 cache_dir: str | Path | None = None, *, batch_size: int = _Chunking.batch_size,
                 cut_context: bool = True, progress: bool | None = None,
                 names_per_part: int = _Chunking.names_per_part):
        if not isinstance(clip, ClipHandle):
            raise ValueError(f"clip must be a ClipHandle (from load_clip), got {type(clip).__name__}")
        if not hasattr(clip.model, "token_embedding"):
            raise ValueError(f"{clip.model_name!r}: only open_clip's built-in text tower is supported")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if names_per_part < 1:
            raise ValueError(f"names_per_part must be >= 1, got {names_per_part}")
        self.clip = clip
        self.template_id, self.templates = get_templates(templates)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.chunking = _Chunking(batch_size=batch_size, names_per_part=names_per_part)
        causal = getattr(clip.model, "attn_mask", None) is not None
        self.cut_context = bool(cut_context and causal and getattr(clip.model, "text_pool_type", "") in _CUT_POOLS)
        """Cutting is exact only with a causal mask and end-token pooling; otherwise the full context is used."""
        self.progress = progress
        self.calls = 0
        self._memory: dict[str, torch.Tensor] = {}
        self.corrupt = 0
        """Cache files (entries or parts) that were damaged: each was deleted and recomputed."""

    # ------------------------------------------------------------------ keys
    def cache_key(self, names: Sequence[str]) -> dict:
        """Everything the embeddings depend on: weights, template set (and its strings), the exact names."""
        return {"model": self.clip.model_name, "weights": self.clip.pretrained, "weights_id": self.clip.weights_id,
                "templates": self.template_id, "template_strings": list(self.templates), "names": list(names),
                "format": 2}

    @staticmethod
    def key_hash(key: dict) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def cache_path(self, names: Sequence[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"text_{self.key_hash(self.cache_key(names))[:20]}.safetensors"

    # ------------------------------------------------------------------ public
    def encode(self, vocab: Vocabulary | Sequence[str]) -> torch.Tensor:
        """(Q, D) float32 normalised embeddings, one row per query (``vocab.queries`` order)."""
        names = self._names(vocab)
        key = self.cache_key(names)
        digest = self.key_hash(key)
        if digest in self._memory:
            return self._memory[digest].clone()
        path = self.cache_path(names)
        emb = self._load(path, key) if path is not None and path.is_file() else None
        if emb is None:
            emb = self._encode_parts(names, path)
            if path is not None:
                self._save(path, key, emb)
                for part in self._part_paths(path, len(names)):
                    part.unlink(missing_ok=True)
        self._memory[digest] = emb
        return emb.clone()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _names(vocab) -> list[str]:
        if isinstance(vocab, Vocabulary):
            return vocab.queries
        if isinstance(vocab, str) or not isinstance(vocab, Sequence):
            raise ValueError(f"vocab must be a Vocabulary or a list of names, got {type(vocab).__name__}")
        names = list(vocab)
        if not names:
            raise ValueError("vocab is empty: give at least one name")
        for i, n in enumerate(names):
            if not isinstance(n, str) or not n.strip():
                raise ValueError(f"vocab name {i} is empty or not a string: {n!r}")
        return names

    def _part_paths(self, path: Path | None, n_names: int) -> list[Path | None]:
        """Where each resumable part of a cache entry lives while the entry is incomplete."""
        n_parts = -(-n_names // self.chunking.names_per_part)
        if path is None:
            return [None] * n_parts
        stem = path.name[: -len(".safetensors")]
        return [path.with_name(f"{stem}.part{i:05d}of{n_parts:05d}.safetensors") for i in range(n_parts)]

    def _encode_parts(self, names: list[str], path: Path | None) -> torch.Tensor:
        """The embeddings part by part (``names_per_part`` names each), reading the parts a previous,
        interrupted run saved and saving each new one at once (atomically)."""
        from tqdm.auto import tqdm

        size = self.chunking.names_per_part
        parts = self._part_paths(path, len(names))
        n_prompts = len(names) * len(self.templates)
        show = self.progress if self.progress is not None else n_prompts >= self.chunking.progress_min_prompts
        out = []
        with tqdm(total=n_prompts, desc="text embeddings", unit="prompt", disable=not show) as bar:
            for i, part in enumerate(parts):
                chunk = names[i * size:(i + 1) * size]
                key = {**self.cache_key(chunk), "part": [i, len(parts)]}
                emb = self._load(part, key) if part is not None and part.is_file() else None
                if emb is not None:
                    bar.update(len(chunk) * len(self.templates))
                else:
                    emb = self._encode_names(chunk, bar)
                    if part is not None and len(parts) > 1:  # a single part is the entry itself
                        self._save(part, key, emb)
                out.append(emb)
        return torch.cat(out)

    @torch.no_grad()
    def _encode_names(self, names: list[str], bar) -> torch.Tensor:
        prompts = [t.format(n) for n in names for t in self.templates]
        tokens = self.clip.tokenizer(prompts)
        feats = self._encode_tokens(tokens, bar)
        feats = F.normalize(feats, dim=-1).reshape(len(names), len(self.templates), -1)
        return F.normalize(feats.mean(dim=1), dim=-1).float().cpu()

    def _encode_tokens(self, tokens: torch.Tensor, bar) -> torch.Tensor:
        """Unnormalised features of (P, 77) tokens, chunked; with ``cut_context`` sorted by length and cut."""
        device = self.clip.device
        n = tokens.shape[0]
        lengths = _token_lengths(tokens)
        order = torch.argsort(lengths, descending=True, stable=True) if self.cut_context else torch.arange(n)
        out = None
        bs = self.chunking.batch_size
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            chunk = tokens[idx]
            if self.cut_context:
                chunk = chunk[:, : int(lengths[idx].max())]
            feats = encode_prompts(self.clip, chunk.to(device))
            self.calls += 1
            if out is None:
                out = feats.new_empty((n, feats.shape[-1]))
            out[idx.to(feats.device)] = feats
            bar.update(idx.numel())
        return out

    def _save(self, path: Path, key: dict, emb: torch.Tensor) -> None:
        save_tensors(path, {"embeddings": emb}, {"key": key})

    def _load(self, path: Path, key: dict) -> torch.Tensor | None:
        """The embeddings stored at ``path``; None (the file deleted, :attr:`corrupt` counted) when damaged."""
        try:
            tensors, meta = load_tensors(path)
        except CorruptFileError:
            self.corrupt += 1
            path.unlink(missing_ok=True)
            return None
        if meta.get("key") != json.loads(json.dumps(key, sort_keys=True)):
            raise CacheKeyError(f"text cache {path} was written for another key (model/weights/templates/names)")
        emb = tensors.get("embeddings")
        if emb is None or emb.shape[0] != len(key["names"]):
            raise CacheKeyError(f"text cache {path} does not hold {len(key['names'])} rows of embeddings")
        return emb
