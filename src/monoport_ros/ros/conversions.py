"""
Conversions between numpy arrays and the ROS messages of the node, built for speed.

Images: ``sensor_msgs/Image`` <-> numpy for rgb8, bgr8, rgba8, bgra8 and mono8, with every
header field validated (a clear ``ValueError`` otherwise). ``cv_bridge`` does the pixel work where
it is installed; the project's own numpy code, which gives the same arrays, is used otherwise.

Point clouds: ``sensor_msgs/PointCloud2`` with ``x y z`` float32 and ``rgb`` (a uint32
``0x00RRGGBB`` stored in a float32 field, as RViz and PCL expect), built from one numpy structured
array (``sensor_msgs_py.point_cloud2.create_cloud`` where installed).

With several people, ``points_to_cloud`` adds a uint32 ``person`` field (the track id of each
point); ``people_to_cloud`` writes one row per person (position, box, size, id).

Meshes: ``visualization_msgs/Marker`` TRIANGLE_LIST with per-vertex colours, ``shape_msgs/Mesh``,
and a ``visualization_msgs/MarkerArray`` of several markers (``marker_array_cdr``).
Building one Python ``Point`` object per vertex takes about a second for 50k triangles, so these
two are serialized straight to CDR bytes with numpy (``marker_cdr``, ``mesh_cdr``); rclpy publishes
bytes as a serialized message. A self-check against ``rclpy.serialization`` (run once) guards the
encoder: where it disagrees (another ROS distribution's message layout), the slow object path is
used instead, so the bytes on the wire are always those rclpy itself would write.
"""
from __future__ import annotations

import array
import struct
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

try:                                    # present in a full ROS 2 install, not in the pip wheels
    from cv_bridge import CvBridge
    _BRIDGE: Any = CvBridge()
except ImportError:                     # pragma: no cover - depends on the install
    _BRIDGE = None

try:
    from sensor_msgs_py import point_cloud2 as _pc2
except ImportError:                     # pragma: no cover - depends on the install
    _pc2 = None

#: Channels of each accepted image encoding.
ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}

#: Layout of the published point cloud (16 bytes per point).
CLOUD_DTYPE = np.dtype({'names': ['x', 'y', 'z', 'rgb'],
                        'formats': ['<f4', '<f4', '<f4', '<f4'],
                        'offsets': [0, 4, 8, 12], 'itemsize': 16})
CLOUD_FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                for i, n in enumerate(('x', 'y', 'z', 'rgb'))]
#: The same with the track id of each point's person (20 bytes per point).
PEOPLE_CLOUD_DTYPE = np.dtype({'names': ['x', 'y', 'z', 'rgb', 'person'],
                               'formats': ['<f4', '<f4', '<f4', '<f4', '<u4'],
                               'offsets': [0, 4, 8, 12, 16], 'itemsize': 20})
PEOPLE_CLOUD_FIELDS = CLOUD_FIELDS + [PointField(name='person', offset=16,
                                                 datatype=PointField.UINT32, count=1)]
#: ``~/people``: one row per person: position and size (m), mask box (pixels), track id.
PERSON_ROW_NAMES = ('x', 'y', 'z', 'size_x', 'size_y', 'size_z',
                    'box_x0', 'box_y0', 'box_x1', 'box_y1', 'person')
PERSON_ROW_DTYPE = np.dtype({'names': list(PERSON_ROW_NAMES),
                             'formats': ['<f4'] * 10 + ['<u4'],
                             'offsets': [4 * i for i in range(11)], 'itemsize': 44})
PERSON_ROW_FIELDS = [
    PointField(name=n, offset=4 * i, count=1,
               datatype=PointField.UINT32 if n == 'person' else PointField.FLOAT32)
    for i, n in enumerate(PERSON_ROW_NAMES)]


# ----------------------------------------------------------------------------------------- images

