"""
Benchmark: the CPU cost of the body pose prior in the geometry stage (surface encoder + octree).

The shipped model against the same model widened with ``pose_features='bones'`` (zero pose
weights: the same surface, so the same queries), on the sample images segmented once (the
landmarks of the pose graph), one torch thread, the two nets alternating so that both see the same
machine load. Prints one JSON line: median geometry-stage ms per frame of each (wall clock and
process CPU time), the differences, the queries per frame and the bone features' own time per
8192-point chunk.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import statistics
import time

import cv2
import torch

from monoport_ros.core.body_pose import bone_features
from monoport_ros.core.checkpoint import load_model
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.networks import MonoPortNet
from monoport_ros.core.reconstruct import DEFAULT_MODEL, Reconstructor
from monoport_ros.offline.training import add_pose_inputs

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'monoport_ros',
                       'samples')


def main() -> None:
    """Time both nets' geometry stage and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('--resolution', type=int, default=128)
    ap.add_argument('--repeats', type=int, default=5, help='timed frames per image and net')
    ap.add_argument('--precision', default='auto')
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = load_model(DEFAULT_MODEL)
    new = MonoPortNet(dataclasses.replace(old.cfg, pose_features='bones'))
    new.load_state_dict(add_pose_inputs(old.state_dict(), new))
    cfg = MonoPortConfig(resolution=args.resolution, precision=args.precision,
                         segmentation_tracking=False)
    recs = {'shipped': Reconstructor(cfg, old), 'pose': Reconstructor(cfg, new)}
    frames = []
    for path in sorted(glob.glob(os.path.join(SAMPLES, '*.png'))):
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        frames.append(recs['shipped'].prepare(rgb))
    times: dict[str, list[float]] = {k: [] for k in recs}
    cpu: dict[str, list[float]] = {k: [] for k in recs}
    queries: dict[str, list[int]] = {k: [] for k in recs}
    for frame in frames:
        for name, rec in recs.items():      # warm up
            rec.recycle(rec.geometry(frame))
        for _ in range(args.repeats):
            for name, rec in recs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                geo = rec.geometry(frame)
                times[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.process_time() - c0) * 1e3)
                queries[name].append(geo.volume.queries)
                rec.recycle(geo)
    pts = torch.rand(1, 8192, 3) * 2 - 1
    pose = torch.from_numpy(frames[0].model_pose())[None]
    chunk = []
    for _ in range(50):
        t0 = time.perf_counter()
        bone_features(pts, pose)
        chunk.append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({
        'resolution': args.resolution, 'arithmetic': recs['pose'].arithmetic[0],
        'frames': len(frames), 'repeats': args.repeats,
        'landmarks_found': sum(f.pose is not None for f in frames),
        'geometry_ms_median': {k: round(v, 1) for k, v in med.items()},
        'extra_ms': round(med['pose'] - med['shipped'], 1),
        'geometry_cpu_ms_median': {k: round(v, 1) for k, v in med_cpu.items()},
        'extra_cpu_ms': round(med_cpu['pose'] - med_cpu['shipped'], 1),
        'queries_per_frame': {k: int(statistics.mean(v)) for k, v in queries.items()},
        'bone_features_ms_per_8192': round(statistics.median(chunk), 2)}))


if __name__ == '__main__':
    main()
