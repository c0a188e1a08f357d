"""
Reliability of the node in-process: bad messages, bad settings and failing stages (issue 6).

Every bad input ends as a correct result or a counted drop, never as an exception out of a
callback or a dead worker thread. The engine is a small random-weights network with segmentation
off (pre-masked images: pixels brighter than 8 are the person), so the real two-device pipeline
runs fast on a CPU. The separate-process (DDS) side is in ``test_reliability_dds.py``.
"""
from __future__ import annotations

import array
import math
import threading
import time

from builtin_interfaces.msg import Time
import cv2
from hypothesis import event, given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
import test_ros_params
from test_ros_params import _image, _node
import torch
from visualization_msgs.msg import Marker

from ros_isolation import NODE

from monoport_ros.core.camera import PersonCrop, PinholeCamera
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.networks import MonoPortNet
from monoport_ros.core.stage_threads import StageThreadPipeline
from monoport_ros.core.preprocess import CROP_FILL, largest_component
from monoport_ros.core.reconstruct import ALL_OUTPUTS, check_image, Reconstruction, Reconstructor
from monoport_ros.ros import conversions as conv
from monoport_ros.ros import node as node_module
from monoport_ros.ros.node import MonoPortNode

ctx = test_ros_params.ctx       # fixture: a fresh rclpy context per test
ENGINE = dict(segmentation=False, resolution=16, octree_depth=2, render_size=32,
              render_views=['front', 'back'], mesh_max_triangles=400)


def _msg(encoding='rgb8', width=32, height=24, step=None, data=None, bigendian=0,
         sec=7) -> Image:
    ch = conv.ENCODINGS.get(encoding, 3)
    step = width * ch if step is None else step
    data = bytes(height * step) if data is None else data
    return Image(header=Header(stamp=Time(sec=sec), frame_id='cam'), encoding=encoding,
                 width=width, height=height, step=step, is_bigendian=bigendian,
                 data=array.array('B', data))


def _float_data(n: int, values) -> bytes:
    return np.resize(np.array(values, np.float32), n).tobytes()


# (name, message, fragment of the ValueError the conversion raises); max_image_pixels = 10000
BAD_IMAGES = [
    ('misspelled RGB8', _msg('RGB8'), 'unsupported image encoding'),
    ('misspelled rgb', _msg('rgb'), 'unsupported image encoding'),
    ('trailing space', _msg('bgr8 '), 'unsupported image encoding'),
    ('empty encoding', _msg(''), 'unsupported image encoding'),
    ('yuv422', _msg('yuv422', step=64), 'unsupported image encoding'),
    ('bayer', _msg('bayer_rggb8', step=32), 'unsupported image encoding'),
    ('16-bit big-endian', _msg('rgb16', step=192, bigendian=1), 'unsupported image encoding'),
    ('mono16', _msg('mono16', step=64), 'unsupported image encoding'),
    ('32FC1 NaN', _msg('32FC1', step=128, data=_float_data(24 * 32, [math.nan, 1.0])),
     'unsupported image encoding'),
    ('32FC3 Inf', _msg('32FC3', step=384, data=_float_data(24 * 96, [math.inf, -math.inf, 0.5])),
     'unsupported image encoding'),
    ('64FC1 NaN', _msg('64FC1', step=256, data=np.full(24 * 32, np.nan).tobytes()),
     'unsupported image encoding'),
    ('is_bigendian 2', _msg(bigendian=2), 'is_bigendian'),
    ('step 0', _msg(step=0, data=b''), 'step 0 is shorter'),
    ('step one byte short', _msg(step=95), 'step 95 is shorter'),
    ('step not a multiple, too short', _msg('bgra8', step=127), 'step 127 is shorter'),
    ('data one byte short', _msg(data=bytes(24 * 96 - 1)), r'expected height\*step'),
    ('data one row short', _msg(data=bytes(23 * 96)), r'expected height\*step'),
    ('data longer', _msg(data=bytes(24 * 96 + 5)), r'expected height\*step'),
    ('no data', _msg(data=b''), r'expected height\*step'),
    ('zero width', _msg(width=0, step=0, data=b''), 'empty image'),
    ('zero height', _msg(height=0, data=b''), 'empty image'),
    ('zero size', _msg(width=0, height=0, step=0, data=b''), 'empty image'),
    ('enormous header', _msg(width=100000, height=100000, step=300000, data=bytes(96)),
     'max_image_pixels'),
    ('above max_image_pixels', _msg('mono8', width=101, height=100), 'max_image_pixels'),
    ('uint32 sizes', _msg(width=2**32 - 1, height=2**32 - 1, step=2**32 - 1, data=bytes(8)),
     'max_image_pixels'),
    ('too small to process', _msg(width=7, height=7), 'image too small'),
]


