"""
Benchmark: monoport_node under a live image stream over real DDS.

``.venv/bin/python bench/node.py --json`` starts ``monoport_node`` as a subprocess (shipped model,
reliable image QoS) on its own ROS domain, publishes the sample images from this process at
``--rate`` Hz (a camera-like stream, each sample held a second while it drifts, since the node
tracks the person; ``--per-image``: the samples cycling, each segmented on its own), first for
``--warmup`` seconds after its first output (buffers, pools and caches fill; the memory reached at
the first output is reported too), then for ``--duration`` seconds while subscribing to the outputs
(points, mesh_marker, mesh, render views, diagnostics), then keeps the images coming for ``--idle``
seconds with no output subscribers. It prints one JSON line: input and output rates, latency from
the image stamp to each output (p50/p95), frame accounting from the node's diagnostics (newest-wins
drops, failures), per-stage times, the memory (RSS) of the node and its reconstruction worker
processes over the run and their CPU use in both phases.

Outputs are received as serialized bytes (only the header stamp is decoded), so this process
stays light. ``mesh`` has no header: it gets the stamp of the ``mesh_marker`` the node published
with it (nearest DDS source timestamp). Latencies are split into image stamp -> the node publishes
(DDS source timestamp) and publish -> arrival here (delivery).
``--compare-frames N`` afterwards runs ``bench/pipeline.py``'s stream (same settings, no ROS) for
the pipeline's own frame rate, and times building the output messages of one frame.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from process_tree import cpu_seconds, peak_rss_mb, rss_mb     # bench/, beside this file

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / 'src' / 'monoport_ros' / 'samples'
NODE = '/monoport_node'


def _load_avg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _cdr_stamp_ns(data: bytes) -> int:
    """Stamp (ns) of a serialized message whose first field is a std_msgs/Header."""
    endian = '<' if data[1] == 1 else '>'      # CDR encapsulation: 0x0001 = little endian
    sec, nsec = struct.unpack_from(endian + 'iI', data, 4)
    return sec * 1_000_000_000 + nsec


def _cdr_u32(data: bytes, pos: int) -> int:
    return struct.unpack_from('<I' if data[1] == 1 else '>I', data, pos)[0]


def _marker_points(data: bytes) -> int:
    """Count the points of a serialized visualization_msgs/Marker (classic CDR)."""
    pos = 12                                        # encapsulation, stamp

    def align(pos: int, n: int) -> int:
        return 4 + (pos - 4 + n - 1) // n * n

    for _ in range(2):                              # header.frame_id, ns
        pos = align(pos, 4)
        pos += 4 + _cdr_u32(data, pos)
    pos = align(pos, 4) + 12                        # id, type, action
    pos = align(pos, 8) + 10 * 8                    # pose (7 doubles), scale (3 doubles)
    pos += 4 * 4 + 8 + 1                            # color, lifetime, frame_locked
    return _cdr_u32(data, align(pos, 4))


class CpuMeter:
    """CPU time of a process (and its workers) over an interval, in percent of one core."""

    def __init__(self, proc: psutil.Process, with_children: bool = True) -> None:
        self.proc, self.with_children = proc, with_children
        self.reset()

    def reset(self) -> None:
        """Start a new interval."""
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.proc, self.with_children)

    def percent(self) -> float:
        """Mean CPU use since the last reset."""
        used = cpu_seconds(self.proc, self.with_children) - self.c0
        return round(100.0 * used / (time.monotonic() - self.t0), 1)


class Bench:
    """Image source and output probe in this process (its own rclpy context)."""

    def __init__(self, domain: int, views: list[str], images: list[np.ndarray]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Point
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image, PointCloud2
        from shape_msgs.msg import Mesh
        from std_msgs.msg import Header
        from visualization_msgs.msg import Marker

        from monoport_ros.ros import conversions as conv

        self.rclpy = rclpy
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node('node_bench', context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, '/image', qos)
        # pre-serialized frames: only the 8 stamp bytes change per message
        self.frames = [serialize_message(conv.rgb_to_image(
            img, 'rgb8', Header(frame_id='camera_optical_frame'))) for img in images]
        self.endian = '<' if self.frames[0][1] == 1 else '>'
        self.sent_stamps: list[int] = []
        self.outputs = {'points': PointCloud2, 'mesh_marker': Marker, 'mesh': Mesh,
                        **{f'render/{v}': Image for v in views}}
        # per topic: (input stamp ns, arrival ns, bytes, triangles, DDS source timestamp ns)
        self.arrivals: dict[str, list[tuple[int, ...]]] = {t: [] for t in self.outputs}
        probe = Marker(ns='monoport', points=[Point()] * 6)
        probe.header.frame_id = 'camera_optical_frame'
        if _marker_points(serialize_message(probe)) != 6:
            raise RuntimeError('cannot parse serialized Marker messages (CDR layout changed?)')
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.subs = [self.node.create_subscription(
            typ, f'{NODE}/{topic}', functools.partial(self._on_output, topic), out_qos,
            raw=True) for topic, typ in self.outputs.items()]
        self.diags: list[tuple[float, dict[str, str]]] = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)

    def _on_output(self, topic: str, data: bytes, info: dict) -> None:
        now = time.time_ns()
        src = int(info['source_timestamp'])     # when the node published it
        if topic == 'mesh':                     # no header: stamp assigned in pair_meshes
            self.arrivals[topic].append((0, now, len(data), _cdr_u32(data, 4), src))
        elif topic == 'mesh_marker':
            self.arrivals[topic].append((_cdr_stamp_ns(data), now, len(data),
                                         _marker_points(data) // 3, src))
        else:
            self.arrivals[topic].append((_cdr_stamp_ns(data), now, len(data), 0, src))

    def pair_meshes(self, max_gap_ns: int = 50_000_000) -> int:
        """
        Give each mesh the input stamp of its mesh_marker.

        The node publishes a frame's marker and mesh one right after the other: the marker whose
        DDS source timestamp is nearest (and within ``max_gap_ns``) is the mesh's. Returns how
        many meshes found no marker (they keep stamp 0 and are not counted).
        """
        markers = sorted(self.arrivals['mesh_marker'], key=lambda m: m[4])
        src = np.array([m[4] for m in markers], np.int64)
        paired, unpaired = [], 0
        for _, arrival, size, tris, s in self.arrivals['mesh']:
            stamp = 0
            if len(src):
                k = int(np.argmin(np.abs(src - s)))
                if abs(int(src[k]) - s) <= max_gap_ns and markers[k][3] == tris:
                    stamp = markers[k][0]
            unpaired += stamp == 0
            paired.append((stamp, arrival, size, tris, s))
        self.arrivals['mesh'] = paired
        return unpaired

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f'{NODE}:'):
                self.diags.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def publish(self, i: int) -> None:
        """Publish frame ``i`` (of the sample images, in turn) stamped now."""
        stamp = time.time_ns()
        frame = self.frames[i % len(self.frames)]
        self.pub.publish(frame[:4] + struct.pack(self.endian + 'iI', *divmod(stamp, 10**9))
                         + frame[12:])
        self.sent_stamps.append(stamp)

    def spin_until(self, deadline: float) -> None:
        """Handle callbacks until ``deadline`` (time.monotonic())."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.ex.spin_once(timeout_sec=left)

    def node_ready(self) -> bool:
        """Whether the node's outputs and image subscription are in the graph."""
        return self.pub.get_subscription_count() > 0 and all(
            s.get_publisher_count() for s in self.subs)

    def drop_output_subscriptions(self) -> None:
        """Unsubscribe from every output (diagnostics stay)."""
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.subs = []

    def output_subscribers(self) -> int:
        """Count the subscribers of the node's outputs in the graph."""
        return sum(self.node.count_subscribers(f'{NODE}/{t}') for t in self.outputs)

    def last_diag(self) -> dict[str, str]:
        """Return the newest diagnostics values of the node."""
        return self.diags[-1][1] if self.diags else {}

    def close(self) -> None:
        """Release the ROS context."""
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.ctx)


