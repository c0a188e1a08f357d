"""
Make the test fixtures of the multi-view benchmark from pose2sim's Demo_SinglePerson.

Writes tests/fixtures/pose2sim/: two frames of the four cameras at a quarter of the size (JPEG),
the person's masks (PNG) and BlazePose landmarks (JSON) as the benchmark detects them, the
calibration and pose2sim's licence. Usage:
    scripts/make_pose2sim_fixtures.py DEMO_DIR LICENSE_FILE [--frames 0 50]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from monoport_ros.offline import multiview as mv

OUT = Path(__file__).resolve().parents[1] / 'tests' / 'fixtures' / 'pose2sim'
SCALE = 0.25


def main() -> None:
    """Write the fixtures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('demo_dir')
    p.add_argument('license')
    p.add_argument('--frames', type=int, nargs='+', default=[0, 50])
    args = p.parse_args()
    data = mv.open_data(args.demo_dir)
    detector = mv.BodyDetector()
    seen = mv.detect(data, args.frames, detector)
    detector.close()
    for sub in ('frames', 'masks', 'calibration'):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    small = mv.scaled(data.cameras, SCALE)
    marks: dict[str, list] = {c.name: [] for c in small}
    for i in args.frames:
        images, views = seen[i]
        for cam, img, view in zip(small, images, views):
            stem = f'{cam.name}_{i:04d}'
            rgb = cv2.resize(img, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(OUT / 'frames' / f'{stem}.jpg'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 80])
            mask = mv.downscale_mask(view.mask, cam.width, cam.height)
            cv2.imwrite(str(OUT / 'masks' / f'{stem}.png'), mask.astype(np.uint8) * 255)
            lm = None
            if view.landmarks is not None:      # pixel centres scale about their +0.5
                lm = view.landmarks.copy()
                lm[:, :2] = (lm[:, :2] + 0.5) * SCALE - 0.5
                lm = np.round(lm, 2).tolist()
            marks[cam.name].append(lm)
    (OUT / 'landmarks.json').write_text(json.dumps(marks))
    shutil.copy(Path(args.demo_dir) / mv.CALIBRATION, OUT / mv.CALIBRATION)
    shutil.copy(args.license, OUT / 'LICENSE')
    print(f'wrote {OUT}')


if __name__ == '__main__':
    main()
