"""
monoport_node over real DDS: the node and the image source run as separate processes.

Each test uses its own ROS_DOMAIN_ID, localhost-only discovery and this run's namespace (see
ros_isolation). The node runs a small random-weights model (segmentation off, pre-masked synthetic
images) so that it is fast on a CPU; what is checked is the ROS interface, not the quality of the
reconstruction.
"""
from __future__ import annotations

import itertools
from pathlib import Path
import signal
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
import cv2
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker
import yaml

from ros_isolation import domain as _domain, NODE, NS, ros_args
from ros_node_harness import (assert_inside_placed_cube, executable, frame_outputs, make_assets,
                              node_env, OUTPUTS, person_image, Probe, RENDER_SIZE, stamp_of,
                              start_node, stop_process, VIEWS)

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.preprocess import largest_component
from monoport_ros.ros import conversions as conv


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """Random-weights model, params file and an image folder (ros_node_harness.make_assets)."""
    return make_assets(tmp_path_factory.mktemp('ros_node'))


@pytest.fixture(scope='module')
def running(assets, tmp_path_factory):
    """Start the node (one process for this module's tests) and a probe in this process."""
    domain = _domain()
    proc = start_node(assets / 'params.yaml', domain)
    probe = Probe(domain, tmp_path_factory.mktemp('mcap') / 'outputs.mcap')
    try:
        probe.wait_for_node(proc)
        yield proc, probe, domain
    finally:
        probe.close()
        if proc.poll() is None:
            stop_process(proc)


