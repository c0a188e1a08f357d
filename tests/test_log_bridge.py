"""The core's Python log records reach the node's ROS logger, and the logger is left as found."""
from __future__ import annotations

import logging

import pytest

from monoport_ros.ros.log_bridge import CORE_LOGGER, route_core_logs, unroute_core_logs


class FakeRosLogger:
    """Records (severity, message) like an rclpy logger would print them."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def __getattr__(self, severity: str):
        def log(message: str) -> None:
            if self.fail:
                raise RuntimeError('rclpy is shut down')
            self.calls.append((severity, message))
        return log


@pytest.fixture
def core_logger():
    """Yield the core's logger at a known level, without handlers; put it back afterwards."""
    core = logging.getLogger(CORE_LOGGER)
    level, handlers = core.level, list(core.handlers)
    core.handlers[:] = []
    core.setLevel(logging.WARNING)
    yield core
    core.handlers[:] = handlers
    core.setLevel(level)


def test_severities_map_and_debug_stays_out(core_logger) -> None:
    ros = FakeRosLogger()
    handler = route_core_logs(ros)
    log = logging.getLogger(CORE_LOGGER + '.core.test')
    log.debug('hidden')
    log.info('info %d', 1)
    log.warning('warn')
    log.error('error')
    log.critical('fatal')
    try:
        raise ValueError('boom')
    except ValueError:
        log.exception('failed')
    unroute_core_logs(handler)
    log.warning('after')
    assert [c[0] for c in ros.calls] == ['info', 'warning', 'error', 'fatal', 'error']
    assert ros.calls[0][1] == 'info 1'
    assert 'ValueError: boom' in ros.calls[-1][1]       # the traceback goes along


def test_the_level_comes_back_when_the_last_route_goes(core_logger) -> None:
    first = route_core_logs(FakeRosLogger())
    second = route_core_logs(FakeRosLogger())       # two nodes in one process
    assert core_logger.level == logging.INFO
    unroute_core_logs(first)
    assert core_logger.level == logging.INFO        # the second node still wants INFO
    unroute_core_logs(second)
    assert core_logger.level == logging.WARNING and not core_logger.handlers


def test_a_failing_ros_logger_does_not_raise(core_logger, capsys) -> None:
    handler = route_core_logs(FakeRosLogger(fail=True))
    logging.getLogger(CORE_LOGGER + '.core.test').warning('still told')
    unroute_core_logs(handler)
    assert 'still told' in capsys.readouterr().err
