"""
The reconstruction on CUDA devices: same results as on the CPU, and the two-stage pipeline.

Hardware test: it runs only where CUDA is available (skipped with the reason otherwise). Geometry
runs on ``cuda:0`` and colour on ``cuda:1``, or on ``cuda:0`` twice with a single GPU. The shipped
model reconstructs a pre-masked synthetic figure (segmentation off, so both runs see the same
mask); GPU results must match the CPU run within float tolerances (TF32 off for that comparison).
The tolerances pass for a relative weight perturbation of 1e-3 and fail for 3e-3 (checked on a
CPU), so a wrong device, stale tensor or mixed-up frame shows. The occupancy volume stays on the
geometry device: localization there must ask the same points and give the same volume as on the
CPU (analytic shapes), and rendering from it the same images.
"""
from __future__ import annotations

import copy
import threading
import time

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch

from monoport_ros.core.model_file import load_model
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.components import split_largest_component
from monoport_ros.core.localization import (LocalizedVolume, dense_occupancy,
                                            keep_largest_component, localize_surface)
from monoport_ros.core.stage_threads import StageThreadPipeline
from monoport_ros.core.reconstruct import DEFAULT_MODEL, Reconstruction, Reconstructor
from monoport_ros.core.rendering import render_view
from shapes import SHAPES

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='hardware test: needs a CUDA device (geometry/colour stages on GPUs)')

RES = 64
VOXEL = 2.0 / RES


def _devices() -> tuple[str, str]:
    return 'cuda:0', 'cuda:1' if torch.cuda.device_count() > 1 else 'cuda:0'


def _config(geometry: str, color: str, **kw) -> MonoPortConfig:
    return MonoPortConfig(segmentation=False, resolution=RES, octree_depth=3, render_size=64,
                          render_views=['front', 'side'], mesh_max_triangles=0,
                          geometry_device=geometry, color_device=color,
                          device_fallback=False, precision='float32', **kw)


def figure(shift: int = 0) -> np.ndarray:
    """Draw a pre-masked standing person shape (head, torso, arms, legs) on black, 512x384."""
    img = np.zeros((512, 384, 3), np.uint8)
    x = 192 + shift
    cv2.ellipse(img, (x, 70), (26, 32), 0, 0, 360, (225, 185, 160), -1)
    cv2.rectangle(img, (x - 45, 105), (x + 45, 270), (40, 90, 200), -1)
    cv2.rectangle(img, (x - 70, 110), (x - 50, 260), (40, 90, 200), -1)
    cv2.rectangle(img, (x + 50, 110), (x + 70, 260), (40, 90, 200), -1)
    cv2.rectangle(img, (x - 40, 270), (x - 6, 480), (60, 60, 70), -1)
    cv2.rectangle(img, (x + 6, 270), (x + 40, 480), (60, 60, 70), -1)
    return img


@pytest.fixture(scope='module')
def net():
    """Shipped model on the CPU (each Reconstructor gets its own copy: .to() moves in place)."""
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope='module')
def cpu_result(net) -> Reconstruction:
    with Reconstructor(_config('cpu', 'cpu'), copy.deepcopy(net)) as rec:
        return rec.reconstruct(figure())


def test_networks_and_features_live_on_the_configured_devices(net):
    geo, col = _devices()
    with Reconstructor(_config(geo, col), copy.deepcopy(net)) as rec:
        assert next(rec.geo_net.parameters()).device == torch.device(geo)
        assert next(rec.col_net.parameters()).device == torch.device(col)
        assert (rec.col_net is rec.geo_net) == (geo == col)
        g = rec.geometry(figure())
        assert g.person and g.features.device == torch.device(geo)
        # the occupancy volume stays where it was localized
        assert g.volume.values.device == g.volume.queried.device == torch.device(geo)
        out = rec.color(g)
    # everything handed to the caller is on the host
    for arr in (out.vertices, out.faces, out.vertex_colors, out.points, out.point_colors,
                *out.views.values()):
        assert isinstance(arr, np.ndarray)
    assert len(out.faces) and out.faces.max() < len(out.vertices)
    assert np.isfinite(out.vertex_colors).all()