def test_outputs_from_a_separate_image_publisher(running, assets):
    proc, probe, domain = running
    pub = subprocess.Popen(executable('image_publisher') + [
        str(assets / 'images'), '--rate', '2', '--count', '3', '--once',
        '--frame-id', 'test_optical', '--wait-for-subscribers', '30',
        '--min-subscribers', '2',       # the node and this probe: neither misses a frame
        *ros_args()],
        env=node_env(domain), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def complete():
        stamps = {stamp_of(m) for m in probe.got['image']}
        return any(len(frame_outputs(probe, s)) == len(OUTPUTS) - 1 for s in stamps) and \
            len(probe.got['mesh']) > 0
    probe.spin_until(complete, 60, 'one frame with every output')
    assert pub.wait(30) == 0, pub.communicate()[1]
    probe.spin_for(1.0)
    assert proc.poll() is None

    inputs = {stamp_of(m): m for m in probe.got['image']}
    assert len(inputs) == 3
    for topic in OUTPUTS:
        for m in probe.got[topic]:
            if topic != 'mesh':
                assert stamp_of(m) in inputs, f'{topic} stamp is not an input stamp'
                assert m.header.frame_id == 'test_optical', topic
    stamp = next(s for s in inputs if len(frame_outputs(probe, s)) == len(OUTPUTS) - 1)
    out = frame_outputs(probe, stamp)

    cloud = out['points']
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
        ('z', 8, PointField.FLOAT32, 1), ('rgb', 12, PointField.FLOAT32, 1),
        ('person', 16, PointField.UINT32, 1)]
    assert cloud.point_step == 20 and cloud.height == 1 and cloud.width > 100
    assert cloud.row_step == 20 * cloud.width and len(cloud.data) == cloud.row_step
    pts, cols = conv.cloud_to_arrays(cloud)
    assert np.isfinite(pts).all()
    src = inputs[stamp]
    figure = largest_component(conv.image_to_rgb(src).max(axis=2) > 8)
    # default camera (f = 320 px = the longer side): 1.7 m subject at about 2.8 m
    assert_inside_placed_cube(pts, figure, 320.0, 1.7)

    marker = out['mesh_marker']
    assert marker.type == Marker.TRIANGLE_LIST and marker.action == Marker.ADD
    assert len(marker.colors) == len(marker.points) > 0 and len(marker.points) % 3 == 0
    assert len(marker.points) // 3 <= 3000
    assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1.0, 1.0, 1.0)
    assert marker.color.a == 1.0 and all(c.a == 1.0 for c in marker.colors[:50])

    mesh = max(probe.got['mesh'], key=lambda m: len(m.triangles))
    nv = len(mesh.vertices)
    idx = np.array([t.vertex_indices for t in mesh.triangles])
    assert nv > 0 and idx.size and idx.min() >= 0 and idx.max() < nv
    assert any(len(m.points) == 3 * len(mesh.triangles) for m in probe.got['mesh_marker'])

    mask = out['mask']
    assert (mask.width, mask.height, mask.encoding) == (src.width, src.height, 'mono8')
    m = np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.width)
    assert set(np.unique(m)) <= {0, 255} and np.array_equal(m > 0, figure)
    for view in VIEWS:
        img = out[f'render/{view}']
        assert (img.width, img.height, img.encoding) == (RENDER_SIZE, RENDER_SIZE, 'rgb8')
        assert conv.image_to_rgb(img).max() > 0

    # the independent MCAP/ROS 2 decoder reads the recorded wire bytes to the same values
    probe.sink.close()
    decoded: dict[str, list] = {}
    schemas = {}
    with open(probe.sink.path, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, _, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(msg)
            schemas[channel.topic] = schema.name
    assert set(decoded) == {f'{NODE}/{t}' for t in OUTPUTS}
    assert schemas[f'{NODE}/mesh_marker'] == 'visualization_msgs/msg/Marker'
    assert schemas[f'{NODE}/points'] == 'sensor_msgs/msg/PointCloud2'
    dm = next(r for r in decoded[f'{NODE}/mesh_marker']
              if (r.header.stamp.sec, r.header.stamp.nanosec) == stamp)
    assert dm.type == Marker.TRIANGLE_LIST and len(dm.points) == len(marker.points)
    assert dm.header.frame_id == 'test_optical'
    np.testing.assert_array_equal([[p.x, p.y, p.z] for p in dm.points],
                                  [[p.x, p.y, p.z] for p in marker.points])
    np.testing.assert_array_equal([[c.r, c.g, c.b, c.a] for c in dm.colors],
                                  [[c.r, c.g, c.b, c.a] for c in marker.colors])
    dc = next(r for r in decoded[f'{NODE}/points']
              if (r.header.stamp.sec, r.header.stamp.nanosec) == stamp)
    assert [f.name for f in dc.fields] == ['x', 'y', 'z', 'rgb', 'person']
    assert dc.width == cloud.width
    assert bytes(dc.data) == bytes(cloud.data)
    dmesh = decoded[f'{NODE}/mesh'][0]
    assert max(max(t.vertex_indices) for t in dmesh.triangles) < len(dmesh.vertices)
    dimg = next(r for r in decoded[f'{NODE}/render/front']
                if (r.header.stamp.sec, r.header.stamp.nanosec) == stamp)
    assert (dimg.width, dimg.height, dimg.encoding) == (RENDER_SIZE, RENDER_SIZE, 'rgb8')
    assert bytes(dimg.data) == bytes(out['render/front'].data)


def _bad_frames() -> list[Image]:
    good = conv.rgb_to_image(person_image(), 'rgb8')
    frames = []
    for change in ({'encoding': 'yuv422'}, {'encoding': 'RGB8'}, {'step': 100},
                   {'data': good.data[:-7]}, {'width': 0, 'height': 0, 'step': 0, 'data': []},
                   {'is_bigendian': 7}, {'width': 100000, 'height': 100000, 'step': 300000}):
        m = conv.rgb_to_image(person_image(), 'rgb8')
        for k, v in change.items():
            setattr(m, k, v)
        frames.append(m)
    return frames


def test_bad_frames_leave_the_node_alive_and_answering(running):
    proc, probe, _ = running
    n_before = len(probe.got['diagnostics'])
    sec = itertools.count(1000)
    bad = _bad_frames()
    for m in bad:
        m.header = Header(stamp=Time(sec=next(sec)), frame_id='bad')
        probe.pub.publish(m)
        probe.spin_for(0.05)
    black = conv.rgb_to_image(np.zeros((240, 320, 3), np.uint8), 'bgr8',
                              Header(stamp=Time(sec=2000), frame_id='bad'))
    probe.pub.publish(black)
    probe.spin_until(lambda: all(any(stamp_of(m) == (2000, 0) for m in probe.got[t])
                                 for t in ('mesh_marker', 'mask')),
                     30, 'the DELETE marker and mask of the frame without a person')
    delete = next(m for m in probe.got['mesh_marker'] if stamp_of(m) == (2000, 0))
    assert delete.action == Marker.DELETE
    empty_mask = next(m for m in probe.got['mask'] if stamp_of(m) == (2000, 0))
    assert not np.frombuffer(empty_mask.data, np.uint8).any()

    good_stamps = set()

    def good_answer():
        hit = [m for m in probe.got['mesh_marker'] if stamp_of(m) in good_stamps]
        return hit and hit[-1].action == Marker.ADD and len(hit[-1].points) > 0
    end = time.monotonic() + 40
    while not good_answer():
        assert time.monotonic() < end, 'no result for a good frame after the bad ones'
        stamp = Time(sec=next(sec))
        good_stamps.add((stamp.sec, 0))
        probe.pub.publish(conv.rgb_to_image(person_image(), 'rgba8',
                                            Header(stamp=stamp, frame_id='good')))
        probe.spin_for(1.0)
    assert proc.poll() is None

    def counted():
        return len(probe.got['diagnostics']) > n_before and \
            int(probe.diag_values()['invalid']) >= len(bad)
    probe.spin_until(counted, 10, 'diagnostics counting the bad frames')
    values = probe.diag_values()
    assert int(values['invalid']) == len(bad), values
    assert int(values['no_person']) >= 1 and int(values['failed']) == 0
    assert values['geometry_device'] == 'cpu' and float(values['rate_hz']) >= 0.0  # fallback
    assert {'latency_ms', 'dropped', 'received', 'published'} <= set(values)


def test_parameters_change_at_run_time_over_dds(running):
    proc, probe, _ = running
    client = probe.node.create_client(SetParameters, f'{NODE}/set_parameters')
    assert client.wait_for_service(timeout_sec=20)

    def call(*params):
        future = client.call_async(SetParameters.Request(
            parameters=[p.to_parameter_msg() for p in params]))
        probe.spin_until(future.done, 20, 'set_parameters')
        return future.result().results

    bad = call(Parameter('resolution', value=100))
    assert not bad[0].successful and 'power of two' in bad[0].reason
    ro = call(Parameter('checkpoint', value='/elsewhere.safetensors'))
    assert not ro[0].successful and 'read-only' in ro[0].reason
    ok = call(Parameter('frame_id', value='person_frame'), Parameter('render_size', value=32))
    assert all(r.successful for r in ok), [r.reason for r in ok]

    stamp = Time(sec=5000)
    probe.pub.publish(conv.rgb_to_image(person_image(), 'rgb8',
                                        Header(stamp=stamp, frame_id='cam')))
    probe.spin_until(lambda: any(stamp_of(m) == (5000, 0) for m in probe.got['render/front']),
                     30, 'a frame after the parameter change')
    img = next(m for m in probe.got['render/front'] if stamp_of(m) == (5000, 0))
    assert img.header.frame_id == 'person_frame' and img.width == 32
    assert proc.poll() is None


def test_sigint_stops_the_node_cleanly(running):
    proc, _, _ = running
    rc, _, err = stop_process(proc, signal.SIGINT)
    assert rc == 0, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]


