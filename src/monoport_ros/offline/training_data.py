"""
Training samples: reading a data set's ``samples/*.npz``, augmenting them and batching them.

A sample holds a rendered view of a subject (image, person mask) and labelled points in model
space. Data set layout (written by :mod:`monoport_ros.offline.synthetic`)::

    DATA/meta.json
    DATA/samples/{subject:04d}_{yaw:03d}.npz   image (S,S,3) u8, mask (S,S) u8, points (N,3) f32,
                                               labels (N,) u8 (1 = inside), color_points (M,3) f32,
                                               colors (M,3) u8, subject (); optionally
                                               pose (33,4) f32, pose_world (33,3) f32

:func:`prepare_sample` applies the
same geometric change to the image and the points, :func:`depth_negatives` adds points behind or
in front of the body in its own columns, and :func:`collate` stacks samples into a batch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..core.body_pose import N_LANDMARKS, mirror_pose, model_depth

Z_CENTERS = ('surface_median', 'data')    # depth origin of a sample's points (prepare_sample)


@dataclass
class AugmentConfig:
    """Augmentations that model real frames (applied consistently to image, points and colours)."""

    enabled: bool = True
    flip: bool = True                   # random left-right mirror (x -> -x)
    color_jitter: float = 0.2           # brightness / contrast / saturation factors in 1 +- this
    crop_shift: float = 0.05            # crop centre shift, model units (1 = half the crop side)
    crop_scale: float = 0.08            # crop scale factor in [1/(1+this), 1+this] (log-uniform)
    mask_edge_prob: float = 0.5         # chance of eroding or dilating the person mask edge
    mask_edge_px: int = 3               # largest erosion/dilation radius (pixels)


class SampleSet:
    """Index of the ``samples/*.npz`` files of a data set, split by subject into train / val."""

    def __init__(self, root: str | Path, val_subjects: int = 0) -> None:
        self.root = Path(root)
        sample_dir = self.root / 'samples'
        if not sample_dir.is_dir():
            raise FileNotFoundError(f'{self.root}: no samples/ folder '
                                    '(expected DATA/samples/*.npz)')
        self.paths = sorted(sample_dir.glob('*.npz'))
        if not self.paths:
            raise ValueError(f'{sample_dir}: no .npz samples')
        self.subjects = np.array([_subject_of(p) for p in self.paths])
        meta_path = self.root / 'meta.json'
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        ids = sorted(set(self.subjects.tolist()))
        if val_subjects >= len(ids):
            raise ValueError(f'val_subjects={val_subjects} leaves no training subject '
                             f'({len(ids)} subjects in {self.root})')
        self.val_ids = ids[len(ids) - val_subjects:] if val_subjects else []
        is_val = np.isin(self.subjects, self.val_ids)
        self.train_idx = np.flatnonzero(~is_val)
        self.val_idx = np.flatnonzero(is_val)

    def load(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of sample ``index`` (ValueError naming the file when a key is missing)."""
        path = self.paths[index]
        with np.load(path) as z:
            need = {'image', 'mask', 'points', 'labels', 'color_points', 'colors'}
            missing = need - set(z.files)
            if missing:
                raise ValueError(f'{path}: missing arrays {sorted(missing)}')
            return {k: z[k] for k in z.files}

    def summary(self) -> dict[str, Any]:
        """Return the sample and subject counts (for logs and the model card)."""
        return {'path': str(self.root), 'samples': len(self.paths),
                'subjects': int(len(set(self.subjects.tolist()))),
                'train_samples': int(len(self.train_idx)), 'val_samples': int(len(self.val_idx)),
                'val_subjects': [int(s) for s in self.val_ids]}


def _subject_of(path: Path) -> int:
    try:
        return int(path.stem.split('_')[0])
    except ValueError as exc:
        raise ValueError(f'{path}: name must be SUBJECT_YAW.npz') from exc


def _mask_bool(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)
    return m > 0.5 * max(float(m.max()), 1e-6)


def _jitter_fn(rng: np.random.Generator, amount: float, pivot: float):
    """Pointwise colour transform (brightness, contrast about ``pivot``, saturation)."""
    b, c, s = 1.0 + rng.uniform(-amount, amount, 3)
    luma = np.array([0.299, 0.587, 0.114], np.float32)

    def apply(rgb: np.ndarray) -> np.ndarray:
        x = (rgb * b - pivot) * c + pivot
        gray = (x @ luma)[..., None]
        return np.clip(gray + s * (x - gray), 0.0, 1.0).astype(np.float32)
    return apply


def prepare_sample(sample: dict[str, np.ndarray], size: int, rng: np.random.Generator,
                   aug: AugmentConfig | None, z_center: str = 'surface_median'
                   ) -> dict[str, np.ndarray]:
    """
    Image as float (S,S,3) in [0,1] plus points/colours, augmented consistently when ``aug``.

    With ``z_center='surface_median'`` every z is first shifted so that the median z of the
    surface (colour) points is 0: depth then has a fixed, image-predictable origin (the body), not
    the centre of the view's 3D bounding box, which depends on limbs that a single image barely
    shows. Geometric changes act on the crop and on the model-space points alike: a mirror maps x
    to -x; a crop scale ``s`` and shift ``(tx, ty)`` map ``(x, y, z)`` to ``(s x + tx, s y + ty,
    s z)``.
    """
    img = sample['image']
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'image must be (S, S, 3), got {img.shape}')
    img = img.astype(np.float32) / 255.0
    mask = _mask_bool(sample['mask'])
    if img.shape[0] != size or img.shape[1] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    pts = sample['points'].astype(np.float32).copy()
    cpts = sample['color_points'].astype(np.float32).copy()
    cols = sample['colors'].astype(np.float32) / 255.0
    # BlazePose's landmarks keep their own depth origin (the hips), as at inference; samples of
    # older data sets have none (a dummy here, dropped again below)
    has_pose = 'pose' in sample
    pose = sample['pose'].astype(np.float32).copy() if has_pose else \
        np.zeros((N_LANDMARKS, 4), np.float32)
    if 'pose_world' in sample:          # depth as BodyPose.to_model makes it at inference
        pose[:, 2] = model_depth(pose, sample['pose_world'])
    if z_center == 'surface_median':
        zc = float(np.median(cpts[:, 2])) if len(cpts) else 0.0
        pts[:, 2] -= zc
        cpts[:, 2] -= zc
    elif z_center != 'data':
        raise ValueError(f'z_center={z_center!r} is not one of {Z_CENTERS}')
    if aug is not None and aug.enabled:
        if aug.flip and rng.random() < 0.5:
            img, mask = img[:, ::-1].copy(), mask[:, ::-1].copy()
            pts[:, 0] *= -1.0
            cpts[:, 0] *= -1.0
            pose = mirror_pose(pose)
        if aug.crop_scale > 0 or aug.crop_shift > 0:
            lim = math.log1p(aug.crop_scale)
            s = math.exp(rng.uniform(-lim, lim))
            tx, ty = rng.uniform(-aug.crop_shift, aug.crop_shift, 2)
            # continuous pixel u = S/2 (1 + x), v = S/2 (1 - y); cv2 indexes pixel centres at +0.5
            half = size / 2.0
            m = np.array([[s, 0.0, half * (1 - s + tx) + 0.5 * (s - 1)],
                          [0.0, s, half * (1 - s - ty) + 0.5 * (s - 1)]])
            img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = cv2.warpAffine(mask.astype(np.float32), m, (size, size),
                                  flags=cv2.INTER_LINEAR, borderValue=0) > 0.5
            for p in (pts, cpts, pose[:, :3]):
                p *= s
                p[:, 0] += tx
                p[:, 1] += ty
        if aug.color_jitter > 0 and mask.any():
            fn = _jitter_fn(rng, aug.color_jitter, float(img[mask].mean()))
            img[mask] = fn(img[mask])
            cols = fn(cols)
        if aug.mask_edge_px > 0 and rng.random() < aug.mask_edge_prob:
            k = int(rng.integers(1, aug.mask_edge_px + 1))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            m8 = mask.astype(np.uint8)
            if rng.random() < 0.5:
                mask = cv2.erode(m8, kernel) > 0
            else:                   # background leaking in: a noisy random colour ring
                grown = cv2.dilate(m8, kernel) > 0
                ring = grown & ~mask
                colour = rng.uniform(0, 1, 3).astype(np.float32)
                noise = rng.normal(0, 0.08, (int(ring.sum()), 3)).astype(np.float32)
                img[ring] = np.clip(colour + noise, 0, 1)
                mask = grown
    img = img * mask[..., None]
    out = {'image': img.astype(np.float32), 'mask': mask, 'points': pts,
           'labels': sample['labels'].astype(np.float32), 'color_points': cpts, 'colors': cols}
    if has_pose:
        out['pose'] = pose
    return out


DEPTH_CELL_PX = 8           # columns of this many crop pixels share one depth range
DEPTH_MARGIN = 0.08         # model units (about 8 cm on a person filling the crop)
DEPTH_NEAR_STD = 0.15       # near negatives: half-normal distance beyond the margin (model units)


def depth_negatives(sample: dict[str, np.ndarray], n: int, rng: np.random.Generator,
                    near: float = 0.0) -> np.ndarray:
    """
    Up to ``n`` points (K, 3) inside the silhouette but far in front of or behind the body.

    A single image shows the silhouette, not how deep the body is behind each pixel; a net that
    only learned the silhouette fills its columns with slabs and puddles (seen at the feet in the
    evaluation). Near-surface samples rarely land far away in depth and uniform ones rarely in a
    thin limb's column, so these points make that mistake costly. For each column of
    DEPTH_CELL_PX pixels the body lies between the lowest and highest z of the surface and inside
    points that fall in it; a point of the column beyond that range by DEPTH_MARGIN is outside.
    Columns with no such point are skipped. A fraction ``near`` of the points lies just beyond
    the range (DEPTH_MARGIN plus a half-normal distance of DEPTH_NEAR_STD), the rest anywhere in
    depth.
    """
    mask = sample['mask']
    vs, us = np.nonzero(mask)
    if n <= 0 or len(us) == 0:
        return np.zeros((0, 3), np.float32)
    size = mask.shape[0]
    cells = -(-size // DEPTH_CELL_PX)
    body = np.concatenate([sample['color_points'], sample['points'][sample['labels'] > 0.5]])

    def cell_of(xy: np.ndarray) -> np.ndarray:
        u = np.clip(((xy[:, 0] + 1) * 0.5 * size).astype(np.int64), 0, size - 1)
        v = np.clip(((1 - xy[:, 1]) * 0.5 * size).astype(np.int64), 0, size - 1)
        return (v // DEPTH_CELL_PX) * cells + u // DEPTH_CELL_PX
    lo = np.full(cells * cells, np.inf)
    hi = np.full(cells * cells, -np.inf)
    c = cell_of(body)
    np.minimum.at(lo, c, body[:, 2])
    np.maximum.at(hi, c, body[:, 2])
    pick = rng.integers(0, len(us), 2 * n)
    x = 2 * (us[pick] + rng.random(2 * n)) / size - 1
    y = 1 - 2 * (vs[pick] + rng.random(2 * n)) / size
    cell = cell_of(np.stack([x, y], axis=1))
    z = rng.uniform(-1, 1, 2 * n)
    if near > 0:        # (no extra draws otherwise: older configs replay the same points)
        close = (rng.random(2 * n) < near) & np.isfinite(lo[cell])
        beyond = DEPTH_MARGIN + 1e-3 + np.abs(rng.normal(0.0, DEPTH_NEAR_STD, 2 * n))
        behind = rng.random(2 * n) < 0.5
        z = np.where(close, np.where(behind, lo[cell] - beyond, hi[cell] + beyond), z)
    far = np.isfinite(lo[cell]) & ((z < lo[cell] - DEPTH_MARGIN) | (z > hi[cell] + DEPTH_MARGIN))
    far &= np.abs(z) <= 1.0
    pts = np.stack([x, y, z], axis=1)
    return pts[far][:n].astype(np.float32)


def _choose(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    if n == 0:
        raise ValueError('sample has no points')
    return rng.choice(n, size=k, replace=n < k)


def collate(items: list[dict[str, np.ndarray]], rng: np.random.Generator, n_points: int,
            n_color: int, color_noise: float, pose_dropout: float = 0.0
            ) -> dict[str, torch.Tensor]:
    """
    Stack prepared samples into tensors, subsampling ``n_points`` / ``n_color`` points each.

    ``pose`` (B, 33, 4): each sample's pose array, or with probability ``pose_dropout`` none (all
    zero: the network also learns frames without landmarks); none for a sample without one (and
    no random draw: older data sets replay the same batches).
    """
    imgs, pts, labs, cpts, cols, poses = [], [], [], [], [], []
    for it in items:
        i = _choose(rng, len(it['points']), n_points)
        j = _choose(rng, len(it['color_points']), n_color)
        imgs.append(it['image'].transpose(2, 0, 1))
        pts.append(it['points'][i])
        labs.append(it['labels'][i])
        cp = it['color_points'][j]
        if color_noise > 0:
            cp = cp + rng.normal(0, color_noise, cp.shape).astype(np.float32)
        cpts.append(cp)
        cols.append(it['colors'][j])
        pose = it.get('pose')
        if pose is None or (pose_dropout > 0 and rng.random() < pose_dropout):
            pose = np.zeros((N_LANDMARKS, 4), np.float32)
        poses.append(pose)
    return {'pose': torch.from_numpy(np.stack(poses).astype(np.float32)),
            'image': torch.from_numpy(np.stack(imgs)), 'points': torch.from_numpy(np.stack(pts)),
            'labels': torch.from_numpy(np.stack(labs)),
            'color_points': torch.from_numpy(np.stack(cpts)),
            'colors': torch.from_numpy(np.stack(cols))}
