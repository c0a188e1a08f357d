"""
Single-image reconstruction: image -> person crop -> features -> occupancy -> surface -> outputs.

Split in two stages so that they can run on two devices and overlap between frames
(:mod:`monoport_ros.core.pipeline`): :meth:`Reconstructor.geometry` (segmentation, surface encoder,
surface localization on ``geometry_device``) and :meth:`Reconstructor.color` (colour encoder,
meshing, vertex colours, direct rendering on ``color_device``).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .camera import PersonCrop
from .config import MonoPortConfig, view_yaw
from .localization import LocalizedVolume, keep_largest_component, localize_surface
from .meshing import extract_mesh, mesh_within_budget
from .networks import MonoPortNet, sample_features
from .preprocess import check_rgb, crop_person, largest_component
from .rendering import render_view
from .segmentation import MIN_SIDE

LOG = logging.getLogger(__name__)
ALL_OUTPUTS = frozenset({'points', 'mesh', 'views', 'mask'})
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / 'models' / 'default.safetensors'
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


def model_path(config: MonoPortConfig) -> Path:
    """Return the checkpoint a config asks for (the shipped default model when empty)."""
    return Path(config.checkpoint).expanduser() if config.checkpoint else DEFAULT_MODEL


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
            from .checkpoint import load_model
            net = load_model(model_path(config))
        self.geo_net = net.to(self.geometry_device).eval()
        self.col_net = self.geo_net if self.color_device == self.geometry_device else \
            copy.deepcopy(net).to(self.color_device).eval()
        self._segmenter = None

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
    def image_size(self) -> int:
        """Side of the network's square input crop."""
        return self.geo_net.cfg.image_size

    def update_config(self, config: MonoPortConfig) -> None:
        """Apply run-time settings; model and devices are fixed for the Reconstructor's life."""
        config.validate()
        for name in ('checkpoint', 'geometry_device', 'color_device', 'segmentation_model',
                     'segmentation_tracking'):
            if getattr(config, name) != getattr(self.config, name):
                raise ValueError(f'{name} cannot change at run time; restart with the new value')
        self.config = config

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Boolean mask of the main (largest) person."""
        if not self.config.segmentation:
            return largest_component(rgb.max(axis=2) > PREMASKED_LEVEL)
        if self._segmenter is None:
            from .segmentation import PersonSegmenter
            self._segmenter = PersonSegmenter(model=self.config.segmentation_model,
                                              video=self.config.segmentation_tracking)
        return self._segmenter.segment(rgb)

    @torch.inference_mode()
    def geometry(self, rgb: np.ndarray, outputs: frozenset[str] = ALL_OUTPUTS) -> GeometryResult:
        """Segmentation, crop, surface features and localized occupancy volume."""
        check_image(rgb, self.config.segmentation)
        cfg = self.config
        t0 = time.perf_counter()
        mask = self.segment(rgb)
        t1 = time.perf_counter()
        times = {'segment': (t1 - t0) * 1e3}
        if mask.sum() < 64:
            return GeometryResult(False, mask, timings_ms=times)
        crop_img, crop_mask, crop = crop_person(rgb, mask, self.image_size)
        rows = np.flatnonzero(mask.any(axis=1))
        dev = self.geometry_device
        image = torch.from_numpy(crop_img).permute(2, 0, 1)[None].to(dev)
        feats = self.geo_net.encode_surface(image)
        hull = torch.from_numpy(visual_hull_mask(crop_mask))[None, None].to(dev)
        t2 = time.perf_counter()
        net = self.geo_net

        def query(pts: torch.Tensor) -> torch.Tensor:
            pts = pts.to(dev)
            in_hull = sample_features(hull, pts[None, :, :2], mode='nearest')[0, :, 0] > 0.5
            out = torch.zeros(pts.shape[0], device=dev)
            if bool(in_hull.any()):     # the net is only asked inside the visual hull
                out[in_hull] = net.occupancy(feats, pts[in_hull][None])[0]
            return out

        volume = localize_surface(query, cfg.resolution, cfg.octree_depth, cfg.threshold)
        if cfg.largest_component:
            keep_largest_component(volume)
        t3 = time.perf_counter()
        times.update(encode=(t2 - t1) * 1e3, localize=(t3 - t2) * 1e3)
        return GeometryResult(True, mask, crop, image, feats, volume,
                              float(rows[-1] - rows[0] + 1), times)

    @torch.inference_mode()
    def color(self, geo: GeometryResult, outputs: frozenset[str] = ALL_OUTPUTS) -> Reconstruction:
        """Colour features, mesh with vertex colours, and direct renderings."""
        cfg = self.config
        rec = Reconstruction(geo.person, geo.mask, geo.crop, geo.person_height_px,
                             timings_ms=dict(geo.timings_ms))
        if not geo.person or geo.volume is None:
            return rec
        rec.queries = geo.volume.queries
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
            mesh = extract_mesh(geo.volume)
            if 'mesh' in outputs:
                small = mesh_within_budget(geo.volume, mesh, cfg.mesh_max_triangles)
                rec.vertices, rec.faces = small.vertices, small.faces
            t2 = time.perf_counter()
            if 'points' in outputs:
                rec.points = mesh.vertices
                rec.point_colors = color_fn(torch.from_numpy(mesh.vertices)).cpu().numpy()
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

    def reconstruct(self, rgb: np.ndarray,
                    outputs: frozenset[str] | set[str] = ALL_OUTPUTS) -> Reconstruction:
        """Both stages on one frame."""
        outputs = frozenset(outputs)
        return self.color(self.geometry(rgb, outputs), outputs)
