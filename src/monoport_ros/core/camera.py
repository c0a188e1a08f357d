"""
Cameras and coordinate frames.

*Model space* is PIFu's normalized orthographic cube ``[-1, 1]^3``: x right, y up, z towards the
camera. A :class:`PersonCrop` (a square box in the image) maps it onto pixels: model ``(x, y)``
lands on the pixel-centre coordinates ``(cx + x*side/2, cy - y*side/2)``; z uses the same scale as
x and y.

Two metric frames are supported:

* :class:`OrthoCamera`, the orthographic JSON camera of the CLI and of evaluation data (x right,
  y up, z towards the camera, metres; z = 0 through the centre of the subject's 3D bounding box);
* :class:`PinholeCamera`, from a ROS CameraInfo: points go to the optical frame (x right, y down, z
  forward, REP 103) assuming the subject stands at a known distance (weak perspective).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PersonCrop:
    """Square crop: centre ``(cx, cy)`` in continuous pixel coordinates and ``side`` in pixels."""

    cx: float
    cy: float
    side: float

    @staticmethod
    def from_box(u0: float, v0: float, u1: float, v1: float, fill: float = 0.85) -> 'PersonCrop':
        """
        Crop around a pixel box ``[u0, u1) x [v0, v1)``.

        Its longer side fills ``fill`` of the crop.
        """
        if u1 <= u0 or v1 <= v0:
            raise ValueError(f'empty person box {(u0, v0, u1, v1)}')
        return PersonCrop((u0 + u1) / 2.0, (v0 + v1) / 2.0, max(u1 - u0, v1 - v0) / fill)

    @staticmethod
    def from_mask(mask: np.ndarray, fill: float = 0.85) -> 'PersonCrop':
        """Crop around the True pixels of a boolean mask (ValueError when the mask is empty)."""
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            raise ValueError('mask is empty: no person')
        return PersonCrop.from_box(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, fill)

    def affine(self, size: int) -> np.ndarray:
        """
        2x3 matrix mapping image pixel coordinates to crop pixel coordinates.

        The crop is ``size`` square.
        """
        s = size / self.side
        return np.array([[s, 0.0, size / 2.0 - s * self.cx],
                         [0.0, s, size / 2.0 - s * self.cy]], dtype=np.float64)

    def model_to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """
        Model ``(x, y)`` -> continuous image pixel coordinates ``(u, v)``.

        Pixel centres are at +0.5.
        """
        half = self.side / 2.0
        return np.stack([self.cx + xy[..., 0] * half, self.cy - xy[..., 1] * half], axis=-1)

    def pixels_to_model(self, uv: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`model_to_pixels`: continuous pixel ``(u, v)`` -> model ``(x, y)``."""
        half = self.side / 2.0
        return np.stack([(uv[..., 0] - self.cx) / half, (self.cy - uv[..., 1]) / half], axis=-1)


