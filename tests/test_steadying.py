"""The placement filter steadies a still person and follows a moving one within a frame."""
from __future__ import annotations

import numpy as np

from monoport_ros.core.camera import OpticalPlacement
from monoport_ros.core.steadying import OneEuroFilter, PlacementSmoother

FPS = 10.0


def test_a_still_persons_jitter_is_more_than_halved():
    rng = np.random.default_rng(0)
    smooth = PlacementSmoother()
    raw, out = [], []
    for k in range(200):
        noisy = OpticalPlacement(np.array([0.3, 0.1, 3.0]) + rng.normal(0, 0.02, 3),
                                 0.8 * float(np.exp(rng.normal(0, 0.01))))
        raw.append(noisy.origin)
        out.append(smooth(noisy, k / FPS).origin)
    raw_jitter = np.linalg.norm(np.diff(raw[20:], axis=0), axis=1).mean()
    out_jitter = np.linalg.norm(np.diff(out[20:], axis=0), axis=1).mean()
    assert out_jitter < 0.5 * raw_jitter
    assert np.allclose(np.mean(out[20:], axis=0), [0.3, 0.1, 3.0], atol=0.01)


def test_a_walking_person_is_followed_within_one_frame():
    smooth = PlacementSmoother()
    speed = 1.4                                      # m/s sideways, at 10 Hz: 14 cm a frame
    lag = []
    for k in range(60):
        truth = np.array([-1.0 + speed * k / FPS, 0.0, 3.0])
        got = smooth(OpticalPlacement(truth, 0.8), k / FPS).origin
        lag.append(abs(got[0] - truth[0]))
    assert max(lag[10:]) < speed / FPS


def test_the_filter_starts_afresh_after_a_gap_or_a_reset():
    f = OneEuroFilter(0.5, 0.0)
    f(np.zeros(2), 0.0)
    assert np.allclose(f(np.ones(2), 0.1), f._x) and f._x[0] < 0.5        # filtered
    assert np.allclose(f(np.full(2, 5.0), 3.0), 5.0)                       # a long gap
    f.reset()
    assert np.allclose(f(np.full(2, -2.0), 3.1), -2.0)
    smooth = PlacementSmoother()
    smooth(OpticalPlacement(np.zeros(3), 1.0), 0.0)
    assert smooth(OpticalPlacement(np.ones(3), 2.0), 0.1).scale < 2.0
