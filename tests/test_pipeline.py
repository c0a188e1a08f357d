"""The staged pipeline and the single-image reconstructor on two CPU "devices"."""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from monoport_ros.core.config import MonoPortConfig, NetworkConfig
from monoport_ros.core import networks
from monoport_ros.core.networks import MonoPortNet, padded_rows
from monoport_ros.core.stage_threads import StageThreadPipeline
from monoport_ros.core.stream import FramePacer
from monoport_ros.core.networks import sample_features
from monoport_ros.core.reconstruct import (GeometryResult, Reconstruction, Reconstructor,
                                           hull_region, resolve_device, resolve_precision)


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

    def prepare(self, rgb):
        return rgb          # the segmentation stage hands the frame on unchanged

    def geometry(self, rgb):
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

    def recycle(self, geo):
        pass

    def close(self):
        self.closed = True


def _run(pipe: StageThreadPipeline, frames, wait_for: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    for f in frames:
        pipe.submit(*f)
    while time.time() < deadline and pipe.stats['processed'] + pipe.stats['failed'] < wait_for:
        time.sleep(0.01)


def test_results_in_input_order_and_stages_overlap() -> None:
    got = []
    stages = SlowStages(0.05, 0.05)
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=16, frames_in_flight=3),
                               lambda m, r, e: got.append(m), stages)
    t0 = time.time()
    _run(pipe, [(np.zeros(1), i) for i in range(10)], 10)
    elapsed = time.time() - t0
    pipe.close()
    assert got == list(range(10))
    assert stages.overlap
    assert elapsed < 10 * 0.1 * 0.9          # serial would take 1.0 s


def test_frames_in_flight_bounds_the_frames_inside_the_stages() -> None:
    got = []
    stages = SlowStages(0.03, 0.03)
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=16, frames_in_flight=1),
                               lambda m, r, e: got.append(m), stages)
    _run(pipe, [(np.zeros(1), i) for i in range(5)], 5)
    waiting = pipe.pending()
    pipe.close()
    assert got == list(range(5)) and waiting == 0
    assert not stages.overlap             # one frame at a time: colour never beside geometry


def test_newest_frame_wins_when_full() -> None:
    got = []
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=1, frames_in_flight=1),
                               lambda m, r, e: got.append(m), SlowStages(0.2, 0.01))
    pipe.submit(np.zeros(1), 'first')
    time.sleep(0.05)                          # 'first' is now in the geometry stage
    assert pipe.submit(np.zeros(1), 'old')
    assert not pipe.submit(np.zeros(1), 'newer')      # 'old' is dropped for it
    assert not pipe.submit(np.zeros(1), 'newest')
    _run(pipe, [], 2)
    pipe.close()
    assert got == ['first', 'newest']
    assert pipe.stats['dropped'] == 2 and pipe.stats['submitted'] == 4


def test_frame_pacer_waits_only_when_the_next_frame_is_due_soon() -> None:
    pacer = FramePacer()
    assert pacer.wait_for_next(0.0, 0.08) == 0.0            # period unknown yet: no waiting
    for k in range(FramePacer.MIN_INTERVALS + 1):
        pacer.arrived(0.1 * k)
    assert pacer.period() == pytest.approx(0.1)
    last = 0.1 * FramePacer.MIN_INTERVALS
    assert pacer.wait_for_next(last, last + 0.03) == 0.0    # fresh enough: take it
    # 70 ms old: the next frame is due in 30 ms; wait for it, plus slack for jitter
    assert pacer.wait_for_next(last, last + 0.07) == pytest.approx(0.03 + 0.1 * FramePacer.SLACK)
    assert pacer.wait_for_next(last, last + 0.25) == 0.0    # the stream stalled: take it


