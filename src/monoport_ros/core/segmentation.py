"""
Person segmentation with the MediaPipe models that ship inside the mediapipe wheel (no download).

Two models are available, both through MediaPipe's ``solutions`` API (mediapipe 0.10.21):

* ``'pose'`` (default): BlazePose full (``pose_landmark_full.tflite``) with its segmentation head.
  It first detects the person, then segments inside a crop around them, so it handles small,
  full-body people well. ``video=True`` tracks the person from frame to frame (skips the detector
  and smooths the mask over time), which is faster than per-image detection; where the tracked
  region holds nobody, the same frame is processed again, with the detector.
* ``'selfie'``: the selfie segmentation model (``selfie_segmentation.tflite``, 256x256 input, the
  whole frame at once). Much faster, good for people who fill the frame, poor for small full-body
  figures.

The lighter pose models (``model_complexity`` 0 and 2) and the Tasks-API ``.task`` bundles are not
in the wheel (MediaPipe downloads them on first use), so they are not offered.
"""
from __future__ import annotations

import atexit
import threading
import weakref

from dataclasses import dataclass

import numpy as np

from .body_pose import BodyPose
from .preprocess import check_rgb, largest_component

MODELS = ('pose', 'selfie')
MIN_SIDE = 16          # smallest image side accepted by :meth:`PersonSegmenter.segment`
_LIVE: 'weakref.WeakSet[PersonSegmenter]' = weakref.WeakSet()


@atexit.register
def _close_live_segmenters() -> None:
    # A MediaPipe graph closed from __del__ during interpreter teardown can hang (seen with the
    # tracking pose graph); closing the survivors here, before teardown, is clean.
    for segmenter in list(_LIVE):
        segmenter.close()


@dataclass(frozen=True)
class PersonSegmentation:
    """What the segmentation stage finds in one image: the person's mask and body pose."""

    mask: np.ndarray                    # (H, W) bool
    pose: BodyPose | None = None        # landmarks in the image's pixels (None: none found)


class PersonSegmenter:
    """
    Boolean mask of the main person in an RGB image, from a MediaPipe segmentation model.

    ``segment`` is thread-safe: calls from several threads are serialised by a lock (one MediaPipe
    graph runs one image at a time). Use one segmenter per video stream when ``video=True``, since
    tracking state carries over from one call to the next. Call :meth:`close` (or use the object
    as a context manager) to free the graph.
    """

    def __init__(self, model: str = 'pose', threshold: float = 0.5, video: bool = False,
                 keep_largest: bool = True) -> None:
        if model not in MODELS:
            raise ValueError(f'unknown segmentation model {model!r}; choose from {MODELS}')
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f'threshold must be in (0, 1), got {threshold}')
        self.model = model
        self.threshold = float(threshold)
        self.video = bool(video)
        self.keep_largest = bool(keep_largest)
        self._lock = threading.Lock()
        self._tracking = False          # video mode, and the last frame had a person
        self._size: tuple[int, int] | None = None     # the last image's shape (video mode)
        self._graph = self._make_graph()
        _LIVE.add(self)

    def _make_graph(self):
        if self.model == 'pose':
            from mediapipe.python.solutions import pose

            # model_complexity=1 is the only pose landmark model bundled in the wheel.
            return pose.Pose(static_image_mode=not self.video, model_complexity=1,
                             smooth_landmarks=self.video, enable_segmentation=True,
                             smooth_segmentation=self.video)
        from mediapipe.python.solutions import selfie_segmentation

        return selfie_segmentation.SelfieSegmentation(model_selection=0)

    def _run(self, rgb: np.ndarray) -> tuple[np.ndarray, BodyPose | None]:
        """Person probability (H, W) float32 and the body pose (None: no landmarks)."""
        check_rgb(rgb, MIN_SIDE)
        with self._lock:
            if self._graph is None:
                raise RuntimeError('PersonSegmenter is closed')
            image = np.ascontiguousarray(rgb)
            if self.video and self._size not in (None, rgb.shape[:2]):
                # the tracking graph's mask smoothing fails on a new image size (a RET_CHECK
                # in SegmentationSmoothingCalculator): a new stream, a new graph
                self._graph.close()
                self._graph = self._make_graph()
                self._tracking = False
            self._size = rgb.shape[:2]
            result = self._graph.process(image)
            if self._tracking and result.segmentation_mask is None:
                # The tracked region held nobody (a cut, or the person left it): the graph
                # detects again on its next frame, so hand it this frame once more. (Without a
                # person in the last frame, the detector has just run: no second try.)
                result = self._graph.process(image)
            self._tracking = (self.video and self.model == 'pose'
                              and result.segmentation_mask is not None)
        pose = BodyPose.from_mediapipe(result, rgb.shape[1], rgb.shape[0]) \
            if self.model == 'pose' else None
        prob = result.segmentation_mask
        if prob is None:                      # the pose model found nobody
            return np.zeros(rgb.shape[:2], np.float32), pose
        return np.asarray(prob, dtype=np.float32), pose

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """Return the person probability of each pixel of ``rgb``: (H, W) float32 in [0, 1]."""
        return self._run(rgb)[0]

    def probability_with_pose(self, rgb: np.ndarray) -> tuple[np.ndarray, BodyPose | None]:
        """Return :meth:`probability` and the body pose the graph found with it (or None)."""
        return self._run(rgb)

    def segment_with_pose(self, rgb: np.ndarray) -> PersonSegmentation:
        """
        Return the main person's mask and body pose in ``rgb`` ((H, W, 3) uint8 RGB).

        The mask as :meth:`segment`; the pose is None with the selfie model or where the graph
        gave no landmarks.
        """
        prob, pose = self._run(rgb)
        mask = prob > self.threshold
        return PersonSegmentation(largest_component(mask) if self.keep_largest else mask, pose)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """
        Return the boolean (H, W) mask of the main person in ``rgb`` ((H, W, 3) uint8, RGB order).

        The probability is thresholded and, with ``keep_largest``, only the largest connected
        region is kept. Raises ValueError for a wrong shape or dtype.
        """
        return self.segment_with_pose(rgb).mask

    def close(self) -> None:
        """Release the MediaPipe graph; later calls to :meth:`segment` raise RuntimeError."""
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None

    def __enter__(self) -> 'PersonSegmenter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:    # at interpreter shutdown there may be nothing left to release
            pass
