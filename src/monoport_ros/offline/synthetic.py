"""
Synthetic training and evaluation data: rendered views of synthetic people, labelled points.

The people (:mod:`monoport_ros.offline.people`) are rendered orthographically by Open3D ray casting
with Lambert shading in front of random backgrounds, and inside/outside labels come from Open3D's
occupancy query. Training samples are cropped exactly as at inference
(:func:`~monoport_ros.core.preprocess.crop_person`) and their 3D points mapped to model space with
:meth:`~monoport_ros.core.camera.OrthoCamera.metric_to_model`.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..core.camera import OrthoCamera
from ..core.o3d import o3d
from .garments import dress
from .people import Person, make_person
from .winding import occupancy
from ..core.preprocess import crop_person
from ..core.segmentation import PersonSegmenter

EVAL_SEED_OFFSET = 1_000_000       # eval subject numbers start here, training ones stay below
BACKGROUNDS = ('flat', 'gradient', 'noise', 'clutter')
SURFACE_SIGMAS_M = (0.02, 0.05)    # Gaussian offsets (m) of the near-surface samples, half each


def _raycasting_scene(vertices: np.ndarray, faces: np.ndarray):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def make_background(height: int, width: int, rng: np.random.Generator,
                    kind: str | None = None) -> np.ndarray:
    """Random background image (H, W, 3) uint8 of ``kind`` in BACKGROUNDS (random when None)."""
    if kind is None:
        kind = str(rng.choice(BACKGROUNDS))
    if kind not in BACKGROUNDS:
        raise ValueError(f'unknown background {kind!r}; choose from {BACKGROUNDS}')
    c0 = rng.uniform(0, 255, 3)
    if kind == 'flat':
        return np.broadcast_to(c0, (height, width, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind in ('gradient', 'clutter'):
        a = rng.uniform(0, 2 * np.pi)
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        img = c0 * (1 - t[..., None]) + rng.uniform(0, 255, 3) * t[..., None]
    else:   # noise: smooth coloured noise plus grain
        cells = int(rng.integers(3, 12))
        low = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        img += rng.normal(0, rng.uniform(2, 20), img.shape)
    if kind == 'clutter':
        img = np.ascontiguousarray(img.astype(np.uint8))
        for _ in range(int(rng.integers(5, 30))):
            col = tuple(int(c) for c in rng.integers(0, 256, 3))
            x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
            w = int(rng.integers(width // 20, width // 3))
            h = int(rng.integers(height // 20, height // 3))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), col, -1)
            else:
                cv2.ellipse(img, (x0, y0), (w // 2, h // 2), float(rng.uniform(0, 180)), 0, 360,
                            col, -1)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 2.0)).astype(np.float64)
    return np.clip(img, 0, 255).astype(np.uint8)


def rotate_y(vertices: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Rotate points about the vertical (y) axis by ``yaw_deg`` (positive: x towards -z)."""
    a = math.radians(yaw_deg)
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return vertices @ rot.T


