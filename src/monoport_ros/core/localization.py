"""
Efficient surface localization (MonoPort): coarse-to-fine occupancy evaluation.

The volume has ``resolution + 1`` grid points per axis spanning model space [-1, 1] (index ``i``
sits at ``-1 + 2 i / resolution``), so every coarse grid is an exact subset of the finer ones.

Level 0 queries the coarsest grid densely. Each further level halves the spacing: new points are
first filled by trilinear interpolation of the coarse values, then the level is made *consistent*:
every grid point that touches a cell whose corners disagree (inside vs outside) and has not been
queried yet is queried, and this repeats until no such point is left. The surface band of the final
grid is therefore made of queried values only, and everything away from it is inferred. The result
equals dense evaluation whenever each inside/outside region is thick enough to contain a point of
the coarsest grid (choose ``octree_depth`` so that its spacing, ``2 * 2**(depth-1) / resolution``,
is below the thinnest part); ``tests/test_localization.py`` checks this on analytic shapes and on a
human body.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy import ndimage
import torch.nn.functional as F

QueryFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps model-space points (N, 3) float32 to occupancy probabilities (N,)."""


@dataclass
class LocalizedVolume:
    """Occupancy values on the full grid, indexed ``[ix, iy, iz]``, and query statistics."""

    values: torch.Tensor                  # (R+1)^3 float32 probabilities (queried or inferred)
    queried: torch.Tensor                 # (R+1)^3 bool, True where the network was asked
    resolution: int
    threshold: float
    queries: int = 0
    queries_per_level: list[int] = field(default_factory=list)

    @property
    def occupancy(self) -> torch.Tensor:
        """Boolean inside/outside volume."""
        return self.values > self.threshold

    @property
    def dense_queries(self) -> int:
        """How many queries the dense grid would take."""
        return (self.resolution + 1) ** 3


def grid_coordinates(index: torch.Tensor, resolution: int) -> torch.Tensor:
    """Integer grid indices (N, 3) -> model-space points (N, 3) float32."""
    return index.to(torch.float32) * (2.0 / resolution) - 1.0


def _query(query_fn: QueryFn, index: torch.Tensor, resolution: int, batch: int) -> torch.Tensor:
    out = []
    for start in range(0, index.shape[0], batch):
        pts = grid_coordinates(index[start:start + batch], resolution)
        out.append(query_fn(pts).to('cpu', torch.float32).reshape(-1))
    return torch.cat(out) if out else torch.zeros(0)


def mixed_cells(occ: torch.Tensor) -> torch.Tensor:
    """Mark the cells (n-1)^3 whose 8 corners are not all inside or all outside."""
    any_in = torch.zeros_like(occ[:-1, :-1, :-1])
    all_in = torch.ones_like(any_in)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                c = occ[dx:occ.shape[0] - 1 + dx, dy:occ.shape[1] - 1 + dy,
                        dz:occ.shape[2] - 1 + dz]
                any_in |= c
                all_in &= c
    return any_in & ~all_in


def _ambiguous_children(occ: torch.Tensor) -> torch.Tensor:
    """
    Points of the 2x finer grid whose coarse parents disagree.

    The parents are edge ends, face or cell corners.
    """
    n = occ.shape[0]
    out = torch.zeros((2 * n - 1,) * 3, dtype=torch.bool)
    o = occ
    for axes in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)):
        any_in = None
        all_in = None
        for corner in range(1 << len(axes)):
            sl = [slice(None)] * 3
            for bit, axis in enumerate(axes):
                sl[axis] = slice(1, None) if corner >> bit & 1 else slice(None, -1)
            c = o[tuple(sl)]
            any_in = c.clone() if any_in is None else any_in | c
            all_in = c.clone() if all_in is None else all_in & c
        target = [slice(0, None, 2)] * 3
        for axis in axes:
            target[axis] = slice(1, None, 2)
        out[tuple(target)] = any_in & ~all_in
    return out


_CORNERS = torch.tensor([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)])