def _ages_at_take(pace: bool, monkeypatch) -> list[float]:
    """Feed a 10 Hz stream to a pipeline that needs 130 ms a frame; age of each frame taken."""
    if not pace:
        monkeypatch.setattr(FramePacer, 'wait_for_next', lambda self, newest, now: 0.0)
    ages = []

    class Stages(SlowStages):
        def prepare(self, rgb):
            ages.append(time.monotonic() - float(rgb[0]))
            return rgb
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=1, frames_in_flight=1),
                               lambda m, r, e: None, Stages(0.1, 0.03))
    t0 = time.monotonic()
    for k in range(30):
        time.sleep(max(0.0, t0 + 0.1 * k - time.monotonic()))
        pipe.submit(np.array([time.monotonic()]), k)
    pipe.close()
    return ages[8:]          # after the pacer has learnt the period


def test_pipeline_takes_fresher_frames_with_the_pacer(monkeypatch) -> None:
    """A freed slot waits for a frame due within half a period instead of taking an old one."""
    paced = _ages_at_take(True, monkeypatch)
    unpaced = _ages_at_take(False, monkeypatch)
    # without pacing the age at take spreads over the whole 100 ms period (mean ~45 ms); with it
    # frames are taken at most half a period old (percentiles: robust to a late wake-up or two)
    assert np.percentile(paced, 80) < 0.06 < np.percentile(unpaced, 80)
    assert np.mean(paced) < 0.6 * np.mean(unpaced)


def test_failing_stage_drops_only_that_frame() -> None:
    got = []
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=8),
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
    pipe = StageThreadPipeline(MonoPortConfig(queue_size=8), cb, SlowStages(0.0, 0.0))
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


@pytest.mark.parametrize('sigma', [0.0, 2.0])
def test_reconstructor_smooths_only_when_asked(sigma: float) -> None:
    cfg = MonoPortConfig(segmentation=False, resolution=64, render_views=[],
                         surface_smoothing=sigma, mesh_max_triangles=0)
    assert cfg.smoothing_sigma_voxels() == sigma / 4
    out = Reconstructor(cfg, random_net()).reconstruct(person_like_image(), {'mesh'})
    assert out.person and len(out.faces) > 100
    assert ('smooth' in out.timings_ms) == (sigma > 0)


@pytest.mark.parametrize('budget, outputs', [(2000, {'points', 'mesh'}), (0, {'points'})])
def test_points_from_edge_crossings_equal_the_mesh_vertices(monkeypatch, budget: int,
                                                            outputs: set[str]) -> None:
    """The GPU's way to the points and the budget mesh (run here on the CPU) gives the same."""
    from scipy.spatial import cKDTree
    from monoport_ros.core import reconstruct
    # steady_surface off: the second frame is the same image, and must not be blended with the
    # first (this compares two ways to the same frame's outputs)
    cfg = MonoPortConfig(segmentation=False, resolution=64, render_views=[],
                         mesh_max_triangles=budget, steady_surface=False)
    rec = Reconstructor(cfg, random_net())
    host = rec.reconstruct(person_like_image(), outputs)
    monkeypatch.setattr(reconstruct, 'points_from_edge_crossings', lambda volume: True)
    monkeypatch.setattr(reconstruct, 'extract_mesh', extract_mesh_at_stride_only)
    crossing = rec.reconstruct(person_like_image(), outputs)
    assert len(host.points) > 1000 and 2 * len(host.points) > 2000
    # the same points up to order (marching cubes may add a vertex inside an ambiguous cell)
    dist, idx = cKDTree(host.points).query(crossing.points)
    assert dist.max() < 1e-5
    assert len(crossing.points) <= len(host.points) <= len(crossing.points) + 2
    assert np.abs(crossing.point_colors - host.point_colors[idx]).max() < 1e-5
    assert np.array_equal(crossing.faces, host.faces)
    assert np.array_equal(crossing.vertices, host.vertices)
    if 'mesh' in outputs:
        assert 0 < len(host.faces) <= budget
        assert np.abs(crossing.vertex_colors - host.vertex_colors).max() < 1e-5