def tilt(vertices: np.ndarray, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Turn points as seen by a camera looking down by ``pitch_deg``, rolled by ``roll_deg``."""
    a, b = math.radians(pitch_deg), math.radians(roll_deg)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)],
                   [0.0, math.sin(a), math.cos(a)]])
    rz = np.array([[math.cos(b), -math.sin(b), 0.0], [math.sin(b), math.cos(b), 0.0],
                   [0.0, 0.0, 1.0]])
    return vertices @ (rz @ rx).T


def sample_camera_tilt(rng: np.random.Generator) -> tuple[float, float]:
    """(pitch, roll) in degrees of a robot's camera: looking down by 0-35, rolled a little."""
    return float(rng.uniform(0.0, 35.0)), float(rng.normal(0.0, 3.0))


def make_subject(rng: np.random.Generator, dressed: bool = True, pose: str | None = None
                 ) -> Person:
    """Make a synthetic subject: a dressed person (garments as geometry) or an undressed one."""
    person = make_person(rng, pose)
    return dress(person, rng) if dressed else person


def render_person(person: Person, yaw_deg: float, image_size: int | tuple[int, int],
                  rng: np.random.Generator, background: str | np.ndarray | None = None,
                  height_fraction: tuple[float, float] = (0.6, 0.9), nthreads: int = 0,
                  pitch_deg: float = 0.0, roll_deg: float = 0.0) -> dict:
    """
    Orthographic render of ``person`` turned by ``yaw_deg`` about the vertical axis.

    ``pitch_deg`` and ``roll_deg`` then turn the person about the camera's x and z axes, as a
    camera mounted high and looking down sees them (the ground truth stays in the camera frame).

    ``image_size`` is a side or ``(width, height)``. The person is 60-90% of the image height (by
    default), placed at random. ``background`` is a kind from BACKGROUNDS, an image, or None
    (random kind). Returns ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool, ``camera``
    (OrthoCamera), ``mesh_cam`` (vertices in the camera frame: x right, y up, z towards the
    camera, metres, z = 0 at the centre of the 3D bounding box) and ``light`` (unit direction
    towards the light).
    """
    width, height = (image_size, image_size) if np.isscalar(image_size) else image_size
    width, height = int(width), int(height)
    if width < 16 or height < 16:
        raise ValueError(f'image too small: {width}x{height}')
    v = rotate_y(person.vertices, yaw_deg)
    if pitch_deg or roll_deg:
        v = tilt(v, pitch_deg, roll_deg)
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = v - 0.5 * (lo + hi)
    ext = hi - lo
    frac = rng.uniform(*height_fraction)
    m = ext[1] / (frac * height)
    m = max(m, ext[0] / (0.95 * width))                  # wide poses must fit too
    half_w, half_h = 0.5 * ext[0] / m, 0.5 * ext[1] / m  # half size in pixels
    cu = rng.uniform(half_w + 1, width - half_w - 1) if width - 2 * half_w > 2 else width / 2
    cv = rng.uniform(half_h + 1, height - half_h - 1) if height - 2 * half_h > 2 else height / 2
    v = v + np.array([(cu - width / 2.0) * m, (height / 2.0 - cv) * m, 0.0])
    camera = OrthoCamera(width, height, float(m))

    scene = _raycasting_scene(v, person.faces)
    uu, vv = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.zeros((height, width, 6), np.float32)
    rays[..., 0] = (uu + 0.5 - width / 2.0) * m
    rays[..., 1] = (height / 2.0 - vv - 0.5) * m
    rays[..., 2] = ext[2] + 1.0
    rays[..., 5] = -1.0
    ans = scene.cast_rays(o3d.core.Tensor(rays), nthreads=nthreads)
    prim = ans['primitive_ids'].numpy().astype(np.int64)
    mask = prim != scene.INVALID_ID
    # smooth (interpolated vertex-normal) Lambert shading
    vn = vertex_normals(v, person.faces)
    fid = prim[mask]
    bary = ans['primitive_uvs'].numpy()[mask].astype(np.float64)
    tri = person.faces[fid]
    n = (vn[tri[:, 0]] * (1 - bary[:, :1] - bary[:, 1:]) + vn[tri[:, 1]] * bary[:, :1]
         + vn[tri[:, 2]] * bary[:, 1:])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.0, 0.8), 1.0])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.3, 0.5)
    shade = ambient + (1 - ambient) * np.abs(n @ light)      # abs: no black back-facing normals
    if isinstance(background, np.ndarray):
        if background.shape != (height, width, 3):
            raise ValueError(f'background shape {background.shape} != {(height, width, 3)}')
        image = background.astype(np.uint8).copy()
    else:
        image = make_background(height, width, rng, background)
    image[mask] = np.clip(person.face_colors[fid] * shade[:, None] + 0.5, 0, 255).astype(np.uint8)
    return {'image': image, 'mask': mask, 'camera': camera, 'mesh_cam': v, 'light': light}


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform surface points: (points (n, 3), face index (n,))."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    fid = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random((2, n, 1))
    s = np.sqrt(r1)
    pts = tri[fid, 0] * (1 - s) + tri[fid, 1] * (s * (1 - r2)) + tri[fid, 2] * (s * r2)
    return pts, fid


