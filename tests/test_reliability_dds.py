"""
Reliability of monoport_node as a separate process over real DDS (issue 6).

A burst of bad frames followed by one good frame; model files and settings that must stop the node
at start-up with one clear line; a real out-of-memory failure under an address-space cap; SIGINT
and SIGTERM while a frame is being reconstructed. Helpers (unique ROS_DOMAIN_ID per test,
localhost discovery, the probe node, the random-weights model) come from ``test_ros_node``.
"""
from __future__ import annotations

import json
from pathlib import Path
import resource
import signal
import subprocess
import time

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from safetensors.torch import load_file, save_file
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
import torch
import yaml

from ros_isolation import domain as _domain, NODE, ros_args
from ros_node_harness import (assert_inside_placed_cube, executable, frame_outputs, make_assets,
                              node_env, OUTPUTS, person_image, Probe, stamp_of, stop_process)

from monoport_ros.core.checkpoint import FORMAT
from monoport_ros.core.config import NetworkConfig
from monoport_ros.core.preprocess import largest_component
from monoport_ros.core.reconstruct import resolve_precision
from monoport_ros.ros import conversions as conv

MAX_PIXELS = 200_000


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """Random-weights model, params file and an image folder (ros_node_harness.make_assets)."""
    return make_assets(tmp_path_factory.mktemp('ros_node'))


