"""
Person identities across frames: boxes matched by the Hungarian method (SciPy).

A track keeps its id while it is matched; after ``max_missed`` frames in a row without a match it
ends, and a person seen again later gets a new id. Ids count up from 1 and are never reused by
the same :class:`PersonTracker`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detection import box_iou

_NO_MATCH = 1e6


@dataclass
class Track:
    """A tracked person: id, last box (x0, y0, x1, y1), frames since last matched."""

    track_id: int
    box: np.ndarray
    missed: int = 0
    age: int = 1


class PersonTracker:
    """
    Assign track ids to each frame's person boxes.

    Cost of pairing a track with a box: ``1 - IoU`` plus the distance of their centres in units
    of the track's box height; pairs with IoU below ``min_iou`` and centres further apart than
    ``max_shift`` box heights are not allowed.
    """

    def __init__(self, max_missed: int = 5, min_iou: float = 0.1, max_shift: float = 0.5) -> None:
        if max_missed < 0:
            raise ValueError(f'max_missed must be >= 0, got {max_missed}')
        self.max_missed = int(max_missed)
        self.min_iou = float(min_iou)
        self.max_shift = float(max_shift)
        self.tracks: list[Track] = []
        self.ended: list[int] = []       # ids whose tracks ended in the last update
        self._next_id = 1

    def _cost(self, boxes: np.ndarray) -> np.ndarray:
        old = np.array([t.box for t in self.tracks], np.float64)
        iou = box_iou(old, boxes)
        c_old = 0.5 * (old[:, None, :2] + old[:, None, 2:])
        c_new = 0.5 * (boxes[None, :, :2] + boxes[None, :, 2:])
        scale = np.maximum(old[:, None, 3] - old[:, None, 1], 1.0)
        shift = np.linalg.norm(c_new - c_old, axis=-1) / scale
        cost = (1.0 - iou) + shift
        allowed = (iou >= self.min_iou) | (shift <= self.max_shift)
        return np.where(allowed, cost, _NO_MATCH)

    def update(self, boxes: np.ndarray) -> list[int]:
        """
        Match this frame's ``boxes`` (N, 4) to the tracks; return one id per box, in order.

        Unmatched boxes start new tracks; tracks unmatched for more than ``max_missed`` frames
        end (their ids are listed in :attr:`ended` until the next update).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [0] * len(boxes)
        matched_tracks: set[int] = set()
        if self.tracks and len(boxes):
            cost = self._cost(boxes)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] >= _NO_MATCH:
                    continue
                track = self.tracks[r]
                track.box, track.missed, track.age = boxes[c], 0, track.age + 1
                ids[c] = track.track_id
                matched_tracks.add(r)
        self.ended = []
        kept = []
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    self.ended.append(track.track_id)
                    continue
            kept.append(track)
        self.tracks = kept
        for c, box in enumerate(boxes):
            if ids[c] == 0:
                ids[c] = self._next_id
                self.tracks.append(Track(self._next_id, box))
                self._next_id += 1
        return ids

    def reset(self) -> None:
        """End every track at once (their ids are listed in :attr:`ended`); ids are not reused."""
        self.ended = [t.track_id for t in self.tracks]
        self.tracks = []

    def active_boxes(self) -> list[np.ndarray]:
        """Last boxes of the live tracks (where to look first in the next frame)."""
        return [t.box for t in self.tracks]
