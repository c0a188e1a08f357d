"""
Real-image benchmark: one-camera reconstructions scored by their silhouettes in the other cameras.

The data is pose2sim's ``Demo_SinglePerson`` (PyPI ``pose2sim``, BSD-3-Clause): four synchronised
cameras with a Qualisys calibration (``calibration/Calib.qca.txt``) filming one real person. For a
frame and a source camera, the person is reconstructed from that camera alone, placed in it by
weak perspective (:meth:`core.camera.PinholeCamera.model_to_optical`, which leaves the distance
along the optical axis unknown), ray-cast into the other three cameras and scored by the IoU of
its silhouette with the person's mask there, at the distance that scores best (a 1-D search, one
distance for the three views). Beside it: the source mask extruded to the best constant thickness
(the baseline) and the visual hull carved from all four masks (the self-check: its silhouettes
must agree with the masks, ~0.9 and above, or the calibration or the projection is wrong).

Conventions (as pose2sim's ``calibration.read_qca`` / ``common.world_to_camera_persp`` /
``rotate_cam`` convert them; read, not copied): the ``transform`` rows r1*, r2*, r3* are the
camera's axes in the world, x/y/z its centre in mm; OpenCV's camera frame is that one turned by
pi about x. Focal lengths, principal points and the distortion coefficients are stored in 1/64
pixel units; the principal point is relative to the ``fov_video`` corner. Cameras here use
OpenCV pixel coordinates (pixel centres on integers).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from scipy.optimize import least_squares, minimize_scalar
from skimage.measure import marching_cubes

from ..core.body_pose import BodyPose
from ..core.camera import PersonCrop, PinholeCamera
from ..core.config import PRIOR_MODES
from ..core.o3d import o3d
from ..core.preprocess import CROP_FILL, largest_component

CALIBRATION = Path('calibration') / 'Calib.qca.txt'
GET_DATA = ('get it with: pip download --no-deps pose2sim -d data/pose2sim && '
            'unzip -q -o data/pose2sim/pose2sim-*.whl -d data/pose2sim/wheel, then pass '
            'data/pose2sim/wheel/Pose2Sim/Demo_SinglePerson')
SUBPIXEL = 64.0             # Qualisys stores intrinsics in 1/64 pixel
THREADS = 1                 # Open3D ray-casting threads (the machine's cores are shared)
VISIBLE = 0.7               # BlazePose visibility above which a landmark is used
# cam01 and cam02's videos are 1080 px wide against a 1088 px calibration. Of three readings, the
# video as the calibration's left 1080 columns (cut on the right) gave the lowest reprojection
# error of BlazePose landmarks triangulated from the other views (median px, cam01-04, 20
# frames): 28.5 15.9 32.4 21.1; cut evenly on both sides 30.5 15.0 34.9 22.1; rescaled 30.6 15.0
# 35.4 21.8. (Distortion as pose2sim reads it, /64, against x64 or none: within 0.2 px.)
WIDTH_CUT_CENTRED = False


# --- cameras -----------------------------------------------------------------------------------

@dataclass(eq=False)
class Camera:
    """
    Calibrated pinhole camera with lens distortion, OpenCV conventions.

    ``R``, ``t`` map world points (metres) to the camera frame (x right, y down, z forward);
    ``dist`` is OpenCV's (k1, k2, p1, p2).
    """

    name: str
    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """Optical centre in the world."""
        return -self.R.T @ self.t

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera frame."""
        return np.asarray(points, np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2), distortion included."""
        pts = np.asarray(points, np.float64).reshape(-1, 1, 3)
        if pts.shape[0] == 0:
            return np.zeros((0, 2))
        uv, _ = cv2.projectPoints(pts, cv2.Rodrigues(self.R)[0], self.t, self.K, self.dist)
        return uv.reshape(-1, 2)

    def normalised(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) -> undistorted normalised image coordinates (N, 2)."""
        pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
        return cv2.undistortPoints(pts, self.K, self.dist).reshape(-1, 2)

    @cached_property
    def rays(self) -> np.ndarray:
        """World direction of the ray through every pixel centre: (height, width, 3) float64."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        xy = self.normalised(np.stack([u.ravel(), v.ravel()], axis=1))
        d = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ self.R
        return d.reshape(self.height, self.width, 3)

    def rotated(self, rvec: np.ndarray) -> 'Camera':
        """Return the camera turned about its centre by ``rvec`` (small, in the camera frame)."""
        r = cv2.Rodrigues(np.asarray(rvec, np.float64))[0] @ self.R
        return Camera(self.name, self.width, self.height, self.K, self.dist, r,
                      -r @ self.centre)

    def for_image(self, width: int, height: int) -> 'Camera':
        """
        Return this camera for images ``width`` x ``height``: scaled by the heights' ratio.

        A narrower image (cam01, cam02: 1080 against 1088 px) is the calibrated frame cut
        evenly on both sides (``WIDTH_CUT_CENTRED``) or on the right.
        """
        s = height / self.height
        k = self.K.copy()
        k[0, 0] *= s
        k[1, 1] *= s
        k[0, 2] = s * (k[0, 2] + 0.5) - 0.5
        k[1, 2] = s * (k[1, 2] + 0.5) - 0.5
        cut = s * self.width - width
        if abs(cut) > max(0.02 * width, 1.0) + 8 * s:
            raise ValueError(f'{self.name}: image {width}x{height} does not match the '
                             f'calibrated {self.width}x{self.height}')
        if WIDTH_CUT_CENTRED:
            k[0, 2] -= cut / 2.0
        return Camera(self.name, width, height, k, self.dist, self.R, self.t)

    def pinhole(self) -> PinholeCamera:
        """Intrinsics as the project's :class:`PinholeCamera` (pixel centres at +0.5)."""
        return PinholeCamera(self.width, self.height, float(self.K[0, 0]), float(self.K[1, 1]),
                             float(self.K[0, 2]) + 0.5, float(self.K[1, 2]) + 0.5)


