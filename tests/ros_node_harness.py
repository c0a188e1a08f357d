"""
What the tests of monoport_node over real DDS share.

A random-weights model and pre-masked images, a probe node that subscribes to every output, and
helpers to start and stop the node.

Each test uses its own ROS_DOMAIN_ID, localhost-only discovery and this run's namespace (see
ros_isolation).
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from shape_msgs.msg import Mesh
from visualization_msgs.msg import Marker
import yaml

from ros_isolation import NODE, NS, ros_args

from monoport_ros.core.camera import PersonCrop
from monoport_ros.core.preprocess import CROP_FILL
from ros_recorder import McapSink, record_topics

BIN = Path(sys.executable).parent
RENDER_SIZE = 64
VIEWS = ['front', 'side']
OUTPUTS = {'points': PointCloud2, 'mesh_marker': Marker, 'mesh': Mesh, 'mask': Image,
           **{f'render/{v}': Image for v in VIEWS}}


def node_env(domain: int) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return env


def executable(name: str) -> list[str]:
    module = {'monoport_node': 'node', 'image_publisher': 'image_publisher'}[name]
    path = BIN / name
    return [str(path)] if path.exists() else [sys.executable, '-m', f'monoport_ros.ros.{module}']


def person_image(shift: int = 0) -> np.ndarray:
    """Draw a pre-masked synthetic figure on black (320x240)."""
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.ellipse(img, (160 + shift, 60), (18, 22), 0, 0, 360, (220, 180, 150), -1)
    cv2.rectangle(img, (135 + shift, 78), (185 + shift, 160), (40, 90, 200), -1)
    cv2.rectangle(img, (138 + shift, 160), (158 + shift, 230), (60, 60, 60), -1)
    cv2.rectangle(img, (162 + shift, 160), (182 + shift, 230), (60, 60, 60), -1)
    return img


def make_assets(d: Path) -> Path:
    """Write a random-weights model, a params file and an image folder into ``d``; return it."""
    import torch
    from monoport_ros.core.checkpoint import save_checkpoint
    from monoport_ros.core.config import NetworkConfig
    from monoport_ros.core.networks import MonoPortNet
    torch.manual_seed(0)
    save_checkpoint(d / 'random.safetensors', MonoPortNet(NetworkConfig.preset('small')))
    params = {'checkpoint': str(d / 'random.safetensors'), 'segmentation': False,
              'resolution': 32, 'octree_depth': 2, 'render_size': RENDER_SIZE,
              'render_views': VIEWS, 'mesh_max_triangles': 3000,
              'image_reliability': 'reliable',
              'geometry_device': 'cuda:7'}      # not on this machine: falls back to cpu
    (d / 'params.yaml').write_text(yaml.safe_dump({NODE: {'ros__parameters': params}}))
    (d / 'images').mkdir()
    for i in range(3):
        cv2.imwrite(str(d / 'images' / f'p{i}.png'), person_image(8 * i)[:, :, ::-1])
    return d


def start_node(params_file: Path, domain: int, *extra: str) -> subprocess.Popen:
    """Start monoport_node with ``params_file`` on ``domain`` (stdout and stderr piped)."""
    args = ros_args('--params-file', str(params_file), *extra)
    return subprocess.Popen(executable('monoport_node') + args,
                            env=node_env(domain), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


class Probe:
    """A node in the test process that subscribes to every output (and records them to MCAP)."""

    def __init__(self, domain: int, mcap_path: Path | None = None) -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node('probe', namespace=NS, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.got: dict[str, list] = {k: [] for k in [*OUTPUTS, 'image', 'diagnostics']}
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.output_subs = [
            self.node.create_subscription(typ, f'{NODE}/{topic}',
                                          lambda m, t=topic: self.got[t].append(m), qos)
            for topic, typ in OUTPUTS.items()]
        self.node.create_subscription(Image, 'image', self.got['image'].append, qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, qos)
        self.pub = self.node.create_publisher(Image, 'image', qos)
        self.sink = None
        if mcap_path is not None:
            self.sink = McapSink(mcap_path)
            self.output_subs += record_topics(self.node, self.sink,
                                              {f'{NODE}/{t}': typ for t, typ in OUTPUTS.items()})

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if msg.status and msg.status[0].name.startswith(f'{NODE}:'):   # this run's node only
            self.got['diagnostics'].append(msg)

    def spin_until(self, pred, timeout: float, what: str = '') -> None:
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, f'timed out waiting for {what or pred}; ' + \
                'received ' + ', '.join(f'{k}: {[stamp_of(m) for m in v][-4:]}'
                                        for k, v in self.got.items()
                                        if k not in ('diagnostics', 'mesh'))
            self.ex.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.05)

    def wait_for_node(self, proc: subprocess.Popen, timeout: float = 90.0) -> None:
        """Until the node's outputs and its image subscription are in the graph."""
        def ready():
            assert proc.poll() is None, f'node exited: {proc.communicate()[1][-3000:]}'
            return all(s.get_publisher_count() for s in self.output_subs) and \
                self.pub.get_subscription_count() > 0
        self.spin_until(ready, timeout, 'the node to come up')
        self.spin_for(0.5)              # the node's side of the matching may lag a little

    def diag_values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.got['diagnostics'][-1].status[0].values}

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f'process did not stop on signal {sig}: {err[-3000:]}')
    return proc.returncode, out, err


def assert_inside_placed_cube(pts: np.ndarray, mask: np.ndarray, focal: float,
                              height_m: float, note: object = None) -> None:
    """Points lie in the model cube placed in the optical frame (x right, y down, z forward)."""
    rows = np.flatnonzero(mask.any(axis=1))
    crop = PersonCrop.from_mask(mask, CROP_FILL)
    dist = focal * height_m / (rows[-1] - rows[0] + 1)
    m = dist / focal                                    # metres per pixel at the subject
    centre = np.array([(crop.cx - 160) * m, (crop.cy - 120) * m, dist])
    half = crop.side / 2 * m
    assert 1.5 < dist < 8 and (pts[:, 2] > 0).all()
    assert (np.abs(pts - centre) <= half * 1.01).all(), (centre, half, pts.min(0), pts.max(0),
                                                         note)


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def frame_outputs(probe: Probe, stamp: tuple[int, int]) -> dict:
    found = {}
    for topic in OUTPUTS:
        if topic == 'mesh':
            continue            # no header: paired with the marker of the same frame below
        for m in probe.got[topic]:
            if stamp_of(m) == stamp:
                found[topic] = m
    return found
