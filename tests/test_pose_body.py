"""The coarse body on the pose landmarks, and the carving of the network's occupancy with it."""
from __future__ import annotations

import numpy as np
import torch

from monoport_ros.core.localization import localize_surface
from monoport_ros.core.pose_body import apply_pose_prior, body_field, depth_offset, MARGIN
from monoport_ros.core.pose_body import PoseBody, sample_field, SEGMENTS
from monoport_ros.core.pose_body import MID_EAR, MID_HIP, MID_SHOULDER

RES, SIZE = 64, 128
LIMB_R = 0.06           # the figure's limbs' radius (model units), its trunk's is larger


def _figure(arm_z: float = 0.35) -> np.ndarray:
    """Pose array (33, 4) of a standing figure whose right arm points at the camera."""
    p = np.zeros((33, 4), np.float32)
    p[:, 3] = 0.9
    at = {0: (0.0, 0.62, 0.08), 7: (0.07, 0.62, 0.0), 8: (-0.07, 0.62, 0.0),
          11: (0.17, 0.42, 0.0), 12: (-0.17, 0.42, 0.0), 13: (0.22, 0.12, 0.0),
          14: (-0.24, 0.3, arm_z * 0.6), 15: (0.24, -0.12, 0.0), 16: (-0.26, 0.3, arm_z),
          19: (0.25, -0.2, 0.0), 20: (-0.27, 0.3, arm_z + 0.06),
          23: (0.1, -0.05, 0.0), 24: (-0.1, -0.05, 0.0), 25: (0.11, -0.42, 0.0),
          26: (-0.11, -0.42, 0.0), 27: (0.11, -0.8, 0.0), 28: (-0.11, -0.8, 0.0),
          29: (0.11, -0.82, -0.04), 30: (-0.11, -0.82, -0.04), 31: (0.11, -0.84, 0.1),
          32: (-0.11, -0.84, 0.1)}
    for i in range(33):                 # eyes, mouth, fingers: at the nearest named landmark
        j = i if i in at else (0 if i < 11 else 15 + (i - 15) % 2)
        p[i, :3] = at[j]
    return p


def _body_field(pose: np.ndarray, offset: float = 0.0):
    """Occupancy of the true body: the figure's segments, limbs LIMB_R, trunk 0.15."""
    joints = np.concatenate([pose[:, :3], [pose[[11, 12], :3].mean(0), pose[[23, 24], :3].mean(0),
                                           pose[[7, 8], :3].mean(0)]])
    a = torch.tensor(np.array([joints[i] for i, _, _ in SEGMENTS]), dtype=torch.float32)
    b = torch.tensor(np.array([joints[j] for _, j, _ in SEGMENTS]), dtype=torch.float32)
    r = torch.tensor([0.15 if (i, j) == (MID_HIP, MID_SHOULDER) else
                      0.09 if (i, j) == (MID_SHOULDER, MID_EAR) else LIMB_R
                      for i, j, _ in SEGMENTS])

    def field(pts: torch.Tensor) -> torch.Tensor:
        q = pts - torch.tensor([0.0, 0.0, offset])
        ab = b - a
        t = (((q[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-8)).clamp(0, 1)
        d = (q[:, None] - (a + t[..., None] * ab)).norm(dim=-1)
        return ((d - r) < 0).any(dim=1).float() * 0.9 + 0.05

    return field


def _mask(field) -> np.ndarray:
    """Crop mask (SIZE x SIZE, row 0 at the top): the body seen from the camera."""
    c = (np.arange(SIZE) + 0.5) / SIZE * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)
    zs = np.linspace(-1, 1, 41)
    pts = np.stack([np.repeat(x[..., None], 41, -1), np.repeat(y[..., None], 41, -1),
                    np.broadcast_to(zs, x.shape + (41,))], -1).reshape(-1, 3)
    inside = field(torch.from_numpy(pts).float()).reshape(SIZE, SIZE, 41) > 0.5
    return inside.any(-1).numpy()


def _slab(mask: np.ndarray, depth: float = 0.8):
    """Act as a network that fills the mask's columns |z| < depth (as deep as wide)."""
    m = torch.from_numpy(mask)

    def field(pts: torch.Tensor) -> torch.Tensor:
        col = ((pts[:, 0] + 1) * SIZE / 2).long().clamp(0, SIZE - 1)
        row = ((1 - pts[:, 1]) * SIZE / 2).long().clamp(0, SIZE - 1)
        return (m[row, col] & (pts[:, 2].abs() < depth)).float() * 0.9 + 0.05

    return field


def test_the_radii_are_read_on_the_mask() -> None:
    pose = _figure()
    body = PoseBody.fit(pose, _mask(_body_field(pose)))
    assert body is not None
    k = [s[:2] for s in SEGMENTS].index((25, 27))             # a shin, alone in the image
    assert abs(float(body.radius[k]) - LIMB_R) < 0.02
    k = [s[:2] for s in SEGMENTS].index((MID_HIP, MID_SHOULDER))
    assert float(body.radius[k]) > 0.1


def test_carving_makes_a_slab_the_body() -> None:
    pose = _figure(arm_z=0.0)
    mask = _mask(_body_field(pose))
    vol = localize_surface(_slab(mask), RES, 3)
    before = int(vol.occupancy.sum())
    body = PoseBody.fit(pose, mask)
    field = body_field(body, mask)
    offset = depth_offset(field, vol.occupancy.nonzero().float() * (2.0 / RES) - 1.0, 2.0 / RES)
    assert abs(offset) < 0.05           # the slab is centred on the body: so is the offset
    carved, added = apply_pose_prior(vol, body, mask, 'carve')
    occ = vol.occupancy
    assert added == 0 and carved > 0.5 * before and int(occ.sum()) == before - carved
    idx = occ.nonzero().float() * (2.0 / RES) - 1.0
    assert float(sample_field(field, idx, offset).max()) <= MARGIN + 1e-4   # nothing far out
    assert float(body.distance(idx, offset).max()) <= MARGIN + 0.02   # the coarse field's error
    # the torso keeps about its depth: 2 x 0.15 x the torso's ratio, plus the margins
    col = occ[RES // 2, int(round((0.2 + 1) * RES / 2))]
    depth = int(col.sum()) * 2.0 / RES
    assert 0.15 < depth < 0.21 + 2 * MARGIN + 0.05


def test_a_body_already_inside_is_left_alone_wherever_its_depth() -> None:
    pose = _figure()
    for offset in (0.0, 0.12):          # model z = 0 is not at the hips: the offset is searched
        field = _body_field(pose, offset)
        vol = localize_surface(field, RES, 3)
        before = int(vol.occupancy.sum())
        carved, _ = apply_pose_prior(vol, PoseBody.fit(pose, _mask(field)), _mask(field), 'carve')
        assert carved <= 0.01 * before


def test_no_body_without_enough_visible_landmarks() -> None:
    pose = _figure()
    pose[:, 3] = 0.1
    assert PoseBody.fit(pose, _mask(_body_field(pose))) is None