def _floats(tag: ET.Element, keys: Sequence[str], where: str) -> list[float]:
    """Numeric attributes ``keys`` of ``tag`` (ValueError naming the first missing or bad)."""
    out = []
    for key in keys:
        value = tag.get(key)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f'{where}: attribute {key!r} missing or not a number '
                             f'({value!r})') from None
        if not math.isfinite(number):
            raise ValueError(f'{where}: attribute {key!r} is not finite')
        out.append(number)
    return out


def read_qca(path: str | Path) -> list[Camera]:
    """
    Cameras of a Qualisys ``.qca.txt`` calibration, sorted by name.

    Raises FileNotFoundError for a missing file and ValueError for a malformed one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: calibration file not found')
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f'{path}: not a Qualisys calibration (bad XML: {exc})') from None
    cameras = []
    for i, tag in enumerate(root.findall('cameras/camera')):
        name = tag.get('serial') or f'camera{i}'
        where = f'{path}: camera {name}'
        parts = {k: tag.find(k) for k in ('fov_video', 'transform', 'intrinsic')}
        missing = [k for k, v in parts.items() if v is None]
        if missing:
            raise ValueError(f'{where}: no <{missing[0]}> element')
        left, top, right, bottom = _floats(parts['fov_video'], ('left', 'top', 'right', 'bottom'),
                                           where)
        width, height = int(right - left + 1), int(bottom - top + 1)
        if width <= 0 or height <= 0:
            raise ValueError(f'{where}: empty fov_video')
        fu, fv, cu, cv, k1, k2, p1, p2 = (v / SUBPIXEL for v in _floats(
            parts['intrinsic'], ('focalLengthU', 'focalLengthV', 'centerPointU', 'centerPointV',
                                 'radialDistortion1', 'radialDistortion2',
                                 'tangentalDistortion1', 'tangentalDistortion2'), where))
        if fu <= 0 or fv <= 0:
            raise ValueError(f'{where}: focal lengths must be positive')
        k = np.array([[fu, 0.0, cu - left], [0.0, fv, cv - top], [0.0, 0.0, 1.0]])
        values = _floats(parts['transform'], [f'r{a}{b}' for a in '123' for b in '123']
                         + ['x', 'y', 'z'], where)
        axes = np.array(values[:9]).reshape(3, 3)
        if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-4) or np.linalg.det(axes) < 0:
            raise ValueError(f'{where}: transform r11..r33 is not a rotation')
        r = np.diag([1.0, -1.0, -1.0]) @ axes        # Qualisys camera frame -> OpenCV's
        centre = np.array(values[9:]) / 1000.0
        cameras.append(Camera(name, width, height, k, np.array([k1, k2, p1, p2]), r,
                              -r @ centre))
    if not cameras:
        raise ValueError(f'{path}: no <cameras>/<camera> elements')
    return sorted(cameras, key=lambda c: c.name)


# --- the data set ------------------------------------------------------------------------------

@dataclass
class MultiviewData:
    """A calibrated multi-camera sequence: videos ``videos/<cam>.*`` or stills ``frames/``."""

    root: Path
    cameras: list[Camera]           # adapted to the images' size
    sources: dict[str, Path | list[Path]]
    n_frames: int
    stored: dict[str, list[PersonView]] | None = None      # masks/ and landmarks.json, if any

    def frames(self, indices: Sequence[int]) -> dict[int, list[np.ndarray]]:
        """RGB images of each camera at ``indices``: {index: [image per camera]}."""
        wanted = sorted(set(int(i) for i in indices))
        out: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
        for cam in self.cameras:
            src = self.sources[cam.name]
            if isinstance(src, list):
                for i in wanted:
                    out[i].append(_read_rgb(src[i]))
                continue
            cap = cv2.VideoCapture(str(src))
            try:
                pos = 0
                for i in wanted:        # sequential reading: seeking in an mp4 is not exact
                    while pos < i:
                        cap.grab()
                        pos += 1
                    ok, bgr = cap.read()
                    pos += 1
                    if not ok:
                        raise ValueError(f'{src}: cannot read frame {i}')
                    out[i].append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            finally:
                cap.release()
        return out


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: not a readable image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_data(data_dir: str | Path) -> MultiviewData:
    """
    Open a pose2sim-style folder: ``calibration/Calib.qca.txt`` and ``videos/<cam>.mp4``.

    Instead of videos, ``frames/<cam>_<index>.jpg|png`` (the test fixtures) also work.
    FileNotFoundError, saying how to get the data, where it is absent.
    """
    root = Path(data_dir)
    if not (root / CALIBRATION).is_file():
        raise FileNotFoundError(f'{root}: no {CALIBRATION} here (pose2sim\'s Demo_SinglePerson '
                                f'is expected); {GET_DATA}')
    cameras = read_qca(root / CALIBRATION)
    adapted, sources, counts = [], {}, []
    for cam in cameras:
        videos = sorted((root / 'videos').glob(f'{cam.name}.*'))
        stills = sorted((root / 'frames').glob(f'{cam.name}_*.*'),
                        key=lambda p: int(re.findall(r'\d+', p.stem)[-1]))
        if videos:
            cap = cv2.VideoCapture(str(videos[0]))
            size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            counts.append(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            cap.release()
            if min(size) <= 0:
                raise ValueError(f'{videos[0]}: not a readable video')
            sources[cam.name] = videos[0]
        elif stills:
            h, w = _read_rgb(stills[0]).shape[:2]
            size = (w, h)
            counts.append(len(stills))
            sources[cam.name] = stills
        else:
            raise FileNotFoundError(f'{root}: no video or frames of camera {cam.name} '
                                    f'(videos/{cam.name}.mp4); {GET_DATA}')
        adapted.append(cam.for_image(*size))
    if len(adapted) < 2:
        raise ValueError(f'{root}: a multi-view benchmark needs at least 2 cameras')
    return MultiviewData(root, adapted, sources, min(counts), _stored_views(root, adapted))


def _stored_views(root: Path, cameras: Sequence[Camera]) -> dict[str, list[PersonView]] | None:
    """Masks ``masks/<cam>_<index>.png`` (and ``landmarks.json``) stored beside still frames."""
    if not (root / 'masks').is_dir():
        return None
    marks = {}
    if (root / 'landmarks.json').is_file():
        marks = json.loads((root / 'landmarks.json').read_text())
    out = {}
    for cam in cameras:
        files = sorted((root / 'masks').glob(f'{cam.name}_*.png'),
                       key=lambda p: int(re.findall(r'\d+', p.stem)[-1]))
        views = []
        for k, f in enumerate(files):
            m = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if m is None or m.shape != (cam.height, cam.width):
                raise ValueError(f'{f}: not a {cam.width}x{cam.height} mask image')
            lm = marks.get(cam.name, [None] * len(files))[k]
            views.append(PersonView(m > 127, None if lm is None else np.array(lm, np.float64)))
        out[cam.name] = views
    return out


# --- masks and landmarks -----------------------------------------------------------------------

@dataclass
class PersonView:
    """The person in one image: boolean mask and BlazePose landmarks (33, 3: u, v, visibility)."""

    mask: np.ndarray
    landmarks: np.ndarray | None = None
    pose: BodyPose | None = None        # the same landmarks with world ones (the pose prior's)


class BodyDetector:
    """
    BlazePose full (MediaPipe's pose solution, the project's segmentation model): mask + landmarks.

    The benchmark calls MediaPipe itself because the project's segmenter returns the mask only.
    Of the mask's connected parts it keeps the one holding most visible landmarks (a bystander
    walks through cam01 and cam02).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        from mediapipe.python.solutions import pose

        self.threshold = threshold
        self._graph = pose.Pose(static_image_mode=True, model_complexity=1,
                                enable_segmentation=True)

    def __call__(self, rgb: np.ndarray) -> PersonView:
        """Detect the person in ``rgb`` ((H, W, 3) uint8)."""
        h, w = rgb.shape[:2]
        result = self._graph.process(np.ascontiguousarray(rgb))
        if result.segmentation_mask is None or result.pose_landmarks is None:
            return PersonView(np.zeros((h, w), bool))
        lm = np.array([[p.x * w - 0.5, p.y * h - 0.5, p.visibility]
                       for p in result.pose_landmarks.landmark])
        mask = np.asarray(result.segmentation_mask) > self.threshold
        return PersonView(keep_part_with_landmarks(mask, lm), lm,
                          BodyPose.from_mediapipe(result, w, h))

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._graph.close()


