"""
Benchmark: the whole single-image path on the shipped model and the sample images.

``.venv/bin/python bench/pipeline.py --json`` prints one JSON line per resolution (128, 256) with
fps, latency percentiles and per-stage times, run through the staged pipeline (stages overlap
between frames) fed like a 30 Hz camera (newest frame wins, as in the node), plus a line with
dense evaluation at 128 for the localization speed-up (warm: each path runs once per image first,
then the localization is timed 3 times per image and the dense grid once).
As in the node, segmentation follows the person from frame to frame (``segmentation_tracking``), so
the stream is video-like: each sample held for a second while it drifts (:func:`video_like`).
``--per-image`` segments every frame on its own and cycles through the samples.
``--people 1,2,3`` times streams of that many synthetic people instead (640x480 scenes made by
``offline/crowd.py``, drifting like the samples; ``max_people`` 3, as in the node), one line each.
Where MediaPipe is missing (a GPU machine with its own Python): ``--premask DIR`` writes the
samples as the segmenter masks them (black background) on a machine that has it, and ``--images
DIR --no-segmentation`` then times everything after segmentation on those images.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import cv2
import numpy as np
import psutil
import torch

from machine import machine_reference     # bench/machine.py, beside this file
from process_tree import cpu_seconds      # the worker processes' CPU too
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.localization import dense_occupancy, keep_largest_component
from monoport_ros.core.networks import sample_features
from monoport_ros.core.pipeline import make_pipeline
from monoport_ros.core.stream import frames_in_flight, usable_cpus
from monoport_ros.core.reconstruct import Reconstructor, visual_hull_mask

REPEATS = 3     # localizations timed per image in the dense comparison (dense: one each)
SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'monoport_ros',
                       'samples')


def load_samples(folder: str = SAMPLES) -> list[np.ndarray]:
    """Load the PNG images of ``folder`` (default: the bundled samples) as RGB arrays."""
    paths = sorted(glob.glob(os.path.join(folder, '*.png')))
    if not paths:
        raise SystemExit(f'no PNG images in {folder}')
    return [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]


def write_premasked(images: list[np.ndarray], folder: str) -> None:
    """Write each image with the segmenter's background set to black, for ``--no-segmentation``."""
    from monoport_ros.core.reconstruct import PREMASKED_LEVEL
    from monoport_ros.core.segmentation import PersonSegmenter
    os.makedirs(folder, exist_ok=True)
    with PersonSegmenter() as seg:
        for k, img in enumerate(images):
            mask = seg.segment(img)
            # lift the person's darkest pixels above the level that marks background
            out = np.where(mask[..., None], np.maximum(img, PREMASKED_LEVEL + 1), 0)
            cv2.imwrite(os.path.join(folder, f'premasked_{k:03d}.png'),
                        cv2.cvtColor(out.astype(np.uint8), cv2.COLOR_RGB2BGR))


