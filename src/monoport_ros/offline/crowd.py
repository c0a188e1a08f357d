"""
Scenes of several synthetic people with their true instance masks: test data for detection.

Each person (:func:`~monoport_ros.offline.people.make_person`) is rendered once
(:func:`~monoport_ros.offline.synthetic.render_person`, flat background), cut out along their
silhouette and then pasted onto a background at any height and place; people pasted later stand
in front, so each true mask is the person's silhouette minus the people pasted after them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .people import make_person
from .synthetic import make_background, render_person


@dataclass
class Cutout:
    """A rendered person cut to their silhouette's box: RGB (h, w, 3) uint8 and mask (h, w)."""

    rgb: np.ndarray
    mask: np.ndarray


@dataclass
class Placement:
    """Where a person stands: feet centre ``(u, v)`` in pixels and height in pixels."""

    person: int
    u: float
    v: float
    height: float


def make_cutout(rng: np.random.Generator, yaw_deg: float | None = None,
                size: int = 512) -> Cutout:
    """Render a random person (random yaw unless given) and cut them out."""
    person = make_person(rng)
    yaw = float(rng.uniform(-60, 60)) if yaw_deg is None else float(yaw_deg)
    r = render_person(person, yaw, (size // 2, size), rng, 'flat', (0.92, 0.92))
    rows = np.flatnonzero(r['mask'].any(1))
    cols = np.flatnonzero(r['mask'].any(0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return Cutout(r['image'][sl].copy(), r['mask'][sl].copy())


def compose(cutouts: list[Cutout], placements: list[Placement], background: np.ndarray
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """
    Paste people onto a copy of ``background`` in the order of ``placements`` (later in front).

    Returns the image and one visible (true) mask per placement, in the same order; a person
    entirely outside the frame or hidden has an empty mask.
    """
    image = background.copy()
    h, w = image.shape[:2]
    owner = np.full((h, w), -1, np.int32)
    for k, pl in enumerate(placements):
        cut = cutouts[pl.person]
        scale = pl.height / cut.mask.shape[0]
        cw = max(1, int(round(cut.mask.shape[1] * scale)))
        ch = max(1, int(round(pl.height)))
        rgb = cv2.resize(cut.rgb, (cw, ch), interpolation=cv2.INTER_AREA)
        msk = cv2.resize(cut.mask.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) > 0.5
        x0, y0 = int(round(pl.u - cw / 2)), int(round(pl.v - ch))
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + cw, w), min(y0 + ch, h)
        if xa >= xb or ya >= yb:
            continue
        sub = msk[ya - y0:yb - y0, xa - x0:xb - x0]
        image[ya:yb, xa:xb][sub] = rgb[ya - y0:yb - y0, xa - x0:xb - x0][sub]
        owner[ya:yb, xa:xb][sub] = k
    return image, [owner == k for k in range(len(placements))]


def random_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Make a textured background (smooth noise or clutter) for crowd scenes."""
    return make_background(height, width, rng, str(rng.choice(['noise', 'clutter'])))
