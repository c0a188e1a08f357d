"""
``monoport_node``: RGB images in, a coloured 3D human out.

Subscriptions
    ``image`` (sensor_msgs/Image; rgb8, bgr8, rgba8, bgra8, mono8; sensor-data QoS, reliability
    from ``image_reliability``), ``camera_info`` (sensor_msgs/CameraInfo, optional) and
    ``depth`` (sensor_msgs/Image 16UC1 mm or 32FC1 m registered to ``image``, optional: paired
    by stamp within ``depth_slop``, it places the person; see :mod:`core.placement`).

Publications (stamp = the input image's stamp; frame = ``frame_id`` or else the image's frame).
Up to ``max_people`` people a frame, largest first, each with a track id (kept while they stay in
view, never reused); see :mod:`ros.people_messages` for the layouts.
    ``~/points``        sensor_msgs/PointCloud2, x y z float32 + packed rgb + uint32 person (the
                        track id), every person's coloured surface;
    ``~/mesh_markers``  visualization_msgs/MarkerArray, a TRIANGLE_LIST per person (ns person,
                        id the track id), a DELETE for each who left; DELETEALL at start-up;
    ``~/people``        sensor_msgs/PointCloud2, one row per person: position, size, box, id;
    ``~/skeletons``     visualization_msgs/MarkerArray, landmarks and links per person;
    ``~/joints``        geometry_msgs/PoseArray, 33 BlazePose landmarks per person (NaN: unseen);
    ``~/mesh_marker``   visualization_msgs/Marker TRIANGLE_LIST of the first person (at most
                        ``mesh_max_triangles`` a person); a DELETE marker when no person is seen;
    ``~/mesh``          shape_msgs/Mesh of the same surface. The message has no header: its
                        vertices are in the frame (and of the stamp) of the ``~/mesh_marker`` and
                        ``~/points`` published with it, i.e. the camera's optical frame;
    ``~/render/<view>`` sensor_msgs/Image rgb8, a direct rendering of the first person per
                        ``render_views`` entry;
    ``~/mask``          sensor_msgs/Image mono8, every person's pixels (input size);
    ``/diagnostics``    diagnostic_msgs/DiagnosticArray once a second.

Geometry is placed metrically in the optical frame (x right, y down, z forward) with the
CameraInfo intrinsics (or a default camera, focal length = longer image side) and the subject at
``subject_distance`` metres, or at the distance where a person ``subject_height`` tall appears as
tall as the segmented one. Outputs are RELIABLE by default (``output_reliability``); each topic's
QoS can also be overridden with the standard ``qos_overrides.<topic>.publisher.*`` parameters.

The engine runs in the pipeline of :func:`core.pipeline.make_pipeline` (newest frame wins): worker
processes on a CPU, stage threads with a GPU; the executor never waits for it; work for outputs
without subscribers is skipped, and while no output is wanted at all (no subscriber, no
``output_dir``) the node does not subscribe to ``image``.
Parameters are those of :class:`MonoPortConfig`, validated at start-up (a bad value or model file
ends the node with one error line and exit code 2) and on every change (rejected with the reason).
"""
from __future__ import annotations

import collections
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from shape_msgs.msg import Mesh
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from . import conversions as conv
from .depth import DepthPairer, stamp_seconds
from .diagnostics import reconstruction_status
from .log_bridge import route_core_logs, unroute_core_logs
from . import params as P
from . import people_messages as people_msgs
from .people_messages import PlacedPerson, placed_joints
from .signals import interrupts_ignored
from ..core.camera import OpticalPlacement, PinholeCamera
from ..core.config import MonoPortConfig
from ..core.frame_people import FrameResult
from ..core.pipeline import Pipeline, make_pipeline
from ..core.placement import fit_to_depth
from ..core.preprocess import mask_box
from ..core.steadying import PlacementSmoother
from ..core.reconstruct import check_image, Reconstruction
from ..core.results import write_mesh, write_views
from ..core.tracking import PersonTracker

NODE_NAME = 'monoport_node'
DEFAULT_FRAME = 'camera'            # used when neither frame_id nor the image name a frame
PipelineFactory = Callable[[MonoPortConfig, Callable[..., None]], Pipeline]


@dataclass
class FrameMeta:
    """What travels with a frame through the pipeline."""

    header: Header                  # input stamp + output frame
    input_frame: str
    width: int
    height: int
    camera: PinholeCamera
    received: float                 # time.monotonic() at the image callback
    outputs: frozenset
    image_in_ms: float = 0.0        # converting and checking the Image message


