"""Build the ROS 2 package with colcon into temporary workspaces and check the install tree."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = 'monoport_ros'
EXECUTABLES = ('monoport_node', 'image_publisher')
# Top-level entries of the repository that must not be copied into a temporary workspace.
_SKIP_TOP = {'.venv', '.git', 'build', 'install', 'log', 'outputs', 'data', '.pytest_cache',
             '.hypothesis'}


def _colcon() -> str:
    exe = Path(sys.executable).parent / 'colcon'
    if not exe.exists():
        found = shutil.which('colcon')
        if found is None:
            pytest.fail('colcon is not installed (expected next to the python running pytest)')
        return found
    return str(exe)


def _run_colcon(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop('COLCON_PREFIX_PATH', None)
    env.pop('AMENT_PREFIX_PATH', None)
    proc = subprocess.run([_colcon(), 'build', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f'colcon build failed:\n{proc.stdout}\n{proc.stderr}'
    assert 'Summary: 1 package finished' in proc.stdout, proc.stdout
    # colcon-ros silently adds the ament index marker / package.xml when setup.py forgets them
    # (a fallback it says it will remove); treat its warnings as errors.
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if 'WARNING:colcon' in ln]
    assert not warnings, '\n'.join(warnings)
    return proc


def _repo_files(pattern: str) -> set[str]:
    return {p.name for p in REPO.glob(pattern)}


def _check_install_tree(prefix: Path) -> None:
    """Assert that ``prefix`` (install/monoport_ros) holds everything a ROS 2 install needs."""
    share = prefix / 'share' / PKG
    assert (share / 'package.xml').read_bytes() == (REPO / 'package.xml').read_bytes()
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PKG
    assert marker.is_file(), f'ament index marker missing: {marker}'

    for sub, patterns in (('launch', ['launch/*.launch.py']),
                          ('config', ['config/*.yaml', 'config/*.rviz'])):
        d = share / sub
        assert d.is_dir(), f'{d} missing'
        want = set().union(*(_repo_files(p) for p in patterns))
        got = {p.name for p in d.iterdir()}
        assert want, f'the repository has no {patterns} to install'
        assert got == want, f'{d}: installed {sorted(got)}, repository has {sorted(want)}'

    for exe in EXECUTABLES:
        path = prefix / 'lib' / PKG / exe
        assert path.is_file(), f'executable missing: {path}'
        assert os.access(path, os.X_OK), f'not executable: {path}'
        first = path.read_text().splitlines()[0]
        assert first.startswith('#!') and 'python' in first, first

    site = list(prefix.glob('lib/python3*/site-packages'))
    assert len(site) == 1, site
    site = site[0]
    # Every python module of the source tree is installed.
    src_mods = {p.relative_to(REPO / 'src').as_posix() for p in (REPO / 'src' / PKG).rglob('*.py')
                if '__pycache__' not in p.parts}
    inst_mods = {p.relative_to(site).as_posix() for p in (site / PKG).rglob('*.py')}
    assert src_mods <= inst_mods, f'not installed: {sorted(src_mods - inst_mods)}'
    # Shipped data (model weights, sample images) is installed next to the code.
    for pattern in ('models/*.safetensors', 'samples/*.png', 'samples/*.json'):
        for f in (REPO / 'src' / PKG).glob(pattern):
            assert (site / PKG / f.relative_to(REPO / 'src' / PKG)).is_file(), f

    # The package imports from the install tree (not from src/ or the editable install), the
    # ament index finds its share directory, and the executables' entry points resolve.
    code = (
        'import importlib.metadata as md\n'
        'import importlib.util\n'
        'import monoport_ros\n'
        'from ament_index_python.packages import get_package_share_directory\n'
        'print(monoport_ros.__file__)\n'
        'print(get_package_share_directory("monoport_ros"))\n'
        'eps = {e.name: e for e in md.distribution("monoport_ros").entry_points\n'
        '       if e.group == "console_scripts"}\n'
        f'for name in {EXECUTABLES!r}:\n'
        '    mod = eps[name].value.split(":")[0]\n'
        '    assert importlib.util.find_spec(mod) is not None, mod\n'
        '    print(name, mod)\n'
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(site), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env['AMENT_PREFIX_PATH'] = str(prefix)
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                          cwd=prefix, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert Path(lines[0]).resolve().is_relative_to(site.resolve()), lines[0]
    assert Path(lines[1]).resolve() == share.resolve(), lines[1]


def test_package_xml_is_format3_ament_python():
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == PKG
    assert root.find('export').findtext('build_type') == 'ament_python'
    deps = {e.text for e in root.iter('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'visualization_msgs', 'shape_msgs', 'geometry_msgs',
                'std_msgs', 'cv_bridge', 'python3-numpy', 'python3-opencv'):
        assert dep in deps, dep
    tests = {e.text for e in root.iter('test_depend')}
    assert {'ament_flake8', 'ament_pep257', 'python3-pytest'} <= tests
    assert (REPO / 'resource' / PKG).is_file()


def test_colcon_build_install_tree(tmp_path):
    ws = tmp_path / 'ws'
    (ws / 'src').mkdir(parents=True)
    (ws / 'src' / PKG).symlink_to(REPO, target_is_directory=True)
    before = set(os.listdir(REPO))
    _run_colcon(['--base-paths', str(ws / 'src'), '--build-base', str(ws / 'build'),
                 '--install-base', str(ws / 'install')], cwd=ws)
    _check_install_tree(ws / 'install' / PKG)
    # Building must not leave anything in the source tree.
    assert set(os.listdir(REPO)) == before


def _ignore(root: str, names: list[str]) -> set[str]:
    skip = _SKIP_TOP if Path(root) == REPO else set()
    if Path(root).name == 'ros2_ws' or Path(root) == REPO:
        skip = skip | {'build', 'install', 'log'}
    return {n for n in names if n in skip or n == '__pycache__' or n.endswith('.egg-info')}


def test_ros2_ws_colcon_build(tmp_path):
    link = REPO / 'ros2_ws' / 'src' / PKG
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)), \
        'ros2_ws/src/monoport_ros must be a relative symlink to the repository root'
    assert link.resolve() == REPO
    copy = tmp_path / 'repo'
    shutil.copytree(REPO, copy, symlinks=True, ignore=_ignore)
    _run_colcon([], cwd=copy / 'ros2_ws')
    _check_install_tree(copy / 'ros2_ws' / 'install' / PKG)
