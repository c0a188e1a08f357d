"""
ROS parameters of the node, derived from the fields of :class:`MonoPortConfig`.

One parameter per dataclass field, with the same name, type and default; the descriptor carries the
field's description, its range (``integer_range`` / ``floating_point_range``), its choices (as
``additional_constraints``, checked by :meth:`MonoPortConfig.validate`) and ``read_only`` for the
fields that cannot change while the node runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.parameter import Parameter

from ..core.config import MonoPortConfig

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
                            read_only=not meta['dynamic'], dynamic_typing=False)
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


def dynamic_names() -> set[str]:
    """Names of the parameters that may change at run time."""
    return {f.name for f in config_fields() if f.metadata['dynamic']}


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