@dataclass(frozen=True)
class OrthoCamera:
    """Orthographic camera: ``metres_per_pixel`` over a ``width`` x ``height`` image."""

    width: int
    height: int
    metres_per_pixel: float

    @staticmethod
    def load(path: str | Path) -> 'OrthoCamera':
        """
        Read the orthographic camera JSON.

        Keys: ``projection``, ``image_size``, ``metres_per_pixel``.
        """
        data = json.loads(Path(path).read_text())
        return OrthoCamera.from_dict(data, source=str(path))

    @staticmethod
    def from_dict(data: dict, source: str = 'camera') -> 'OrthoCamera':
        """Validate and build from the JSON dict."""
        if data.get('projection') != 'orthographic':
            raise ValueError(f'{source}: projection must be "orthographic", '
                             f'got {data.get("projection")!r}')
        if data.get('z_origin', 'bbox_center') != 'bbox_center':
            raise ValueError(f'{source}: only z_origin "bbox_center" is supported')
        w, h = (int(v) for v in data['image_size'])
        m = float(data['metres_per_pixel'])
        if w <= 0 or h <= 0 or not (m > 0 and math.isfinite(m)):
            raise ValueError(f'{source}: bad image_size {data["image_size"]} '
                             f'or metres_per_pixel {m}')
        return OrthoCamera(w, h, m)

    def to_dict(self) -> dict:
        """Return the JSON form."""
        return {'projection': 'orthographic', 'image_size': [self.width, self.height],
                'metres_per_pixel': self.metres_per_pixel, 'z_origin': 'bbox_center'}

    def save(self, path: str | Path) -> None:
        """Write the JSON form."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def model_to_metric(self, crop: PersonCrop, points: np.ndarray) -> np.ndarray:
        """Model-space points (N, 3) -> camera-frame metres (x right, y up, z towards camera)."""
        half = crop.side / 2.0
        m = self.metres_per_pixel
        out = np.empty_like(points, dtype=np.float64)
        out[:, 0] = (crop.cx - self.width / 2.0 + points[:, 0] * half) * m
        out[:, 1] = (self.height / 2.0 - crop.cy + points[:, 1] * half) * m
        out[:, 2] = points[:, 2] * half * m
        return out

    def metric_to_model(self, crop: PersonCrop, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`model_to_metric`."""
        half = crop.side / 2.0
        m = self.metres_per_pixel
        out = np.empty_like(points, dtype=np.float64)
        out[:, 0] = (points[:, 0] / m - crop.cx + self.width / 2.0) / half
        out[:, 1] = (points[:, 1] / m - self.height / 2.0 + crop.cy) / half
        out[:, 2] = points[:, 2] / m / half
        return out


def ortho_camera_from_height(width: int, height: int, person_height_px: float,
                             subject_height_m: float = 1.7) -> OrthoCamera:
    """
    Orthographic camera for a person of known height.

    A person ``person_height_px`` tall measures ``subject_height_m``.
    """
    if person_height_px <= 0:
        raise ValueError('person height in pixels must be positive')
    return OrthoCamera(width, height, subject_height_m / person_height_px)


@dataclass(frozen=True)
class PinholeCamera:
    """
    Pinhole intrinsics of a ``width`` x ``height`` image.

    As in sensor_msgs/CameraInfo ``K``.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def validate(self) -> None:
        """Raise ValueError unless sizes are positive and intrinsics finite and positive."""
        vals = (self.fx, self.fy, self.cx, self.cy)
        if self.width <= 0 or self.height <= 0 or not all(math.isfinite(v) for v in vals) \
                or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f'invalid pinhole camera {self}')

    @staticmethod
    def default_for(width: int, height: int) -> 'PinholeCamera':
        """Make a plausible camera when no CameraInfo is known: focal length = the longer side."""
        f = float(max(width, height))
        return PinholeCamera(width, height, f, f, width / 2.0, height / 2.0)

    def subject_distance(self, person_height_px: float, subject_height_m: float) -> float:
        """Distance at which a ``subject_height_m`` person appears ``person_height_px`` tall."""
        return self.fy * subject_height_m / max(person_height_px, 1e-6)

    def weak_perspective(self, crop: PersonCrop, distance: float) -> 'OpticalPlacement':
        """Model space with its origin ``distance`` metres away on the crop centre's ray."""
        centre = np.array([(crop.cx - self.cx) * distance / self.fx,
                           (crop.cy - self.cy) * distance / self.fy, distance])
        return OpticalPlacement(centre, crop.side / 2.0 * distance / self.fy)

    def model_to_optical(self, crop: PersonCrop, points: np.ndarray,
                         distance: float) -> np.ndarray:
        """Model-space points -> optical frame (x right, y down, z forward) by weak perspective."""
        return self.weak_perspective(crop, distance).apply(points)


@dataclass(frozen=True)
class OpticalPlacement:
    """
    Where model space sits in the optical frame: ``origin`` (metres) and ``scale`` (m per unit).

    Model ``(x, y, z)`` (y up, z towards the camera) goes to ``origin + scale * (x, -y, -z)``
    (x right, y down, z forward).
    """

    origin: np.ndarray
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Model-space points (N, 3) -> optical frame (N, 3) float64."""
        out = np.asarray(points, dtype=np.float64) * self.scale
        out[:, 1:] *= -1.0
        return out + np.asarray(self.origin, dtype=np.float64)
