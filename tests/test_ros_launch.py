"""
Launch files and the RViz configuration: with stand-ins, and with the real ``ros2 launch``.

The launch files are parsed, then executed against stand-ins of the ``launch`` / ``launch_ros``
classes whose signatures follow the real API (a misspelt keyword fails), in an install tree
laid out from setup.py's ``data_files``. Where the real ROS 2 launch stack is installed (a ROS 2
install, or the wheels of ``../shared/ros2-launch`` that scripts/setup.sh installs), the package
is built with colcon and ``ros2 launch`` runs the node for real: every launch argument reaches
the node, a params file and the launch arguments merge as launch_ros merges them, outputs arrive
over DDS and Ctrl-C stops everything with exit code 0.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
from pathlib import Path
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest
import setuptools
import yaml

from ros_isolation import domain as _domain, NODE, NS

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.ros import params as P
from monoport_ros.ros.image_publisher import build_parser

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
PKG = 'monoport_ros'
# where CI and the developers keep the launch wheels: shared/ beside the clone
SHARED_LAUNCH = REPO.parent / 'shared' / 'ros2-launch'
FIELDS = [f.name for f in dataclasses.fields(MonoPortConfig)]
NON_PARAMETER_ARGUMENTS = {'image_topic', 'camera_info_topic', 'depth_topic', 'params_file',
                           'namespace', 'use_rviz'}
# every node parameter is a launch argument of the same name
NODE_ARGUMENTS = NON_PARAMETER_ARGUMENTS | set(FIELDS)


# ---------------------------------------------------------- stand-ins for launch / launch_ros

class _Entity:
    def __repr__(self) -> str:
        return f'{type(self).__name__}({vars(self)})'


class LaunchDescription(_Entity):
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument(_Entity):
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction(_Entity):
    def __init__(self, *, function, args=None, kwargs=None, **left):
        self.function, self.args, self.kwargs = function, args or [], kwargs or {}


class IncludeLaunchDescription(_Entity):
    def __init__(self, launch_description_source, *, launch_arguments=None, **kwargs):
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments or [])


class PythonLaunchDescriptionSource(_Entity):
    def __init__(self, launch_file_path):
        self.path = launch_file_path


class LogInfo(_Entity):
    def __init__(self, *, msg, **kwargs):
        self.msg = msg


class IfCondition(_Entity):
    def __init__(self, predicate_expression):
        self.predicate = predicate_expression


class LaunchConfiguration(_Entity):
    def __init__(self, variable_name, *, default=None):
        self.name = variable_name

    def perform(self, context):
        return context.launch_configurations[self.name]


class Node(_Entity):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None,
                 parameters=None, remappings=None, ros_arguments=None, arguments=None,
                 output='log', condition=None, respawn=False, emulate_tty=False,
                 additional_env=None, sigterm_timeout=None, sigkill_timeout=None):
        self.executable, self.package, self.name, self.namespace = executable, package, name, \
            namespace
        self.parameters, self.remappings, self.arguments = parameters, remappings, arguments
        self.condition = condition


def _stub_modules() -> dict[str, types.ModuleType]:
    mods = {}

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        mods[name] = m
        return m
    mod('launch', LaunchDescription=LaunchDescription)
    mod('launch.actions', DeclareLaunchArgument=DeclareLaunchArgument,
        OpaqueFunction=OpaqueFunction, IncludeLaunchDescription=IncludeLaunchDescription,
        LogInfo=LogInfo)
    mod('launch.conditions', IfCondition=IfCondition)
    mod('launch.substitutions', LaunchConfiguration=LaunchConfiguration)
    mod('launch.launch_description_sources',
        PythonLaunchDescriptionSource=PythonLaunchDescriptionSource)
    mod('launch_ros')
    mod('launch_ros.actions', Node=Node)
    return mods


class _Context:
    def __init__(self, values: dict[str, str]) -> None:
        self.launch_configurations = values


# ------------------------------------------------------------------------------- install tree

@pytest.fixture(scope='module')
def setup_kwargs():
    """Keyword arguments setup.py passes to setuptools.setup (run in the repository)."""
    captured = {}
    real, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        os.chdir(REPO)
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    finally:
        setuptools.setup, _ = real, os.chdir(cwd)
    return captured


@pytest.fixture(scope='module')
def prefix(setup_kwargs, tmp_path_factory):
    """Lay out an install prefix holding exactly what setup.py's data_files install."""
    root = tmp_path_factory.mktemp('install') / PKG
    for dest, files in setup_kwargs['data_files']:
        (root / dest).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(REPO / f, root / dest / Path(f).name)
    return root


