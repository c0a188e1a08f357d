"""Efficient surface localization gives exactly the dense volume, with far fewer queries."""
from __future__ import annotations

import pytest
import torch

from monoport_ros.core.localization import (_ambiguous_children, cell_corners, _upsample_linear,
                                            dense_occupancy, localize_surface, mixed_cells)
from shapes import SHAPES

# coarsest grid of 16 cells per axis (spacing 0.125) at every resolution
CASES = [(64, 3), (128, 4), (256, 5)]


@pytest.mark.parametrize('resolution,depth', CASES)
@pytest.mark.parametrize('name', sorted(SHAPES))
def test_localization_equals_dense(name: str, resolution: int, depth: int) -> None:
    field = SHAPES[name]
    dense = dense_occupancy(field, resolution)
    fast = localize_surface(field, resolution, depth)
    assert torch.equal(fast.occupancy, dense.occupancy)
    # every queried value is the field's own value, and queries were counted honestly
    assert int(fast.queried.sum()) == fast.queries
    assert fast.queries == sum(fast.queries_per_level)
    # queries scale with surface area (about 1/resolution of the dense count); the plates have the
    # most
    bound = {64: 0.2, 128: 0.1, 256: 0.05}[resolution]
    assert fast.queries < bound * dense.queries, (fast.queries, dense.queries)


def test_surface_band_is_queried() -> None:
    """Every grid point next to an inside/outside change was actually evaluated."""
    vol = localize_surface(SHAPES['torus'], 64, 3)
    occ = vol.occupancy
    for axis in range(3):
        a = occ.narrow(axis, 0, 64)
        b = occ.narrow(axis, 1, 64)
        change = a != b
        assert vol.queried.narrow(axis, 0, 64)[change].all()
        assert vol.queried.narrow(axis, 1, 64)[change].all()


def test_too_coarse_start_can_miss_thin_parts() -> None:
    """
    Show the documented limit: a plate thinner than the coarsest spacing may be lost.

    So the test above is not vacuous: the octree depth matters.
    """
    def plate(p: torch.Tensor) -> torch.Tensor:
        return ((p[..., 1] - 0.03).abs() < 0.02).float() * (p.abs() < 0.7).all(-1).float()
    dense = dense_occupancy(plate, 128)
    coarse = localize_surface(plate, 128, 5)      # coarsest spacing 0.25 >> thickness 0.04
    fine = localize_surface(plate, 128, 2)        # spacing 0.03 < thickness
    assert dense.occupancy.any()
    assert not torch.equal(coarse.occupancy, dense.occupancy)
    assert torch.equal(fine.occupancy, dense.occupancy)


def test_dense_depth_one_queries_everything() -> None:
    vol = localize_surface(SHAPES['sphere'], 32, 1)
    assert vol.queries == 33 ** 3 == vol.dense_queries


def test_batches_bound_memory() -> None:
    seen = []

    def field(p: torch.Tensor) -> torch.Tensor:
        seen.append(p.shape[0])
        return SHAPES['sphere'](p)
    localize_surface(field, 64, 3, batch_size=1000)
    assert max(seen) <= 1000


@pytest.mark.parametrize('resolution,depth', [(48, 2), (64, 0), (64, 8), (1, 1)])
def test_invalid_settings_are_refused(resolution: int, depth: int) -> None:
    with pytest.raises(ValueError):
        localize_surface(SHAPES['sphere'], resolution, depth)


@pytest.fixture(scope='module')
def human_field():
    """Make an anny body solid on the 256 grid (exact at the 64 and 128 grid points too)."""
    from monoport_ros.offline.body_field import human_occupancy_field
    return human_occupancy_field(256, seed=5)


