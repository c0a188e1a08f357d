"""
Every person in a frame, far people included: BlazePose's person detector run on its own.

The model is ``pose_detection.tflite`` from the installed mediapipe wheel (nothing is downloaded);
it runs with ai-edge-litert's TFLite ``Interpreter``. Its pre- and post-processing follow the
options of MediaPipe's public graph ``modules/pose_detection/pose_detection_cpu.pbtxt``:

* input: the image letterboxed (aspect kept, zero border) into 224x224, values in [-1, 1];
* anchors (``SsdAnchorsCalculator``): 5 layers, strides 8, 16, 32, 32, 32, aspect ratio 1 plus
  the interpolated one, offset 0.5, fixed anchor size: 28*28*2 + 14*14*2 + 7*7*6 = 2254 anchors;
* decoding (``TensorsToDetectionsCalculator``): 12 values per anchor (box x, y, w, h, then four
  keypoints x, y), each divided by 224 and added to the anchor centre; score = sigmoid of the
  logit clipped to +-100, kept above ``min_score``;
* weighted non-max suppression (IoU 0.3): overlapping boxes are averaged, weighted by score.

A detection's box is the face; its keypoints are 0 the mid-hip, 1 a point whose distance from the
hip is half the full-body size, 2 the mid-shoulder and 3 the same for the upper body (MediaPipe's
``PoseDetectionToRoi`` makes the body region from keypoints 0 and 1).

The detector finds people whose body fills a good part of its 224-pixel input. To find far people
:class:`PersonDetector` also runs it on overlapping square tiles of the frame (two finer levels),
maps every detection into the frame and merges duplicates (the same face box, or nearly the same
hip and body size: the best-scored detection is kept).
No library here decodes these SSD outputs, hence the hand-written NumPy below.
"""
from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .preprocess import check_rgb

INPUT_SIZE = 224
NUM_ANCHORS = 2254
MIN_SCORE = 0.5           # MediaPipe's graph keeps >= 0.2 and lets the landmark model decide
NMS_IOU = 0.3             # min_suppression_threshold of the graph
BODY_SCALE = 1.25         # margin of the body box around 2 * |hip - scale point| (pose ROI)
SAME_HIP, SAME_SIZE = 0.15, 1.5   # hips this close (of the body size), sizes this alike: one
TILE_FRACTION = 0.6       # side of the coarser tiles, of the frame's shorter side
MODEL_PATH = 'modules/pose_detection/pose_detection.tflite'


def detector_model_path() -> Path:
    """Path of ``pose_detection.tflite`` inside the installed mediapipe wheel."""
    spec = importlib.util.find_spec('mediapipe')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('mediapipe is not installed: the person detector '
                                f'({MODEL_PATH}) ships in its wheel (pip install mediapipe)')
    for root in spec.submodule_search_locations:
        path = Path(root) / MODEL_PATH
        if path.is_file():
            return path
    raise FileNotFoundError(f'{MODEL_PATH} is missing from the mediapipe package at '
                            f'{list(spec.submodule_search_locations)}; reinstall mediapipe')


