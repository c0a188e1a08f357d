"""Image in: read and check an RGB image, and crop the person to the network's square input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .camera import PersonCrop

CROP_FILL = 0.85    # the person's longer box side fills this fraction of the crop (train and test)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (alpha dropped, grey expanded)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'{path}: not a readable image')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_rgb(rgb: np.ndarray, min_side: int = 8) -> None:
    """Raise ValueError unless ``rgb`` is an (H, W, 3) uint8 image, sides >= ``min_side``."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f'expected a numpy array, got {type(rgb).__name__}')
    if rgb.dtype != np.uint8:
        raise ValueError(f'expected a uint8 RGB image, got dtype {rgb.dtype}')
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB image, got shape {rgb.shape}')
    if min(rgb.shape[:2]) < min_side:
        raise ValueError(f'image too small: {rgb.shape[1]}x{rgb.shape[0]} (min side {min_side})')


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty: they agree)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Return the box x0, y0, x1, y1 (pixels, end exclusive) of a mask; zeros when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return np.zeros(4, np.int64)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected True region of a boolean mask (the main person)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def crop_person(rgb: np.ndarray, mask: np.ndarray, size: int,
                crop: PersonCrop | None = None) -> tuple[np.ndarray, np.ndarray, PersonCrop]:
    """
    Crop ``rgb`` (H, W, 3) uint8 around ``mask`` into a ``size`` square.

    Returns the crop as float32 RGB in [0, 1] with the background set to 0, the cropped mask
    (float32 in [0, 1]) and the :class:`PersonCrop` that maps model space onto the image.
    Raises ValueError when the mask is empty.
    """
    if crop is None:
        crop = PersonCrop.from_mask(mask, CROP_FILL)
    m = crop.affine(size)
    img = cv2.warpAffine(rgb, m, (size, size),
                         flags=cv2.INTER_AREA if crop.side > size else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    msk = cv2.warpAffine(mask.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = img.astype(np.float32) / 255.0 * (msk[..., None] > 0.5)
    return out, msk, crop
