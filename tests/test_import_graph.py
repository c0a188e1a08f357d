"""
The package's import graph: no cycles, no private names across modules, the core imports no ROS.

Imports are read from the sources (``ast``), wherever they stand in a module: an import inside a
function closes a circle as surely as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / 'src'
PACKAGE = 'monoport_ros'
ROS_MODULES = ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
               'visualization_msgs', 'shape_msgs', 'diagnostic_msgs', 'builtin_interfaces')


def module_name(path: Path) -> str:
    """Dotted name of a source file (``pkg/__init__.py`` is ``pkg``)."""
    parts = list(path.relative_to(SRC).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute name of a ``from ... import`` target."""
    if not node.level:
        return node.module or ''
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - node.level + 1]
    return '.'.join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str]) -> list[tuple[str, str | None]]:
    """List ``(imported module, imported name or None)`` for each import in ``path``."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == '__init__.py', node)
            for alias in node.names:
                sub = f'{target}.{alias.name}'
                # 'from pkg import module' imports the module; 'from module import name' a name
                found.append((sub, None) if sub in modules else (target, alias.name))
    return found


def package_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Edges between the package's modules, and the private names imported across modules."""
    files = {module_name(p): p for p in (SRC / PACKAGE).rglob('*.py')}
    graph: dict[str, set[str]] = {m: set() for m in files}
    private = []
    for module, path in files.items():
        for target, name in imports_of(path, set(files)):
            if target not in files or target == module:
                continue
            if not target.startswith(f'{module}.'):     # a package's own __init__ aside
                graph[module].add(target)
            if name and name.startswith('_') and not name.startswith('__'):
                private.append((module, target, name))
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None


def test_imports_inside_functions_and_relative_imports_count(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE / 'core'
    pkg.mkdir(parents=True)
    (pkg.parent / '__init__.py').write_text('')
    (pkg / '__init__.py').write_text('')
    (pkg / 'a.py').write_text('def f():\n    from .b import _helper\n')
    (pkg / 'b.py').write_text('from . import a\nfrom ..core import a as also_a\n')
    monkeypatch.setattr(__import__(__name__), 'SRC', tmp_path)
    graph, private = package_graph()
    assert find_cycle(graph) == [f'{PACKAGE}.core.a', f'{PACKAGE}.core.b', f'{PACKAGE}.core.a']
    assert private == [(f'{PACKAGE}.core.a', f'{PACKAGE}.core.b', '_helper')]


def test_the_package_has_no_import_cycle():
    graph, _ = package_graph()
    assert len(graph) > 30          # the walk saw the package
    assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_no_module_imports_another_modules_private_name():
    _, private = package_graph()
    assert private == [], '\n'.join(f'{m} imports {n} from {t}' for m, t, n in private)


@pytest.mark.parametrize('wing', ['core', 'offline'])
def test_the_core_and_the_offline_tools_import_no_ros_and_not_the_ros_layer(wing):
    files = {module_name(p): p for p in (SRC / PACKAGE / wing).rglob('*.py')}
    every = {module_name(p) for p in (SRC / PACKAGE).rglob('*.py')}
    bad = [(m, t) for m, p in files.items() for t, _ in imports_of(p, every)
           if t.split('.')[0] in ROS_MODULES or t.startswith(f'{PACKAGE}.ros')]
    assert bad == []


def test_the_core_does_not_import_the_offline_tools():
    files = {module_name(p): p for p in (SRC / PACKAGE / 'core').rglob('*.py')}
    every = {module_name(p) for p in (SRC / PACKAGE).rglob('*.py')}
    bad = [(m, t) for m, p in files.items() for t, _ in imports_of(p, every)
           if t.startswith(f'{PACKAGE}.offline')]
    assert bad == []
