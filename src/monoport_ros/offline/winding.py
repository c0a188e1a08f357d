"""Inside/outside of closed meshes that may overlap themselves (winding-number votes)."""
from __future__ import annotations

import numpy as np

from ..core.o3d import o3d


def _raycasting_scene(vertices: np.ndarray, faces: np.ndarray):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


# Ray directions of the inside/outside vote (unit, away from the axes and from each other).
_OCC_DIRS = np.array([[0.267, 0.534, 0.802], [-0.707, 0.141, -0.693], [0.577, -0.801, -0.160]])


def occupancy(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
              nthreads: int = 0) -> np.ndarray:
    """
    Inside (True) / outside of a closed, outward-oriented mesh for (N, 3) points.

    Posed skinned bodies self-intersect a little (arm against torso, fingers), where parity
    counting (Open3D's ``compute_occupancy``) calls the overlap "outside". Here the winding number
    is counted instead along three rays per point (Open3D ``list_intersections``: +1 per exit,
    -1 per entry), and the majority of the three "winding > 0" votes decides.
    """
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    scene = _raycasting_scene(vertices, faces)
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    votes = np.zeros(len(pts), np.int32)
    for d in _OCC_DIRS:
        rays = np.concatenate([pts, np.broadcast_to(d.astype(np.float32), pts.shape)], axis=1)
        hits = scene.list_intersections(o3d.core.Tensor(rays), nthreads=nthreads)
        ray_ids = hits['ray_ids'].numpy().astype(np.int64)
        crossing = np.sign(fn[hits['primitive_ids'].numpy().astype(np.int64)] @ d)
        votes += np.bincount(ray_ids, weights=crossing, minlength=len(pts)) > 0.5
    return votes >= 2