@pytest.mark.parametrize('name, msg, reason', BAD_IMAGES, ids=[b[0] for b in BAD_IMAGES])
def test_bad_image_is_a_counted_drop(ctx, name, msg, reason):
    with pytest.raises(ValueError, match=reason):
        check_image(conv.image_to_rgb(msg, max_pixels=10000))
    node = _node(ctx, [Parameter('output_dir', value='/tmp/unused'),
                       Parameter('max_image_pixels', value=10000)])
    try:
        node._on_image(msg)                                 # must not raise
        stats = node.stats()
        assert stats['invalid'] == 1 and stats['received'] == 1, stats
        assert node.pipeline.submitted == []
        node._on_image(_image())                            # and the next good frame goes on
        assert len(node.pipeline.submitted) == 1 and node.stats()['invalid'] == 1
    finally:
        node.close()
        node.destroy_node()


def test_unusual_but_valid_layouts_give_the_exact_pixels(ctx):
    """Row padding (step not a multiple of the pixel size) and the big-endian flag on 8 bits."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((24, 32, 1), 255, np.uint8)], axis=2)
    padded = np.concatenate([bgra.reshape(24, 128), np.full((24, 5), 77, np.uint8)], axis=1)
    node = _node(ctx, [Parameter('output_dir', value='/tmp/unused')])
    try:
        node._on_image(_msg('bgra8', step=133, data=padded.tobytes()))
        node._on_image(_msg('rgb8', data=rgb.tobytes(), bigendian=1))
        assert node.stats().get('invalid', 0) == 0
        assert len(node.pipeline.submitted) == 2
        for got, _, _ in node.pipeline.submitted:
            np.testing.assert_array_equal(got, rgb)
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize('k, size', [
    ([math.inf, 0, 16, 0, 300, 12, 0, 0, 1], (32, 24)),
    ([300, 0, 16, 0, math.inf, 12, 0, 0, 1], (32, 24)),
    ([300, 0, math.nan, 0, 300, 12, 0, 0, 1], (32, 24)),
    ([300, 0, 16, 0, 300, -math.inf, 0, 0, 1], (32, 24)),
    ([-300, 0, 16, 0, 300, 12, 0, 0, 1], (32, 24)),
    ([300, 0, 16, 0, 0, 12, 0, 0, 1], (32, 24)),
    ([300, 0, 16, 0, 300, 12, 0, 0, 1], (0, 24)),
    ([300, 0, 16, 0, 300, 12, 0, 0, 1], (32, 0)),
], ids=['inf fx', 'inf fy', 'nan cx', 'inf cy', 'negative fx', 'zero fy', 'zero width',
        'zero height'])
def test_bad_camera_info_is_ignored_and_the_default_camera_used(ctx, k, size):
    node = _node(ctx, [Parameter('output_dir', value='/tmp/unused')])
    try:
        good = CameraInfo(width=32, height=24, k=[300.0, 0, 16, 0, 300, 12, 0, 0, 1])
        node._on_camera_info(good)
        node._on_camera_info(CameraInfo(width=size[0], height=size[1], k=[float(v) for v in k]))
        node._on_image(_image())
        assert node.pipeline.submitted[-1][1].camera == PinholeCamera.default_for(32, 24)
        assert node.stats()['bad_camera_info'] == 1
    finally:
        node.close()
        node.destroy_node()


# ---------------------------------------------------------------------------- settings

@pytest.mark.parametrize('name, value, reason', [
    ('threshold', 'high', 'Wrong parameter type'),
    ('segmentation', 'yes', 'Wrong parameter type'),
    ('resolution', 64.0, 'Wrong parameter type'),
    ('frame_id', 3, 'Wrong parameter type'),
    ('threshold', 1.5, 'threshold out of range'),
    ('subject_height', math.nan, 'subject_height out of range'),
    ('mesh_max_triangles', -1, 'mesh_max_triangles out of range'),
    ('render_size', 4096, 'render_size out of range'),
    ('max_rate', -1.0, 'max_rate out of range'),
    ('resolution', 100, 'resolution=100 must be a power of two'),
    ('octree_depth', 7, 'octree_depth=7 too deep for resolution 32'),
    ('render_views', ['front', 'upside'], "unknown render view 'upside'"),
    ('queue_size', 4, 'read-only'),
    ('geometry_device', 'cuda:0', 'read-only'),
])
def test_bad_parameter_at_run_time_is_rejected_with_the_reason(ctx, name, value, reason):
    node = _node(ctx, [Parameter('resolution', value=32), Parameter('octree_depth', value=3)])
    try:
        before = node.config
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and reason in result.reason, result.reason
        assert node.config == before and node.pipeline.updates == []
        assert node.get_parameter('resolution').value == 32
        ok = node.set_parameters([Parameter('threshold', value=0.4)])[0]   # still configurable
        assert ok.successful and node.pipeline.updates[-1].threshold == 0.4
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize('name, value, reason', [
    ('segmentation', 'yes', "'segmentation' to 'yes' of type 'STRING', expecting type 'BOOL'"),
    ('mesh_max_triangles', 1.5, "expecting type 'INTEGER'"),
    ('render_size', 8, 'render_size out of range'),
    ('queue_size', 0, 'queue_size out of range'),
    ('subject_height', math.nan, 'subject_height out of range'),
    ('image_reliability', 'sometimes', "image_reliability='sometimes' is not one of"),
    ('render_views', ['nowhere'], "unknown render view 'nowhere'"),
    ('octree_depth', -1, 'octree_depth out of range'),
])
def test_bad_parameter_at_start_up_is_refused_with_the_reason(ctx, name, value, reason):
    with pytest.raises(ValueError) as err:
        _node(ctx, [Parameter(name, value=value)])
    assert reason in str(err.value)


# --------------------------------------------------------------- the real engine in-process

class EngineNode:
    """MonoPortNode on the real StageThreadPipeline with a tiny net; records every result."""

    def __init__(self, ctx, net: MonoPortNet, **params) -> None:
        self.results: list = []
        self.reconstructor = None

        def factory(config, on_result):
            def forward(meta, result, error):
                on_result(meta, result, error)       # the node publishes, then we record
                self.results.append((meta, _one_person(result), error))
            self.reconstructor = Reconstructor(config, net=net)
            return StageThreadPipeline(config, forward, reconstructor=self.reconstructor)

        overrides = [Parameter(k, value=v) for k, v in {**ENGINE, **params}.items()]
        self.node = MonoPortNode(pipeline_factory=factory, context=ctx,
                                 parameter_overrides=overrides)

    def send(self, rgb: np.ndarray, sec: int, spin=None, timeout: float = 30.0):
        """Hand one frame to the image callback and wait for its result."""
        n = len(self.results)
        self.node._on_image(conv.rgb_to_image(rgb, 'rgb8', Header(stamp=Time(sec=sec),
                                                                  frame_id='cam')))
        end = time.monotonic() + timeout
        while len(self.results) == n:
            assert time.monotonic() < end, 'no result from the pipeline'
            spin() if spin else time.sleep(0.01)
        return self.results[-1]

    def close(self) -> None:
        self.node.close()
        self.node.destroy_node()


def _one_person(result):
    """Return the one Reconstruction of a frame (pre-masked: at most one person), or None."""
    if result is None:
        return None
    assert len(result.people) <= 1
    return result.people[0] if result.people else Reconstruction(False, result.mask)


def _figure(img: np.ndarray, x: int, y: int, scale: float = 1.0,
            color=(200, 150, 120)) -> np.ndarray:
    """Draw a stick-like person with its head at (x, y)."""
    s = scale
    cv2.circle(img, (x, y), int(9 * s), color, -1)
    cv2.rectangle(img, (int(x - 14 * s), int(y + 9 * s)), (int(x + 14 * s), int(y + 50 * s)),
                  color, -1)
    cv2.rectangle(img, (int(x - 12 * s), int(y + 50 * s)), (int(x + 12 * s), int(y + 90 * s)),
                  color, -1)
    return img


def _check_well_formed(rec, shape: tuple[int, int], cfg: dict,
                       outputs: frozenset = ALL_OUTPUTS) -> None:
    """Shapes, dtypes, finite values and index ranges of one Reconstruction."""
    assert rec.mask.shape == shape and rec.mask.dtype == bool
    if not rec.person:
        assert len(rec.vertices) == len(rec.faces) == len(rec.points) == 0 and not rec.views
        return
    assert rec.crop is not None and math.isfinite(rec.crop.cx) and rec.crop.side > 0
    assert 0 < rec.person_height_px <= shape[0]
    v, f = rec.vertices, rec.faces
    assert v.ndim == 2 and v.shape[1] == 3 and np.isfinite(v).all()
    assert f.ndim == 2 and f.shape[1] == 3 and len(f) <= cfg['mesh_max_triangles']
    if len(f):
        assert f.min() >= 0 and f.max() < len(v)
    assert rec.vertex_colors.shape == v.shape and np.isfinite(rec.vertex_colors).all()
    assert (rec.vertex_colors >= 0).all() and (rec.vertex_colors <= 1).all()
    assert rec.points.shape == rec.point_colors.shape and np.isfinite(rec.points).all()
    cell = 2.0 / cfg['resolution']          # a closed surface may reach one cell out of the cube
    assert np.abs(rec.points).max(initial=0) <= 1.0 + cell
    assert set(rec.views) == (set(cfg['render_views']) if 'views' in outputs else set())
    for img in rec.views.values():
        assert img.shape == (cfg['render_size'],) * 2 + (3,) and img.dtype == np.uint8


def test_frame_contents_give_correct_results(ctx, tiny_net):
    """No person, dark noise, saturated, several people, a person cut by the border."""
    eng = EngineNode(ctx, tiny_net)
    probe = rclpy.create_node('probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(eng.node)
    ex.add_node(probe)
    got: dict[str, list] = {'points': [], 'mesh_marker': [], 'mask': []}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for topic, typ in (('points', PointCloud2), ('mesh_marker', Marker), ('mask', Image)):
        probe.create_subscription(typ, f'{NODE}/{topic}', got[topic].append, qos)
    try:
        end = time.monotonic() + 20
        while not all(p.get_subscription_count() for p in
                      (eng.node.pub_points, eng.node.pub_marker, eng.node.pub_mask)):
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end, 'probe subscriptions not matched'

        def spin():
            ex.spin_once(timeout_sec=0.01)

        def outputs(sec, topics):
            end = time.monotonic() + 10
            while not all(any(m.header.stamp.sec == sec for m in got[t]) for t in topics):
                assert time.monotonic() < end, f'outputs of frame {sec}: {topics}'
                spin()
            return {t: next(m for m in got[t] if m.header.stamp.sec == sec) for t in topics}

        shape = (160, 200)
        wanted = frozenset({'points', 'mesh', 'mask'})      # what the probe subscribes to
        black = np.zeros(shape + (3,), np.uint8)
        noise = np.random.default_rng(1).integers(0, 9, shape + (3,), dtype=np.uint8)
        for sec, img in ((1, black), (2, noise)):
            _, rec, err = eng.send(img, sec, spin)
            assert err is None and not rec.person
            _check_well_formed(rec, shape, ENGINE, wanted)
            out = outputs(sec, ('mesh_marker', 'mask'))
            assert out['mesh_marker'].action == Marker.DELETE
            assert not np.frombuffer(out['mask'].data, np.uint8).any()

        saturated = np.full(shape + (3,), 255, np.uint8)    # pre-masked: all of it is the person
        _, rec, err = eng.send(saturated, 3, spin)
        assert err is None and rec.person and rec.mask.all()
        assert rec.crop == PersonCrop.from_mask(rec.mask, CROP_FILL)
        _check_well_formed(rec, shape, ENGINE, wanted)

        several = _figure(_figure(_figure(black.copy(), 50, 20, 1.2), 130, 40, 0.8), 175, 60, 0.5)
        _, rec, err = eng.send(several, 4, spin)
        big = largest_component(_figure(black.copy(), 50, 20, 1.2).max(axis=2) > 8)
        assert err is None and rec.person and np.array_equal(rec.mask, big)    # the largest one
        assert rec.crop == PersonCrop.from_mask(big, CROP_FILL)
        _check_well_formed(rec, shape, ENGINE, wanted)

        cut = _figure(black.copy(), 8, 90, 1.3)                 # cut at the left and bottom
        _, rec, err = eng.send(cut, 5, spin)
        assert err is None and rec.person and rec.mask[:, 0].any() and rec.mask[-1].any()
        assert rec.crop.cx - rec.crop.side / 2 < 0              # the crop reaches outside
        _check_well_formed(rec, shape, ENGINE, wanted)
        assert len(rec.faces) > 0

        for sec in (3, 4, 5):
            out = outputs(sec, ('mesh_marker', 'points', 'mask'))
            assert out['mesh_marker'].action == Marker.ADD
            assert len(out['mesh_marker'].points) == len(out['mesh_marker'].colors) > 0
            pts, _ = conv.cloud_to_arrays(out['points'])
            assert len(pts) > 0 and np.isfinite(pts).all() and (pts[:, 2] > 0).all()
        stats = eng.node.stats()
        assert stats['published'] == 5 and stats['no_person'] == 2
        assert stats.get('failed', 0) == 0 and stats.get('invalid', 0) == 0
    finally:
        probe.destroy_node()
        eng.close()


# -------------------------------------------------------------------------- property test

_BAD_ENCODINGS = ['RGB8', 'rgb', '32FC1', '32FC3', '16UC3', 'yuv422', '']
_FAULTS = ['encoding', 'step', 'length', 'flag', 'size']
_CONTENT = ['black', 'saturated', 'noise', 'dark noise', 'figure', 'two figures']


def _content(kind: str, h: int, w: int, rng: np.random.Generator, fx: float, fy: float,
             size: float) -> np.ndarray:
    """Image content: a figure of about ``size`` image heights, head at (fx, fy) x (w, h)."""
    if kind == 'black':
        return np.zeros((h, w, 3), np.uint8)
    if kind == 'saturated':
        return np.full((h, w, 3), 255, np.uint8)
    if kind == 'noise':
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == 'dark noise':
        return rng.integers(0, 9, (h, w, 3), dtype=np.uint8)
    x, y, scale = int(fx * w), int(fy * h), size * h / 100
    img = _figure(np.zeros((h, w, 3), np.uint8), x, y, scale)
    if kind == 'two figures':
        img = _figure(img, w - x, h - y, scale * 0.6, (30, 200, 90))
    return img


def _encode(rgb: np.ndarray, encoding: str, step: int, n_bytes: int,
            rng: np.random.Generator) -> bytes:
    """Pack RGB pixels into ``encoding``'s layout with ``step`` bytes a row."""
    h, w = rgb.shape[:2]
    if encoding not in conv.ENCODINGS:
        return rng.integers(0, 256, max(0, n_bytes), dtype=np.uint8).tobytes()
    pixels = np.asarray(conv.rgb_to_image(rgb, encoding).data, np.uint8).reshape(h, -1)
    rows = np.zeros((h, max(step, 0)), np.uint8)
    n = min(step, pixels.shape[1])
    rows[:, :n] = pixels[:, :n]
    data = rows.tobytes()
    return (data + bytes(max(0, n_bytes - len(data))))[:max(0, n_bytes)]


