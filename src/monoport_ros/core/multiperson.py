"""
Every person in a frame: detection, one instance mask per person, tracked ids.

:class:`PeopleFinder` runs :class:`~monoport_ros.core.detection.PersonDetector` (whole frame and
tiles, so that far people are found), then, for each detection from the largest body down, warps
an upscaled square crop around the body through a :class:`PersonSegmenter` (MediaPipe pose, image
mode) and maps the mask back into the frame. Pixels already given to a larger (nearer) person are
painted grey in the later crops and left out of the later masks, so each pixel belongs to at most
one person; the landmarks found in the crop are mapped back into the frame. A detection whose
crop yields no person, only pixels already taken, or landmarks whose hips are far from the
detection's, is dropped (the segmenter's own detector and landmark model confirm each
detection). The people, largest mask box first (the nearest, for people of similar height),
get ids from a :class:`~monoport_ros.core.tracking.PersonTracker`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .body_pose import LANDMARK_NAMES, BodyPose
from .camera import PersonCrop
from .detection import Detection, PersonDetector, window_around
from .preprocess import check_rgb, mask_box
from .segmentation import PersonSegmenter
from .tracking import PersonTracker

CROP_SIZE = 256          # side of the upscaled crop given to the segmenter
CROP_MARGINS = (1.15, 1.8, 0.85)  # crop side / body size: first try, then wider, then tighter
MIN_MASK_FRACTION = 0.01  # a mask smaller than this share of its crop is no person
MAX_TAKEN = 0.5          # a mask mostly made of pixels of earlier people is a duplicate
PAINT = 127              # value of the pixels of earlier people in later crops
MAX_HIP_GAP = 0.35       # the mask must reach within this share of the body size of the hip
MIN_HEIGHT = 0.3         # the mask's height must be at least this share of the body size
MAX_POSE_GAP = 1.0       # the crop's landmark hips must lie within this share of the body size
FOLLOW_FILL = 0.7        # a followed person's last box fills this much of their crop's side
IDLE_TILES = 12          # video mode: tiles scanned per frame while nobody is tracked
_HIPS = [LANDMARK_NAMES.index('left_hip'), LANDMARK_NAMES.index('right_hip')]


@dataclass
class FoundPerson:
    """
    One person in the frame.

    ``box`` is the mask's x0, y0, x1, y1 (pixels, end exclusive), ``mask`` the (H, W) boolean
    instance mask, ``crop`` the square crop the segmenter saw, ``keypoints`` the detector's (4, 2)
    mid-hip, body scale point, mid-shoulder and upper-body scale point (pixels; None for a person
    followed from the last frame without the detector), ``pose`` the 33
    landmarks found in the crop, in the frame's pixels (None: none), ``track_id`` the tracker's id
    (0 without tracking).
    """

    box: np.ndarray
    mask: np.ndarray
    crop: PersonCrop
    keypoints: np.ndarray | None
    score: float
    pose: BodyPose | None = None
    track_id: int = 0

    @property
    def height_px(self) -> int:
        """Height of the mask's box in pixels."""
        return int(self.box[3] - self.box[1])


def _inside(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3])


