"""
Placement error with and without a registered depth image, on synthetic RGB-D frames.

Each frame (:func:`monoport_ros.offline.rgbd.make_rgbd_frame`: a person 1.5-1.95 m tall at
1.5-6 m, a stereo sensor's quantisation, holes and flying pixels) is reconstructed by the shipped
model with the node's settings (segmentation included), then placed in the camera frame two ways:
by weak perspective at the node's assumed ``subject_height`` (1.7 m), and fitted to the depth
image (:func:`monoport_ros.core.placement.fit_to_depth`). Reported per frame and as medians by
distance: the error of the mesh's centroid (area-weighted) and of its 3D box centre against the
true mesh's, and the Chamfer distance of the placed mesh to the truth, in the camera frame, in cm.

    .venv/bin/python bench/depth_placement.py --frames 40 --seed 0 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.placement import fit_to_depth
from monoport_ros.core.reconstruct import Reconstructor
from monoport_ros.offline.metrics import Surface
from monoport_ros.offline.rgbd import make_rgbd_frame

SAMPLES = 20000


def placement_errors(placed: np.ndarray, faces: np.ndarray, truth: Surface) -> dict[str, float]:
    """
    Errors (cm) of a placed mesh against the true one, in the camera frame.

    ``centroid_cm``: of the surfaces' area-weighted centroids (missing arms or fat legs move it as
    a misplacement would); ``box_centre_cm``: of the centres of their 3D boxes; ``chamfer_cm``.
    """
    mesh = Surface(placed, faces)
    pr, _ = mesh.sample(SAMPLES, 1)
    pg, _ = truth.sample(SAMPLES, 2)
    chamfer = 0.5 * (truth.distance(pr).mean() + mesh.distance(pg).mean())
    box = (placed.max(0) + placed.min(0)) / 2 - (truth.vertices.max(0) + truth.vertices.min(0)) / 2
    return {'centroid_cm': 100.0 * float(np.linalg.norm(pr.mean(0) - pg.mean(0))),
            'box_centre_cm': 100.0 * float(np.linalg.norm(box)),
            'chamfer_cm': 100.0 * float(chamfer)}


def evaluate(frames: int, seed: int, resolution: int) -> list[dict]:
    """Reconstruct and place ``frames`` synthetic RGB-D frames; one row per frame."""
    config = MonoPortConfig(resolution=resolution, precision='float32',
                            segmentation_tracking=False, render_views=[])
    rows = []
    with Reconstructor(config) as rec:
        for i in range(frames):
            frame = make_rgbd_frame(np.random.default_rng([seed, i]))
            t0 = time.perf_counter()
            out = rec.reconstruct(frame.rgb, {'mesh'})
            row = {'frame': i, 'height_m': round(frame.height_m, 3),
                   'distance_m': round(frame.distance_m, 3), 'person': bool(out.person)}
            if not out.person or not len(out.faces):
                rows.append(row)
                continue
            truth = Surface(frame.vertices, frame.faces)
            cam = frame.camera
            assumed = cam.weak_perspective(
                out.crop, cam.subject_distance(out.person_height_px, config.subject_height))
            row['without_depth'] = placement_errors(assumed.apply(out.vertices), out.faces, truth)
            t1 = time.perf_counter()
            fit = fit_to_depth(frame.depth, out.mask, cam, out.crop, out.vertices)
            row['fit_ms'] = round(1e3 * (time.perf_counter() - t1), 2)
            if fit is not None:
                row['with_depth'] = placement_errors(fit.placement.apply(out.vertices),
                                                     out.faces, truth)
                row['fit_residual_cm'] = round(100 * fit.residual_m, 2)
            row['reconstruct_ms'] = round(1e3 * (t1 - t0), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Medians of both errors, with and without depth, over all frames and up to 4 m."""
    out = {}
    for name, sel in (('all', lambda r: True), ('up_to_4m', lambda r: r['distance_m'] <= 4.0),
                      ('beyond_4m', lambda r: r['distance_m'] > 4.0)):
        picked = [r for r in rows if sel(r) and 'with_depth' in r]
        if not picked:
            continue
        out[name] = {'frames': len(picked)}
        for mode in ('without_depth', 'with_depth'):
            for metric in ('centroid_cm', 'box_centre_cm', 'chamfer_cm'):
                out[name][f'{mode}_{metric}_median'] = round(
                    float(np.median([r[mode][metric] for r in picked])), 2)
    out['frames'] = len(rows)
    out['no_person'] = sum(not r['person'] for r in rows)
    out['no_fit'] = sum(r['person'] and 'with_depth' not in r for r in rows)
    return out


def main() -> None:
    """Run the evaluation and print the summary (JSON)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--frames', type=int, default=40)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--resolution', type=int, default=128)
    p.add_argument('--json', help='also write every row and the summary here')
    args = p.parse_args()
    rows = evaluate(args.frames, args.seed, args.resolution)
    result = summary(rows)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'rows': rows, 'summary': result, 'args': vars(args)}, f, indent=1)


if __name__ == '__main__':
    main()
