"""The node's /diagnostics status: rates, latency, drop and failure counts, devices, timings."""
from __future__ import annotations

from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# counters reported as they are (node counters; the pipeline's drop count is 'dropped')
COUNTERS = ('received', 'published', 'invalid', 'failed', 'rate_limited', 'no_person',
            'skipped_no_subscribers', 'bad_camera_info', 'subscription_errors',
            'publisher_errors', 'depth_placed', 'depth_unpaired', 'depth_fit_failed',
            'depth_invalid')


def status_level(stats: dict[str, int], delta: dict[str, int], idle: bool) -> tuple[int, str]:
    """Level and message from the counters and their change over the last window."""
    if delta.get('failed', 0) and not delta.get('published', 0):
        return DiagnosticStatus.ERROR, 'reconstruction failing'
    if delta.get('failed', 0) or delta.get('invalid', 0):
        return DiagnosticStatus.WARN, 'frames dropped'
    if idle:
        return DiagnosticStatus.OK, 'idle: no output subscribers'
    if not stats.get('received', 0):
        return DiagnosticStatus.OK, 'waiting for images'
    return DiagnosticStatus.OK, 'running'


def reconstruction_status(name: str, stats: dict[str, int], delta: dict[str, int], window_s: float,
                          latencies_s: list[float], timings_ms: dict[str, float],
                          engine: dict[str, Any], idle: bool) -> DiagnosticStatus:
    """
    Build the reconstruction status of one diagnostics window.

    ``stats`` are the counters so far (the pipeline's prefixed ``pipeline_``), ``delta`` their
    change over the window of ``window_s`` seconds, ``engine`` the devices, arithmetic, resolution
    and octree settings in use (``geometry_device`` and ``color_device`` name the hardware).
    """
    status = DiagnosticStatus(
        name=name, hardware_id=f"geometry={engine['geometry_device']} "
                               f"color={engine['color_device']}")
    status.level, status.message = status_level(stats, delta, idle)
    dt = max(window_s, 1e-3)
    values: dict[str, Any] = {
        'rate_hz': delta.get('published', 0) / dt,
        'input_rate_hz': delta.get('received', 0) / dt,
        'latency_ms': 1e3 * float(np.mean(latencies_s)) if latencies_s else float('nan'),
        'latency_max_ms': 1e3 * float(np.max(latencies_s)) if latencies_s else float('nan'),
    }
    values.update({k: stats.get(k, 0) for k in COUNTERS[:2]})
    values['dropped'] = stats.get('pipeline_dropped', 0)
    values.update({k: stats.get(k, 0) for k in COUNTERS[2:]})
    values.update(engine)
    values.update({f'time_{k}_ms': round(v, 2) for k, v in timings_ms.items()})
    status.values = [KeyValue(key=k, value=f'{v:.2f}' if isinstance(v, float) else str(v))
                     for k, v in values.items()]
    return status
