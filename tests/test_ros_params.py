"""Node parameters (from MonoPortConfig) and the node's logic, in-process with a fake engine."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
import time

from builtin_interfaces.msg import Time
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import ParameterType
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker
import yaml

from fake_pipeline import FakePipeline
from ros_isolation import domain, NODE, NS, ros_args

from monoport_ros.core.camera import PersonCrop, PinholeCamera
from monoport_ros.core.config import MonoPortConfig, STARTUP_FIELDS
from monoport_ros.core.frame_people import FrameResult
from monoport_ros.core.reconstruct import Reconstruction
from monoport_ros.ros import conversions as conv
from monoport_ros.ros import params as P
from monoport_ros.ros.node import camera_from_info, MonoPortNode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx():
    context = Context()
    rclpy.init(context=context, domain_id=domain(), args=ros_args())   # nodes go into NS
    yield context
    rclpy.shutdown(context=context)


def _node(ctx, overrides=None) -> MonoPortNode:
    return MonoPortNode(pipeline_factory=FakePipeline, context=ctx,
                        parameter_overrides=overrides or [])


def _image(w=32, h=24, encoding='rgb8', frame='cam', sec=7) -> Image:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[4:20, 10:20] = 200
    return conv.rgb_to_image(rgb, encoding, Header(stamp=Time(sec=sec, nanosec=5), frame_id=frame))


# ------------------------------------------------------------------------- declarations

def test_one_parameter_per_config_field_with_descriptor():
    decl = {name: (default, d) for name, default, d in P.declarations()}
    fields = {f.name: f for f in dataclasses.fields(MonoPortConfig)}
    assert set(decl) == set(fields)
    defaults = dataclasses.asdict(MonoPortConfig())
    for name, (default, d) in decl.items():
        meta = fields[name].metadata
        assert default == defaults[name] and d.name == name
        assert d.description == meta['description'] and d.read_only == (not meta['dynamic'])
        lo, hi, _ = meta['range']
        if lo is not None:
            rng = d.integer_range or d.floating_point_range
            assert len(rng) == 1 and (rng[0].from_value, rng[0].to_value) == (lo, hi), name
        if meta['choices']:
            assert all(c in d.additional_constraints for c in meta['choices'])
    assert decl['resolution'][1].type == ParameterType.PARAMETER_INTEGER
    assert decl['threshold'][1].type == ParameterType.PARAMETER_DOUBLE
    assert decl['segmentation'][1].type == ParameterType.PARAMETER_BOOL
    assert decl['render_views'][1].type == ParameterType.PARAMETER_STRING_ARRAY
    assert decl['checkpoint'][1].read_only and not decl['threshold'][1].read_only


def test_config_from_values_validates():
    assert P.config_from_values({'subject_height': 2}).subject_height == 2.0   # int for double
    for values, reason in [({'resolution': 100}, 'power of two'),
                           ({'threshold': 1.5}, 'threshold'),
                           ({'resolution': 16, 'octree_depth': 5}, 'too deep'),
                           ({'render_views': ['front', 'top']}, 'unknown render view'),
                           ({'image_reliability': 'sometimes'}, 'image_reliability'),
                           ({'resolution': 'big'}, 'expected int'),
                           ({'nonsense': 1}, 'unknown parameters')]:
        with pytest.raises(ValueError, match=reason):
            P.config_from_values(values)


def test_params_yaml_lists_every_field_with_its_default():
    data = yaml.safe_load((REPO / 'config' / 'monoport.yaml').read_text())
    assert list(data) == ['/**']                   # any namespace the node is launched in
    params = data['/**']['ros__parameters']
    defaults = dataclasses.asdict(MonoPortConfig())
    assert list(params) == list(defaults)          # every field, in declaration order
    for name, value in params.items():
        assert type(value) is type(defaults[name]), name     # e.g. 0.0, not 0, for doubles
        assert value == defaults[name], name
    P.config_from_values(params)


def test_params_yaml_is_generated_from_the_dataclass(tmp_path, capsys):
    """config/monoport.yaml is params_yaml()'s text: editing the dataclass alone fails here."""
    shipped = REPO / 'config' / 'monoport.yaml'
    assert shipped.read_text() == P.params_yaml(), \
        'config/monoport.yaml has drifted: python -m monoport_ros.ros.params --write ' \
        'config/monoport.yaml'
    assert P.main(['--check', str(shipped)]) == 0
    stale = tmp_path / 'stale.yaml'
    stale.write_text(shipped.read_text().replace('resolution: 128', 'resolution: 64'))
    assert P.main(['--check', str(stale)]) == 1
    assert '--write' in capsys.readouterr().err
    assert P.main(['--write', str(stale)]) == 0 and stale.read_text() == shipped.read_text()
    text = P.params_yaml()
    # what the dataclass computes is computed, not copied: the automatic octree levels
    from monoport_ros.core.config import octree_depth_for
    unwrapped = text.replace('\n    # ', ' ')
    cpu, gpu = ([f'{octree_depth_for(r, d)} at {r}^3' for r in (128, 256, 512)]
                for d in ('cpu', 'cuda'))
    assert f'on a CPU {", ".join(cpu)}; on a GPU {", ".join(gpu)}' in unwrapped
    # every start-up field, and only those, is marked: the first line of its comment block
    lines = text.splitlines()
    for f in dataclasses.fields(MonoPortConfig):
        i = lines.index(next(ln for ln in lines if ln.startswith(f'    {f.name}: ')))
        while lines[i - 1].startswith('    #'):
            i -= 1
        assert lines[i].startswith('    # [start-up] ') == (f.name in STARTUP_FIELDS), f.name


