"""A body of known shape and place, and its exact depth image: the truth for placement tests."""
from __future__ import annotations

import numpy as np

from monoport_ros.core.camera import OpticalPlacement, PersonCrop, PinholeCamera

SEMI_AXES = np.array([0.25, 0.8, 0.15])     # model-space ellipsoid: narrow, tall, thin


def ellipsoid_surface(n: int = 20000, seed: int = 0) -> np.ndarray:
    """Points on the model-space ellipsoid (a stand-in for a reconstruction's vertices)."""
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True) * SEMI_AXES


def depth_of(camera: PinholeCamera, place: OpticalPlacement) -> np.ndarray:
    """Depth (m, NaN off the body) of the placed ellipsoid, ray-cast through every pixel."""
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    d = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy,
                  np.ones_like(u)], -1)                 # rays with z = 1: t is the depth
    axes = place.scale * SEMI_AXES
    o = -np.asarray(place.origin) / axes                # the ray in the unit sphere's frame
    dd = d / axes
    a = (dd ** 2).sum(-1)
    b = 2 * (dd * o).sum(-1)
    c = (o ** 2).sum() - 1.0
    disc = b ** 2 - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where(disc > 0, t, np.nan)


def crop_for(camera: PinholeCamera, place: OpticalPlacement) -> PersonCrop:
    """Return the crop whose weak perspective at the origin's depth is ``place``."""
    ox, oy, oz = place.origin
    return PersonCrop(camera.cx + camera.fx * ox / oz, camera.cy + camera.fy * oy / oz,
                      2.0 * place.scale * camera.fy / oz)
