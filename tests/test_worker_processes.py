"""The frame-parallel pipeline in worker processes (the all-CPU default), on the shipped model."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest

from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.pipeline import make_pipeline
from monoport_ros.core.stage_threads import StageThreadPipeline
from monoport_ros.core.worker_processes import (WorkerDied, WorkerProcessPipeline, _LockedSender,
                                                _PipeLogHandler)
from monoport_ros.core.reconstruct import Reconstructor

# pre-masked frames (black background) at a small grid: quick, and no MediaPipe in the workers
CONFIG = MonoPortConfig(segmentation=False, resolution=32, render_views=['front'], render_size=64,
                        queue_size=16, frames_in_flight=2)


def frame(k: int) -> np.ndarray:
    """Draw a person-like blob on black that moves with ``k``."""
    img = np.zeros((200, 160, 3), np.uint8)
    cv2.ellipse(img, (70 + 2 * k, 100), (22, 80), 0, 0, 360, (200, 120, 90), -1)
    cv2.circle(img, (70 + 2 * k, 22), 14, (210, 170, 140), -1)
    return img


class Results:
    """Collects ``on_result`` calls; ``wait(n)`` until n have come."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.cond = threading.Condition()

    def __call__(self, meta, rec, err) -> None:
        with self.cond:
            self.items.append((meta, rec, err))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 120.0) -> list[tuple]:
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.items) < n:
                left = end - time.monotonic()
                assert left > 0, f'only {len(self.items)} of {n} results came'
                self.cond.wait(left)
            return list(self.items)


@pytest.fixture(scope='module')
def pipe_and_results():
    results = Results()
    pipe = WorkerProcessPipeline(CONFIG, results)
    yield pipe, results
    pipe.close()


def test_make_pipeline_picks_processes_only_for_cpu_stages_in_parallel() -> None:
    for changes, kind in (({'worker_processes': False}, StageThreadPipeline),
                          ({'frames_in_flight': 1}, StageThreadPipeline)):
        pipe = make_pipeline(CONFIG.replace(**changes), lambda *a: None)
        try:
            assert type(pipe) is kind
        finally:
            pipe.close()


def test_workers_give_the_in_process_results_in_input_order(pipe_and_results) -> None:
    pipe, results = pipe_and_results
    start = len(results.items)
    frames = [frame(k) for k in range(6)]
    for k, img in enumerate(frames):
        assert pipe.submit(img, k)
    got = results.wait(start + 6)[start:]
    assert [meta for meta, _, _ in got] == list(range(6))
    assert all(err is None and rec.person for _, rec, err in got)
    with Reconstructor(CONFIG) as here:
        for img, (_, result, _) in zip(frames, got):
            assert len(result.people) == 1      # CONFIG: one tracked person
            rec, mine = result.people[0], here.reconstruct(img)
            assert len(rec.points) > 100
            np.testing.assert_allclose(rec.points, mine.points, atol=1e-6)
            np.testing.assert_allclose(rec.point_colors, mine.point_colors, atol=1e-3)
            np.testing.assert_array_equal(rec.views['front'], mine.views['front'])
    assert pipe.arithmetic == here.arithmetic and pipe.octree_levels == here.octree_levels
    assert pipe.devices == ('cpu', 'cpu')


def test_bad_frames_fail_alone_and_settings_reach_the_workers(pipe_and_results) -> None:
    pipe, results = pipe_and_results
    start = len(results.items)
    pipe.submit(np.zeros((50, 50), np.float64), 'bad')        # not an RGB image
    pipe.submit(frame(0), 'good')
    got = results.wait(start + 2)[start:]
    assert [m for m, _, _ in got] == ['bad', 'good']
    assert isinstance(got[0][2], ValueError) and got[0][1] is None
    assert got[1][2] is None and got[1][1].person
    before = len(got[1][1].people[0].points)
    with pytest.raises(ValueError, match='cannot change at run time'):
        pipe.update_config(CONFIG.replace(checkpoint='other.safetensors'))
    with pytest.raises(ValueError, match='outside'):
        pipe.update_config(CONFIG.replace(resolution=8))
    levels = pipe.octree_levels
    pipe.update_config(CONFIG.replace(resolution=64, octree_depth=levels + 1))
    assert pipe.octree_levels == levels + 1         # what /diagnostics reports
    for k in range(2):                  # both workers: each applies it before its next frame
        pipe.submit(frame(0), f'fine{k}')
    finer = results.wait(start + 4)[start + 2:]
    assert all(len(res.people[0].points) > 2 * before for _, res, _ in finer)
    pipe.update_config(CONFIG)
    stats = pipe.stats
    assert stats['failed'] >= 1 and stats['processed'] >= 3