def check_image_message(msg: Image, max_pixels: int | None = None) -> int:
    """
    Validate an Image's header fields against its data; return its channel count.

    Raises ValueError naming the problem: unsupported encoding, zero or too many pixels, a step
    shorter than one row of pixels, a data length other than ``height * step`` or a bad
    ``is_bigendian`` flag (8-bit data has no byte order, so 0 and 1 are both accepted).
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {enc!r} (accepted: {", ".join(ENCODINGS)})')
    _check_layout(msg, ENCODINGS[enc], max_pixels, 'image')
    return ENCODINGS[enc]


def _check_layout(msg: Image, pixel_bytes: int, max_pixels: int | None, kind: str) -> None:
    """Raise ValueError unless size, byte order flag, step and data length agree."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ValueError(f'empty {kind} ({w}x{h})')
    if max_pixels is not None and h * w > max_pixels:
        raise ValueError(f'{kind} {w}x{h} has more than max_image_pixels={max_pixels} pixels')
    if msg.is_bigendian not in (0, 1):
        raise ValueError(f'invalid is_bigendian flag {msg.is_bigendian}')
    if step < w * pixel_bytes:
        raise ValueError(f'step {step} is shorter than a row of {w} {msg.encoding} pixels '
                         f'({w * pixel_bytes} bytes)')
    if len(msg.data) != h * step:
        raise ValueError(f'data has {len(msg.data)} bytes, expected height*step = {h * step}')


def image_to_array(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Return the pixels of a validated Image in its own channel order: (H, W, C) or (H, W)."""
    ch = check_image_message(msg, max_pixels)
    h, w, step = msg.height, msg.width, msg.step
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :w * ch]
    return rows.reshape(h, w) if ch == 1 else rows.reshape(h, w, ch)


def _own_to_rgb(msg: Image, max_pixels: int | None) -> np.ndarray:
    """Numpy-only conversion of a validated Image to (H, W, 3) RGB."""
    a = image_to_array(msg, max_pixels)
    enc = msg.encoding
    if enc == 'mono8':
        out = np.repeat(a[:, :, None], 3, axis=2)
    elif enc in ('rgb8', 'rgba8'):
        out = a[:, :, :3]
    else:                               # bgr8, bgra8
        out = a[:, :, 2::-1]
    return np.ascontiguousarray(out)


def image_to_rgb(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Validate ``msg`` and return its pixels as a new (H, W, 3) uint8 RGB array."""
    check_image_message(msg, max_pixels)
    if _BRIDGE is not None:             # pragma: no cover - depends on the install
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
    return _own_to_rgb(msg, max_pixels)


#: Depth encodings: element type and metres per unit (16UC1 is millimetres, 32FC1 metres).
DEPTH_ENCODINGS = {'16UC1': ('u2', 1e-3), 'mono16': ('u2', 1e-3), '32FC1': ('f4', 1.0)}


def depth_to_metres(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """
    Depth image (``16UC1`` in mm, ``32FC1`` in m) as (H, W) float32 metres; holes are NaN.

    Honours ``is_bigendian`` and padded rows (``step`` longer than a row). Zero, NaN and inf
    (the drivers' "no depth") become NaN. Raises ValueError on a malformed message.
    """
    enc = msg.encoding
    if enc not in DEPTH_ENCODINGS:
        raise ValueError(f'unsupported depth encoding {enc!r} '
                         f'(accepted: {", ".join(DEPTH_ENCODINGS)})')
    kind, unit = DEPTH_ENCODINGS[enc]
    size = int(kind[1])
    _check_layout(msg, size, max_pixels, 'depth image')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :w * size]
    order = '>' if msg.is_bigendian else '<'
    values = np.ascontiguousarray(rows).view(np.dtype(order + kind)).reshape(h, w)
    out = values.astype(np.float32) * np.float32(unit)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def array_to_image(arr: np.ndarray, encoding: str = 'rgb8',
                   header: Header | None = None) -> Image:
    """
    Image message from a C-contiguous uint8 array (H, W, C) or (H, W) in ``encoding``'s order.

    Boolean (H, W) arrays (masks) become mono8 0/255.
    """
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f'image arrays must be uint8, got {arr.dtype}')
    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r}')
    ch = ENCODINGS[encoding]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != ch or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f'array of shape {arr.shape} does not hold a {encoding} image')
    if _BRIDGE is not None:             # pragma: no cover - depends on the install
        msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(arr[:, :, 0] if ch == 1 else arr),
                                    encoding=encoding)
        if header is not None:
            msg.header = header
        return msg
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * ch
    msg.data = array.array('B', np.ascontiguousarray(arr).tobytes())
    return msg


