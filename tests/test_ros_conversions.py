"""Message conversions of the ROS layer: images, point clouds, markers and meshes."""
from __future__ import annotations

import array
import struct
import time

from builtin_interfaces.msg import Time
import cv2
from geometry_msgs.msg import Point
from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from ros_isolation import domain, ros_args

from monoport_ros.core.preprocess import crop_person, largest_component
from monoport_ros.ros import conversions as conv

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id='camera_optical_frame')


def _image(encoding: str, width: int, height: int, step: int, data: bytes,
           bigendian: int = 0) -> Image:
    return Image(header=HEADER, encoding=encoding, width=width, height=height, step=step,
                 is_bigendian=bigendian, data=array.array('B', data))


def _reference_rgb(msg: Image) -> np.ndarray:
    """Pixel-by-pixel reading of an 8-bit Image, independent of the code under test."""
    ch = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}[msg.encoding]
    out = np.zeros((msg.height, msg.width, 3), np.uint8)
    data = bytes(msg.data)
    for r in range(msg.height):
        for c in range(msg.width):
            px = data[r * msg.step + c * ch: r * msg.step + (c + 1) * ch]
            if msg.encoding == 'mono8':
                out[r, c] = (px[0], px[0], px[0])
            elif msg.encoding.startswith('rgb'):
                out[r, c] = (px[0], px[1], px[2])
            else:
                out[r, c] = (px[2], px[1], px[0])
    return out


# ------------------------------------------------------------------------------------ images

@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'])
def test_image_round_trip_every_encoding(encoding):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    msg = conv.rgb_to_image(rgb, encoding, HEADER)
    assert msg.encoding == encoding and (msg.width, msg.height) == (5, 7)
    assert msg.step == 5 * conv.ENCODINGS[encoding] and len(msg.data) == 7 * msg.step
    assert msg.header == HEADER
    back = conv.image_to_rgb(msg)
    assert back.dtype == np.uint8 and back.shape == (7, 5, 3) and back.flags.c_contiguous
    if encoding == 'mono8':
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(back, np.repeat(grey[:, :, None], 3, axis=2))
    else:
        np.testing.assert_array_equal(back, rgb)
    np.testing.assert_array_equal(back, _reference_rgb(msg))


def test_hand_built_bgr8_with_row_padding():
    # 2x2 bgr8, rows padded to 8 bytes (step is not a multiple of the pixel size)
    data = bytes([1, 2, 3, 4, 5, 6, 99, 99,
                  7, 8, 9, 10, 11, 12, 99, 99])
    rgb = conv.image_to_rgb(_image('bgr8', 2, 2, 8, data))
    np.testing.assert_array_equal(rgb, [[[3, 2, 1], [6, 5, 4]], [[9, 8, 7], [12, 11, 10]]])
    # 8-bit data has no byte order: the big-endian flag gives the same pixels
    rgb_be = conv.image_to_rgb(_image('bgr8', 2, 2, 8, data, bigendian=1))
    np.testing.assert_array_equal(rgb_be, rgb)


def test_hand_built_rgba8_and_mono8():
    rgba = bytes([10, 20, 30, 255, 40, 50, 60, 0])
    np.testing.assert_array_equal(conv.image_to_rgb(_image('rgba8', 2, 1, 8, rgba)),
                                  [[[10, 20, 30], [40, 50, 60]]])
    mono = bytes([0, 128, 255, 7])
    np.testing.assert_array_equal(conv.image_to_rgb(_image('mono8', 2, 2, 2, mono))[:, :, 1],
                                  [[0, 128], [255, 7]])


