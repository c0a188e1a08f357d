"""Occupancy smoothing: fewer voxel-scale bumps, and marching cubes still sees every crossing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from monoport_ros.core.localization import localize_surface
from monoport_ros.core.meshing import extract_mesh, is_watertight
from monoport_ros.core.smoothing import gaussian_kernel, smooth_volume

from shapes import capsules

RES = 64
CENTRE, RADIUS = torch.tensor([0.05, -0.02, 0.03]), 0.5


def _noisy_ball(p: torch.Tensor) -> torch.Tensor:
    """Return a soft ball whose occupancy carries fixed voxel-scale noise (a small network)."""
    d = (p - CENTRE).norm(dim=-1)
    clean = torch.sigmoid((RADIUS - d) * 40.0)
    noise = torch.sin(p[:, 0] * 311.0) * torch.sin(p[:, 1] * 173.0 + 1.0) * torch.sin(
        p[:, 2] * 257.0 + 2.0)
    return (clean + 0.3 * noise).clamp(0.0, 1.0)


def _radius_spread(vertices: np.ndarray) -> float:
    return float(np.linalg.norm(vertices - CENTRE.numpy(), axis=1).std())


def _same_as_unmasked_marching_cubes(vol, mesh) -> bool:
    """``mesh`` (marching cubes over the trusted cells only) equals marching cubes everywhere."""
    box = vol.inside_bounds(margin=1)
    padded = np.pad(vol.values[box].numpy(), 1)
    verts, faces, _, _ = marching_cubes(padded, level=vol.threshold, allow_degenerate=False)
    return len(mesh.faces) == len(faces) and len(mesh.vertices) == len(verts)


def test_gaussian_kernel() -> None:
    k = gaussian_kernel(1.0)
    assert len(k) == 5 and math.isclose(sum(k), 1.0)
    assert k == k[::-1] and k[2] == max(k)
    assert len(gaussian_kernel(0.3)) == 3                  # at least one tap each side


def test_smoothing_removes_voxel_scale_bumps() -> None:
    vol = localize_surface(_noisy_ball, RES, 3)
    before = _radius_spread(extract_mesh(vol).vertices)
    assert smooth_volume(vol, 1.0) > 0
    mesh = extract_mesh(vol)
    assert _same_as_unmasked_marching_cubes(vol, mesh)
    assert _radius_spread(mesh.vertices) < 0.6 * before
    # the ball keeps its size (no shrinking of a shape much wider than the kernel)
    r = np.linalg.norm(mesh.vertices - CENTRE.numpy(), axis=1).mean()
    assert abs(r - RADIUS) < 2.0 / RES


@pytest.mark.parametrize('sigma', [1.0, 2.0])
def test_masked_marching_cubes_still_finds_every_crossing(sigma: float) -> None:
    """Voxels that change side are trusted, so the skipped cells hold no surface afterwards."""
    vol = localize_surface(capsules, RES, 3)      # thin limbs: wide kernels move the surface
    flipped = smooth_volume(vol, sigma)
    assert flipped > 0
    mesh = extract_mesh(vol)
    assert is_watertight(mesh)
    assert _same_as_unmasked_marching_cubes(vol, mesh)


def test_only_the_localized_box_changes_and_zero_sigma_is_off() -> None:
    vol = localize_surface(capsules, RES, 3)
    vol.box = tuple(slice(4, RES - 3) for _ in range(3))     # as if a hull box had been used
    outside = torch.ones_like(vol.queried)
    outside[vol.box] = False
    vol.values[outside] = 0.0
    before = vol.values.clone()
    assert smooth_volume(vol, 0.0) == 0
    assert torch.equal(vol.values, before)
    smooth_volume(vol, 1.5)
    assert torch.equal(vol.values[outside], before[outside])
    assert not torch.equal(vol.values, before)
    empty = localize_surface(lambda p: torch.zeros(p.shape[0]), RES, 3)
    assert smooth_volume(empty, 1.0) == 0