@pytest.fixture(scope='module')
def tiny_reconstructor(tiny_net) -> Reconstructor:
    return Reconstructor(MonoPortConfig(**ENGINE), net=tiny_net)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(encoding=st.sampled_from(sorted(conv.ENCODINGS)), width=st.integers(8, 44),
       height=st.integers(8, 44), pad=st.integers(0, 5), bigendian=st.sampled_from([0, 1]),
       clean=st.booleans(), fault=st.sampled_from(_FAULTS),
       bad_encoding=st.sampled_from(_BAD_ENCODINGS), delta=st.integers(1, 6),
       tiny=st.integers(0, 7), kind=st.sampled_from(_CONTENT), fx=st.floats(-0.2, 1.2),
       fy=st.floats(-0.3, 0.5), size=st.floats(0.6, 1.6), seed=st.integers(0, 2**16))
def test_random_image_messages_through_conversion_and_engine(
        tiny_reconstructor, encoding, width, height, pad, bigendian, clean, fault, bad_encoding,
        delta, tiny, kind, fx, fy, size, seed):
    """Random Images: the documented ValueError, or well-formed outputs of the exact pixels."""
    rng = np.random.default_rng(seed)
    ch = conv.ENCODINGS[encoding]
    extra = 0
    fault = None if clean else fault
    if fault == 'size':
        width, height = (tiny, height) if delta % 2 else (width, tiny)
    step = width * ch + pad
    if fault == 'step':
        step = max(0, width * ch - delta)
    elif fault == 'length':
        extra = delta if delta % 2 else -delta
    elif fault == 'flag':
        bigendian = 1 + delta
    n_bytes = height * step + extra
    rgb = _content(kind, height, width, rng, fx, fy, size) if width and height else None
    data = _encode(rgb, encoding, step, n_bytes, rng) if rgb is not None else bytes(n_bytes)
    if fault == 'encoding':
        encoding = bad_encoding
    msg = _msg(encoding, width, height, step, data, bigendian)
    valid = (encoding in conv.ENCODINGS and width > 0 and height > 0 and width * height <= 1500
             and step >= width * ch and extra == 0 and bigendian in (0, 1))
    try:
        got = conv.image_to_rgb(msg, max_pixels=1500)
        check_image(got)
    except ValueError as exc:
        assert str(exc)
        assert not (valid and min(width, height) >= 8), f'valid frame refused: {exc}'
        event(f'refused: {fault or "size"}')
        return
    assert valid and min(width, height) >= 8
    want = rgb if encoding != 'mono8' else np.repeat(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(got, want)
    rec = tiny_reconstructor.reconstruct(got, ALL_OUTPUTS)
    _check_well_formed(rec, (height, width), ENGINE)
    if kind in ('black', 'dark noise'):
        assert not rec.person
    if rec.person:
        assert rec.mask.sum() >= 64
    event(f"{kind}: {'person' if rec.person else 'no person'}")


# ------------------------------------------------------------------------------- faults

def test_failing_stages_drop_only_their_frames_and_show_in_diagnostics(ctx, tiny_net,
                                                                       monkeypatch):
    """Out-of-memory in geometry, an error in colour or in publishing: frame dropped, node on."""
    eng = EngineNode(ctx, tiny_net)
    node = eng.node
    monkeypatch.setattr(node, '_wanted_outputs', lambda: ALL_OUTPUTS)
    rec = eng.reconstructor
    geometry, color = rec.geometry, rec.color
    faults = {'geometry': 0, 'color': 0, 'publish': 0}

    def failing_geometry(rgb):
        if faults['geometry']:
            raise torch.OutOfMemoryError('CUDA out of memory (simulated)')
        return geometry(rgb)

    def failing_color(geo, outputs, memory=None):
        if faults['color']:
            raise RuntimeError('colour stage failed (simulated)')
        return color(geo, outputs, memory)

    cloud = conv.points_to_cloud

    def failing_cloud(*args):
        if faults['publish']:
            raise MemoryError('cannot build the point cloud (simulated)')
        return cloud(*args)

    monkeypatch.setattr(rec, 'geometry', failing_geometry)
    monkeypatch.setattr(rec, 'color', failing_color)
    monkeypatch.setattr(node_module.conv, 'points_to_cloud', failing_cloud)
    img = _figure(np.zeros((120, 100, 3), np.uint8), 50, 10)
    try:
        node.diagnostics()                                   # start a fresh window
        faults['geometry'] = 1
        for sec in range(1, 4):
            _, out, err = eng.send(img, sec)
            assert out is None and isinstance(err, torch.OutOfMemoryError)
        diag = node.diagnostics().status[0]
        values = {kv.key: kv.value for kv in diag.values}
        assert diag.level == diag.ERROR and diag.message == 'reconstruction failing'
        assert values['failed'] == '3' and values['published'] == '0'

        faults.update(geometry=0, color=1)
        _, out, err = eng.send(img, 4)
        assert out is None and 'colour stage failed' in str(err)
        faults.update(color=0, publish=1)
        _, out, err = eng.send(img, 5)
        assert err is None and out.person                   # the engine worked, publishing not
        assert node.stats()['failed'] == 5

        faults['publish'] = 0
        _, out, err = eng.send(img, 6)                       # the node keeps going
        assert err is None and out.person and len(out.faces)
        stats = node.stats()
        assert stats['failed'] == 5 and stats['published'] == 1
        assert stats['pipeline_failed'] == 4 and stats['pipeline_processed'] == 2
        workers = {t.name for t in threading.enumerate() if t.is_alive()}
        assert {'monoport-geometry', 'monoport-color'} <= workers
        diag = node.diagnostics().status[0]
        values = {kv.key: kv.value for kv in diag.values}
        assert diag.level == diag.WARN and values['failed'] == '5'
        assert values['published'] == '1' and float(values['rate_hz']) > 0
        # the node's own per-frame work is timed beside the engine's stages
        assert float(values['time_publish_ms']) > 0 and float(values['time_image_in_ms']) > 0
        assert float(values['time_encode_ms']) > 0
    finally:
        eng.close()