@pytest.mark.parametrize('kwargs, message', [
    (dict(encoding='yuv422'), 'unsupported image encoding'),
    (dict(encoding='RGB8'), 'unsupported image encoding'),
    (dict(encoding='16UC1'), 'unsupported image encoding'),
    (dict(encoding=''), 'unsupported image encoding'),
    (dict(width=0, step=0, data=b''), 'empty image'),
    (dict(height=0, data=b''), 'empty image'),
    (dict(step=8), 'step 8 is shorter'),
    (dict(data=bytes(4 * 12 - 1)), r'expected height\*step'),
    (dict(data=bytes(4 * 12 + 3)), r'expected height\*step'),
    (dict(bigendian=2), 'is_bigendian'),
])
def test_bad_images_raise_clear_value_errors(kwargs, message):
    args = dict(encoding='rgb8', width=4, height=4, step=12, data=bytes(48), bigendian=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        conv.image_to_rgb(_image(**args))


def test_max_pixels_cap():
    msg = _image('mono8', 10, 10, 10, bytes(100))
    assert conv.image_to_rgb(msg, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(ValueError, match='max_image_pixels'):
        conv.image_to_rgb(msg, max_pixels=99)


def test_array_to_image_mask_and_errors():
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    msg = conv.array_to_image(mask, 'mono8', HEADER)
    assert msg.encoding == 'mono8' and msg.step == 4
    assert bytes(msg.data) == bytes([0] * 6 + [255] + [0] * 5)
    with pytest.raises(ValueError, match='uint8'):
        conv.array_to_image(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match='does not hold'):
        conv.array_to_image(np.zeros((2, 2, 3), np.uint8), 'mono8')


_ENCODINGS = st.sampled_from(['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'rgb16', 'RGB8', 'bayer'])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=_ENCODINGS, width=st.integers(0, 24), height=st.integers(0, 24),
       pad=st.integers(-5, 6), extra=st.sampled_from([0, 0, 0, -1, 1, 7]),
       bigendian=st.sampled_from([0, 0, 1, 3]), seed=st.integers(0, 2**16))
def test_random_images_convert_or_fail_cleanly(encoding, width, height, pad, extra, bigendian,
                                               seed):
    """Random Image messages: a ValueError, or exactly the reference pixels and a clean crop."""
    ch = conv.ENCODINGS.get(encoding, 3)
    step = max(0, width * ch + pad)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, max(0, height * step + extra), dtype=np.uint8).tobytes()
    msg = _image(encoding, width, height, step, data, bigendian)
    try:
        rgb = conv.image_to_rgb(msg, max_pixels=400)
    except ValueError as exc:
        assert str(exc)
        valid = (encoding in conv.ENCODINGS and width and height and width * height <= 400
                 and pad >= 0 and extra == 0 and bigendian in (0, 1))
        assert not valid, f'valid image refused: {exc}'
        return
    assert encoding in conv.ENCODINGS and pad >= 0 and extra == 0 and bigendian in (0, 1)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, _reference_rgb(msg))
    # the accepted frame goes through the pre-masked person path without surprises
    mask = largest_component(rgb.max(axis=2) > 8)
    if mask.any():
        crop, cmask, box = crop_person(rgb, mask, 32)
        assert crop.shape == (32, 32, 3) and crop.dtype == np.float32
        assert np.isfinite(crop).all() and crop.min() >= 0.0 and crop.max() <= 1.0
        assert cmask.shape == (32, 32) and box.side > 0


# ------------------------------------------------------------------------------- point clouds

def test_point_cloud_matches_hand_built_message():
    pts = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, 3.0]], np.float32)
    cols = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    msg = conv.points_to_cloud(pts, cols, HEADER)

    ref = PointCloud2(header=HEADER, height=1, width=2, is_bigendian=False, point_step=16,
                      row_step=32, is_dense=True)
    ref.fields = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
                  PointField(name='y', offset=4, datatype=PointField.FLOAT32, count=1),
                  PointField(name='z', offset=8, datatype=PointField.FLOAT32, count=1),
                  PointField(name='rgb', offset=12, datatype=PointField.FLOAT32, count=1)]
    # RViz/PCL convention: the uint32 0x00RRGGBB stored in the bytes of a float32 field
    ref.data = array.array('B', struct.pack('<fffI', 0.5, -1.0, 2.0, 0xFF8000)
                           + struct.pack('<fffI', 1.5, 0.25, 3.0, 0x0000FF))
    assert msg == ref
    back = deserialize_message(serialize_message(msg), PointCloud2)
    p, c = conv.cloud_to_arrays(back)
    np.testing.assert_array_equal(p, pts)
    np.testing.assert_array_equal(c, [[255, 128, 0], [0, 0, 255]])


