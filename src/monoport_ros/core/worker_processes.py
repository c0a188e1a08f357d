"""
Frame-parallel pipeline in worker processes, for the all-CPU configuration.

:class:`core.stage_threads.StageThreadPipeline` overlaps frames with one thread per stage. On a
CPU those threads run thousands of short torch operations per frame, each taking and releasing
Python's global interpreter lock, and they wait on each other for it: two frames reconstructed at
once took 195-210 ms each in two threads of one process against 148-157 ms in two processes
(128^3, the samples, one torch thread each, 2-core VM). Here each of ``frames_in_flight`` worker
processes runs whole frames (segmentation, geometry, colour) with its own :class:`Reconstructor`
and segmenter; this process keeps the newest-wins inbox, the pacing and the counters
(:class:`FrameInbox`), and delivers the results in input order. A worker that dies is replaced;
its frame fails.

Workers are started with ``spawn`` (never forked from a process that may hold DDS or MediaPipe
threads), so programs that use this must guard their entry point (``if __name__ == '__main__'``).
"""
from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
import time
from typing import Any

from .config import MonoPortConfig
from .stream import FrameInbox, ResultCallback, attempt, frames_in_flight, usable_cpus
from .reconstruct import check_runtime_change

LOG = logging.getLogger(__name__)
READY_TIMEOUT_S = 300.0          # a worker's start: torch, the model, MediaPipe, the warm-up frame
_CONTEXT = multiprocessing.get_context('spawn')


class WorkerDied(RuntimeError):
    """A worker process ended while it had a frame (e.g. killed for memory)."""


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:   # noqa: BLE001 - any exception type may refuse pickling
        return RuntimeError(f'{type(error).__name__}: {error}')


class _LockedSender:
    """A pipe's sending end that any thread of a worker may use: one message at a time."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        """Send ``message`` whole, after any message another thread is sending."""
        with self.lock:
            self.conn.send(message)


class _PipeLogHandler(logging.Handler):
    """In a worker: send each log record to the parent, which logs it there (e.g. to ROS)."""

    def __init__(self, sender: _LockedSender) -> None:
        super().__init__(logging.INFO)
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``('log', level, logger name, message)`` down the pipe."""
        try:
            self.sender.send(('log', record.levelno, record.name, self.format(record)))
        except Exception:   # noqa: BLE001 - the parent is gone: nobody to tell
            pass


def _log_from_worker(pid: int | None, message: tuple) -> None:
    """Log a record that worker ``pid`` sent, under its own logger name, in this process."""
    _, level, name, text = message
    logging.getLogger(name).log(level, '%s (reconstruction worker, pid %s)', text, pid)


def _worker_main(config: MonoPortConfig, conn: Any, threads: int) -> None:
    """Run a worker process: reconstruct the frames it is sent until it gets None."""
    import torch

    from .frame_people import PeopleReconstructor
    from .reconstruct import Reconstructor
    # the core's warnings (e.g. a failed warm-up) reach the parent's log (the node's ROS log),
    # from whichever thread logs them: every send goes through one lock
    sender = _LockedSender(conn)
    core_log = logging.getLogger('monoport_ros')
    core_log.addHandler(_PipeLogHandler(sender))
    core_log.setLevel(logging.INFO)
    # Ctrl-C reaches the whole process group: the parent stops the workers itself (close()),
    # rather than have them die under it and be replaced while it shuts down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)      # the workers share the cores
    try:
        rec = PeopleReconstructor(Reconstructor(config))
        rec.warm_up()       # MediaPipe's graph, kernels, memory: before the first real frame
    except Exception as exc:    # noqa: BLE001 - reported to the parent, which raises it
        sender.send(('error', _portable(exc)))
        return
    sender.send(('ready', {'arithmetic': rec.arithmetic,
                           'devices': (str(rec.geometry_device), str(rec.color_device))}))
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            if message[0] == 'config':
                rec.update_config(message[1])
                continue
            _, seq, rgb, outputs = message
            geo, error = attempt(rec.geometry, rgb)
            result = None
            if error is None:
                result, error = attempt(rec.color, geo, outputs)
                attempt(rec.recycle, geo)
            sender.send((seq, result, None if error is None else _portable(error)))
    except (EOFError, OSError):     # the parent went away
        pass
    finally:
        rec.close()


