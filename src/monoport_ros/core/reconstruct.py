"""
Single-image reconstruction: image -> person crop -> features -> occupancy -> surface -> outputs.

Split in three stages so that they can overlap between frames and run on two devices
(:mod:`monoport_ros.core.pipeline`): :meth:`Reconstructor.prepare` (segmentation and crop, CPU),
:meth:`Reconstructor.geometry` (surface encoder and surface localization on ``geometry_device``)
and :meth:`Reconstructor.color` (:meth:`Reconstructor.finish_surface`, then the colour encoder and
colour queries on ``color_device``; meshing on the host). The occupancy volume stays on the
geometry device, so the direct rendering's ray search runs there too and only images come back.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .averaging import averaged_views, view_images, view_point_maps
from .body_pose import BodyPose, map_pose, skeleton
from .camera import PersonCrop
from .completion import fill_silhouette
from .config import check_startup_fields, MonoPortConfig, view_yaw
from .localization import (LocalizedVolume, Region, VolumeBuffers, keep_largest_component,
                           localize_surface)
from .meshing import extract_mesh, mesh_within_budget, surface_points
from .networks import MonoPortNet, sample_features
from .preprocess import check_rgb, crop_person, largest_component
from .pose_body import apply_pose_prior, PoseBody
from .rendering import render_view
from .segmentation import MIN_SIDE
from .smoothing import smooth_volume
from .surface_memory import SurfaceMemory

LOG = logging.getLogger(__name__)
ALL_OUTPUTS = frozenset({'points', 'mesh', 'views', 'mask'})
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / 'models' / 'default.safetensors'
# a bundled sample person: the frame :meth:`Reconstructor.warm_up` runs
WARM_UP_IMAGE = Path(__file__).resolve().parent.parent / 'samples' / 'person_000.png'
# slack of the visual-hull carving around the segmented person (crop pixels)
HULL_MARGIN_PX = 3
# with segmentation off, pixels brighter than this (any channel) are the person
PREMASKED_LEVEL = 8


def resolve_device(name: str, fallback: bool) -> torch.device:
    """
    Torch device for ``name``.

    An unavailable CUDA device falls back to CPU or raises ValueError.
    """
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f'invalid device {name!r}: {exc}') from exc
    if dev.type == 'cuda':
        index = dev.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            msg = f'device {name!r} is not available (CUDA devices: {torch.cuda.device_count()})'
            if not fallback:
                raise ValueError(msg)
            LOG.warning('%s; falling back to cpu', msg)
            return torch.device('cpu')
    elif dev.type != 'cpu':
        raise ValueError(f'unsupported device {name!r}: use cpu or cuda:N')
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """
    Arithmetic type of the networks on ``device``.

    ``auto`` picks bfloat16 where it is native (CPUs with AVX-512 or AMX, CUDA devices of compute
    capability 8 or more), else float32.
    """
    if precision == 'auto':
        if device.type == 'cuda':
            native = torch.cuda.get_device_capability(device)[0] >= 8
        else:
            try:    # private but stable since torch 1.10; absent -> not native
                native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
            except (AttributeError, RuntimeError):
                native = False
        return torch.bfloat16 if native else torch.float32
    if precision == 'float16' and device.type != 'cuda':
        raise ValueError('precision float16 needs a CUDA device (CPUs: use bfloat16 or float32)')
    names = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
    if precision not in names:
        raise ValueError(f'precision={precision!r} is not one of auto, {", ".join(names)}')
    return names[precision]


def _prepared(net: MonoPortNet, device: torch.device, dtype: torch.dtype) -> MonoPortNet:
    """Return an inference copy of ``net`` on ``device`` in ``dtype`` (the caller's net stays)."""
    # folded in float32, then cast: in bfloat16 the fused encoder is also closer to float32
    # (mean feature error 0.0033 vs 0.0052 unfused: one rounding fewer per layer)
    net = copy.deepcopy(net).eval().fuse_batchnorm()
    if net.compute_dtype != dtype:
        net.set_precision(dtype)
    return net.to(device).use_channels_last()


def hull_region(hull: np.ndarray, resolution: int, margin: int = 2) -> Region | None:
    """
    Grid-index box outside which the visual hull ``hull`` ((S, S) crop mask) is empty.

    x and y from the mask's bounding box (``margin`` grid steps wider), z the whole grid; None for
    an empty mask. Pixel column u covers model x in [2u/S - 1, 2(u+1)/S - 1], row v covers y in
    [1 - 2(v+1)/S, 1 - 2v/S], and grid index i sits at 2i/R - 1 (see :mod:`core.localization`).
    """
    rows = np.flatnonzero(hull.any(axis=1))
    cols = np.flatnonzero(hull.any(axis=0))
    if rows.size == 0:
        return None
    scale = resolution / hull.shape[0]
    x = (math.floor(cols[0] * scale) - margin, math.ceil((cols[-1] + 1) * scale) + margin)
    y = (math.floor((hull.shape[0] - rows[-1] - 1) * scale) - margin,
         math.ceil((hull.shape[0] - rows[0]) * scale) + margin)
    return (x, y, (0, resolution))


def model_path(config: MonoPortConfig) -> Path:
    """Return the checkpoint a config asks for (the shipped default model when empty)."""
    return Path(config.checkpoint).expanduser() if config.checkpoint else DEFAULT_MODEL


@dataclass
class PreparedFrame:
    """What the segmentation stage hands to the geometry stage (no crop: nobody found)."""

    mask: np.ndarray
    crop_image: np.ndarray | None = None          # (S, S, 3) float32 masked crop
    crop_mask: np.ndarray | None = None
    crop: PersonCrop | None = None
    person_height_px: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    pose: BodyPose | None = None        # the segmenter's landmarks (image pixels); None: none
    track_id: int = 0                   # the person finder's id (0: one person, untracked)

    def model_pose(self) -> np.ndarray | None:
        """Return the pose array (33, 4) in the crop's model space (None: no crop or landmarks)."""
        if self.pose is None or self.crop is None:
            return None
        return self.pose.to_model(self.crop)


@dataclass
class GeometryResult:
    """What the geometry stage hands to the colour stage."""

    person: bool
    mask: np.ndarray
    crop: PersonCrop | None = None
    crop_image: torch.Tensor | None = None       # (1, 3, S, S) on the geometry device
    features: torch.Tensor | None = None          # surface feature map
    volume: LocalizedVolume | None = None
    person_height_px: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    crop_mask: np.ndarray | None = None           # (S, S) person mask of the crop
    pose: BodyPose | None = None
    track_id: int = 0


@dataclass
class Reconstruction:
    """Everything one frame produces; geometry in model space (see :mod:`core.camera`)."""

    person: bool
    mask: np.ndarray
    crop: PersonCrop | None = None
    person_height_px: float = 0.0
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    vertex_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    point_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    views: dict[str, np.ndarray] = field(default_factory=dict)
    normal_views: dict[str, np.ndarray] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    queries: int = 0
    pose: BodyPose | None = None        # landmarks in the image's pixels (see PreparedFrame)
    track_id: int = 0                   # the person finder's id (the node tracks on its own)

    def model_pose(self) -> np.ndarray | None:
        """Return the landmarks (33, 4) in model space, as the vertices (None: none)."""
        if self.pose is None or self.crop is None:
            return None
        return self.pose.to_model(self.crop)


def points_from_edge_crossings(volume: LocalizedVolume) -> bool:
    """
    Whether the point cloud comes from :func:`surface_points` rather than the full mesh.

    On a GPU: the grid's edge crossings are found there (marching cubes' vertices without its
    triangles, host work that took 340-390 ms a frame at 512^3 on an H100 machine), and the full
    mesh is made only if it fits ``mesh_max_triangles`` (then its vertices are the points). On
    the CPU marching cubes, limited to the queried cells, was as fast as scanning the box for
    crossings (265 against 255 ms at 512^3).
    """
    return volume.values.device.type != 'cpu'


def visual_hull_mask(crop_mask: np.ndarray, margin_px: int = HULL_MARGIN_PX) -> np.ndarray:
    """
    Person mask of the crop, dilated by ``margin_px``, as float32 0/1.

    Points that project outside it are outside the person (the visual hull of one view); the
    surface net is only asked about the rest. This removes spurious geometry the net may put in the
    empty background and saves queries.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1,) * 2)
    return cv2.dilate((crop_mask > 0.5).astype(np.uint8), kernel).astype(np.float32)


def check_image(rgb: np.ndarray, segmentation: bool = False) -> None:
    """Raise ValueError unless the engine (and the segmenter) can take ``rgb``."""
    check_rgb(rgb, MIN_SIDE if segmentation else 8)


def check_runtime_change(old: MonoPortConfig, new: MonoPortConfig) -> None:
    """Raise ValueError unless ``new`` is valid and keeps what is fixed for an engine's life."""
    new.validate()
    check_startup_fields(old, new)


class Reconstructor:
    """
    Loads the model once and reconstructs frames.

    Frames use the settings of a :class:`MonoPortConfig`.
    """

    def __init__(self, config: MonoPortConfig, net: MonoPortNet | None = None) -> None:
        config.validate()
        self.config = config
        self.geometry_device = resolve_device(config.geometry_device, config.device_fallback)
        self.color_device = resolve_device(config.color_device, config.device_fallback)
        if net is None:
            from .model_file import load_model
            net = load_model(model_path(config))
        geo_dtype = resolve_precision(config.precision, self.geometry_device)
        col_dtype = resolve_precision(config.precision, self.color_device)
        self.geo_net = _prepared(net, self.geometry_device, geo_dtype)
        same = self.color_device == self.geometry_device and col_dtype == geo_dtype
        self.col_net = self.geo_net if same else _prepared(net, self.color_device, col_dtype)
        self._segmenter = None
        self._buffers = VolumeBuffers()
        self._memory = SurfaceMemory()

    def close(self) -> None:
        """Release the segmenter (MediaPipe's graph threads keep a process alive otherwise)."""
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def __enter__(self) -> 'Reconstructor':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def arithmetic(self) -> tuple[str, str]:
        """Name the number types of the geometry and colour networks (``precision`` resolved)."""
        return tuple(str(net.compute_dtype).replace('torch.', '')
                     for net in (self.geo_net, self.col_net))

    @property
    def octree_levels(self) -> int:
        """Localization levels in use (``octree_depth``, with 0 = auto resolved for the device)."""
        return self.config.localization_levels(self.geometry_device.type)

    @property
    def image_size(self) -> int:
        """Side of the network's square input crop."""
        return self.geo_net.cfg.image_size

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings; model and devices are fixed for the Reconstructor's life."""
        check_runtime_change(self.config, config)
        self.config = config

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Boolean mask of the main (largest) person."""
        return self.segment_with_pose(rgb)[0]

    def segment_with_pose(self, rgb: np.ndarray) -> tuple[np.ndarray, BodyPose | None]:
        """Boolean mask of the main person and its body pose (None: no landmarks)."""
        if not self.config.segmentation:
            return largest_component(rgb.max(axis=2) > PREMASKED_LEVEL), None
        if self._segmenter is None:
            from .segmentation import PersonSegmenter
            self._segmenter = PersonSegmenter(model=self.config.segmentation_model,
                                              video=self.config.segmentation_tracking)
        found = self._segmenter.segment_with_pose(rgb)
        return found.mask, found.pose

    def prepare(self, rgb: np.ndarray) -> PreparedFrame:
        """Segmentation, body pose and person crop (the first stage; CPU only)."""
        check_image(rgb, self.config.segmentation)
        t0 = time.perf_counter()
        mask, pose = self.segment_with_pose(rgb)
        frame = self.prepare_person(rgb, mask, pose)
        frame.timings_ms['segment'] = (time.perf_counter() - t0) * 1e3
        return frame

    def prepare_person(self, rgb: np.ndarray, mask: np.ndarray, pose: BodyPose | None = None,
                       track_id: int = 0) -> PreparedFrame:
        """Crop one segmented person of ``rgb`` (``mask`` (H, W) bool; under 64 px: nobody)."""
        frame = PreparedFrame(mask, pose=pose, track_id=track_id)
        if mask.sum() >= 64:
            crop_img, crop_mask, crop = crop_person(rgb, mask, self.image_size)
            frame.crop_image, frame.crop_mask, frame.crop = crop_img, crop_mask, crop
            rows = np.flatnonzero(mask.any(axis=1))
            frame.person_height_px = float(rows[-1] - rows[0] + 1)
        return frame

    @torch.inference_mode()
    def geometry(self, frame: np.ndarray | PreparedFrame) -> GeometryResult:
        """Surface features and localized occupancy volume (of an RGB image or prepared frame)."""
        if not isinstance(frame, PreparedFrame):
            frame = self.prepare(frame)
        cfg = self.config
        mask, times = frame.mask, dict(frame.timings_ms)
        if frame.crop is None:
            return GeometryResult(False, mask, timings_ms=times, track_id=frame.track_id)
        crop_img, crop_mask, crop = frame.crop_image, frame.crop_mask, frame.crop
        t1 = time.perf_counter()
        dev = self.geometry_device
        image = torch.from_numpy(crop_img).permute(2, 0, 1)[None].contiguous()
        if dev.type == 'cuda':      # page-locked: the copy can overlap the previous frame
            image = image.pin_memory()
        image = image.to(dev, non_blocking=True)
        # on a GPU the encoder only queues work: CUDA events time it without a host sync
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] \
            if dev.type == 'cuda' else []
        if events:
            events[0].record(torch.cuda.current_stream(dev))
        views = averaged_views(cfg.mirror_average, cfg.shift_average, image.shape[-1])
        if len(views) > 1:      # one encoder pass over every view of the crop
            feats_all = self.geo_net.encode_surface(view_images(image, views))
            feats = feats_all[:1]
            view_scale, view_offset = view_point_maps(
                views, image.shape[-2:], feats_all.shape[-2:], self.geo_net.cfg.align_corners,
                dev)
        else:
            feats = self.geo_net.encode_surface(image)
        if events:
            events[1].record(torch.cuda.current_stream(dev))
        hull_np = visual_hull_mask(crop_mask)
        hull = torch.from_numpy(hull_np)[None, None].to(dev)
        net = self.geo_net
        pose = pose_views = None
        model_pose = frame.model_pose() if net.pose_dim else None
        if model_pose is not None:     # the bones once per frame, not per network call
            pose = torch.from_numpy(model_pose)[None].to(dev)
            if len(views) > 1:          # each view sees the pose where its map puts it
                pose_views = skeleton(map_pose(pose, view_scale, view_offset))
            pose = skeleton(pose)
        t2 = time.perf_counter()

        def query(pts: torch.Tensor) -> torch.Tensor:
            pts = pts.to(dev)
            in_hull = sample_features(hull, pts[None, :, :2], mode='nearest')[0, :, 0] > 0.5
            out = torch.zeros(pts.shape[0], device=dev)
            if bool(in_hull.any()):     # the net is only asked inside the visual hull
                p = pts[in_hull][None]
                if len(views) > 1:      # each view sees the point where its map puts it
                    out[in_hull] = net.occupancy(feats_all, p * view_scale + view_offset,
                                                 pose_views).mean(0)
                else:
                    out[in_hull] = net.occupancy(feats, p, pose)[0]
            return out

        # the volume lives on the geometry device (the localization's bookkeeping runs there)
        volume = localize_surface(query, cfg.resolution, self.octree_levels, cfg.threshold,
                                  region=hull_region(hull_np, cfg.resolution),
                                  buffers=self._buffers.take(cfg.resolution, dev), device=dev)
        t3 = time.perf_counter()
        encode_ms = (t2 - t1) * 1e3
        if events:      # localization has synchronized already: the encoder is done
            events[1].synchronize()
            encode_ms = max(encode_ms, events[0].elapsed_time(events[1]))
        times.update(encode=encode_ms, localize=(t3 - t1) * 1e3 - encode_ms)
        return GeometryResult(True, mask, crop, image, feats, volume, frame.person_height_px,
                              times, crop_mask, frame.pose, frame.track_id)

    @torch.inference_mode()
    def finish_surface(self, geo: GeometryResult,
                       memory: SurfaceMemory | None = None) -> dict[str, float]:
        """
        Clean the localized occupancy in place; returns each step's time in ms.

        Stray components removed (``largest_component``), then the silhouette filled where the
        net left the person's mask empty (``fill_silhouette``: limbs attach to the body first),
        then smoothed (``surface_smoothing``: the filled limbs as well), then blended with the
        previous frame's while the person stands still (``steady_surface``; ``memory``: that
        person's last surface, by default the one person's). It runs at the start of the colour
        stage, not in :meth:`geometry`: that balances the stages.
        """
        cfg, times = self.config, {}
        memory = self._memory if memory is None else memory
        if geo.volume is None:
            return times
        t0 = time.perf_counter()
        if cfg.pose_prior != 'none' and geo.pose is not None and geo.crop_mask is not None:
            body = PoseBody.fit(geo.pose.to_model(geo.crop), geo.crop_mask)
            if body is not None:
                apply_pose_prior(geo.volume, body, geo.crop_mask, cfg.pose_prior)
                times['pose_prior'] = (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()
        if cfg.largest_component:
            keep_largest_component(geo.volume)
            times['components'] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
        if cfg.fill_silhouette and geo.crop_mask is not None:
            fill_silhouette(geo.volume, geo.crop_mask)
            times['fill'] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
        if cfg.surface_smoothing > 0:
            smooth_volume(geo.volume, cfg.smoothing_sigma_voxels())
            times['smooth'] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
        if cfg.steady_surface and geo.crop is not None and geo.crop_mask is not None:
            memory.steady(geo.volume, geo.crop, geo.crop_mask)
            times['steady'] = (time.perf_counter() - t0) * 1e3
        else:
            memory.forget()
        return times

    @torch.inference_mode()
    def color(self, geo: GeometryResult, outputs: frozenset[str] = ALL_OUTPUTS,
              memory: SurfaceMemory | None = None) -> Reconstruction:
        """Run the colour stage: :meth:`finish_surface`, then colour, mesh, points, renderings."""
        cfg = self.config
        rec = Reconstruction(geo.person, geo.mask, geo.crop, geo.person_height_px,
                             timings_ms=dict(geo.timings_ms), pose=geo.pose,
                             track_id=geo.track_id)
        if not geo.person or geo.volume is None:
            (self._memory if memory is None else memory).forget()
            return rec
        rec.queries = geo.volume.queries
        rec.timings_ms.update(self.finish_surface(geo, memory))
        t0 = time.perf_counter()
        dev = self.color_device
        feats = geo.features.to(dev, non_blocking=True)
        feats_c = self.col_net.encode_color(geo.crop_image.to(dev, non_blocking=True))

        def color_fn(pts: torch.Tensor) -> torch.Tensor:
            out = [self.col_net.color(feats, feats_c, p.to(dev)[None])[0]
                   for p in pts.split(65536)]
            return torch.cat(out) if out else torch.zeros((0, 3), device=dev)

        t1 = time.perf_counter()
        color_ms = (t1 - t0) * 1e3
        if outputs & {'mesh', 'points'}:
            points = mesh = None
            budget = cfg.mesh_max_triangles
            full_mesh_wanted = 'mesh' in outputs and budget <= 0
            if points_from_edge_crossings(geo.volume) and not full_mesh_wanted:
                points = surface_points(geo.volume)
                if 'mesh' in outputs and 2 * len(points) <= budget:
                    points = None       # the full mesh is made anyway: its vertices are points
            if points is None:
                mesh = extract_mesh(geo.volume)
            if 'mesh' in outputs:
                small = mesh_within_budget(geo.volume, mesh, budget,
                                           triangles=0 if points is None else 2 * len(points))
                rec.vertices, rec.faces = small.vertices, small.faces
            t2 = time.perf_counter()
            if 'points' in outputs:
                if points is None:
                    points = torch.from_numpy(mesh.vertices)
                rec.points = points.cpu().numpy()
                rec.point_colors = color_fn(points).cpu().numpy()
                if 'mesh' in outputs and small is mesh:
                    rec.vertex_colors = rec.point_colors
            if 'mesh' in outputs and len(rec.vertex_colors) != len(rec.vertices):
                rec.vertex_colors = color_fn(torch.from_numpy(rec.vertices)).cpu().numpy()
            color_ms += (time.perf_counter() - t2) * 1e3
            rec.timings_ms['mesh'] = (t2 - t1) * 1e3
        if 'views' in outputs:
            t4 = time.perf_counter()
            for view in cfg.render_views:
                r = render_view(geo.volume, view_yaw(view), cfg.render_size, color_fn)
                rec.views[view] = r.color
                rec.normal_views[view] = r.normals
            rec.timings_ms['render'] = (time.perf_counter() - t4) * 1e3
        rec.timings_ms['color'] = color_ms
        return rec

    def warm_up(self) -> bool:
        """
        Reconstruct a bundled sample person once (every output), then clear the segmenter's state.

        A process's first frame costs more than the rest: the segmentation graph's first run, the
        kernels' first calls, the allocator's first volumes (on this 2-core CPU 145 against 95 ms
        and about 160 MB of resident memory). Pipelines call this before they take frames, so
        that a stream's first result is as quick as the next and the memory reached is the
        working one. A frame without a person follows, so that a tracking segmenter starts the
        real stream afresh (as after a cut). Returns False, with a logged warning, where the
        settings cannot reconstruct it (e.g. out of memory): frames will then fail and be counted
        until the settings change, as they would without a warm-up.
        """
        try:
            rgb = cv2.imread(str(WARM_UP_IMAGE))
            if rgb is None:
                raise FileNotFoundError(f'cannot read {WARM_UP_IMAGE}')
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
            try:
                geo = self.geometry(rgb)
                self.color(geo)
                self.recycle(geo)
            finally:
                self.prepare(np.zeros_like(rgb))
                self._memory.forget()
        except Exception as exc:    # noqa: BLE001 - any failure here is a frame's failure later
            LOG.warning('warm-up frame failed (%s: %s); going on without it',
                        type(exc).__name__, exc)
            return False
        return True

    def recycle(self, geo: GeometryResult) -> None:
        """
        Reuse the volume of ``geo`` for a later frame (saves allocating one per frame).

        For a consumer that drops ``geo`` after :meth:`color` (the pipeline does); ``geo`` loses
        its volume.
        """
        if geo.volume is not None:
            self._buffers.give_back(geo.volume)
            geo.volume = None

    def reconstruct(self, rgb: np.ndarray,
                    outputs: frozenset[str] | set[str] = ALL_OUTPUTS) -> Reconstruction:
        """Both stages on one frame."""
        outputs = frozenset(outputs)
        return self.color(self.geometry(rgb), outputs)
