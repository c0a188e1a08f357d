"""Synthetic RGB-D frames: the depth sensor's faults and the frame's geometry are as documented."""
from __future__ import annotations

import numpy as np

from monoport_ros.offline.rgbd import BASELINE_M, make_rgbd_frame, sensor_depth, SUBPIXEL


def test_sensor_depth_steps_grow_with_the_square_of_depth():
    rng = np.random.default_rng(0)
    focal = 500.0
    for z in (2.0, 6.0):
        ramp = np.linspace(z, z + 0.3, 4000, dtype=np.float32)[None]
        out = sensor_depth(ramp, ramp, focal, rng)
        levels = np.unique(out[out > 0])
        step = np.median(np.diff(levels))
        expected = z ** 2 * SUBPIXEL / (focal * BASELINE_M)
        assert 0.7 * expected < step < 1.5 * expected


def test_depth_edges_get_holes_and_flying_pixels_between_person_and_wall():
    rng = np.random.default_rng(1)
    depth = np.full((40, 40), 5.0, np.float32)
    depth[:, :20] = 2.0                                   # the person on the left
    wall = np.full_like(depth, 5.0)
    out = sensor_depth(depth, wall, 500.0, rng)
    edge = out[:, 19:21]
    assert (edge == 0).mean() > 0.3                       # half the edge pixels are holes
    between = (edge > 2.2) & (edge < 4.6)
    assert between.any()                                  # flying pixels
    inside = out[:, :15]
    assert (inside == 0).mean() < 0.06 and np.all(np.abs(inside[inside > 0] - 2.0) < 0.05)


def test_a_frame_shows_the_whole_person_where_its_mesh_projects():
    f = make_rgbd_frame(np.random.default_rng(2), width=320, height=180)
    cam = f.camera
    uv = f.vertices[:, :2] / f.vertices[:, 2:] * cam.fx + [cam.cx, cam.cy]
    assert uv[:, 0].min() >= 0 and uv[:, 0].max() < cam.width
    assert uv[:, 1].min() >= 0 and uv[:, 1].max() < cam.height
    rows = np.flatnonzero(f.mask.any(1))
    assert abs((rows[-1] - rows[0] + 1) - np.ptp(uv[:, 1])) < 3
    assert 1.5 <= f.height_m <= 1.95 and abs(np.ptp(f.vertices[:, 1]) - f.height_m) < 1e-6
    ok = f.mask & (f.depth > 0)
    near = f.vertices[:, 2].min()
    assert np.all(f.depth[ok] > near - 0.2) and np.all(f.depth[ok] < f.vertices[:, 2].max() + 3.5)
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (180, 320, 3)
