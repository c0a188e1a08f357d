"""
Make docs/real_people.png: real photos beside the shipped model's front and side normal renders.

The photos are ones that packages ship (fetched by hand, never by this script):
- pose2sim's Demo_SinglePerson videos (PyPI ``pose2sim``, BSD-3-Clause):
  ``pip download --no-deps pose2sim`` and unzip the wheel;
- sports2d's demo video (PyPI ``sports2d``, BSD-3-Clause): ``pip download --no-deps sports2d``;
- OpenCV's sample images ``messi5.jpg`` and ``basketball1.png`` (Debian ``opencv-doc``:
  ``apt-get download opencv-doc && dpkg -x opencv-doc_*.deb x``; its copyright file lists
  ``samples/data`` under ``Files: *``, Apache-2.0 AND BSD-3-Clause).
Usage:
    scripts/make_real_figure.py --pose2sim DEMO_DIR --sports2d DEMO_MP4 --opencv-data DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.reconstruct import Reconstructor
from monoport_ros.core.reconstruct_cli import OFFLINE_SMOOTHING

TILE = 200
# (camera, frame) of pose2sim's demo; frames of sports2d's demo; OpenCV sample images
POSE2SIM = (('cam01', 0), ('cam03', 50), ('cam02', 99))
SPORTS2D = (0, 150)
OPENCV = ('messi5.jpg', 'basketball1.png')


def video_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video as RGB (read sequentially: seeking in an mp4 is not exact)."""
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index):
            cap.grab()
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok:
        raise ValueError(f'{path}: cannot read frame {index}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image(path: Path) -> np.ndarray:
    """Read an image file as RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: not a readable image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def tile(img: np.ndarray | None, label: str) -> np.ndarray:
    """Square tile of ``img`` (letterboxed; grey when None) with a caption."""
    out = np.full((TILE, TILE, 3), 235, np.uint8)
    if img is not None:
        h, w = img.shape[:2]
        s = TILE / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
        y0, x0 = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
        out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    cv2.rectangle(out, (0, 0), (TILE - 1, 15), (255, 255, 255), -1)
    cv2.putText(out, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def row(reconstructor: Reconstructor, rgb: np.ndarray, label: str) -> np.ndarray:
    """Photo (cropped to the person), front and side normals of one image."""
    rec = reconstructor.reconstruct(rgb, outputs={'views', 'mask'})
    if not rec.person:
        return np.concatenate([tile(rgb, label), tile(None, 'no person found'),
                               tile(None, 'no person found')], axis=1)
    side = int(round(rec.crop.side))
    photo = cv2.warpAffine(rgb, rec.crop.affine(side), (side, side),
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(235, 235, 235))
    return np.concatenate([tile(photo, label), tile(rec.normal_views['front'], 'front normals'),
                           tile(rec.normal_views['side'], 'side normals')], axis=1)


def main() -> None:
    """Write the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--pose2sim', type=Path, required=True, help='Demo_SinglePerson folder')
    p.add_argument('--sports2d', type=Path, required=True, help="sports2d's Demo/demo.mp4")
    p.add_argument('--opencv-data', type=Path, required=True,
                   help="opencv-doc's examples/data folder")
    p.add_argument('--resolution', type=int, default=256)
    p.add_argument('--out', type=Path, default=Path('docs/real_people.png'))
    args = p.parse_args()
    videos = args.pose2sim / 'videos'
    photos = [(f'pose2sim {cam} frame {i}', video_frame(videos / f'{cam}.mp4', i))
              for cam, i in POSE2SIM]
    photos += [(f'sports2d demo frame {i}', video_frame(args.sports2d, i)) for i in SPORTS2D]
    photos += [(f'opencv {name}', image(args.opencv_data / name)) for name in OPENCV]
    # the offline settings of `monoport-ros reconstruct` / `evaluate`
    config = MonoPortConfig(resolution=args.resolution, precision='float32',
                            surface_smoothing=OFFLINE_SMOOTHING, mirror_average=True,
                            shift_average=True, segmentation_tracking=False,
                            render_views=['front', 'side'], render_size=TILE)
    with Reconstructor(config) as reconstructor:
        rows = [row(reconstructor, rgb, label) for label, rgb in photos]
    if len(rows) % 2:
        rows.append(np.full_like(rows[0], 255))
    half = len(rows) // 2
    gap = np.full((TILE * half, 8, 3), 255, np.uint8)
    figure = np.concatenate([np.concatenate(rows[:half]), gap, np.concatenate(rows[half:])],
                            axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f'wrote {args.out} ({figure.shape[1]}x{figure.shape[0]})')


if __name__ == '__main__':
    main()
