"""The occupancy blend steadies a still person and leaves a moving one alone."""
from __future__ import annotations

import numpy as np
import torch

from monoport_ros.core.camera import PersonCrop
from monoport_ros.core.localization import LocalizedVolume
from monoport_ros.core.surface_memory import PREVIOUS_WEIGHT, SurfaceMemory

R = 16


def _volume(value: float) -> LocalizedVolume:
    n = R + 1
    return LocalizedVolume(torch.full((n, n, n), value), torch.ones((n, n, n), dtype=torch.bool),
                           R, 0.5)


def _mask(shift: int = 0) -> np.ndarray:
    m = np.zeros((64, 64), np.float32)
    m[10 + shift:50 + shift, 20:40] = 1.0
    return m


def test_a_still_frame_is_blended_with_the_previous_one():
    memory, crop = SurfaceMemory(), PersonCrop(100.0, 80.0, 160.0)
    assert not memory.steady(_volume(0.0), crop, _mask())          # nothing to blend with yet
    v = _volume(1.0)
    moved_a_little = PersonCrop(100.0 + 0.4 * 160 / R / 2, 80.0, 160.0)   # under half a voxel
    assert memory.steady(v, moved_a_little, _mask())
    assert torch.allclose(v.values, torch.tensor(1.0 - PREVIOUS_WEIGHT))
    v2 = _volume(1.0)
    assert memory.steady(v2, crop, _mask())                        # a running mean
    want = (1 - PREVIOUS_WEIGHT) + PREVIOUS_WEIGHT * (1.0 - PREVIOUS_WEIGHT)
    assert torch.allclose(v2.values, torch.tensor(want))


def test_a_moved_crop_a_changed_mask_or_a_forgotten_past_is_not_blended():
    crop = PersonCrop(100.0, 80.0, 160.0)
    for other, mask in ((PersonCrop(106.0, 80.0, 160.0), _mask()), (crop, _mask(shift=6))):
        memory = SurfaceMemory()
        memory.steady(_volume(0.0), crop, _mask())
        v = _volume(1.0)
        assert not memory.steady(v, other, mask) and torch.all(v.values == 1.0)
    memory = SurfaceMemory()
    memory.steady(_volume(0.0), crop, _mask())
    memory.forget()
    v = _volume(1.0)
    assert not memory.steady(v, crop, _mask()) and torch.all(v.values == 1.0)