def test_point_cloud_drops_non_finite_rows_and_accepts_uint8_colours():
    pts = np.array([[0, 0, 1], [np.nan, 0, 1], [0, np.inf, 1], [1, 1, 1]], np.float64)
    cols = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], np.uint8)
    msg = conv.points_to_cloud(pts, cols, HEADER)
    assert msg.width == 2 and len(msg.data) == 32 and msg.is_dense
    p, c = conv.cloud_to_arrays(msg)
    np.testing.assert_array_equal(c, [[1, 2, 3], [10, 11, 12]])
    with pytest.raises(ValueError, match='colours'):
        conv.points_to_cloud(pts, cols[:3], HEADER)


def test_pack_unpack_rgb_round_trip():
    cols = np.random.default_rng(0).integers(0, 256, (100, 3), dtype=np.uint8)
    packed = conv.pack_rgb(cols)
    assert packed.dtype == np.float32
    np.testing.assert_array_equal(conv.unpack_rgb(packed), cols)
    assert int(conv.pack_rgb(np.array([[0.0, 1.0, 0.0]])).view(np.uint32)[0]) == 0x00FF00


# ------------------------------------------------------------------------------ mesh messages

def _hand_built_marker(vertices, faces, colors, header, ns='monoport', marker_id=0) -> Marker:
    m = Marker(header=header, ns=ns, id=marker_id, type=Marker.TRIANGLE_LIST, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x, m.scale.y, m.scale.z = 1.0, 1.0, 1.0
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    for face in faces:
        for i in face:
            x, y, z = (float(v) for v in vertices[i])
            m.points.append(Point(x=x, y=y, z=z))
            r, g, b = (float(np.float32(v)) for v in colors[i])
            m.colors.append(ColorRGBA(r=r, g=g, b=b, a=1.0))
    return m


def test_encoder_self_check_passes_here():
    """The numpy CDR encoder (not the slow fallback) is what this install publishes."""
    assert conv.fast_path_ok()


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera', 'camera_optical_frame'])
@pytest.mark.parametrize('ns', ['', 'monoport', 'abcdefg'])
def test_marker_bytes_decode_to_the_hand_built_marker(frame_id, ns):
    rng = np.random.default_rng(len(frame_id) + 7 * len(ns))
    v = rng.normal(size=(6, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5], [5, 0, 2]], np.int32)
    c = rng.random((6, 3)).astype(np.float32)
    header = Header(stamp=Time(sec=5, nanosec=99), frame_id=frame_id)
    raw = conv.marker_cdr(v, f, c, header, ns=ns, marker_id=3)
    ref = _hand_built_marker(v, f, c, header, ns, 3)
    assert len(raw) == len(serialize_message(ref))
    decoded = deserialize_message(raw, Marker)
    assert decoded == ref
    assert len(decoded.points) == len(decoded.colors) == 9
    assert conv.mesh_to_marker(v, f, c, header, ns, 3) == ref


def test_marker_properties_and_uint8_colours():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2]])
    m = deserialize_message(conv.marker_cdr(v, f, np.array([[255, 0, 0]] * 3, np.uint8),
                                            HEADER), Marker)
    assert m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD
    assert (m.scale.x, m.scale.y, m.scale.z) == (1.0, 1.0, 1.0) and m.color.a == 1.0
    assert m.pose.orientation.w == 1.0 and m.header == HEADER
    assert [(c.r, c.g, c.b, c.a) for c in m.colors] == [(1.0, 0.0, 0.0, 1.0)] * 3
    empty = deserialize_message(conv.marker_cdr(np.zeros((0, 3)), np.zeros((0, 3), int),
                                                np.zeros((0, 3)), HEADER), Marker)
    assert empty.points == [] and empty.colors == []
    with pytest.raises(ValueError, match='out of range'):
        conv.marker_cdr(v, np.array([[0, 1, 3]]), np.zeros((3, 3)), HEADER)
    with pytest.raises(ValueError, match='colours'):
        conv.marker_cdr(v, f, np.zeros((2, 3)), HEADER)


def test_delete_marker():
    m = conv.delete_marker(HEADER)
    assert m.action == Marker.DELETE and m.ns == 'monoport' and m.id == 0 and m.header == HEADER


