"""Two-device pipeline and the single-image reconstructor on two CPU "devices"."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import torch

from monoport_ros.core.config import MonoPortConfig, NetworkConfig
from monoport_ros.core.networks import MonoPortNet
from monoport_ros.core.pipeline import TwoDevicePipeline
from monoport_ros.core.reconstruct import (GeometryResult, Reconstruction, Reconstructor,
                                           resolve_device)


def person_like_image() -> np.ndarray:
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.ellipse(img, (150, 120), (30, 100), 0, 0, 360, (200, 120, 90), -1)
    return img


def random_net() -> MonoPortNet:
    torch.manual_seed(0)
    net = MonoPortNet(NetworkConfig())
    with torch.no_grad():   # make about half of the cube "inside" so there is a surface
        net.surface_mlp.filters[-1].bias.fill_(0.0)
    return net


class SlowStages:
    """Stand-in reconstructor whose stages just sleep, to observe ordering and overlap."""

    def __init__(self, t_geo: float, t_col: float) -> None:
        self.t_geo, self.t_col = t_geo, t_col
        self.active = {'geo': 0, 'col': 0}
        self.overlap = False
        self.lock = threading.Lock()

    def _enter(self, stage: str) -> None:
        with self.lock:
            self.active[stage] += 1
            if self.active['geo'] and self.active['col']:
                self.overlap = True

    def _leave(self, stage: str) -> None:
        with self.lock:
            self.active[stage] -= 1

    def geometry(self, rgb, outputs):
        self._enter('geo')
        time.sleep(self.t_geo)
        self._leave('geo')
        if rgb is None:
            raise MemoryError('simulated out of memory')
        return GeometryResult(True, np.zeros((2, 2), bool))

    def color(self, geo, outputs):
        self._enter('col')
        time.sleep(self.t_col)
        self._leave('col')
        return Reconstruction(True, geo.mask)

    def update_config(self, config):
        pass

    def close(self):
        self.closed = True


def _run(pipe: TwoDevicePipeline, frames, wait_for: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    for f in frames:
        pipe.submit(*f)
    while time.time() < deadline and pipe.stats['processed'] + pipe.stats['failed'] < wait_for:
        time.sleep(0.01)


def test_results_in_input_order_and_stages_overlap() -> None:
    got = []
    stages = SlowStages(0.05, 0.05)
    pipe = TwoDevicePipeline(MonoPortConfig(queue_size=16), lambda m, r, e: got.append(m), stages)
    t0 = time.time()
    _run(pipe, [(np.zeros(1), i) for i in range(10)], 10)
    elapsed = time.time() - t0
    pipe.close()
    assert got == list(range(10))
    assert stages.overlap
    assert elapsed < 10 * 0.1 * 0.9          # serial would take 1.0 s


def test_newest_frame_wins_when_full() -> None:
    got = []
    pipe = TwoDevicePipeline(MonoPortConfig(queue_size=1), lambda m, r, e: got.append(m),
                             SlowStages(0.2, 0.01))
    pipe.submit(np.zeros(1), 'first')
    time.sleep(0.05)                          # 'first' is now in the geometry stage
    assert pipe.submit(np.zeros(1), 'old')
    assert not pipe.submit(np.zeros(1), 'newer')      # 'old' is dropped for it
    assert not pipe.submit(np.zeros(1), 'newest')
    _run(pipe, [], 2)
    pipe.close()
    assert got == ['first', 'newest']
    assert pipe.stats['dropped'] == 2 and pipe.stats['submitted'] == 4


def test_failing_stage_drops_only_that_frame() -> None:
    got = []
    pipe = TwoDevicePipeline(MonoPortConfig(queue_size=8),
                             lambda m, r, e: got.append((m, r is None, type(e).__name__)),
                             SlowStages(0.01, 0.01))
    _run(pipe, [(np.zeros(1), 0), (None, 1), (np.zeros(1), 2)], 3)
    pipe.close()
    assert got == [(0, False, 'NoneType'), (1, True, 'MemoryError'), (2, False, 'NoneType')]
    assert pipe.stats['failed'] == 1 and pipe.stats['processed'] == 2


def test_broken_callback_does_not_kill_the_worker() -> None:
    calls = []

    def cb(meta, rec, err):
        calls.append(meta)
        raise RuntimeError('consumer bug')
    pipe = TwoDevicePipeline(MonoPortConfig(queue_size=8), cb, SlowStages(0.0, 0.0))
    _run(pipe, [(np.zeros(1), 0), (np.zeros(1), 1)], 2)
    pipe.close()
    assert calls == [0, 1]


def test_reconstructor_on_two_cpu_devices() -> None:
    """Run geometry on cpu:0 and colour on cpu:1 with separate copies of the network."""
    cfg = MonoPortConfig(segmentation=False, resolution=64, octree_depth=3, render_size=64,
                         geometry_device='cpu:0', color_device='cpu:1', mesh_max_triangles=2000)
    rec = Reconstructor(cfg, random_net())
    assert rec.col_net is not rec.geo_net
    out = rec.reconstruct(person_like_image())
    assert out.person
    assert out.queries < 65 ** 3
    assert len(out.faces) <= 2000 and out.faces.max() < len(out.vertices)
    assert out.vertex_colors.shape == out.vertices.shape
    assert ((out.vertex_colors >= 0) & (out.vertex_colors <= 1)).all()
    assert out.points.shape == out.point_colors.shape
    assert set(out.views) == {'front', 'side', 'back'}
    assert all(v.shape == (64, 64, 3) for v in out.views.values())
    assert set(out.timings_ms) >= {'segment', 'encode', 'localize', 'color', 'mesh', 'render'}


def test_reconstructor_reports_no_person_and_skips_unwanted_outputs() -> None:
    rec = Reconstructor(MonoPortConfig(segmentation=False, resolution=32, octree_depth=2),
                        random_net())
    empty = rec.reconstruct(np.zeros((64, 64, 3), np.uint8))
    assert not empty.person and len(empty.vertices) == 0
    only_mask = rec.reconstruct(person_like_image(), outputs={'mask'})
    assert only_mask.person and len(only_mask.vertices) == 0 and not only_mask.views


@pytest.mark.parametrize('bad', [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((4, 4, 3), np.uint8), 'not an image'])
def test_reconstructor_rejects_bad_images(bad) -> None:
    rec = Reconstructor(MonoPortConfig(segmentation=False, resolution=32, octree_depth=2),
                        random_net())
    with pytest.raises(ValueError):
        rec.reconstruct(bad)


def test_devices() -> None:
    assert resolve_device('cpu', False).type == 'cpu'
    if not torch.cuda.is_available():
        assert resolve_device('cuda:1', True).type == 'cpu'
        with pytest.raises(ValueError, match='not available'):
            resolve_device('cuda:1', False)
    with pytest.raises(ValueError):
        resolve_device('tpu:0', True)
    with pytest.raises(ValueError):
        MonoPortConfig(resolution=100).validate()


def test_geometry_stays_inside_the_visual_hull() -> None:
    """A net that says "inside" everywhere still gives a shape within the person's silhouette."""
    net = random_net()
    with torch.no_grad():
        net.surface_mlp.filters[-1].bias.fill_(20.0)
    rec = Reconstructor(MonoPortConfig(segmentation=False, resolution=64, octree_depth=3), net)
    img = person_like_image()
    out = rec.reconstruct(img, outputs={'mesh'})
    uv = out.crop.model_to_pixels(out.vertices[:, :2])
    mask = img.max(axis=2) > 0
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    u = np.clip(uv[:, 0].astype(int), 0, img.shape[1] - 1)
    v = np.clip(uv[:, 1].astype(int), 0, img.shape[0] - 1)
    assert grown[v, u].all()
    assert (uv[:, 0].max() - uv[:, 0].min()) < 2 * 30 + 15     # ellipse half-width 30 px