@pytest.mark.parametrize('resolution,depth', CASES)
def test_localization_equals_dense_on_a_human_body(human_field, resolution: int,
                                                   depth: int) -> None:
    """An anny body labelled inside/outside by Open3D: identical volume, far fewer queries."""
    dense = dense_occupancy(human_field, resolution, batch_size=1 << 20)
    fast = localize_surface(human_field, resolution, depth, batch_size=1 << 20)
    assert dense.occupancy.sum() > 1000
    assert torch.equal(fast.occupancy, dense.occupancy)
    assert fast.queries < {64: 0.1, 128: 0.03, 256: 0.01}[resolution] * dense.queries


def test_keep_largest_component_removes_floating_blobs() -> None:
    from monoport_ros.core.localization import keep_largest_component

    def body_and_blob(p: torch.Tensor) -> torch.Tensor:
        big = SHAPES['sphere'](p)
        blob = ((p - torch.tensor([-0.8, 0.8, 0.0])).norm(dim=-1) < 0.08).float()
        return torch.maximum(big, blob)
    vol = dense_occupancy(body_and_blob, 64)
    before = int(vol.occupancy.sum())
    removed = keep_largest_component(vol)
    assert removed > 0
    assert int(vol.occupancy.sum()) == before - removed
    assert torch.equal(vol.occupancy, dense_occupancy(SHAPES['sphere'], 64).occupancy)


@pytest.mark.parametrize('region', [((8, 40), (12, 52), (0, 64)), ((3, 61), (0, 64), (17, 50))])
def test_region_equals_dense_when_the_field_is_outside_beyond_it(region) -> None:
    """A non-cubic, unaligned region gives the dense result of a field empty outside it."""
    (x0, x1), (y0, y1), (z0, z1) = region

    def field(pts: torch.Tensor) -> torch.Tensor:
        idx = (pts + 1.0) * 32.0
        inside = ((idx[:, 0] > x0 + 1) & (idx[:, 0] < x1 - 1) & (idx[:, 1] > y0 + 1)
                  & (idx[:, 1] < y1 - 1) & (idx[:, 2] > z0 + 1) & (idx[:, 2] < z1 - 1))
        return SHAPES['torus'](pts) * inside
    dense = dense_occupancy(field, 64)
    fast = localize_surface(field, 64, 3, region=region)
    assert dense.occupancy.any()
    assert torch.equal(fast.occupancy, dense.occupancy)
    # nothing outside the (stride-aligned) region was asked or set
    outside = torch.ones_like(fast.queried)
    outside[fast.box] = False
    assert not fast.queried[outside].any() and not fast.values[outside].any()
    assert all(b.start <= lo and b.stop > hi for b, (lo, hi) in zip(fast.box, region))
    assert fast.queries < localize_surface(field, 64, 3).queries


def test_inside_bounds_follow_edits() -> None:
    vol = localize_surface(SHAPES['sphere'], 64, 3)
    box = vol.inside_bounds()
    occ = vol.occupancy
    assert occ[box].sum() == occ.sum()
    assert all(occ.narrow(a, b.start, 1).any() and occ.narrow(a, b.stop - 1, 1).any()
               for a, b in enumerate(box))
    vol.values.zero_()
    vol.values_changed()
    assert vol.inside_bounds() is None


def _blobs(p: torch.Tensor) -> torch.Tensor:
    # a ball, a small far-away ball and a slab cut by the grid top face
    big = (p - torch.tensor([0.1, 0.0, 0.0])).norm(dim=-1) < 0.45
    small = (p - torch.tensor([-0.7, 0.7, 0.6])).norm(dim=-1) < 0.12
    slab = (p[..., 1] > 0.85) & (p[..., 0].abs() < 0.2) & (p[..., 2].abs() < 0.2)
    return (big | small | slab).float()


@pytest.mark.parametrize('case', ['sphere', 'torus', 'thin_plates', 'capsules', 'blobs',
                                  'blobs_in_region', 'dense'])