@pytest.fixture
def installed(prefix, monkeypatch):
    """Launch stand-ins in sys.modules and the install prefix on AMENT_PREFIX_PATH."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    return prefix


def _load(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(path.name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _console_scripts(setup_kwargs) -> set[str]:
    return {s.split('=')[0].strip() for s in setup_kwargs['entry_points']['console_scripts']}


# ------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize('name', ['monoport.launch.py', 'demo.launch.py'])
def test_launch_files_parse_and_define_the_entry_point(name):
    tree = ast.parse((LAUNCH / name).read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {'launch', 'launch_ros.actions', 'ament_index_python.packages'} <= imported


def test_launch_files_are_installed(setup_kwargs, prefix):
    share = prefix / 'share' / PKG
    assert (share / 'launch' / 'monoport.launch.py').is_file()
    assert (share / 'launch' / 'demo.launch.py').is_file()
    assert (share / 'config' / 'monoport.yaml').is_file()
    assert (share / 'config' / 'monoport.rviz').is_file()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PKG).is_file()
    assert {'monoport_node', 'image_publisher'} <= _console_scripts(setup_kwargs)


def test_monoport_launch_arguments_map_to_parameters(installed, setup_kwargs):
    mod = _load(LAUNCH / 'monoport.launch.py')
    ld = mod.generate_launch_description()
    args = {a.name: a for a in ld.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(args) == NODE_ARGUMENTS
    assert all(a.description for a in args.values())
    # the parameters' arguments come from MonoPortConfig: its descriptions, empty = the file
    fields = {f.name: f for f in dataclasses.fields(MonoPortConfig)}
    for name in FIELDS:
        assert args[name].default_value == '', name
        assert args[name].description.startswith(fields[name].metadata['description']), name
    assert '(shipped: 128)' in args['resolution'].description
    assert '(shipped: front,side,back)' in args['render_views'].description

    # the default params file is the installed config/monoport.yaml
    params_file = Path(args['params_file'].default_value)
    assert params_file == installed / 'share' / PKG / 'config' / 'monoport.yaml'

    (opaque,) = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    values = {name: a.default_value for name, a in args.items()}
    (node,) = opaque.function(_Context(values))
    assert node.parameters == [str(params_file)]          # nothing given: the file alone
    assert [src for src, _ in node.remappings] == ['image', 'camera_info']  # the node's depth
    values.update(resolution='64', geometry_device='cuda:0', namespace='robot1',
                  segmentation_tracking='False', mirror_average='true', surface_smoothing='1',
                  render_views='front, yaw45', depth_topic='/cam/aligned_depth/image_raw')
    (node,) = opaque.function(_Context(values))
    assert (node.package, node.executable, node.name) == (PKG, 'monoport_node', 'monoport_node')
    assert node.executable in _console_scripts(setup_kwargs)
    assert node.namespace == 'robot1'
    # launch_ros merges the two: the file, then the given arguments typed as their fields
    file, overrides = node.parameters
    assert file == str(params_file)
    assert overrides == {'resolution': 64, 'geometry_device': 'cuda:0',
                         'segmentation_tracking': False, 'mirror_average': True,
                         'surface_smoothing': 1.0, 'render_views': ['front', 'yaw45']}
    assert type(overrides['surface_smoothing']) is float
    P.config_from_values(overrides)                    # valid node parameters
    remaps = {src: getattr(dst, 'name', dst) for src, dst in node.remappings}
    assert remaps == {'image': 'image_topic', 'camera_info': 'camera_info_topic',
                      'depth': '/cam/aligned_depth/image_raw'}

    (rviz,) = [e for e in ld.entities if isinstance(e, Node)]
    assert rviz.condition.predicate.name == 'use_rviz'
    assert rviz.arguments[0] == '-d' and Path(rviz.arguments[1]).is_file()
    assert Path(rviz.arguments[1]).is_relative_to(installed)


@pytest.mark.parametrize('name, text, reason', [
    ('mirror_average', 'yes', 'mirror_average: expected true or false'),   # bool('yes') is True
    ('resolution', '64.0', 'resolution: expected int'),
    ('threshold', 'high', 'threshold: expected float'),
    ('render_views', '[]', 'an empty list cannot be a launch argument'),
])
def test_bad_launch_arguments_fail_with_the_reason(installed, name, text, reason):
    mod = _load(LAUNCH / 'monoport.launch.py')
    ld = mod.generate_launch_description()
    values = {a.name: a.default_value for a in ld.entities
              if isinstance(a, DeclareLaunchArgument)}
    values[name] = text
    with pytest.raises(ValueError, match=re.escape(reason)):
        mod.parameter_overrides(_Context(values))


def test_demo_launch_wires_source_node_and_rviz(installed, setup_kwargs, tmp_path, monkeypatch):
    mod = _load(LAUNCH / 'demo.launch.py')
    # without tf2_ros (pip-installed ROS 2) the demo says so and runs without the transform
    ld = mod.generate_launch_description()
    assert not [e for e in ld.entities if isinstance(e, Node) and e.package == 'tf2_ros']
    (note,) = [e for e in ld.entities if isinstance(e, LogInfo)]
    assert 'tf2_ros is not installed' in note.msg
    tf2 = tmp_path / 'tf2'
    (tf2 / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (tf2 / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'tf2_ros').touch()
    (tf2 / 'share' / 'tf2_ros').mkdir()
    monkeypatch.setenv('AMENT_PREFIX_PATH', f'{installed}{os.pathsep}{tf2}')
    ld = mod.generate_launch_description()
    assert not [e for e in ld.entities if isinstance(e, LogInfo)]
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    (source,) = [n for n in nodes if n.package == PKG]
    assert source.executable == 'image_publisher' and source.executable in \
        _console_scripts(setup_kwargs)
    defaults = {a.name: a.default_value for a in ld.entities
                if isinstance(a, DeclareLaunchArgument)}
    argv = [defaults[a.name] if isinstance(a, LaunchConfiguration) else a
            for a in source.arguments]
    opts = build_parser().parse_args(argv)          # the publisher accepts these arguments
    assert opts.rate > 0 and opts.frame_id == mod.OPTICAL_FRAME
    assert dict(source.remappings) == {'image': mod.IMAGE_TOPIC,
                                       'camera_info': mod.CAMERA_INFO_TOPIC}

    (tf,) = [n for n in nodes if n.package == 'tf2_ros']
    tf_args = dict(zip(tf.arguments[::2], tf.arguments[1::2]))
    assert tf_args['--child-frame-id'] == mod.OPTICAL_FRAME
    rviz = yaml.safe_load((installed / 'share' / PKG / 'config' / 'monoport.rviz').read_text())
    assert tf_args['--frame-id'] == rviz['Visualization Manager']['Global Options']['Fixed Frame']

    (include,) = [e for e in ld.entities if isinstance(e, IncludeLaunchDescription)]
    included = Path(include.source.path)
    assert included.is_file() and included.is_relative_to(installed)
    passed = dict(include.launch_arguments)
    assert passed['image_topic'] == mod.IMAGE_TOPIC
    assert passed['camera_info_topic'] == mod.CAMERA_INFO_TOPIC
    assert passed['image_reliability'] == 'reliable'
    # the demo's images are a slideshow of different people: no tracking between them
    assert passed['segmentation_tracking'] == 'false'
    assert set(passed) <= NODE_ARGUMENTS


def test_rviz_config_shows_the_node_outputs():
    cfg = yaml.safe_load((REPO / 'config' / 'monoport.rviz').read_text())
    vm = cfg['Visualization Manager']
    assert vm['Global Options']['Fixed Frame']
    displays = {d['Class']: [] for d in vm['Displays']}
    for d in vm['Displays']:
        displays[d['Class']].append(d)
    node_topics = {f'/monoport_node/{t}' for t in ('points', 'mesh_marker', 'mesh', 'mask')} | \
        {f'/monoport_node/render/{v}' for v in MonoPortConfig().render_views}
    for cls in ('rviz_default_plugins/PointCloud2', 'rviz_default_plugins/Marker',
                'rviz_default_plugins/Image'):
        assert cls in displays, cls
        for d in displays[cls]:
            assert d['Topic']['Value'] in node_topics, d['Topic']['Value']
            assert d['Topic']['Reliability Policy'] == 'Reliable'
    (cloud,) = displays['rviz_default_plugins/PointCloud2']
    assert cloud['Color Transformer'] == 'RGB8'
    (marker,) = displays['rviz_default_plugins/Marker']
    assert marker['Topic']['Value'] == '/monoport_node/mesh_marker'
    assert marker['Namespaces'] == {'monoport': True}
    assert vm['Views']['Current']['Class'].startswith('rviz_default_plugins/')


def _real_launch_available() -> bool:
    """
    Whether the ROS 2 ``launch`` package is installed (not the repository's launch/ folder).

    Found, not imported: importing it changes logging for the whole process (new loggers become
    launch's, which do not propagate), and the other tests' log routing with it.
    """
    spec = importlib.util.find_spec('launch')
    return spec is not None and spec.origin is not None     # a namespace package has no origin


def _ros2() -> str:
    """Return the ``ros2`` command of the real launch stack; skip (or fail) where there is none."""
    exe = Path(sys.executable).parent / 'ros2'
    found = str(exe) if exe.exists() else shutil.which('ros2')
    if found and _real_launch_available():
        return found
    if SHARED_LAUNCH.is_dir():
        pytest.fail(f'{SHARED_LAUNCH} is here but ros2 launch is not installed in '
                    f'{sys.prefix}: run scripts/setup.sh')
    pytest.skip('no ROS 2 launch: no ros2 command with the launch package (a ROS 2 install), '
                f'and no {SHARED_LAUNCH} whose wheels scripts/setup.sh would install')


@pytest.mark.skipif(not _real_launch_available(), reason='ROS 2 launch is not installed here')
@pytest.mark.parametrize('name', ['monoport.launch.py', 'demo.launch.py'])
def test_real_launch_loads_the_description(prefix, tmp_path, name):
    """The real launch package loads each description (in a process of its own, see above)."""
    code = ('import sys\n'
            'from launch import LaunchContext\n'
            'from launch.launch_description_sources import PythonLaunchDescriptionSource\n'
            'ld = PythonLaunchDescriptionSource(sys.argv[1]).get_launch_description('
            'LaunchContext())\n'
            'print(" ".join(a.name for a in ld.get_launch_arguments()))\n')
    path = prefix / 'share' / PKG / 'launch' / name
    proc = subprocess.run([sys.executable, '-c', code, str(path)], cwd=tmp_path,
                          env={**os.environ, 'AMENT_PREFIX_PATH': str(prefix)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = set(proc.stdout.split())
    if name == 'monoport.launch.py':
        assert names == NODE_ARGUMENTS
    else:
        assert {'rate', 'use_rviz'} <= names


# ------------------------------------------------------------------ ros2 launch, for real

def test_real_launch_tests_run_where_the_launch_wheels_are():
    """CI has shared/ beside its clone: there the ros2 launch tests below must not skip."""
    if not SHARED_LAUNCH.is_dir():
        pytest.skip(f'no {SHARED_LAUNCH} here')
    assert _real_launch_available(), 'scripts/setup.sh did not install the launch wheels'
    assert (Path(sys.executable).parent / 'ros2').exists()


@pytest.fixture(scope='module')
def colcon_install(tmp_path_factory) -> Path:
    """Build the package with colcon (as a user would) and return its install/monoport_ros."""
    _ros2()
    ws = tmp_path_factory.mktemp('launch_ws')
    (ws / 'src').mkdir()
    (ws / 'src' / PKG).symlink_to(REPO, target_is_directory=True)
    colcon = Path(sys.executable).parent / 'colcon'
    cmd = [sys.executable, str(colcon)] if colcon.exists() else [shutil.which('colcon') or
                                                                 'colcon']
    env = {k: v for k, v in os.environ.items()
           if k not in ('AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH')}
    proc = subprocess.run(cmd + ['build', '--base-paths', str(ws / 'src'),
                                 '--build-base', str(ws / 'build'),
                                 '--install-base', str(ws / 'install')],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f'colcon build failed:\n{proc.stdout}\n{proc.stderr}'
    return ws / 'install' / PKG


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    """Write a random-weights model of the small architecture (fast on a CPU); its path."""
    import torch
    from monoport_ros.core.checkpoint import save_checkpoint
    from monoport_ros.core.config import NetworkConfig
    from monoport_ros.core.networks import MonoPortNet
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('launch_model') / 'random.safetensors'
    save_checkpoint(path, MonoPortNet(NetworkConfig.preset('small')))
    return path


class Launch:
    """``ros2 launch`` in a session of its own (so Ctrl-C can reach its process group only)."""

    def __init__(self, install: Path, tmp: Path, *args: str) -> None:
        self.domain = _domain()
        site = next(install.glob('lib/python3*/site-packages'))
        env = dict(os.environ)
        # colcon's install/setup.bash, by hand: the package's prefix before the venv's (the
        # pip-installed ROS packages' prefix) and before any ROS install's
        prefixes = [str(install), sys.prefix] + [
            p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
        env.update(AMENT_PREFIX_PATH=os.pathsep.join(prefixes),
                   PYTHONPATH=os.pathsep.join([str(site)] + [
                       p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]),
                   ROS_DOMAIN_ID=str(self.domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
                   ROS_LOG_DIR=str(tmp / 'ros_log'), PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
        self.env = env
        self.log = tmp / 'launch.log'
        self._out = open(self.log, 'w')
        self.proc = subprocess.Popen([_ros2(), 'launch', PKG, *args], env=env, cwd=tmp,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text()

    def pids(self) -> list[int]:
        """Return the pids of the processes ros2 launch says it started."""
        return [int(p) for p in re.findall(r'process started with pid \[(\d+)\]',
                                           self.output())]

    def assert_running(self) -> None:
        assert self.proc.poll() is None, f'ros2 launch exited:\n{self.output()[-4000:]}'

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """SIGINT to the launch's process group, as Ctrl-C in its terminal; its exit code."""
        started = self.pids()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f'ros2 launch did not stop on SIGINT:\n{self.output()[-4000:]}')
        self._out.close()
        alive = [pid for pid in started if _alive(pid)]
        assert not alive, f'still running after ros2 launch exited: {alive}'
        # nor anything they started (the node's worker processes): its process group empties
        end = time.monotonic() + 10.0
        while (left := _group(self.proc.pid)) and time.monotonic() < end:
            time.sleep(0.2)
        assert not left, f'left running after ros2 launch exited: {left}'
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()


def _group(pgid: int) -> list[str]:
    """Command lines of the live processes in process group ``pgid``."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != 'Z':
                cmd = (stat.parent / 'cmdline').read_bytes().replace(b'\0', b' ')
                found.append(f'{stat.parent.name}: {cmd.decode(errors="replace")[:200]}')
        except (OSError, IndexError, ValueError):
            continue                        # gone meanwhile
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Peer:
    """A node in this test process on the launch's domain: parameters, images and outputs."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node('launch_probe', namespace=NS, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.got: dict[str, list] = {}

    def subscribe(self, topic: str, msg_type, reliable: bool = True) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.got[topic] = []
        self.node.create_subscription(msg_type, topic, self.got[topic].append, qos)

    def spin_until(self, pred, timeout: float, what: str, launch: Launch) -> None:
        end = time.monotonic() + timeout
        while not pred():
            launch.assert_running()
            assert time.monotonic() < end, \
                f'timed out waiting for {what}:\n{launch.output()[-4000:]}'
            self.ex.spin_once(timeout_sec=0.1)

    def parameters(self, node: str, names: list[str], launch: Launch) -> dict:
        """Values of ``names`` as the node ``node`` reports them over its parameter service."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        client = self.node.create_client(GetParameters, f'{node}/get_parameters')
        self.spin_until(client.service_is_ready, 90, f'the parameter service of {node}', launch)
        future = client.call_async(GetParameters.Request(names=names))
        self.spin_until(future.done, 30, 'the parameters', launch)
        return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}

    def close(self) -> None:
        import rclpy
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def _values(config: MonoPortConfig) -> dict:
    return dataclasses.asdict(config)


def _argument(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list):
        return ','.join(value)
    return str(value)


def test_every_launch_argument_reaches_the_node(colcon_install, model, tmp_path):
    """Each parameter given as a launch argument (the params file says otherwise for each)."""
    given = MonoPortConfig(
        checkpoint=str(model), resolution=32, octree_depth=2, threshold=0.45,
        geometry_device='cpu:0', color_device='cpu:0', precision='float32',
        device_fallback=False, render_views=['front', 'yaw30'], render_size=48,
        mesh_max_triangles=2000, frame_id='launch_frame', max_rate=50.0, subject_height=1.6,
        subject_distance=2.5, depth_placement=False, depth_slop=0.1, steady_placement=False,
        steady_min_cutoff=1.5, steady_beta=5.0, steady_surface=False,
        largest_component=False, mirror_average=True, shift_average=True,
        fill_silhouette=False, pose_prior='carve', surface_smoothing=0.5, segmentation=False,
        segmentation_model='selfie', segmentation_tracking=False, max_people=2,
        max_image_pixels=1_000_000,
        image_reliability='reliable', output_reliability='best_effort',
        output_dir=str(tmp_path / 'out'), queue_size=2, frames_in_flight=1,
        worker_processes=False)
    given.validate()
    defaults = _values(MonoPortConfig())
    assert all(_values(given)[k] != defaults[k] for k in FIELDS), 'each differs from its default'
    # the params file sets every parameter to a third value: the launch arguments win
    other = MonoPortConfig(resolution=64, threshold=0.3, render_views=['back'], render_size=40,
                           frame_id='file_frame', queue_size=3, subject_height=1.9)
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': _values(other)}}))
    launch = Launch(colcon_install, tmp_path, 'monoport.launch.py', f'namespace:={NS}',
                    f'params_file:={params}',
                    *[f'{name}:={_argument(value)}' for name, value in _values(given).items()])
    peer = Peer(launch.domain)
    try:
        got = peer.parameters(NODE, FIELDS, launch)
        assert got == _values(given)
        assert launch.ctrl_c() == 0, launch.output()[-4000:]
    finally:
        peer.close()
        launch.kill()
    out = launch.output()
    assert 'process has finished cleanly' in out and 'process has died' not in out, out[-4000:]


def test_params_file_and_launch_arguments_merge_and_outputs_arrive(colcon_install, model,
                                                                   tmp_path):
    """launch_ros merges [params_file, overrides]; the node runs; Ctrl-C ends it all, rc 0."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header
    from ros_node_harness import person_image
    from monoport_ros.ros import conversions as conv

    file_values = {'checkpoint': str(model), 'segmentation': False, 'resolution': 64,
                   'octree_depth': 2, 'threshold': 0.45, 'render_views': ['front'],
                   'render_size': 32, 'image_reliability': 'best_effort'}
    params = tmp_path / 'params.yaml'
    # a wildcard section and the node's own (fully qualified names win over wildcards); a
    # section of another node is not this node's
    params.write_text(yaml.safe_dump({
        '/**': {'ros__parameters': file_values},
        NODE: {'ros__parameters': {'subject_height': 1.5}},
        f'{NS}/other_node': {'ros__parameters': {'max_rate': 3.0}}}))
    image_topic = f'{NS}/cam/image'
    launch = Launch(colcon_install, tmp_path, 'monoport.launch.py', f'namespace:={NS}',
                    f'params_file:={params}', f'image_topic:={image_topic}',
                    f'depth_topic:={NS}/cam/depth',
                    # overrides: of the wildcard section, of the node's section, and new ones
                    'resolution:=32', 'image_reliability:=reliable', 'subject_height:=1.6',
                    'render_views:=front,side', 'frame_id:=merged')
    peer = Peer(launch.domain)
    try:
        got = peer.parameters(NODE, FIELDS, launch)
        want = _values(MonoPortConfig(**file_values).replace(
            resolution=32, image_reliability='reliable', subject_height=1.6,
            render_views=['front', 'side'], frame_id='merged'))
        assert got == want

        # the node's outputs arrive over DDS, in its namespace
        peer.subscribe(f'{NODE}/points', PointCloud2)
        peer.subscribe(f'{NODE}/render/side', Image)
        pub = peer.node.create_publisher(
            Image, image_topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        rgb = person_image()
        sent = 0

        def arrived() -> bool:
            nonlocal sent
            if pub.get_subscription_count() and (sent == 0 or time.monotonic() - last[0] > 1.0):
                sent += 1
                last[0] = time.monotonic()
                pub.publish(conv.rgb_to_image(rgb, 'rgb8', Header(frame_id='cam')))
            return bool(peer.got[f'{NODE}/points']) and bool(peer.got[f'{NODE}/render/side'])
        last = [0.0]
        peer.spin_until(arrived, 120, 'the points and the side view', launch)
        cloud = peer.got[f'{NODE}/points'][0]
        assert cloud.header.frame_id == 'merged' and cloud.width > 0
        view = peer.got[f'{NODE}/render/side'][0]
        assert (view.width, view.height) == (32, 32)
        # depth_topic is remapped: the node listens there (with the image, while outputs are)
        peer.spin_until(lambda: peer.node.count_subscribers(f'{NS}/cam/depth') == 1, 10,
                        'the depth subscription', launch)
        assert launch.ctrl_c() == 0, launch.output()[-4000:]
    finally:
        peer.close()
        launch.kill()
    out = launch.output()
    assert 'process has finished cleanly' in out and 'process has died' not in out, out[-4000:]


def test_demo_launch_without_rviz(colcon_install, tmp_path):
    """``ros2 launch monoport_ros demo.launch.py use_rviz:=false``: samples in, outputs out."""
    from sensor_msgs.msg import Image
    launch = Launch(colcon_install, tmp_path, 'demo.launch.py', 'use_rviz:=false', 'rate:=2.0')
    peer = Peer(launch.domain)
    try:
        peer.subscribe('/monoport_node/mask', Image)
        peer.subscribe('/monoport_node/render/front', Image)
        peer.spin_until(lambda: peer.got['/monoport_node/mask'] and
                        peer.got['/monoport_node/render/front'], 150,
                        'the mask and the front view of a sample image', launch)
        mask = peer.got['/monoport_node/mask'][0]
        assert mask.header.frame_id == 'camera_optical_frame' and mask.encoding == 'mono8'
        assert max(mask.data) == 255                  # a person was segmented
        started = launch.pids()
        assert launch.ctrl_c() == 0, launch.output()[-4000:]
    finally:
        peer.close()
        launch.kill()
    out = launch.output()
    assert len(started) >= 2, out[-4000:]           # image_publisher and monoport_node
    assert out.count('process has finished cleanly') == len(started), out[-4000:]
    if not _indexed('tf2_ros', launch.env):        # pip-installed ROS 2: no tf2_ros
        assert 'tf2_ros is not installed: no camera_link transform' in out


def _indexed(package: str, env: dict) -> bool:
    """Whether the ament index of ``env`` (AMENT_PREFIX_PATH) has ``package``."""
    return any((Path(p) / 'share' / 'ament_index' / 'resource_index' / 'packages' /
                package).is_file() for p in env['AMENT_PREFIX_PATH'].split(os.pathsep) if p)
