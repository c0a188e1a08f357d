"""
Launch files and the RViz configuration, checked without ros2 launch or RViz installed.

The launch files are parsed, then executed against stand-ins of the ``launch`` / ``launch_ros``
classes whose signatures follow the real API (a misspelt keyword fails), in an install tree
laid out from setup.py's ``data_files``. Where the real ``launch`` package is importable, the
descriptions are also loaded with it.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
from pathlib import Path
import runpy
import shutil
import sys
import types

import pytest
import setuptools
import yaml

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.ros import params as P
from monoport_ros.ros.image_publisher import build_parser

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
PKG = 'monoport_ros'
NODE_ARGUMENTS = {'image_topic', 'camera_info_topic', 'resolution', 'octree_depth',
                  'geometry_device', 'color_device', 'precision', 'mirror_average',
                  'shift_average', 'checkpoint',
                  'surface_smoothing', 'image_reliability', 'segmentation_tracking',
                  'params_file', 'namespace', 'use_rviz'}
NON_PARAMETER_ARGUMENTS = {'image_topic', 'camera_info_topic', 'params_file', 'namespace',
                           'use_rviz'}


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
                 additional_env=None):
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
        OpaqueFunction=OpaqueFunction, IncludeLaunchDescription=IncludeLaunchDescription)
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
    fields = {k: type(v) for k, v in dataclasses.asdict(MonoPortConfig()).items()}
    # every argument is either a node parameter of the same name and type or has another role
    for name in NODE_ARGUMENTS - NON_PARAMETER_ARGUMENTS:
        assert name in fields and mod.PARAMETER_ARGUMENTS[name] is fields[name], name
    assert set(mod.PARAMETER_ARGUMENTS) == NODE_ARGUMENTS - NON_PARAMETER_ARGUMENTS

    # the default params file is the installed config/monoport.yaml
    params_file = Path(args['params_file'].default_value)
    assert params_file == installed / 'share' / PKG / 'config' / 'monoport.yaml'

    (opaque,) = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    values = {name: a.default_value for name, a in args.items()}
    values.update(resolution='64', geometry_device='cuda:0', namespace='robot1',
                  segmentation_tracking='False', mirror_average='true', surface_smoothing='1.0')
    (node,) = opaque.function(_Context(values))
    assert (node.package, node.executable, node.name) == (PKG, 'monoport_node', 'monoport_node')
    assert node.executable in _console_scripts(setup_kwargs)
    assert node.namespace == 'robot1'
    (params,) = node.parameters
    expected = yaml.safe_load(params_file.read_text())['monoport_node']['ros__parameters']
    expected.update(resolution=64, geometry_device='cuda:0', segmentation_tracking=False,
                    mirror_average=True, surface_smoothing=1.0)
    assert params == expected
    P.config_from_values(params)                    # valid node parameters
    remaps = {src: dst.name for src, dst in node.remappings}
    assert remaps == {'image': 'image_topic', 'camera_info': 'camera_info_topic'}

    (rviz,) = [e for e in ld.entities if isinstance(e, Node)]
    assert rviz.condition.predicate.name == 'use_rviz'
    assert rviz.arguments[0] == '-d' and Path(rviz.arguments[1]).is_file()
    assert Path(rviz.arguments[1]).is_relative_to(installed)


def test_boolean_launch_arguments_are_parsed_not_cast(installed):
    mod = _load(LAUNCH / 'monoport.launch.py')
    assert mod.parameter_value(bool, 'false') is False      # bool('false') would be True
    assert mod.parameter_value(bool, 'True') is True
    with pytest.raises(ValueError, match='true or false'):
        mod.parameter_value(bool, 'yes')
    assert mod.parameter_value(int, '64') == 64


def test_params_file_with_namespaced_or_wildcard_keys(installed, tmp_path):
    mod = _load(LAUNCH / 'monoport.launch.py')
    f = tmp_path / 'p.yaml'
    f.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'threshold': 0.4}},
                                 '/robot1/monoport_node': {'ros__parameters': {'resolution': 64}},
                                 'other_node': {'ros__parameters': {'resolution': 16}}}))
    assert mod._file_parameters(str(f), 'robot1') == {'threshold': 0.4, 'resolution': 64}
    assert mod._file_parameters(str(f), '') == {'threshold': 0.4}


def test_demo_launch_wires_source_node_and_rviz(installed, setup_kwargs):
    mod = _load(LAUNCH / 'demo.launch.py')
    ld = mod.generate_launch_description()
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
    try:
        import launch
    except ImportError:
        return False
    return hasattr(launch, 'LaunchDescription')


@pytest.mark.skipif(not _real_launch_available(), reason='ROS 2 launch is not installed here')
@pytest.mark.parametrize('name', ['monoport.launch.py', 'demo.launch.py'])
def test_real_launch_loads_the_description(prefix, monkeypatch, name):
    from launch import LaunchContext
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    path = prefix / 'share' / PKG / 'launch' / name
    ld = PythonLaunchDescriptionSource(str(path)).get_launch_description(LaunchContext())
    names = {a.name for a in ld.get_launch_arguments()}
    if name == 'monoport.launch.py':
        assert names == NODE_ARGUMENTS
    else:
        assert {'rate', 'use_rviz'} <= names
