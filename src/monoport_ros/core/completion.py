"""
Silhouette completion: give every pixel of the person mask some geometry.

A small network drops thin parts it is unsure about (forearms, hands, a leg seen edge-on): all
along such a pixel's ray the occupancy stays below the threshold, so the mesh loses a limb that the
segmentation clearly saw. For a robot that is the wrong failure (a missing forearm is a missing
obstacle), and it was half of the distance from the true surface to the reconstruction of the
2.50 cm model on held-out people (README, Evaluation).

:func:`fill_silhouette` finds the grid columns inside the mask that hold no inside voxel and fills
each with a round profile, like a limb: its half-depth is the pixel's distance to the mask's edge
(a limb's depth is about its width) and its centre the mid-depth of the nearest column that does
hold geometry (where the limb attaches to the body). The occluding contour of a smooth body lies
near the mid-depth of its columns, so the same rule is right for the one-voxel rim between the
network's silhouette and the mask. Columns the network filled are left as they are.

Written with scipy's Euclidean distance transform (the nearest column and the distance to the
edge in one call each) and torch indexing; nothing here asks the network.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .localization import LocalizedVolume
from .networks import sample_features


def mask_on_grid(crop_mask: np.ndarray, resolution: int) -> np.ndarray:
    """
    Crop mask ((S, S), row 0 at the top) at the grid's columns: (R+1, R+1) bool, ``[ix, iy]``.

    Looked up like the engine's visual-hull test (:func:`core.networks.sample_features`, nearest
    pixel), so a column is in the mask exactly when the network was asked about it.
    """
    c = torch.arange(resolution + 1, dtype=torch.float32) * (2.0 / resolution) - 1.0
    xy = torch.stack(torch.meshgrid(c, c, indexing='ij'), dim=-1).reshape(1, -1, 2)
    mask = torch.from_numpy(np.asarray(crop_mask > 0.5, np.float32))[None, None]
    inside = sample_features(mask, xy, mode='nearest')[0, :, 0] > 0.5
    return inside.reshape(resolution + 1, resolution + 1).numpy()


def fill_silhouette(volume: LocalizedVolume, crop_mask: np.ndarray) -> int:
    """
    Fill the mask's columns that hold no inside voxel (see the module doc); return columns filled.

    Edits ``volume`` in place: filled voxels take the larger of their value and the profile's,
    and count as queried, so meshing and rendering treat them like the network's own surface.
    """
    res, thr = volume.resolution, volume.threshold
    body = volume.inside_bounds()
    if body is None:
        return 0                        # no body to attach a limb to
    # the mask's columns over the body's depth range (nothing is inside beyond it)
    box = (volume.box[0], volume.box[1], body[2])
    xs, ys = box[0], box[1]
    want = mask_on_grid(crop_mask, res)[xs, ys]
    if not want.any():
        return 0
    # the column scans run where the volume is; scipy's transforms on the host
    occ = (volume.values[box] > thr).view(torch.uint8)           # (X, Y, Z), no copy
    first = occ.argmax(dim=2)                                      # 0 also where none is inside
    has = occ.gather(2, first[..., None])[..., 0].cpu().numpy().astype(bool)
    missing = want & ~has
    if not missing.any():
        return 0
    n_z = occ.shape[2]
    last = n_z - 1 - occ.flip(2).argmax(dim=2).cpu().numpy()
    mid = 0.5 * (first.cpu().numpy() + last)
    # nearest column with geometry (its mid-depth is the centre) and the distance to the mask edge
    _, (nx, ny) = ndimage.distance_transform_edt(~has, return_indices=True)
    half_depth = ndimage.distance_transform_edt(want)
    cx, cy = np.nonzero(missing)
    centre = mid[nx[cx, cy], ny[cx, cy]]
    radius = half_depth[cx, cy]
    reach = int(np.ceil(radius.max())) + 2
    dz = np.arange(-reach, reach + 1)
    z = np.rint(centre)[:, None] + dz[None, :]                      # (columns, depth samples)
    # a round profile: above the threshold where |z - centre| < radius, 0.25 per voxel around it
    inside = radius[:, None] - np.abs(z - centre[:, None])
    profile = np.clip(thr + 0.25 * inside, 0.0, 1.0).astype(np.float32)
    # never exactly the threshold: marching cubes would make degenerate triangles there and drop
    # them (allow_degenerate=False), leaving holes
    profile[profile == np.float32(thr)] -= np.float32(0.01)
    z = z.astype(np.int64) + box[2].start                        # grid index (may leave the box)
    keep = (z >= 0) & (z <= res)
    col = np.broadcast_to(np.arange(len(cx))[:, None], z.shape)[keep]
    dev = volume.values.device
    ix = torch.from_numpy(cx[col] + xs.start).to(dev)
    iy = torch.from_numpy(cy[col] + ys.start).to(dev)
    iz = torch.from_numpy(z[keep]).to(dev)
    new = torch.from_numpy(profile[keep]).to(dev)
    volume.values[ix, iy, iz] = torch.maximum(volume.values[ix, iy, iz], new)
    # Meshing skips cells with an unqueried corner (see core.meshing): trust the filled voxels
    # and their neighbours across x and y, so the new surface closes on all sides.
    n = res + 1
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            volume.queried[(ix + dx).clamp_(0, n - 1), (iy + dy).clamp_(0, n - 1), iz] = True
    # the inside box grows by the filled voxels (saves meshing a scan of the whole volume)
    added = new > thr
    grown = body
    if bool(added.any()):
        idx = torch.stack([ix[added], iy[added], iz[added]])
        lo, hi = idx.min(dim=1).values.tolist(), idx.max(dim=1).values.tolist()
        grown = tuple(slice(min(b.start, a), max(b.stop, c + 1)) for b, a, c in zip(body, lo, hi))
    volume.know_inside_box(grown)
    return int(len(cx))