def assert_same_reconstruction(gpu: Reconstruction, ref: Reconstruction) -> None:
    """Check two reconstructions of one image agree within float tolerances."""
    assert ref.person and gpu.person and len(ref.vertices) > 500
    assert gpu.crop == ref.crop
    # the coarse-to-fine search asks about almost the same points
    assert abs(gpu.queries - ref.queries) <= 0.02 * ref.queries, (gpu.queries, ref.queries)
    # same surface: vertices within a fraction of a voxel of the other mesh, both ways
    d_gc, idx = cKDTree(ref.vertices).query(gpu.vertices)
    d_cg, _ = cKDTree(gpu.vertices).query(ref.vertices)
    assert d_gc.mean() < 0.1 * VOXEL and d_cg.mean() < 0.1 * VOXEL, (d_gc.mean(), d_cg.mean())
    assert np.percentile(d_gc, 99) < 0.5 * VOXEL and np.percentile(d_cg, 99) < 0.5 * VOXEL
    assert abs(len(gpu.faces) - len(ref.faces)) <= 0.02 * len(ref.faces)
    # same colours at (nearly) the same vertices
    close = d_gc < 0.1 * VOXEL
    assert close.mean() > 0.8, close.mean()
    diff = np.abs(gpu.vertex_colors[close] - ref.vertex_colors[idx[close]])
    assert diff.mean() < 2e-3 and diff.max() < 0.05, (diff.mean(), diff.max())
    assert_same_points(gpu, ref)
    # same renderings
    assert set(gpu.views) == set(ref.views) == {'front', 'side'}
    for view in ref.views:
        a = gpu.views[view].astype(np.float32)
        b = ref.views[view].astype(np.float32)
        assert a.shape == b.shape and a.max() > 0
        assert np.abs(a - b).mean() < 1.0, (view, np.abs(a - b).mean())   # of 255


def assert_same_points(gpu: Reconstruction, ref: Reconstruction) -> None:
    """Check the coloured point clouds agree (edge crossings on a GPU, mesh vertices on a CPU)."""
    assert abs(len(gpu.points) - len(ref.points)) <= 0.005 * len(ref.points) + 5
    d_gc, idx = cKDTree(ref.points).query(gpu.points)
    d_cg, _ = cKDTree(gpu.points).query(ref.points)
    assert d_gc.mean() < 0.1 * VOXEL and d_cg.mean() < 0.1 * VOXEL, (d_gc.mean(), d_cg.mean())
    close = d_gc < 0.1 * VOXEL
    assert close.mean() > 0.8, close.mean()
    diff = np.abs(gpu.point_colors[close] - ref.point_colors[idx[close]])
    assert diff.mean() < 2e-3 and diff.max() < 0.05, (diff.mean(), diff.max())


def test_points_and_mesh_within_budget_on_the_gpu(net, no_tf32):
    geo, col = _devices()
    out = []
    for g, c in (('cpu', 'cpu'), (geo, col)):
        cfg = _config(g, c).replace(mesh_max_triangles=3000)
        with Reconstructor(cfg, copy.deepcopy(net)) as rec:
            out.append(rec.reconstruct(figure()))
    cpu, gpu = out
    assert 2 * len(cpu.points) > 3000         # the full surface is over the budget
    assert 0.9 * len(cpu.faces) <= len(gpu.faces) <= 3000 and len(cpu.faces) <= 3000
    assert len(gpu.vertex_colors) == len(gpu.vertices)
    assert_same_points(gpu, cpu)


