"""
Frame-to-frame jitter of a still person, and accuracy for a walking one, steadied or not.

Steadied: the placement filter (``steady_placement``, :mod:`monoport_ros.core.steadying`) and the
occupancy blend (``steady_surface``, :mod:`monoport_ros.core.surface_memory`); raw: neither.

Synthetic RGB-D sequences (:func:`monoport_ros.offline.rgbd.make_rgbd_sequence`, 10 frames a
second, new image and depth noise every frame) are reconstructed as a stream (segmentation
tracking on, the node's 128^3) and placed as the node places them: fitted to depth, or, with
``--no-depth``, by weak perspective at 1.7 m. Reported (cm): for still people the Chamfer distance
between consecutive placed meshes and the movement of the placement's origin; for people walking
sideways at 1.2 m/s the Chamfer and centroid errors against the truth.

    .venv/bin/python bench/steadiness.py --sequences 4 --frames 12 --seed 0 [--no-depth]
"""
from __future__ import annotations

import argparse
import collections
import json

import numpy as np

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.placement import fit_to_depth
from monoport_ros.core.reconstruct import Reconstructor
from monoport_ros.core.steadying import PlacementSmoother
from monoport_ros.offline.metrics import Surface
from monoport_ros.offline.rgbd import make_rgbd_sequence

FPS = 10.0
SAMPLES = 5000


def _chamfer(a: Surface, b: Surface) -> float:
    pa, _ = a.sample(SAMPLES, 1)
    pb, _ = b.sample(SAMPLES, 2)
    return 100.0 * 0.5 * float(b.distance(pa).mean() + a.distance(pb).mean())


def run_sequence(rec: Reconstructor, frames: list, use_depth: bool, steady: bool
                 ) -> dict[str, list]:
    """Reconstruct and place every frame as the node would; the placed meshes and origins."""
    smooth = PlacementSmoother(MonoPortConfig.steady_min_cutoff, MonoPortConfig.steady_beta)
    out: dict[str, list] = {'placed': [], 'truth': [], 'origin': []}
    rec.prepare(np.zeros_like(frames[0].rgb))       # a cut: the tracker starts afresh
    for k, frame in enumerate(frames):
        r = rec.reconstruct(frame.rgb, {'mesh'})
        if not r.person or not len(r.faces):
            smooth.reset()
            continue
        cam = frame.camera
        fit = fit_to_depth(frame.depth, r.mask, cam, r.crop, r.vertices) if use_depth else None
        place = fit.placement if fit is not None else cam.weak_perspective(
            r.crop, cam.subject_distance(r.person_height_px, 1.7))
        if steady:
            place = smooth(place, k / FPS)
        out['placed'].append(Surface(place.apply(r.vertices), r.faces))
        out['truth'].append(Surface(frame.vertices, frame.faces))
        out['origin'].append(place.origin)
    return out


def main() -> None:
    """Run both kinds of sequence, raw and steadied, and print a JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--sequences', type=int, default=4)
    p.add_argument('--frames', type=int, default=12)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-depth', action='store_true')
    args = p.parse_args()
    modes = {'raw': False, 'steady': True}
    recs = {m: Reconstructor(MonoPortConfig(precision='float32', render_views=[],
                                            steady_surface=on)) for m, on in modes.items()}
    stats: dict[str, list] = collections.defaultdict(list)
    for s in range(args.sequences):
        still = make_rgbd_sequence(np.random.default_rng([args.seed, s]), args.frames,
                                   distance=(1.5, 4.0))
        walk = make_rgbd_sequence(np.random.default_rng([args.seed, 1000 + s]), args.frames,
                                  distance=(1.5, 4.0), speed_mps=1.2, fps=FPS)
        for mode, on in modes.items():
            got = run_sequence(recs[mode], still, not args.no_depth, on)
            stats[f'still_chamfer_{mode}'] += [_chamfer(a, b) for a, b in
                                               zip(got['placed'], got['placed'][1:])]
            o = np.array(got['origin']).reshape(-1, 3)
            stats[f'still_origin_{mode}'] += list(100 * np.linalg.norm(np.diff(o, axis=0), axis=1))
            got = run_sequence(recs[mode], walk, not args.no_depth, on)
            for placed, truth in zip(got['placed'], got['truth']):
                stats[f'walk_chamfer_{mode}'].append(_chamfer(placed, truth))
                pa, _ = placed.sample(SAMPLES, 1)
                pb, _ = truth.sample(SAMPLES, 2)
                stats[f'walk_centroid_{mode}'].append(
                    100 * float(np.linalg.norm(pa.mean(0) - pb.mean(0))))
        print(json.dumps({'sequence': s, **{k: len(v) for k, v in stats.items()}}), flush=True)
    for rec in recs.values():
        rec.close()
    result = {'args': vars(args), **{k: round(float(np.mean(v)), 3) for k, v in stats.items()},
              'counts': {k: len(v) for k, v in stats.items()}}
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