def rgb_to_image(rgb: np.ndarray, encoding: str = 'rgb8', header: Header | None = None) -> Image:
    """Image message in ``encoding`` (rgb8, bgr8 or mono8) from an (H, W, 3) uint8 RGB array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB array, got shape {rgb.shape}')
    if encoding == 'rgb8':
        arr = rgb
    elif encoding == 'bgr8':
        arr = rgb[:, :, ::-1]
    elif encoding == 'rgba8':
        arr = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding == 'bgra8':
        arr = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)],
                             axis=2)
    elif encoding == 'mono8':
        import cv2
        arr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f'unsupported image encoding {encoding!r}')
    return array_to_image(np.ascontiguousarray(arr), encoding, header)


# ------------------------------------------------------------------------------------ point clouds

def colors_to_uint8(colors: np.ndarray) -> np.ndarray:
    """(N, 3) colours, float in [0, 1] or uint8, as uint8."""
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    scaled = np.rint(np.nan_to_num(colors.astype(np.float32)) * 255.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """Pack (N, 3) colours into float32s whose bits are the uint32 ``0x00RRGGBB`` (RViz rgb)."""
    c = colors_to_uint8(colors).astype(np.uint32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return packed.astype(np.uint32).view(np.float32)


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: (N,) float32 -> (N, 3) uint8."""
    u = np.ascontiguousarray(rgb, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)