def test_sigterm_with_default_qos_and_camera_info(assets):
    """Default (best-effort) image QoS receives a reliable publisher; SIGTERM exits 0."""
    domain = _domain()
    params = yaml.safe_load((assets / 'params.yaml').read_text())
    params[NODE]['ros__parameters'].pop('image_reliability')
    params[NODE]['ros__parameters'].pop('geometry_device')
    (assets / 'default_qos.yaml').write_text(yaml.safe_dump(params))
    proc = start_node(assets / 'default_qos.yaml', domain)
    probe = Probe(domain)
    try:
        probe.wait_for_node(proc)
        info_pub = probe.node.create_publisher(CameraInfo, 'camera_info', 10)
        # else the first frame can arrive before any camera_info and use the default camera
        probe.spin_until(lambda: info_pub.get_subscription_count() > 0, 30.0, 'camera_info')
        for i in itertools.count():
            assert i < 40, 'no output with the default image QoS'
            header = Header(stamp=Time(sec=7000 + i), frame_id='cam')
            info_pub.publish(CameraInfo(header=header, width=320, height=240,
                                        k=[640.0, 0.0, 160.0, 0.0, 640.0, 120.0, 0.0, 0.0, 1.0]))
            probe.spin_for(0.1)
            probe.pub.publish(conv.rgb_to_image(person_image(), 'rgb8', header))
            probe.spin_for(0.9)
            ours = [m for m in probe.got['points'] if 7000 <= m.header.stamp.sec <= 7000 + i]
            if ours:
                break
        cloud = ours[-1]
        pts, _ = conv.cloud_to_arrays(cloud)
        # f = 640 px from camera_info: twice as far as with the default camera (f = 320)
        figure = largest_component(person_image().max(axis=2) > 8)
        others = [(m.header.stamp.sec, m.header.frame_id) for m in probe.got['points']
                  if m not in ours]       # none expected; shown if the placement is wrong
        assert_inside_placed_cube(pts, figure, 640.0, 1.7, note=(cloud.header, others))
    finally:
        probe.close()
        rc, _, err = stop_process(proc, signal.SIGTERM)
    assert rc == 0, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]


@pytest.mark.parametrize('content', [None, b'\x00' * 10, b'{"not": "safetensors"}' * 40])
def test_bad_model_file_one_error_line_and_nonzero_exit(tmp_path, content):
    model = tmp_path / 'broken_model.safetensors'
    if content is not None:
        model.write_bytes(content)
    (tmp_path / 'p.yaml').write_text(yaml.safe_dump(
        {NODE: {'ros__parameters': {'checkpoint': str(model)}}}))
    proc = start_node(tmp_path / 'p.yaml', _domain())
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail('the node kept running with a broken model file')
    assert proc.returncode == 2, err
    assert 'Traceback' not in err, err
    lines = [ln for ln in err.splitlines() if 'broken_model.safetensors' in ln]
    assert len(lines) == 1 and 'cannot start' in lines[0], err


