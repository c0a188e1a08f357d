"""
Depth-aided placement: put a reconstruction where a registered depth image says the person is.

Without depth the node places model space by weak perspective at an assumed subject height or
distance (:meth:`PinholeCamera.weak_perspective`). With a depth image registered to the colour
image (RGB-D drivers' ``aligned_depth_to_color``) :func:`fit_to_depth`:

1. takes the depth at the person's mask pixels, eroded so that pixels on the mask's edge, which
   often see the background (and the flying pixels between), are left out; holes (0, NaN) are
   skipped and depths far from the median (beyond a few robust deviations) rejected;
2. fits the placement so that the reconstruction's visible (front) surface lies on the measured
   surface. The image fixes where the person is seen and how large; what it cannot fix is the
   distance ``t``, and with it (weak perspective) the scale: at distance ``t`` model space has
   its origin ``t`` away on the crop centre's ray and ``scale = t * side / (2 f)`` metres per
   unit, so the front surface ``z_front`` (model units, towards the camera) at a pixel lies at
   depth ``t * (1 - side / (2 f) * z_front)``. Least squares in ``t`` over the measured pixels,
   with the worst residuals trimmed twice, gives scale and translation together. (A free 3-D
   scale and translation fit to the back-projected points was biased: the measured front lies
   nearer than the origin, so perspective shrank it: scale 3 % low on a test body at 3 m.)

The residual (RMS depth difference, metres) of the kept pixels says how well the surface matched.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import OpticalPlacement, PersonCrop, PinholeCamera

EDGE_PX = 3              # mask pixels this close to the edge are not trusted
FRONT_CELLS = 64         # the front surface is binned on this grid over the model square
MIN_POINTS = 50          # fewer usable depth pixels: no fit (the caller falls back)
MAX_POINTS = 4000        # measured pixels used (a random subset of the rest)
OUTLIER_MADS = 4.0       # depths farther than this many robust deviations from the median go


@dataclass(frozen=True)
class DepthFit:
    """A placement fitted to depth, with how well it fits."""

    placement: OpticalPlacement
    residual_m: float        # RMS depth difference of the kept pixels to the placed front
    points: int              # measured points kept
    distance_m: float        # robust (median) depth of the person's pixels


def person_depths(depth: np.ndarray, mask: np.ndarray, edge_px: int = EDGE_PX
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Rows, columns and depths (m) of the person's trustworthy depth pixels.

    Erodes ``mask`` by ``edge_px``, drops holes (0, NaN, inf) and depths more than OUTLIER_MADS
    robust deviations (at least 5 cm) from their median.
    """
    if depth.shape != mask.shape:
        raise ValueError(f'depth {depth.shape} and mask {mask.shape} differ in size')
    inner = mask.astype(np.uint8)
    if edge_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge_px + 1,) * 2)
        inner = cv2.erode(inner, kernel)
    rows, cols = np.nonzero(inner)
    d = depth[rows, cols].astype(np.float64)
    ok = np.isfinite(d) & (d > 0)
    rows, cols, d = rows[ok], cols[ok], d[ok]
    if d.size == 0:
        return rows, cols, d
    med = np.median(d)
    mad = 1.4826 * np.median(np.abs(d - med))
    keep = np.abs(d - med) <= max(OUTLIER_MADS * mad, 0.05)
    return rows[keep], cols[keep], d[keep]


def front_surface(points: np.ndarray, cells: int = FRONT_CELLS) -> np.ndarray:
    """
    Highest model z (towards the camera) of ``points`` per cell of a ``cells`` x ``cells`` grid.

    The grid covers model x, y in [-1, 1] (row 0 at y = +1); empty cells are NaN.
    """
    grid = np.full(cells * cells, -np.inf)
    if len(points):
        ij = _cell(points[:, 0], points[:, 1], cells)
        np.maximum.at(grid, ij, points[:, 2])
    grid[~np.isfinite(grid)] = np.nan
    return grid.reshape(cells, cells)


def _cell(x: np.ndarray, y: np.ndarray, cells: int) -> np.ndarray:
    col = np.clip(((x + 1.0) * cells / 2.0).astype(np.int64), 0, cells - 1)
    row = np.clip(((1.0 - y) * cells / 2.0).astype(np.int64), 0, cells - 1)
    return row * cells + col


def fit_to_depth(depth: np.ndarray, mask: np.ndarray, camera: PinholeCamera, crop: PersonCrop,
                 surface: np.ndarray, rng: np.random.Generator | None = None) -> DepthFit | None:
    """
    Fit the placement of ``surface`` (model-space points, e.g. mesh vertices) to ``depth`` (m).

    ``depth`` is registered to the image ``mask`` and ``crop`` come from. Returns None where too
    few depth pixels of the person are usable or the fit is degenerate (the caller falls back to
    weak perspective).
    """
    rows, cols, d = person_depths(depth, mask)
    if d.size < MIN_POINTS or len(surface) == 0:
        return None
    distance = float(np.median(d))
    if d.size > MAX_POINTS:
        pick = (rng or np.random.default_rng(0)).choice(d.size, MAX_POINTS, replace=False)
        rows, cols, d = rows[pick], cols[pick], d[pick]
    half = crop.side / 2.0
    x = (cols + 0.5 - crop.cx) / half            # model x, y of each measured pixel's centre
    y = (crop.cy - rows - 0.5) / half
    front = front_surface(np.asarray(surface, dtype=np.float64))
    z = front.reshape(-1)[_cell(x, y, front.shape[0])]
    ok = np.isfinite(z)
    if ok.sum() < MIN_POINTS:
        return None
    z, d = z[ok], d[ok]
    # weak perspective at distance t puts the front surface at depth t * (1 - k z): one unknown
    a = 1.0 - half / camera.fy * z
    keep = a > 0.05
    for _ in range(3):          # fit, trim the worst residuals, refit
        if keep.sum() < MIN_POINTS:
            return None
        t = float(np.dot(d[keep], a[keep]) / np.dot(a[keep], a[keep]))
        err = np.abs(d - t * a)
        e = err[keep]
        cut = np.median(e) + 3.0 * 1.4826 * np.median(np.abs(e - np.median(e)))
        new_keep = keep & (err <= max(cut, 1e-3))
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    if not (t > 0 and np.isfinite(t)):
        return None
    residual = float(np.sqrt(np.mean(err[keep] ** 2)))
    return DepthFit(camera.weak_perspective(crop, t), residual, int(keep.sum()), distance)