def extract_mesh_at_stride_only(volume, stride: int = 1):
    """Refuse the full-resolution marching cubes (what the edge-crossing way must avoid)."""
    from monoport_ros.core.meshing import extract_mesh
    assert stride > 1, 'the full mesh was extracted although it is over the budget'
    return extract_mesh(volume, stride)


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


@pytest.mark.parametrize('resolution', [32, 128, 256])
def test_hull_region_holds_every_point_the_hull_lets_through(resolution: int) -> None:
    rng = np.random.default_rng(resolution)
    hull = np.zeros((64, 64), np.float32)
    hull[10:30, 40:55] = 1.0
    hull[rng.integers(5, 60, 6), rng.integers(3, 62, 6)] = 1.0
    region = hull_region(hull, resolution)
    lin = torch.linspace(-1.0, 1.0, resolution + 1)
    xy = torch.stack(torch.meshgrid(lin, lin, indexing='ij'), dim=-1).reshape(1, -1, 2)
    lets_through = sample_features(torch.from_numpy(hull)[None, None], xy, mode='nearest')[0, :, 0]
    ij = (lets_through > 0.5).reshape(resolution + 1, resolution + 1).nonzero()
    (x0, x1), (y0, y1), (z0, z1) = region
    assert x0 < int(ij[:, 0].min()) and int(ij[:, 0].max()) < x1
    assert y0 < int(ij[:, 1].min()) and int(ij[:, 1].max()) < y1
    assert (z0, z1) == (0, resolution)
    assert hull_region(np.zeros((64, 64), np.float32), resolution) is None


def test_padded_rows_are_few_sizes_and_padding_does_not_leak() -> None:
    sizes = {padded_rows(n) for n in range(1, 70000)}
    assert all(padded_rows(n) >= n for n in range(1, 70000))
    assert all(padded_rows(n) <= max(64, 1.5 * n) for n in range(1, 70000))
    assert len(sizes) <= 22
    net = random_net().set_precision(torch.bfloat16).eval()
    feats = torch.randn(1, net.cfg.feature_channels, 16, 16)
    pts = torch.rand(1, 300, 3) * 2 - 1
    with torch.inference_mode():
        whole = net.occupancy(feats, pts)
        part = net.occupancy(feats, pts[:, :77])
        rgb = net.color(feats, torch.randn(1, net.cfg.color_feature_channels, 16, 16), pts)
    assert whole.shape == (1, 300) and part.shape == (1, 77) and rgb.shape == (1, 300, 3)
    assert torch.allclose(part, whole[:, :77], atol=1e-2)


def test_inference_in_point_chunks_equals_one_pass(monkeypatch) -> None:
    net = random_net().eval()
    feats = torch.randn(1, net.cfg.feature_channels, 16, 16)
    feats_c = torch.randn(1, net.cfg.color_feature_channels, 16, 16)
    pts = torch.rand(1, 20000, 3) * 2 - 1
    with torch.inference_mode():
        occ, rgb = net.occupancy(feats, pts), net.color(feats, feats_c, pts)
        monkeypatch.setattr(networks, 'POINT_CHUNK', 10 ** 9)
        whole_occ, whole_rgb = net.occupancy(feats, pts), net.color(feats, feats_c, pts)
    assert occ.shape == (1, 20000) and rgb.shape == (1, 20000, 3)
    assert torch.allclose(occ, whole_occ, atol=1e-5) and torch.allclose(rgb, whole_rgb, atol=1e-5)