def test_surface_points_on_the_gpu_equal_the_cpu():
    from monoport_ros.core.meshing import surface_points
    for name in sorted(SHAPES):
        cpu = localize_surface(SHAPES[name], 64, 3)
        gpu = LocalizedVolume(cpu.values.cuda(), cpu.queried.cuda(), cpu.resolution,
                              cpu.threshold, box=cpu.box)
        a, b = surface_points(cpu), surface_points(gpu)
        assert b.device.type == 'cuda' and len(a) > 1000
        assert torch.allclose(a, b.cpu(), atol=1e-6)


def test_smoothing_on_the_gpu_equals_the_cpu():
    from monoport_ros.core.smoothing import smooth_volume
    for name in sorted(SHAPES):
        cpu = localize_surface(SHAPES[name], 64, 3)
        gpu = LocalizedVolume(cpu.values.cuda(), cpu.queried.cuda(), cpu.resolution,
                              cpu.threshold, box=cpu.box)
        assert smooth_volume(cpu, 1.0) == smooth_volume(gpu, 1.0)
        assert torch.allclose(cpu.values, gpu.values.cpu(), atol=1e-6)
        assert torch.equal(cpu.queried, gpu.queried.cpu())


def _on_device(field):
    """Wrap an analytic field (written for host tensors) to be asked from any device."""
    return lambda p: field(p.cpu()).to(p.device)


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_localization_on_the_gpu_equals_the_cpu_and_dense(name):
    field = SHAPES[name]
    cpu = localize_surface(field, 64, 3)
    gpu = localize_surface(_on_device(field), 64, 3, device='cuda:0')
    assert gpu.values.device.type == 'cuda' and gpu.queried.device.type == 'cuda'
    # same points asked, same values (0/1 fields: the upsampling is exact on both)
    assert gpu.queries_per_level == cpu.queries_per_level
    assert torch.equal(gpu.queried.cpu(), cpu.queried)
    assert torch.equal(gpu.values.cpu(), cpu.values)
    assert gpu.inside_bounds() == cpu.inside_bounds()
    dense = dense_occupancy(_on_device(field), 64, device='cuda:0')
    assert torch.equal(gpu.occupancy, dense.occupancy)


@pytest.mark.parametrize('yaw', [0.0, 90.0, 30.0])
def test_rendering_on_the_gpu_equals_the_cpu(yaw):
    cpu = localize_surface(SHAPES['torus'], 64, 3)
    gpu = LocalizedVolume(cpu.values.cuda(), cpu.queried.cuda(), cpu.resolution, cpu.threshold,
                          box=cpu.box)

    def colour(p):      # a smooth colour field, answered on the points' device
        return (p * 0.5 + 0.5).clamp(0, 1)
    for size in (64, 96):       # at and above the grid's ray count (resampled shading)
        a = render_view(cpu, yaw, size, colour)
        b = render_view(gpu, yaw, size, colour)
        assert a.mask.sum() > 100
        # quarter turns are exact axis swaps; other yaws resample the volume (float rounding)
        assert (a.mask != b.mask).mean() <= (0 if yaw % 90 == 0 else 2e-3)
        both = a.mask & b.mask
        assert np.abs(a.depth[both] - b.depth[both]).max() < 1e-3
        for x, y in ((a.color, b.color), (a.normals, b.normals)):
            d = np.abs(x[both].astype(int) - y[both].astype(int))
            assert d.mean() < 0.2 and np.percentile(d, 99) <= 2, (d.mean(), d.max())


