"""Connected components on the box's device: torch labelling gives scipy's split."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
import torch

from monoport_ros.core.components import label_components, split_largest_component


def _random_boxes(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(count):
        shape = tuple(int(s) for s in rng.integers(1, 36, 3))
        occ = rng.random(shape) < rng.uniform(0.15, 0.75)
        if i % 3 == 0 and min(shape) > 2:
            occ = ndimage.binary_opening(occ)       # fewer, larger blobs
        boxes.append(occ)
    return boxes


def serpentine(n: int) -> np.ndarray:
    """One 6-connected path winding through an n^3 box (the longest labelling case) and a dot."""
    occ = np.zeros((n, n, n), bool)
    for z in range(0, n, 2):
        for y in range(0, n, 2):
            occ[:, y, z] = True
            if y + 2 < n:
                occ[n - 1 if (y // 2) % 2 == 0 else 0, y + 1, z] = True
        if z + 2 < n:
            occ[0 if (n // 2) % 2 == 0 else n - 1, n - 2, z + 1] = True
    occ[n - 1, n - 1, n - 1] = True
    return occ


def test_labels_are_each_components_smallest_flat_index() -> None:
    for occ in _random_boxes(40, seed=1) + [serpentine(24)]:
        labels = label_components(torch.from_numpy(occ)).numpy()
        want, count = ndimage.label(occ)
        assert (labels[~occ] == occ.size).all()
        firsts = ndimage.minimum(np.arange(occ.size).reshape(occ.shape), want,
                                 index=np.arange(1, count + 1))
        expected = np.full(occ.shape, occ.size)
        expected[occ] = np.asarray(firsts, np.int64)[want[occ] - 1]
        assert np.array_equal(labels, expected)


@pytest.mark.parametrize('seed', [0, 5])
def test_split_on_device_equals_scipy(seed: int) -> None:
    boxes = _random_boxes(40, seed) + [serpentine(20), np.zeros((4, 5, 6), bool),
                                       np.ones((3, 1, 7), bool)]
    ties = np.zeros((9, 9, 9), bool)     # two equal blocks: the first in raster order is kept
    ties[1:3, 1:3, 1:3] = ties[6:8, 6:8, 6:8] = True
    for occ in boxes + [ties]:
        t = torch.from_numpy(occ)
        host = split_largest_component(t, on_device=False)
        torch_split = split_largest_component(t, on_device=True)
        assert torch_split.count == host.count == ndimage.label(occ)[1]
        assert torch_split.removed == host.removed
        assert torch_split.kept_box == host.kept_box
        assert (torch_split.stray is None) == (host.stray is None) == (host.count < 2)
        if host.stray is not None:
            assert torch.equal(torch_split.stray, host.stray)
    split = split_largest_component(torch.from_numpy(ties), on_device=True)
    assert split.kept_box == (slice(1, 3),) * 3 and split.removed == 8
