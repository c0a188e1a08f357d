"""
Stage-thread pipeline: geometry on ``geometry_device``, colour and rendering on ``color_device``.

Three worker threads, one per stage: segmentation and crop (CPU), geometry, colour; frame n+2's
segmentation, n+1's geometry and n's colour stage overlap. The inbox, the frames-in-flight limit
(a frame is taken from the inbox only when one has left, so frames wait where newer ones can
replace them, not between stages: on a 2-core CPU a third frame in flight adds latency and no
throughput), the pacing and the counters are :class:`core.stream.FrameInbox`'s. Results are
delivered in input order; a stage that raises produces ``(meta, None, error)`` for that frame and
the threads keep going. It runs on two devices (a GPU's geometry beside a CPU's colour) or with
every stage on one CPU.
"""
from __future__ import annotations

import queue
import threading

import torch

from .config import MonoPortConfig
from .frame_people import PeopleReconstructor
from .reconstruct import Reconstructor
from .stream import FrameInbox, ResultCallback, attempt, frames_in_flight, usable_cpus

_STOP = object()


class StageThreadPipeline(FrameInbox):
    """
    Run a :class:`Reconstructor` on a stream of frames without blocking the producer.

    Each frame's people go through the stages together (:class:`PeopleReconstructor`); results
    are :class:`~monoport_ros.core.frame_people.FrameResult`.
    """

    workers = 'stage threads'

    def __init__(self, config: MonoPortConfig, on_result: ResultCallback,
                 reconstructor: Reconstructor | PeopleReconstructor | None = None) -> None:
        if config.geometry_device.startswith('cpu') and config.color_device.startswith('cpu'):
            # the stages share the CPU: one intra-op thread each avoids oversubscription (set
            # before the warm-up, so that it runs as the frames will)
            torch.set_num_threads(max(1, usable_cpus() // 2))
        if reconstructor is None:
            reconstructor = PeopleReconstructor(Reconstructor(config))
            reconstructor.warm_up()
        elif isinstance(reconstructor, Reconstructor):  # else its stages are used as they are
            reconstructor = PeopleReconstructor(reconstructor)
        self.reconstructor = reconstructor
        super().__init__(config, on_result, frames_in_flight(config))
        self._prepared: queue.Queue = queue.Queue(maxsize=1)
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._threads = [threading.Thread(target=self._segment_loop, name='monoport-segment',
                                          daemon=True),
                         threading.Thread(target=self._geometry_loop, name='monoport-geometry',
                                          daemon=True),
                         threading.Thread(target=self._color_loop, name='monoport-color',
                                          daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def arithmetic(self) -> tuple[str, str]:
        """Name the number types of the geometry and colour networks (see Reconstructor)."""
        return self.reconstructor.arithmetic

    @property
    def octree_levels(self) -> int:
        """Localization levels in use."""
        return self.reconstructor.octree_levels

    @property
    def devices(self) -> tuple[str, str]:
        """Name the geometry and colour devices in use (after any fallback)."""
        return (str(self.reconstructor.geometry_device), str(self.reconstructor.color_device))

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings (resolution, threshold, views, ...) from the next frame on."""
        self.reconstructor.update_config(config)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (frames still waiting are discarded) and wait for them."""
        self._close_inbox()
        for t in self._threads:
            t.join(timeout)
        self.reconstructor.close()

    def _segment_loop(self) -> None:
        for rgb, meta, outputs in self._frames():
            result, error = attempt(self.reconstructor.prepare, rgb)
            self._prepared.put((meta, outputs, result, error))
        self._prepared.put(_STOP)

    def _geometry_loop(self) -> None:
        while True:
            item = self._prepared.get()
            if item is _STOP:
                break
            meta, outputs, frame, error = item
            if error is None:
                item = (meta, outputs, *attempt(self.reconstructor.geometry, frame))
            self._handoff.put(item)
        self._handoff.put(_STOP)

    def _color_loop(self) -> None:
        while True:
            item = self._handoff.get()
            if item is _STOP:
                return
            meta, outputs, geo, error = item
            result = None
            if error is None:
                result, error = attempt(self.reconstructor.color, geo, outputs)
                # the pipeline hands out only the result, so the volume can serve a later frame
                attempt(self.reconstructor.recycle, geo)
            self._deliver(meta, result, error)
            self._slot_freed()
