"""Meshing of a localized occupancy volume: marching cubes (scikit-image), decimation (Open3D)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.measure import marching_cubes
import torch
import torch.nn.functional as F

from .localization import LocalizedVolume


@dataclass
class SurfaceMesh:
    """Triangle mesh in model space; ``colors`` (V, 3) float32 in [0, 1] or None."""

    vertices: np.ndarray     # (V, 3) float32
    faces: np.ndarray        # (F, 3) int32, counter-clockwise seen from outside
    colors: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """Whether there is no triangle."""
        return self.faces.shape[0] == 0

    @staticmethod
    def nothing() -> 'SurfaceMesh':
        """Return the empty mesh."""
        return SurfaceMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32),
                           np.zeros((0, 3), np.float32))


def extract_mesh(volume: LocalizedVolume, stride: int = 1) -> SurfaceMesh:
    """
    Iso-surface of ``volume.values`` at its threshold, in model space; closed for closed shapes.

    Only the box around the inside voxels is meshed, padded with outside values so that a shape
    touching the grid border is still closed. ``stride`` > 1 meshes every stride-th grid point (a
    coarser, cheaper mesh from the same volume; about stride^2 times fewer triangles).
    """
    box = volume.inside_bounds(margin=stride)
    if box is None:
        return SurfaceMesh.nothing()
    start = [b.start - b.start % stride for b in box]        # stay on the coarser grid
    box = tuple(slice(s0, b.stop, stride) for s0, b in zip(start, box))
    sub = volume.values[box].cpu().numpy()          # scikit-image meshes on the host
    padded = np.pad(sub, 1, mode='constant', constant_values=0.0)
    mask = _surface_cells(volume, box) if stride == 1 else None
    verts, faces, _, _ = marching_cubes(padded, level=volume.threshold, allow_degenerate=False,
                                        mask=mask)
    offset = np.array(start, dtype=np.float32) / stride - 1.0
    verts = (verts.astype(np.float32) + offset) * (2.0 * stride / volume.resolution) - 1.0
    # skimage orients faces for increasing values = outward normals pointing to low values when
    # inside is high; flip to counter-clockwise-from-outside.
    faces = np.ascontiguousarray(faces[:, ::-1]).astype(np.int32)
    return SurfaceMesh(verts, faces)


def surface_points(volume: LocalizedVolume) -> torch.Tensor:
    """
    Points where grid edges cross the iso-level, in model space, on the volume's device.

    These are the vertices :func:`extract_mesh` makes (marching cubes puts one on every such edge,
    linearly interpolated), without the triangles: a point cloud without marching cubes on the
    host. Order differs from the mesh's.
    """
    box = volume.inside_bounds(margin=1)
    if box is None:
        return torch.zeros((0, 3), dtype=torch.float32, device=volume.values.device)
    sub = F.pad(volume.values[box].float(), (1, 1) * 3)    # outside around, as extract_mesh
    inside = sub > volume.threshold
    start = torch.tensor([b.start - 1 for b in box], dtype=torch.float32, device=sub.device)
    between, at_grid = [], []
    for axis in range(3):
        n = sub.shape[axis] - 1
        crossing = inside.narrow(axis, 0, n) != inside.narrow(axis, 1, n)
        lo, hi = sub.narrow(axis, 0, n)[crossing], sub.narrow(axis, 1, n)[crossing]
        points = torch.nonzero(crossing).to(torch.float32)
        frac = (volume.threshold - lo) / (hi - lo)
        points[:, axis] += frac
        on_point = (frac == 0) | (frac == 1)    # a value at the iso-level: shared by its edges
        between.append(points[~on_point])
        at_grid.append(points[on_point])
    points = torch.cat(between + [torch.unique(torch.cat(at_grid), dim=0)])
    return (points + start) * (2.0 / volume.resolution) - 1.0


def _surface_cells(volume: LocalizedVolume, box: tuple[slice, slice, slice]) -> np.ndarray:
    """
    Marching-cubes mask (padded ``box``) of the points whose cells may hold the surface.

    Every corner of a cell the surface crosses inside the localized box was queried (see
    :mod:`core.localization`), so marching cubes can skip cells with unqueried corners, which
    halves its time at 256^3 with the same mesh. Trusted as well: the box's edges (outside it is
    outside, unqueried) and the padding, so shapes touching either are still closed.
    """
    mask = np.array(volume.queried[box].cpu().numpy())      # a copy, from any device
    inner = []
    for b, loc, n in zip(box, volume.box, mask.shape):
        lo = min(max(loc.start + 1 - b.start, 0), n)
        inner.append(slice(lo, max(min(loc.stop - 1 - b.start, n), lo)))
    edge = np.ones(mask.shape, bool)
    edge[tuple(inner)] = False
    mask |= edge
    mask = np.pad(mask, 1, mode='constant', constant_values=True)
    for axis in range(3):           # the layer next to the padding as well
        mask[(slice(None),) * axis + (1,)] = True
        mask[(slice(None),) * axis + (-2,)] = True
    return mask


def mesh_within_budget(volume: LocalizedVolume, mesh: SurfaceMesh | None,
                       max_triangles: int, triangles: int = 0) -> SurfaceMesh:
    """
    Return a mesh of at most ``max_triangles`` (0 = no limit).

    That is ``mesh`` (the full :func:`extract_mesh`), or one re-extracted on a coarser grid stride
    (fast) and, if still too large, quadric-decimated (Open3D). Without ``mesh``, ``triangles``
    estimates its size (a closed surface has about twice as many triangles as vertices, e.g.
    :func:`surface_points`) and the full mesh is extracted only if it fits. Colours are not carried
    over (the caller colours the vertices it publishes).
    """
    if mesh is None and (max_triangles <= 0 or triangles <= max_triangles):
        mesh = extract_mesh(volume)         # may still be over (the estimate is approximate)
    if mesh is not None:
        triangles = len(mesh.faces)
    if max_triangles <= 0 or triangles <= max_triangles:
        return mesh
    stride = 1
    while triangles / (stride * stride) > max_triangles and \
            volume.resolution // (stride * 2) >= 8:
        stride *= 2
    if stride > 1:
        small = extract_mesh(volume, stride)
    else:
        small = mesh if mesh is not None else extract_mesh(volume)
    return decimate(SurfaceMesh(small.vertices, small.faces), max_triangles)


def decimate(mesh: SurfaceMesh, max_triangles: int) -> SurfaceMesh:
    """Quadric decimation (Open3D) down to ``max_triangles``; colours follow the vertices."""
    if max_triangles <= 0 or mesh.faces.shape[0] <= max_triangles:
        return mesh
    from .o3d import o3d
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
                                  o3d.utility.Vector3iVector(mesh.faces))
    if mesh.colors is not None and len(mesh.colors) == len(mesh.vertices):
        m.vertex_colors = o3d.utility.Vector3dVector(mesh.colors.astype(np.float64))
    m = m.simplify_quadric_decimation(target_number_of_triangles=int(max_triangles))
    m.remove_unreferenced_vertices()
    colors = np.asarray(m.vertex_colors, dtype=np.float32) if m.has_vertex_colors() else None
    return SurfaceMesh(np.asarray(m.vertices, dtype=np.float32),
                       np.asarray(m.triangles, dtype=np.int32), colors)


def is_watertight(mesh: SurfaceMesh) -> bool:
    """Every edge shared by exactly two faces (Open3D's edge-manifold and closed test)."""
    from .o3d import o3d
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
                                  o3d.utility.Vector3iVector(mesh.faces))
    return bool(m.is_watertight())


def write_ply(path: str, mesh: SurfaceMesh, vertices: np.ndarray | None = None) -> None:
    """Write a (coloured) PLY; ``vertices`` overrides the positions (e.g. metric coordinates)."""
    from .o3d import o3d
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    verts = mesh.vertices if vertices is None else vertices
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(verts, np.float64)),
                                  o3d.utility.Vector3iVector(mesh.faces))
    if mesh.colors is not None and len(mesh.colors) == len(verts):
        m.vertex_colors = o3d.utility.Vector3dVector(np.clip(mesh.colors, 0, 1).astype(np.float64))
    m.compute_vertex_normals()
    if not o3d.io.write_triangle_mesh(str(path), m, write_ascii=False):
        raise OSError(f'could not write mesh to {path}')
