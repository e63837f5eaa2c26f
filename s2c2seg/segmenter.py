"""Image + vocabulary -> :class:`~s2c2seg.bundle.FeatureBundle`: the one place where models run.

:class:`Segmenter` follows the anchors' test pipeline (mmseg ``Resize(scale=(2048, S), keep_ratio=True)``,
``SegDataPreProcessor`` with CLIP's mean/std in 0-255, ``slide_inference``) and adds S2C2Seg's sources:

* ``dense_logits`` (N, Q, gh, gw): cosine of the baseline's L2-normalised patch embeddings with the
  L2-normalised query text embeddings, on each crop's own grid (the full map is rebuilt downstream by
  :func:`s2c2seg.slide.slide_average`, as the anchors' ``forward_slide``).
* The paper reading's sources (``paper_sources=True``, default; a released-only encode sets it False):
  ``global_sim`` (Q,): cosine of CLIP's vanilla global image embedding with the query text embeddings.
  ``global_view="crops"`` (default): the per-crop embeddings that the baseline computes on blocks ``0..L-2``
  shared with its dense pass (vanilla last block, CLS, ``ln_post``, ``proj``), each L2-normalised, averaged over
  the sliding-window crops and renormalised; no extra trunk forward. ``global_view="image"``: one extra vanilla
  CLIP forward on the whole resized image, bilinearly resized (anti-aliased) to the model's native input size.
* ``clipseg_mean`` (Q,) / ``clipseg_maps`` (Q, s, s) float16: CLIPSeg on the whole image at 352 x 352
  (encode once, decode the queries in chunks), the spatial mean of the full-resolution sigmoid maps and the maps
  resized (bilinear, anti-aliased) to ``clipseg_store_size`` (the paper reading), reduced chunk by chunk so that
  memory is linear in Q (never (Q, 352, 352) at once).
* The S2C2Seg release's per-window sources (``window_sources=True``, default): ``window_pad`` (the baseline's
  official window padding, e.g. ProxyCLIP's multiple of 56), ``window_global`` (N, Q) (cosine of each padded
  window's vanilla CLS embedding, shared blocks 0..L-2 + the unmodified last block, ``ln_post``, ``proj``: the
  release's ``encode_image(..., return_cls=True)``), ``window_local`` (N, Q, ph, pw) (CLIPSeg fed each padded
  window as the release does, :meth:`~s2c2seg.models.clipseg.ClipSeg.window_maps`, chunk by chunk; reduced to
  ``window_store_size`` when set) and ``input_image``.

:func:`s2c2seg.factories.build_backend` assembles a Segmenter with pretrained or random weights, or returns the
simulation backend (the one place where the Segmenter and the simulation meet).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .budget import MemoryBudget, window_storage
from .bundle import FeatureBundle, storage_label, stored_window_hw
from .data.protocols import Protocol
from .data.sample import Sample
from .data.vocab import Vocabulary
from .slide import LONG_MAX, PIXEL_MEAN, PIXEL_STD, rescale_size, resize_short_side, slide_boxes, window_padding

__all__ = ["SegmenterConfig", "Segmenter", "full_vfm_config", "RANDOM_LABEL"]

RANDOM_LABEL = "RANDOM WEIGHTS"

WINDOW_STORAGES = ("auto", "float32", "float16")
"""``SegmenterConfig.window_storage``: the budget's rule (:func:`s2c2seg.budget.window_storage`) or a dtype (the
bundle's ``meta["storage"]`` label: :func:`storage_label`)."""