def test_bfloat16_is_close_to_float32_and_leaves_the_callers_net_alone() -> None:
    from scipy.spatial import cKDTree
    from monoport_ros.core.model_file import load_model
    from monoport_ros.core.reconstruct import DEFAULT_MODEL
    net = load_model(DEFAULT_MODEL)
    sample = Path(__file__).resolve().parent.parent / 'src/monoport_ros/samples/person_000.png'
    image = cv2.cvtColor(cv2.imread(str(sample)), cv2.COLOR_BGR2RGB)
    # the network's arithmetic only: silhouette completion would magnify a column's flip
    base = dict(resolution=64, octree_depth=3, render_views=['front'], fill_silhouette=False)
    ref = Reconstructor(MonoPortConfig(precision='float32', **base), net).reconstruct(image)
    fast_rec = Reconstructor(MonoPortConfig(precision='bfloat16', **base), net)
    assert net.compute_dtype == torch.float32 and fast_rec.geo_net is not net
    assert next(fast_rec.geo_net.surface_mlp.parameters()).dtype == torch.bfloat16
    geo = fast_rec.geometry(image)
    assert geo.features.dtype == torch.float32
    fast = fast_rec.color(geo)
    ref_occ = ref.views['front'].any(axis=2)
    agree = (fast.views['front'].any(axis=2) == ref_occ).mean()
    assert ref_occ.sum() > 2000 and agree > 0.98, agree
    # the surfaces are a fraction of a voxel apart on average (measured: 0.63 voxel)
    apart = (cKDTree(ref.vertices).query(fast.vertices)[0].mean()
             + cKDTree(fast.vertices).query(ref.vertices)[0].mean()) / 2
    assert apart < 0.75 * 2 / 64


def test_precision_choices() -> None:
    cpu = torch.device('cpu')
    assert resolve_precision('float32', cpu) == torch.float32
    assert resolve_precision('bfloat16', cpu) == torch.bfloat16
    assert resolve_precision('auto', cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match='CUDA'):
        resolve_precision('float16', cpu)
    with pytest.raises(ValueError, match='precision'):
        MonoPortConfig(precision='int4').validate()


def test_a_failed_frame_does_not_keep_its_stage_memory_alive() -> None:
    """The error handed to the consumer carries no traceback pinning the stage's locals."""
    import gc
    import weakref

    class Big:
        pass
    refs, errors = [], []

    class Failing(SlowStages):
        def geometry(self, rgb):
            big = Big()                 # stands for a half-built volume
            refs.append(weakref.ref(big))
            raise MemoryError('simulated out of memory')
    pipe = StageThreadPipeline(MonoPortConfig(), lambda m, r, e: errors.append(e), Failing(0, 0))
    _run(pipe, [(np.zeros(1), 0)], 1)
    pipe.close()
    gc.collect()
    assert isinstance(errors[0], MemoryError) and errors[0].__traceback__ is None
    assert refs[0]() is None


def test_recycled_volumes_give_the_same_results_as_new_ones() -> None:
    cfg = MonoPortConfig(segmentation=False, resolution=32, octree_depth=2, render_size=32,
                         render_views=['front'])
    net = random_net()
    wide = np.zeros_like(person_like_image())      # a wide figure first: a larger box to clear
    cv2.ellipse(wide, (160, 120), (110, 40), 0, 0, 360, (90, 160, 200), -1)
    thin = person_like_image()
    fresh = Reconstructor(cfg, net).geometry(thin)
    rec = Reconstructor(cfg, net)
    first = rec.geometry(wide)
    first_values = first.volume.values
    assert first.volume.box != fresh.volume.box
    rec.color(first)
    rec.recycle(first)
    assert first.volume is None
    again = rec.geometry(thin)
    assert again.volume.values is first_values            # the same memory, cleared and reused
    assert torch.equal(again.volume.values, fresh.volume.values)
    assert torch.equal(again.volume.queried, fresh.volume.queried)
    assert again.volume.inside_bounds() == fresh.volume.inside_bounds()


def _asymmetric_figure() -> np.ndarray:
    """Draw a pre-masked person with one arm raised and one leg out (no mirror symmetry)."""
    img = np.zeros((480, 480, 3), np.uint8)
    cv2.ellipse(img, (240, 80), (24, 30), 0, 0, 360, (225, 185, 160), -1)
    cv2.rectangle(img, (200, 112), (280, 270), (40, 90, 200), -1)
    cv2.rectangle(img, (282, 40), (300, 130), (40, 90, 200), -1)        # raised right arm
    cv2.rectangle(img, (180, 118), (198, 250), (40, 90, 200), -1)
    cv2.rectangle(img, (205, 270), (236, 450), (60, 60, 70), -1)
    cv2.line(img, (265, 275), (330, 440), (60, 60, 70), 30)            # leg out to the side
    return img