def keep_part_with_landmarks(mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Keep the 8-connected part of ``mask`` with most visible ``landmarks`` (or the largest)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    vis = landmarks[landmarks[:, 2] > VISIBLE]
    u = np.clip(np.round(vis[:, 0]).astype(int), 0, mask.shape[1] - 1)
    v = np.clip(np.round(vis[:, 1]).astype(int), 0, mask.shape[0] - 1)
    votes = np.bincount(labels[v, u], minlength=n)[1:]
    if votes.max() == 0:
        return largest_component(mask)
    return labels == 1 + int(np.argmax(votes))


def downscale_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask resized to ``width`` x ``height`` (area average > 0.5)."""
    if mask.shape == (height, width):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0.5


# --- rasterising -------------------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class Rasteriser:
    """
    Silhouettes of one triangle mesh in calibrated cameras, by Open3D ray casting.

    The mesh stays in its own coordinates ``p``; a placement ``X = A p + b`` (any invertible
    affine map to the world) is applied to the rays instead (hits are invariant under it), so
    one scene serves every distance, thickness and tilt of a search.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        v = np.asarray(vertices, np.float32)
        f = np.asarray(faces, np.uint32)
        if len(v) == 0 or len(f) == 0:
            raise ValueError('empty mesh: nothing to rasterise')
        self.vertices = v.astype(np.float64)
        self.scene = o3d.t.geometry.RaycastingScene(nthreads=THREADS)
        self.scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))

    def silhouette(self, camera: Camera, a: np.ndarray | None = None,
                   b: np.ndarray | None = None) -> np.ndarray:
        """Boolean (height, width) mask of the pixels whose ray meets the placed mesh."""
        a = np.eye(3) if a is None else np.asarray(a, np.float64)
        b = np.zeros(3) if b is None else np.asarray(b, np.float64)
        out = np.zeros((camera.height, camera.width), bool)
        world = self.vertices @ a.T + b
        if (camera.to_camera(world)[:, 2] > 1e-3).all():    # only the mesh's box needs rays
            uv = camera.project(world)
            u0, v0 = np.floor(uv.min(axis=0)).astype(int) - 1
            u1, v1 = np.ceil(uv.max(axis=0)).astype(int) + 2
            u0, v0 = max(u0, 0), max(v0, 0)
            u1, v1 = min(u1, camera.width), min(v1, camera.height)
            if u1 <= u0 or v1 <= v0:
                return out
        else:
            u0, v0, u1, v1 = 0, 0, camera.width, camera.height
        inv = np.linalg.inv(a)
        dirs = camera.rays[v0:v1, u0:u1].reshape(-1, 3) @ inv.T
        origin = inv @ (camera.centre - b)
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=1)
        hit = self.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)),
                                   nthreads=THREADS)['t_hit'].numpy()
        out[v0:v1, u0:u1] = np.isfinite(hit).reshape(v1 - v0, u1 - u0)
        return out


