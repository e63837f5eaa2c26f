"""Region masks: anchors' .npz loading, painting, nearest resize, DBSCAN merge, majority vote."""
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components

from s2c2seg.regions import (NPZ_KEY, load_region_mask, majority_vote, masks_to_regions, merge_regions,
                             region_mask_path, resize_nearest)


def _random_regions(h, w, n, seed):
    """Blocky region map with ids 0..n-1 (0 = unsegmented), like a coarse SAM mask."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n, (max(h // 4, 1), max(w // 4, 1)), generator=g)
    return resize_nearest(coarse, (h, w))


# ---------------------------------------------------------------------------------------------- loading
def test_npz_of_anchors_format_loads(tmp_path):
    mask = np.random.default_rng(0).integers(0, 7, size=(37, 53)).astype(np.int64)
    path = region_mask_path(tmp_path, "2007_000033.jpg")
    assert path == tmp_path / "2007_000033.npz"
    np.savez_compressed(path, **{NPZ_KEY: mask})
    out = load_region_mask(path)
    assert out.dtype == np.int32 and out.shape == (37, 53)
    np.testing.assert_array_equal(out, mask)


def test_missing_mask_file_names_the_path(tmp_path):
    path = tmp_path / "masks" / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz") as err:
        load_region_mask(path)
    assert str(path) in str(err.value)


def test_bad_mask_files_raise(tmp_path):
    np.savez(tmp_path / "wrong_key.npz", masks=np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="instance_mask"):
        load_region_mask(tmp_path / "wrong_key.npz")
    np.savez(tmp_path / "three_d.npz", instance_mask=np.zeros((2, 4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="2-D"):
        load_region_mask(tmp_path / "three_d.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_region_mask(tmp_path / "garbage.npz")


def test_masks_to_regions_paints_small_first_large_last():
    big = np.zeros((6, 6), bool)
    big[:4, :4] = True
    small = np.zeros((6, 6), bool)
    small[3:5, 3:5] = True  # overlaps big at (3, 3)
    out = masks_to_regions([big, small], (6, 6))
    # small (area 4) gets id 1, big (area 16) id 2 and is painted last, so it wins the overlap
    assert out[3, 3] == 2 and out[4, 4] == 1 and out[0, 0] == 2 and out[5, 5] == 0
    assert masks_to_regions([], (3, 2)).tolist() == [[0, 0]] * 3
    with pytest.raises(ValueError, match="masks\\[0\\]"):
        masks_to_regions([np.ones((2, 2), bool)], (3, 3))


# ---------------------------------------------------------------------------------------------- resize
@pytest.mark.parametrize("src,dst", [((336, 336), (42, 42)), ((42, 42), (21, 21)), ((21, 21), (42, 42)),
                                     ((375, 500), (336, 448)), ((17, 23), (40, 9))])
def test_resize_nearest_equals_torch_interpolate(src, dst):
    regions = _random_regions(*src, n=9, seed=1)
    ref = F.interpolate(regions[None, None].float(), size=dst, mode="nearest")[0, 0].long()
    assert torch.equal(resize_nearest(regions, dst), ref)


def test_resize_nearest_keeps_large_ids_and_takes_top_left_pixel():
    regions = torch.arange(16 * 16, dtype=torch.int64).view(16, 16) + 2**40  # not representable in float32
    out = resize_nearest(regions, (2, 2))
    assert out.tolist() == [[regions[0, 0].item(), regions[0, 8].item()],
                            [regions[8, 0].item(), regions[8, 8].item()]]
    with pytest.raises(ValueError, match="size"):
        resize_nearest(regions, (0, 2))


# ---------------------------------------------------------------------------------------------- merge
def _merge_reference(regions, feats, eps):
    """Direct re-computation: region means, cosine, distance max(sim)-sim, connected components of d <= eps."""
    ids = torch.unique(regions)
    means = torch.stack([feats[regions == i].mean(0) for i in ids])
    means = F.normalize(means, dim=1)[1:]
    sim = means @ means.T
    dist = (sim.max() - sim).numpy()
    _, comp = connected_components(dist <= eps, directed=False)
    out = torch.zeros_like(regions)
    for k, i in enumerate(ids[1:].tolist()):
        out[regions == i] = int(comp[k]) + 1
    return out


def _same_partition(a, b):
    pairs = set(zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))
    return len(pairs) == len(set(a.reshape(-1).tolist())) == len(set(b.reshape(-1).tolist()))


@pytest.mark.parametrize("seed", range(4))
def test_merge_regions_equals_connected_components(seed):
    g = torch.Generator().manual_seed(seed)
    regions = _random_regions(16, 20, n=12, seed=seed) + 3  # minimum id 3, not 0
    # features: 4 prototypes + noise, so some regions merge and others do not
    protos = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    region_proto = torch.randint(0, 4, (16,), generator=g)
    feats = protos[region_proto[regions]] + 0.15 * torch.randn(16, 20, 8, generator=g)
    feats = F.normalize(feats, dim=-1)
    merged = merge_regions(regions, feats, eps=0.2, min_samples=1)
    ref = _merge_reference(regions, feats, 0.2)
    assert _same_partition(merged, ref)
    # unsegmented region (minimum id) -> 0 and never merged with anything
    assert torch.equal(merged == 0, regions == regions.min())
    assert len(torch.unique(merged)) < len(torch.unique(regions))  # the prototypes force some merging


def test_merge_regions_merges_identical_and_keeps_distinct():
    regions = torch.tensor([[0, 1, 2, 3]]).repeat(2, 1)
    feats = torch.zeros(2, 4, 2)
    feats[:, 1] = torch.tensor([1.0, 0.0])
    feats[:, 2] = torch.tensor([1.0, 0.0])
    feats[:, 3] = torch.tensor([0.0, 1.0])
    feats[:, 0] = torch.tensor([0.0, 1.0])  # unsegmented, same as region 3: must not merge with it
    merged = merge_regions(regions, feats)
    assert merged[0].tolist() == [0, 1, 1, 2]


def test_merge_regions_two_ids_is_identity_relabel():
    regions = torch.tensor([[5, 5, 9], [9, 9, 5]])
    feats = F.normalize(torch.randn(2, 3, 4), dim=-1)
    assert merge_regions(regions, feats).tolist() == [[0, 0, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="feats"):
        merge_regions(regions, feats[:1])


# ---------------------------------------------------------------------------------------------- vote
def _vote_reference(pred, regions):
    out = pred.clone()
    ids = torch.unique(regions)
    for i in ids[1:].tolist():
        sel = regions == i
        counts = Counter(pred[sel].tolist())
        best = max(counts.values())
        out[sel] = min(label for label, c in counts.items() if c == best)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_majority_vote_equals_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    regions = _random_regions(24, 31, n=8, seed=seed + 10)
    pred = torch.randint(0, 5, (24, 31), generator=g)
    out = majority_vote(pred, regions)
    assert torch.equal(out, _vote_reference(pred, regions))
    # the official loop's torch.mode agrees (its CPU tie rule is the smallest label too)
    ref = pred.clone()
    for i in torch.unique(regions)[1:]:
        ref[regions == i] = torch.mode(pred[regions == i])[0]
    assert torch.equal(out, ref)


def test_majority_vote_ties_and_unsegmented():
    regions = torch.tensor([[0, 0, 4, 4], [7, 7, 4, 4]])
    pred = torch.tensor([[3, 1, 2, 5], [9, 6, 5, 2]])
    out = majority_vote(pred, np.asarray(regions))
    # region 0 (minimum) keeps labels; region 4 tie 2 vs 5 -> 2; region 7 tie 9 vs 6 -> 6
    assert out.tolist() == [[3, 1, 2, 2], [6, 6, 2, 2]]
    with pytest.raises(ValueError, match="same size"):
        majority_vote(pred, regions[:1])
    with pytest.raises(ValueError, match="integer"):
        majority_vote(pred.float(), regions)