def _num(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float('nan')


def _counter_delta(a: dict[str, str], b: dict[str, str], keys: list[str]) -> dict[str, int]:
    return {k: int(_num(b.get(k, '0')) - _num(a.get(k, '0'))) for k in keys}


COUNTERS = ['received', 'published', 'dropped', 'failed', 'invalid', 'no_person', 'rate_limited',
            'skipped_no_subscribers']


def _drain(bench: Bench, sent: int, timeout: float = 20.0) -> dict[str, int]:
    """
    Wait until the node's diagnostics account for every frame sent so far.

    Returns the node's counters since its start; ``unaccounted`` = received minus published,
    dropped, failed, invalid, rate-limited and skipped (0 once nothing is in flight) and
    ``not_received`` = frames sent by this process that the node never got.
    """
    end = time.monotonic() + timeout
    n = len(bench.diags)
    while True:
        bench.spin_until(time.monotonic() + 0.2)
        d = _counter_delta({}, bench.last_diag(), COUNTERS)
        d['unaccounted'] = d['received'] - sum(
            d[k] for k in COUNTERS if k not in ('received', 'no_person'))
        d['not_received'] = sent - d['received']
        fresh = len(bench.diags) > n
        if (fresh and d['unaccounted'] == 0 and d['not_received'] == 0) \
                or time.monotonic() > end:
            return d


def _stream(bench: Bench, seconds: float, rate: float, start_index: int,
            on_second=None) -> int:
    """Publish at ``rate`` Hz for ``seconds``; returns the next frame index."""
    period = 1.0 / rate
    t0 = time.monotonic()
    next_t, next_s, i = t0, t0 + 1.0, start_index
    while next_t < t0 + seconds:
        bench.publish(i)
        i += 1
        next_t += period
        bench.spin_until(next_t)
        if on_second is not None and time.monotonic() >= next_s:
            on_second()
            next_s += 1.0
    return i


def _stage_stats(diags: list[tuple[float, dict[str, str]]]) -> dict[str, Any]:
    """Per-stage means over the distinct frames whose timings the diagnostics reported."""
    stages: dict[str, list[float]] = {}
    node_lat, last_pub = [], None
    for _, d in diags:
        if d.get('published') == last_pub:
            continue                    # no new frame in that second: same timings again
        last_pub = d.get('published')
        for k, v in d.items():
            if k.startswith('time_') and k.endswith('_ms'):
                stages.setdefault(k[5:-3], []).append(_num(v))
        if np.isfinite(_num(d.get('latency_ms', 'nan'))):
            node_lat.append(_num(d['latency_ms']))
    return {'stages_ms': {k: round(float(np.mean(v)), 1) for k, v in sorted(stages.items())},
            'stage_samples': max((len(v) for v in stages.values()), default=0),
            'node_internal_latency_ms_mean': round(float(np.mean(node_lat)), 1)
            if node_lat else None}


def _publish_build_ms(config: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """Time building one frame's output messages, as the node does in its colour worker."""
    from std_msgs.msg import Header

    from monoport_ros.core.camera import PinholeCamera
    from monoport_ros.core.reconstruct import Reconstructor
    from monoport_ros.ros import conversions as conv
    with Reconstructor(config) as rec:
        r = rec.reconstruct(images[0])
    h, w = images[0].shape[:2]
    cam = PinholeCamera.default_for(w, h)
    dist = cam.subject_distance(r.person_height_px, config.subject_height)
    header = Header(frame_id='camera_optical_frame')
    parts: dict[str, list[float]] = {}
    for _ in range(3):
        t = [time.perf_counter()]
        pts = cam.model_to_optical(r.crop, r.points, dist)
        conv.points_to_cloud(pts, r.point_colors, header)
        t.append(time.perf_counter())
        verts = cam.model_to_optical(r.crop, r.vertices, dist)
        conv.marker_cdr(verts, r.faces, r.vertex_colors, header)
        conv.mesh_cdr(verts, r.faces)
        t.append(time.perf_counter())
        for image in r.views.values():
            conv.rgb_to_image(image, 'rgb8', header)
        t.append(time.perf_counter())
        for k, a, b in zip(('points', 'marker+mesh', 'views'), t, t[1:]):
            parts.setdefault(k, []).append((b - a) * 1e3)
    return {'ms': {k: round(float(np.median(v)), 1) for k, v in parts.items()},
            'points': len(r.points), 'triangles': len(r.faces)}


def _start_node(params: dict, workdir: Path, domain: int) -> tuple[subprocess.Popen, Path]:
    import yaml
    pfile = workdir / 'params.yaml'
    pfile.write_text(yaml.safe_dump({'monoport_node': {'ros__parameters': params}}))
    exe = Path(sys.executable).parent / 'monoport_node'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'monoport_ros.ros.node']
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    log = workdir / 'node.log'
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd + ['--ros-args', '--params-file', str(pfile)], env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run both phases and return the result row."""
    import cv2
    import yaml
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted(SAMPLES.glob('*.png'))]
    if not images:
        raise SystemExit(f'no sample images in {SAMPLES}')
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline import run_stream, video_like
    tracking = not args.per_image
    if tracking:        # the node follows one person: a camera-like stream, as pipeline.py's
        images = video_like(images)
    levels = args.octree_depth         # 0: the node's automatic choice, read from /diagnostics
    views = ['front', 'side', 'back']
    params = {'checkpoint': args.checkpoint, 'resolution': args.resolution,
              'octree_depth': levels, 'image_reliability': 'reliable',
              'render_views': views, 'geometry_device': args.geometry_device,
              'color_device': args.color_device, 'segmentation_tracking': tracking}
    for item in args.param:
        name, sep, value = item.partition(':=')
        if not sep:
            raise SystemExit(f'--param expects name:=value, got {item!r}')
        params[name] = yaml.safe_load(value)
    views = list(params['render_views'] or [])     # as overridden: the bench waits for these
    # at random, not from the pid: containers on one host often share pids (and domains)
    domain = args.domain or random.randrange(1, 102)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    workdir = Path(tempfile.mkdtemp(prefix='node_bench_'))
    row: dict[str, Any] = {'resolution': args.resolution, 'octree_levels': levels,
                           'rate_hz_target': args.rate, 'duration_s': args.duration,
                           'image_size': list(images[0].shape[:2]), 'domain_id': domain,
                           'node_params': params}
    from machine import machine_reference      # bench/ is on sys.path (this script's folder)
    row['machine_reference'] = machine_reference()
    t_start = time.monotonic()
    proc, log = _start_node(params, workdir, domain)
    bench = Bench(domain, views, images)
    ps = psutil.Process(proc.pid)
    try:
        while not bench.node_ready():
            if proc.poll() is not None:
                raise SystemExit(f'node exited ({proc.returncode}): {log.read_text()[-3000:]}')
            if time.monotonic() - t_start > 120:
                raise SystemExit('node not ready after 120 s')
            bench.spin_until(time.monotonic() + 0.1)
        bench.spin_until(time.monotonic() + 1.0)    # the node's side of the matching
        row['startup_s'] = round(time.monotonic() - t_start, 1)
        rss_ready = rss_mb(ps)

        # warm-up: stream until the first output (model, MediaPipe, allocator)
        t_warm = time.monotonic()
        i = 0
        while not bench.arrivals['points'] and time.monotonic() - t_warm < 120:
            i = _stream(bench, 1.0, args.rate, i)
        if not bench.arrivals['points']:
            raise SystemExit(f'no output after 120 s of images: {log.read_text()[-3000:]}')
        row['first_output_s'] = round(time.monotonic() - t_warm, 1)
        # let the stream settle: the buffers, pools and caches that the varied frames and messages
        # need are filled in the first minute or so (the RSS grows there, then stays; reported)
        rss_first_output = rss_mb(ps)
        i = _stream(bench, max(2.0, args.warmup), args.rate, i)

        # phase 1: subscribed, measured
        idx0 = len(bench.sent_stamps)
        diag0 = bench.last_diag()
        n_diag0 = len(bench.diags)
        rss: list[tuple[float, float]] = []
        node_cpu, bench_cpu = CpuMeter(ps), CpuMeter(psutil.Process(), with_children=False)
        psutil.cpu_percent(None)
        load0 = _load_avg()
        t0 = time.monotonic()
        rss.append((0.0, rss_mb(ps)))
        i = _stream(bench, args.duration, args.rate, i,
                    lambda: rss.append((time.monotonic() - t0, rss_mb(ps))))
        elapsed = time.monotonic() - t0
        row['node_cpu_percent'] = node_cpu.percent()
        row['bench_cpu_percent'] = bench_cpu.percent()
        row['node_os_threads'] = ps.num_threads()
        row['system_cpu_percent'] = psutil.cpu_percent(None)
        row['load_avg'] = {'start': load0, 'end': _load_avg()}
        # no more images: wait until the node has accounted for every frame it received
        total = _drain(bench, len(bench.sent_stamps))
        if not bench.diags:
            raise SystemExit(f'no diagnostics from {NODE}: {log.read_text()[-3000:]}')
        row['octree_levels'] = int(bench.diags[-1][1].get('octree_levels', levels))
        row['mesh_unpaired'] = bench.pair_meshes()
        stamps = bench.sent_stamps[idx0:]
        window = (stamps[0], stamps[-1])
        frames = _counter_delta(diag0, bench.diags[-1][1], COUNTERS)
        row['input_hz'] = {'published': round(len(stamps) / elapsed, 2),
                           'node_received': round(frames['received'] / elapsed, 2)}
        out_hz, latency, sizes = {}, {}, {}
        for topic, arr in bench.arrivals.items():
            mine = [m for m in arr if window[0] <= m[0] <= window[1]]
            out_hz[topic] = round(len(mine) / elapsed, 2)
            lat = [(a - s) / 1e6 for s, a, *_ in mine]
            # split: image stamp -> the node publishes it; the node publishes it -> arrival here
            node = [(src - s) / 1e6 for s, _, _, _, src in mine]
            dds = [(a - src) / 1e6 for _, a, _, _, src in mine]
            latency[topic] = {'p50': _pct(lat, 50), 'p95': _pct(lat, 95), 'n': len(lat),
                              'to_publish_p50': _pct(node, 50),
                              'delivery_p50': _pct(dds, 50), 'delivery_p95': _pct(dds, 95),
                              'delivery_max': _pct(dds, 100)}
            sizes[topic] = int(np.mean([m[2] for m in mine])) if mine else 0
        tris = [m[3] for m in bench.arrivals['mesh_marker'] if window[0] <= m[0] <= window[1]]
        row['mesh_triangles_mean'] = int(np.mean(tris)) if tris else 0
        row['output_hz'] = out_hz
        # the node's CPU per published frame, to compare with bench/pipeline.py's cpu_ms_per_frame
        hz = out_hz['points']
        row['node_cpu_ms_per_output'] = round(10 * row['node_cpu_percent'] / hz, 1) if hz else None
        row['latency_ms'] = latency
        row['frames_window'] = frames
        row['frames_total'] = total
        row['msg_bytes_mean'] = sizes
        row.update(_stage_stats(bench.diags[n_diag0:]))
        times = np.array([t for t, _ in rss])
        mbs = np.array([m for _, m in rss])

        def slope(sel: np.ndarray) -> float:     # MB/min, least squares
            return round(float(np.polyfit(times[sel], mbs[sel], 1)[0]) * 60, 2) \
                if sel.sum() > 2 else float('nan')
        row['rss_mb'] = {'ready': round(rss_ready, 1),
                         'first_output': round(rss_first_output, 1),
                         'warmup_s': max(2.0, args.warmup), 'start': round(mbs[0], 1),
                         'middle': round(mbs[len(mbs) // 2], 1), 'end': round(mbs[-1], 1),
                         'peak_sampled': round(float(mbs.max()), 1),
                         'peak_vm_hwm': round(peak_rss_mb(ps) or float('nan'), 1),
                         'slope_mb_per_min': slope(times >= 0),
                         # growth that levels off (allocator warm-up) vs. a steady leak
                         'slope_second_half_mb_per_min': slope(times >= times[-1] / 2),
                         'each_minute': [round(float(mbs[np.argmin(np.abs(times - t))]), 1)
                                         for t in np.arange(0.0, times[-1] + 1e-9, 60.0)],
                         'samples': len(rss)}

        # phase 2: nobody subscribes to the outputs, images still arrive
        bench.drop_output_subscriptions()
        end = time.monotonic() + 30
        while bench.output_subscribers() and time.monotonic() < end:
            i = _stream(bench, 0.5, args.rate, i)
        i = _stream(bench, 3.0, args.rate, i)        # frames already in the engine finish
        diag_a = bench.last_diag()
        n_sent = len(bench.sent_stamps)
        load_a = _load_avg()
        node_cpu.reset()
        t_idle = time.monotonic()
        i = _stream(bench, args.idle, args.rate, i)
        idle_elapsed = time.monotonic() - t_idle
        idle_cpu = node_cpu.percent()
        bench.spin_until(time.monotonic() + 1.5)     # one more diagnostics message
        idle_frames = _counter_delta(diag_a, bench.last_diag(), COUNTERS)
        row['idle'] = {'duration_s': round(idle_elapsed, 1),
                       'output_subscribers': bench.output_subscribers(),
                       # 0: the node unsubscribes from images while no output is wanted
                       'image_subscribers': bench.pub.get_subscription_count(),
                       'input_hz': round((len(bench.sent_stamps) - n_sent) / idle_elapsed, 2),
                       'node_cpu_percent': idle_cpu,
                       'rss_mb': round(rss_mb(ps), 1),
                       'frames': idle_frames,
                       'load_avg': {'start': load_a, 'end': _load_avg()}}
    finally:
        bench.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text()
    row['node_exit_code'] = proc.returncode
    row['node_log_errors'] = sum(('ERROR' in ln or 'Traceback' in ln)
                                 for ln in text.splitlines())
    row['node_log'] = str(log)

    import rclpy
    import torch
    if args.compare_frames:
        from monoport_ros.core.config import MonoPortConfig
        cfg = MonoPortConfig(resolution=args.resolution, octree_depth=levels,
                             checkpoint=args.checkpoint, geometry_device=args.geometry_device,
                             color_device=args.color_device, render_views=views,
                             segmentation_tracking=tracking)
        load_c = _load_avg()
        pipe = run_stream(cfg, images, args.compare_frames, args.rate)
        pipe['load_avg'] = {'start': load_c, 'end': _load_avg()}
        pipe['torch_threads'] = torch.get_num_threads()
        row['pipeline'] = pipe
        rate = out_hz['points']
        row['output_rate_vs_pipeline'] = round(rate / pipe['fps'], 2) if pipe['fps'] else None
        # the rate ratio is (CPU the node got / CPU the pipeline got) / (this ratio)
        row['cpu_per_frame_vs_pipeline'] = round(
            row['node_cpu_ms_per_output'] / pipe['cpu_ms_per_frame'], 2) \
            if row['node_cpu_ms_per_output'] and pipe['cpu_ms_per_frame'] else None
        row['publish_build'] = _publish_build_ms(cfg, images)
    row.update(rmw=rclpy.get_rmw_implementation_identifier(),
               device=f'{args.geometry_device}+{args.color_device}')
    return row


def main() -> int:
    """Parse the options, run the benchmark, print the result."""
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--json', action='store_true', help='print one JSON line')
    ap.add_argument('--duration', type=float, default=60.0, help='measured phase (s)')
    ap.add_argument('--warmup', type=float, default=60.0,
                    help='seconds of input between the first output and the measured phase (60)')
    ap.add_argument('--idle', type=float, default=15.0,
                    help='phase without output subscribers (s)')
    ap.add_argument('--rate', type=float, default=30.0, help='image rate (Hz)')
    ap.add_argument('--resolution', type=int, default=128)
    ap.add_argument('--octree-depth', type=int, default=0, help='0 = auto')
    ap.add_argument('--checkpoint', default='', help='model file (default: shipped model)')
    ap.add_argument('--geometry-device', default='cpu')
    ap.add_argument('--color-device', default='cpu')
    ap.add_argument('--per-image', action='store_true',
                    help='segmentation_tracking off, the samples cycling (default: tracking over '
                         'a video-like stream, as bench/pipeline.py)')
    ap.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                    help='extra node parameter (YAML value), e.g. render_size:=128')
    ap.add_argument('--domain', type=int, default=0, help='ROS_DOMAIN_ID (0 = random)')
    ap.add_argument('--compare-frames', type=int, default=0,
                    help='afterwards, frames of the ROS-free pipeline stream (0 = skip)')
    args = ap.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.idle <= 0:
        raise SystemExit('--rate, --duration and --idle must be positive')
    row = run(args)
    print(json.dumps(row) if args.json else json.dumps(row, indent=2), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
