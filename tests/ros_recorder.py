"""
Record ROS 2 topics to an MCAP file (the rosbag2 storage format) without ``ros2 bag``: a test tool.

Messages are stored exactly as they arrive on the wire (serialized CDR, ``message_encoding``
``cdr``) with ``ros2msg`` schemas built from the installed ``.msg`` definitions, so any MCAP/ROS 2
tool (``ros2 bag``, Foxglove, ``mcap-ros2-support``) can decode them.

``python tests/ros_recorder.py out.mcap /monoport_node/points /monoport_node/mesh_marker``
records until Ctrl-C (``--duration`` seconds at most).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mcap.writer import Writer
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args

_PRIMITIVES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
               'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}


def type_name(msg_type: Any) -> str:
    """``pkg/msg/Name`` of a generated message class."""
    pkg = msg_type.__module__.split('.')[0]
    return f'{pkg}/msg/{msg_type.__name__}'


def message_class(name: str) -> Any:
    """Message class from ``pkg/msg/Name`` (or ``pkg/Name``)."""
    parts = name.split('/')
    if len(parts) not in (2, 3):
        raise ValueError(f'bad message type name {name!r}')
    return getattr(importlib.import_module(f'{parts[0]}.msg'), parts[-1])


def _msg_file(pkg: str, name: str) -> Path:
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        path = Path(prefix) / 'share' / pkg / 'msg' / f'{name}.msg'
        if path.is_file():
            return path
    raise FileNotFoundError(f'definition of {pkg}/msg/{name} not found under {prefixes}')


def _dependencies(pkg: str, text: str) -> list[tuple[str, str]]:
    deps = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        ftype = line.split()[0]
        base = re.sub(r'\[.*\]$', '', ftype)
        base = re.sub(r'<=\d+$', '', base)
        if base in _PRIMITIVES:
            continue
        parts = base.split('/')
        deps.append((parts[0], parts[-1]) if len(parts) > 1 else (pkg, parts[0]))
    return deps


def message_definition(msg_type: Any) -> str:
    """Return the full ``ros2msg`` definition: the .msg text, then each nested type's."""
    pkg, _, name = type_name(msg_type).split('/')
    main = _msg_file(pkg, name).read_text()
    seen: set[tuple[str, str]] = set()
    order: list[tuple[str, str, str]] = []

    def visit(p: str, text: str) -> None:
        for dep in _dependencies(p, text):
            if dep not in seen:
                seen.add(dep)
                dep_text = _msg_file(*dep).read_text()
                order.append((dep[0], dep[1], dep_text))
                visit(dep[0], dep_text)

    visit(pkg, main)
    parts = [main.rstrip('\n')]
    for p, n, text in order:
        parts.append('=' * 80 + f'\nMSG: {p}/{n}\n' + text.rstrip('\n'))
    return '\n'.join(parts) + '\n'


class McapSink:
    """Thread-safe MCAP writer of serialized ROS 2 messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(path, 'wb')
        self._writer = Writer(self._file)
        self._writer.start(profile='ros2', library='monoport_ros recorder')
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()
        self.count = 0

    def add_topic(self, topic: str, msg_type: Any) -> None:
        """Register a channel for ``topic`` (and the schema of its type)."""
        name = type_name(msg_type)
        with self._lock:
            if name not in self._schemas:
                self._schemas[name] = self._writer.register_schema(
                    name=name, encoding='ros2msg', data=message_definition(msg_type).encode())
            if topic not in self._channels:
                self._channels[topic] = self._writer.register_channel(
                    topic=topic, message_encoding='cdr', schema_id=self._schemas[name])
                self._seq[topic] = 0

    def write(self, topic: str, data: bytes, log_time_ns: int | None = None,
              publish_time_ns: int | None = None) -> None:
        """Append one serialized message of a registered topic (ignored once closed)."""
        now = time.time_ns() if log_time_ns is None else log_time_ns
        with self._lock:
            if self._file.closed:
                return
            self._seq[topic] += 1
            self._writer.add_message(self._channels[topic], log_time=now, data=bytes(data),
                                     publish_time=publish_time_ns or now,
                                     sequence=self._seq[topic])
            self.count += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        with self._lock:
            if not self._file.closed:
                self._writer.finish()
                self._file.close()


def record_topics(node: Node, sink: McapSink, topics: dict[str, Any],
                  reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE) -> list[Any]:
    """Subscribe ``node`` (raw) to ``topics`` ({topic: message class}); return the subs."""
    subs = []
    qos = QoSProfile(depth=50, reliability=reliability)
    for topic, msg_type in topics.items():
        sink.add_topic(topic, msg_type)
        subs.append(node.create_subscription(
            msg_type, topic, lambda data, t=topic: sink.write(t, data), qos, raw=True))
    return subs


def main(argv: list[str] | None = None) -> int:
    """Record the given topics (types discovered from the graph) until Ctrl-C or --duration."""
    argv = sys.argv if argv is None else ['recorder', *argv]
    parser = argparse.ArgumentParser(prog='python -m monoport_ros.ros.recorder',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('output', help='MCAP file to write')
    parser.add_argument('topics', nargs='+', help='topics to record')
    parser.add_argument('--duration', type=float, default=0.0, help='seconds (0 = until Ctrl-C)')
    parser.add_argument('--discovery-timeout', type=float, default=10.0,
                        help='seconds to wait for the topics to appear')
    args = parser.parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = Node('mcap_recorder')
    sink = McapSink(args.output)
    try:
        end = time.monotonic() + args.discovery_timeout
        found: dict[str, Any] = {}
        while len(found) < len(args.topics) and time.monotonic() < end:
            types = dict(node.get_topic_names_and_types())
            for t in args.topics:
                if t in types and t not in found:
                    found[t] = message_class(types[t][0])
            rclpy.spin_once(node, timeout_sec=0.1)
        missing = sorted(set(args.topics) - set(found))
        if missing:
            node.get_logger().warning(f'not found (not recorded): {missing}')
        record_topics(node, sink, found)
        stop = time.monotonic() + args.duration if args.duration > 0 else float('inf')
        while rclpy.ok() and time.monotonic() < stop:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        sink.close()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'{sink.count} messages written to {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