def points_to_cloud(points: np.ndarray, colors: np.ndarray, header: Header,
                    person: np.ndarray | None = None) -> PointCloud2:
    """
    Unorganized PointCloud2 (x y z rgb, 16 bytes a point); rows with NaN/Inf are left out.

    With ``person`` (N,) track ids, a uint32 ``person`` field follows (20 bytes a point).
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors).reshape(-1, 3)
    if len(colors) != len(points):
        raise ValueError(f'{len(points)} points but {len(colors)} colours')
    if person is not None and len(person) != len(points):
        raise ValueError(f'{len(points)} points but {len(person)} person ids')
    keep = np.isfinite(points).all(axis=1)
    if not keep.all():
        points, colors = points[keep], colors[keep]
        person = None if person is None else np.asarray(person)[keep]
    if person is None:
        dtype, fields = CLOUD_DTYPE, CLOUD_FIELDS
    else:
        dtype, fields = PEOPLE_CLOUD_DTYPE, PEOPLE_CLOUD_FIELDS
    cloud = np.empty(len(points), dtype=dtype)
    cloud['x'], cloud['y'], cloud['z'] = points[:, 0], points[:, 1], points[:, 2]
    cloud['rgb'] = pack_rgb(colors)
    if person is not None:
        cloud['person'] = person
    return _cloud(cloud, fields, header)


def people_to_cloud(rows: np.ndarray, header: Header) -> PointCloud2:
    """``~/people``: a PointCloud2 with one row (:data:`PERSON_ROW_DTYPE`) per person."""
    return _cloud(np.asarray(rows, PERSON_ROW_DTYPE), PERSON_ROW_FIELDS, header)


def _cloud(cloud: np.ndarray, fields: list[PointField], header: Header) -> PointCloud2:
    """PointCloud2 of the structured array ``cloud`` (one row a point), dense, little-endian."""
    if _pc2 is not None:                # pragma: no cover - depends on the install
        msg = _pc2.create_cloud(header, fields, cloud)
        msg.is_dense = True             # non-finite points were left out by the callers
        return msg
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, len(cloud)
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                  for f in fields]
    msg.is_bigendian = False
    msg.point_step = cloud.dtype.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = array.array('B', cloud.tobytes())
    return msg


def cloud_to_arrays(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """Return points (N, 3) float32 and colours (N, 3) uint8 of a cloud with x y z rgb fields."""
    fields = {f.name: f for f in msg.fields}
    for name in ('x', 'y', 'z', 'rgb'):
        if name not in fields or fields[name].datatype != PointField.FLOAT32:
            raise ValueError(f'point cloud has no float32 field {name!r}')
    if msg.is_bigendian:
        raise ValueError('big-endian point clouds are not supported')
    n = msg.width * msg.height
    dtype = np.dtype({'names': ['x', 'y', 'z', 'rgb'], 'formats': ['<f4'] * 4,
                      'offsets': [fields[k].offset for k in ('x', 'y', 'z', 'rgb')],
                      'itemsize': msg.point_step})
    if msg.row_step != msg.point_step * msg.width or len(msg.data) != msg.row_step * msg.height:
        raise ValueError('point cloud data size does not match its width, height and steps')
    cloud = np.frombuffer(msg.data, dtype=dtype, count=n)
    pts = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1)
    return pts, unpack_rgb(cloud['rgb'])


# -------------------------------------------------------------------------------------- CDR writer

class _Cdr:
    """Little-endian XCDR1 (plain CDR) writer: what rclpy/Fast DDS use for these messages."""

    HEADER = b'\x00\x01\x00\x00'        # CDR_LE encapsulation

    def __init__(self) -> None:
        self.parts: list[bytes] = [self.HEADER]
        self.pos = 0                    # offset after the encapsulation header (alignment origin)

    def _put(self, data: bytes) -> None:
        self.parts.append(data)
        self.pos += len(data)

    def align(self, n: int) -> None:
        pad = -self.pos % n
        if pad:
            self._put(b'\0' * pad)

    def fmt(self, fmt: str, *values: Any, align: int) -> None:
        self.align(align)
        self._put(struct.pack('<' + fmt, *values))

    def string(self, s: str) -> None:
        raw = s.encode('utf-8') + b'\0'
        self.fmt('I', len(raw), align=4)
        self._put(raw)

    def header(self, h: Header) -> None:
        self.fmt('iI', h.stamp.sec, h.stamp.nanosec, align=4)
        self.string(h.frame_id)

    def array(self, arr: np.ndarray, align: int) -> None:
        """Write a sequence of fixed-size elements: uint32 count (rows), then the raw data."""
        self.fmt('I', len(arr), align=4)
        if len(arr):
            self.align(align)
            self._put(np.ascontiguousarray(arr).tobytes())

    def bytes(self) -> bytes:
        return b''.join(self.parts)


def _triangle_arrays(vertices: np.ndarray, faces: np.ndarray,
                     vertex_colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marker points (3F, 3) float64 and RGBA colours (3F, 4) float32 of a triangle list."""
    vertices = np.asarray(vertices).reshape(-1, 3)
    faces = np.asarray(faces).reshape(-1, 3)
    vertex_colors = np.asarray(vertex_colors).reshape(-1, 3)
    if len(vertex_colors) != len(vertices):
        raise ValueError(f'{len(vertices)} vertices but {len(vertex_colors)} colours')
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError('face index out of range')
    idx = faces.reshape(-1)
    pts = vertices[idx].astype('<f8')
    cols = np.ones((len(idx), 4), dtype='<f4')
    if vertex_colors.dtype == np.uint8:
        cols[:, :3] = vertex_colors[idx].astype(np.float32) / 255.0
    else:
        cols[:, :3] = np.clip(vertex_colors[idx], 0.0, 1.0)
    return pts, cols


def _marker_template(header: Header, ns: str, marker_id: int, action: int) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(marker_id)
    m.type = Marker.TRIANGLE_LIST
    m.action = action
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    m.frame_locked = False
    return m


def _marker_cdr_raw(header: Header, ns: str, marker_id: int, pts: np.ndarray,
                    cols: np.ndarray, action: int) -> bytes:
    """Kilted/Jazzy visualization_msgs/Marker layout written directly."""
    w = _Cdr()
    _write_marker(w, MarkerSpec(ns, marker_id, Marker.TRIANGLE_LIST, action, pts, cols), header)
    return w.bytes()