def video_like(images: list[np.ndarray], hold: int = 30) -> list[np.ndarray]:
    """Each image held for ``hold`` frames while it drifts 2 px per frame (a camera stream)."""
    out = []
    for img in images:
        for k in range(hold):
            shift = np.float32([[1, 0, 2 * k - hold], [0, 1, k - hold // 2]])
            out.append(cv2.warpAffine(img, shift, (img.shape[1], img.shape[0])))
    return out


def run_stream(config: MonoPortConfig, images: list[np.ndarray], frames: int,
               rate: float) -> dict:
    """
    Feed frames like a camera at ``rate`` Hz until ``frames`` results came back.

    Newest frame wins in the pipeline's inbox, as in the node; latency runs from a frame's submit
    to its result. Returns fps (results per second), latency percentiles, stage means, this
    process's CPU use (percent of one core, CPU-ms per result), the machine's CPU use, drops,
    failures and results without a person.
    """
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    queries: list[int] = []
    started: dict[int, float] = {}

    people: list[int] = []

    def on_result(meta, result, err):
        latencies.append((time.perf_counter() - started[meta]) * 1e3)
        if result is not None:
            people.append(len(result.people))
        if result is not None and result.person:
            queries.append(sum(p.queries for p in result.people))
            for k, v in result.timings_ms.items():     # summed over the frame's people
                stages.setdefault(k, []).append(v)

    pipe = make_pipeline(config, on_result)
    arithmetic = pipe.arithmetic
    levels = pipe.octree_levels
    # no warm-up frames here: every pipeline (each worker process) reconstructs a sample before
    # it reports ready (Reconstructor.warm_up)
    period = 1.0 / rate
    psutil.cpu_percent(None)
    cpu0 = cpu_seconds(psutil.Process())
    t0 = time.perf_counter()
    i = 0
    while len(latencies) < frames:
        started[i] = time.perf_counter()
        pipe.submit(images[i % len(images)], i)
        i += 1
        time.sleep(max(0.0, t0 + i * period - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    cpu_s = cpu_seconds(psutil.Process()) - cpu0
    system_cpu = psutil.cpu_percent(None)
    stats = pipe.stats
    pipe.close()
    return {'octree_levels': levels, 'input_hz': rate, 'dtype': arithmetic[0],
            'fps': round(len(latencies) / elapsed, 2),
            'latency_ms_p50': round(float(np.percentile(latencies, 50)), 1),
            'latency_ms_p95': round(float(np.percentile(latencies, 95)), 1),
            'stages_ms': {k: round(float(np.mean(v)), 1) for k, v in sorted(stages.items())},
            'queries': int(np.mean(queries)) if queries else 0,
            'people_per_frame': round(float(np.mean(people)), 2) if people else 0.0,
            'frames_in_flight': frames_in_flight(config),
            # CPU per result, to compare with bench/node.py's node_cpu_ms_per_output
            'cpu_percent': round(100.0 * cpu_s / elapsed, 1),
            'cpu_ms_per_frame': round(1e3 * cpu_s / len(latencies), 1),
            'system_cpu_percent': system_cpu,
            'dropped': stats['dropped'], 'failed': stats['failed'],
            # results without a person skip most of the work: they would inflate fps unseen
            'no_person': stats['no_person']}


def crowd_stream(count: int, frames: int = 60, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames of ``count`` synthetic people side by side, drifting 2 px a frame."""
    from monoport_ros.offline.crowd import Placement, compose, make_cutout, random_background

    rng = np.random.default_rng(seed)
    cutouts = [make_cutout(rng, yaw_deg=0.0) for _ in range(count)]
    background = random_background(480, 640, rng)
    heights = (0.8, 0.62, 0.5)          # nearest first; side by side, not overlapping
    out = []
    for k in range(frames):
        drift = 2 * (k % 30) - 30
        placements = [Placement(i, (i + 0.5) * 640 / count + drift, 470 - 25 * i,
                                heights[i] * 480) for i in range(count)]
        out.append(compose(cutouts, placements, background)[0])
    return out


def people_streams(args: argparse.Namespace) -> int:
    """Time the node's default path (segmentation, person finder) on 1, 2, 3 people."""
    reference = machine_reference()
    for count in (int(n) for n in args.people.split(',')):
        if not 1 <= count <= 3:
            raise SystemExit('--people takes counts from 1 to 3')
        cfg = MonoPortConfig(resolution=int(args.resolutions.split(',')[0]),
                             checkpoint=args.checkpoint, frames_in_flight=args.frames_in_flight,
                             worker_processes=not args.worker_threads,
                             max_people=args.max_people)
        row = {'people': count, 'resolution': cfg.resolution, 'max_people': cfg.max_people,
               **run_stream(cfg, crowd_stream(count), args.frames, args.rate),
               'threads': torch.get_num_threads(), 'machine_reference': reference}
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


def main() -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--frames', type=int, default=60, help='results to wait for per resolution')
    ap.add_argument('--rate', type=float, default=30.0, help='camera frame rate fed (Hz)')
    ap.add_argument('--frames-in-flight', type=int, default=0,
                    help='frames inside the pipeline at once (0 = the config default, auto)')
    ap.add_argument('--resolutions', default='128,256')
    ap.add_argument('--octree-depth', type=int, default=0,
                    help='localization levels (0 = auto for each resolution and device; 1 = '
                         'dense in the hull box)')
    ap.add_argument('--checkpoint', default='')
    ap.add_argument('--geometry-device', default='cpu')
    ap.add_argument('--color-device', default='cpu')
    ap.add_argument('--precision', default=MonoPortConfig().precision,
                    help='network arithmetic: auto (the node\'s default), float32, bfloat16, '
                         'float16')
    ap.add_argument('--per-image', action='store_true',
                    help='segmentation_tracking off: each frame segmented on its own, the samples '
                         'cycling (the default tracks the person over a video-like stream)')
    ap.add_argument('--surface-smoothing', type=float,
                    default=MonoPortConfig().surface_smoothing, metavar='SIGMA',
                    help='occupancy smoothing, sigma in voxels of a 256^3 grid (default: the '
                         'node\'s, %(default)s)')
    ap.add_argument('--mirror-average', action='store_true',
                    help='mirror_average on (the network also asked about the mirrored image)')
    ap.add_argument('--shift-average', action='store_true',
                    help='shift_average on (the network also asked about the crop moved a bit)')
    ap.add_argument('--worker-threads', action='store_true',
                    help='worker_processes off: on the CPU one thread per stage in this process '
                         '(the default runs whole frames in worker processes)')
    ap.add_argument('--images', default=SAMPLES, help='folder of PNG images (default: samples)')
    ap.add_argument('--people', default='',
                    help='e.g. 1,2,3: streams of that many synthetic people, one line each')
    ap.add_argument('--max-people', type=int, default=MonoPortConfig().max_people,
                    help='with --people: 1 times the one tracked person path instead')
    ap.add_argument('--no-segmentation', action='store_true',
                    help='images are pre-masked (black background): segmentation off')
    ap.add_argument('--no-dense', action='store_true',
                    help='skip the dense comparison at 128^3 (quick runs)')
    ap.add_argument('--premask', metavar='DIR',
                    help='only write the images pre-masked by the segmenter into DIR, then stop')
    args = ap.parse_args()
    if args.geometry_device == 'cpu':   # one torch thread per frame in flight, in every process
        torch.set_num_threads(max(1, usable_cpus() // 2))
    if args.people:
        return people_streams(args)
    images = load_samples(args.images)
    if args.premask:
        write_premasked(images, args.premask)
        return 0
    base = dict(checkpoint=args.checkpoint, geometry_device=args.geometry_device,
                color_device=args.color_device, precision=args.precision,
                segmentation=not args.no_segmentation, mirror_average=args.mirror_average,
                shift_average=args.shift_average,
                surface_smoothing=args.surface_smoothing,
                segmentation_tracking=False, frames_in_flight=args.frames_in_flight,
                worker_processes=not args.worker_threads)
    tracking = not args.per_image
    stream = video_like(images) if tracking else images
    geo, col = args.geometry_device, args.color_device
    reference = machine_reference()     # this machine's speed right now (see bench/machine.py)

    def emit(row: dict) -> None:
        """Print one result line as soon as it is measured (a later failure keeps it)."""
        row.update(threads=torch.get_num_threads(), device=f'{geo}+{col}',
                   segmentation=not args.no_segmentation, machine_reference=reference)
        if 'stages_ms' in row:      # where each stage ran (marching cubes: scikit-image, CPU)
            # the volume stays on the geometry device: the render's ray search runs there, its
            # colour queries on the colour device
            row['stage_devices'] = {'segment': 'cpu', 'encode': geo, 'localize': geo,
                                    'components': geo, 'fill': 'cpu', 'smooth': geo, 'color': col,
                                    'mesh': 'cpu', 'render': geo if geo == col else f'{geo}+{col}'}
        print(json.dumps(row) if args.json else row, flush=True)

    for res in (int(r) for r in args.resolutions.split(',')):
        cfg = MonoPortConfig(resolution=res, octree_depth=args.octree_depth,
                             **{**base, 'segmentation_tracking': tracking})
        emit({'resolution': res,
              'segmentation_tracking': tracking, 'precision': args.precision,
              'mirror_average': args.mirror_average, 'shift_average': args.shift_average,
              'surface_smoothing': args.surface_smoothing,
              'worker_processes': not args.worker_threads,
              **run_stream(cfg, stream, args.frames, args.rate)})
    if args.no_dense:
        return 0
    # localization speed-up at 128 (geometry stage only): the same network asked at every point
    # of the dense grid (visual hull applied afterwards, so the output is comparable), and the
    # dense grid inside the hull's box with only in-hull points sent to the net. Outputs are
    # compared after keep_largest_component, as published (the coarse grid can miss floating
    # blobs that dense evaluation finds; they are not part of the person).
    base['mirror_average'] = False      # the dense reference asks the network about one view
    base['shift_average'] = False
    fast_cfg = MonoPortConfig(resolution=128, **base)     # octree_depth auto, as in the node
    with Reconstructor(fast_cfg) as rec:
        box_rec = Reconstructor(MonoPortConfig(resolution=128, octree_depth=1, **base),
                                rec.geo_net)
        fast_t, dense_t, box_t, diff, box_diff = [], [], [], [], []
        frames = [rec.prepare(img) for img in images]
        # warm (as in a stream): oneDNN prepares its kernels on each path's first calls
        for frame in frames:
            rec.recycle(rec.geometry(frame))
            box_rec.recycle(box_rec.geometry(frame))
        for k, frame in enumerate(frames):
            for _ in range(REPEATS - 1):
                for r, times in ((rec, fast_t), (box_rec, box_t)):
                    g = r.geometry(frame)
                    times.append(g.timings_ms['localize'])
                    r.recycle(g)
            a = rec.geometry(frame)
            b = box_rec.geometry(frame)
            fast_t.append(a.timings_ms['localize'])
            box_t.append(b.timings_ms['localize'])
            hull = torch.from_numpy(visual_hull_mask(frame.crop_mask))[None, None]
            hull = hull.to(a.features.device)

            def every_point(pts: torch.Tensor, feats=a.features, hull=hull) -> torch.Tensor:
                pts = pts.to(feats.device)
                occ = rec.geo_net.occupancy(feats, pts[None])[0]
                return occ * sample_features(hull, pts[None, :, :2], mode='nearest')[0, :, 0]
            for _ in range(2 if k == 0 else 1):     # the first dense pass warms its kernels
                t0 = time.perf_counter()
                with torch.inference_mode():
                    dense = dense_occupancy(every_point, 128, device=a.features.device)
            dense_t.append((time.perf_counter() - t0) * 1e3)
            with torch.inference_mode():
                for vol in (a.volume, b.volume, dense):     # the published output: one person
                    keep_largest_component(vol)
            diff.append(int((a.volume.occupancy != dense.occupancy).sum()))
            box_diff.append(int((a.volume.occupancy != b.volume.occupancy).sum()))
        box_rec.close()
    emit({'resolution': 128, 'octree_levels': 1, 'mode': 'dense',
          'localize_ms': round(float(np.mean(dense_t)), 1),
          'octree_localize_ms': round(float(np.mean(fast_t)), 1),
          'octree_localize_levels': rec.octree_levels,
          'speedup': round(float(np.mean(dense_t) / np.mean(fast_t)), 1),
          'hull_box_dense_ms': round(float(np.mean(box_t)), 1),
          'speedup_vs_hull_box_dense': round(float(np.mean(box_t) / np.mean(fast_t)), 1),
          'identical': not any(diff) and not any(box_diff),
          'voxels_differing': diff, 'voxels_differing_vs_hull_box_dense': box_diff})
    return 0


if __name__ == '__main__':
    sys.exit(main())
