"""
ROS parameters of the node, derived from the fields of :class:`MonoPortConfig`.

One parameter per dataclass field, with the same name, type and default; the descriptor carries the
field's description, its range (``integer_range`` / ``floating_point_range``), its choices (as
``additional_constraints``, checked by :meth:`MonoPortConfig.validate`) and ``read_only`` for the
fields that cannot change while the node runs (``STARTUP_FIELDS``). :func:`params_yaml` writes
``config/monoport.yaml`` from the same fields: ``python -m monoport_ros.ros.params --write
config/monoport.yaml`` regenerates it, ``--check`` fails when it has drifted.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
import sys
import textwrap
from typing import Any, Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.parameter import Parameter

from ..core.config import MonoPortConfig, STARTUP_FIELDS

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_STRING_ARRAY}


def config_fields() -> list[dataclasses.Field]:
    """Return the fields of :class:`MonoPortConfig`, in declaration order."""
    return list(dataclasses.fields(MonoPortConfig))


def default_values() -> dict[str, Any]:
    """Return the default value of every field."""
    return dataclasses.asdict(MonoPortConfig())


def parameter_type(value: Any) -> int:
    """Return the ParameterType constant of a field's default value."""
    for py, ros in _TYPES.items():          # bool before int: bool is a subclass of int
        if type(value) is py:
            return ros
    raise TypeError(f'no ROS parameter type for {type(value).__name__}')


def descriptor(f: dataclasses.Field, default: Any) -> ParameterDescriptor:
    """Build the ParameterDescriptor of one MonoPortConfig field."""
    meta = f.metadata
    ptype = parameter_type(default)
    d = ParameterDescriptor(name=f.name, type=ptype, description=meta['description'],
                            read_only=f.name in STARTUP_FIELDS, dynamic_typing=False)
    lo, hi, step = meta['range']
    if lo is not None and ptype == ParameterType.PARAMETER_INTEGER:
        d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi),
                                        step=int(step or 0))]
    elif lo is not None and ptype == ParameterType.PARAMETER_DOUBLE:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=float(step or 0.0))]
    if meta['choices']:
        d.additional_constraints = 'one of: ' + ', '.join(meta['choices'])
    return d


def declarations() -> list[tuple[str, Any, ParameterDescriptor]]:
    """(name, default, descriptor) for ``Node.declare_parameters('', ...)``."""
    defaults = default_values()
    return [(f.name, defaults[f.name], descriptor(f, defaults[f.name])) for f in config_fields()]


def config_from_values(values: dict[str, Any]) -> MonoPortConfig:
    """Build a validated MonoPortConfig from parameter values (ValueError names the field)."""
    defaults = default_values()
    unknown = set(values) - set(defaults)
    if unknown:
        raise ValueError(f'unknown parameters: {sorted(unknown)}')
    kw = dict(defaults)
    for name, value in values.items():
        want = type(defaults[name])
        if want is float and type(value) is int:
            value = float(value)
        elif want is list:
            value = list(value) if value is not None else []
        if want is not list and type(value) is not want:
            raise ValueError(f'{name}={value!r} has type {type(value).__name__}, '
                             f'expected {want.__name__}')
        if want is list and not all(isinstance(v, str) for v in value):
            raise ValueError(f'{name} must be a list of strings')
        kw[name] = value
    config = MonoPortConfig(**kw)
    config.validate()
    return config


def apply_parameters(config: MonoPortConfig, params: Iterable[Parameter]) -> MonoPortConfig:
    """Return a validated copy of ``config`` with the config parameters among ``params`` set."""
    values = dataclasses.asdict(config)
    changed = False
    for p in params:
        if p.name in values:
            values[p.name] = p.value
            changed = True
    return config_from_values(values) if changed else config


# The key of config/monoport.yaml: every node of the process, whatever its namespace.
PARAMS_FILE_KEY = '/**'
_HEADER = """\
# Parameters of monoport_node: one per field of monoport_ros.core.config.MonoPortConfig, with its
# default. GENERATED from that dataclass; do not edit: regenerate with
#   python -m monoport_ros.ros.params --write config/monoport.yaml
# Loaded by launch/monoport.launch.py; pass your own copy with params_file:=/path/to/file.yaml.
# [start-up] parameters are read-only: change them by restarting the node.
"""


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list):
        return '[' + ', '.join(_yaml_value(v) for v in value) + ']'
    if isinstance(value, str):
        return yaml_str(value)
    return repr(value)


def yaml_str(text: str) -> str:
    """Quote ``text`` for YAML only where a plain scalar would read as something else."""
    import yaml
    plain = yaml.safe_dump(text, default_flow_style=True).strip()
    return plain[:-len('...')].strip() if plain.endswith('...') else plain


def params_yaml(width: int = 99) -> str:
    """Return the text of ``config/monoport.yaml``: every field, its description and default."""
    lines = [_HEADER.rstrip('\n'), f"{PARAMS_FILE_KEY}:", '  ros__parameters:']
    defaults = default_values()
    for f in config_fields():
        meta = f.metadata
        notes = []
        lo, hi, _ = meta['range']
        if lo is not None:
            notes.append(f'range {lo}..{hi}')
        if meta['choices']:
            notes.append('one of ' + ', '.join(meta['choices']))
        text = ('[start-up] ' if f.name in STARTUP_FIELDS else '') + meta['description']
        if notes:
            text += '; ' + '; '.join(notes)
        lines += textwrap.wrap(text, width, initial_indent='    # ', subsequent_indent='    # ')
        lines.append(f'    {f.name}: {_yaml_value(defaults[f.name])}')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    """Print, write (``--write``) or check (``--check``) the generated params file."""
    p = argparse.ArgumentParser(prog='python -m monoport_ros.ros.params',
                                description='the params file mirrored from MonoPortConfig')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--write', metavar='FILE', help='write it to FILE')
    group.add_argument('--check', metavar='FILE', help='exit 1 unless FILE is up to date')
    args = p.parse_args(argv)
    text = params_yaml()
    if args.write:
        Path(args.write).write_text(text)
    elif args.check:
        if Path(args.check).read_text() != text:
            print(f'{args.check} differs from MonoPortConfig; regenerate it with '
                  f'python -m monoport_ros.ros.params --write {args.check}', file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