@dataclass(frozen=True)
class SegmenterConfig:
    """How a Segmenter turns an image into a bundle (the protocol's knobs live in :class:`Protocol`)."""

    global_view: str = "crops"
    """``crops``: mean of the per-crop vanilla CLS embeddings sharing blocks 0..L-2 with the dense pass (free);
    ``image``: one extra vanilla forward on the whole image resized to the CLIP model's native size."""
    crop_batch: int = 8
    """Sliding-window crops per baseline call."""
    clipseg_store_size: int = 88
    """Side of the stored CLIPSeg maps (``clipseg_maps``); the mean is taken at full 352 x 352 resolution."""
    dense_dtype: str = "float32"
    """dtype of the stored ``dense_logits``: ``float32`` or ``float16`` (half the bytes)."""
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    """The anchors' ``SegDataPreProcessor`` mean (:data:`s2c2seg.slide.PIXEL_MEAN`)."""
    pixel_std: tuple[float, float, float] = PIXEL_STD
    long_max: int = LONG_MAX
    """Long-side cap of mmcv's ``Resize(scale=(long_max, short_side), keep_ratio=True)``."""
    paper_sources: bool = True
    """Compute the paper reading's whole-image sources (``global_sim``, ``clipseg_mean``, ``clipseg_maps``); False
    gives a bundle for the baseline and the released presets only (no whole-image CLIPSeg pass, ~1.9 s per VOC
    image at full size on this CPU), which ``method="oracle"`` and the ``paper`` preset refuse."""
    window_sources: bool = True
    """Also compute the release's per-window sources (``window_local``, ``window_global``, ``window_pad``,
    ``input_image``); False gives the baseline + paper-reading sources only."""
    local_text: str = "plain"
    """CLIPSeg text of ``window_local``: ``plain`` (bare query word) or ``template`` (mean of the 80 templates)."""
    window_storage: str = "auto"
    """Storage of ``window_local``: ``auto`` (the budget's rule, :func:`s2c2seg.budget.window_storage`: exact
    float32 while it fits ``budget.window_bytes``, else float16, else reduced), ``float32`` (lossless,
    ``meta["storage"] = "exact"``) or ``float16`` (half the bytes, lossy: ``"compact-float16"``); an explicit
    dtype that does not fit the budget stops the encode before any model runs."""
    window_store_size: int = 0
    """With an explicit ``window_storage``: 0 keeps ``window_local`` at the window's size; s > 0 reduces each
    window's maps (bilinear, anti-aliased) to a long side of s (:func:`~s2c2seg.bundle.stored_window_hw`), lossy,
    ``meta["storage"] = "compact-<s>-<dtype>"``; the released pipeline upsamples them bilinearly to the window.
    ``auto`` picks the size itself (must be 0)."""
    budget: MemoryBudget = MemoryBudget()
    """The bytes one image may hold (:class:`s2c2seg.budget.MemoryBudget`); part of the cache key."""
    precision: str = "fp32"
    """CLIP image tower + VFM precision: ``fp32`` or ``fp16`` (the release's; CUDA only)."""

    def __post_init__(self) -> None:
        if self.global_view not in ("crops", "image"):
            raise ValueError(f"global_view must be 'crops' or 'image', got {self.global_view!r}")
        if self.crop_batch < 1:
            raise ValueError(f"crop_batch must be >= 1, got {self.crop_batch}")
        if self.clipseg_store_size < 1:
            raise ValueError(f"clipseg_store_size must be >= 1, got {self.clipseg_store_size}")
        if self.dense_dtype not in ("float32", "float16"):
            raise ValueError(f"dense_dtype must be 'float32' or 'float16', got {self.dense_dtype!r}")
        if self.local_text not in ("plain", "template"):
            raise ValueError(f"local_text must be 'plain' or 'template', got {self.local_text!r}")
        if self.window_storage not in WINDOW_STORAGES:
            raise ValueError(f"window_storage must be one of {WINDOW_STORAGES}, got {self.window_storage!r}")
        if self.window_store_size < 0:
            raise ValueError(f"window_store_size must be >= 0 (0: the window's own size), got {self.window_store_size}")
        if self.window_storage == "auto" and self.window_store_size:
            raise ValueError("window_store_size is chosen by window_storage='auto'; give window_storage='float16' "
                             f"(or 'float32') with window_store_size={self.window_store_size}, or 0")
        object.__setattr__(self, "budget", MemoryBudget.of(self.budget))
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {self.precision!r}")


