"""
Write a reconstruction's files: coloured mesh and points (``.ply``), rendered views (``.png``).

One writer for the node's ``output_dir`` and the ``reconstruct`` command. Geometry is written in
model space unless ``to_frame`` maps it (e.g. into a camera frame, metres).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .meshing import SurfaceMesh, write_ply
from .reconstruct import Reconstruction

PointMap = Callable[[np.ndarray], np.ndarray]


def write_mesh(path: str | Path, rec: Reconstruction, to_frame: PointMap | None = None) -> None:
    """Write the coloured mesh as ``.ply``."""
    mesh = SurfaceMesh(rec.vertices, rec.faces, rec.vertex_colors)
    write_ply(path, mesh, to_frame(rec.vertices) if to_frame else None)


def write_points(path: str | Path, rec: Reconstruction, to_frame: PointMap | None = None) -> None:
    """Write the coloured surface points as a ``.ply`` point cloud (Open3D's writer)."""
    from .o3d import o3d
    xyz = to_frame(rec.points) if to_frame else rec.points
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(np.clip(rec.point_colors, 0, 1).astype(np.float64))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), cloud):
        raise OSError(f'could not write points to {path}')


def write_views(folder: str | Path, rec: Reconstruction, prefix: str = '',
                normals: bool = False) -> None:
    """Each rendered view as ``<prefix><view>.png`` (and ``<prefix><view>_normals.png``)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for view, image in rec.views.items():
        _write_rgb(out / f'{prefix}{view}.png', image)
        if normals and view in rec.normal_views:
            _write_rgb(out / f'{prefix}{view}_normals.png', rec.normal_views[view])


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f'could not write {path}')