def camera_from_info(msg: CameraInfo) -> PinholeCamera:
    """Make a PinholeCamera from a CameraInfo's size and K (ValueError when unusable)."""
    k = [float(v) for v in msg.k]
    cam = PinholeCamera(int(msg.width), int(msg.height), k[0], k[4], k[2], k[5])
    cam.validate()
    if not all(math.isfinite(v) for v in (cam.cx, cam.cy)):
        raise ValueError(f'invalid camera centre in {cam}')
    return cam


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == 'reliable' else ReliabilityPolicy.BEST_EFFORT


class MonoPortNode(Node):
    """The reconstruction node (see the module docstring for its interface)."""

    def __init__(self, pipeline_factory: PipelineFactory | None = None,
                 **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.pipeline = None
        # the core's warnings (device fallback, a failed warm-up, a replaced worker) in this log
        self._core_log = route_core_logs(self.get_logger())
        try:
            self._setup(pipeline_factory or make_pipeline)
        except BaseException:
            self.close()
            self.destroy_node()
            raise

    # ------------------------------------------------------------------------------ set-up
    def _setup(self, pipeline_factory: PipelineFactory) -> None:
        try:
            self.declare_parameters('', P.declarations())
        except ParameterException as exc:
            raise ValueError(f'invalid parameter: {exc}') from exc
        values = {}
        for name, default, _ in P.declarations():
            try:
                values[name] = self.get_parameter(name).value
            except ParameterUninitializedException:
                # an empty list in a params file or on the command line has no type
                if not isinstance(default, list):
                    raise ValueError(f'parameter {name} has no value') from None
                self.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, [])])
                values[name] = []
        self.config: MonoPortConfig = P.config_from_values(values)
        self._lock = threading.Lock()
        self._counters = collections.Counter()
        self._latencies: collections.deque = collections.deque(maxlen=200)
        self._camera: PinholeCamera | None = None
        self._last_accept = -math.inf
        self._last_timings: dict[str, float] = {}
        self._seq = 0
        self._window = (time.monotonic(), collections.Counter())

        self.pipeline = pipeline_factory(self.config, self._on_result)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self.pub_points = self._output(PointCloud2, '~/points')
        self.pub_markers = self._output(MarkerArray, '~/mesh_markers')
        self.pub_people = self._output(PointCloud2, '~/people')
        self.pub_skeletons = self._output(MarkerArray, '~/skeletons')
        self.pub_joints = self._output(PoseArray, '~/joints')
        self.pub_marker = self._output(Marker, '~/mesh_marker')
        self.pub_mesh = self._output(Mesh, '~/mesh')
        self.pub_mask = self._output(Image, '~/mask')
        self.pub_views: dict[str, Any] = {}
        for view in self.config.render_views:
            self._ensure_view_publisher(view)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        self.depth = DepthPairer()
        self.sub_depth: Any = None      # with the image subscription (depth_placement)
        # identities in input order (each worker process sees only some of the frames)
        self._tracker = PersonTracker()
        self._steady: dict[int, PlacementSmoother] = {}     # per track id
        self._shown: set[int] = set()   # track ids with markers out
        self._people_in_view = 0
        self._cleared: set[str] = set()     # marker topics whose DELETEALL went out
        self._depth_residual = float('nan')
        self._in_qos = QoSProfile(history=qos_profile_sensor_data.history,
                                  depth=qos_profile_sensor_data.depth,
                                  reliability=_reliability(self.config.image_reliability))
        self.image_topic = self.resolve_topic_name('image')
        # created once here so that bad qos_overrides for it fail at start-up, not later
        self.sub_image: Any = self._create_image_subscription()
        self._update_image_subscription()
        self.sub_info = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                                 self._in_qos)
        self.diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.devices = tuple(str(d) for d in self.pipeline.devices)
        # what precision 'auto' (the default) chose on each device
        self.arithmetic = tuple(self.pipeline.arithmetic)
        # 'worker processes' or 'stage threads' (see core.pipeline.make_pipeline)
        self.workers = self.pipeline.workers
        self.get_logger().info(
            f'ready: image topic {self.image_topic}, '
            f'resolution {self.config.resolution}, '
            f'octree levels {self.octree_levels}, devices geometry={self.devices[0]} '
            f'({self.arithmetic[0]}) color={self.devices[1]} ({self.arithmetic[1]}), '
            f'views {self.config.render_views}, {self.workers}, segmentation '
            + (f'{self.config.segmentation_model} '
               f'({"tracking" if self.config.segmentation_tracking else "per image"})'
               if self.config.segmentation else 'off (pre-masked input)'))

    def _output(self, msg_type: Any, topic: str) -> Any:
        """Create an output publisher: output_reliability, overridable per topic."""
        # a fresh profile each time: rclpy writes the qos_overrides into the object passed
        # depth 10: with depth 2, 300 KB-1.5 MB meshes were lost under load (bench/node.py)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=_reliability(self.config.output_reliability))
        try:
            return self.create_publisher(
                msg_type, topic, qos,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                event_callbacks=PublisherEventCallbacks(
                    matched=lambda _info: self._update_image_subscription()))
        except RuntimeError as exc:     # e.g. a bad qos_overrides.<topic>.publisher.* value
            raise ValueError(f'cannot publish {topic}: {exc}') from exc

    def _update_image_subscription(self) -> None:
        """
        Subscribe to images only while some output is wanted (a subscriber or output_dir).

        Like image_proc's lazy subscriptions: with nobody listening, no image is even received
        or deserialized, so an idle node costs next to no CPU. Called when an output gains or
        loses a subscriber (publisher matched events) and when parameters change.
        """
        try:
            wanted = bool(self._wanted_outputs())
            self._update_depth_subscription(wanted and self.config.depth_placement)
            if wanted and self.sub_image is None:
                self.sub_image = self._create_image_subscription()
                self.get_logger().info(f'outputs wanted: subscribed to {self.image_topic}')
            elif not wanted and self.sub_image is not None:
                sub, self.sub_image = self.sub_image, None
                self.destroy_subscription(sub)
                self.get_logger().info(
                    f'no output subscribers: unsubscribed from {self.image_topic}')
        except Exception as exc:    # noqa: BLE001 - a callback must never take the node down
            self._count('subscription_errors')
            self.get_logger().error(f'image subscription update failed: {exc}',
                                    throttle_duration_sec=5.0)

    def _update_depth_subscription(self, wanted: bool) -> None:
        if wanted and self.sub_depth is None:
            self.sub_depth = self.create_subscription(Image, 'depth', self.depth.add,
                                                      self._in_qos)
        elif not wanted and self.sub_depth is not None:
            sub, self.sub_depth = self.sub_depth, None
            self.destroy_subscription(sub)

    def _create_image_subscription(self) -> Any:
        try:
            return self.create_subscription(
                Image, 'image', self._on_image, self._in_qos,
                qos_overriding_options=QoSOverridingOptions.with_default_policies())
        except RuntimeError as exc:     # e.g. a bad qos_overrides.<topic>.subscription.* value
            raise ValueError(f'cannot subscribe to images: {exc}') from exc

    def _ensure_view_publisher(self, view: str) -> None:
        if view not in self.pub_views:
            self.pub_views[view] = self._output(Image, f'~/render/{view}')

    # --------------------------------------------------------------------------- parameters
    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        try:
            P.apply_parameters(self.config, parameters)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        names = {p.name for p in parameters}
        if not names & set(P.default_values()):
            return
        config = P.apply_parameters(self.config, parameters)
        try:
            self.pipeline.update_config(config)
        except (ValueError, TypeError) as exc:      # cannot happen after _check_parameters
            self.get_logger().error(f'engine refused the new settings: {exc}')
            return
        for view in config.render_views:
            try:
                self._ensure_view_publisher(view)
            except ValueError as exc:   # e.g. a bad qos_overrides for the new view's topic
                self._count('publisher_errors')
                self.get_logger().error(f'view {view!r} will not be published: {exc}')
        self.config = config
        self._update_image_subscription()         # output_dir or render_views may have changed
        self.get_logger().info('parameters changed: ' + ', '.join(
            f'{p.name}={p.value!r}' for p in parameters))

    # ----------------------------------------------------------------------------- inputs
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera = camera_from_info(msg)
        except (ValueError, IndexError) as exc:
            self._camera = None
            self._count('bad_camera_info')
            self.get_logger().warning(f'ignoring camera_info ({exc}); using a default camera',
                                      throttle_duration_sec=5.0)

    def _wanted_outputs(self) -> frozenset:
        cfg = self.config
        out = set()
        if self.pub_points.get_subscription_count():
            out.add('points')
        if cfg.output_dir or any(pub.get_subscription_count() for pub in (
                self.pub_marker, self.pub_mesh, self.pub_markers, self.pub_people)):
            out.add('mesh')
        if self.pub_skeletons.get_subscription_count() or self.pub_joints.get_subscription_count():
            out.add('skeletons')        # landmarks only: the engine need not mesh for them
        if cfg.render_views and (cfg.output_dir or any(
                self.pub_views[v].get_subscription_count() for v in cfg.render_views)):
            out.add('views')
        if self.pub_mask.get_subscription_count():
            out.add('mask')
        return frozenset(out)

    def _on_image(self, msg: Image) -> None:
        try:
            self._handle_image(msg)
        except Exception as exc:    # noqa: BLE001 - a callback must never take the node down
            self._count('invalid')
            self.get_logger().error(f'frame dropped: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=5.0)

    def _handle_image(self, msg: Image) -> None:
        cfg = self.config
        self._count('received')
        now = time.monotonic()
        if cfg.max_rate > 0 and now - self._last_accept < 1.0 / cfg.max_rate:
            self._count('rate_limited')
            return
        try:
            rgb = conv.image_to_rgb(msg, cfg.max_image_pixels)
            check_image(rgb, cfg.segmentation)  # the engine's own limits (e.g. smallest size)
        except ValueError as exc:
            self._count('invalid')
            self.get_logger().warning(f'frame dropped: {exc}', throttle_duration_sec=5.0)
            return
        outputs = self._wanted_outputs()
        if not outputs:
            self._count('skipped_no_subscribers')
            return
        h, w = rgb.shape[:2]
        cam = self._camera
        if cam is not None and (cam.width, cam.height) != (w, h):
            self.get_logger().warning(
                f'camera_info size {cam.width}x{cam.height} does not match the image {w}x{h}; '
                'using a default camera', throttle_duration_sec=5.0)
            self._count('camera_info_mismatch')
            cam = None
        header = Header(stamp=msg.header.stamp,
                        frame_id=cfg.frame_id or msg.header.frame_id or DEFAULT_FRAME)
        meta = FrameMeta(header, msg.header.frame_id, w, h,
                         cam or PinholeCamera.default_for(w, h), now, outputs,
                         1e3 * (time.monotonic() - now))
        self._last_accept = now
        self.pipeline.submit(rgb, meta, outputs)

    # ---------------------------------------------------------------------------- outputs
    def _on_result(self, meta: FrameMeta, rec: Any, error: BaseException | None) -> None:
        """Pipeline callback (worker thread): publish one frame's outputs."""
        if not self.context.ok():       # shutting down: nothing can be published any more
            return
        if error is not None:
            self._count('failed')
            self.get_logger().error(f'reconstruction failed: {type(error).__name__}: {error}',
                                    throttle_duration_sec=5.0)
            return
        try:
            self._publish(meta, rec)
        except Exception as exc:    # noqa: BLE001 - keep the worker alive
            self._count('failed')
            self.get_logger().error(f'publishing failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=5.0)

    def _publish(self, meta: FrameMeta, result: FrameResult) -> None:
        cfg = self.config
        header = meta.header
        t0 = time.perf_counter()
        if 'mask' in meta.outputs and result.mask is not None and result.mask.size:
            self.pub_mask.publish(conv.array_to_image(np.ascontiguousarray(result.mask, bool),
                                                      'mono8', header))
        people = result.people
        boxes = [mask_box(r.mask) for r in people]
        ids = self._tracker.update(np.array(boxes, np.float64))
        for ended in self._tracker.ended:
            self._steady.pop(ended, None)
        if not people:
            self._count('no_person')
            self.pub_marker.publish(conv.delete_marker(header))
        placed = self._place_people(meta, people, ids, boxes)
        self._publish_people(meta, people, placed)
        if people:
            for view, image in people[0].views.items():
                pub = self.pub_views.get(view)
                if pub is not None and pub.get_subscription_count():
                    pub.publish(conv.rgb_to_image(image, 'rgb8', header))
        # the node's own work, beside the engine's stages: Image -> array, results -> messages
        timings = {**(result.timings_ms or {}), 'image_in': meta.image_in_ms,
                   'publish': 1e3 * (time.perf_counter() - t0)}
        with self._lock:
            self._counters['published'] += 1
            self._counters['people'] += len(people)
            self._people_in_view = len(people)
            self._latencies.append(time.monotonic() - meta.received)
            self._last_timings = timings
            self._seq += 1
            seq = self._seq
        if cfg.output_dir and people:
            self._write_outputs(Path(cfg.output_dir), seq, people[0])

    def _place_people(self, meta: FrameMeta, people: list[Reconstruction], ids: list[int],
                      boxes: list[np.ndarray]) -> list[PlacedPerson]:
        """Each person placed in the camera frame, with the frame's depth image where paired."""
        depth = None
        if people and self.config.depth_placement and self.depth.received:
            depth = self._paired_depth(meta)
        placed = []
        for rec, track_id, box in zip(people, ids, boxes):
            place = self._placement(meta, rec, track_id, depth)
            person = PlacedPerson(track_id, box,
                                  joints=placed_joints(rec.model_pose(), place))
            if len(rec.vertices):
                person.vertices, person.faces = place.apply(rec.vertices), rec.faces
                person.vertex_colors = rec.vertex_colors
            if len(rec.points):
                person.points, person.point_colors = place.apply(rec.points), rec.point_colors
            placed.append(person)
        return placed

    def _placement(self, meta: FrameMeta, rec: Any, track_id: int,
                   depth: np.ndarray | None) -> OpticalPlacement:
        """Where a person is: fitted to the paired depth image, else by weak perspective."""
        cfg, cam = self.config, meta.camera
        place = self._depth_fit(meta, rec, depth) if depth is not None else None
        if place is None:
            if cfg.subject_distance > 0:
                distance = cfg.subject_distance
            else:
                distance = cam.subject_distance(rec.person_height_px, cfg.subject_height)
            place = cam.weak_perspective(rec.crop, distance)
        if not cfg.steady_placement:
            return place
        steady = self._steady.setdefault(track_id, PlacementSmoother())
        steady.tune(cfg.steady_min_cutoff, cfg.steady_beta)
        return steady(place, stamp_seconds(meta.header.stamp))

    def _paired_depth(self, meta: FrameMeta) -> np.ndarray | None:
        """Return the depth image (metres) paired with the frame, if any (counted when not)."""
        msg = self.depth.match(meta.header.stamp, self.config.depth_slop)
        if msg is None:
            self._count('depth_unpaired')
            return None
        try:
            depth = conv.depth_to_metres(msg, self.config.max_image_pixels)
            if depth.shape != (meta.height, meta.width):
                raise ValueError(f'depth image {depth.shape[1]}x{depth.shape[0]} is not '
                                 f'registered to the {meta.width}x{meta.height} colour image')
        except ValueError as exc:
            self._count('depth_invalid')
            self.get_logger().warning(f'depth image not used: {exc}', throttle_duration_sec=5.0)
            return None
        return depth

    def _depth_fit(self, meta: FrameMeta, rec: Any, depth: np.ndarray) -> OpticalPlacement | None:
        surface = rec.vertices if len(rec.vertices) else rec.points
        fit = fit_to_depth(depth, rec.mask, meta.camera, rec.crop, surface)
        if fit is None:
            self._count('depth_fit_failed')
            return None
        self._count('depth_placed')
        self._depth_residual = fit.residual_m
        return fit.placement

    def _publish_people(self, meta: FrameMeta, people: list[Reconstruction],
                        placed: list[PlacedPerson]) -> None:
        header, outputs = meta.header, meta.outputs
        now = {p.track_id for p in placed}
        gone = sorted(self._shown - now)
        self._shown = now
        if 'points' in outputs:
            self.pub_points.publish(people_msgs.points_message(placed, header))
        if self.pub_markers.get_subscription_count():
            self.pub_markers.publish(people_msgs.mesh_markers(placed, gone, header,
                                                              self._first('mesh_markers')))
        if self.pub_people.get_subscription_count():
            self.pub_people.publish(people_msgs.people_message(placed, header))
        if self.pub_skeletons.get_subscription_count():
            self.pub_skeletons.publish(people_msgs.skeleton_markers(placed, gone, header,
                                                                    self._first('skeletons')))
        if self.pub_joints.get_subscription_count():
            self.pub_joints.publish(people_msgs.joints_message(placed, header))
        if not placed or 'mesh' not in outputs:
            return
        first = placed[0]                    # the single-person topics: the first-ranked
        if self.pub_marker.get_subscription_count():
            if len(first.faces):
                self.pub_marker.publish(conv.marker_cdr(first.vertices, first.faces,
                                                        first.vertex_colors, header))
            else:
                self.pub_marker.publish(conv.delete_marker(header))
        if self.pub_mesh.get_subscription_count():
            verts = first.vertices if len(first.vertices) else np.zeros((0, 3))
            self.pub_mesh.publish(conv.mesh_cdr(verts, first.faces))

    def _first(self, topic: str) -> bool:
        """Whether this is the first MarkerArray on ``topic`` (it starts with a DELETEALL)."""
        first = topic not in self._cleared
        self._cleared.add(topic)
        return first

    def _write_outputs(self, out: Path, seq: int, rec: Any) -> None:
        """Mesh (.ply, model space: x right, y up, z towards the camera) and views (.png)."""
        try:
            out.mkdir(parents=True, exist_ok=True)
            stem = f'frame_{seq:06d}'
            if len(rec.faces):
                write_mesh(out / f'{stem}_mesh.ply', rec)
            write_views(out, rec, prefix=f'{stem}_')
        except Exception as exc:    # noqa: BLE001 - a full disk must not stop the node
            self._count('write_errors')
            self.get_logger().error(f'writing outputs to {out} failed: {exc}',
                                    throttle_duration_sec=10.0)

    # ------------------------------------------------------------------------ diagnostics
    def stats(self) -> dict[str, Any]:
        """Node and pipeline counters."""
        with self._lock:
            counters = dict(self._counters)
        pipe = dict(self.pipeline.stats) if self.pipeline is not None else {}
        counters.update({f'pipeline_{k}': v for k, v in pipe.items()})
        return counters

    def _publish_diagnostics(self) -> None:
        try:
            self.pub_diag.publish(self.diagnostics())
        except Exception as exc:    # noqa: BLE001
            self.get_logger().error(f'diagnostics failed: {exc}', throttle_duration_sec=30.0)

    def diagnostics(self) -> DiagnosticArray:
        """Build the DiagnosticArray: rates, latency, drop/failure counts and devices."""
        now = time.monotonic()
        stats = self.stats()
        t0, before = self._window
        self._window = (now, collections.Counter(stats))
        delta = {k: stats.get(k, 0) - before.get(k, 0) for k in stats}
        with self._lock:
            lat = list(self._latencies)
            self._latencies.clear()
            timings = dict(self._last_timings)
        engine = {
            'geometry_device': self.devices[0],
            'color_device': self.devices[1],
            'geometry_arithmetic': self.arithmetic[0],
            'color_arithmetic': self.arithmetic[1],
            'resolution': self.config.resolution,
            'octree_depth': self.config.octree_depth,
            'octree_levels': self.octree_levels,
            'workers': self.workers,
            'depth_fit_residual_m': self._depth_residual,
            'max_people': self.config.max_people,
            'people_in_view': self._people_in_view,
        }
        status = reconstruction_status(f'{self.get_fully_qualified_name()}: reconstruction',
                                       stats, delta, now - t0, lat, timings, engine,
                                       idle=self.sub_image is None)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    @property
    def octree_levels(self) -> int:
        """Localization levels in use (``octree_depth`` 0 = auto, resolved by the pipeline)."""
        return self.pipeline.octree_levels

    def close(self) -> None:
        """Stop the pipeline's workers (idempotent)."""
        pipe, self.pipeline = self.pipeline, None
        if pipe is not None:
            pipe.close()
        unroute_core_logs(self._core_log)


def main(args: list[str] | None = None) -> int:
    """Run ``monoport_node`` until SIGINT/SIGTERM; exit code 0, or 2 on a bad set-up."""
    try:
        rclpy.init(args=args)
    except Exception as exc:                    # noqa: BLE001 - e.g. an unreadable params file
        print(f'[FATAL] [{NODE_NAME}]: cannot start: {" ".join(str(exc).split())}',
              file=sys.stderr)
        return 2
    node = None
    try:
        node = MonoPortNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:                   # bad parameter, device or model file
        if not rclpy.ok():                      # stopped while starting: not an error
            return 0
        msg = ' '.join(str(exc).split())
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {msg}')
        return 2
    except Exception:                           # noqa: BLE001
        if rclpy.ok():
            raise
        # a signal arrived while the node was being built: its context is already gone
    finally:
        with interrupts_ignored():              # Ctrl-C under ros2 launch comes twice
            if node is not None:
                if rclpy.ok():
                    node.get_logger().info('shutting down')
                node.close()
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
