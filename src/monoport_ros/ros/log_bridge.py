"""Route the reconstruction core's Python log records to the node's ROS log (console, /rosout)."""
from __future__ import annotations

import logging
import sys
from typing import Any

CORE_LOGGER = 'monoport_ros'        # the core's modules log under monoport_ros.core.*
_level_before_routing: int | None = None     # the core logger's level before the first route


class RosLogHandler(logging.Handler):
    """Hand each log record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger: Any, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Log ``record`` (with its traceback, if any) through the rclpy logger."""
        message = self.format(record)
        log = self.ros_logger
        try:
            # one call site per severity: rclpy refuses a call site whose severity changes
            if record.levelno >= logging.CRITICAL:
                log.fatal(message)
            elif record.levelno >= logging.ERROR:
                log.error(message)
            elif record.levelno >= logging.WARNING:
                log.warning(message)
            elif record.levelno >= logging.INFO:
                log.info(message)
            else:
                log.debug(message)
        except Exception:   # noqa: BLE001 - logging must never raise into the caller
            print(f'[{record.levelname}] [{record.name}]: {message}', file=sys.stderr)


def route_core_logs(ros_logger: Any) -> RosLogHandler:
    """
    Send the core's records of level INFO and above to ``ros_logger``; returns the handler.

    The core's logger is lowered to INFO while at least one handler is routed (several nodes may
    share a process) and gets its own level back when :func:`unroute_core_logs` detaches the last.
    """
    global _level_before_routing
    core = logging.getLogger(CORE_LOGGER)
    if not _routed_handlers(core):
        _level_before_routing = core.level
    handler = RosLogHandler(ros_logger)
    core.addHandler(handler)
    if core.level == logging.NOTSET or core.level > logging.INFO:
        core.setLevel(logging.INFO)
    return handler


def unroute_core_logs(handler: RosLogHandler) -> None:
    """Detach a handler that :func:`route_core_logs` attached (the last one restores the level)."""
    global _level_before_routing
    core = logging.getLogger(CORE_LOGGER)
    core.removeHandler(handler)
    if not _routed_handlers(core) and _level_before_routing is not None:
        core.setLevel(_level_before_routing)
        _level_before_routing = None


def _routed_handlers(core: logging.Logger) -> list[RosLogHandler]:
    """Return the handlers :func:`route_core_logs` attached to ``core`` and not yet detached."""
    return [h for h in core.handlers if isinstance(h, RosLogHandler)]
