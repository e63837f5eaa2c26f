"""A deterministic stand-in backend for the downstream tests (and the torchrun test's ``--backend``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from s2c2seg.bundle import FeatureBundle
from s2c2seg.slide import rescale_size, slide_boxes

PATCH = 8
LABEL = "TEST STAND-IN"
"""What the stand-in's records and tables say: neither real, random-weight nor simulated features."""


class FakeBackend:
    """A deterministic stand-in for a model backend: bundles made from the ground truth plus seeded noise."""

    def __init__(self, baseline="sclip", size="tiny", noise=0.05, **_):
        self.noise = noise
        self.calls = 0

    def describe(self):
        return {"backend": "fake", "noise": self.noise, "label": LABEL}

    def encode(self, sample, vocab, protocol):
        self.calls += 1
        h, w = sample.image.shape[:2]
        seed = int(np.frombuffer(sample.image.tobytes()[:4096], dtype=np.uint8).sum()) + len(sample.id)
        g = torch.Generator().manual_seed(seed)
        q2c = vocab.query_to_class
        q, c = q2c.numel(), vocab.num_classes
        lab = torch.from_numpy(sample.label).long().clamp(max=c)  # 255 -> c (no class)
        onehot = F.one_hot(lab, c + 1)[..., :c].permute(2, 0, 1).float()  # (C, H, W)
        rh, rw = rescale_size(h, w, protocol.short_side)
        present = F.interpolate(onehot[None], size=(rh, rw), mode="bilinear", align_corners=False)[0]
        boxes = slide_boxes(rh, rw, protocol.crop, protocol.stride)
        crops = []
        for y1, y2, x1, x2 in boxes.tolist():
            gh, gw = max((y2 - y1) // PATCH, 1), max((x2 - x1) // PATCH, 1)
            m = F.adaptive_avg_pool2d(present[None, :, y1:y2, x1:x2], (gh, gw))[0][q2c]
            crops.append(0.2 + 0.1 * m + self.noise * torch.randn(q, gh, gw, generator=g))
        dense = torch.stack(crops)
        glob = onehot.mean((1, 2))[q2c] * 0.2 + 0.1 + self.noise * torch.randn(q, generator=g)
        maps = (onehot[q2c] * 0.8 + 0.2 * torch.rand(q, h, w, generator=g)).clamp(0, 1)
        maps = F.interpolate(maps[None], size=(max(h // 2, 1), max(w // 2, 1)), mode="bilinear",
                             align_corners=False)[0]
        regions = None if sample.regions is None else torch.from_numpy(sample.regions).int()
        # the released presets' per-window sources, from a second generator (the draws above stay as they were)
        gw_ = torch.Generator().manual_seed(seed + 1)
        local = torch.stack([(present[q2c][:, y1:y2, x1:x2] * 0.8
                              + 0.2 * torch.rand(q, y2 - y1, x2 - x1, generator=gw_))
                             for y1, y2, x1, x2 in boxes.tolist()]).clamp(0, 1)
        window_global = dense.mean((2, 3)) + self.noise * torch.randn(len(boxes), q, generator=gw_)
        image = F.interpolate(torch.from_numpy(np.array(sample.image, copy=True)).permute(2, 0, 1)[None].float(),
                              size=(rh, rw), mode="bilinear", align_corners=False)[0]
        return FeatureBundle(dense_logits=dense.float(), crop_boxes=boxes, resized_hw=torch.tensor([rh, rw]),
                             image_hw=torch.tensor([h, w]), global_sim=glob.float(),
                             clipseg_mean=maps.float().mean((1, 2)),
                             clipseg_maps=maps.half(), query_to_class=q2c, regions=regions,
                             window_local=local.float(), window_global=window_global.float(),
                             window_pad=torch.zeros(4, dtype=torch.long), input_image=(image - 128.0) / 64.0,
                             meta={"id": sample.id})


def make_backend(baseline="sclip", size="tiny", **kw):
    return FakeBackend(baseline=baseline, size=size, **kw)
