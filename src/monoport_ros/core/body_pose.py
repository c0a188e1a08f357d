"""
The body pose prior: BlazePose's 33 landmarks, mapped into model space, and skeleton features.

:class:`BodyPose` is what the segmentation stage returns beside the mask (MediaPipe's pose graph
computes both). Its image landmarks are in continuous pixel coordinates of the input image
(``u`` right, ``v`` down; the top-left corner of pixel (0, 0) is at (0, 0), as MediaPipe's
normalised x * width, y * height) and ``z`` is MediaPipe's depth relative to the hips' midpoint on
the scale of ``u`` (pixels; smaller = nearer the camera). :meth:`BodyPose.to_model` maps it into
model space by the crop that maps the image (``PersonCrop``): x, y exactly, z on the scale of x,
turned to model space's "z towards the camera".

A *pose array* is the network's form of a pose: (..., 33, 4) float32 ``x, y, z, visibility`` in
model space. :func:`bone_features` turns it into features of every query point relative to a
compact skeleton (:data:`BONES`); an all-zero visibility means "no pose" and gives zero features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .camera import PersonCrop

N_LANDMARKS = 33
LANDMARK_MODEL = 'mediapipe_pose_landmark_full'     # BlazePose full (model_complexity=1)
# BlazePose's landmark order mirrored left-right (left eye <-> right eye, left hip <-> right hip)
MIRRORED = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21,
            24, 23, 26, 25, 28, 27, 30, 29, 32, 31)
# BlazePose's landmark names and the links MediaPipe draws between them (its POSE_CONNECTIONS)
LANDMARK_NAMES = (
    'nose', 'left_eye_inner', 'left_eye', 'left_eye_outer', 'right_eye_inner', 'right_eye',
    'right_eye_outer', 'left_ear', 'right_ear', 'mouth_left', 'mouth_right', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_pinky',
    'right_pinky', 'left_index', 'right_index', 'left_thumb', 'right_thumb', 'left_hip',
    'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle', 'left_heel',
    'right_heel', 'left_foot_index', 'right_foot_index')
LANDMARK_LINKS = (
    (0, 1), (0, 4), (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
    (11, 23), (12, 14), (12, 24), (13, 15), (14, 16), (15, 17), (15, 19), (15, 21), (16, 18),
    (16, 20), (16, 22), (17, 19), (18, 20), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (27, 31), (28, 30), (28, 32), (29, 31), (30, 32))
MID_SHOULDER, MID_HIP = 33, 34      # virtual joints appended to the 33 landmarks
# (joint, joint) segments: spine, neck-head, shoulder and hip lines, upper/lower arms, thighs,
# shins, feet, torso sides; left before right
BONES = ((MID_HIP, MID_SHOULDER), (MID_SHOULDER, 0), (11, 12), (23, 24),
         (11, 13), (13, 15), (12, 14), (14, 16),
         (23, 25), (25, 27), (24, 26), (26, 28),
         (27, 31), (28, 32), (11, 23), (12, 24))
FEATURES_PER_BONE = 3           # distance to the segment, position along it, depth offset
N_BONE_FEATURES = len(BONES) * FEATURES_PER_BONE + 1     # + the "pose present" flag
MIN_VISIBILITY = 0.5            # a bone whose weaker end is less visible gives zero features
_BONE_A = torch.tensor([a for a, _ in BONES])
_BONE_B = torch.tensor([b for _, b in BONES])


@dataclass(frozen=True)
class BodyPose:
    """33 BlazePose landmarks of one person in one image (see the module docstring for units)."""

    image_landmarks: np.ndarray             # (33, 3) float32: u, v (pixels), z (pixels, hips 0)
    visibility: np.ndarray                  # (33,) float32 in [0, 1]
    world_landmarks: np.ndarray | None = None   # (33, 3) float32 metres, centred on the hips
    model: str = LANDMARK_MODEL

    @staticmethod
    def from_mediapipe(result, width: int, height: int) -> 'BodyPose | None':
        """Read a MediaPipe pose result (``solutions.pose``) of a ``width`` x ``height`` image."""
        lms = getattr(result, 'pose_landmarks', None)
        if lms is None:
            return None
        arr = np.array([(p.x, p.y, p.z, p.visibility) for p in lms.landmark], np.float32)
        arr[:, 0] *= width
        arr[:, 1] *= height
        arr[:, 2] *= width
        world = getattr(result, 'pose_world_landmarks', None)
        world_xyz = None if world is None else np.array(
            [(p.x, p.y, p.z) for p in world.landmark], np.float32)
        return BodyPose(arr[:, :3], np.clip(arr[:, 3], 0.0, 1.0), world_xyz)

    def warped(self, affine: np.ndarray) -> 'BodyPose':
        """
        Return the pose in another image: ``affine`` (2, 3) maps this image's pixels to it.

        u, v map by the affine transform, z by its scale (the transform has no shear, as a
        crop's); the world landmarks stay.
        """
        m = np.asarray(affine, np.float64)
        uv = self.image_landmarks[:, :2] @ m[:, :2].T + m[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        lm = np.concatenate([uv, self.image_landmarks[:, 2:3] * scale], axis=1)
        return BodyPose(lm.astype(np.float32), self.visibility, self.world_landmarks, self.model)

    def to_model(self, crop: PersonCrop) -> np.ndarray:
        """
        Pose array (33, 4) in the model space of ``crop``: x, y, z (towards camera), vis.

        x, y map exactly as the image does; z is :func:`model_depth` (the world landmarks'
        depth on the scale of x where they exist, else the image landmarks' z).
        """
        out = np.empty((N_LANDMARKS, 4), np.float32)
        out[:, :2] = crop.pixels_to_model(self.image_landmarks[:, :2])
        out[:, 2] = -self.image_landmarks[:, 2] / (crop.side / 2.0)
        out[:, 3] = self.visibility
        out[:, 2] = model_depth(out, self.world_landmarks)
        bad = ~np.isfinite(out).all(axis=1)
        out[bad] = 0.0                      # a broken landmark counts as unseen
        return out


def model_depth(pose: np.ndarray, world: np.ndarray | None) -> np.ndarray:
    """
    Depth (33,) of a pose array's landmarks relative to the hips, on the scale of its x and y.

    From the world landmarks (metres, hip-centred, z away from the camera) times the scale that
    best maps their x, y onto the pose's (least squares over the visible landmarks, about the
    hips). BlazePose's image z runs several times too deep (on 1,092 landmarks of training
    renders its spread was 3.6x that of the true depths, the scaled world z's 1.0x, both
    correlating 0.53 with them). Without world landmarks, or with fewer than 4 visible, the
    pose's own z is kept.
    """
    if world is None or not np.isfinite(world).all() or not world.any():
        return pose[:, 2].copy()
    seen = pose[:, 3] >= MIN_VISIBILITY
    if seen.sum() < 4:
        return pose[:, 2].copy()
    xy = pose[:, :2] - pose[[23, 24], :2].mean(0)
    wxy = np.stack([world[:, 0], -world[:, 1]], axis=1) - world[[23, 24], :2].mean(0) * [1, -1]
    den = float((wxy[seen] ** 2).sum())
    scale = float((xy[seen] * wxy[seen]).sum()) / den if den > 0 else 0.0
    if not scale > 0:
        return pose[:, 2].copy()
    return (-(world[:, 2] - world[[23, 24], 2].mean()) * scale).astype(np.float32)


def no_pose(batch: int = 1, device: torch.device | str = 'cpu') -> torch.Tensor:
    """Pose arrays (batch, 33, 4) of frames without landmarks (all invisible)."""
    return torch.zeros(batch, N_LANDMARKS, 4, device=device)


def mirror_pose(pose: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Return pose array(s) of the mirrored image: x -> -x, left and right landmarks swapped."""
    out = pose[..., list(MIRRORED), :]
    out = out.copy() if isinstance(out, np.ndarray) else out.clone()
    out[..., 0] = -out[..., 0]
    return out


