"""The simulated sources and the backend that packs them into a FeatureBundle (SIMULATED).

Memory is linear in the vocabulary: only the present categories and their structure neighbours get a
non-constant dense map, CLIPSeg's maps are built in chunks of queries (the noise stream is the same as one
draw), and the category structure is sparse.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..budget import rows_per_chunk, window_storage
from ..bundle import FeatureBundle, storage_label, stored_window_hw
from ..data.protocols import Protocol
from ..data.sample import Sample
from .config import IGNORE_INDEX, LABEL, SimConfig
from .scenes import _background, resolve_vocabulary, shape_params
from .structure import CategoryStructure

__all__ = ["gaussian_blur", "global_scores", "dense_class_maps", "clipseg_class_maps", "clipseg_activation",
           "SimBackend", "QUERY_CHUNK", "FP_BLOB_STRENGTH"]

QUERY_CHUNK = 512
"""Queries per chunk when the CLIPSeg world is built (bounds its memory; the numbers do not depend on it)."""
FP_BLOB_STRENGTH = 0.5
"""Evidence inside the random blob on which an absent category without a present near-synonym lights up."""


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (σ in pixels, reflect padding) of (C, H, W) maps; σ = 0 returns them unchanged."""
    if sigma <= 0 or maps.shape[0] == 0:
        return maps
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c, h, w = maps.shape
    out = maps[:, None]
    pad_y, pad_x = min(r, h - 1), min(r, w - 1)
    ky = k[r - pad_y:r + pad_y + 1]
    kx = k[r - pad_x:r + pad_x + 1]
    out = F.conv2d(F.pad(out, (0, 0, pad_y, pad_y), mode="reflect"), (ky / ky.sum()).view(1, 1, -1, 1))
    out = F.conv2d(F.pad(out, (pad_x, pad_x, 0, 0), mode="reflect"), (kx / kx.sum()).view(1, 1, 1, -1))
    return out[:, 0]