def test_mesh_bytes_decode_to_the_hand_built_mesh():
    v = np.array([[0.1, 0.2, 0.3], [1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
    f = np.array([[0, 1, 2], [2, 3, 0]], np.int32)
    ref = Mesh()
    ref.triangles = [MeshTriangle(vertex_indices=np.array(t, np.uint32)) for t in f]
    ref.vertices = [Point(x=float(a), y=float(b), z=float(c)) for a, b, c in v]
    raw = conv.mesh_cdr(v, f)
    assert len(raw) == len(serialize_message(ref))
    assert deserialize_message(raw, Mesh) == ref
    assert conv.mesh_to_msg(v, f) == ref
    empty = deserialize_message(conv.mesh_cdr(np.zeros((0, 3)), np.zeros((0, 3), int)), Mesh)
    assert empty.triangles == [] and empty.vertices == []
    with pytest.raises(ValueError, match='out of range'):
        conv.mesh_cdr(v, np.array([[0, 1, 4]]))


def test_50k_triangle_marker_builds_and_publishes_well_under_100ms():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(25000, 3)).astype(np.float32)
    f = rng.integers(0, 25000, (50000, 3)).astype(np.int32)
    c = rng.random((25000, 3)).astype(np.float32)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain(), args=ros_args())
    try:
        node = rclpy.create_node('marker_speed', context=ctx)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Marker, 'speed_marker', qos)
        got = []
        node.create_subscription(Marker, 'speed_marker', got.append, qos)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            pub.publish(conv.marker_cdr(v, f, c, HEADER))
            times.append(time.perf_counter() - t0)
        ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        end = time.monotonic() + 10
        while not got and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    best, median = min(times), sorted(times)[2]
    print(f'50k-triangle marker build+publish: best {best * 1e3:.1f} ms, '
          f'median {median * 1e3:.1f} ms')
    assert median < 0.1, times
    assert got and len(got[-1].points) == 150000 and len(got[-1].colors) == 150000


# --------------------------------------------------------------------------------- depth images

def _depth_msg(encoding: str, values: list[list[float]], bigendian: bool, pad: int) -> Image:
    """Build a depth Image by hand with struct, row by row (``pad`` bytes after each row)."""
    fmt = {'16UC1': 'H', 'mono16': 'H', '32FC1': 'f'}[encoding]
    order = '>' if bigendian else '<'
    rows = [struct.pack(f'{order}{len(r)}{fmt}', *r) + b'\xab' * pad for r in values]
    return _image(encoding, len(values[0]), len(values), len(rows[0]), b''.join(rows),
                  bigendian=int(bigendian))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 3])
def test_16uc1_depth_is_millimetres_with_zero_as_a_hole(bigendian, pad):
    msg = _depth_msg('16UC1', [[1000, 0, 65535], [1500, 2501, 7]], bigendian, pad)
    got = conv.depth_to_metres(msg)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, [[1.0, np.nan, 65.535], [1.5, 2.501, 0.007]], rtol=1e-6)


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 4])
def test_32fc1_depth_is_metres_with_nan_inf_and_zero_as_holes(bigendian, pad):
    msg = _depth_msg('32FC1', [[2.25, float('nan'), 0.0], [float('inf'), -1.0, 3.5]], bigendian,
                     pad)
    got = conv.depth_to_metres(msg)
    np.testing.assert_allclose(got, [[2.25, np.nan, np.nan], [np.nan, np.nan, 3.5]])


def test_malformed_depth_images_are_refused_with_the_reason():
    ok = _depth_msg('16UC1', [[1, 2], [3, 4]], False, 0)
    with pytest.raises(ValueError, match='unsupported depth encoding'):
        conv.depth_to_metres(_image('rgb8', 2, 2, 6, bytes(12)))
    short = _image('32FC1', 2, 2, 4, bytes(8))
    with pytest.raises(ValueError, match='shorter than a row'):
        conv.depth_to_metres(short)
    cut = _image('16UC1', 2, 2, 4, bytes(ok.data)[:6])
    with pytest.raises(ValueError, match='expected height\\*step'):
        conv.depth_to_metres(cut)
    with pytest.raises(ValueError, match='more than max_image_pixels=3 pixels'):
        conv.depth_to_metres(ok, max_pixels=3)