def test_startup_fields_are_read_only_and_refused_by_the_engine():
    """One list: the read-only parameters are the settings the engine cannot change."""
    from monoport_ros.core.reconstruct import check_runtime_change
    decl = {name: d for name, _, d in P.declarations()}
    assert {n for n, d in decl.items() if d.read_only} == STARTUP_FIELDS
    # the model, devices, arithmetic, worker layout and QoS are fixed; the rest can change
    assert STARTUP_FIELDS == {
        'checkpoint', 'geometry_device', 'color_device', 'precision', 'device_fallback',
        'segmentation_model', 'segmentation_tracking', 'max_people', 'image_reliability',
        'output_reliability', 'queue_size', 'frames_in_flight', 'worker_processes'}
    base = MonoPortConfig()
    changed = {'checkpoint': 'm.safetensors', 'geometry_device': 'cuda:0',
               'color_device': 'cuda:0', 'precision': 'float32', 'device_fallback': False,
               'segmentation_model': 'selfie', 'segmentation_tracking': False, 'max_people': 2,
               'image_reliability': 'reliable', 'output_reliability': 'best_effort',
               'queue_size': 4, 'frames_in_flight': 2, 'worker_processes': False}
    assert set(changed) == STARTUP_FIELDS
    for name, value in changed.items():
        with pytest.raises(ValueError, match=f'{name} cannot change at run time'):
            check_runtime_change(base, dataclasses.replace(base, **{name: value}))
    check_runtime_change(base, base.replace(resolution=64, threshold=0.4, max_rate=5.0))