class MarkerSpec:
    """What :func:`marker_array_cdr` writes of one marker (the rest stays at its defaults)."""

    def __init__(self, ns: str, marker_id: int, kind: int, action: int = Marker.ADD,
                 points: np.ndarray | None = None, colors: np.ndarray | None = None,
                 scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> None:
        self.ns, self.marker_id, self.kind, self.action = ns, int(marker_id), kind, action
        self.points = np.zeros((0, 3), '<f8') if points is None else np.asarray(points, '<f8')
        self.colors = np.zeros((0, 4), '<f4') if colors is None else np.asarray(colors, '<f4')
        self.scale, self.color = scale, color

    def message(self, header: Header) -> Marker:
        """Build the same marker as a message object (slow for big meshes: self-check, tests)."""
        m = _marker_template(header, self.ns, self.marker_id, self.action)
        m.type = self.kind
        m.scale.x, m.scale.y, m.scale.z = self.scale
        m.color = ColorRGBA(r=self.color[0], g=self.color[1], b=self.color[2], a=self.color[3])
        m.points = [Point(x=x, y=y, z=z) for x, y, z in self.points.tolist()]
        m.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in self.colors.tolist()]
        return m


def _write_marker(w: _Cdr, spec: MarkerSpec, header: Header) -> None:
    w.header(header)
    w.string(spec.ns)
    w.fmt('iii', spec.marker_id, spec.kind, spec.action, align=4)
    w.fmt('7d', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, align=8)       # pose
    w.fmt('3d', *spec.scale, align=8)                               # scale
    w.fmt('4f', *spec.color, align=4)                               # color
    w.fmt('iI', 0, 0, align=4)                                      # lifetime
    w.fmt('?', False, align=1)                                      # frame_locked
    w.array(spec.points, 8)
    w.array(spec.colors, 4)
    w.string('')                                                    # texture_resource
    w.header(Header())                                              # texture.header
    w.string('')                                                    # texture.format
    w.fmt('I', 0, align=4)                                          # texture.data
    w.fmt('I', 0, align=4)                                          # uv_coordinates
    w.string('')                                                    # text
    w.string('')                                                    # mesh_resource
    w.string('')                                                    # mesh_file.filename
    w.fmt('I', 0, align=4)                                          # mesh_file.data
    w.fmt('?', False, align=1)                                      # mesh_use_embedded_materials


def marker_array_cdr(specs: list[MarkerSpec], header: Header) -> bytes:
    """Serialize a visualization_msgs/MarkerArray of ``specs`` (publish the bytes)."""
    if not fast_path_ok():              # pragma: no cover - another message layout
        return serialize_message(MarkerArray(markers=[m.message(header) for m in specs]))
    w = _Cdr()
    w.fmt('I', len(specs), align=4)
    for spec in specs:
        _write_marker(w, spec, header)
    return w.bytes()


def triangle_marker(vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray,
                    ns: str, marker_id: int) -> MarkerSpec:
    """Make a TRIANGLE_LIST marker of a mesh with per-vertex colours (see :func:`marker_cdr`)."""
    pts, cols = _triangle_arrays(vertices, faces, vertex_colors)
    return MarkerSpec(ns, marker_id, Marker.TRIANGLE_LIST, Marker.ADD, pts, cols)