@pytest.mark.parametrize('params, reason', [
    ({'resolution': 100}, 'resolution=100 must be a power of two'),
    ({'geometry_device': 'cuda:7', 'device_fallback': False}, "device 'cuda:7' is not available"),
    ({'geometry_device': 'tpu'}, 'tpu'),
    ({'qos_overrides': {f'{NS}/image': {'subscription': {'reliability': 'bogus'}}}},
     'cannot subscribe to images: Unexpected QoS override for policy `reliability`: `bogus`'),
    ({'qos_overrides': {f'{NODE}/points': {'publisher': {'reliability': 'forever'}}}},
     'cannot publish ~/points: Unexpected QoS override for policy `reliability`: `forever`'),
])
def test_bad_settings_refused_at_start_up(tmp_path, params, reason):
    (tmp_path / 'p.yaml').write_text(yaml.safe_dump(
        {NODE: {'ros__parameters': params}}))
    proc = start_node(tmp_path / 'p.yaml', _domain())
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f'the node kept running with {params}: {proc.communicate()[1][-3000:]}')
    assert proc.returncode == 2 and 'Traceback' not in err, err
    lines = [ln for ln in err.splitlines() if 'cannot start' in ln]
    assert len(lines) == 1 and reason in lines[0], err


def test_unreadable_params_file_refused(tmp_path):
    (tmp_path / 'p.yaml').write_text('monoport_node:\n  ros__parameters:\n    threshold:\n')
    proc = start_node(tmp_path / 'p.yaml', _domain())
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2 and 'Traceback' not in err, err
    lines = [ln for ln in err.splitlines() if 'cannot start' in ln]
    assert len(lines) == 1 and 'p.yaml' in lines[0], err


def test_headless_demo_script(assets, tmp_path):
    """scripts/demo.sh (the README's main command) on the bundled samples, with a small model."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / 'outputs'
    proc = subprocess.run(
        ['bash', str(repo / 'scripts' / 'demo.sh'), '--frames', '2', '--rate', '2',
         '--seconds', '150', '--out', str(out),
         '--param', f'checkpoint:={assets / "random.safetensors"}',
         '--param', 'resolution:=32', '--param', 'octree_depth:=2',
         '--param', f'render_size:={RENDER_SIZE}'],
        env=node_env(_domain()), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '2 of 2 frame(s) reconstructed' in proc.stdout, proc.stdout
    meshes = sorted(out.glob('frame_*_mesh.ply'))
    assert [m.name for m in meshes] == ['frame_000001_mesh.ply', 'frame_000002_mesh.ply']
    from monoport_ros.core.o3d import o3d
    mesh = o3d.io.read_triangle_mesh(str(meshes[0]))
    assert len(mesh.triangles) > 0 and mesh.has_vertex_colors()
    for view in MonoPortConfig().render_views:
        img = cv2.imread(str(out / f'frame_000001_{view}.png'))
        assert img is not None and img.shape == (RENDER_SIZE, RENDER_SIZE, 3)
    assert 'Traceback' not in (out / 'node.log').read_text()


def test_recorder_command_line_writes_decodable_mcap(tmp_path):
    domain = _domain()
    out = tmp_path / 'rec.mcap'
    probe = Probe(domain)
    pub = probe.node.create_publisher(Image, f'{NS}/rec_test', 10)
    recorder = str(Path(__file__).parent / 'ros_recorder.py')
    proc = subprocess.Popen([sys.executable, recorder, str(out),
                             f'{NS}/rec_test', '--duration', '4'], env=node_env(domain),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while pub.get_subscription_count() == 0:
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            probe.spin_for(0.1)
        for i in range(3):
            pub.publish(conv.rgb_to_image(person_image(4 * i), 'rgb8',
                                          Header(stamp=Time(sec=i + 1), frame_id='rec')))
            probe.spin_for(0.2)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        probe.close()
    assert proc.returncode == 0, stderr
    assert '3 messages written' in stdout, stdout + stderr
    with open(out, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        msgs = [(s.name, c.topic, m) for s, c, _, m in reader.iter_decoded_messages()]
    assert [(name, topic) for name, topic, _ in msgs] == \
        [('sensor_msgs/msg/Image', f'{NS}/rec_test')] * 3
    assert [m.header.stamp.sec for _, _, m in msgs] == [1, 2, 3]
    first = conv.rgb_to_image(person_image(0), 'rgb8')
    assert bytes(msgs[0][2].data) == bytes(first.data) and msgs[0][2].width == 320
