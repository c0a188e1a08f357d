"""
Connected components of an occupancy box, on the box's own device.

On the CPU scipy's labelling is the fastest (C, one pass). On a GPU copying the box to the host
and labelling there took most of a frame at 512^3 (about 300 ms on an H100 machine), so there the
components are found in torch, on the device: every inside voxel starts with its own flat index as
label; each round takes the smallest label among the 6 neighbours, hooks the old label's root to
it and shortcuts labels (pointer jumping), until no label changes. Labels only ever name voxels of
the same component and only decrease, so each component ends labelled with its smallest flat index:
the same components, and the same choice between equally large ones, as scipy's raster-order
labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

Box = tuple[slice, slice, slice]


@dataclass
class ComponentSplit:
    """The largest 6-connected inside region of a box and what lies outside it."""

    count: int                    # components found
    removed: int                  # inside voxels not in the largest one
    stray: torch.Tensor | None    # bool, shaped and placed as the box: inside, not kept
    kept_box: Box | None          # the largest component's index box, when some are removed


def split_largest_component(occupancy: torch.Tensor, on_device: bool | None = None
                            ) -> ComponentSplit:
    """
    Find the largest 6-connected region of a 3D bool ``occupancy`` (ties: first in raster order).

    ``on_device`` (default: when the tensor is not on the CPU) labels with torch where the tensor
    lives instead of with scipy on the host; both give the same split.
    """
    if on_device is None:
        on_device = occupancy.device.type != 'cpu'
    if on_device:
        return _split_on_device(occupancy)
    return _split_with_scipy(occupancy)


def _split_with_scipy(occupancy: torch.Tensor) -> ComponentSplit:
    occ = occupancy.cpu().numpy()
    labels, count = ndimage.label(occ)
    if count == 0:
        return ComponentSplit(0, 0, None, None)
    if count == 1:
        return ComponentSplit(1, 0, None, None)
    sizes = np.bincount(labels.ravel())[1:]
    kept_label = 1 + int(np.argmax(sizes))
    kept = ndimage.find_objects(labels, max_label=kept_label)[kept_label - 1]
    stray = np.ones(count + 1, bool)        # label -> removed? (one lookup pass over the box)
    stray[[0, kept_label]] = False
    stray_mask = torch.from_numpy(stray[labels]).to(occupancy.device)
    return ComponentSplit(count, int(sizes.sum() - sizes[kept_label - 1]), stray_mask, kept)


def label_components(occupancy: torch.Tensor) -> torch.Tensor:
    """
    Label the 6-connected components of a boolean 3D tensor, on its device.

    Returns int32 (int64 for boxes of 2^31 voxels or more) labels of the same shape: each inside
    voxel gets the smallest flat index of its component, outside voxels get ``occupancy.numel()``.
    """
    n = occupancy.numel()
    dtype = torch.int32 if n < 2**31 - 1 else torch.int64
    outside = torch.tensor(n, dtype=dtype, device=occupancy.device)
    labels = torch.where(occupancy.reshape(-1),
                         torch.arange(n, dtype=dtype, device=occupancy.device), outside)
    table = torch.empty(n + 1, dtype=dtype, device=occupancy.device)   # labels + outside slot
    table[n] = n
    while True:
        grid = labels.view(occupancy.shape)
        low = grid.clone()
        for axis in range(3):                      # smallest label among the 6 neighbours
            size = grid.shape[axis]
            if size < 2:
                continue
            ahead, behind = low.narrow(axis, 1, size - 1), low.narrow(axis, 0, size - 1)
            ahead.copy_(torch.minimum(ahead, grid.narrow(axis, 0, size - 1)))
            behind.copy_(torch.minimum(behind, grid.narrow(axis, 1, size - 1)))
        low = torch.where(occupancy, low, outside).reshape(-1)
        moved = torch.nonzero(low < labels).squeeze(1)     # one host sync per round
        if moved.numel() == 0:
            return grid
        # hook: the root each moved voxel pointed to takes the smaller label too
        table[:n] = low
        table.scatter_reduce_(0, labels[moved].long(), low[moved], reduce='amin')
        labels = table[:n].clone()
        for _ in range(4):                         # shortcut: point to the label's label
            labels = table[labels.long()]
            table[:n] = labels


def _split_on_device(occupancy: torch.Tensor) -> ComponentSplit:
    labels = label_components(occupancy)
    inside = labels[occupancy]
    if inside.numel() == 0:
        return ComponentSplit(0, 0, None, None)
    ids, sizes = torch.unique(inside, return_counts=True)     # sorted: raster order of components
    count = int(ids.numel())
    if count == 1:
        return ComponentSplit(1, 0, None, None)
    best = int(torch.argmax(sizes))           # first of the largest, as np.argmax
    kept = labels == ids[best]
    kept_box = tuple(slice(int(hit[0]), int(hit[-1]) + 1) for hit in (
        torch.nonzero(kept.any(dim=(1, 2))).squeeze(1),
        torch.nonzero(kept.any(dim=(0, 2))).squeeze(1),
        torch.nonzero(kept.any(dim=(0, 1))).squeeze(1)))
    removed = int(inside.numel() - sizes[best])
    return ComponentSplit(count, removed, occupancy & ~kept, kept_box)