def _params(assets: Path, path: Path, **changes) -> Path:
    """Write a params file: the test_ros_node parameters with ``changes``."""
    data = yaml.safe_load((assets / 'params.yaml').read_text())
    data[NODE]['ros__parameters'].update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def _start(params: Path, domain: int, address_space_gib: float = 0.0) -> subprocess.Popen:
    def limit():
        if address_space_gib:
            size = int(address_space_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
    return subprocess.Popen(executable('monoport_node') + ros_args('--params-file', str(params)),
                            env=node_env(domain), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=limit)


def _bad_burst() -> list:
    """One of every kind of bad Image (see also test_reliability.BAD_IMAGES)."""
    good = conv.rgb_to_image(person_image(), 'rgb8')
    n = len(good.data)
    floats = np.resize(np.array([np.nan, np.inf, -np.inf, 0.5], np.float32), 240 * 320)
    changes = [
        {'encoding': 'RGB8'}, {'encoding': 'rgb'}, {'encoding': 'yuv422', 'step': 640},
        {'encoding': 'bayer_rggb8', 'step': 320}, {'encoding': '16UC1', 'is_bigendian': 1},
        {'encoding': '32FC1', 'step': 1280, 'data': floats.tobytes()},
        {'encoding': '32FC3', 'step': 3840, 'data': np.repeat(floats, 3).tobytes()},
        {'is_bigendian': 2}, {'step': 959}, {'step': 0}, {'data': good.data[:n - 1]},
        {'data': good.data[:n // 2]}, {'data': bytes(n + 960)}, {'data': b''},
        {'width': 0, 'step': 0, 'data': b''}, {'height': 0, 'data': b''},
        {'width': 100000, 'height': 100000, 'step': 300000},
        {'width': 2**32 - 1, 'height': 2**32 - 1, 'step': 2**32 - 1},
        {'width': 5, 'height': 5, 'step': 15, 'data': bytes(75)},
    ]
    frames = []
    for change in changes:
        m = conv.rgb_to_image(person_image(), 'rgb8')
        for k, v in change.items():
            setattr(m, k, v)
        frames.append(m)
    frames.append(conv.rgb_to_image(np.zeros((500, 500, 3), np.uint8), 'bgr8'))   # > max pixels
    return frames


def test_burst_of_bad_frames_then_one_good_frame(assets, tmp_path):
    """Every bad frame is a counted drop with throttled logs; the good frame's outputs arrive."""
    domain = _domain()
    params = _params(assets, tmp_path / 'p.yaml', geometry_device='cuda:1',
                     max_image_pixels=MAX_PIXELS, octree_depth=0)
    proc = _start(params, domain)
    probe = Probe(domain)
    err = ''
    try:
        probe.wait_for_node(proc)
        info = probe.node.create_publisher(CameraInfo, 'camera_info', 10)
        nan_k = [np.nan, 0.0, 160.0, 0.0, 320.0, 120.0, 0.0, 0.0, 1.0]
        for i in range(3):                  # NaN focal length: ignored, the default camera used
            info.publish(CameraInfo(header=Header(frame_id='cam'), width=320, height=240,
                                    k=nan_k))
            probe.spin_for(0.05)
        bad = _bad_burst()
        for i, msg in enumerate(bad):
            msg.header = Header(stamp=Time(sec=100 + i), frame_id='bad')
            probe.pub.publish(msg)
            probe.spin_for(0.03)
        stamp = (9000, 0)
        good = conv.rgb_to_image(person_image(), 'bgr8',
                                 Header(stamp=Time(sec=stamp[0]), frame_id='good_optical'))
        probe.pub.publish(good)

        def complete():
            return len(frame_outputs(probe, stamp)) == len(OUTPUTS) - 1 and probe.got['mesh']
        probe.spin_until(complete, 60, 'every output of the good frame')
        n_diag = len(probe.got['diagnostics'])
        probe.spin_until(lambda: len(probe.got['diagnostics']) > n_diag + 1, 10, 'diagnostics')
        values = probe.diag_values()
        assert proc.poll() is None
        assert int(values['received']) == len(bad) + 1, values
        assert int(values['invalid']) == len(bad), values
        assert values['published'] == '1' and values['failed'] == '0', values
        assert int(values['bad_camera_info']) == 3 and values['geometry_device'] == 'cpu'
        # precision 'auto' (the default): what it chose on this CPU is reported
        chosen = str(resolve_precision('auto', torch.device('cpu'))).replace('torch.', '')
        assert values['geometry_arithmetic'] == values['color_arithmetic'] == chosen, values
        # octree_depth 0 (auto) at resolution 32 on the CPU (the fallback device): dense
        assert values['octree_depth'] == '0' and values['octree_levels'] == '1', values

        out = frame_outputs(probe, stamp)
        assert all(m.header.frame_id == 'good_optical' for m in out.values())
        pts, cols = conv.cloud_to_arrays(out['points'])
        assert len(pts) > 100 and np.isfinite(pts).all()
        figure = largest_component(person_image().max(axis=2) > 8)
        assert_inside_placed_cube(pts, figure, 320.0, 1.7)     # default camera: f = 320 px
        marker = out['mesh_marker']
        assert len(marker.points) == len(marker.colors) > 0
        mesh = probe.got['mesh'][-1]
        idx = np.array([t.vertex_indices for t in mesh.triangles])
        assert idx.min() >= 0 and idx.max() < len(mesh.vertices)
    finally:
        probe.close()
        rc, _, err = stop_process(proc, signal.SIGTERM)
    assert rc == 0 and 'Traceback' not in err, err[-3000:]
    assert "device 'cuda:1' is not available" in err and 'falling back to cpu' in err, err
    assert 'devices geometry=cpu' in err, err
    dropped = [ln for ln in err.splitlines() if 'frame dropped' in ln]
    assert 1 <= len(dropped) <= 2, dropped                  # throttled: not one per bad frame
    ignored = [ln for ln in err.splitlines() if 'ignoring camera_info' in ln]
    assert len(ignored) == 1 and 'using a default camera' in ignored[0], err


def _write_bad_models(d: Path, model: Path) -> dict[str, tuple[Path, str]]:
    """Broken model files: name -> (file, what the error line must say)."""
    state = load_file(str(model))
    meta = {'format': FORMAT, 'network': json.dumps(NetworkConfig.preset('small').to_dict()),
            'info': '{}'}
    out = {}
    data = model.read_bytes()
    (d / 'truncated.safetensors').write_bytes(data[:len(data) // 2])
    out['truncated'] = (d / 'truncated.safetensors', 'not a readable safetensors file')

    wider = NetworkConfig.preset('small').to_dict()
    wider['feature_channels'] *= 2
    save_file(state, str(d / 'architecture.safetensors'),
              metadata={**meta, 'network': json.dumps(wider)})
    out['architecture'] = (d / 'architecture.safetensors',
                           'weights do not fit the architecture')

    save_file({k: (v * 100).to(torch.int32) if v.is_floating_point() else v
               for k, v in state.items()}, str(d / 'dtype.safetensors'), metadata=meta)
    out['dtype'] = (d / 'dtype.safetensors', 'dtype mismatches')

    key = next(k for k, v in state.items() if v.is_floating_point())
    save_file({**state, key: torch.full_like(state[key], float('nan'))},
              str(d / 'nan.safetensors'), metadata=meta)
    out['nan'] = (d / 'nan.safetensors', 'contains NaN or Inf')

    class Payload:
        def __reduce__(self):
            return (open, (str(d / 'PWNED'), 'w'))
    torch.save({'image_filter.conv1.weight': torch.zeros(1), 'x': Payload()}, d / 'evil.pth')
    out['pickle'] = (d / 'evil.pth', 'refused, loading it would run code')
    torch.save({'x': Payload()}, d / 'evil.safetensors')
    out['pickle named safetensors'] = (d / 'evil.safetensors', 'not a readable safetensors file')
    return out


def test_bad_model_files_and_settings_stop_the_node_at_start_up(assets, tmp_path):
    """Exit code 2, no traceback and one line naming the file (or setting) and the problem."""
    cases = {name: ({'checkpoint': str(path)}, [str(path), problem])
             for name, (path, problem) in _write_bad_models(tmp_path, assets /
                                                            'random.safetensors').items()}
    cases.update({
        'wrong type': ({'resolution': 'high'}, ["'resolution'", "expecting type 'INTEGER'"]),
        'out of range': ({'render_size': 5}, ['render_size out of range']),
        'not a power of two': ({'resolution': 96}, ['resolution=96 must be a power of two']),
        'bad view': ({'render_views': ['front', 'under']}, ["unknown render view 'under'"]),
        'no fallback': ({'geometry_device': 'cuda:1', 'device_fallback': False},
                        ["device 'cuda:1' is not available"]),
    })
    procs = {}
    for name, (changes, _) in cases.items():       # all at once: each start imports torch
        procs[name] = _start(_params(assets, tmp_path / f'{name}.yaml', **changes), _domain())
    failures = []
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append(f'{name}: still running')
            continue
        lines = [ln for ln in err.splitlines() if 'cannot start' in ln]
        if proc.returncode != 2 or 'Traceback' in err or len(lines) != 1 or \
                not all(s in lines[0] for s in cases[name][1]):
            failures.append(f'{name}: rc {proc.returncode}, stderr: {err[-1500:]}')
    assert not failures, '\n'.join(failures)
    assert not (tmp_path / 'PWNED').exists()        # the pickle's code never ran


def _set(probe: Probe, *params: Parameter) -> list:
    client = probe.node.create_client(SetParameters, f'{NODE}/set_parameters')
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(SetParameters.Request(
        parameters=[p.to_parameter_msg() for p in params]))
    probe.spin_until(future.done, 30, 'set_parameters')
    return future.result().results


def test_out_of_memory_drops_the_frame_and_the_node_keeps_going(assets, tmp_path):
    """A dense 512^3 grid under a 3.5 GiB address-space cap fails; smaller settings recover."""
    domain = _domain()
    params = _params(assets, tmp_path / 'p.yaml', resolution=512, octree_depth=1)
    proc = _start(params, domain, address_space_gib=3.5)
    probe = Probe(domain)
    err = ''
    try:
        probe.wait_for_node(proc)
        # a frame filled by the "person": the grid's whole x-y extent is inside the visual hull
        everywhere = np.full((240, 320, 3), 200, np.uint8)
        for i in range(3):
            probe.pub.publish(conv.rgb_to_image(everywhere, 'rgb8',
                                                Header(stamp=Time(sec=10 + i), frame_id='c')))
            probe.spin_until(lambda: probe.got['diagnostics'] and
                             int(probe.diag_values()['failed']) == i + 1, 90, f'failure {i + 1}')
        assert proc.poll() is None
        assert any(m.status[0].level == m.status[0].ERROR and
                   m.status[0].message == 'reconstruction failing'
                   for m in probe.got['diagnostics'])
        assert not probe.got['mesh_marker']

        results = _set(probe, Parameter('resolution', value=32),
                       Parameter('octree_depth', value=2))
        assert all(r.successful for r in results), [r.reason for r in results]
        probe.pub.publish(conv.rgb_to_image(person_image(), 'rgb8',
                                            Header(stamp=Time(sec=50), frame_id='c')))
        probe.spin_until(lambda: any(stamp_of(m) == (50, 0) for m in probe.got['points']), 60,
                         'the frame after the failures')
        values = probe.diag_values()
        assert values['failed'] == '3' and proc.poll() is None, values
    finally:
        probe.close()
        rc, _, err = stop_process(proc, signal.SIGINT)
    assert rc == 0 and 'Traceback' not in err, err[-3000:]
    failed = [ln for ln in err.splitlines() if 'monoport_node]: reconstruction failed' in ln]
    assert failed and 'allocate' in failed[0], err[-3000:]
    assert len(failed) < 3, failed                          # throttled


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_while_reconstructing_exits_cleanly(assets, tmp_path, sig):
    """A frame is in the engine (dense 256^3 grid) when the signal comes: exit 0, no traceback."""
    domain = _domain()
    proc = _start(_params(assets, tmp_path / 'p.yaml', resolution=256, octree_depth=1), domain)
    probe = Probe(domain)
    try:
        probe.wait_for_node(proc)
        for i in range(3):                      # several seconds of work in the pipeline
            probe.pub.publish(conv.rgb_to_image(person_image(4 * i), 'rgb8',
                                                Header(stamp=Time(sec=1 + i), frame_id='c')))
            probe.spin_for(0.1)
        probe.spin_until(lambda: probe.got['diagnostics'] and
                         probe.diag_values()['received'] == '3', 30, 'the frames to arrive')
        values = probe.diag_values()
        assert int(values['published']) + int(values['dropped']) < 3, values   # still busy
    finally:
        probe.close()
    start = time.monotonic()
    rc, _, err = stop_process(proc, sig, timeout=60)
    assert rc == 0 and 'Traceback' not in err, err[-3000:]
    assert time.monotonic() - start < 30