def _camera_effects(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild optical blur and sensor noise (each half of the time)."""
    out = image
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        noisy = out.astype(np.float32) + rng.normal(0.0, rng.uniform(1.0, 5.0), out.shape)
        out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    return out


def make_training_sample(person: Person, yaw_deg: float, rng: np.random.Generator,
                         image_size: int = 512, crop_size: int = 256, n_surface: int = 12000,
                         n_uniform: int = 2000, n_color: int = 4000,
                         mask_jitter: bool = True, camera_effects: bool = True,
                         nthreads: int = 0, segmenter: 'PersonSegmenter | None' = None,
                         camera_tilt: bool = False) -> dict:
    """
    Make one network training sample of ``person`` at ``yaw_deg`` (arrays as in the npz files).

    ``mask_jitter`` erodes or dilates the mask by a pixel half of the time (an imperfect
    segmenter); ``camera_effects`` adds mild blur and sensor noise half of the time each. With a
    ``segmenter`` (MediaPipe pose, the inference path) its landmarks on the whole rendered image
    are stored too, mapped by the sample's crop: ``pose`` (33, 4) x, y, z, visibility in model
    space (all zero when none were found) and ``pose_world`` (33, 3) metres.
    """
    pitch, roll = sample_camera_tilt(rng) if camera_tilt else (0.0, 0.0)
    r = render_person(person, yaw_deg, image_size, rng, nthreads=nthreads, pitch_deg=pitch,
                      roll_deg=roll)
    mask = r['mask']
    if mask_jitter and rng.random() < 0.5:     # the segmenter's mask at test time is not exact
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        jittered = op(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if jittered.any():
            mask = jittered
    image = r['image']
    if camera_effects:
        image = _camera_effects(image, rng)
    crop_img, crop_mask, crop = crop_person(image, mask, crop_size)
    cam: OrthoCamera = r['camera']
    v, f = r['mesh_cam'], person.faces
    surf, _ = sample_surface(v, f, n_surface, rng)
    sig = np.repeat(np.array(SURFACE_SIGMAS_M), [n_surface // 2, n_surface - n_surface // 2])
    near = surf + rng.normal(size=surf.shape) * sig[:, None]
    uni_model = rng.uniform(-1.0, 1.0, (n_uniform, 3))
    pts = np.concatenate([near, cam.model_to_metric(crop, uni_model)])
    labels = occupancy(v, f, pts, nthreads)
    cpts, cfid = sample_surface(v, f, n_color, rng)
    pose_arrays = {}
    if segmenter is not None:
        found = segmenter.segment_with_pose(image).pose
        pose_arrays = {
            'pose': found.to_model(crop) if found is not None else np.zeros((33, 4), np.float32),
            'pose_world': (found.world_landmarks if found is not None
                           and found.world_landmarks is not None
                           else np.zeros((33, 3), np.float32))}
    return {**pose_arrays,
            'image': np.clip(crop_img * 255.0 + 0.5, 0, 255).astype(np.uint8),
            'mask': (crop_mask > 0.5).astype(np.uint8),
            'points': cam.metric_to_model(crop, pts).astype(np.float32),
            'labels': labels.astype(np.uint8),
            'color_points': cam.metric_to_model(crop, cpts).astype(np.float32),
            'colors': person.face_colors[cfid].astype(np.uint8)}


def subject_rng(seed: int, subject: int) -> np.random.Generator:
    """Random generator of one subject (training subjects < EVAL_SEED_OFFSET <= eval subjects)."""
    return np.random.default_rng([int(seed), int(subject)])


def _write_subject(job: tuple) -> tuple[int, int, float]:
    """Worker: all views of one subject; returns (subject, files written, seconds)."""
    out_dir, subject, seed, yaws, kw, nthreads, landmarks, dressed = job
    t0 = time.perf_counter()
    segmenter = _landmark_segmenter() if landmarks else None
    person = make_subject(subject_rng(seed, subject), dressed)
    written = 0
    for yaw in yaws:
        path = Path(out_dir) / 'samples' / f'{subject:04d}_{yaw:03d}.npz'
        if path.exists():
            continue
        # one generator per view: a resumed run writes the same files as an uninterrupted one
        rng = np.random.default_rng([int(seed), int(subject), 1 + int(yaw)])
        sample = make_training_sample(person, float(yaw), rng, nthreads=nthreads,
                                      segmenter=segmenter, camera_tilt=dressed, **kw)
        tmp = path.with_name(path.name + '.part')      # readers glob *.npz: not seen until done
        with open(tmp, 'wb') as fh:
            np.savez_compressed(fh, subject=np.int64(subject), yaw=np.float32(yaw), **sample)
        os.replace(tmp, path)
        written += 1
    return subject, written, time.perf_counter() - t0


_SEGMENTER: list[PersonSegmenter] = []


def _landmark_segmenter() -> PersonSegmenter:
    """Return this process's MediaPipe pose graph for training landmarks."""
    if not _SEGMENTER:
        _SEGMENTER.append(PersonSegmenter('pose', video=False))
    return _SEGMENTER[0]


def _write_meta(out_dir: Path, meta: dict) -> None:
    tmp = out_dir / 'meta.json.tmp'
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out_dir / 'meta.json')


