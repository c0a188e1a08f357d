"""
Steady a stream's placement: a One-Euro filter on where the person is and how large.

Each frame's placement (:class:`core.camera.OpticalPlacement`) comes from that frame alone (the
mask's box, or the depth fit), so a person standing still jitters by the segmentation's and the
sensor's noise. The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) low-passes it with a
cut-off that rises with speed: still, the noise is averaged away; moving, the filter follows
with little lag. Written here (a dozen lines) rather than taken from a package: none of the
project's libraries has it, and the small PyPI ones are unmaintained.
"""
from __future__ import annotations

import math

import numpy as np

from .camera import OpticalPlacement

RESET_GAP_S = 1.0        # a longer gap between frames starts afresh (a new person, a cut)


class OneEuroFilter:
    """One-Euro filter of a vector signal sampled at irregular times."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        """Forget the past: the next sample passes unfiltered."""
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds)."""
        x = np.asarray(x, dtype=np.float64)
        dt = t - self._t
        if self._x is None or not 0.0 < dt <= RESET_GAP_S:
            self._x, self._dx, self._t = x, None, t
            return x
        if self._dx is None:        # the second sample: the speed so far, not a start from rest
            self._dx = (x - self._x) / dt
        else:
            a_d = self._alpha(self.d_cutoff, dt)
            self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * float(np.linalg.norm(self._dx))
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x


class PlacementSmoother:
    """
    Filter a stream's placements: the origin (metres) and the log of the scale.

    ``min_cutoff`` (Hz) sets how much a still person is steadied, ``beta`` (per m/s) how fast the
    cut-off rises when the person moves.
    """

    def __init__(self, min_cutoff: float = 0.5, beta: float = 10.0) -> None:
        self._filter = OneEuroFilter(min_cutoff, beta)

    def tune(self, min_cutoff: float, beta: float) -> None:
        """Change the filter's settings (they may change at run time); the state stays."""
        self._filter.min_cutoff, self._filter.beta = min_cutoff, beta

    def reset(self) -> None:
        """Start afresh (no person in view)."""
        self._filter.reset()

    def __call__(self, placement: OpticalPlacement, t: float) -> OpticalPlacement:
        """Return the steadied placement of a frame taken at ``t`` (seconds, e.g. its stamp)."""
        state = np.concatenate([placement.origin, [math.log(placement.scale)]])
        out = self._filter(state, t)
        return OpticalPlacement(out[:3], float(math.exp(out[3])))