class _Worker:
    """One worker process and the end of its pipe."""

    def __init__(self, config: MonoPortConfig) -> None:
        self.conn, child = _CONTEXT.Pipe()
        # intra-op threads: the cores shared out (one each on two cores and two workers)
        threads = max(1, usable_cpus() // frames_in_flight(config))
        self.process = _CONTEXT.Process(target=_worker_main, args=(config, child, threads),
                                        name='monoport-worker', daemon=True)
        self.process.start()
        child.close()
        self.frame: tuple[int, Any] | None = None       # (sequence number, meta) being worked on
        self.alive = True                               # False: dead and not replaced

    def wait_ready(self) -> dict:
        """Return the worker's description once it has loaded; raise what stopped it."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise RuntimeError('reconstruction worker not ready after '
                                   f'{READY_TIMEOUT_S:.0f} s')
            try:
                message = self.conn.recv()
            except EOFError:
                raise RuntimeError('reconstruction worker exited at start-up '
                                   f'(exit code {self.process.exitcode})') from None
            if message[0] != 'log':
                break
            _log_from_worker(self.process.pid, message)
        kind, value = message
        if kind == 'error':
            self.stop()
            raise value
        return value

    def ask_to_stop(self) -> None:
        """Tell the worker to end after its current frame (it may be dead already)."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to end, then make sure it has."""
        self.ask_to_stop()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


class WorkerProcessPipeline(FrameInbox):
    """Run frames in worker processes (see :class:`core.pipeline.Pipeline`)."""

    workers = 'worker processes'

    def __init__(self, config: MonoPortConfig, on_result: ResultCallback) -> None:
        self.config = config
        count = frames_in_flight(config)
        super().__init__(config, on_result, count)
        self._workers = [_Worker(config) for _ in range(count)]
        try:
            infos = [w.wait_ready() for w in self._workers]
        except BaseException:
            for w in self._workers:
                w.stop()
            raise
        self.arithmetic: tuple[str, str] = tuple(infos[0]['arithmetic'])
        self.devices: tuple[str, str] = tuple(infos[0]['devices'])
        self._idle = list(range(count))
        self._send_lock = threading.Lock()      # config updates and frames share the pipes
        self._next_seq = 0                      # next frame taken
        self._threads = [threading.Thread(target=self._dispatch_loop, name='monoport-dispatch',
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._collect_loop, args=(i,),
                                           name=f'monoport-collect-{i}', daemon=True)
                          for i in range(count)]
        for t in self._threads:
            t.start()

    @property
    def octree_levels(self) -> int:
        """Localization levels in use (``octree_depth`` may change at run time)."""
        return self.config.localization_levels(self.devices[0])

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings from each worker's next frame on (ValueError if refused)."""
        check_runtime_change(self.config, config)
        self.config = config
        with self._send_lock:
            for w in self._workers:
                try:
                    w.conn.send(('config', config))
                except (OSError, ValueError):   # a dead worker: its replacement gets config
                    pass

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; waiting frames are discarded, those in work may still be delivered."""
        self._close_inbox()
        self._threads[0].join(timeout)
        with self._send_lock:
            for w in self._workers:         # all at once: each takes seconds to wind down
                w.ask_to_stop()
            for w in self._workers:
                w.stop(timeout)
        for t in self._threads[1:]:
            t.join(timeout)

    def _dispatch_loop(self) -> None:
        for rgb, meta, outputs in self._frames():
            with self._cond:        # a slot is free, so a worker is idle
                index = self._idle.pop(0)
                seq = self._next_seq
                self._next_seq += 1
            with self._send_lock:
                worker = self._workers[index]
                if worker.alive:
                    worker.frame = (seq, meta)
                    try:
                        worker.conn.send(('frame', seq, rgb, outputs))
                    except (OSError, ValueError):
                        pass        # the collector sees the worker gone and fails the frame
            if not worker.alive:    # it died and could not be replaced
                self._finish(None, seq, meta, None, WorkerDied('reconstruction worker gone'))

    def _collect_loop(self, index: int) -> None:
        while True:
            worker = self._workers[index]
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                if self._closed:
                    return
                if not self._replace(index):
                    return
                continue
            if message[0] == 'log':
                _log_from_worker(worker.process.pid, message)
                continue
            seq, result, error = message
            meta = worker.frame[1]
            worker.frame = None
            self._finish(index, seq, meta, result, error)

    def _replace(self, index: int) -> bool:
        """Fail the dead worker's frame and start another in its place (False: gave up)."""
        dead = self._workers[index]
        dead.process.join(1.0)
        code = dead.process.exitcode
        LOG.error('reconstruction worker %d ended (exit code %s); starting another', index, code)
        started_with = self.config
        try:
            fresh: _Worker | None = _Worker(started_with)
            fresh.wait_ready()
        except Exception:   # noqa: BLE001 - logged; the pipeline goes on with fewer workers
            LOG.exception('could not replace reconstruction worker %d', index)
            fresh = None
        with self._send_lock:       # from here on no frame goes to the dead worker
            frame, dead.frame = dead.frame, None
            if fresh is not None:
                self._workers[index] = fresh
                if self.config is not started_with:     # settings changed while it started
                    try:
                        fresh.conn.send(('config', self.config))
                    except (OSError, ValueError):   # died already: its collector replaces it
                        pass
            else:
                dead.alive = False
                with self._cond:    # one slot fewer from now on
                    self._in_flight_limit -= 1
        dead.stop(1.0)
        if frame is not None:       # it was working: fail that frame, free its slot
            self._finish(index if fresh is not None else None, frame[0], frame[1], None,
                         WorkerDied(f'reconstruction worker ended (exit code {code})'))
        # an idle worker's index is still in the idle list (or the dispatcher's hands)
        return fresh is not None

    def _finish(self, index: int | None, seq: int, meta: Any, result: Any,
                error: BaseException | None) -> None:
        """Free the worker's slot, then deliver every finished frame that is next in order."""
        if index is not None:
            with self._cond:
                self._idle.append(index)
        self._slot_freed()
        self._deliver_in_order(seq, meta, result, error)