def _mesh_cdr_raw(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    w = _Cdr()
    w.array(np.asarray(faces, dtype='<u4').reshape(-1, 3), 4)
    w.array(np.asarray(vertices, dtype='<f8').reshape(-1, 3), 8)
    return w.bytes()


def _marker_object(header: Header, ns: str, marker_id: int, pts: np.ndarray,
                   cols: np.ndarray, action: int) -> Marker:
    return MarkerSpec(ns, marker_id, Marker.TRIANGLE_LIST, action, pts, cols).message(header)


def _mesh_object(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    m = Mesh()
    m.triangles = [MeshTriangle(vertex_indices=np.asarray(f, dtype=np.uint32))
                   for f in np.asarray(faces).reshape(-1, 3)]
    verts = np.asarray(vertices, np.float64).reshape(-1, 3).tolist()
    m.vertices = [Point(x=x, y=y, z=z) for x, y, z in verts]
    return m


_FAST_OK: bool | None = None


def fast_path_ok() -> bool:
    """Whether the numpy CDR encoder writes exactly what rclpy writes (checked once)."""
    global _FAST_OK
    if _FAST_OK is None:
        h = Header(frame_id='cam', stamp=Time(sec=3, nanosec=7))
        v = np.array([[0.0, 0.1, 0.2], [1.0, 1.1, 1.2], [2.0, 2.1, 2.2]])
        f = np.array([[0, 1, 2], [2, 1, 0]])
        c = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        pts, cols = _triangle_arrays(v, f, c)
        ref_marker = _marker_object(h, 'n', 1, pts, cols, Marker.ADD)
        ref_mesh = _mesh_object(v, f)
        try:
            own_marker = _marker_cdr_raw(h, 'n', 1, pts, cols, Marker.ADD)
            own_mesh = _mesh_cdr_raw(v, f)
            specs = [MarkerSpec('a', 2, Marker.CUBE, Marker.DELETEALL),
                     MarkerSpec('b', 3, Marker.LINE_LIST, Marker.ADD, pts[:2], cols[:2],
                                (0.01, 0.0, 0.0), (0.5, 0.25, 1.0, 0.75))]
            ref_array = MarkerArray(markers=[s.message(h) for s in specs])
            w = _Cdr()
            w.fmt('I', len(specs), align=4)
            for spec in specs:
                _write_marker(w, spec, h)
            own_array = w.bytes()
            # rclpy leaves padding bytes uninitialized: compare sizes and decoded contents
            _FAST_OK = (len(own_marker) == len(serialize_message(ref_marker))
                        and deserialize_message(own_marker, Marker) == ref_marker
                        and len(own_array) == len(serialize_message(ref_array))
                        and deserialize_message(own_array, MarkerArray) == ref_array
                        and len(own_mesh) == len(serialize_message(ref_mesh))
                        and deserialize_message(own_mesh, Mesh) == ref_mesh)
        except Exception:               # pragma: no cover - unexpected message layout
            _FAST_OK = False
    return _FAST_OK


def marker_cdr(vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray,
               header: Header, ns: str = 'monoport', marker_id: int = 0) -> bytes:
    """
    Serialize a TRIANGLE_LIST Marker (publish the bytes): 3 points, 3 RGBA colours a face.

    Scale is 1, 1, 1, the pose the identity and the marker colour opaque white (RViz multiplies
    it into the per-vertex colours, whose alpha is 1). Vertex colours: float [0, 1] or uint8.
    """
    pts, cols = _triangle_arrays(vertices, faces, vertex_colors)
    if fast_path_ok():
        return _marker_cdr_raw(header, ns, marker_id, pts, cols, Marker.ADD)
    return serialize_message(_marker_object(header, ns, marker_id, pts, cols,  # pragma: no cover
                                            Marker.ADD))


def mesh_to_marker(vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray,
                   header: Header, ns: str = 'monoport', marker_id: int = 0) -> Marker:
    """Build the Marker of :func:`marker_cdr` as a message (slower; small meshes, tests)."""
    pts, cols = _triangle_arrays(vertices, faces, vertex_colors)
    return _marker_object(header, ns, marker_id, pts, cols, Marker.ADD)


def delete_marker(header: Header, ns: str = 'monoport', marker_id: int = 0) -> Marker:
    """Marker that removes the mesh marker ``ns``/``marker_id`` from RViz."""
    m = _marker_template(header, ns, marker_id, Marker.DELETE)
    return m


def mesh_cdr(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Serialize a triangle mesh as a shape_msgs/Mesh (publish the bytes)."""
    faces = np.asarray(faces).reshape(-1, 3)
    vertices = np.asarray(vertices).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError('face index out of range')
    if fast_path_ok():
        return _mesh_cdr_raw(vertices, faces)
    return serialize_message(_mesh_object(vertices, faces))     # pragma: no cover


def mesh_to_msg(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """shape_msgs/Mesh message object of a triangle mesh."""
    return deserialize_message(mesh_cdr(vertices, faces), Mesh)
