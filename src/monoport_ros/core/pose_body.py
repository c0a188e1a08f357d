"""
A coarse body from the pose and the mask: where, in depth, the person's surface can be.

The network reads depth from the image alone, and on images unlike its training people it puts
material where no body is (a torso as deep as it is wide, an arm behind the back). BlazePose's
landmarks, trained on real people, know the depth order of the limbs. :class:`PoseBody` turns them
into a body of rounded segments, one per bone: each bone's image radius is measured on the person
mask (the median distance to the mask's edge along the bone), its depth radius is that times a
ratio set from human proportions (a torso is about 0.7 times as deep as it is wide, a head about
1.3 times, a limb round), and the bone lies at the landmarks' depth (:func:`core.body_pose.
model_depth`).

:func:`apply_pose_prior` uses it as a prior on the network's occupancy (``pose_prior``): inside
voxels farther than a margin outside every segment are set outside ('carve'), and in 'union' the
body's own voxels in the mask's columns are set inside. Carving only removes material, so a good
reconstruction is left as it is, and the margin absorbs the landmarks' depth noise. The body's
depth offset is not known (model space has z = 0 at the bounding box's centre, the landmarks at
the hips): it is the offset, searched on a grid, at which the body holds most of the network's
inside voxels. On held-out synthetic people the prior costs accuracy (docs/pose_prior.md), so
``pose_prior`` is off by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .body_pose import MIN_VISIBILITY
from .completion import mask_on_grid
from .config import PRIOR_MODES
from .localization import LocalizedVolume

TORSO, HEAD, LIMB = 0.7, 1.3, 1.0       # depth radius / image radius
# virtual joints appended to BlazePose's 33: mid-shoulder, mid-hip, mid-ear
_MID = ((11, 12), (23, 24), (7, 8))
MID_SHOULDER, MID_HIP, MID_EAR = 33, 34, 35
# (joint, joint, depth ratio): trunk, head, arms and hands, legs and feet
SEGMENTS = ((MID_HIP, MID_SHOULDER, TORSO), (11, 12, TORSO), (23, 24, TORSO),
            (11, 23, TORSO), (12, 24, TORSO), (MID_SHOULDER, MID_EAR, HEAD),
            (11, 13, LIMB), (13, 15, LIMB), (15, 19, LIMB),
            (12, 14, LIMB), (14, 16, LIMB), (16, 20, LIMB),
            (23, 25, LIMB), (25, 27, LIMB), (27, 31, LIMB), (29, 31, LIMB),
            (24, 26, LIMB), (26, 28, LIMB), (28, 32, LIMB), (30, 32, LIMB))
MARGIN = 0.06           # model units (about 6 cm on a person filling the crop) outside the body
MIN_RADIUS = 0.02       # model units: a segment along the mask's edge still has some thickness
MIN_SEEN = 8            # fewer visible landmarks than this: no body (no carving)
FIELD_RES = 32          # the body's distance is computed on this grid and sampled between
FAR = 1.0               # the distance outside the mask's columns (not computed)
MAX_OFFSET, OFFSET_STEP = 0.3, 0.02     # depth offsets searched (model units)
_SAMPLES = 9            # points along each bone where the mask's radius is read


@dataclass(frozen=True)
class PoseBody:
    """Rounded segments in model space: ends (K, 3) with z divided by the depth ratio, radii."""

    a: torch.Tensor
    b: torch.Tensor
    ratio: torch.Tensor         # (K,) depth radius / image radius
    radius: torch.Tensor        # (K,) image radius (model units)

    @staticmethod
    def fit(pose: np.ndarray, crop_mask: np.ndarray) -> 'PoseBody | None':
        """
        Body of a pose array (33, 4, model space) and its crop mask ((S, S), row 0 at the top).

        None when fewer than MIN_SEEN landmarks are visible. Landmarks below MIN_VISIBILITY are
        kept (BlazePose still places them; an occluded limb is still there), but a frame that
        hardly sees the person gets no prior.
        """
        if int((pose[:, 3] >= MIN_VISIBILITY).sum()) < MIN_SEEN:
            return None
        mids = np.stack([pose[[i, j], :3].mean(0) for i, j in _MID])
        joints = np.concatenate([pose[:, :3], mids]).astype(np.float64)
        s = crop_mask.shape[0]
        # distance to the mask's edge, in model units (2 / S per pixel)
        edge = cv2.distanceTransform((crop_mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
        edge = edge * (2.0 / s)
        t = np.linspace(0.0, 1.0, _SAMPLES)[:, None]
        a_list, b_list, ratios, radii = [], [], [], []
        for i, j, ratio in SEGMENTS:
            pa, pb = joints[i], joints[j]
            xy = pa[None, :2] + t * (pb[None, :2] - pa[None, :2])
            col = np.clip(((xy[:, 0] + 1.0) * s / 2.0).astype(int), 0, s - 1)
            row = np.clip(((1.0 - xy[:, 1]) * s / 2.0).astype(int), 0, s - 1)
            radii.append(max(float(np.median(edge[row, col])), MIN_RADIUS))
            a_list.append(pa / [1.0, 1.0, ratio])
            b_list.append(pb / [1.0, 1.0, ratio])
            ratios.append(ratio)
        f32 = torch.float32
        return PoseBody(torch.tensor(np.array(a_list), dtype=f32),
                        torch.tensor(np.array(b_list), dtype=f32),
                        torch.tensor(ratios, dtype=f32), torch.tensor(radii, dtype=f32))

    def distance(self, points: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
        """
        Signed distance-like value (N,) of model-space ``points`` (N, 3) to the body.

        Below 0 inside a segment; in the segment's scaled space (z / ratio), so it is a true
        distance across the image and a scaled one in depth. ``offset`` moves the body in z.
        """
        a, b = self.a.to(points), self.b.to(points)
        inv = 1.0 / self.ratio.to(points)                                  # (K,)
        ab = b - a
        # in segment k's space a point is (x, y, (z - offset) / ratio_k): its products with the
        # segment's vectors are products of (x, y, z - offset) with vectors whose z is divided
        # by ratio_k, so one matrix product serves every segment (as core.body_pose's bones)
        p = points - points.new_tensor([0.0, 0.0, offset])
        scale = torch.stack([torch.ones_like(inv), torch.ones_like(inv), inv])   # (3, K)
        p_ab = p @ (ab.T * scale)                                           # (N, K)
        p_a = p @ (a.T * scale)
        p2 = (p[:, :2] ** 2).sum(-1, keepdim=True) + p[:, 2:] ** 2 * inv ** 2
        a_ab, len2 = (a * ab).sum(-1), (ab * ab).sum(-1).clamp(min=1e-8)
        rel = p_ab - a_ab
        t = (rel / len2).clamp(0.0, 1.0)
        d2 = p2 - 2 * p_a + (a * a).sum(-1) - t * (2 * rel - t * len2)
        return (d2.clamp(min=0.0).sqrt() - self.radius.to(points)).min(dim=1).values


def column_points(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor,
                  resolution: int) -> torch.Tensor:
    """Model-space points (C * Z, 3) of a grid's columns ``ix, iy`` (C,) at depths ``iz`` (Z,)."""
    c, z = ix.numel(), iz.numel()
    idx = torch.stack([ix[:, None].expand(-1, z), iy[:, None].expand(-1, z),
                       iz[None].expand(c, -1)], dim=-1).reshape(-1, 3)
    return idx.to(torch.float32) * (2.0 / resolution) - 1.0


