"""Route the reconstruction core's Python log records to the node's ROS log (console, /rosout)."""
from __future__ import annotations

import logging
import sys
from typing import Any

CORE_LOGGER = 'monoport_ros'        # the core's modules log under monoport_ros.core.*


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
    """Send the core's records of level INFO and above to ``ros_logger``; returns the handler."""
    handler = RosLogHandler(ros_logger)
    core = logging.getLogger(CORE_LOGGER)
    core.addHandler(handler)
    if core.level == logging.NOTSET or core.level > logging.INFO:
        core.setLevel(logging.INFO)
    return handler


def unroute_core_logs(handler: RosLogHandler) -> None:
    """Detach a handler that :func:`route_core_logs` attached."""
    logging.getLogger(CORE_LOGGER).removeHandler(handler)