def _unique_points(points: torch.Tensor, n: int) -> torch.Tensor:
    flat = torch.unique((points[:, 0] * n + points[:, 1]) * n + points[:, 2])
    return torch.stack([flat // (n * n), (flat // n) % n, flat % n], dim=1)


def _unknown_corners_of_mixed_cells_near(values: torch.Tensor, threshold: float,
                                         known: torch.Tensor, points: torch.Tensor
                                         ) -> torch.Tensor:
    """
    Find unqueried corners of the mixed cells that touch ``points`` (K, 3).

    The sparse form of ``_cell_corners(mixed_cells(values > threshold)) & ~known`` for the cells
    around a few points; it keeps each flood round proportional to the points it just queried.
    """
    n = values.shape[0]
    cells = (points[:, None, :] - 1 + _CORNERS[None]).reshape(-1, 3)
    cells = cells[((cells >= 0) & (cells <= n - 2)).all(dim=1)]
    if cells.shape[0] == 0:
        return cells
    cells = _unique_points(cells, n)
    corners = cells[:, None, :] + _CORNERS[None]
    c = values[corners[..., 0], corners[..., 1], corners[..., 2]] > threshold
    mixed = c.any(dim=1) & ~c.all(dim=1)
    if not bool(mixed.any()):
        return cells[:0]
    pts = _unique_points(corners[mixed].reshape(-1, 3), n)
    return pts[~known[pts[:, 0], pts[:, 1], pts[:, 2]]]


def _cell_corners(cells: torch.Tensor) -> torch.Tensor:
    """Grid points n^3 that are a corner of at least one marked cell (n-1)^3."""
    n = cells.shape[0] + 1
    pts = torch.zeros((n, n, n), dtype=torch.bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                pts[dx:n - 1 + dx, dy:n - 1 + dy, dz:n - 1 + dz] |= cells
    return pts


def localize_surface(query_fn: QueryFn, resolution: int, octree_depth: int, threshold: float = 0.5,
                     batch_size: int = 65536, max_rounds: int = 100000) -> LocalizedVolume:
    """
    Coarse-to-fine occupancy of ``query_fn`` on a ``resolution``^3 grid.

    The grid has ``octree_depth`` levels; ``octree_depth == 1`` is dense evaluation. Queries go in
    batches of at most ``batch_size`` points, so memory stays bounded at any resolution.
    """
    if resolution < 2 or resolution & (resolution - 1):
        raise ValueError(f'resolution must be a power of two >= 2, got {resolution}')
    if octree_depth < 1 or resolution >> (octree_depth - 1) < 1:
        raise ValueError(f'octree_depth {octree_depth} is invalid for resolution {resolution}')
    n_full = resolution + 1
    values = torch.zeros((n_full,) * 3, dtype=torch.float32)
    queried = torch.zeros((n_full,) * 3, dtype=torch.bool)
    vol = LocalizedVolume(values, queried, resolution, threshold)

    stride = 1 << (octree_depth - 1)
    coarse = torch.arange(0, n_full, stride)
    idx = torch.stack(torch.meshgrid(coarse, coarse, coarse, indexing='ij'), dim=-1).reshape(-1, 3)
    vals = _query(query_fn, idx, resolution, batch_size)
    n = coarse.numel()
    values[::stride, ::stride, ::stride] = vals.reshape(n, n, n)
    queried[::stride, ::stride, ::stride] = True
    vol.queries = idx.shape[0]
    vol.queries_per_level.append(idx.shape[0])

    while stride > 1:
        half = stride // 2
        coarse_vals = values[::stride, ::stride, ::stride]
        fine_n = 2 * (coarse_vals.shape[0] - 1) + 1
        fine = F.interpolate(coarse_vals[None, None], size=(fine_n,) * 3, mode='trilinear',
                             align_corners=True)[0, 0]
        known = queried[::half, ::half, ::half]          # views into the full volumes
        level_vals = values[::half, ::half, ::half]
        level_vals.copy_(torch.where(known, level_vals, fine))
        # Round 1: new points whose coarse parents disagree; the others are a convex combination of
        # parents on one side of the threshold, so their side is already known.
        need = _ambiguous_children(coarse_vals > threshold) & ~known
        level_queries = 0
        last_level = half == 1
        idx = need.nonzero()
        for round_ in range(max_rounds):
            if idx.shape[0] == 0:
                break
            vals = _query(query_fn, idx * half, resolution, batch_size)
            level_vals[idx[:, 0], idx[:, 1], idx[:, 2]] = vals
            known[idx[:, 0], idx[:, 1], idx[:, 2]] = True
            level_queries += idx.shape[0]
            if not last_level:
                break
            # Final level: make the surface band exact, following the surface until it closes:
            # once over the whole grid, then only around the points that were just queried (a
            # cell can only become mixed where a value changed).
            if round_ == 0:
                idx = (_cell_corners(mixed_cells(level_vals > threshold)) & ~known).nonzero()
            else:
                idx = _unknown_corners_of_mixed_cells_near(level_vals, threshold, known, idx)
        vol.queries += level_queries
        vol.queries_per_level.append(level_queries)
        stride = half
    return vol


def dense_occupancy(query_fn: QueryFn, resolution: int, threshold: float = 0.5,
                    batch_size: int = 65536) -> LocalizedVolume:
    """Query every grid point (the reference)."""
    return localize_surface(query_fn, resolution, 1, threshold, batch_size)


def surface_bounds(occupancy: torch.Tensor, margin: int = 1) -> tuple[slice, slice, slice] | None:
    """Index box around the inside voxels (with ``margin``), or None when nothing is inside."""
    if not bool(occupancy.any()):
        return None
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(occupancy.any(dim=other[1]).any(dim=other[0]).numpy())
        out.append(slice(max(int(hit[0]) - margin, 0),
                         min(int(hit[-1]) + margin + 1, occupancy.shape[axis])))
    return tuple(out)


def keep_largest_component(volume: LocalizedVolume) -> int:
    """
    Keep only the largest 6-connected inside region (one person); return the voxels removed.

    Floating blobs the network puts around a person are set to outside (value 0), in place; uses
    scipy's labelling on the occupied box.
    """
    box = surface_bounds(volume.occupancy, margin=0)
    if box is None:
        return 0
    occ = volume.occupancy[box].numpy()
    labels, count = ndimage.label(occ)
    if count <= 1:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    stray = torch.from_numpy((labels > 0) & (labels != 1 + int(np.argmax(sizes))))
    sub = volume.values[box]
    sub[stray] = 0.0
    return int(stray.sum())
