"""Depth-aided placement: the fit finds a body's true scale and place from a noisy depth image."""
from __future__ import annotations

import numpy as np
import pytest

from monoport_ros.core.camera import OpticalPlacement, PinholeCamera
from monoport_ros.core.placement import fit_to_depth, front_surface, person_depths

from depth_scene import crop_for, depth_of, ellipsoid_surface

CAMERA = PinholeCamera(320, 240, 300.0, 300.0, 160.0, 120.0)


def _scene(origin=(0.1, -0.05, 3.0), scale=0.9):
    place = OpticalPlacement(np.array(origin), scale)
    depth = depth_of(CAMERA, place)
    return place, depth, np.isfinite(depth), crop_for(CAMERA, place)


def test_the_fit_recovers_scale_and_origin_from_exact_depth():
    place, depth, mask, crop = _scene()
    fit = fit_to_depth(depth, mask, CAMERA, crop, ellipsoid_surface())
    assert fit is not None
    assert fit.placement.scale == pytest.approx(place.scale, rel=0.02)
    np.testing.assert_allclose(fit.placement.origin, place.origin, atol=0.02)
    assert fit.residual_m < 0.01 and fit.points > 500
    assert fit.distance_m == pytest.approx(3.0 - 0.9 * 0.15, abs=0.05)   # the front surface


def test_a_wrong_assumed_size_is_corrected():
    """A small person far away looks like a tall one nearer: depth tells them apart."""
    place, depth, mask, crop = _scene(origin=(0.0, 0.0, 3.0), scale=0.82)
    assumed = CAMERA.weak_perspective(crop, 3.0 * 1.7 / 1.55)      # 1.7 m assumed, 1.55 m true
    fit = fit_to_depth(depth, mask, CAMERA, crop, ellipsoid_surface())
    true_pts = place.apply(ellipsoid_surface(500, seed=1))
    body = ellipsoid_surface(500, seed=1)
    err_assumed = np.linalg.norm(assumed.apply(body) - true_pts, axis=1)
    err_fit = np.linalg.norm(fit.placement.apply(body) - true_pts, axis=1)
    assert err_assumed.mean() > 0.2 and err_fit.mean() < 0.03


def test_holes_edge_pixels_and_outliers_do_not_move_the_fit():
    rng = np.random.default_rng(3)
    place, depth, mask, crop = _scene()
    noisy = depth + rng.normal(0, 0.01, depth.shape)            # 1 cm sensor noise
    noisy[rng.random(depth.shape) < 0.2] = np.nan               # holes
    noisy[rng.random(depth.shape) < 0.03] = 0.0                 # zero = no depth (16UC1)
    wild = rng.random(depth.shape) < 0.05
    noisy[wild] = rng.uniform(0.3, 10.0, wild.sum())            # outliers
    grown = np.zeros_like(mask)                                 # the mask spills over the edge
    grown[1:-1, 1:-1] = mask[1:-1, 1:-1] | mask[2:, 1:-1] | mask[:-2, 1:-1] | mask[1:-1, 2:] \
        | mask[1:-1, :-2]
    noisy[grown & ~mask] = 8.0                                  # the background behind
    fit = fit_to_depth(noisy.astype(np.float32), grown, CAMERA, crop, ellipsoid_surface())
    assert fit.placement.scale == pytest.approx(place.scale, rel=0.03)
    np.testing.assert_allclose(fit.placement.origin, place.origin, atol=0.03)


def test_person_depths_drop_the_edge_holes_and_far_values():
    depth = np.full((40, 40), 2.0, np.float32)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    depth[15, 15], depth[16, 16], depth[17, 17] = np.nan, 0.0, 9.0
    rows, cols, d = person_depths(depth, mask, edge_px=3)
    assert d.size == 14 * 14 - 3 and np.all(d == 2.0)
    assert rows.min() >= 13 and rows.max() <= 26
    with pytest.raises(ValueError, match='differ in size'):
        person_depths(depth, mask[:-1])


def test_too_few_depth_pixels_give_no_fit():
    place, depth, mask, crop = _scene()
    empty = np.full_like(depth, np.nan)
    assert fit_to_depth(empty, mask, CAMERA, crop, ellipsoid_surface()) is None
    assert fit_to_depth(depth, mask, CAMERA, crop, np.zeros((0, 3))) is None


def test_front_surface_keeps_the_nearest_point_per_cell():
    pts = np.array([[0.0, 0.0, -0.5], [0.0, 0.0, 0.3], [0.9, -0.9, 0.1]])
    grid = front_surface(pts, cells=4)
    assert grid[2, 2] == pytest.approx(0.3) and grid[3, 3] == pytest.approx(0.1)
    assert np.isnan(grid[0, 0])
