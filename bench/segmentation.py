"""
Benchmark: person masks per image against MediaPipe's video mode (``segmentation_tracking``).

``.venv/bin/python bench/segmentation.py --json`` renders short camera clips of synthetic people
the training never saw (each clip: one person turning about the vertical axis and drifting
sideways in front of a fixed random background, at the node's output rate, so each step is what
the tracker sees between two processed frames), segments every frame both ways (a fresh
segmenter per clip), and prints one JSON line per mode: mask IoU against the true mask (mean, 5th
percentile, minimum, frames under 0.8) and milliseconds per frame (the first frame of each clip,
the detector's, apart).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np

from monoport_ros.offline.people import make_person
from monoport_ros.core.preprocess import mask_iou
from monoport_ros.core.segmentation import PersonSegmenter
from monoport_ros.offline.synthetic import EVAL_SEED_OFFSET, render_person, subject_rng

# subjects apart from the training ones (below EVAL_SEED_OFFSET) and make-eval-set's (just above)
CLIP_SUBJECT_OFFSET = EVAL_SEED_OFFSET + 50_000


def make_clip(seed: int, clip: int, frames: int, yaw_step: float, drift_px: float,
              size: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render one clip: RGB frames and true masks of one person turning and drifting."""
    rng = subject_rng(seed, CLIP_SUBJECT_OFFSET + clip)
    person = make_person(rng)
    yaw0 = float(rng.uniform(0, 360))
    scene_seed = int(rng.integers(2**31))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    width, height = size
    images, masks = [], []
    for k in range(frames):
        # the same scene seed every frame: same placement, light and background; only the yaw
        # changes (and the drift below)
        r = render_person(person, yaw0 + k * yaw_step, size, np.random.default_rng(scene_seed),
                          height_fraction=(0.6, 0.8))
        shift = np.float32([[1, 0, direction * drift_px * (k - frames / 2)], [0, 1, 0]])
        images.append(cv2.warpAffine(r['image'], shift, (width, height),
                                     borderMode=cv2.BORDER_REPLICATE))
        masks.append(cv2.warpAffine(r['mask'].astype(np.uint8), shift, (width, height),
                                    flags=cv2.INTER_NEAREST) > 0)
    return images, masks


def main() -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--clips', type=int, default=8)
    ap.add_argument('--frames', type=int, default=20, help='frames per clip')
    ap.add_argument('--yaw-step', type=float, default=6.0,
                    help='degrees the person turns between two frames the node processes')
    ap.add_argument('--drift', type=float, default=6.0,
                    help='pixels the person moves sideways between two processed frames')
    ap.add_argument('--model', default='pose', choices=('pose', 'selfie'))
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    clips = [make_clip(args.seed, c, args.frames, args.yaw_step, args.drift, (640, 480))
             for c in range(args.clips)]
    for video in (False, True):
        ious: list[float] = []
        first_ms: list[float] = []
        next_ms: list[float] = []
        for images, masks in clips:
            with PersonSegmenter(model=args.model, video=video) as seg:
                for k, (img, truth) in enumerate(zip(images, masks)):
                    t0 = time.perf_counter()
                    mask = seg.segment(img)
                    (first_ms if k == 0 else next_ms).append((time.perf_counter() - t0) * 1e3)
                    ious.append(mask_iou(mask, truth))
        a = np.array(ious)
        row = {'mode': 'video' if video else 'per_image', 'model': args.model,
               'clips': args.clips, 'frames': int(a.size), 'yaw_step_deg': args.yaw_step,
               'drift_px': args.drift, 'iou_mean': round(float(a.mean()), 4),
               'iou_p5': round(float(np.percentile(a, 5)), 4),
               'iou_min': round(float(a.min()), 4), 'frames_iou_below_0.8': int((a < 0.8).sum()),
               'ms_first_frame': round(float(np.mean(first_ms)), 1),
               'ms_per_frame': round(float(np.mean(next_ms)), 1),
               'iou_per_clip': [round(float(np.mean(ious[c * args.frames:(c + 1) * args.frames])),
                                      4) for c in range(args.clips)]}
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