def write_training_set(out_dir: str | Path, n_subjects: int, seed: int, image_size: int = 512,
                       crop_size: int = 256, yaw_step: int = 10, n_surface: int = 12000,
                       n_uniform: int = 2000, n_color: int = 4000, workers: int = 1,
                       verbose: bool = False, landmarks: bool = True,
                       dressed: bool = True) -> dict:
    """
    Write ``out_dir/samples/{subject:04d}_{yaw:03d}.npz`` and ``out_dir/meta.json``.

    Each npz holds ``image`` (crop, crop, 3) uint8 (masked crop, background 0), ``mask``
    (crop, crop) uint8, ``points`` (N, 3) float32 model space, ``labels`` (N,) uint8 (1 = inside),
    ``color_points`` (M, 3) float32, ``colors`` (M, 3) uint8, ``subject`` and ``yaw``.
    With ``landmarks`` each also holds ``pose`` and ``pose_world``: BlazePose's landmarks on the
    whole render (see :func:`make_training_sample`). ``dressed`` (the default) makes dressed
    people seen by tilted cameras (:func:`make_subject`, :func:`sample_camera_tilt`); False
    keeps the undressed people of level cameras. Existing sample files are kept (a stopped
    run resumes). meta.json is rewritten after every
    subject, with ``complete`` false until the end. Returns the meta dict.
    """
    if n_subjects <= 0 or n_subjects >= EVAL_SEED_OFFSET:
        raise ValueError(f'n_subjects must be in 1..{EVAL_SEED_OFFSET - 1}, got {n_subjects}')
    if yaw_step <= 0 or yaw_step > 360:
        raise ValueError(f'yaw_step must be in 1..360, got {yaw_step}')
    if crop_size < 16 or image_size < crop_size // 2:
        raise ValueError(f'bad sizes: image {image_size}, crop {crop_size}')
    if workers < 1:
        raise ValueError('workers must be >= 1')
    out = Path(out_dir)
    (out / 'samples').mkdir(parents=True, exist_ok=True)
    yaws = list(range(0, 360, yaw_step))
    kw = {'image_size': image_size, 'crop_size': crop_size, 'n_surface': n_surface,
          'n_uniform': n_uniform, 'n_color': n_color}
    meta = {'n_subjects': n_subjects, 'yaw_step': yaw_step, 'crop_size': crop_size,
            'image_size': image_size, 'seed': seed, 'n_samples': n_surface + n_uniform,
            'n_surface': n_surface, 'n_uniform': n_uniform, 'n_color': n_color,
            'surface_sigmas_m': list(SURFACE_SIGMAS_M), 'yaws': yaws, 'landmarks': landmarks,
            'dressed': dressed,
            'subjects_done': [], 'n_files': 0, 'complete': False, 'seconds': 0.0,
            'format': 'samples/{subject:04d}_{yaw:03d}.npz: image, mask, points, labels, '
                      'color_points, colors, subject, yaw; points in model space [-1,1]^3 '
                      '(x right, y up, z towards camera), labels 1 = inside, colors = albedo; '
                      'with landmarks also pose (33, 4: x, y, z, visibility in model space, '
                      'BlazePose on the render) and pose_world (33, 3 m)'}
    t0 = time.perf_counter()
    nthreads = 1 if workers > 1 else 0
    jobs = [(str(out), s, seed, yaws, kw, nthreads, landmarks, dressed)
            for s in range(n_subjects)]
    done: list[int] = []

    def record(result: tuple[int, int, float]) -> None:
        done.append(result[0])
        meta['subjects_done'] = sorted(done)
        meta['n_files'] = len(list((out / 'samples').glob('*.npz')))
        meta['seconds'] = round(time.perf_counter() - t0, 1)
        _write_meta(out, meta)
        if verbose:
            print(f'subject {result[0]}: {result[1]} views in {result[2]:.1f} s '
                  f'({len(done)}/{n_subjects} subjects)', flush=True)

    if workers == 1:
        for job in jobs:
            record(_write_subject(job))
    else:
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(workers) as pool:
            for res in pool.imap_unordered(_write_subject, jobs):
                record(res)
    meta['complete'] = True
    _write_meta(out, meta)
    return meta