def map_pose(pose: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """
    Pose arrays of views that see a point p at ``p * scale + offset``, ((V, 1, 3) each).

    A view with a negative x scale is a mirror image, so its left and right landmarks swap.
    ``pose`` is (1, 33, 4) or (V, 33, 4); returns (V, 33, 4).
    """
    pose = pose.expand(scale.shape[0], -1, -1)
    xyz = pose[..., :3] * scale + offset
    out = torch.cat([xyz, pose[..., 3:]], dim=-1)
    flip = scale[:, 0, 0] < 0
    if bool(flip.any()):
        out = torch.where(flip[:, None, None], out[:, list(MIRRORED)], out)
    return out


class Skeleton(NamedTuple):
    """The bones of a batch of poses, ready for :func:`bone_features` (one per frame)."""

    joints_t: torch.Tensor      # (B, 3, 2K): bone vectors ab, then start points a (transposed)
    a_ab: torch.Tensor          # (B, 1, K) a . ab
    a2: torch.Tensor            # (B, 1, K) |a|^2
    len2: torch.Tensor          # (B, 1, K) |ab|^2
    az: torch.Tensor            # (B, 1, K) z of a
    abz: torch.Tensor           # (B, 1, K) z of ab
    gate: torch.Tensor          # (B, 1, 3K + 1) visibility weights of the features, and 1
    present: torch.Tensor       # (B, 1, 1) 1 where the pose has a visible bone


def skeleton(pose: torch.Tensor) -> Skeleton:
    """Bones of pose arrays (B, 33, 4): the per-frame part of :func:`bone_features`."""
    mids = torch.stack([pose[:, [11, 12]].mean(1), pose[:, [23, 24]].mean(1)], dim=1)
    mids[..., 3] = torch.minimum(pose[:, [11, 23], 3], pose[:, [12, 24], 3])
    joints = torch.cat([pose, mids], dim=1)                     # (B, 35, 4)
    ja, jb = joints[:, _BONE_A.to(pose.device)], joints[:, _BONE_B.to(pose.device)]
    a, ab = ja[..., :3], jb[..., :3] - ja[..., :3]              # (B, K, 3)
    vis = torch.minimum(ja[..., 3], jb[..., 3])
    gate = torch.where(vis >= MIN_VISIBILITY, vis, torch.zeros_like(vis))   # (B, K)
    present = (gate > 0).any(-1).to(pose.dtype)[:, None, None]
    ones = torch.ones_like(present[:, 0])
    return Skeleton(torch.cat([ab, a], dim=1).transpose(1, 2), (a * ab).sum(-1)[:, None],
                    (a * a).sum(-1)[:, None], (ab * ab).sum(-1).clamp(min=1e-8)[:, None],
                    a[..., 2][:, None], ab[..., 2][:, None],
                    torch.cat([gate.repeat(1, FEATURES_PER_BONE), ones], dim=-1)[:, None],
                    present)


def bone_features(points: torch.Tensor, pose: torch.Tensor | Skeleton | None) -> torch.Tensor:
    """
    Features (B, N, N_BONE_FEATURES) of model-space ``points`` (B, N, 3) relative to ``pose``.

    ``pose``: pose arrays (B, 33, 4), their :func:`skeleton` (computed once per frame), or None.
    For each bone of :data:`BONES`, from joint a to joint b: the distance from the point to the
    segment, the position ``t`` of the closest point along it (0 at a, 1 at b) and the point's
    depth offset from that closest point (z, towards the camera); the features come grouped by
    kind (all distances, then all ``t``, then all depth offsets), then a "pose present" flag.
    A bone's features are multiplied by the weaker visibility of its ends and are zero below
    MIN_VISIBILITY; ``pose`` None (or all invisible) gives all zeros. Vectorised: the pairwise
    products come from one batched matrix product, the rest are a few (B, N, bones) tensors.
    """
    b, n, _ = points.shape
    if pose is None:
        return points.new_zeros(b, n, N_BONE_FEATURES)
    sk = pose if isinstance(pose, Skeleton) else skeleton(pose.to(points))
    k = sk.a_ab.shape[-1]
    p_ab, p_a = (points @ sk.joints_t).split(k, dim=-1)         # (B, N, K) each
    rel = p_ab - sk.a_ab                                        # (p - a) . ab
    t = (rel / sk.len2).clamp(0.0, 1.0)
    dist2 = (points * points).sum(-1, keepdim=True) - 2 * p_a + sk.a2 - t * (2 * rel - t * sk.len2)
    dz = points[..., 2:3] - sk.az - t * sk.abz
    flag = sk.present.expand(b, n, 1)
    return torch.cat([dist2.clamp(min=0.0).sqrt(), t, dz, flag], dim=-1) * sk.gate