def cosine_logits(patch: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(B, Q, gh, gw) patch-text cosine ``⟨v̂, t̂⟩`` from normalised patch (B, gh, gw, D) and text (Q, D) embeddings."""
    return torch.einsum("bhwd,qd->bqhw", patch, text.to(patch.dtype))


def mean_direction(embeddings: torch.Tensor) -> torch.Tensor:
    """L2-normalised mean of L2-normalised embeddings (N, D) -> (D,): the crops' shared global embedding."""
    return F.normalize(F.normalize(embeddings, dim=-1).mean(0), dim=0)


class Segmenter:
    """Runs a dense baseline, CLIP's global embedding and CLIPSeg on one image; returns a FeatureBundle.

    ``baseline``: a callable from :mod:`s2c2seg.models.baselines` (or CorrCLIP); ``clip``: a
    :class:`~s2c2seg.models.clip.ClipHandle`; ``clipseg``: a :class:`~s2c2seg.models.clipseg.ClipSeg`;
    ``text``: a :class:`~s2c2seg.models.text.TextEncoder` over the same CLIP; ``vfm``: a
    :class:`~s2c2seg.models.vfm.VFMHandle` for baselines that need one.
    """

    def __init__(self, baseline, clip, clipseg, text, vfm=None, config: SegmenterConfig = SegmenterConfig()):
        if getattr(baseline, "needs_vfm", False) and vfm is None:
            raise ValueError(f"vfm: baseline {type(baseline).__name__} needs a vision foundation model (load_vfm)")
        if getattr(text, "clip", clip) is not clip:
            raise ValueError("text: the TextEncoder must wrap the same ClipHandle as clip")
        if config.precision == "fp16":
            if clip.device.type != "cuda":
                raise ValueError(f"precision='fp16' needs a CUDA device (CLIP is on {clip.device}); "
                                 "use SegmenterConfig(precision='fp32') on CPU")
            clip.visual.half()                     # the release casts CLIP and DINO to fp16 (weights unchanged)
            if vfm is not None:
                vfm.model.half()
        self.baseline, self.clip, self.clipseg, self.text, self.vfm = baseline, clip, clipseg, text, vfm
        self.config = config

    # ------------------------------------------------------------------ description
    @property
    def baseline_name(self) -> str:
        return getattr(self.baseline, "name", "") or type(self.baseline).__name__.lower()

    def describe(self) -> dict[str, Any]:
        """Backend, model ids and weights; ``label`` is ``""`` for pretrained weights, else ``"RANDOM WEIGHTS"``."""
        parts = [self.clip.pretrained == "random", self.clipseg.weights == "random"]
        if self.vfm is not None:
            parts.append(self.vfm.model_id == "random")
        random = any(parts)
        params = self.baseline.params() if hasattr(self.baseline, "params") else {}
        return {
            "backend": "random" if random else "pretrained",
            "label": RANDOM_LABEL if random else "",
            "baseline": self.baseline_name,
            "baseline_params": {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))},
            "clip": self.clip.model_name,
            "clip_weights": self.clip.pretrained,
            "clip_weights_id": self.clip.weights_id,
            "clipseg": self.clipseg.model_id,
            "clipseg_weights": self.clipseg.weights,
            "vfm": None if self.vfm is None else self.vfm.name,
            "vfm_weights": None if self.vfm is None else self.vfm.model_id,
            "templates": getattr(self.text, "template_id", None),
            "weights": "random" if random else "pretrained",
            "precision": self.config.precision,
            "sources": [name for name, on in (("paper", self.config.paper_sources),
                                              ("window", self.config.window_sources)) if on],
            "storage": (self._stated_storage() if self.config.window_sources else None),
            "local_text": self.config.local_text if self.config.window_sources else None,
            "config": asdict(self.config),
        }

    def _stated_storage(self) -> str:
        """The storage label an explicit ``window_storage`` gives; ``auto`` (chosen per image, in the bundle)."""
        if self.config.window_storage == "auto":
            return "auto"
        return storage_label(getattr(torch, self.config.window_storage), self.config.window_store_size)

    def storage_for(self, image_hw: tuple[int, int], vocab: Vocabulary, protocol: Protocol
                       ) -> tuple[torch.dtype, int]:
        """(dtype, store size) of ``window_local`` for an image of ``image_hw`` (the budget's rule,
        :func:`s2c2seg.budget.window_storage`), from the geometry alone: called before any model runs."""
        rh, rw = rescale_size(*image_hw, protocol.short_side, self.config.long_max)
        boxes = slide_boxes(rh, rw, protocol.crop, protocol.stride)
        top, bottom, left, right = self.window_pad(boxes, protocol)
        y1, y2, x1, x2 = boxes[0].tolist()
        return window_storage(self.config.window_storage, self.config.window_store_size, len(boxes),
                              len(vocab.queries), (y2 - y1 + top + bottom, x2 - x1 + left + right),
                              self.config.budget, "SegmenterConfig.window_storage")

    # ------------------------------------------------------------------ inputs
    def _check(self, sample: Sample, vocab: Vocabulary) -> None:
        if not isinstance(sample, Sample):
            raise ValueError(f"sample must be a Sample, got {type(sample).__name__}")
        if not isinstance(vocab, Vocabulary) or len(vocab.queries) == 0:
            raise ValueError(f"vocab must be a non-empty Vocabulary, got {vocab!r}")
        h, w = sample.image.shape[:2]
        p = self.clip.patch_size
        if min(h, w) < p:
            raise ValueError(f"image {sample.id!r} of size {h}x{w} is smaller than the CLIP patch size {p}")

    def preprocess(self, image: np.ndarray, protocol: Protocol) -> torch.Tensor:
        """(3, h, w) float32: mmcv short-side resize (bilinear, uint8) then ``(x − mean) / std`` in 0-255."""
        img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        img = resize_short_side(img, protocol.short_side, self.config.long_max).float()
        mean = torch.tensor(self.config.pixel_mean).view(3, 1, 1)
        std = torch.tensor(self.config.pixel_std).view(3, 1, 1)
        return (img - mean) / std

    # ------------------------------------------------------------------ encode
    def window_pad(self, boxes: torch.Tensor, protocol: Protocol) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` padding of every window: the baseline's official rule, sliding only."""
        y1, y2, x1, x2 = boxes[0].tolist()
        multiple = getattr(self.baseline, "window_multiple", 0) if protocol.crop > 0 else 0
        return window_padding(y2 - y1, x2 - x1, multiple)

    @torch.no_grad()
    def dense(self, sample: Sample, vocab: Vocabulary, protocol: Protocol, *, with_global: bool = False):
        """The baseline alone: ``(dense_logits (N, Q, gh, gw), crop_boxes (N, 4), (h, w) resized, text (Q, D),
        globals (N, D) | None, normalised resized image (3, h, w))``; globals only when ``with_global``.
        Each window is zero-padded by :meth:`window_pad` first (logits and globals are of the padded window)."""
        self._check(sample, vocab)
        device = self.clip.device
        text = self.text.encode(vocab).to(device=device, dtype=torch.float32)          # (Q, D) normalised
        image = self.preprocess(sample.image, protocol).to(device)
        rh, rw = image.shape[-2:]
        boxes = slide_boxes(rh, rw, protocol.crop, protocol.stride)
        sizes = {(int(b[1] - b[0]), int(b[3] - b[2])) for b in boxes}
        if min(min(s) for s in sizes) < self.clip.patch_size:
            raise ValueError(f"image {sample.id!r}: crops of size {sorted(sizes)} (resized image {rh}x{rw}) are "
                             f"smaller than the CLIP patch size {self.clip.patch_size}")
        regions_resized = None
        if getattr(self.baseline, "needs_regions", False):
            if sample.regions is None:
                raise ValueError(f"sample {sample.id!r}: baseline {self.baseline_name} needs region ids "
                                 "(sample.regions is None)")
            from .regions import resize_nearest

            regions_resized = resize_nearest(torch.from_numpy(sample.regions.astype(np.int64)), (rh, rw)).to(device)
        top, bottom, left, right = self.window_pad(boxes, protocol)
        logits, globals_ = [], []
        for i in range(0, len(boxes), self.config.crop_batch):
            chunk = boxes[i:i + self.config.crop_batch].tolist()
            crops = F.pad(torch.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk]),
                          (left, right, top, bottom))
            regions = None
            if regions_resized is not None:
                regions = torch.stack([regions_resized[y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
            out = self.baseline(self.clip, crops, vfm=self.vfm, regions=regions, return_global=with_global)
            logits.append(cosine_logits(out.patch.float(), text).to(getattr(torch, self.config.dense_dtype)))
            if with_global:
                globals_.append(out.global_.float())
        globals_ = torch.cat(globals_) if with_global else None
        return torch.cat(logits).cpu(), boxes, (rh, rw), text, globals_, image

    @torch.no_grad()
    def encode(self, sample: Sample, vocab: Vocabulary, protocol: Protocol) -> FeatureBundle:
        """The FeatureBundle of ``sample`` for ``vocab`` under ``protocol`` (short side, crop, stride)."""
        want_paper, want_windows = self.config.paper_sources, self.config.window_sources
        if want_windows:  # decided (or refused) from the geometry, before any model runs
            self._check(sample, vocab)
            storage = self.storage_for(sample.image.shape[:2], vocab, protocol)
        want_global = want_paper and self.config.global_view == "crops"
        logits, boxes, (rh, rw), text, globals_, image = self.dense(sample, vocab, protocol,
                                                                    with_global=want_global or want_windows)
        paper = {}
        if want_paper:
            glob = mean_direction(globals_) if want_global else self._global_image(image)
            clipseg_mean, clipseg_maps = self.clipseg_summary(sample.image, vocab)
            paper = {"global_sim": (text @ glob).float().cpu(), "clipseg_mean": clipseg_mean,
                     "clipseg_maps": clipseg_maps}
        h, w = sample.image.shape[:2]
        regions = None if sample.regions is None else torch.from_numpy(sample.regions.astype(np.int32))
        desc = self.describe()
        meta = {"image_id": sample.id, "backend": desc["backend"], "label": desc["label"],
                "baseline": desc["baseline"], "global_view": self.config.global_view, "precision": desc["precision"],
                "sources": desc["sources"]}
        pad = self.window_pad(boxes, protocol)  # geometry: the dense logits are of the padded windows
        windows = {"window_pad": torch.tensor(pad, dtype=torch.long)}
        if want_windows:
            windows.update(window_local=self.window_local(image, boxes, pad, vocab, storage),
                           window_global=(globals_.float() @ text.T).cpu(), input_image=image.float().cpu())
            meta.update(storage=storage_label(*storage), local_text=desc["local_text"])
        return FeatureBundle(
            dense_logits=logits,
            crop_boxes=boxes,
            resized_hw=torch.tensor([rh, rw], dtype=torch.long),
            image_hw=torch.tensor([h, w], dtype=torch.long),
            query_to_class=vocab.query_to_class,
            regions=regions,
            meta=meta,
            **paper,
            **windows,
        )

    def clipseg_summary(self, image: np.ndarray, vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
        """``clipseg_mean`` (Q,) (spatial mean at CLIPSeg's full resolution) and ``clipseg_maps`` (Q, s, s) float16
        (bilinear, anti-aliased to ``clipseg_store_size``), one decoder chunk at a time: never (Q, 352, 352)."""
        q, s = len(vocab.queries), self.config.clipseg_store_size
        means, stored = torch.empty(q), torch.empty(q, s, s, dtype=torch.float16)
        for i, maps in self.clipseg.map_chunks(image, vocab.queries):                # (k, 352, 352) sigmoid
            means[i:i + len(maps)] = maps.mean(dim=(1, 2)).cpu()
            if maps.shape[-1] != s:
                maps = F.interpolate(maps[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
            stored[i:i + len(maps)] = maps.clamp(0, 1).to(torch.float16).cpu()
        return means, stored

    def window_local(self, image: torch.Tensor, boxes: torch.Tensor, pad, vocab: Vocabulary,
                     storage: tuple[torch.dtype, int] | None = None) -> torch.Tensor:
        """(N, Q, hs, ws) CLIPSeg sigmoid maps of every padded window (``ClipSeg.window_map_chunks``), in the stored
        dtype and size ``storage`` (default: :meth:`storage_for`'s rule), one decoder chunk at a time: never
        (Q, ph, pw) float32 for all Q."""
        top, bottom, left, right = pad
        y1, y2, x1, x2 = boxes[0].tolist()
        window_hw = (y2 - y1 + top + bottom, x2 - x1 + left + right)
        if storage is None:
            storage = window_storage(self.config.window_storage, self.config.window_store_size, len(boxes),
                                     len(vocab.queries), window_hw, self.config.budget,
                                     "SegmenterConfig.window_storage")
        dtype, store_size = storage
        hs, ws = stored_window_hw(window_hw, store_size)
        out = torch.empty(len(boxes), len(vocab.queries), hs, ws, dtype=dtype)
        for n, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
            window = F.pad(image[:, y1:y2, x1:x2], (left, right, top, bottom))
            for i, maps in self.clipseg.window_map_chunks(window, vocab.queries, mean=self.clip.mean,
                                                          std=self.clip.std, local_text=self.config.local_text):
                if tuple(maps.shape[-2:]) != (hs, ws):
                    maps = F.interpolate(maps[None], size=(hs, ws), mode="bilinear", align_corners=False,
                                         antialias=True)[0]
                out[n, i:i + len(maps)] = maps.to(dtype).cpu()
        return out

    def _global_image(self, image: torch.Tensor) -> torch.Tensor:
        """(D,) vanilla CLIP embedding of the whole normalised image resized to the model's native input size."""
        size = self.clip.visual.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        x = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)
        return F.normalize(self.clip.model.encode_image(x).float()[0], dim=0)


# ---------------------------------------------------------------------------------------------- backends
def full_vfm_config() -> dict[str, Any]:
    """DINO ViT-B/8's architecture (``facebook/dino-vitb8``) as a transformers config dict, for random weights."""
    return {"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "image_size": 224, "patch_size": 8, "layer_norm_eps": 1e-6, "qkv_bias": True}
