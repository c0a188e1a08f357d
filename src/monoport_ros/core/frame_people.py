"""
Every person of a frame through the :class:`Reconstructor`'s stages: the pipelines' unit of work.

:class:`PeopleReconstructor` offers the stage calls the pipelines make (``prepare``, ``geometry``,
``color``, ``recycle``, ``warm_up``) on the people of a frame:

* with ``max_people`` above 1 and MediaPipe pose segmentation, a
  :class:`~monoport_ros.core.multiperson.PeopleFinder` in video mode finds up to ``max_people``
  people (far ones too: its detector also scans tiles), each with their own instance mask,
  landmarks and crop; they are reconstructed one after the other;
* otherwise (``max_people`` 1, the selfie model, or pre-masked input) the frame holds the main
  person of the Reconstructor's own segmenter, which tracks them across frames: the cheapest path.

The result is a :class:`FrameResult`: the people found, largest (nearest) first, each a
:class:`Reconstruction` with its mask box, landmarks and the finder's id. Those ids only key each
person's surface memory (``steady_surface``) in this process: with worker processes each worker
sees every other frame, so the stream's own identities are given later, in input order
(:class:`~monoport_ros.core.tracking.PersonTracker`, in the node).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .config import MonoPortConfig
from .reconstruct import (ALL_OUTPUTS, GeometryResult, PreparedFrame, Reconstruction,
                          Reconstructor, WARM_UP_IMAGE, check_image)
from .surface_memory import SurfaceMemory

LOG = logging.getLogger(__name__)
TILES_PER_FRAME = 1     # detector tiles scanned per frame beside the whole frame (video mode)


@dataclass
class FrameResult:
    """What one frame produces: its people (largest first) and every person's pixels."""

    people: list[Reconstruction]
    mask: np.ndarray                    # (H, W) bool, the union of the people's masks
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def person(self) -> bool:
        """Whether anybody was reconstructed."""
        return bool(self.people)


def uses_finder(config: MonoPortConfig) -> bool:
    """Whether ``config`` finds people with the detector (else: one tracked main person)."""
    return (config.max_people > 1 and config.segmentation
            and config.segmentation_model == 'pose')


class PeopleReconstructor:
    """A :class:`Reconstructor` for every person of a frame (see the module docstring)."""

    def __init__(self, reconstructor: Reconstructor) -> None:
        self.reconstructor = reconstructor
        self._finder = None
        self._memories: dict[int, SurfaceMemory] = {}

    # the Reconstructor's description, for the pipelines
    @property
    def config(self) -> MonoPortConfig:
        """Return the settings in use."""
        return self.reconstructor.config

    @property
    def arithmetic(self) -> tuple[str, str]:
        """Name the number types of the geometry and colour networks."""
        return self.reconstructor.arithmetic

    @property
    def octree_levels(self) -> int:
        """Localization levels in use."""
        return self.reconstructor.octree_levels

    @property
    def geometry_device(self):
        """Return the surface network's torch device."""
        return self.reconstructor.geometry_device

    @property
    def color_device(self):
        """Return the colour network's torch device."""
        return self.reconstructor.color_device

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings (``max_people`` is fixed at start-up)."""
        self.reconstructor.update_config(config)

    def _people_finder(self):
        if self._finder is None:
            from .multiperson import PeopleFinder   # the detector's interpreter: only if used
            self._finder = PeopleFinder(self.config.max_people,
                                        tiles_per_frame=TILES_PER_FRAME)
        return self._finder

    # the stages
    def prepare(self, rgb: np.ndarray) -> list[PreparedFrame]:
        """Find the people of ``rgb`` and crop each; one empty frame when nobody is found."""
        rec = self.reconstructor
        if not uses_finder(self.config):
            return [rec.prepare(rgb)]
        check_image(rgb, True)
        t0 = time.perf_counter()
        found = self._people_finder().find(rgb)
        frames = [rec.prepare_person(rgb, p.mask, p.pose, p.track_id) for p in found]
        frames = [f for f in frames if f.crop is not None] or [
            PreparedFrame(np.zeros(rgb.shape[:2], bool))]
        frames[0].timings_ms['segment'] = (time.perf_counter() - t0) * 1e3
        return frames

    def geometry(self, frames: np.ndarray | list[PreparedFrame]) -> list[GeometryResult]:
        """Run the geometry stage on each person (of an RGB image or prepared people)."""
        if isinstance(frames, np.ndarray):
            frames = self.prepare(frames)
        return [self.reconstructor.geometry(f) for f in frames]

    def color(self, geos: list[GeometryResult],
              outputs: frozenset[str] = ALL_OUTPUTS) -> FrameResult:
        """Run the colour stage on each person (views: the first only); each has their memory."""
        recs = []
        for geo in geos:
            memory = None           # the Reconstructor's own: the one tracked person
            if uses_finder(self.config):
                memory = self._memories.setdefault(geo.track_id, SurfaceMemory())
            recs.append(self.reconstructor.color(geo, outputs, memory))
            outputs = outputs - {'views'}       # views are of the first (largest) person
        seen = {g.track_id for g in geos if g.person}
        for gone in set(self._memories) - seen:     # memories only of the last frame's people
            del self._memories[gone]
        mask = np.zeros_like(geos[0].mask, bool)
        timings: dict[str, float] = {}
        for rec in recs:
            mask |= rec.mask
            for key, ms in rec.timings_ms.items():
                timings[key] = timings.get(key, 0.0) + ms
        return FrameResult([r for r in recs if r.person], mask, timings)

    def recycle(self, geos: list[GeometryResult]) -> None:
        """Give each person's volume back for later frames (see :meth:`Reconstructor.recycle`)."""
        for geo in geos:
            self.reconstructor.recycle(geo)

    def warm_up(self) -> bool:
        """Warm the Reconstructor up (and the person finder, whose tracks are then dropped)."""
        ok = self.reconstructor.warm_up()
        if uses_finder(self.config):
            try:
                finder = self._people_finder()
                rgb = cv2.cvtColor(cv2.imread(str(WARM_UP_IMAGE)), cv2.COLOR_BGR2RGB)
                finder.find(rgb)
                finder.reset()
                finder.reserve_graphs()
            except Exception as exc:    # noqa: BLE001 - frames will fail and be counted instead
                LOG.warning('warm-up of the person finder failed (%s: %s); going on without it',
                            type(exc).__name__, exc)
                return False
        return ok

    def __enter__(self) -> 'PeopleReconstructor':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the segmenters."""
        if self._finder is not None:
            self._finder.close()
            self._finder = None
        self.reconstructor.close()
