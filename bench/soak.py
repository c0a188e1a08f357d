"""
Soak test of ``monoport_node`` over real DDS: 30 Hz input, good and bad frames, for a long time.

``.venv/bin/python bench/soak.py --duration 600 --resolution 64`` starts the node as a separate
process (reliable image QoS, so that every frame sent is either received or reported), publishes a
mix of frames at ``--rate``: sample people (good), frames without a person and malformed messages
of every kind (bad), plus a CameraInfo a second (every fifth one invalid). It subscribes to every
output, samples the RSS, threads and open files of the node and its reconstruction worker processes
with psutil every ``--sample-period`` seconds, drains the pipeline at the end, stops the node with
SIGINT and prints one JSON object: frames sent / received / processed / dropped (newest frame wins)
/ failed / invalid, results with and without a person, whether the node survived and exited
cleanly, RSS over time and the checks (every valid frame processed or counted as dropped, every bad
frame counted, memory flat). Exit code 0 when every check holds.

The measuring side must not be the bottleneck: its executor spins in its own thread (a publishing
loop that calls ``spin_once`` with ever-changing short timeouts left callbacks unserved for
seconds here) and it takes the outputs as serialized bytes with deep queues (deserializing a
20k-point Marker into Python objects takes about 0.1 s).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from builtin_interfaces.msg import Time
import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import psutil
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from shape_msgs.msg import Mesh
from std_msgs.msg import Header
from visualization_msgs.msg import Marker
import yaml

from monoport_ros.ros import conversions as conv
from process_tree import cpu_seconds, family, rss_mb     # bench/, beside this file

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / 'src' / 'monoport_ros' / 'samples'
NODE = '/monoport_node'


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('--duration', type=float, default=600.0, help='seconds of input (600)')
    p.add_argument('--rate', type=float, default=30.0, help='input frames per second (30)')
    p.add_argument('--bad-every', type=int, default=4, help='every Nth frame is malformed (4)')
    p.add_argument('--empty-every', type=int, default=10,
                   help='every Nth frame has no person (10)')
    p.add_argument('--image-size', type=int, default=256, help='side of the input images (256)')
    p.add_argument('--resolution', type=int, default=64)
    p.add_argument('--octree-depth', type=int, default=3)
    p.add_argument('--render-size', type=int, default=128)
    p.add_argument('--views', default='front,side')
    p.add_argument('--checkpoint', default='', help='model file (default: the shipped model)')
    p.add_argument('--no-segmentation', action='store_true',
                   help='segmentation off; synthetic pre-masked figures instead of the samples')
    p.add_argument('--sample-period', type=float, default=10.0, help='RSS sampling period (s)')
    p.add_argument('--warmup', type=float, default=60.0,
                   help='seconds before the memory baseline is taken (60)')
    p.add_argument('--domain', type=int, default=random.randrange(1, 102),
                   help='ROS_DOMAIN_ID (default: random; containers often share pids)')
    return p


def load_samples(size: int) -> list[np.ndarray]:
    """Sample people (RGB), resized to ``size``."""
    paths = sorted(glob.glob(str(SAMPLES / '*.png')))
    if not paths:
        raise SystemExit(f'no sample images in {SAMPLES}')
    return [cv2.resize(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), (size, size),
                       interpolation=cv2.INTER_AREA) for p in paths]


def premasked_people(size: int) -> list[np.ndarray]:
    """Synthetic figures on black (for ``--no-segmentation``: black = background)."""
    out = []
    for shift in (-0.1, -0.03, 0.03, 0.1):
        img = np.zeros((size, size, 3), np.uint8)
        x, s = int(size * (0.5 + shift)), size / 240.0
        cv2.ellipse(img, (x, int(45 * s)), (int(14 * s), int(17 * s)), 0, 0, 360,
                    (220, 180, 150), -1)
        cv2.rectangle(img, (x - int(25 * s), int(62 * s)), (x + int(25 * s), int(140 * s)),
                      (40, 90, 200), -1)
        for side in (-1, 1):
            cv2.rectangle(img, (x + side * int(3 * s), int(140 * s)),
                          (x + side * int(22 * s), int(225 * s)), (70, 70, 70), -1)
        out.append(img)
    return out


def bad_frames(size: int) -> list[tuple[str, Image]]:
    """One malformed Image of each kind (all must be refused and counted by the node)."""
    good = conv.rgb_to_image(np.full((size, size, 3), 90, np.uint8), 'rgb8')
    n = len(good.data)
    floats = np.resize(np.array([np.nan, np.inf, 0.5], np.float32), size * size)
    kinds = {
        'misspelled encoding': {'encoding': 'RGB8'},
        'unsupported encoding': {'encoding': 'yuv422', 'step': 2 * size},
        'float NaN/Inf': {'encoding': '32FC1', 'step': 4 * size, 'data': floats.tobytes()},
        'big-endian 16 bit': {'encoding': 'rgb16', 'is_bigendian': 1},
        'bad endian flag': {'is_bigendian': 3},
        'step too small': {'step': 3 * size - 1},
        'data short': {'data': bytes(n - 1)},
        'data long': {'data': bytes(n + 3 * size)},
        'zero size': {'width': 0, 'height': 0, 'step': 0, 'data': b''},
        'enormous': {'width': 100000, 'height': 100000, 'step': 300000},
        'too small': {'width': 4, 'height': 4, 'step': 12, 'data': bytes(48)},
    }
    out = []
    for name, change in kinds.items():
        m = conv.rgb_to_image(np.full((size, size, 3), 90, np.uint8), 'rgb8')
        for k, v in change.items():
            setattr(m, k, v)
        out.append((name, m))
    return out


class Soak:
    """Publisher, output counter and node supervisor."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.views = [v for v in args.views.split(',') if v]
        params = {'checkpoint': args.checkpoint, 'resolution': args.resolution,
                  'octree_depth': args.octree_depth, 'render_size': args.render_size,
                  'render_views': self.views, 'segmentation': not args.no_segmentation,
                  'image_reliability': 'reliable', 'segmentation_tracking': False}
        (workdir / 'params.yaml').write_text(
            yaml.safe_dump({'monoport_node': {'ros__parameters': params}}))
        self.stderr_path = workdir / 'node.stderr'
        env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
                   ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
        exe = Path(sys.executable).parent / 'monoport_node'
        cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'monoport_ros.ros.node']
        self.stderr_file = open(self.stderr_path, 'w')
        self.proc = subprocess.Popen(cmd + ['--ros-args', '--params-file',
                                            str(workdir / 'params.yaml')],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self.stderr_file)
        self.ps = psutil.Process(self.proc.pid)

        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=args.domain)
        self.node = rclpy.create_node('soak', context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, '/image', qos)
        self.info_pub = self.node.create_publisher(CameraInfo, '/camera_info', qos)
        # a deep receive queue: this process, not the node, must never be the bottleneck
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.markers: dict[tuple[int, int], int] = {}       # stamp -> marker action
        self.counts = {'points': 0, 'mesh': 0, 'mask': 0, 'render': 0}
        self.diag: dict[str, str] = {}
        self.diag_msgs = 0
        self.latency: list[tuple[float, float]] = []       # per diagnostics window: mean, max
        # outputs arrive as serialized bytes: turning a 20k-point Marker into Python objects takes
        # ~0.1 s, and a consumer that slow loses results in its own queue (RViz is C++)
        outputs = {'mesh_marker': (Marker, self._on_marker), 'points': (PointCloud2, None),
                   'mesh': (Mesh, None), 'mask': (Image, None),
                   **{f'render/{v}': (Image, None) for v in self.views}}
        self.subs = [self.node.create_subscription(
            typ, f'{NODE}/{topic}', cb or (lambda m, t=topic.split('/')[0]: self._count(t)), qos,
            raw=True) for topic, (typ, cb) in outputs.items()]
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, qos)
        # callbacks run in their own thread, as in a driver: the publishing loop never starves them
        self.spinner = threading.Thread(target=self.ex.spin, daemon=True)
        self.spinner.start()

    def _count(self, key: str) -> None:
        self.counts[key] += 1

    def _on_marker(self, raw: bytes) -> None:
        """Stamp and action of a serialized Marker (CDR: header, ns, id, type, action)."""
        sec, nanosec, n = struct.unpack_from('<iII', raw, 4)
        pos = 16 + n
        pos += -pos % 4 + 4 + struct.unpack_from('<I', raw, pos + -pos % 4)[0]    # ns
        pos += -(pos - 4) % 4
        action = struct.unpack_from('<i', raw, pos + 8)[0]
        self.markers[(sec, nanosec)] = action

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f'{NODE}:'):
                self.diag = {kv.key: kv.value for kv in status.values}
                self.diag['level'] = str(int.from_bytes(status.level, 'little')
                                         if isinstance(status.level, bytes) else status.level)
                self.diag_msgs += 1
                mean, peak = float(self.diag['latency_ms']), float(self.diag['latency_max_ms'])
                if np.isfinite(mean):
                    self.latency.append((mean, peak))

    def spin(self, seconds: float) -> None:
        """Let ``seconds`` pass (the executor thread handles the callbacks)."""
        time.sleep(max(0.0, seconds))

    def wait_for_node(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while not (self.pub.get_subscription_count() and
                   all(s.get_publisher_count() for s in self.subs)):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit('node did not come up:\n' + self.stderr_path.read_text()[-3000:])
            self.spin(0.1)
        self.spin(1.0)

    def sample(self, t: float) -> dict:
        """Sample the node with its worker processes: memory, threads, open files, CPU."""
        try:
            procs = family(self.ps)
            return {'t_s': round(t, 1), 'rss_mb': round(rss_mb(self.ps), 1),
                    'rss_mb_node': round(self.ps.memory_info().rss / 2**20, 1),
                    'processes': len(procs),
                    'threads': sum(p.num_threads() for p in procs),
                    'open_files': sum(p.num_fds() for p in procs),
                    'cpu_s': round(cpu_seconds(self.ps), 1),
                    'received': int(self.diag.get('received', 0)),
                    'published': int(self.diag.get('published', 0))}
        except psutil.Error:
            return {'t_s': round(t, 1), 'rss_mb': None}

    def close(self) -> None:
        self.ex.shutdown()
        self.spinner.join(10)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.stderr_file.close()


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """Run the soak; return the report."""
    samples = premasked_people(args.image_size) if args.no_segmentation \
        else load_samples(args.image_size)
    bad = bad_frames(args.image_size)
    empty = np.zeros((args.image_size, args.image_size, 3), np.uint8)
    s = Soak(args, workdir)
    t_start = time.monotonic()
    s.wait_for_node()
    startup_s = time.monotonic() - t_start
    sent = {'good': 0, 'no_person': 0, 'bad': 0}
    bad_kinds: dict[str, int] = {}
    valid_stamps: set[tuple[int, int]] = set()
    info_sent = info_bad = 0
    size = args.image_size
    good_k = [float(size), 0.0, size / 2, 0.0, float(size), size / 2, 0.0, 0.0, 1.0]
    rss: list[dict] = []
    period = 1.0 / args.rate
    t0 = time.monotonic()
    next_frame, next_sample, next_info = t0, t0, t0
    i = 0
    while True:
        now = time.monotonic()
        if now - t0 >= args.duration or s.proc.poll() is not None:
            break
        if now >= next_sample:
            rss.append(s.sample(now - t0))
            next_sample += args.sample_period
            print(json.dumps(rss[-1]), file=sys.stderr, flush=True)
        if now >= next_info:
            header = Header(stamp=s.node.get_clock().now().to_msg(), frame_id='soak_optical')
            info_bad += info_sent % 5 == 4
            k = [float('nan')] + good_k[1:] if info_sent % 5 == 4 else good_k
            s.info_pub.publish(CameraInfo(header=header, width=size, height=size, k=k))
            info_sent += 1
            next_info += 1.0
        i += 1
        stamp = Time(sec=1 + i // 1000, nanosec=(i % 1000) * 1000)
        header = Header(stamp=stamp, frame_id='soak_optical')
        if args.bad_every and i % args.bad_every == 0:
            name, msg = bad[(i // args.bad_every) % len(bad)]
            msg.header = header
            bad_kinds[name] = bad_kinds.get(name, 0) + 1
            sent['bad'] += 1
        else:
            if args.empty_every and i % args.empty_every == 0:
                img, kind = empty, 'no_person'
            else:
                img, kind = samples[i % len(samples)], 'good'
            msg = conv.rgb_to_image(img, 'rgb8', header)
            sent[kind] += 1
            valid_stamps.add((stamp.sec, stamp.nanosec))
        s.pub.publish(msg)
        next_frame += period
        s.spin(max(0.0, next_frame - time.monotonic()))
    input_s = time.monotonic() - t0
    alive = s.proc.poll() is None

    # drain: until the node's counts stop changing and every frame it took in is published,
    # failed or dropped (frames lost before the node saw them are reported, not waited for)
    total = sum(sent.values())
    end = time.monotonic() + 120
    last, stable = None, 0

    def settled(d: dict) -> bool:
        valid = int(d['received']) - int(d['invalid']) - int(d['rate_limited']) \
            - int(d['skipped_no_subscribers'])
        return valid == int(d['published']) + int(d['failed']) + int(d['dropped'])
    while alive and time.monotonic() < end and stable < 3:
        n = s.diag_msgs
        while s.diag_msgs == n and time.monotonic() < end:
            s.spin(0.1)
        snapshot = (s.diag.get('received'), s.diag.get('published'), s.diag.get('failed'))
        stable = stable + 1 if snapshot == last and settled(s.diag) else 0
        last = snapshot
        alive = s.proc.poll() is None
    rss.append(s.sample(time.monotonic() - t0))
    d = dict(s.diag)

    t_stop = time.monotonic()
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGINT)
    try:
        rc = s.proc.wait(60)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        rc = s.proc.wait()
    stop_s = time.monotonic() - t_stop
    s.close()
    err = s.stderr_path.read_text()

    def num(key: str) -> int:
        return int(d.get(key, -1))
    markers_valid = {st: a for st, a in s.markers.items() if st in valid_stamps}
    valid_sent = sent['good'] + sent['no_person']
    accounted = len(markers_valid) + num('dropped') + num('failed')
    rss_vals = [r['rss_mb'] for r in rss if r.get('rss_mb') is not None]
    after = [r for r in rss if r.get('rss_mb') is not None and r['t_s'] >= args.warmup]
    if len(after) >= 2:
        ts = np.array([r['t_s'] for r in after])
        ys = np.array([r['rss_mb'] for r in after])
        slope = float(np.polyfit(ts, ys, 1)[0]) * 60.0
        growth = float(ys[-1] - ys[0])
    else:
        slope = growth = float('nan')
    memory_flat = bool(abs(growth) <= max(25.0, 0.05 * ys[0])) if len(after) >= 2 else None
    log_lines = err.splitlines()
    report = {
        'settings': {k: getattr(args, k) for k in ('duration', 'rate', 'bad_every', 'empty_every',
                                                   'image_size', 'resolution', 'octree_depth',
                                                   'render_size', 'views', 'checkpoint',
                                                   'no_segmentation')},
        'startup_s': round(startup_s, 1),
        'input_s': round(input_s, 1),
        'input_rate_hz': round(total / input_s, 2) if input_s else 0.0,
        'frames_sent': {'total': total, **sent},
        'bad_kinds_sent': bad_kinds,
        'camera_info_sent': {'total': info_sent, 'bad': info_bad},
        'node': {k: d.get(k) for k in ('received', 'invalid', 'published', 'dropped', 'failed',
                                       'no_person', 'rate_limited', 'skipped_no_subscribers',
                                       'bad_camera_info', 'latency_ms', 'latency_max_ms',
                                       'geometry_device', 'level')},
        'lost_before_the_node': total - num('received'),
        'processed': num('published'),
        'dropped_newest_wins': num('dropped'),
        'failed': num('failed'),
        'no_person': num('no_person'),
        'results_received': {'markers_for_valid_frames': len(markers_valid),
                             'with_person': sum(a == Marker.ADD for a in markers_valid.values()),
                             'without_person': sum(a != Marker.ADD
                                                   for a in markers_valid.values()),
                             **s.counts},
        'latency_ms': {'median_of_window_means': round(float(np.median(
                           [m for m, _ in s.latency])), 1) if s.latency else None,
                       'max': round(max(p for _, p in s.latency), 1) if s.latency else None},
        'valid_frames_unaccounted': valid_sent - accounted,
        'node_alive_at_end': alive,
        'exit_code': rc,
        'stop_s': round(stop_s, 1),
        'traceback_in_stderr': 'Traceback' in err,
        'stderr_lines': len(log_lines),
        'stderr_frame_dropped_lines': sum('frame dropped' in ln for ln in log_lines),
        'rss_mb': {'start': rss_vals[0] if rss_vals else None,
                   'peak': max(rss_vals) if rss_vals else None,
                   'end': rss_vals[-1] if rss_vals else None,
                   'growth_after_warmup': round(growth, 1),
                   'slope_mb_per_min_after_warmup': round(slope, 2)},
        'rss_over_time': rss,
        'checks': {
            'no_crash': alive and rc == 0 and 'Traceback' not in err,
            'all_frames_received': num('received') == total,
            'every_bad_frame_counted': num('invalid') == sent['bad'],
            'every_valid_frame_processed_or_dropped': accounted == valid_sent,
            'processed_equals_results_received': num('published') == len(markers_valid),
            'bad_camera_info_counted': num('bad_camera_info') == info_bad,
            'memory_flat': memory_flat,
        },
    }
    report['ok'] = all(v is not False for v in report['checks'].values())
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the JSON report; exit code 0 when every check holds."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='monoport_soak_') as tmp:
        report = run(args, Path(tmp))
        if not report['ok']:
            report['stderr_tail'] = (Path(tmp) / 'node.stderr').read_text()[-3000:]
    print(json.dumps(report, indent=1))
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