def test_components_on_the_gpu_equal_the_cpu():
    rng = np.random.default_rng(3)
    for i in range(12):
        shape = tuple(int(s) for s in rng.integers(2, 60, 3))
        occ = torch.from_numpy(rng.random(shape) < rng.uniform(0.2, 0.7))
        cpu = split_largest_component(occ)
        gpu = split_largest_component(occ.cuda())
        assert (gpu.count, gpu.removed, gpu.kept_box) == (cpu.count, cpu.removed, cpu.kept_box)
        assert gpu.stray is None if cpu.stray is None else torch.equal(gpu.stray.cpu(), cpu.stray)
    # in a localized volume: floating blobs removed on the device, the same voxels as on the CPU
    field = _blobs_around(SHAPES['torus'])
    cpu = localize_surface(field, 64, 3)
    gpu = localize_surface(_on_device(field), 64, 3, device='cuda:0')
    removed = keep_largest_component(cpu)
    assert removed > 0 and keep_largest_component(gpu) == removed
    assert gpu.values.device.type == 'cuda' and torch.equal(gpu.values.cpu(), cpu.values)
    assert gpu.inside_bounds() == cpu.inside_bounds()


def _blobs_around(field):
    def with_blobs(p):
        blobs = [((p - torch.tensor(c)).norm(dim=-1) < 0.15) for c in
                 ((-0.75, 0.75, 0.0), (0.75, -0.75, 0.5))]
        return torch.maximum(field(p), (blobs[0] | blobs[1]).float())
    return with_blobs


@pytest.fixture
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_gpu_matches_cpu(net, cpu_result, no_tf32):
    geo, col = _devices()
    with Reconstructor(_config(geo, col), copy.deepcopy(net)) as rec:
        gpu = rec.reconstruct(figure())
    torch.cuda.synchronize()
    assert_same_reconstruction(gpu, cpu_result)


class StageLog:
    """Wrap a Reconstructor's geometry and colour stages to record when each ran (host side)."""

    def __init__(self, rec: Reconstructor) -> None:
        self.rec = rec
        self.spans: dict[str, list[tuple[float, float]]] = {'geometry': [], 'color': []}
        self.lock = threading.Lock()
        self.prepare = rec.prepare
        self.geometry = self._wrap('geometry', rec.geometry)
        self.color = self._wrap('color', rec.color)
        self.recycle = rec.recycle

    def _wrap(self, name: str, fn):
        def run(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                with self.lock:
                    self.spans[name].append((t0, time.perf_counter()))
        return run

    def overlapped(self) -> bool:
        return any(g0 < c1 and c0 < g1 for g0, g1 in self.spans['geometry']
                   for c0, c1 in self.spans['color'])

    def update_config(self, config: MonoPortConfig) -> None:
        self.rec.update_config(config)

    def close(self) -> None:
        self.rec.close()


def test_pipeline_on_gpu_keeps_order_and_overlaps_stages(net):
    geo, col = _devices()
    cfg = _config(geo, col, queue_size=16)
    rec = Reconstructor(cfg, copy.deepcopy(net))
    frames = [figure(shift) for shift in (-60, -30, 0, 30, 60, -45, 15, 45)]
    expected = [rec.reconstruct(f) for f in frames]         # one at a time, same devices
    log = StageLog(rec)
    got: list[tuple[int, Reconstruction | None, BaseException | None]] = []
    done = threading.Event()

    def on_result(meta, result, error):
        got.append((meta, result, error))
        if len(got) == len(frames):
            done.set()
    pipe = StageThreadPipeline(cfg, on_result, log)
    try:
        for i, f in enumerate(frames):
            assert pipe.submit(f, i)
        assert done.wait(120), f'only {len(got)} of {len(frames)} results'
    finally:
        pipe.close()
    assert [m for m, _, _ in got] == list(range(len(frames)))
    assert all(e is None for _, _, e in got), [repr(e) for _, _, e in got]
    assert pipe.stats['dropped'] == 0 and pipe.stats['processed'] == len(frames)
    for (i, result, _), ref in zip(got, expected):
        # each result belongs to its own frame (the figure moves, so the crop does)
        assert result.crop == ref.crop, i
        assert abs(len(result.faces) - len(ref.faces)) <= 0.02 * len(ref.faces), i
    assert len({r.crop.cx for _, r, _ in got}) == len(frames)
    assert log.overlapped(), log.spans
