"""
Benchmark: the whole single-image path on the shipped model and the sample images.

``.venv/bin/python bench/pipeline.py --json`` prints one JSON line per resolution (128, 256) with
fps, latency percentiles and per-stage times, run through the two-device pipeline (stages overlap
between frames), plus a line with dense evaluation at 128 for the localization speed-up.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import threading
import time

import cv2
import numpy as np
import torch

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.pipeline import TwoDevicePipeline
from monoport_ros.core.reconstruct import Reconstructor

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'monoport_ros',
                       'samples')


def load_samples() -> list[np.ndarray]:
    """Load the bundled sample images as RGB arrays."""
    paths = sorted(glob.glob(os.path.join(SAMPLES, '*.png')))
    if not paths:
        raise SystemExit(f'no sample images in {SAMPLES}')
    return [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]


def run_stream(config: MonoPortConfig, images: list[np.ndarray], frames: int) -> dict:
    """Feed ``frames`` frames keeping both stages busy; returns fps, latencies and stage means."""
    slots = threading.Semaphore(2)          # one frame per stage in flight: never idle, no drops
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    queries: list[int] = []
    started: dict[int, float] = {}

    def on_result(meta, rec, err):
        if meta >= 0:
            latencies.append((time.perf_counter() - started[meta]) * 1e3)
            if rec is not None and rec.person:
                queries.append(rec.queries)
                for k, v in rec.timings_ms.items():
                    stages.setdefault(k, []).append(v)
        slots.release()

    pipe = TwoDevicePipeline(config, on_result)
    slots.acquire()
    pipe.submit(images[0], -1)              # warm-up: model load, MediaPipe start, allocator
    slots.acquire()
    slots.release()
    t0 = time.perf_counter()
    for i in range(frames):
        slots.acquire()
        started[i] = time.perf_counter()
        pipe.submit(images[i % len(images)], i)
    while len(latencies) < frames:
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    pipe.close()
    return {'fps': round(frames / elapsed, 2),
            'latency_ms_p50': round(float(np.percentile(latencies, 50)), 1),
            'latency_ms_p95': round(float(np.percentile(latencies, 95)), 1),
            'stages_ms': {k: round(float(np.mean(v)), 1) for k, v in sorted(stages.items())},
            'queries': int(np.mean(queries)) if queries else 0,
            'dropped': pipe.stats['dropped']}


def main() -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--frames', type=int, default=40)
    ap.add_argument('--resolutions', default='128,256')
    ap.add_argument('--checkpoint', default='')
    ap.add_argument('--geometry-device', default='cpu')
    ap.add_argument('--color-device', default='cpu')
    args = ap.parse_args()
    images = load_samples()
    depth = {64: 3, 128: 4, 256: 5, 512: 6}
    base = dict(checkpoint=args.checkpoint, geometry_device=args.geometry_device,
                color_device=args.color_device, segmentation_tracking=False, queue_size=2)
    rows = []
    for res in (int(r) for r in args.resolutions.split(',')):
        cfg = MonoPortConfig(resolution=res, octree_depth=depth[res], **base)
        rows.append({'resolution': res, 'octree_levels': depth[res],
                     **run_stream(cfg, images, args.frames)})
    # localization speed-up: same network, dense vs coarse-to-fine at 128 (geometry stage only)
    with Reconstructor(MonoPortConfig(resolution=128, octree_depth=4, **base)) as rec:
        dense_rec = Reconstructor(MonoPortConfig(resolution=128, octree_depth=1, **base),
                                  rec.geo_net)
        fast_t, dense_t, same = [], [], True
        for img in images:
            a = rec.geometry(img)
            b = dense_rec.geometry(img)
            fast_t.append(a.timings_ms['localize'])
            dense_t.append(b.timings_ms['localize'])
            same &= bool(torch.equal(a.volume.occupancy, b.volume.occupancy))
        dense_rec.close()
    rows.append({'resolution': 128, 'octree_levels': 1, 'mode': 'dense',
                 'localize_ms': round(float(np.mean(dense_t)), 1),
                 'octree_localize_ms': round(float(np.mean(fast_t)), 1),
                 'speedup': round(float(np.mean(dense_t) / np.mean(fast_t)), 1),
                 'identical': same})
    for row in rows:
        row.update(threads=torch.get_num_threads(),
                   device=f'{args.geometry_device}+{args.color_device}')
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