def test_offline_preset_is_what_the_offline_commands_use():
    from monoport_ros.cli import build_parser
    from monoport_ros.core.config import PRESETS
    from monoport_ros.core.reconstruct_cli import model_config_fields
    offline = MonoPortConfig.offline()
    assert offline == MonoPortConfig.preset('offline') == MonoPortConfig().replace(
        **PRESETS['offline'])
    assert MonoPortConfig.preset('node') == MonoPortConfig()
    # accuracy before speed, one unrelated image at a time, the whole mesh
    assert (offline.resolution, offline.precision, offline.surface_smoothing) == \
        (256, 'float32', 1.0)
    assert offline.mirror_average and offline.shift_average
    assert not offline.segmentation_tracking and not offline.steady_surface
    assert offline.mesh_max_triangles == 0
    assert MonoPortConfig.offline(resolution=128).resolution == 128
    with pytest.raises(ValueError, match='unknown preset'):
        MonoPortConfig.preset('fast')
    with pytest.raises(ValueError, match='resolution'):
        MonoPortConfig.offline(resolution=100)
    parser = build_parser()
    for cmd in (['evaluate', 'data'], ['reconstruct', 'image.png']):
        fields = model_config_fields(parser.parse_args(cmd))
        assert MonoPortConfig.offline(**fields) == offline, cmd


