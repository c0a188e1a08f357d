"""
The pipelines the node drives, behind one small interface, and :func:`make_pipeline`.

Two pipelines run a :class:`core.reconstruct.Reconstructor` on a stream of frames without blocking
the producer, both on :class:`core.stream.FrameInbox` (newest frame wins, in-order delivery):

- :class:`core.stage_threads.StageThreadPipeline`: one thread per stage (segmentation, geometry,
  colour), frames overlapping across stages; on two devices, or on one CPU;
- :class:`core.worker_processes.WorkerProcessPipeline`: whole frames in worker processes, frames
  in parallel; for the all-CPU configuration, where stage threads wait on Python's GIL.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .config import MonoPortConfig
from .reconstruct import ALL_OUTPUTS
from .stage_threads import StageThreadPipeline
from .stream import ResultCallback, frames_in_flight
from .worker_processes import WorkerProcessPipeline


@runtime_checkable
class Pipeline(Protocol):
    """What the node calls on a pipeline."""

    workers: str                        # 'stage threads' or 'worker processes'
    arithmetic: tuple[str, str]         # number types of the geometry and colour networks
    devices: tuple[str, str]            # geometry and colour devices in use (after any fallback)

    @property
    def octree_levels(self) -> int:
        """Localization levels in use."""

    @property
    def stats(self) -> dict[str, int]:
        """Counters: submitted, processed, dropped, failed, no_person."""

    def submit(self, rgb: np.ndarray, meta: Any = None,
               outputs: frozenset[str] = ALL_OUTPUTS) -> bool:
        """Queue a frame; False if an older waiting frame was dropped for it."""

    def pending(self) -> int:
        """Frames waiting in the inbox."""

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings from the next frame on (ValueError if refused)."""

    def close(self, timeout: float = 10.0) -> None:
        """Stop; frames still waiting are discarded."""


def make_pipeline(config: MonoPortConfig, on_result: ResultCallback) -> Pipeline:
    """
    Start the pipeline that suits ``config``.

    Worker processes when every stage is on the CPU and more than one frame is in flight
    (``worker_processes``), else stage threads.
    """
    on_cpu = config.geometry_device.startswith('cpu') and config.color_device.startswith('cpu')
    if on_cpu and config.worker_processes and frames_in_flight(config) > 1:
        return WorkerProcessPipeline(config, on_result)
    return StageThreadPipeline(config, on_result)
