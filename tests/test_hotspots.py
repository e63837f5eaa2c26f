"""The hot spots the benchmarks found and rewrote (docs/benchmarks.md), against plain re-derivations."""
from __future__ import annotations

import torch

from s2c2seg.spatial_refine import (
    SpatialRefineConfig,
    affinity,
    neighbours,
    propagate,
    spatial_refine,
)

OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
"""The 8 neighbours in the 3x3 unfold's row-major order, the centre left out."""


def reference_propagate(maps, weights, dilations):
    """float64 pixel loops: out[c, y, x] = Σ_dilation Σ_neighbour w[slot, y, x] · maps[c, y+dy·d, x+dx·d]
    (0 outside)."""
    m, wt = maps.double(), weights.double()
    h, w = m.shape[-2:]
    out = torch.zeros_like(m)
    for j, d in enumerate(dilations):
        for k, (dy, dx) in enumerate(OFFSETS):
            for y in range(h):
                for x in range(w):
                    yy, xx = y + dy * d, x + dx * d
                    if 0 <= yy < h and 0 <= xx < w:
                        out[:, y, x] += wt[8 * j + k, y, x] * m[:, yy, xx]
    return out


def test_propagate_matches_pixel_loops():
    g = torch.Generator().manual_seed(0)
    maps, dil = torch.rand(3, 9, 11, generator=g), (1, 2, 4, 12)  # 12 > the image: every such neighbour is outside
    weights = torch.rand(8 * len(dil), 9, 11, generator=g)
    torch.testing.assert_close(propagate(maps, weights, dil).double(), reference_propagate(maps, weights, dil),
                               rtol=1e-6, atol=1e-6)


def test_propagate_equals_the_unfold_form():
    g = torch.Generator().manual_seed(1)
    maps, dil = torch.rand(70, 13, 17, generator=g), (1, 3, 8)  # more maps than one unfold chunk used to hold
    weights = torch.rand(8 * len(dil), 13, 17, generator=g)
    unfold = sum((torch.stack(neighbours(maps, d), dim=1) * weights[None, 8 * j:8 * (j + 1)]).sum(dim=1)
                 for j, d in enumerate(dil))
    torch.testing.assert_close(propagate(maps, weights, dil), unfold, rtol=1e-5, atol=1e-6)


def test_spatial_refine_keeps_a_constant_map_where_no_neighbour_is_outside():
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2))
    cfg = SpatialRefineConfig(iterations=2, dilations=(1, 2))
    out = spatial_refine(image, torch.full((2, 40, 40), 0.5), cfg)
    w = affinity(image, cfg.dilations)
    assert torch.allclose(w.sum(0), torch.ones(40, 40), atol=1e-5)  # weights sum to one per pixel
    torch.testing.assert_close(out[:, 4:-4, 4:-4], torch.full((2, 32, 32), 0.5), rtol=1e-5, atol=1e-5)


def test_released_view_computes_the_refinement_weights_once_and_changes_no_label():
    from test_released import make_bundle  # tests/ is on the path, as for fakes

    from s2c2seg.data.protocols import get_protocol
    from s2c2seg.predict import BundleView, predict
    from s2c2seg.presets import get_preset
    from s2c2seg.released import released_view

    proto = get_protocol("voc21", "proxyclip")
    bundle = make_bundle(seed=3)
    view = BundleView(bundle)
    for iterations in (3, 1):  # two settings on one view: one set of weights
        preset = get_preset("released++", "voc21", **{"post.spatial.iterations": iterations})
        shared = predict(view, proto, method="s2c2seg", preset=preset).label_map
        fresh = predict(bundle, proto, method="s2c2seg", preset=preset).label_map  # a bare bundle: no memo
        assert torch.equal(shared, fresh)
    assert len(released_view(view)._affinity) == 1
    image, hw, cfg = bundle.input_image, (25, 37), SpatialRefineConfig(iterations=2)
    from s2c2seg.spatial_refine import image_affinity

    probs = torch.rand(4, *hw, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(spatial_refine(image, probs, cfg, image_affinity(image, hw, cfg)),
                               spatial_refine(image, probs, cfg), rtol=0, atol=0)