# --- weak-perspective placement and the distance search ----------------------------------------

def weak_perspective(camera: Camera, crop: PersonCrop, distance: float,
                     model: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """
    Affine map ``X = A p + b`` from model space to the world, the crop ``distance`` m away.

    Model space as in :mod:`core.camera` (the crop's orthographic cube); ``model`` (3x3) is
    applied to model points first (a thickness scale, a tilt).
    """
    pinhole = camera.pinhole()
    basis = np.concatenate([np.zeros((1, 3)), np.eye(3)])
    optical = pinhole.model_to_optical(crop, basis, distance)
    a_cam = (optical[1:] - optical[0]).T
    if model is not None:
        a_cam = a_cam @ model
    return camera.R.T @ a_cam, camera.R.T @ (optical[0] - camera.t)


@dataclass
class Placement:
    """Best placement found for one reconstruction: distance, IoU per target view."""

    distance: float
    ious: list[float]
    thickness: float | None = None
    tilt_deg: float | None = None

    @property
    def mean(self) -> float:
        """Mean IoU over the target views."""
        return float(np.mean(self.ious))


Targets = Sequence[tuple[Camera, np.ndarray]]


def score(raster: Rasteriser, source: Camera, crop: PersonCrop, targets: Targets,
          distance: float, model: np.ndarray | None = None) -> list[float]:
    """Score the placed mesh: the IoU of its silhouette with each target mask."""
    a, b = weak_perspective(source, crop, distance, model)
    return [iou(raster.silhouette(cam, a, b), mask) for cam, mask in targets]


def search_distance(objective: Callable[[float], float], lo: float, hi: float,
                    steps: int = 16) -> tuple[float, float]:
    """
    Maximise ``objective`` over distances in [lo, hi]: log grid, then golden section.

    Returns (distance, objective value).
    """
    grid = np.geomspace(lo, hi, steps)
    values = [objective(float(d)) for d in grid]
    k = int(np.argmax(values))
    a, b = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, steps - 1)])
    res = minimize_scalar(lambda x: -objective(float(np.exp(x))), bounds=(a, b),
                          method='bounded', options={'xatol': 2e-3})
    if -res.fun >= values[k]:
        return float(np.exp(res.x)), float(-res.fun)
    return float(grid[k]), float(values[k])