@dataclass(frozen=True)
class _Scene:
    """The ground truth of one image in sparse form: its present categories and their one-hot maps."""

    num_classes: int
    present: torch.Tensor
    """(P,) sorted indices of the categories with at least one labelled pixel."""
    onehot: torch.Tensor
    """(P, H, W) float32 one-hot maps of the present categories."""
    area: torch.Tensor
    """(C,) labelled-area fraction of every category (0 when absent)."""

    @classmethod
    def of(cls, label: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> _Scene:
        valid = label != ignore_index
        present = torch.unique(label[valid])
        onehot = (label[None] == present[:, None, None]).float()
        area = torch.zeros(num_classes)
        area[present] = onehot.flatten(1).sum(1) / float(valid.sum().clamp(min=1))
        return cls(num_classes, present, onehot, area)

    def blurred(self, blur: float) -> torch.Tensor:
        """(P, H, W) ``gaussian_blur(onehot, blur·short side)``."""
        return gaussian_blur(self.onehot, blur * min(self.onehot.shape[-2:])) if blur > 0 else self.onehot


def _scene_of(onehot: torch.Tensor) -> _Scene:
    """A :class:`_Scene` from dense (C, H, W) one-hot maps (the public functions' input)."""
    present = torch.nonzero(onehot.flatten(1).amax(1) > 0).flatten()
    area = onehot.flatten(1).sum(1) / float(onehot.sum().clamp(min=1))
    return _Scene(onehot.shape[0], present, onehot[present], area)


def global_scores(presence: torch.Tensor, structure: CategoryStructure, cfg: SimConfig) -> torch.Tensor:
    """Global cosine per class (C,) before noise: ``floor + span·(p_c + leak_sim·max W_sim·p + leak_co·max W_co·p)
    + class_bias·b_c``."""
    leak_sim = structure.similar_neighbours.max_weighted(presence)
    leak_co = structure.cooccur_neighbours.max_weighted(presence)
    signal = presence + cfg.global_leak_similar * leak_sim + cfg.global_leak_cooccur * leak_co
    return cfg.global_floor + cfg.global_span * signal + cfg.global_class_bias * structure.global_bias


def _absent_dense(structure: CategoryStructure, cfg: SimConfig) -> torch.Tensor:
    """(C,) the dense cosine of a category with no response anywhere: ``floor + class_bias·b_c``."""
    return cfg.dense_floor + cfg.dense_class_bias * structure.dense_bias


def _dense_active(scene: _Scene, structure: CategoryStructure, cfg: SimConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(active categories (A,), their dense cosine maps (A, H, W)): the present ones and those the leaks reach;
    every other category's map is the constant :func:`_absent_dense`."""
    b = scene.blurred(cfg.dense_blur)
    edges = []
    for leak, nb in ((cfg.dense_leak_similar, structure.similar_neighbours),
                     (cfg.dense_leak_cooccur, structure.cooccur_neighbours)):
        if leak > 0:
            target, src, w = nb.towards(scene.present)
            edges.append((target, src, leak * w))
    active = torch.unique(torch.cat([scene.present] + [e[0] for e in edges]))
    signal = torch.zeros(active.numel(), *b.shape[1:])
    signal[torch.searchsorted(active, scene.present)] += b
    for target, src, w in edges:  # Σ_c' leak·W[c, c']·B_c' over the present c'
        signal.index_add_(0, torch.searchsorted(active, target), w[:, None, None] * b[src])
    absent = _absent_dense(structure, cfg)
    return active, (absent[active][:, None, None] + cfg.dense_span * signal)


def dense_class_maps(onehot: torch.Tensor, structure: CategoryStructure, cfg: SimConfig) -> torch.Tensor:
    """Dense cosine per class (C, H, W) before resizing and noise:
    ``floor + span·(B + leak_sim·W_sim B + leak_co·W_co B) + class_bias·b_c`` with ``B`` the blurred one-hot maps
    (O(C·H·W): the backend keeps the active ones only)."""
    active, maps = _dense_active(_scene_of(onehot), structure, cfg)
    out = _absent_dense(structure, cfg)[:, None, None].expand(onehot.shape).clone()
    out[active] = maps
    return out


class _ClipsegWorld:
    """CLIPSeg's pre-sigmoid evidence ``keep_c·B'_c + fp_c·F_c`` per category, rendered on request.

    ``keep_c = 1 − miss·u``; ``fp_c = false_positive·susceptibility_c·u'`` for an absent c, on the support
    ``F_c`` = the region of its most similar present category, else a random blob (its shape drawn here, in
    category order, so that the random stream does not depend on the chunking)."""

    def __init__(self, scene: _Scene, structure: CategoryStructure, cfg: SimConfig, rng: np.random.Generator):
        c = scene.num_classes
        self.scene, self.h, self.w = scene, *scene.onehot.shape[-2:]
        self.b = scene.blurred(cfg.clipseg_blur)
        is_present = torch.zeros(c, dtype=torch.bool)
        is_present[scene.present] = True
        self.keep = 1.0 - cfg.clipseg_miss * torch.from_numpy(rng.random(c).astype(np.float32))
        self.fp = cfg.clipseg_false_positive * structure.fp_susceptibility * torch.from_numpy(
            rng.random(c).astype(np.float32))
        self.row = torch.full((c,), -1, dtype=torch.long)
        self.row[scene.present] = torch.arange(scene.present.numel())
        self.partner = torch.full((c,), -1, dtype=torch.long)  # row in ``b`` of the support's category
        self.blob = torch.full((c, 4), math.nan, dtype=torch.float64)  # (cy, cx, ry, rx) of a random blob
        if cfg.clipseg_false_positive > 0:
            absent = torch.nonzero(~is_present).flatten()
            cand = structure.similar_neighbours.index[absent]
            hit = (cand >= 0) & is_present[cand.clamp(min=0)]
            has = hit.any(dim=1)
            if bool(has.any()):
                first = hit.int().argmax(dim=1)  # the strongest present near-synonym
                self.partner[absent[has]] = self.row[cand[has, first[has]]]
            alone = absent[~has]
            if alone.numel():  # one shape per category, in category order (the random stream)
                self.blob[alone] = torch.tensor([shape_params(rng, self.h, self.w) for _ in range(alone.numel())],
                                                dtype=torch.float64)
        self._grid = (torch.arange(self.h, dtype=torch.float64)[:, None], torch.arange(self.w, dtype=torch.float64))

    def evidence(self, classes: torch.Tensor) -> torch.Tensor:
        """(len(classes), H, W) pre-sigmoid evidence of ``classes`` (repeats allowed)."""
        params = self.blob[classes]
        if bool((~torch.isnan(params[:, 0])).any()):  # the ellipse of scenes.shape_mask; NaN params: no blob
            cy, cx, ry, rx = (v[:, None, None] for v in params.unbind(1))
            yy, xx = self._grid
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            out = inside * (self.fp[classes] * FP_BLOB_STRENGTH)[:, None, None]
        else:
            out = torch.zeros(classes.numel(), self.h, self.w)
        rows = self.row[classes]
        here = rows >= 0
        if bool(here.any()):
            out[here] += self.keep[classes[here]][:, None, None] * self.b[rows[here]]
        part = self.partner[classes]
        lit = part >= 0
        if bool(lit.any()):
            out[lit] += self.fp[classes[lit]][:, None, None] * self.b[part[lit]]
        return out


def clipseg_class_maps(onehot: torch.Tensor, structure: CategoryStructure, cfg: SimConfig,
                       rng: np.random.Generator) -> torch.Tensor:
    """CLIPSeg's pre-sigmoid evidence per class (C, H, W): ``keep_c·B'_c + fp_c·F_c`` (noise is added by the
    caller per query). ``keep_c = 1 − miss·u``; ``fp_c = false_positive·susceptibility_c·u'`` for absent c, with
    support ``F_c`` = the region of its most similar present category, else a random blob."""
    return _ClipsegWorld(_scene_of(onehot), structure, cfg, rng).evidence(torch.arange(onehot.shape[0]))


def clipseg_activation(x: torch.Tensor, cfg: SimConfig) -> torch.Tensor:
    """CLIPSeg's sigmoid map: ``sigmoid(gain·(x − 0.5))``."""
    return torch.sigmoid(cfg.clipseg_gain * (x - 0.5))


def _window_pad(bh: int, bw: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding of a ``bh x bw`` window to a multiple of ``multiple``, centred."""
    if multiple <= 0:
        return 0, 0, 0, 0
    ph, pw = -(-bh // multiple) * multiple, -(-bw // multiple) * multiple
    return (ph - bh) // 2, ph - bh - (ph - bh) // 2, (pw - bw) // 2, pw - bw - (pw - bw) // 2


def _cut_windows(maps: torch.Tensor, boxes: torch.Tensor, pad, fill: torch.Tensor) -> torch.Tensor:
    """(N, A, ph, pw): each box of (A, rh, rw) ``maps``, padded with ``fill`` (A,) per map."""
    t, b, left, r = pad
    out = []
    for y1, y2, x1, x2 in boxes.tolist():
        crop = maps[:, y1:y2, x1:x2]
        if t or b or left or r:
            full = fill[:, None, None].expand(crop.shape[0], y2 - y1 + t + b, x2 - x1 + left + r).clone()
            full[:, t:t + y2 - y1, left:left + x2 - x1] = crop
            crop = full
        out.append(crop)
    return torch.stack(out)


def _window_sampler(box, pad, hw: tuple[int, int], resized_hw: tuple[int, int], stored_hw: tuple[int, int]):
    """(grid (1, hs, ws, 2), outside (top, bottom, left, right)) of one padded window at its stored size: the
    centre of each stored cell in the padded window, the resized image, then the scene (half-pixel centres, as
    bilinear resizing maps them), and how many stored rows / columns fall in the padding."""
    (y1, y2, x1, x2), (t, _, left, _) = box, pad
    (h, w), (rh, rw), (hs, ws) = hw, resized_hw, stored_hw
    ph, pw = y2 - y1 + pad[0] + pad[1], x2 - x1 + pad[2] + pad[3]
    ry = y1 - t + (torch.arange(hs, dtype=torch.float64) + 0.5) * ph / hs - 0.5  # resized-image coordinates
    rx = x1 - left + (torch.arange(ws, dtype=torch.float64) + 0.5) * pw / ws - 0.5
    outside = [int(((ry < y1 - 0.5)).sum()), int((ry > y2 - 0.5).sum()), int((rx < x1 - 0.5).sum()),
               int((rx > x2 - 0.5).sum())]  # stored rows / columns in the top, bottom, left, right padding
    sy, sx = (ry + 0.5) * h / rh - 0.5, (rx + 0.5) * w / rw - 0.5  # scene coordinates
    gy, gx = (2 * sy + 1) / h - 1, (2 * sx + 1) / w - 1  # grid_sample's normalised coordinates
    grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1).float()[None]
    return grid, outside


def _sample_window(maps: torch.Tensor, grid: torch.Tensor, outside, fill: torch.Tensor) -> torch.Tensor:
    """(K, hs, ws): (K, h, w) scene-size ``maps`` sampled bilinearly at one window's stored cells, ``fill`` in its
    padding (the compact storage's rendering: never the window at full size)."""
    out = F.grid_sample(maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    t, b, left, r = outside
    hs, ws = out.shape[-2:]
    for rows, cols in ((slice(0, t), slice(None)), (slice(hs - b, hs), slice(None)),
                       (slice(None), slice(0, left)), (slice(None), slice(ws - r, ws))):
        out[:, rows, cols] = float(fill)
    return out


class SimBackend:
    """A backend whose sources are simulated from the ground truth (``sample.label``): SIMULATED.

    ``encode`` returns the same :class:`~s2c2seg.bundle.FeatureBundle` the real segmenter returns, on the
    protocol's geometry (short-side resize, sliding-window crops, a patch grid per crop) or one whole-image
    crop (``cfg.whole_image``), with the released pipeline's per-window sources (``cfg.released_sources``).
    Everything downstream runs on it unchanged.
    """

    def __init__(self, cfg: SimConfig | None = None, structure: CategoryStructure | None = None, **dials):
        """``cfg`` (default :class:`SimConfig`), with any field overridden by ``dials`` (e.g. ``dense_blur=0.1``);
        ``structure``: a fixed :class:`CategoryStructure` (default: the one ``cfg`` implies per vocabulary)."""
        cfg = SimConfig() if cfg is None else cfg
        if not isinstance(cfg, SimConfig):
            raise ValueError(f"cfg must be a SimConfig, got {type(cfg).__name__}")
        self.cfg = cfg.replace(**dials) if dials else cfg
        if structure is not None and not isinstance(structure, CategoryStructure):
            raise ValueError(f"structure must be a CategoryStructure, got {type(structure).__name__}")
        self._structure = structure
        self._structures: dict[tuple[int, int | None], CategoryStructure] = {}

    def describe(self) -> dict:
        return {"backend": "sim", "label": LABEL, "model": "simulation (no weights)", "config": self.cfg.to_json(),
                "sources": ["paper", "window"] if self.cfg.released_sources else ["paper"],
                "structure": self._structure.source if self._structure is not None else (
                    f"file {self.cfg.similarity}" if self.cfg.similarity else f"generated(seed={self.cfg.seed})")}

    def structure(self, num_classes: int, background: int | None = None) -> CategoryStructure:
        """The category structure used for a ``num_classes`` vocabulary (cached)."""
        if self._structure is not None:
            if self._structure.num_classes != num_classes:
                raise ValueError(f"the backend's structure has {self._structure.num_classes} classes, the "
                                 f"vocabulary {num_classes}")
            return self._structure
        key = (num_classes, background)
        if key not in self._structures:
            self._structures[key] = CategoryStructure.for_config(num_classes, self.cfg, background)
        return self._structures[key]

    def encode(self, sample: Sample, vocab, protocol: Protocol | None = None) -> FeatureBundle:
        """The simulated feature bundle of ``sample`` for ``vocab`` under ``protocol`` (None: whole image at its
        own size). Reproducible from ``(cfg.seed, sample.id)``."""
        cfg = self.cfg
        if not isinstance(sample, Sample):
            raise ValueError(f"sample must be a Sample, got {type(sample).__name__}")
        if sample.label is None:
            raise ValueError(f"sample {sample.id!r} has no label: the simulation backend builds its features "
                             f"from the ground truth (sample.label)")
        v, _, dataset_bg = resolve_vocabulary(vocab)
        c = v.num_classes
        label = torch.from_numpy(np.asarray(sample.label, dtype=np.int64))
        ignore = int(sample.meta.get("ignore_index", IGNORE_INDEX))  # 65535 for the 16-bit .tif datasets
        bad = label[(label != ignore) & ((label < 0) | (label >= c))]
        if bad.numel():
            raise ValueError(f"sample {sample.id!r}: label value {int(bad[0])} is not a class of the "
                             f"{c}-class vocabulary")
        if cfg.background == "auto" and dataset_bg is None:
            bg = sample.meta.get("background")  # a simulated scene records it; a real image has none
            bg = bg if isinstance(bg, int) and 0 <= bg < c else None
        else:
            bg = _background(cfg, c, dataset_bg)
        structure = self.structure(c, bg)
        h, w = label.shape
        if protocol is None:
            protocol = Protocol(short_side=min(h, w), crop=0, stride=1)
        if not isinstance(protocol, Protocol):
            raise ValueError(f"protocol must be a Protocol, got {type(protocol).__name__}")
        rng = np.random.default_rng([cfg.seed, zlib.crc32(sample.id.encode("utf-8")), 0xB0D1E])
        q2c = v.query_to_class
        q = q2c.numel()
        scene = _Scene.of(label, c, ignore)

        # global cosines
        presence = torch.where(scene.area > 0, scene.area ** cfg.global_area_power, torch.zeros_like(scene.area))
        g = global_scores(presence, structure, cfg)[q2c]
        g = g + cfg.global_noise * torch.from_numpy(rng.standard_normal(q).astype(np.float32))

        # dense logits per crop (on the padded window): active categories mapped, the rest constant
        from ..slide import rescale_size, slide_boxes

        rh, rw = rescale_size(h, w, protocol.short_side)
        whole = cfg.whole_image or protocol.crop == 0
        boxes = torch.tensor([[0, rh, 0, rw]]) if cfg.whole_image else slide_boxes(rh, rw, protocol.crop,
                                                                                    protocol.stride)
        bh, bw = int(boxes[0, 1] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 2])
        pad = (0, 0, 0, 0) if whole else _window_pad(bh, bw, cfg.window_multiple)
        ph, pw = bh + pad[0] + pad[1], bw + pad[2] + pad[3]
        storage = None  # decided (or refused) from the geometry, before any source is built
        if cfg.released_sources:
            storage = window_storage(cfg.storage_request, 0, boxes.shape[0], q, (ph, pw), cfg.budget,
                                     "SimConfig.window_storage")
        d = max(1, cfg.dense_downsample)
        gh, gw = max(1, math.ceil(ph / d)), max(1, math.ceil(pw / d))
        active, dense = _dense_active(scene, structure, cfg)
        if (rh, rw) != (h, w):
            dense = F.interpolate(dense[None], size=(rh, rw), mode="bilinear", align_corners=False)[0]
        absent = _absent_dense(structure, cfg)
        windows = _cut_windows(dense, boxes, pad, absent[active])
        pooled = F.adaptive_avg_pool2d(windows, (gh, gw))
        row = torch.full((c,), -1, dtype=torch.long)  # each class's row in ``pooled``; -1: the constant map
        row[active] = torch.arange(active.numel())
        dense_q = absent[q2c][None, :, None, None].expand(boxes.shape[0], q, gh, gw).clone()
        lit = torch.nonzero(row[q2c] >= 0).flatten()
        if lit.numel():
            dense_q[:, lit] = pooled[:, row[q2c[lit]]]
        if cfg.dense_noise > 0:  # one stream in (window, query, cell) order, drawn in chunks of the work budget
            flat = dense_q.view(-1)
            step = rows_per_chunk(12, cfg.budget.work_bytes)  # a float64 draw and its float32 copy per value
            for i in range(0, flat.numel(), step):
                j = min(flat.numel(), i + step)
                flat[i:j] += cfg.dense_noise * torch.from_numpy(rng.standard_normal(j - i).astype(np.float32))

        # CLIPSeg, in chunks of queries (the noise is one stream in query order)
        world = _ClipsegWorld(scene, structure, cfg, rng)
        scale = cfg.clipseg_max_side / max(h, w)
        hs, ws = (max(1, round(h * scale)), max(1, round(w * scale))) if scale < 1 else (h, w)
        stored = torch.empty(q, hs, ws, dtype=torch.float16)
        mean = torch.empty(q)
        local = None
        if storage is not None:
            local_hw = stored_window_hw((ph, pw), storage[1])
            local = torch.empty(boxes.shape[0], q, *local_hw, dtype=storage[0])
            nothing = clipseg_activation(torch.zeros(()), cfg)
            samplers = None if local_hw == (ph, pw) else [
                _window_sampler(box, pad, (h, w), (rh, rw), local_hw) for box in boxes.tolist()]
        # the chunk's maps at the image, resized and window sizes within the budget's work bytes
        chunk = min(QUERY_CHUNK, rows_per_chunk(4 * (3 * h * w + rh * rw + ph * pw), cfg.budget.work_bytes))
        for start in range(0, q, chunk):
            sl = slice(start, min(q, start + chunk))
            x = world.evidence(q2c[sl])
            if cfg.clipseg_noise > 0:
                x += cfg.clipseg_noise * torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
            maps = clipseg_activation(x, cfg)
            mean[sl] = maps.mean(dim=(1, 2))
            small = F.interpolate(maps[None], size=(hs, ws), mode="area")[0] if scale < 1 else maps
            stored[sl] = small.to(torch.float16)
            if local is not None and samplers is not None:  # compact-<s>: rendered at the stored size
                for n, (grid, outside) in enumerate(samplers):
                    local[n, sl] = _sample_window(maps, grid, outside, nothing).to(local.dtype)
            elif local is not None:
                up = maps if (rh, rw) == (h, w) else F.interpolate(maps[None], size=(rh, rw), mode="bilinear",
                                                                   align_corners=False)[0]
                for n in range(boxes.shape[0]):  # one window at a time: never (N, chunk, ph, pw)
                    local[n, sl] = _cut_windows(up, boxes[n:n + 1], pad, nothing.expand(up.shape[0]))[0].to(local.dtype)

        meta = {"backend": "sim", "label": LABEL, "image_id": sample.id, "seed": cfg.seed,
                "structure": structure.source}
        released = {}
        if cfg.released_sources:
            released = self._released_sources(sample, label, boxes, pad, protocol.short_side, structure, q2c, rng)
            released["window_local"] = local
            meta["storage"] = storage_label(*storage)
        return FeatureBundle(
            dense_logits=dense_q.contiguous(), crop_boxes=boxes.long(),
            resized_hw=torch.tensor([rh, rw], dtype=torch.long), image_hw=torch.tensor([h, w], dtype=torch.long),
            global_sim=g.float(), clipseg_mean=mean, clipseg_maps=stored,
            query_to_class=q2c.clone(), regions=None if sample.regions is None else torch.from_numpy(
                np.asarray(sample.regions, dtype=np.int32)), meta=meta, **released)

    def _released_sources(self, sample: Sample, label: torch.Tensor, boxes: torch.Tensor, pad, short_side: int,
                          structure: CategoryStructure, q2c: torch.Tensor, rng: np.random.Generator) -> dict:
        """``window_global`` (the global world per window: presence from the window's area fractions, plus
        per-window noise), ``window_pad`` and ``input_image`` (the rendered image, short-side resized and
        CLIP-normalised as the segmenter's network input)."""
        from ..slide import LONG_MAX, PIXEL_MEAN, PIXEL_STD, resize_short_side

        cfg = self.cfg
        c = structure.num_classes
        img = torch.from_numpy(np.array(sample.image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        img = resize_short_side(img, short_side, LONG_MAX)
        rh, rw = img.shape[1:]
        lab = F.interpolate(label[None, None].float(), size=(rh, rw), mode="nearest")[0, 0].long()
        rows = []
        for y1, y2, x1, x2 in boxes.tolist():
            win = lab[y1:y2, x1:x2].reshape(-1)
            win = win[win != int(sample.meta.get("ignore_index", IGNORE_INDEX))]
            area = torch.bincount(win, minlength=c).float() / max(1, win.numel())
            presence = torch.where(area > 0, area ** cfg.global_area_power, torch.zeros_like(area))
            rows.append(global_scores(presence, structure, cfg)[q2c])
        window_global = torch.stack(rows)
        window_global += cfg.global_noise * torch.from_numpy(
            rng.standard_normal(tuple(window_global.shape)).astype(np.float32))
        mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD).view(3, 1, 1)
        return {"window_global": window_global.float(), "window_pad": torch.tensor(pad, dtype=torch.long),
                "input_image": ((img.float() - mean) / std).contiguous()}
