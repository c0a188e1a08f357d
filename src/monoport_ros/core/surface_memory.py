"""
Steady a still person's surface: blend the occupancy with the previous frame's where nothing moved.

A person standing still is reconstructed anew every frame, and image noise makes the surface
shimmer. When the new frame's crop is where the previous one was (within half a voxel) and the
person's crop masks agree (IoU >= ``MIN_MASK_IOU``), the two occupancy grids describe the same
model space, so :class:`SurfaceMemory` averages them: ``values = (1 - w) new + w previous``, a
running mean over the frames since the person last moved. A person who moves changes the crop or
the mask, and gets this frame's surface alone: no lag. Frames without a person forget.
"""
from __future__ import annotations

import numpy as np
import torch

from .camera import PersonCrop
from .localization import LocalizedVolume
from .preprocess import mask_iou

PREVIOUS_WEIGHT = 0.6      # weight of the running mean; 0.6 halves the noise's deviation
MIN_MASK_IOU = 0.95        # crop masks at least this alike: the person did not move
MAX_RESOLUTION = 256       # above, the previous grid's copy costs too much memory


class SurfaceMemory:
    """The previous frame's occupancy, crop and crop mask, and the blend with the next frame."""

    def __init__(self) -> None:
        self._values: torch.Tensor | None = None
        self._queried: torch.Tensor | None = None
        self._crop: PersonCrop | None = None
        self._mask: np.ndarray | None = None

    def forget(self) -> None:
        """Drop the previous frame (no person, or a cut)."""
        self._values = self._queried = self._crop = self._mask = None

    def steady(self, volume: LocalizedVolume, crop: PersonCrop, crop_mask: np.ndarray) -> bool:
        """Blend ``volume`` in place with the previous frame's if still (True); remember it."""
        blended = False
        if volume.resolution > MAX_RESOLUTION:
            self.forget()
            return False
        if self._still(volume, crop, crop_mask):
            volume.values.mul_(1.0 - PREVIOUS_WEIGHT).add_(self._values, alpha=PREVIOUS_WEIGHT)
            volume.queried |= self._queried
            volume.values_changed()
            blended = True
        if self._values is None or self._values.shape != volume.values.shape \
                or self._values.device != volume.values.device:
            self._values = volume.values.clone()
            self._queried = volume.queried.clone()
        else:
            self._values.copy_(volume.values)
            self._queried.copy_(volume.queried)
        self._crop, self._mask = crop, crop_mask > 0.5
        return blended

    def _still(self, volume: LocalizedVolume, crop: PersonCrop, crop_mask: np.ndarray) -> bool:
        if self._values is None or self._values.shape != volume.values.shape \
                or self._values.device != volume.values.device or self._mask is None \
                or self._mask.shape != crop_mask.shape:
            return False
        half_voxel = 0.5 * crop.side / volume.resolution         # pixels
        prev = self._crop
        if max(abs(crop.cx - prev.cx), abs(crop.cy - prev.cy),
               abs(crop.side - prev.side) / 2) > half_voxel:
            return False
        return mask_iou(self._mask, crop_mask > 0.5) >= MIN_MASK_IOU