@pytest.mark.parametrize('mirror_average', [True, False])
def test_mirror_average_makes_the_geometry_mirror_symmetric(mirror_average: bool) -> None:
    """
    With mirror_average the mirrored crop gives the mirrored occupancy.

    Up to float rounding (measured: 0.05 % of the inside voxels differ; 44 % without it).
    """
    from monoport_ros.core.model_file import load_model
    from monoport_ros.core.reconstruct import DEFAULT_MODEL
    cfg = MonoPortConfig(segmentation=False, resolution=64, octree_depth=3,
                         mirror_average=mirror_average)
    rec = Reconstructor(cfg, load_model(DEFAULT_MODEL))
    frame = rec.prepare(_asymmetric_figure())
    mirrored = dataclasses.replace(    # the same crop, mirrored (image column -> model -x)
        frame, crop_image=np.ascontiguousarray(frame.crop_image[:, ::-1]),
        crop_mask=np.ascontiguousarray(frame.crop_mask[:, ::-1]))
    a, b = rec.geometry(frame), rec.geometry(mirrored)
    occ_a, occ_b = a.volume.occupancy, b.volume.occupancy.flip(0)   # x index -> -x
    differ = (occ_a != occ_b).sum().item() / occ_a.sum().item()
    if mirror_average:
        assert differ < 1e-3, differ
    else:       # the network alone is not symmetric: the control that the test can see it
        assert differ > 0.01, differ


def test_warm_up_leaves_no_trace_on_the_next_frame() -> None:
    """After warm_up the tracking segmenter starts afresh: the next result is a fresh engine's."""
    from monoport_ros.core.model_file import load_model
    from monoport_ros.core.reconstruct import DEFAULT_MODEL, WARM_UP_IMAGE
    net = load_model(DEFAULT_MODEL)
    sample = WARM_UP_IMAGE.parent / 'person_001.png'     # not the warm-up person
    image = cv2.cvtColor(cv2.imread(str(sample)), cv2.COLOR_BGR2RGB)
    config = MonoPortConfig(resolution=64, octree_depth=3, render_views=['front'],
                            segmentation_tracking=True)
    with Reconstructor(config, net) as fresh_rec:
        fresh = fresh_rec.reconstruct(image)
    with Reconstructor(config, net) as warmed_rec:
        warmed_rec.warm_up()
        warmed = warmed_rec.reconstruct(image)
    assert fresh.person and fresh.mask.sum() > 5000
    assert np.array_equal(warmed.mask, fresh.mask)
    assert np.array_equal(warmed.vertices, fresh.vertices)
    assert np.array_equal(warmed.views['front'], fresh.views['front'])


def test_a_failing_warm_up_is_logged_and_the_pipeline_still_starts(monkeypatch, caplog) -> None:
    """Settings that cannot reconstruct (e.g. out of memory) fail frames, not the start-up."""
    def out_of_memory(self, frame, outputs=None):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(Reconstructor, 'geometry', out_of_memory)
    config = MonoPortConfig(resolution=32, segmentation=False, frames_in_flight=1)
    with Reconstructor(config, random_net()) as rec:
        with caplog.at_level('WARNING'):
            assert rec.warm_up() is False
        assert "warm-up frame failed (RuntimeError: DefaultCPUAllocator" in caplog.text
    errors = []
    pipe = StageThreadPipeline(config, lambda meta, result, error: errors.append(error))
    try:
        pipe.submit(person_like_image(), 0)
        deadline = time.monotonic() + 30
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert errors and 'allocate' in str(errors[0])        # the frame fails and is reported
    finally:
        pipe.close()