def test_a_killed_worker_fails_its_frame_and_is_replaced() -> None:
    results = Results()
    pipe = WorkerProcessPipeline(CONFIG.replace(resolution=64), results)
    try:
        pids = {w.process.pid for w in pipe._workers}
        pipe.submit(frame(0), 'first')
        results.wait(1)
        # kill the worker that takes the next frame, while it works on it
        pipe.submit(frame(1), 'killed')
        deadline = time.monotonic() + 30
        busy = None
        while busy is None and time.monotonic() < deadline:
            busy = next((w for w in pipe._workers if w.frame is not None), None)
        assert busy is not None
        os.kill(busy.process.pid, signal.SIGKILL)
        got = results.wait(2)
        assert got[1][0] == 'killed'
        assert isinstance(got[1][2], WorkerDied) and got[1][1] is None      # it took ~50 ms
        for k in range(4):
            pipe.submit(frame(k), k)
            results.wait(3 + k)
        assert all(err is None for _, _, err in results.items[2:])
        assert {w.process.pid for w in pipe._workers} != pids
        assert all(w.process.is_alive() for w in pipe._workers)
    finally:
        pipe.close()
    assert not any(w.process.is_alive() for w in pipe._workers)


def test_the_workers_warnings_are_logged_in_this_process(caplog) -> None:
    """A worker's log record (here: its device falls back to the CPU) reaches this process."""
    config = CONFIG.replace(geometry_device='cuda:99', frames_in_flight=1)
    with caplog.at_level('WARNING', logger='monoport_ros'):
        pipe = WorkerProcessPipeline(config, Results())
        pipe.close()
    fallbacks = [r for r in caplog.records
                 if "device 'cuda:99' is not available" in r.getMessage()
                 and 'reconstruction worker, pid' in r.getMessage()]
    assert fallbacks and fallbacks[0].name == 'monoport_ros.core.reconstruct', caplog.text
    assert pipe.devices[0] == 'cpu'


def test_a_workers_threads_send_whole_messages() -> None:
    """Log records from several threads and large results from another share one pipe intact."""
    receiving, sending = multiprocessing.get_context('spawn').Pipe()
    sender = _LockedSender(sending)
    log = logging.getLogger('monoport_ros.core.test_pipe')
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(_PipeLogHandler(sender))
    payload = np.arange(100_000, dtype=np.int64)           # 800 kB: many writes per message
    received: list = []

    def read() -> None:
        # a garbled stream fails to unpickle, or stalls: either ends the reading
        try:
            while len(received) < 100 and receiving.poll(20):
                received.append(receiving.recv())
        except Exception:   # noqa: BLE001 - the assertions below report it
            pass

    def log_lines(k: int) -> None:
        for i in range(20):
            log.warning('thread %d line %d %s', k, i, 'x' * 200_000)

    def send_results() -> None:
        for i in range(20):
            sender.send((i, payload, None))

    threads = [threading.Thread(target=log_lines, args=(k,), daemon=True) for k in range(4)]
    threads.append(threading.Thread(target=send_results, daemon=True))
    reader = threading.Thread(target=read, daemon=True)
    for t in [reader, *threads]:
        t.start()
    reader.join(timeout=120)
    log.handlers.clear()
    assert len(received) == 100
    logs = [m for m in received if m[0] == 'log']
    results = [m for m in received if m[0] != 'log']
    assert len(logs) == 80 and all(m[3].endswith('x' * 200_000) for m in logs)
    assert [m[0] for m in results] == list(range(20))
    assert all(np.array_equal(m[1], payload) for m in results)