def body_field(body: PoseBody, crop_mask: np.ndarray, resolution: int = FIELD_RES) -> torch.Tensor:
    """
    :meth:`PoseBody.distance` on a coarse grid over the cube: (1, 1, R+1, R+1, R+1), ``[z, y, x]``.

    Computed in the mask's columns, dilated by two cells so that sampling inside the mask never
    mixes in the rest (FAR). The body's segments are at least MIN_RADIUS round, so trilinear
    sampling is off by at most about half a cell where segments meet; the margin is wider.
    """
    n = resolution + 1
    cols = mask_on_grid(crop_mask, resolution)
    cols = cv2.dilate(cols.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ix, iy = (torch.from_numpy(a) for a in np.nonzero(cols))
    c = torch.arange(n, dtype=torch.float32) * (2.0 / resolution) - 1.0
    # and only the depths a carve or an addition can reach: the body's, the margin, the offsets
    ends = torch.cat([body.a[:, 2] * body.ratio, body.b[:, 2] * body.ratio])
    reach = float((body.radius * body.ratio).max()) + MARGIN + MAX_OFFSET + 4.0 / resolution
    iz = torch.nonzero((c >= float(ends.min()) - reach) & (c <= float(ends.max()) + reach))[:, 0]
    m = iz.numel()
    pts = column_points(ix, iy, iz, resolution)
    out = torch.full((n, n, n), FAR)
    if pts.shape[0]:
        d = torch.cat([body.distance(p) for p in pts.split(32768)]).reshape(ix.numel(), m)
        out[iz[:, None], iy[None], ix[None]] = d.T
    return out[None, None]


def sample_field(field: torch.Tensor, points: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """Sample the body's distance (N,) at ``points`` (N, 3), the body moved ``offset`` in z."""
    grid = points.to(field) - field.new_tensor([0.0, 0.0, offset])
    out = F.grid_sample(field, grid.view(1, 1, 1, -1, 3), mode='bilinear',
                        padding_mode='border', align_corners=True)
    return out.view(-1)


def depth_offset(field: torch.Tensor, inside: torch.Tensor, voxel: float,
                 margin: float = MARGIN, samples: int = 4096) -> float:
    """
    Depth offset at which the body (its :func:`body_field`) holds most ``inside`` points (N, 3).

    Offsets up to MAX_OFFSET either way, in whole voxels of the grid (spacing ``voxel``; offsets
    between voxels would count a varying number of them). Of the offsets that hold within 1 % as
    many as the best, the middle one: where the network's material is deeper than the body, the
    body could sit anywhere in it, and the middle is the unbiased guess. Beyond ``samples``
    points, every k-th column in x and y is counted, with all its depths (a random subset made
    the counts noisier than the 1 %).
    """
    k = 1
    while inside.shape[0] > samples * k * k:
        k += 1
    if k > 1:
        cols = torch.round((inside[:, :2] + 1.0) / voxel).long()
        inside = inside[((cols % k) == 0).all(dim=1)]
    step = voxel * max(1, round(OFFSET_STEP / voxel))
    n = int(MAX_OFFSET / step)
    offsets = np.arange(-n, n + 1) * step
    kept = np.array([int((sample_field(field, inside, float(o)) <= margin).sum())
                     for o in offsets])
    good = np.flatnonzero(kept >= 0.99 * kept.max())
    return float(offsets[good].mean())


def apply_pose_prior(volume: LocalizedVolume, body: PoseBody, crop_mask: np.ndarray,
                     mode: str) -> tuple[int, int]:
    """
    Carve (``mode`` 'carve'), or carve and add the body ('union'); return the voxels (out, in).

    Carved voxels fall below the threshold in proportion to how far out they are, added ones
    rise above it in proportion to how far in (smooth walls for marching cubes); both count as
    queried, with their neighbours, so the new surface closes. 'union' adds only in the mask's
    columns: the silhouette stays the segmenter's.
    """
    if mode not in PRIOR_MODES[1:]:
        raise ValueError(f'unknown pose prior mode {mode!r}; expected one of {PRIOR_MODES[1:]}')
    values, thr, res = volume.values, volume.threshold, volume.resolution
    inside = values > thr
    if not bool(inside.any()):
        return 0, 0
    voxel = 2.0 / res
    field = body_field(body, crop_mask).to(values.device)     # (built on the host)
    idx = inside.nonzero()
    pts = idx.to(torch.float32) * voxel - 1.0
    offset = depth_offset(field, pts, voxel)
    edited = torch.zeros_like(inside)
    excess = sample_field(field, pts, offset) - MARGIN
    out = excess > 0
    ix, iy, iz = idx[out].unbind(1)
    values[ix, iy, iz] = (thr - 0.25 * excess[out] / voxel).clamp(0.0, thr - 0.01).to(values)
    edited[ix, iy, iz] = True
    added = 0
    if mode == 'union':
        cols = torch.from_numpy(mask_on_grid(crop_mask, res)).to(values.device)
        box = (field[0, 0] < 0).nonzero()      # the body's own box, on the coarse grid
        scale = res / (field.shape[-1] - 1)
        z0 = max(0, int((box[:, 0].min() * scale).floor()) + round(offset / voxel) - 1)
        z1 = min(res, int((box[:, 0].max() * scale).ceil()) + round(offset / voxel) + 1)
        cx, cy = cols.nonzero().unbind(1)
        zs = torch.arange(z0, z1 + 1, device=values.device)
        d = sample_field(field, column_points(cx, cy, zs, res), offset)
        inn = d < 0
        gx = cx[:, None].expand(-1, zs.numel()).reshape(-1)[inn]
        gy = cy[:, None].expand(-1, zs.numel()).reshape(-1)[inn]
        gz = zs[None].expand(cx.numel(), -1).reshape(-1)[inn]
        new = (thr + 0.25 * -d[inn] / voxel).clamp(thr + 0.01, 1.0).to(values)
        was = values[gx, gy, gz]
        values[gx, gy, gz] = torch.maximum(was, new)
        edited[gx, gy, gz] = True
        added = int((was <= thr).sum())
    if bool(edited.any()):
        _trust_neighbours(volume, edited)
    volume.values_changed()
    return int(out.sum()), added


def _trust_neighbours(volume: LocalizedVolume, edited: torch.Tensor) -> None:
    """Mark ``edited`` voxels and their 26 neighbours queried (meshing trusts only those)."""
    idx = edited.nonzero()
    n = edited.shape[0]
    lo = (idx.min(0).values - 1).clamp(min=0).tolist()
    hi = (idx.max(0).values + 2).clamp(max=n).tolist()
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    near = edited[box].clone()
    for axis in range(3):               # a 3x3x3 dilation, one axis at a time
        grown = near.clone()
        ahead = [slice(None)] * 3
        behind = [slice(None)] * 3
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        grown[tuple(ahead)] |= near[tuple(behind)]
        grown[tuple(behind)] |= near[tuple(ahead)]
        near = grown
    volume.queried[box] |= near