def ssd_anchors() -> np.ndarray:
    """Anchor centres (2254, 2) in [0, 1] (x, y), in the model's output order."""
    # SsdAnchorsCalculator with the pbtxt's options; layers of equal stride share a feature map,
    # each layer adds 2 anchors per cell (aspect ratio 1 and the interpolated scale, both of size
    # 1 with fixed_anchor_size), so only the centres matter.
    strides = [8, 16, 32, 32, 32]
    out = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        side = math.ceil(INPUT_SIZE / strides[layer])
        yy, xx = np.mgrid[0:side, 0:side]
        centres = np.stack([(xx + 0.5) / side, (yy + 0.5) / side], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    anchors = np.concatenate(out).astype(np.float32)
    assert len(anchors) == NUM_ANCHORS
    return anchors


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Decode the model's (2254, 12) and (2254,) outputs into detections above ``min_score``.

    Returns ``boxes`` (N, 4) x0, y0, x1, y1, ``keypoints`` (N, 4, 2) and ``scores`` (N,), in the
    model input's normalised coordinates ([0, 1], x right, y down).
    """
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw = raw_boxes.reshape(-1, 12)[keep] / INPUT_SIZE
    anc = anchors[keep]
    centre = raw[:, 0:2] + anc
    half = 0.5 * raw[:, 2:4]
    boxes = np.concatenate([centre - half, centre + half], 1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) + anc[:, None, :]
    return boxes, keypoints, scores[keep]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU matrix (len(a), len(b)) of boxes given as x0, y0, x1, y1."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area_a = np.prod(a[:, 2:] - a[:, :2], -1)
    area_b = np.prod(b[:, 2:] - b[:, :2], -1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Weighted non-max suppression, as MediaPipe's WEIGHTED algorithm.

    Highest score first, every remaining box overlapping it by more than ``iou`` joins it; the
    group's boxes and keypoints are averaged with the scores as weights, the score is the best.
    (OpenCV's ``dnn.NMSBoxes`` only drops boxes, it does not average them.)
    """
    order = np.argsort(-scores, kind='stable')
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    left = np.ones(len(scores), bool)
    out_b, out_k, out_s = [], [], []
    for i in range(len(scores)):
        if not left[i]:
            continue
        group = left & (box_iou(boxes[i:i + 1], boxes)[0] > iou)
        group[i] = True
        w = scores[group] / scores[group].sum()
        out_b.append((boxes[group] * w[:, None]).sum(0))
        out_k.append((keypoints[group] * w[:, None, None]).sum(0))
        out_s.append(scores[i])
        left &= ~group
    if not out_s:
        return np.zeros((0, 4)), np.zeros((0, 4, 2)), np.zeros(0)
    return np.array(out_b), np.array(out_k), np.array(out_s)


@dataclass(frozen=True)
class Detection:
    """
    One detected person, in frame pixel coordinates (continuous, x right, y down).

    ``face_box`` is x0, y0, x1, y1 of the face, ``keypoints`` (4, 2) the mid-hip, full-body scale
    point, mid-shoulder and upper-body scale point, ``score`` the detector's confidence.
    """

    face_box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def centre(self) -> np.ndarray:
        """Centre of the body region (the mid-hip keypoint)."""
        return self.keypoints[0]

    @property
    def body_size(self) -> float:
        """Side of the square body region (MediaPipe's pose ROI), in pixels."""
        return float(2.0 * BODY_SCALE * np.linalg.norm(self.keypoints[1] - self.keypoints[0]))

    @property
    def body_box(self) -> np.ndarray:
        """Axis-aligned square x0, y0, x1, y1 around the body region (not clipped to the frame)."""
        half = 0.5 * self.body_size
        return np.concatenate([self.centre - half, self.centre + half])


class PoseDetectorModel:
    """
    The raw detector on one image: letterbox to 224x224, run, decode, suppress.

    Thread-safe (calls are serialised). ``num_threads`` is TFLite's (1: one core).
    """

    def __init__(self, min_score: float = MIN_SCORE, num_threads: int = 1,
                 model_path: str | Path | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:     # pragma: no cover - depends on the environment
            raise ImportError('the person detector needs ai-edge-litert (see requirements.txt)'
                              ) from exc
        path = Path(model_path) if model_path is not None else detector_model_path()
        if not path.is_file():
            raise FileNotFoundError(f'person detector model not found: {path}')
        self.min_score = float(min_score)
        self._interpreter = Interpreter(model_path=str(path), num_threads=int(num_threads))
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]['index']
        outputs = {tuple(d['shape']): d['index'] for d in self._interpreter.get_output_details()}
        self._boxes = outputs[(1, NUM_ANCHORS, 12)]
        self._scores = outputs[(1, NUM_ANCHORS, 1)]
        self._anchors = ssd_anchors()
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Detect people in ``rgb`` (H, W, 3) uint8.

        Returns face boxes (N, 4), keypoints (N, 4, 2) in ``rgb``'s pixel coordinates, and scores.
        """
        check_rgb(rgb)
        h, w = rgb.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                             else cv2.INTER_LINEAR)
        x0, y0 = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        tensor = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        tensor[0, y0:y0 + nh, x0:x0 + nw] = resized.astype(np.float32) / 127.5 - 1.0
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._boxes)[0]
            raw_scores = self._interpreter.get_tensor(self._scores)[0]
        boxes, kps, scores = decode(raw_boxes, raw_scores, self._anchors, self.min_score)
        boxes, kps, scores = weighted_nms(boxes, kps, scores)
        # letterbox removal: model-normalised -> pixels of the resized image -> of rgb
        offset = np.array([x0, y0], np.float64)
        boxes = ((boxes.reshape(-1, 2, 2) * INPUT_SIZE - offset) / scale).reshape(-1, 4)
        kps = (kps * INPUT_SIZE - offset) / scale
        return boxes, kps, scores


def tile_windows(width: int, height: int, levels: int = 2, overlap: float = 0.4
                 ) -> list[tuple[int, int, int]]:
    """
    Square windows ``(x0, y0, side)`` covering the frame: the whole frame, then ``levels`` finer.

    The detector finds people 30-90 % as tall as its (square) input. Level k has windows of side
    ``0.6 * min(width, height) / 2**(k - 1)``, so level 1 finds people of about 18-54 % of the
    frame height and level 2 of 9-27 %; neighbours overlap by ``overlap`` of the side. The first
    entry (0, 0, 0) stands for the whole (letterboxed) frame.
    """
    wins = [(0, 0, 0)]
    short = min(width, height)
    for k in range(1, levels + 1):
        side = int(round(short * TILE_FRACTION / 2 ** (k - 1)))
        if side < 32:
            break
        step = max(1, int(round(side * (1.0 - overlap))))
        xs = list(range(0, max(1, width - side + 1), step))
        ys = list(range(0, max(1, height - side + 1), step))
        if xs[-1] + side < width:
            xs.append(width - side)
        if ys[-1] + side < height:
            ys.append(height - side)
        wins += [(x, y, side) for y in ys for x in xs]
    return wins


def _same_body(a: Detection, b: Detection) -> bool:
    size = max(a.body_size, b.body_size)
    return bool(np.linalg.norm(a.centre - b.centre) < SAME_HIP * size
                and size < SAME_SIZE * min(a.body_size, b.body_size))


def window_around(box: np.ndarray, width: int, height: int, fill: float = 0.55
                  ) -> tuple[int, int, int]:
    """Square window ``(x0, y0, side)`` in which a person's body ``box`` fills ``fill``."""
    side = int(round(min(max(box[2] - box[0], box[3] - box[1]) / fill, max(width, height))))
    side = max(side, 32)
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    x0 = int(round(min(max(cx - side / 2, 0), max(width - side, 0))))
    y0 = int(round(min(max(cy - side / 2, 0), max(height - side, 0))))
    return x0, y0, side


class PersonDetector:
    """
    People of any size in a frame: the detector on the whole frame and on overlapping tiles.

    ``levels`` finer tile levels (0: the whole frame only, see :func:`tile_windows`). Of the
    detections of all windows whose face boxes overlap by more than ``merge_iou``, the best
    scored is kept.
    """

    def __init__(self, min_score: float = MIN_SCORE, levels: int = 2, overlap: float = 0.4,
                 merge_iou: float = NMS_IOU, num_threads: int = 1,
                 model_path: str | Path | None = None) -> None:
        self.model = PoseDetectorModel(min_score, num_threads, model_path)
        self.levels = int(levels)
        self.overlap = float(overlap)
        self.merge_iou = float(merge_iou)

    def windows(self, width: int, height: int) -> list[tuple[int, int, int]]:
        """All windows of a full scan of a ``width`` x ``height`` frame (see tile_windows)."""
        return tile_windows(width, height, self.levels, self.overlap)

    def detect(self, rgb: np.ndarray, windows: list[tuple[int, int, int]] | None = None
               ) -> list[Detection]:
        """
        Every person in ``rgb`` (H, W, 3) uint8 RGB, largest body first.

        ``windows`` (``(x0, y0, side)``, side 0 for the whole frame) defaults to a full scan.
        """
        check_rgb(rgb)
        h, w = rgb.shape[:2]
        all_b, all_k, all_s = [], [], []
        for x0, y0, side in (self.windows(w, h) if windows is None else windows):
            tile = rgb if side == 0 else rgb[y0:y0 + side, x0:x0 + side]
            if min(tile.shape[:2]) < 8:
                continue
            boxes, kps, scores = self.model.detect(tile)
            if not len(scores):
                continue
            shift = np.array([x0, y0], np.float64)
            all_b.append(boxes + np.tile(shift, 2))
            all_k.append(kps + shift)
            all_s.append(scores)
        if not all_s:
            return []
        boxes, kps, scores = np.concatenate(all_b), np.concatenate(all_k), np.concatenate(all_s)
        # The same face seen from several windows: keep the best-scored detection (averaging
        # would mix in the body of a person cut by a tile border). Body boxes are not compared:
        # people side by side have overlapping body boxes but separate faces.
        # Two detections whose hips nearly coincide, at similar body sizes, are one person too.
        dets = [Detection(b, k, float(s)) for b, k, s in zip(boxes, kps, scores)]
        keep: list[int] = []
        for i in np.argsort(-scores, kind='stable'):
            if keep and box_iou(boxes[i:i + 1], boxes[keep]).max() > self.merge_iou:
                continue
            if any(_same_body(dets[i], dets[j]) for j in keep):
                continue
            keep.append(int(i))
        out = [dets[i] for i in keep]
        return sorted(out, key=lambda d: -d.body_size)
