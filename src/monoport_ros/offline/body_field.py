"""
An anny body's occupancy in model space, labelled by Open3D: a known shape for localization checks.

Used by ``bench/localization.py`` and the localization tests.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes

from monoport_ros.core.o3d import o3d
from monoport_ros.offline.people import make_person


def human_mesh_field(seed: int = 3, pose: str | None = None):
    """
    Query function (N, 3) -> (N,) for a random posed person scaled to fill 85% of the cube.

    Three rays vote per point: single-ray parity leaves isolated one-voxel "inside" specks where a
    ray grazes an edge.
    """
    person = make_person(np.random.default_rng(seed), pose)
    v = person.vertices.copy()
    v -= (v.max(0) + v.min(0)) / 2
    v *= 0.85 / (np.abs(v).max())
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)),
                        o3d.core.Tensor(person.faces.astype(np.uint32)))

    def field(points: torch.Tensor) -> torch.Tensor:
        occ = scene.compute_occupancy(o3d.core.Tensor(points.numpy().astype(np.float32)),
                                      nsamples=3)
        return torch.from_numpy(occ.numpy().astype(np.float32))
    return field


def human_occupancy_field(resolution: int, seed: int = 3, pose: str | None = None):
    """
    Return the body as a solid on the ``resolution`` grid (and every coarser power-of-two grid).

    The body mesh intersects itself in places (armpits, crossed limbs), and ray parity then leaves
    sealed one- or two-voxel "outside" pockets inside the body; a solid body has none, so they are
    filled. Returns ``(field, dense_count)``: the field looks the grid value up, exact at grid
    points.
    """
    mesh_field = human_mesh_field(seed, pose)
    n = resolution + 1
    lin = torch.linspace(-1.0, 1.0, n)
    occ = np.zeros((n, n, n), bool)
    for i in range(n):                       # slab by slab keeps memory small at 512^3
        gy, gz = torch.meshgrid(lin, lin, indexing='ij')
        pts = torch.stack([torch.full_like(gy, float(lin[i])), gy, gz], -1).reshape(-1, 3)
        occ[i] = mesh_field(pts).numpy().reshape(n, n) > 0.5
    solid = torch.from_numpy(binary_fill_holes(occ).astype(np.float32))

    def field(points: torch.Tensor) -> torch.Tensor:
        idx = ((points + 1.0) * (resolution / 2.0)).round().long().clamp(0, resolution)
        return solid[idx[:, 0], idx[:, 1], idx[:, 2]]
    return field