@pytest.mark.parametrize('name, text, value', [
    ('resolution', '64', 64), ('threshold', '1', 1.0), ('segmentation', 'False', False),
    ('mirror_average', 'TRUE', True), ('render_views', 'front, yaw45', ['front', 'yaw45']),
    ('render_views', '[front, side]', ['front', 'side']), ('render_views', '[]', []),
    ('frame_id', 'cam', 'cam'),
])
def test_field_from_text(name, text, value):
    from monoport_ros.core.config import field_from_text
    got = field_from_text(name, text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize('name, text, reason', [
    ('segmentation', 'yes', 'segmentation: expected true or false'),
    ('resolution', 'high', 'resolution: expected int'),
    ('threshold', '', 'threshold: expected float'),
    ('nonsense', '1', "unknown setting 'nonsense'"),
])
def test_field_from_text_rejects_with_the_reason(name, text, reason):
    from monoport_ros.core.config import field_from_text
    with pytest.raises(ValueError, match=re.escape(reason)):
        field_from_text(name, text)


# -------------------------------------------------------------------------- the node

def test_node_declares_and_rejects_invalid_changes_with_reason(ctx):
    node = _node(ctx, [Parameter('resolution', value=64), Parameter('octree_depth', value=3)])
    try:
        assert node.config.resolution == 64 and node.config.octree_depth == 3
        d = node.describe_parameter('threshold')
        assert d.floating_point_range[0].to_value == pytest.approx(0.99)

        def reason(*params):
            results = node.set_parameters(list(params))
            return [r.reason for r in results if not r.successful]

        assert reason(Parameter('resolution', value=100)) and \
            'power of two' in reason(Parameter('resolution', value=100))[0]
        assert reason(Parameter('threshold', value=1.5))           # rclpy range check
        assert reason(Parameter('resolution', value='high'))       # wrong type
        assert 'read-only' in reason(Parameter('geometry_device', value='cuda:0'))[0]
        assert 'unknown render view' in reason(Parameter('render_views', value=['top']))[0]
        assert node.config.resolution == 64 and node.pipeline.updates == []

        ok = node.set_parameters_atomically([Parameter('resolution', value=16),
                                             Parameter('octree_depth', value=2)])
        assert ok.successful, ok.reason
        assert node.config.resolution == 16 and node.pipeline.updates[-1].resolution == 16
        assert not node.set_parameters([Parameter('octree_depth', value=5)])[0].successful
        assert node.octree_levels == 2
        # octree_depth 0 (auto) follows the resolution at run time (the device here: cpu)
        ok = node.set_parameters_atomically([Parameter('resolution', value=256),
                                             Parameter('octree_depth', value=0)])
        assert ok.successful, ok.reason
        assert node.octree_levels == 4 and node.pipeline.updates[-1].octree_depth == 0

        assert node.set_parameters([Parameter('render_views', value=['front', 'yaw45'])])[0] \
            .successful
        assert node.pipeline.updates[-1].render_views == ['front', 'yaw45']
        topics = {name for name, _ in node.get_publisher_names_and_types_by_node(
            'monoport_node', NS)}
        assert f'{NODE}/render/yaw45' in topics
        assert {f'{NODE}/{t}' for t in ('points', 'mesh_marker', 'mesh', 'mask', 'render/front')} \
            | {'/diagnostics'} <= topics
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize('overrides, reason', [
    ([Parameter('resolution', value=100)], 'power of two'),
    ([Parameter('threshold', value=2.0)], 'threshold'),
    ([Parameter('resolution', value='high')], 'resolution'),
])
def test_bad_start_up_parameters_raise_value_error(ctx, overrides, reason):
    with pytest.raises(ValueError, match=reason):
        _node(ctx, overrides)


def test_qos_reliable_outputs_by_default_and_overridable(ctx):
    wanted = Parameter('output_dir', value='/tmp/unused')        # so that images are subscribed
    node = _node(ctx, [Parameter(f'qos_overrides.{NODE}/points.publisher.reliability',
                                 value='best_effort'), wanted])
    try:
        assert node.pub_points.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        for pub in (node.pub_marker, node.pub_mesh, node.pub_mask, node.pub_views['front']):
            assert pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert node.sub_image.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.close()
        node.destroy_node()
    node = _node(ctx, [Parameter('output_reliability', value='best_effort'),
                       Parameter('image_reliability', value='reliable'), wanted])
    try:
        assert node.pub_marker.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert node.sub_image.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    finally:
        node.close()
        node.destroy_node()


def test_images_subscribed_only_while_an_output_is_wanted(ctx):
    node = _node(ctx, [Parameter('image_reliability', value='reliable'),
                       Parameter(f'qos_overrides.{NS}/image.subscription.depth', value=3)])
    listener = rclpy.create_node('listener', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(listener)

    def spin_until(pred, what):
        end = time.monotonic() + 10.0
        while not pred():
            assert time.monotonic() < end, f'timed out waiting for {what}'
            ex.spin_once(timeout_sec=0.05)

    def image_subscribers():
        return listener.count_subscribers(f'{NS}/image')

    try:
        assert node.sub_image is None                 # nobody listens: no image subscription
        spin_until(lambda: image_subscribers() == 0, 'no image subscriber')
        sub = listener.create_subscription(PointCloud2, f'{NODE}/points',
                                           lambda _m: None, 10)
        spin_until(lambda: node.sub_image is not None, 'the image subscription')
        assert node.sub_image.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert node.sub_image.qos_profile.depth == 3  # re-created with its QoS overrides
        spin_until(lambda: image_subscribers() == 1, 'the image subscription over DDS')
        listener.destroy_subscription(sub)
        spin_until(lambda: node.sub_image is None, 'the unsubscription')
        spin_until(lambda: image_subscribers() == 0, 'no image subscriber')
        node.set_parameters([Parameter('output_dir', value='/tmp/unused')])
        assert node.sub_image is not None             # writing files is an output too
        assert node.diagnostics().status[0].message == 'waiting for images'
        node.set_parameters([Parameter('output_dir', value='')])
        assert node.sub_image is None
        assert node.diagnostics().status[0].message == 'idle: no output subscribers'
    finally:
        ex.shutdown()
        listener.destroy_node()
        node.close()
        node.destroy_node()


def test_bad_image_qos_override_fails_at_start_up_though_nothing_subscribes(ctx):
    with pytest.raises(ValueError, match='QoS override'):
        _node(ctx, [Parameter(f'qos_overrides.{NS}/image.subscription.reliability',
                              value='bogus')])


def test_bad_qos_override_for_a_view_added_at_run_time_is_logged_and_counted(ctx):
    node = _node(ctx, [Parameter(f'qos_overrides.{NODE}/render/yaw45.publisher.reliability',
                                 value='bogus')])
    try:
        result = node.set_parameters([Parameter('render_views', value=['front', 'yaw45'])])[0]
        assert result.successful, result.reason
        assert node.config.render_views == ['front', 'yaw45']
        assert 'yaw45' not in node.pub_views and 'front' in node.pub_views
        values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
        assert values['publisher_errors'] == '1'
    finally:
        node.close()
        node.destroy_node()


def test_untyped_empty_list_override_means_no_views(ctx):
    # `render_views: []` in a params file arrives without a type
    node = _node(ctx, [Parameter('render_views')])
    try:
        assert node.config.render_views == [] and node.get_parameter('render_views').value == []
    finally:
        node.close()
        node.destroy_node()
    with pytest.raises(ValueError, match='threshold has no value'):
        _node(ctx, [Parameter('threshold')])


def test_image_callback_converts_filters_and_never_raises(ctx):
    node = _node(ctx, [Parameter('output_dir', value='/tmp/unused')])   # 'mesh' + 'views' wanted
    try:
        pipe = node.pipeline
        node._on_image(_image(encoding='bgr8'))
        assert len(pipe.submitted) == 1
        rgb, meta, outputs = pipe.submitted[0]
        assert rgb.shape == (24, 32, 3) and rgb[10, 15].tolist() == [200, 200, 200]
        assert outputs == {'mesh', 'views'}
        assert meta.header.frame_id == 'cam' and meta.header.stamp.sec == 7
        assert meta.camera == PinholeCamera.default_for(32, 24)

        yuv = _image()
        yuv.encoding = 'yuv422'
        bad = [yuv, _image(w=4, h=4)]
        wrong_step = _image()
        wrong_step.step = 10
        short = _image()
        short.data = short.data[:-1]
        empty = Image(encoding='rgb8')
        for msg in bad + [wrong_step, short, empty]:
            node._on_image(msg)                       # must not raise
        assert len(pipe.submitted) == 1
        assert node.stats()['invalid'] == 5

        node.set_parameters([Parameter('frame_id', value='person_frame'),
                             Parameter('max_rate', value=10.0)])
        time.sleep(0.11)
        node._on_image(_image(sec=8))
        node._on_image(_image(sec=9))                 # within 0.1 s of the previous one
        assert [m.header.stamp.sec for _, m, _ in pipe.submitted] == [7, 8]
        assert pipe.submitted[-1][1].header.frame_id == 'person_frame'
        assert node.stats()['rate_limited'] == 1

        node.set_parameters([Parameter('output_dir', value=''), Parameter('max_rate', value=0.0)])
        node._on_image(_image(sec=10))                # nobody listens: no work at all
        assert len(pipe.submitted) == 2 and node.stats()['skipped_no_subscribers'] == 1
    finally:
        node.close()
        node.destroy_node()


def test_camera_info_validation(ctx):
    info = CameraInfo(width=32, height=24)
    info.k = [300.0, 0.0, 16.0, 0.0, 310.0, 12.0, 0.0, 0.0, 1.0]
    cam = camera_from_info(info)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (300.0, 310.0, 16.0, 12.0)
    for k in ([0.0] * 9, [math.nan, 0, 16, 0, 300, 12, 0, 0, 1]):
        bad = CameraInfo(width=32, height=24)
        bad.k = k
        with pytest.raises(ValueError):
            camera_from_info(bad)

    node = _node(ctx, [Parameter('output_dir', value='/tmp/unused')])
    try:
        node._on_camera_info(info)
        node._on_image(_image())
        assert node.pipeline.submitted[-1][1].camera == cam
        zeros = CameraInfo(width=32, height=24)
        node._on_camera_info(zeros)                   # ignored, warned, default camera used
        node._on_image(_image())
        assert node.pipeline.submitted[-1][1].camera == PinholeCamera.default_for(32, 24)
        node._on_camera_info(info)
        node._on_image(_image(w=40))                  # size mismatch: default camera
        assert node.pipeline.submitted[-1][1].camera == PinholeCamera.default_for(40, 24)
        stats = node.stats()
        assert stats['bad_camera_info'] == 1 and stats['camera_info_mismatch'] == 1
    finally:
        node.close()
        node.destroy_node()


def _fake_reconstruction() -> Reconstruction:
    v = np.array([[0, 0.5, 0], [0.2, 0.5, 0], [0, 0.7, 0.1], [0.3, -0.5, -0.1]], np.float32)
    f = np.array([[0, 1, 2], [1, 3, 2]], np.int32)
    c = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)
    mask = np.zeros((24, 32), bool)
    mask[4:20, 10:20] = True
    return Reconstruction(True, mask, PersonCrop(15.0, 12.0, 20.0), 16.0, v, f, c, v, c,
                          views={'front': np.full((16, 16, 3), 9, np.uint8)})


def test_results_are_published_placed_and_written(ctx, tmp_path):
    out = tmp_path / 'out'
    node = _node(ctx, [Parameter('output_dir', value=str(out)),
                       Parameter('subject_height', value=1.6)])
    probe = rclpy.create_node('probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(probe)
    got: dict[str, list] = {}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for topic, typ in (('points', PointCloud2), ('mesh_marker', Marker), ('mask', Image),
                       ('render/front', Image)):
        probe.create_subscription(typ, f'{NODE}/{topic}',
                                  lambda m, t=topic: got.setdefault(t, []).append(m), qos)
    node.diag_timer.cancel()          # diagnostics() below then covers the whole test
    try:
        end = time.monotonic() + 10
        while node.pub_marker.get_subscription_count() == 0 or \
                node.pub_views['front'].get_subscription_count() == 0:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        node._on_image(_image())
        _, meta, outputs = node.pipeline.submitted[-1]
        assert outputs == {'points', 'mesh', 'views', 'mask'}
        rec = _fake_reconstruction()
        node.pipeline.on_result(meta, FrameResult([rec], rec.mask), None)
        node.pipeline.on_result(meta, None, RuntimeError('out of memory'))   # counted, no raise
        node.pipeline.on_result(meta, FrameResult([], rec.mask), None)      # no person
        end = time.monotonic() + 10
        while len(got.get('mesh_marker', [])) < 2 or 'points' not in got or 'render/front' \
                not in got or len(got.get('mask', [])) < 2:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end, got.keys()
        marker, delete = got['mesh_marker']
        assert marker.action == Marker.ADD and delete.action == Marker.DELETE
        assert len(marker.points) == len(marker.colors) == 6
        # metric placement: default camera f=32, person 16 px tall, 1.6 m -> 3.2 m away
        cam = PinholeCamera.default_for(32, 24)
        want = cam.model_to_optical(rec.crop, rec.vertices, 3.2)
        got_pts = np.array([[p.x, p.y, p.z] for p in marker.points])
        np.testing.assert_allclose(got_pts, want[rec.faces.reshape(-1)], rtol=1e-6)
        pts, cols = conv.cloud_to_arrays(got['points'][0])
        np.testing.assert_allclose(pts, want, rtol=1e-6)
        assert cols.tolist()[:3] == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
        for msg in (marker, got['points'][0], got['render/front'][0], got['mask'][0]):
            assert msg.header.stamp.sec == 7 and msg.header.frame_id == 'cam'
        assert got['mask'][0].encoding == 'mono8' and got['mask'][0].width == 32
        assert (got['render/front'][0].width, got['render/front'][0].encoding) == (16, 'rgb8')

        written = sorted(p.name for p in out.iterdir())
        assert written == ['frame_000001_front.png', 'frame_000001_mesh.ply']
        from monoport_ros.core.o3d import o3d
        mesh = o3d.io.read_triangle_mesh(str(out / 'frame_000001_mesh.ply'))
        assert len(mesh.triangles) == 2 and mesh.has_vertex_colors()

        diag = node.diagnostics().status[0]
        values = {kv.key: kv.value for kv in diag.values}
        assert values['failed'] == '1' and values['published'] == '2'
        assert values['no_person'] == '1' and values['geometry_device'] == 'cpu'
        assert values['subscription_errors'] == '0'     # output_dir: subscribed at start-up
        assert diag.level == diag.WARN        # a failure, but frames still get through
        assert float(values['latency_ms']) >= 0.0
    finally:
        node.close()
        assert node.pipeline is None
        probe.destroy_node()
        node.destroy_node()


def test_the_cores_warnings_reach_the_ros_log_while_the_node_lives(ctx, capfd):
    """
    Route the core's log records to the node's ROS log (console and /rosout).

    A device fallback, a failed warm-up or a replaced worker is logged by the core (Python
    logging).
    """
    import logging
    core = logging.getLogger('monoport_ros.core.pipeline')
    node = _node(ctx)
    try:
        core.warning('warm-up frame failed (test)')
        core.info('a core notice (test)')
        core.debug('below the threshold (test)')
    finally:
        node.close()
        node.destroy_node()
    core.warning('after the node closed (test)')
    err = capfd.readouterr().err
    node_log = r'\] \[[^\]]*monoport_node\]: '        # [LEVEL] [time] [node name]: message
    assert re.search(r'\[WARN\] \[[^\]]*' + node_log + r'warm-up frame failed \(test\)', err), err
    assert re.search(r'\[INFO\] \[[^\]]*' + node_log + r'a core notice \(test\)', err), err
    assert 'below the threshold' not in err
    assert not re.search(node_log + 'after the node closed', err), err


def test_a_paired_depth_image_places_the_person_and_an_unpaired_frame_falls_back(ctx):
    """Depth on ~depth with the image's stamp: the cloud lies where the body is (issue 29)."""
    from depth_scene import crop_for, depth_of, ellipsoid_surface
    from monoport_ros.core.camera import OpticalPlacement

    node = _node(ctx, [Parameter('subject_height', value=1.7)])
    probe = rclpy.create_node('probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(probe)
    clouds = []
    probe.create_subscription(PointCloud2, f'{NODE}/points', clouds.append,
                              QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    depth_pub = probe.create_publisher(Image, node.resolve_topic_name('depth'), 10)
    cam = PinholeCamera.default_for(320, 240)
    truth = OpticalPlacement(np.array([0.2, 0.1, 4.0]), 0.7)     # a short person, 4 m away
    depth = depth_of(cam, truth).astype(np.float32)
    surface = ellipsoid_surface(4000).astype(np.float32)
    rec = Reconstruction(True, np.isfinite(depth), crop_for(cam, truth), 0.0, points=surface,
                         point_colors=np.ones_like(surface))
    rec.person_height_px = float(np.isfinite(depth).any(axis=1).sum())
    depth_msg = conv.array_to_image(np.zeros((240, 320), np.uint8), 'mono8',
                                    Header(stamp=Time(sec=7, nanosec=5), frame_id='cam'))
    depth_msg.encoding, depth_msg.step = '32FC1', 320 * 4
    depth_msg.data = depth.tobytes()
    try:
        end = time.monotonic() + 10
        while node.sub_depth is None or depth_pub.get_subscription_count() == 0:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        depth_pub.publish(depth_msg)
        while node.depth.received == 0:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        for sec in (7, 9):      # 9: no depth image within depth_slop of it
            node._on_image(_image(320, 240, sec=sec))
            node.pipeline.on_result(node.pipeline.submitted[-1][1], FrameResult([rec], rec.mask),
                                    None)
        while len(clouds) < 2:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        placed, _ = conv.cloud_to_arrays(clouds[0])
        err = np.linalg.norm(placed - truth.apply(surface), axis=1)
        assert np.median(err) < 0.03
        fallback, _ = conv.cloud_to_arrays(clouds[1])
        want = cam.model_to_optical(rec.crop, surface, cam.subject_distance(
            rec.person_height_px, 1.7))
        np.testing.assert_allclose(fallback, want, rtol=1e-5)
        values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
        assert values['depth_placed'] == '1' and values['depth_unpaired'] == '1'
        assert float(values['depth_fit_residual_m']) < 0.01
    finally:
        probe.destroy_node()
        node.close()
        node.destroy_node()