def test_inside_bounds_gathered_while_localizing_equal_a_full_pass(case: str) -> None:
    from monoport_ros.core.localization import keep_largest_component, surface_bounds
    field = _blobs if case.startswith('blobs') else SHAPES.get(case, SHAPES['torus'])
    region = ((8, 60), (4, 64), (0, 64)) if case == 'blobs_in_region' else None
    vol = localize_surface(field, 64, 1 if case == 'dense' else 3, region=region)
    assert vol.inside_bounds() == surface_bounds(vol.occupancy, margin=0)
    removed = keep_largest_component(vol)
    assert (removed > 0) == case.startswith('blobs')
    assert vol.inside_bounds() == surface_bounds(vol.occupancy, margin=0)


def test_linear_upsampling_matches_trilinear_interpolation_in_a_strided_view() -> None:
    torch.manual_seed(0)
    coarse = torch.rand(5, 9, 7)
    want = torch.nn.functional.interpolate(coarse[None, None], size=(9, 17, 13), mode='trilinear',
                                           align_corners=True)[0, 0]
    volume = torch.full((30, 20, 16), -1.0)
    view = volume[3:21:2, 2:19, 1:14]           # strided, like one level inside a region
    _upsample_linear(coarse.clone(), view)
    assert torch.allclose(view, want, atol=1e-6)
    assert torch.equal(view[::2, ::2, ::2], coarse)
    outside = torch.ones_like(volume, dtype=torch.bool)
    outside[3:21:2, 2:19, 1:14] = False
    assert bool((volume[outside] == -1.0).all())


def test_mixed_cells_and_their_corners_match_a_direct_count() -> None:
    torch.manual_seed(1)
    occ = torch.rand(6, 7, 5) > 0.6
    corners = torch.stack([occ[dx:dx + 5, dy:dy + 6, dz:dz + 4]
                           for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)])
    want = corners.any(dim=0) & ~corners.all(dim=0)
    assert torch.equal(mixed_cells(occ), want)
    cells = torch.rand(5, 6, 4) > 0.8
    points = torch.zeros(6, 7, 5, dtype=torch.bool)
    for i, j, k in cells.nonzero().tolist():
        points[i:i + 2, j:j + 2, k:k + 2] = True
    assert torch.equal(cell_corners(cells), points)


def test_ambiguous_children_match_a_direct_count() -> None:
    torch.manual_seed(2)
    full = torch.rand(9, 8, 11) > 0.5
    for occ in (full[:5, :6, :4], full[::2, 1::2, ::3]):     # a box and a strided view
        want = torch.zeros(tuple(2 * n - 1 for n in occ.shape), dtype=torch.bool)
        for i in range(want.shape[0]):
            for j in range(want.shape[1]):
                for k in range(want.shape[2]):
                    parents = occ[i // 2:(i + 1) // 2 + 1, j // 2:(j + 1) // 2 + 1,
                                  k // 2:(k + 1) // 2 + 1]
                    want[i, j, k] = bool(parents.any()) and not bool(parents.all())
        assert want.any()
        assert torch.equal(_ambiguous_children(occ), want)


def test_automatic_levels_start_on_a_32_grid_on_a_cpu_and_finer_on_a_gpu() -> None:
    from monoport_ros.core.config import MonoPortConfig, octree_depth_for
    assert [octree_depth_for(r) for r in (16, 32, 64, 128, 256, 512)] == [1, 1, 2, 3, 4, 5]
    assert [octree_depth_for(r, 'cuda') for r in (16, 32, 64, 128, 256, 512)] == [1, 1, 2, 2, 2, 3]
    cfg = MonoPortConfig()
    assert cfg.octree_depth == 0        # auto
    assert cfg.localization_levels('cpu') == 3 and cfg.localization_levels('cuda') == 2
    assert cfg.localization_levels('cuda:1') == 2
    assert cfg.replace(resolution=256).localization_levels() == 4
    assert cfg.replace(octree_depth=2).localization_levels('cpu') == 2   # explicit wins
    with pytest.raises(ValueError, match='too deep'):
        cfg.replace(resolution=16, octree_depth=5)