def write_eval_set(out_dir: str | Path, n: int, seed: int, image_size: int = 512,
                   dressed: bool = True) -> list[Path]:
    """
    Write ``n`` held-out cases ``case_XXX/``: image, mask, camera, gt mesh and info.

    Each case holds image.png (RGB), mask.png, camera.json, gt.ply and info.json.

    Subjects use seeds offset by EVAL_SEED_OFFSET, so they never coincide with training subjects.
    ``gt.ply`` is the ground-truth mesh in the camera frame (metres) with vertex colours.
    ``dressed`` (the default): dressed people (their garment parameters in info.json under
    ``outfit``) seen by a tilted camera (``pitch_deg``, ``roll_deg``); False: undressed, level.
    """
    import trimesh

    if n <= 0:
        raise ValueError(f'n must be positive, got {n}')
    out = Path(out_dir)
    cases = []
    for i in range(n):
        rng = subject_rng(seed, EVAL_SEED_OFFSET + i)
        person = make_subject(rng, dressed)
        yaw = float(rng.uniform(0, 360))
        pitch, roll = sample_camera_tilt(rng) if dressed else (0.0, 0.0)
        r = render_person(person, yaw, image_size, rng, pitch_deg=pitch, roll_deg=roll)
        case = out / f'case_{i:03d}'
        case.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(case / 'image.png'), cv2.cvtColor(r['image'], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(case / 'mask.png'), r['mask'].astype(np.uint8) * 255)
        r['camera'].save(case / 'camera.json')
        mesh = trimesh.Trimesh(r['mesh_cam'], person.faces, process=False,
                               vertex_colors=person.vertex_colors())
        mesh.export(case / 'gt.ply')
        info = {'seed': seed, 'subject': EVAL_SEED_OFFSET + i, 'yaw_deg': yaw,
                'pitch_deg': pitch, 'roll_deg': roll, 'dressed': dressed,
                'bbox_height_m': float(np.ptp(person.vertices[:, 1])), **person.params}
        (case / 'info.json').write_text(json.dumps(info, indent=1))
        cases.append(case)
    return cases


def _cmd_eval(args: argparse.Namespace) -> int:
    cases = write_eval_set(args.out, args.n, args.seed, args.size,
                           dressed=not args.undressed)
    print(f'wrote {len(cases)} cases to {args.out}')
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    meta = write_training_set(args.out, args.subjects, args.seed, image_size=args.size,
                              crop_size=args.crop, yaw_step=args.yaw_step, workers=args.workers,
                              verbose=True, landmarks=not args.no_landmarks,
                              dressed=not args.undressed)
    print(f'wrote {meta["n_files"]} samples to {args.out} in {meta["seconds"]} s')
    return 0


def register_cli(subparsers) -> None:
    """Add the ``make-eval-set`` and ``make-train-set`` sub-commands."""
    p = subparsers.add_parser('make-eval-set', help='write held-out synthetic evaluation cases')
    p.add_argument('out', help='output folder')
    p.add_argument('--n', type=int, default=20, help='number of cases')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=int, default=512, help='image side (pixels)')
    p.add_argument('--undressed', action='store_true',
                   help='the undressed people of level cameras (before issue 26)')
    p.set_defaults(func=_cmd_eval)
    p = subparsers.add_parser('make-train-set', help='write the synthetic training set')
    p.add_argument('out', help='output folder')
    p.add_argument('--subjects', type=int, default=60)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--yaw-step', type=int, default=10, help='degrees between rendered views')
    p.add_argument('--workers', type=int, default=2, help='processes (1 = in process)')
    p.add_argument('--size', type=int, default=512, help='rendered image side (pixels)')
    p.add_argument('--crop', type=int, default=256, help='network input crop side (pixels)')
    p.add_argument('--no-landmarks', action='store_true',
                   help='do not run BlazePose on the renders (no pose arrays in the samples)')
    p.add_argument('--undressed', action='store_true',
                   help='the undressed people of level cameras (before issue 26)')
    p.set_defaults(func=_cmd_train)