def _component_at(mask: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Return the 8-connected region of ``mask`` at ``point`` (x, y), else the largest near it."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    x = int(np.clip(round(point[0]), 0, mask.shape[1] - 1))
    y = int(np.clip(round(point[1]), 0, mask.shape[0] - 1))
    if labels[y, x]:
        return labels == labels[y, x]
    ys, xs = np.nonzero(labels)
    d2 = (xs - point[0]) ** 2 + (ys - point[1]) ** 2
    near = labels[ys, xs][d2 <= d2.min() + (0.1 * np.sqrt(mask.sum())) ** 2]
    best = max(set(near.tolist()), key=lambda k: stats[k, cv2.CC_STAT_AREA])
    return labels == best


def _pose_fits(pose: BodyPose | None, det: Detection) -> bool:
    """Tell whether the crop's landmarks are of the detection's person (no pose: no evidence)."""
    # a detection of part of a person found earlier (painted grey) yields a crop whose mask is
    # some leftover beside them, and whose landmarks lie elsewhere (hips near invisible)
    if pose is None:
        return True
    hip = pose.image_landmarks[_HIPS, :2].mean(0)
    return bool(np.linalg.norm(hip - det.centre) <= MAX_POSE_GAP * det.body_size)


class PeopleFinder:
    """
    Image in, people out: ``find(rgb)`` returns up to ``max_people`` :class:`FoundPerson`.

    ``tiles_per_frame`` None scans every tile of the detector in every frame; a number makes a
    video mode that scans the whole frame, a window around each tracked person and that many
    tiles per frame, going round the tiles over successive frames, at a fraction of the cost.
    While nobody is tracked the round goes faster, ``idle_tiles`` tiles a frame (a full scan in a
    few frames, without the one slow frame a full scan would make); a far newcomer beside tracked
    people is found when the round reaches their tile.
    In video mode each tracked person is also *followed*: a MediaPipe pose graph of their own, in
    tracking mode, segments a crop around their last box (no detector, as the one-person path
    does over the whole frame); the detector's windows then skip the people followed, and a
    detection inside a followed person's box is theirs. ``track`` False gives every person id 0.
    """

    def __init__(self, max_people: int = 3, detector: PersonDetector | None = None,
                 segmenter: PersonSegmenter | None = None, track: bool = True,
                 max_missed: int = 5, tiles_per_frame: int | None = None,
                 crop_size: int = CROP_SIZE, idle_tiles: int = IDLE_TILES) -> None:
        if max_people < 1:
            raise ValueError(f'max_people must be >= 1, got {max_people}')
        self.max_people = int(max_people)
        self.detector = detector if detector is not None else PersonDetector()
        self._own_segmenter = segmenter is None
        self.segmenter = segmenter if segmenter is not None else PersonSegmenter('pose')
        self.tracker = PersonTracker(max_missed) if track else None
        self.tiles_per_frame = tiles_per_frame
        self.crop_size = int(crop_size)
        self.idle_tiles = int(idle_tiles)
        self._cursor = 0
        self._frame = 0
        self._following = tiles_per_frame is not None and self.tracker is not None
        self._graphs: dict[int, PersonSegmenter] = {}   # a tracking pose graph per followed id
        self._spare: list[PersonSegmenter] = []         # graphs of ended tracks, for newcomers

    def _windows(self, width: int, height: int, followed: set[int]
                 ) -> list[tuple[int, int, int]] | None:
        if self.tiles_per_frame is None:
            return None
        idle = self.tracker is None or not self.tracker.tracks
        tiles = self.detector.windows(width, height)[1:]
        self._frame += 1
        # with everyone tracked followed, the whole frame and the tiles take turns (one
        # detector run a frame: a newcomer is found a frame later)
        turns = bool(followed) and len(followed) == len(self.tracker.tracks)
        wins = [(0, 0, 0)] if not turns or self._frame % 2 else []
        if self.tracker is not None:            # where a tracked person was and is not followed
            wins += [window_around(t.box, width, height) for t in self.tracker.tracks
                     if t.track_id not in followed]
        if tiles and (not turns or not self._frame % 2):
            n = min(max(self.tiles_per_frame, self.idle_tiles if idle else 0), len(tiles))
            wins += [tiles[(self._cursor + i) % len(tiles)] for i in range(n)]
            self._cursor = (self._cursor + n) % len(tiles)
        return wins

    def _segment(self, rgb: np.ndarray, det: Detection, taken: np.ndarray
                 ) -> tuple[np.ndarray, BodyPose | None, PersonCrop] | None:
        # MediaPipe's pose graph sometimes finds nobody in a crop that holds a neighbour too (a
        # tighter crop leaves them out) or when the detector's body size is short (a wider one)
        for margin in CROP_MARGINS:
            crop = PersonCrop(float(det.centre[0]), float(det.centre[1]),
                              max(det.body_size * margin, 16.0))
            found = self._segment_crop(rgb, det.centre[0], det.centre[1], det.body_size, taken,
                                       crop, self.segmenter)
            if found is not None and _pose_fits(found[1], det):
                return (*found, crop)
        return None

    def _segment_crop(self, rgb: np.ndarray, cx: float, cy: float, body_size: float,
                      taken: np.ndarray, crop: PersonCrop, segmenter: PersonSegmenter
                      ) -> tuple[np.ndarray, BodyPose | None] | None:
        """Return the mask and pose of the person at ``(cx, cy)`` (body size in px), or None."""
        h, w = rgb.shape[:2]
        size = self.crop_size
        m = crop.affine(size)
        view = rgb.copy()
        view[taken] = PAINT
        image = cv2.warpAffine(view, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(PAINT,) * 3)
        prob, pose = segmenter.probability_with_pose(image)
        if (prob > segmenter.threshold).mean() < MIN_MASK_FRACTION:
            return None
        back = cv2.warpAffine(prob, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        raw = back > segmenter.threshold
        if not raw.any():
            return None
        if (raw & taken).sum() > MAX_TAKEN * raw.sum():
            return None
        mask = _component_at(raw & ~taken, np.array([cx, cy]))
        if mask.sum() < MIN_MASK_FRACTION * (crop.side ** 2) * 0.5:
            return None
        # the segmenter found someone, but is it this detection's person? (a false detection's
        # crop often holds part of a real person nearby)
        ys, xs = np.nonzero(mask)
        gap = np.sqrt(((xs - cx) ** 2 + (ys - cy) ** 2).min())
        if gap > MAX_HIP_GAP * body_size or np.ptp(ys) + 1 < MIN_HEIGHT * body_size:
            return None
        if pose is not None:
            pose = pose.warped(cv2.invertAffineTransform(m))
        return mask, pose

    def _follow(self, rgb: np.ndarray, track_id: int, box: np.ndarray, taken: np.ndarray
                ) -> FoundPerson | None:
        """Segment a tracked person in a crop around their last box with their own graph."""
        graph = self._graphs.get(track_id)
        if graph is None:
            return None
        crop = PersonCrop.from_box(*box, fill=FOLLOW_FILL)
        found = self._segment_crop(rgb, crop.cx, crop.cy, 0.5 * crop.side, taken, crop, graph)
        if found is None:
            return None
        mask, pose = found
        return FoundPerson(mask_box(mask), mask, crop, None, 1.0, pose)

    def find(self, rgb: np.ndarray) -> list[FoundPerson]:
        """People in ``rgb`` ((H, W, 3) uint8 RGB), largest first, at most ``max_people``."""
        check_rgb(rgb)
        h, w = rgb.shape[:2]
        taken = np.zeros((h, w), bool)
        people: list[FoundPerson] = []
        followed: dict[int, FoundPerson] = {}
        if self._following:
            for track in sorted(self.tracker.tracks, key=lambda t: t.box[1] - t.box[3]):
                if len(people) >= self.max_people:
                    break
                person = self._follow(rgb, track.track_id, track.box, taken)
                if person is not None:
                    taken |= person.mask
                    people.append(person)
                    followed[track.track_id] = person
        dets = self.detector.detect(rgb, self._windows(w, h, set(followed)))
        for det in dets:                         # largest body first
            if len(people) >= self.max_people:
                break
            if any(_inside(det.centre, p.box) for p in followed.values()):
                continue                         # a followed person's own detection
            found = self._segment(rgb, det, taken)
            if found is None:
                continue
            mask, pose, crop = found
            taken |= mask
            people.append(FoundPerson(mask_box(mask), mask, crop, det.keypoints, det.score,
                                      pose))
        people.sort(key=lambda p: -p.height_px)
        if self.tracker is not None:
            ids = self.tracker.update(np.array([p.box for p in people], np.float64))
            for p, i in zip(people, ids):
                p.track_id = i
            if self._following:
                self._hand_out_graphs(ids)
        return people

    def _hand_out_graphs(self, ids: list[int]) -> None:
        """Take the graphs of ended tracks back; give new people one (at most max_people)."""
        for ended in self.tracker.ended:
            graph = self._graphs.pop(ended, None)
            if graph is not None:
                self._spare.append(graph)
        for i in ids:
            if i not in self._graphs and len(self._graphs) < self.max_people:
                # a reused graph still tracks its last person: it finds the new one in the crop
                self._graphs[i] = self._spare.pop() if self._spare else self._new_graph()

    def _new_graph(self) -> PersonSegmenter:
        return PersonSegmenter('pose', threshold=self.segmenter.threshold, video=True)

    def reserve_graphs(self) -> None:
        """Make the followed people's graphs now (at start-up), not when someone turns up."""
        while self._following and len(self._graphs) + len(self._spare) < self.max_people:
            self._spare.append(self._new_graph())

    def reset(self) -> None:
        """Forget every track (as after a cut); ids go on counting up."""
        if self.tracker is not None:
            self.tracker.reset()
        self._spare += self._graphs.values()     # kept for the next people
        self._graphs.clear()
        self._cursor = 0

    @property
    def ended(self) -> list[int]:
        """Track ids that ended in the last :meth:`find` (for DELETE markers)."""
        return list(self.tracker.ended) if self.tracker is not None else []

    def close(self) -> None:
        """Release the followed people's graphs, and the segmenter if this finder made it."""
        for graph in [*self._graphs.values(), *self._spare]:
            graph.close()
        self._graphs.clear()
        self._spare.clear()
        if self._own_segmenter:
            self.segmenter.close()