def distance_bounds(source: Camera, mask: np.ndarray, height_m: float = 1.75,
                    factor: float = 2.5) -> tuple[float, float]:
    """Distances searched: ``factor`` either side of where a ``height_m`` tall mask would be."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ValueError('empty source mask')
    d = source.K[1, 1] * height_m / (rows[-1] - rows[0] + 1)
    return d / factor, d * factor


def best_placement(raster: Rasteriser, source: Camera, crop: PersonCrop, targets: Targets,
                   bounds: tuple[float, float], model: np.ndarray | None = None) -> Placement:
    """Find the distance (one for all targets) at which the mean IoU over them is highest."""
    cache: dict[float, list[float]] = {}

    def objective(d: float) -> float:
        cache[d] = score(raster, source, crop, targets, d, model)
        return float(np.mean(cache[d]))

    d, _ = search_distance(objective, *bounds)
    return Placement(d, cache[d])


def tilt_matrix(deg: float) -> np.ndarray:
    """
    Rotation of model space about its x axis (the camera's) by ``deg`` degrees.

    Positive angles turn the top (+y) towards the camera (+z).
    """
    r = math.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(r), -math.sin(r)],
                     [0.0, math.sin(r), math.cos(r)]])


def best_tilted_placement(raster: Rasteriser, source: Camera, crop: PersonCrop,
                          targets: Targets, bounds: tuple[float, float],
                          tilts: Sequence[float] = tuple(range(-30, 31, 10))) -> Placement:
    """Best placement over distance and a tilt about the camera's x axis (issue 26)."""
    best = None
    for deg in tilts:
        p = best_placement(raster, source, crop, targets, bounds, tilt_matrix(deg))
        if best is None or p.mean > best.mean:
            best = Placement(p.distance, p.ious, tilt_deg=float(deg))
    return best


# --- the extrusion baseline --------------------------------------------------------------------

def model_crop(mask: np.ndarray, size: int = 256) -> tuple[PersonCrop, np.ndarray]:
    """Return the crop the reconstruction would use for ``mask`` and the mask in it."""
    crop = PersonCrop.from_mask(mask, CROP_FILL)
    m = cv2.warpAffine(mask.astype(np.float32), crop.affine(size), (size, size),
                       flags=cv2.INTER_LINEAR)
    return crop, m > 0.5


def extrusion(crop_mask: np.ndarray, layers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """
    Crop mask extruded to unit thickness (z in [-0.5, 0.5]) in model space: (vertices, faces).

    Marching cubes on a binary volume; walls follow the pixel boundaries.
    """
    s = crop_mask.shape[0]
    vol = np.zeros((s + 2, s + 2, layers + 2), np.float32)
    vol[1:-1, 1:-1, 1:-1] = crop_mask[..., None]
    verts, faces, _, _ = marching_cubes(vol, level=0.5, allow_degenerate=False)
    row, col = verts[:, 0] - 1, verts[:, 1] - 1
    out = np.stack([2.0 * (col + 0.5) / s - 1.0, 1.0 - 2.0 * (row + 0.5) / s,
                    (verts[:, 2] - (layers + 1) / 2.0) / layers], axis=1)
    return out, faces


def best_extrusion(crop_mask: np.ndarray, source: Camera, crop: PersonCrop, targets: Targets,
                   bounds: tuple[float, float],
                   thicknesses: Sequence[float] = tuple(np.geomspace(0.04, 1.0, 8))) -> Placement:
    """Score the source mask extruded to the best constant thickness (model units)."""
    raster = Rasteriser(*extrusion(crop_mask))
    best = None
    for t in thicknesses:
        p = best_placement(raster, source, crop, targets, bounds, np.diag([1.0, 1.0, t]))
        if best is None or p.mean > best.mean:
            best = Placement(p.distance, p.ious, thickness=float(t))
    return best


def pose_body_mesh(crop_mask: np.ndarray, pose: BodyPose, crop: PersonCrop,
                   resolution: int = 128) -> tuple[np.ndarray, np.ndarray] | None:
    """
    Mesh the coarse body of the pose (:class:`core.pose_body.PoseBody`) in the mask's columns.

    Model-space (vertices, faces), or None where the pose has too few visible landmarks: what
    the landmarks alone say of the person's depth, beside the extrusion baseline.
    """
    import torch

    from ..core.completion import mask_on_grid
    from ..core.pose_body import column_points, PoseBody

    body = PoseBody.fit(pose.to_model(crop), crop_mask)
    if body is None:
        return None
    n = resolution + 1
    ix, iy = torch.from_numpy(mask_on_grid(crop_mask, resolution)).nonzero().unbind(1)
    pts = column_points(ix, iy, torch.arange(n), resolution)
    inside = torch.cat([body.distance(p) <= 0 for p in pts.split(65536)])
    vol = np.zeros((resolution + 3,) * 3, np.float32)
    vol[ix.numpy()[:, None] + 1, iy.numpy()[:, None] + 1, np.arange(n)[None] + 1] = \
        inside.reshape(len(ix), n).numpy()
    if vol.max() < 0.5:
        return None
    verts, faces, _, _ = marching_cubes(vol, level=0.5, allow_degenerate=False)
    return (verts - 1.0) * (2.0 / resolution) - 1.0, faces


# --- visual hull and calibration refit ---------------------------------------------------------

def triangulate(cameras: Sequence[Camera], uv: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """
    Points seen at pixels ``uv`` (C, N, 2) with ``weights`` (C, N) (0 = unseen): (N, 3).

    Linear N-view triangulation (DLT) on undistorted coordinates, hand-written because OpenCV's
    ``triangulatePoints`` takes two views only. Points seen in fewer than two views are NaN.
    """
    n = uv.shape[1]
    rows = np.zeros((n, 2 * len(cameras), 4))
    for c, cam in enumerate(cameras):
        xy = cam.normalised(uv[c])
        p = np.concatenate([cam.R, cam.t[:, None]], axis=1)
        w = weights[c][:, None]
        rows[:, 2 * c] = w * (xy[:, :1] * p[2] - p[0])
        rows[:, 2 * c + 1] = w * (xy[:, 1:] * p[2] - p[1])
    _, _, vt = np.linalg.svd(rows)
    x = vt[:, -1]
    out = x[:, :3] / x[:, 3:]
    out[(weights > 0).sum(axis=0) < 2] = np.nan
    return out


def mask_centroid_point(cameras: Sequence[Camera], masks: Sequence[np.ndarray]) -> np.ndarray:
    """Triangulate the masks' centroids: the person's rough centre in the world."""
    empty = [c.name for c, m in zip(cameras, masks) if not m.any()]
    if empty:
        raise ValueError(f'visual hull: no person in the mask of {", ".join(empty)}')
    uv = np.array([[np.argwhere(m).mean(axis=0)[::-1]] for m in masks])
    return triangulate(cameras, uv, np.ones((len(cameras), 1)))[0]


def _carve(cameras: Sequence[Camera], masks: Sequence[np.ndarray], lo: np.ndarray,
           hi: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (nx, ny, nz) of the voxel centres in [lo, hi] seen inside every mask; origin."""
    axes = [np.arange(a, b + voxel / 2, voxel) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
    inside = np.ones(len(grid), bool)
    for cam, mask in zip(cameras, masks):
        idx = np.flatnonzero(inside)
        uv = np.round(cam.project(grid[idx])).astype(int)
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        ok &= cam.to_camera(grid[idx])[:, 2] > 0
        keep = np.zeros(len(idx), bool)
        keep[ok] = mask[uv[ok, 1], uv[ok, 0]]
        inside[idx[~keep]] = False
    return inside.reshape([len(a) for a in axes]), np.array([a[0] for a in axes])


def visual_hull(cameras: Sequence[Camera], masks: Sequence[np.ndarray], voxel: float = 0.01,
                half_size: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
    """
    Mesh (world vertices, faces) of the voxels that project inside every mask.

    Carved on a grid 4 ``voxel`` coarse in a cube of ``half_size`` m about the masks'
    triangulated centroid, then at ``voxel`` in the box of what is left.
    """
    centre = mask_centroid_point(cameras, masks)
    if not np.isfinite(centre).all():
        raise ValueError('visual hull: the masks do not triangulate to a point')
    coarse = 4 * voxel
    occ, origin = _carve(cameras, masks, centre - half_size, centre + half_size, coarse)
    if not occ.any():
        raise ValueError('visual hull is empty: the masks do not agree anywhere')
    idx = np.argwhere(occ)
    lo = origin + (idx.min(axis=0) - 1.5) * coarse
    hi = origin + (idx.max(axis=0) + 1.5) * coarse
    occ, origin = _carve(cameras, masks, lo, hi, voxel)
    verts, faces, _, _ = marching_cubes(np.pad(occ.astype(np.float32), 1), level=0.5,
                                        allow_degenerate=False)
    return (verts - 1.0) * voxel + origin, faces


def hull_ious(cameras: Sequence[Camera], masks: Sequence[np.ndarray], **kw: Any) -> list[float]:
    """Score the visual hull: the IoU of its silhouette with each camera's mask."""
    raster = Rasteriser(*visual_hull(cameras, masks, **kw))
    return [iou(raster.silhouette(cam), mask) for cam, mask in zip(cameras, masks)]


def refit_rotations(cameras: Sequence[Camera], landmarks: np.ndarray, passes: int = 2,
                    max_deg: float = 5.0) -> tuple[list[Camera], dict[str, Any]]:
    """
    Re-fit one small rotation per camera to BlazePose landmarks (F, C, 33, 3: u, v, visibility).

    For each camera the landmarks are triangulated from the other cameras and the camera turned
    about its centre to minimise its reprojection error (robust loss); a second pass starts from
    the first's cameras (on the full sequence: hull IoU 0.916 after one pass, 0.943 after two).
    Returns the cameras and, per camera, the angle (degrees, from the calibration as read) and
    the median error before and after (px). A camera whose fit turns it more than ``max_deg``
    keeps its calibration.
    """
    report: dict[str, Any] = {}
    fitted = list(cameras)
    for _ in range(passes):
        fitted, step = _refit_pass(fitted, landmarks)
        for name, r in step.items():
            report.setdefault(name, dict(r))['median_px_after'] = r.get('median_px_after')
    for cam, new in zip(cameras, fitted):
        r = report[cam.name]
        turn = cv2.Rodrigues(new.R @ cam.R.T)[0]
        deg = math.degrees(float(np.linalg.norm(turn)))
        r['angle_deg'] = round(deg, 3)
        r['refit'] = bool(deg > 0) and deg <= max_deg
    return [new if report[c.name]['refit'] else c for c, new in zip(cameras, fitted)], report


def _refit_pass(cameras: Sequence[Camera],
                landmarks: np.ndarray) -> tuple[list[Camera], dict[str, Any]]:
    """One pass of :func:`refit_rotations` (every camera against the others as given)."""
    lm = landmarks.reshape(landmarks.shape[0], landmarks.shape[1], -1, 3)
    uv = lm[..., :2].transpose(1, 0, 2, 3).reshape(len(cameras), -1, 2)
    seen = (lm[..., 2] > VISIBLE).transpose(1, 0, 2).reshape(len(cameras), -1).astype(float)
    fitted, report = [], {}
    for c, cam in enumerate(cameras):
        others = [i for i in range(len(cameras)) if i != c]
        pts = triangulate([cameras[i] for i in others], uv[others], seen[others])
        use = np.isfinite(pts).all(axis=1) & (seen[c] > 0)
        if use.sum() < 10:
            fitted.append(cam)
            report[cam.name] = {'landmarks': int(use.sum()), 'refit': False}
            continue
        obs, world = uv[c][use], pts[use]

        def residual(rvec: np.ndarray, cam: Camera = cam, obs: np.ndarray = obs,
                     world: np.ndarray = world) -> np.ndarray:
            return (cam.rotated(rvec).project(world) - obs).ravel()

        before = np.median(np.linalg.norm(residual(np.zeros(3)).reshape(-1, 2), axis=1))
        sol = least_squares(residual, np.zeros(3), loss='soft_l1', f_scale=10.0)
        after = np.median(np.linalg.norm(residual(sol.x).reshape(-1, 2), axis=1))
        fitted.append(cam.rotated(sol.x))
        report[cam.name] = {'landmarks': int(use.sum()),
                            'median_px_before': round(float(before), 1),
                            'median_px_after': round(float(after), 1)}
    return fitted, report


def scaled(cameras: Sequence[Camera], scale: float) -> list[Camera]:
    """Cameras for images ``scale`` times the size."""
    return [c.for_image(max(1, round(c.width * scale)), max(1, round(c.height * scale)))
            for c in cameras]


# --- the benchmark -----------------------------------------------------------------------------

def detect(data: MultiviewData, indices: Sequence[int],
           detector: Callable[[np.ndarray], PersonView] | None) -> dict[int, tuple[list, list]]:
    """Images and person views of every camera at ``indices`` (stored ones where there are)."""
    out = {}
    for i, images in data.frames(indices).items():
        if data.stored is not None:
            out[i] = (images, [data.stored[c.name][i] for c in data.cameras])
        else:
            out[i] = (images, [detector(img) for img in images])
    return out


def _reconstruct(reconstructor: Any, rgb: np.ndarray, mask: np.ndarray,
                 pose: BodyPose | None = None) -> tuple[np.ndarray, np.ndarray, PersonCrop] | None:
    """Reconstruct the person of ``mask`` with the project's Reconstructor (model-space mesh)."""
    from ..core.preprocess import crop_person
    from ..core.reconstruct import PreparedFrame

    if mask.sum() < 64:
        return None
    crop_img, crop_mask, crop = crop_person(rgb, mask, reconstructor.image_size)
    rows = np.flatnonzero(mask.any(axis=1))
    frame = PreparedFrame(mask, crop_img, crop_mask, crop, float(rows[-1] - rows[0] + 1),
                          pose=pose)
    geo = reconstructor.geometry(frame)
    rec = reconstructor.color(geo, frozenset({'mesh'}))
    if not rec.person or len(rec.faces) == 0:
        return None
    return rec.vertices, rec.faces, crop


def evaluate_multiview(data_dir: str | Path, configs: dict[str, Any], frames: int = 10,
                       scale: float = 0.25, refit: bool = True, tilt: bool = False,
                       fit_frames: int = 20, hull_voxel: float = 0.01, baseline: bool = True,
                       pose_body: bool = False, inset: int = 0,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """
    Run the benchmark; ``configs`` maps a label to a MonoPortConfig (one per checkpoint).

    Returns the summary (also what the CLI writes as JSON).
    """
    from ..core.reconstruct import Reconstructor

    t_start = time.perf_counter()
    data = open_data(data_dir)
    n_cam = len(data.cameras)
    eval_idx = [int(i) for i in np.unique(
        np.linspace(inset, data.n_frames - 1 - inset, frames).round())]
    fit_idx = [int(i) for i in np.unique(np.linspace(0, data.n_frames - 1, fit_frames).round())]
    detector = BodyDetector() if data.stored is None else None
    try:
        seen = detect(data, sorted(set(eval_idx) | set(fit_idx) if refit else set(eval_idx)),
                      detector)
    finally:
        if detector is not None:
            detector.close()
    log(f'{data.root}: {n_cam} cameras, {data.n_frames} frames; detected people in '
        f'{len(seen)} frames ({time.perf_counter() - t_start:.0f} s)')
    summary: dict[str, Any] = {'data': str(data.root), 'frames': eval_idx, 'scale': scale,
                               'cameras': [c.name for c in data.cameras]}
    cams_read = data.cameras
    cams = cams_read
    if refit:
        lm = np.array([[v.landmarks if v.landmarks is not None else np.zeros((33, 3))
                        for v in seen[i][1]] for i in fit_idx])
        cams, summary['refit'] = refit_rotations(cams_read, lm)
        for name, r in summary['refit'].items():
            log(f'  refit {name}: {r}')

    def small(cameras: list[Camera]) -> list[Camera]:
        return scaled(cameras, scale)

    small_read, small_cams = small(cams_read), small(cams)
    views = {i: [downscale_mask(v.mask, c.width, c.height)
                 for v, c in zip(seen[i][1], small_cams)] for i in eval_idx}
    # the self-check: the visual hull from all masks re-projects onto them
    hull = {}
    for label, cameras in (('calibration_as_read', small_read), ('refit', small_cams)):
        if label == 'refit' and not refit:
            continue
        per = []
        for i in eval_idx:
            try:
                per.append(hull_ious(cameras, views[i], voxel=hull_voxel))
            except ValueError as exc:       # a view without the person, masks that disagree
                log(f'visual hull ({label}), frame {i}: {exc}')
        hull[label] = {'mean_iou': float(np.mean(per)) if per else float('nan'),
                       'per_camera': [float(x) for x in np.mean(per, axis=0)] if per else [],
                       'frames': len(per)}
        log(f'visual hull ({label}): mean IoU {hull[label]["mean_iou"]:.3f} over '
            f'{len(per)} frames; per camera {np.round(hull[label]["per_camera"], 3).tolist()}')
    summary['visual_hull'] = hull
    # a check of the distance search: the depth of the masks' triangulated centroid in the source
    # camera (the model's origin is near the body's centre)
    centres = {i: mask_centroid_point(small_cams, views[i])[None] for i in eval_idx
               if all(m.any() for m in views[i])}     # (the same centre as the hull's)
    centres = {i: c for i, c in centres.items() if np.isfinite(c).all()}
    depth = {(i, s): float(cams[s].to_camera(c)[0, 2]) for i, c in centres.items()
             for s in range(n_cam)}

    def cases(fn: Callable[[int, int], Placement | None], label: str) -> dict[str, Any]:
        rows = []
        for i in eval_idx:
            for s in range(n_cam):
                if not views[i][s].any():
                    continue
                t0 = time.perf_counter()
                p = fn(i, s)
                row = {'frame': i, 'source': data.cameras[s].name,
                       'seconds': round(time.perf_counter() - t0, 1)}
                if p is None:
                    row['failed'] = True
                    row['ious'] = [0.0] * (n_cam - 1)
                else:
                    row.update(ious=[round(x, 4) for x in p.ious], distance=round(p.distance, 3),
                               thickness=p.thickness, tilt_deg=p.tilt_deg)
                    if (i, s) in depth:
                        row['hull_depth'] = round(depth[(i, s)], 3)
                rows.append(row)
                log(f'  {label} frame {i} from {row["source"]}: mean IoU '
                    f'{np.mean(row["ious"]):.3f} ({row["seconds"]} s)')
        ious = [x for r in rows for x in r['ious']]
        errors = [abs(r['distance'] - r['hull_depth']) for r in rows if 'hull_depth' in r]
        return {'mean_iou': float(np.mean(ious)) if ious else float('nan'),
                'median_distance_error_m': float(np.median(errors)) if errors else float('nan'),
                'cases': len(ious), 'reconstructions': len(rows),
                'failed': sum(bool(r.get('failed')) for r in rows), 'rows': rows}

    def targets(i: int, s: int) -> list[tuple[Camera, np.ndarray]]:
        return [(small_cams[t], views[i][t]) for t in range(n_cam) if t != s]

    def source_setup(i: int, s: int) -> tuple[Camera, np.ndarray, tuple[float, float]]:
        full_mask = seen[i][1][s].mask
        return cams[s], full_mask, distance_bounds(cams[s], full_mask)

    def extruded(i: int, s: int) -> Placement:
        cam, mask, bounds = source_setup(i, s)
        crop, crop_mask = model_crop(mask)
        return best_extrusion(crop_mask, cam, crop, targets(i, s), bounds)

    results = {'extrusion_baseline': cases(extruded, 'baseline')} if baseline else {}

    def posed(i: int, s: int) -> Placement | None:
        cam, mask, bounds = source_setup(i, s)
        view = seen[i][1][s]
        crop, crop_mask = model_crop(mask)
        mesh = None if view.pose is None else pose_body_mesh(crop_mask, view.pose, crop)
        if mesh is None:
            return None
        return best_placement(Rasteriser(*mesh), cam, crop, targets(i, s), bounds)

    if pose_body:
        results['pose body (landmarks and mask alone)'] = cases(posed, 'pose body')
    for label, config in configs.items():
        with Reconstructor(config) as reconstructor:
            meshes = {}

            def recon(i: int, s: int, reconstructor: Any = reconstructor,
                      meshes: dict = meshes) -> Placement | None:
                cam, mask, bounds = source_setup(i, s)
                out = _reconstruct(reconstructor, seen[i][0][s], mask, seen[i][1][s].pose)
                if out is None:
                    return None
                verts, faces, crop = out
                raster = Rasteriser(verts, faces)
                meshes[(i, s)] = (raster, crop, bounds)
                return best_placement(raster, cam, crop, targets(i, s), bounds)

            results[label] = cases(recon, label)
            if tilt:
                def tilted(i: int, s: int, meshes: dict = meshes) -> Placement | None:
                    if (i, s) not in meshes:
                        return None
                    raster, crop, bounds = meshes[(i, s)]
                    return best_tilted_placement(raster, cams[s], crop, targets(i, s), bounds)

                results[f'{label} (best tilt)'] = cases(tilted, f'{label} tilt')
    summary['results'] = results
    summary['seconds'] = round(time.perf_counter() - t_start, 1)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Format the summary's table as text."""
    lines = [f'{"method":<40} {"mean IoU":>8} {"cases":>6} {"failed":>6}  distance vs hull (m)']
    for label, r in summary['results'].items():
        lines.append(f'{label:<40} {r["mean_iou"]:8.3f} {r["cases"]:6d} {r["failed"]:6d}  '
                     f'{r["median_distance_error_m"]:.3f} (median |error|)')
    for label, h in summary['visual_hull'].items():
        lines.append(f'{"visual hull, " + label:<40} {h["mean_iou"]:8.3f} '
                     f'{h["frames"] * len(summary["cameras"]):6d} {0:6d}')
    lines.append(f'{len(summary["frames"])} frames x {len(summary["cameras"])} source cameras x '
                 f'{len(summary["cameras"]) - 1} target views; {summary["seconds"]:.0f} s')
    return '\n'.join(lines)


# --- command line ------------------------------------------------------------------------------

def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-multiview`` sub-command."""
    from ..core.reconstruct_cli import add_model_arguments

    p = subparsers.add_parser(
        'evaluate-multiview', help='score one-camera reconstructions in the other cameras',
        description='Reconstruct the person of pose2sim\'s Demo_SinglePerson from each camera in '
                    'turn and score the IoU of its silhouette in the other cameras, beside the '
                    'extruded-mask baseline and the visual hull (self-check). ' + GET_DATA + '.')
    p.add_argument('data_dir', metavar='DATA_DIR', help='pose2sim Demo_SinglePerson folder')
    add_model_arguments(p)
    p.set_defaults(resolution=128)
    p.add_argument('--compare', default='', metavar='CHECKPOINT',
                   help='also score this model file (e.g. the shipped one against a new one)')
    p.add_argument('--also-pose-prior', nargs='*', default=[], choices=PRIOR_MODES,
                   metavar='MODE', help='also score the model with these pose_prior modes')
    p.add_argument('--frames', type=int, default=10, help='frames spread over the sequence')
    p.add_argument('--inset', type=int, default=0,
                   help='spread them from this frame to as many before the end (5 gives 10 '
                   'frames none of which is in the default 10: a development set)')
    p.add_argument('--scale', type=float, default=0.25,
                   help='scoring image scale (default: a quarter of the videos\' size)')
    p.add_argument('--no-refit', action='store_true',
                   help='use the calibration as read (no per-camera rotation fit to landmarks)')
    p.add_argument('--no-baseline', action='store_true', help='skip the extrusion baseline')
    p.add_argument('--pose-body', action='store_true',
                   help='also score the coarse body on the pose landmarks alone (core.pose_body)')
    p.add_argument('--tilt', action='store_true',
                   help='also report the best tilt about the camera\'s x axis (issue 26)')
    p.add_argument('--out', default='evaluation/multiview.json', help='summary JSON')
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from ..core.config import MonoPortConfig
    from ..core.reconstruct_cli import model_config_fields

    if args.frames < 1 or not 0.05 <= args.scale <= 1.0:
        raise ValueError('--frames must be >= 1 and --scale in [0.05, 1]')
    base = dict(model_config_fields(args), render_views=[])
    configs = {f'model {args.checkpoint or "shipped"}': MonoPortConfig.offline(**base)}
    if args.compare:
        configs[f'model {args.compare}'] = MonoPortConfig.offline(
            **dict(base, checkpoint=args.compare))
    for mode in args.also_pose_prior:
        configs[f'model {args.checkpoint or "shipped"}, pose prior {mode}'] = \
            MonoPortConfig.offline(**dict(base, pose_prior=mode))
    for c in configs.values():
        c.validate()
    summary = evaluate_multiview(args.data_dir, configs, frames=args.frames, scale=args.scale,
                                 refit=not args.no_refit, tilt=args.tilt,
                                 baseline=not args.no_baseline, pose_body=args.pose_body,
                                 inset=args.inset)
    print(format_summary(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(f'summary: {out}')
    return 0
