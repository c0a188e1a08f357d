"""
The stream side of both pipelines: newest-wins inbox, pacing, counters, in-order delivery.

:class:`FrameInbox` is what :class:`core.stage_threads.StageThreadPipeline` and
:class:`core.worker_processes.WorkerProcessPipeline` share: frames wait in a bounded inbox where
the newest frame wins (the oldest waiting one is dropped and counted), at most ``in_flight_limit``
frames are taken at once, and results reach ``on_result(meta, reconstruction, error)`` in input
order. :func:`attempt` runs one stage on one frame so that a failure drops only that frame.
"""
from __future__ import annotations

import collections
import logging
import os
import statistics
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from .config import MonoPortConfig
from .reconstruct import ALL_OUTPUTS, Reconstruction

LOG = logging.getLogger(__name__)
ResultCallback = Callable[[Any, 'Reconstruction | None', 'BaseException | None'], None]


def detached(exc: BaseException) -> BaseException:
    """
    Return ``exc`` without tracebacks (along its cause/context chain).

    A traceback keeps the failed stage's locals alive, e.g. the half-built volumes of a frame that
    ran out of memory; handed on to the consumer, they would make the next frames fail too.
    """
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


def attempt(stage: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None]:
    """Run one stage on one frame: ``(result, None)``, or ``(None, error)`` if it raised."""
    try:
        return stage(*args), None
    except Exception as exc:   # noqa: BLE001 - any stage failure drops only this frame
        return None, detached(exc)


def usable_cpus() -> int:
    """Count the CPUs this process may run on (its affinity, e.g. a container share), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):       # not on Linux
        return os.cpu_count() or 1


def frames_in_flight(config: MonoPortConfig) -> int:
    """How many frames the pipeline works on at once (resolves ``frames_in_flight = 0``)."""
    if config.frames_in_flight:
        return config.frames_in_flight
    if config.geometry_device.startswith('cpu') and config.color_device.startswith('cpu'):
        return max(1, min(3, usable_cpus()))
    return 3


class FramePacer:
    """
    Decide whether a freed pipeline slot should wait for the stream's next frame.

    When a slot frees, the newest waiting frame of a camera stream is on average half a frame
    period T old, and that age adds to its latency. If the next frame is due within T/2, waiting
    for it and taking it fresh lowers latency for a slot idle at most T/2 (the expected age at
    take drops from T/2 to T/8). Measured at 128^3 on two cores with a 30 Hz feed: latency p50
    -12 to -16 ms, p95 -11 to -31 ms, same frame rate. The period is the median interval of the
    last frames; irregular or stopped streams are not waited for.
    """

    MIN_INTERVALS = 8       # intervals seen before the period is trusted
    SLACK = 0.25            # extra wait for a late frame, in periods

    def __init__(self, history: int = 16) -> None:
        self._arrivals: collections.deque = collections.deque(maxlen=history + 1)

    def arrived(self, t: float) -> None:
        """Record a frame's arrival time (``time.monotonic()``)."""
        self._arrivals.append(t)

    def period(self) -> float | None:
        """Median frame interval of the recent frames in seconds, or None while unknown."""
        if len(self._arrivals) <= self.MIN_INTERVALS:
            return None
        times = list(self._arrivals)
        return statistics.median(b - a for a, b in zip(times, times[1:]))

    def wait_for_next(self, newest: float, now: float) -> float:
        """
        Seconds to wait for a frame newer than the one that arrived at ``newest`` (0 = take it).

        Waits only when that frame is between half a period and one period old, i.e. the next
        one is due within half a period (plus :attr:`SLACK` for jitter).
        """
        period = self.period()
        if not period:
            return 0.0
        age = now - newest
        if not period / 2 < age < period:
            return 0.0
        return period - age + self.SLACK * period


class FrameInbox:
    """
    The stream side of a pipeline: newest-wins inbox, frames-in-flight limit, counters, delivery.

    Subclasses take frames from :meth:`_frames`, hand each result to :meth:`_deliver` (or, when
    frames finish out of order, to :meth:`_deliver_in_order`) and free its slot with
    :meth:`_slot_freed`.
    """

    def __init__(self, config: MonoPortConfig, on_result: ResultCallback,
                 in_flight_limit: int) -> None:
        self._on_result = on_result
        self._inbox: collections.deque = collections.deque()
        self._capacity = config.queue_size
        self._in_flight_limit = in_flight_limit
        self._in_flight = 0
        self._pacer = FramePacer()
        self._cond = threading.Condition()
        self._closed = False
        self._stats = {'submitted': 0, 'processed': 0, 'dropped': 0, 'failed': 0, 'no_person': 0}
        self._stats_lock = threading.Lock()
        self._next_out = 0                      # sequence number of the next frame delivered
        self._finished: dict[int, tuple] = {}   # seq -> (meta, result, error), out of order
        self._deliver_lock = threading.Lock()

    @property
    def stats(self) -> dict[str, int]:
        """
        Counters of the pipeline.

        Submitted, processed (results delivered), dropped (newest-wins), failed, no_person.
        """
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def pending(self) -> int:
        """Frames waiting in the inbox."""
        with self._cond:
            return len(self._inbox)

    def submit(self, rgb: np.ndarray, meta: Any = None,
               outputs: frozenset[str] = ALL_OUTPUTS) -> bool:
        """Queue a frame; returns False if an older waiting frame had to be dropped for it."""
        with self._cond:
            if self._closed:
                raise RuntimeError('pipeline is closed')
            dropped = False
            while len(self._inbox) >= self._capacity:
                self._inbox.popleft()
                dropped = True
                self._count('dropped')
            now = time.monotonic()
            self._pacer.arrived(now)
            self._inbox.append((rgb, meta, frozenset(outputs), now))
            self._count('submitted')
            self._cond.notify()
        return not dropped

    def _close_inbox(self) -> None:
        """Refuse new frames and discard the waiting ones; wakes :meth:`_take_frame`."""
        with self._cond:
            self._closed = True
            self._inbox.clear()
            self._cond.notify_all()

    def _take_frame(self) -> tuple | None:
        """Wait for a free slot and a frame (see :class:`FramePacer`); None once closed."""
        with self._cond:
            while not self._closed and (
                    not self._inbox or self._in_flight >= self._in_flight_limit):
                self._cond.wait()
            if self._capacity == 1 and self._inbox:     # a backlog (queue_size > 1): in order
                newest, now = self._inbox[-1], time.monotonic()
                deadline = now + self._pacer.wait_for_next(newest[3], now)
                while (not self._closed and self._inbox and self._inbox[-1] is newest
                       and time.monotonic() < deadline):
                    self._cond.wait(deadline - time.monotonic())
            if self._closed:
                return None
            self._in_flight += 1
            return self._inbox.popleft()

    def _frames(self) -> Iterator[tuple[np.ndarray, Any, frozenset[str]]]:
        """Yield ``(rgb, meta, outputs)`` of each frame :meth:`_take_frame` takes, until closed."""
        while (frame := self._take_frame()) is not None:
            yield frame[:3]

    def _slot_freed(self) -> None:
        """Free a slot: a frame has left the stages, another may be taken."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _deliver(self, meta: Any, result: Reconstruction | None,
                 error: BaseException | None) -> None:
        """Count one frame's outcome and hand it to the consumer."""
        if error is not None:
            self._count('failed')
            # the consumer gets the error (the node logs it, throttled)
            LOG.debug('frame dropped: %s: %s', type(error).__name__, error)
        else:
            self._count('processed')
            if not result.person:
                self._count('no_person')
        try:
            self._on_result(meta, result, error)
        except Exception:   # noqa: BLE001 - a broken consumer must not kill the worker
            LOG.exception('result callback raised')

    def _deliver_in_order(self, seq: int, meta: Any, result: Reconstruction | None,
                          error: BaseException | None) -> None:
        """Deliver frame ``seq`` (0, 1, ... in the order taken) and every later one now due."""
        with self._deliver_lock:
            self._finished[seq] = (meta, result, error)
            while self._next_out in self._finished:
                self._deliver(*self._finished.pop(self._next_out))
                self._next_out += 1
