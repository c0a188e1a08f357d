"""
Evaluation of single-image reconstruction against ground-truth meshes, and a reference baseline.

A case is a directory with ``image.png`` (RGB), ``camera.json`` (:class:`OrthoCamera`) and
``gt.ply`` (ground truth in that camera frame, metres). The metrics (Chamfer, P2S, normal
consistency, IoU; :mod:`monoport_ros.offline.metrics`) are computed in that frame after the best
shift of the reconstruction along z (an orthographic image cannot know the depth offset).

The baseline extrudes the *true* silhouette (the ground truth projected through the camera) to the
constant thickness that minimizes its Chamfer distance, and is scored with the same metrics.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import trimesh
from scipy.optimize import minimize_scalar
from skimage.measure import marching_cubes

from ..core.camera import OrthoCamera
from .metrics import THREADS, Surface, best_z_shift, mesh_metrics, sampled_chamfer, z_vector
from ..core.o3d import o3d

CASE_FILES = ('image.png', 'camera.json', 'gt.ply')
FAILURE_PENALTY = {'chamfer_cm': 50.0, 'p2s_cm': 50.0, 'gt_to_recon_cm': 50.0,
                   'normal_consistency': 0.0, 'normal_consistency_abs': 0.0, 'iou': 0.0}
"""Metrics given to a case whose reconstruction found no person or produced no surface."""
METRIC_KEYS = ('chamfer_cm', 'p2s_cm', 'gt_to_recon_cm', 'normal_consistency',
               'normal_consistency_abs', 'iou')
ERROR_MAX_CM = 5.0           # top of the error colour scale in the figure
VIEW_YAWS = {'front': 0.0, 'side': 90.0}

ReconstructFn = Callable[[np.ndarray], Any]
"""RGB uint8 image -> result with ``person``, ``crop``, ``vertices`` (model space), ``faces``,
optional ``vertex_colors``, ``views`` and ``mask`` (the :class:`Reconstructor` result)."""


# --- ground-truth silhouette and the extrusion baseline ------------------------------------------

def _pixel_xy(camera: OrthoCamera) -> tuple[np.ndarray, np.ndarray]:
    """Return the camera-frame x of each column centre and y of each row centre (metres)."""
    m = camera.metres_per_pixel
    x = (np.arange(camera.width) + 0.5 - camera.width / 2.0) * m
    y = (camera.height / 2.0 - np.arange(camera.height) - 0.5) * m
    return x, y


def true_mask(camera: OrthoCamera, gt: Surface) -> np.ndarray:
    """Return the (H, W) bool silhouette of ``gt`` seen through ``camera`` (ray per pixel)."""
    x, y = _pixel_xy(camera)
    xx, yy = np.meshgrid(x, y)
    z0 = gt.bounds[1, 2] + 1.0
    rays = np.zeros((camera.height, camera.width, 6), np.float32)
    rays[..., 0], rays[..., 1], rays[..., 2], rays[..., 5] = xx, yy, z0, -1.0
    hits = gt.scene.cast_rays(o3d.core.Tensor(rays), nthreads=THREADS)['t_hit'].numpy()
    return np.isfinite(hits)


def extrusion_mesh(mask: np.ndarray, camera: OrthoCamera, thickness: float,
                   layers: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """
    Extrude a mask to ``thickness`` metres centred on z = 0: (vertices, faces), faces outward.

    Marching cubes on a binary volume of ``layers`` z slices; walls follow the pixel boundaries.
    """
    if mask.shape != (camera.height, camera.width):
        raise ValueError(f'mask shape {mask.shape} does not match the camera '
                         f'{(camera.height, camera.width)}')
    if not thickness > 0:
        raise ValueError(f'thickness must be positive, got {thickness}')
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError('empty mask: nothing to extrude')
    sub = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    vol = np.zeros((sub.shape[0] + 2, sub.shape[1] + 2, layers + 2), np.float32)
    vol[1:-1, 1:-1, 1:-1] = sub[..., None]
    verts, faces, _, _ = marching_cubes(vol, level=0.5, allow_degenerate=False)
    m = camera.metres_per_pixel
    row = verts[:, 0] - 1 + rows[0]
    col = verts[:, 1] - 1 + cols[0]
    out = np.stack([(col + 0.5 - camera.width / 2.0) * m,
                    (camera.height / 2.0 - row - 0.5) * m,
                    (verts[:, 2] - (layers + 1) / 2.0) / layers * thickness], axis=1)
    faces = faces.astype(np.int64)
    if trimesh.Trimesh(out, faces, process=False).volume < 0:
        faces = faces[:, ::-1].copy()
    return out, faces


def extrusion_baseline(mask: np.ndarray, camera: OrthoCamera, gt: Surface,
                       thickness_range: tuple[float, float] = (0.01, 0.8), n_samples: int = 20000,
                       seed: int = 0, iou_grid: int = 128) -> tuple[dict[str, float], Surface]:
    """
    Score the silhouette extruded to the best constant thickness (minimum Chamfer, z shifted).

    Returns the metrics (with ``thickness_cm``) and the best extruded surface, unshifted.
    """
    unit_v, faces = extrusion_mesh(mask, camera, 1.0)
    lo, hi = thickness_range
    cache: dict[float, tuple[float, float]] = {}

    def surface(t: float) -> Surface:
        return Surface(unit_v * np.array([1.0, 1.0, t]), faces)

    def chamfer(t: float) -> float:
        if t not in cache:
            s = surface(t)
            dz = best_z_shift(s, gt, n=2000, seed=seed)
            pr, _ = s.sample(2000, seed + 4)
            pg, _ = gt.sample(2000, seed + 5)
            d = sampled_chamfer(s, gt, pr, pg, dz)
            cache[t] = (d, dz)
        return cache[t][0]

    coarse = np.geomspace(lo, hi, 8)
    costs = [chamfer(float(t)) for t in coarse]
    i = int(np.argmin(costs))
    a, b = float(coarse[max(i - 1, 0)]), float(coarse[min(i + 1, len(coarse) - 1)])
    res = minimize_scalar(chamfer, bounds=(a, b), method='bounded', options={'xatol': 2e-3})
    best_t = float(res.x) if res.fun < costs[i] else float(coarse[i])
    best = surface(best_t)
    metrics = mesh_metrics(best, gt, None, n_samples, seed, iou_grid)
    metrics['thickness_cm'] = 100.0 * best_t
    return metrics, best


# --- cases -------------------------------------------------------------------------------------

@dataclass
class EvalCase:
    """One evaluation case loaded from its directory."""

    name: str
    image: np.ndarray        # (H, W, 3) uint8 RGB
    camera: OrthoCamera
    gt: Surface


def find_cases(data_dir: str | Path) -> list[Path]:
    """List the case directories under ``data_dir`` (or ``data_dir`` itself), sorted."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f'evaluation data directory not found: {root}')

    def is_case(p: Path) -> bool:
        return all((p / f).is_file() for f in CASE_FILES)

    if is_case(root):
        return [root]
    cases = sorted(p for p in root.iterdir() if p.is_dir() and is_case(p))
    if not cases:
        raise ValueError(f'no evaluation case in {root}: expected sub-directories with '
                         f'{", ".join(CASE_FILES)}')
    return cases


def load_case(case_dir: str | Path) -> EvalCase:
    """Read ``image.png``, ``camera.json`` and ``gt.ply`` of one case (ValueError when invalid)."""
    d = Path(case_dir)
    bgr = cv2.imread(str(d / 'image.png'), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{d}: cannot read image.png')
    camera = OrthoCamera.load(d / 'camera.json')
    if bgr.shape[:2] != (camera.height, camera.width):
        raise ValueError(f'{d}: image is {bgr.shape[1]}x{bgr.shape[0]} but camera.json says '
                         f'{camera.width}x{camera.height}')
    mesh = trimesh.load(str(d / 'gt.ply'), force='mesh')
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f'{d}: gt.ply has no triangles')
    try:
        gt = Surface(mesh.vertices, mesh.faces)
    except ValueError as exc:
        raise ValueError(f'{d}: gt.ply: {exc}') from exc
    return EvalCase(d.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), camera, gt)


def case_pose(case_dir: str | Path) -> str | None:
    """Return the pose named by a case's optional ``info.json`` (``make-eval-set`` writes it)."""
    try:
        pose = json.loads((Path(case_dir) / 'info.json').read_text()).get('pose')
    except (OSError, ValueError, AttributeError):    # absent, unreadable or not a JSON object
        return None
    return pose if isinstance(pose, str) and pose else None


# --- figure ------------------------------------------------------------------------------------

def render_mesh(surface: Surface, colors: np.ndarray, yaw_deg: float, size: int,
                centre: np.ndarray, half_extent: float) -> np.ndarray:
    """
    Render per-vertex ``colors`` in [0, 1] orthographically, shaded, on white (RGB uint8).

    The view at ``yaw_deg`` looks from direction ``(sin yaw, 0, cos yaw)`` at ``centre``; the image
    covers ``half_extent`` metres each side of it.
    """
    a = math.radians(yaw_deg)
    right = np.array([math.cos(a), 0.0, -math.sin(a)])
    toward = np.array([math.sin(a), 0.0, math.cos(a)])
    up = np.array([0.0, 1.0, 0.0])
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    uu, vv = np.meshgrid(lin * half_extent, -lin * half_extent)
    origin = centre + uu[..., None] * right + vv[..., None] * up + 10.0 * half_extent * toward
    rays = np.concatenate([origin, np.broadcast_to(-toward, origin.shape)], axis=-1)
    ans = surface.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)), nthreads=THREADS)
    hit = np.isfinite(ans['t_hit'].numpy())
    img = np.ones((size, size, 3))
    if hit.any():
        prim = ans['primitive_ids'].numpy()[hit].astype(np.int64)
        uv = ans['primitive_uvs'].numpy()[hit].astype(np.float64)
        tri = surface.faces[prim]
        w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        col = np.einsum('nk,nkc->nc', w, colors[tri])
        normal = ans['primitive_normals'].numpy()[hit].astype(np.float64)
        length = np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
        shade = 0.35 + 0.65 * np.abs(normal @ toward) / length
        img[hit] = np.clip(col * shade[:, None], 0.0, 1.0)
    return (img * 255).round().astype(np.uint8)


def error_colors(errors_cm: np.ndarray) -> np.ndarray:
    """Map errors over [0, ERROR_MAX_CM] to turbo colours, (N, 3) RGB in [0, 1]."""
    level = np.clip(errors_cm / ERROR_MAX_CM, 0.0, 1.0) * 255
    bgr = cv2.applyColorMap(level.round().astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO)
    return bgr.reshape(-1, 3)[:, ::-1].astype(np.float64) / 255.0


def _tile(img: np.ndarray | None, size: int, label: str) -> np.ndarray:
    """Letter-box ``img`` into a ``size`` square with a label (grey square when None)."""
    tile = np.full((size, size, 3), 235, np.uint8)
    if img is not None:
        h, w = img.shape[:2]
        s = size / max(h, w)
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        small = cv2.resize(np.ascontiguousarray(img[..., :3]), (nw, nh),
                           interpolation=cv2.INTER_AREA)
        y0, x0 = (size - nh) // 2, (size - nw) // 2
        tile[y0:y0 + nh, x0:x0 + nw] = small
    for colour, width in (((255, 255, 255), 3), ((0, 0, 0), 1)):     # outlined: readable anywhere
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, width,
                    cv2.LINE_AA)
    return tile


def _colour_bar(width: int) -> np.ndarray:
    """Draw the horizontal legend of the error colour map."""
    bar = np.full((36, width, 3), 255, np.uint8)
    x0, x1 = 60, max(61, width - 60)
    ramp = error_colors(np.linspace(0.0, ERROR_MAX_CM, x1 - x0))
    bar[6:20, x0:x1] = (ramp * 255).round().astype(np.uint8)[None]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(bar, '0 cm', (x0 - 40, 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, f'>= {ERROR_MAX_CM:g} cm', (x1 + 4, 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, 'distance of reconstruction to ground truth', (x0, 32), font, 0.35, (0, 0, 0),
                1, cv2.LINE_AA)
    return bar


def case_figure_row(image: np.ndarray, views: dict[str, np.ndarray], recon: Surface | None,
                    shift: float, gt: Surface, label: str, colors: np.ndarray | None = None,
                    size: int = 192) -> np.ndarray:
    """Draw a figure row: input, reconstruction front/side views, error colouring front/side."""
    tiles = [_tile(image, size, label)]
    names = [n for n in ('front', 'side') if n in views] or list(views)[:2]
    gb = gt.bounds
    centre = 0.5 * (gb[0] + gb[1])
    half = 0.55 * float((gb[1] - gb[0]).max())
    moved = Surface(recon.vertices + z_vector(shift), recon.faces) if recon is not None else None
    base_colors = None
    if moved is not None:
        base_colors = np.full((moved.vertices.shape[0], 3), 0.8)
        if colors is not None and np.shape(colors) == base_colors.shape:
            c = np.asarray(colors, np.float64)
            base_colors = c / 255.0 if c.max() > 1.0 else c
    for name in ('front', 'side'):
        if name in names:
            tiles.append(_tile(np.asarray(views[name]), size, f'recon {name}'))
        elif moved is not None:
            img = render_mesh(moved, base_colors, VIEW_YAWS[name], size, centre, half)
            tiles.append(_tile(img, size, f'recon {name}'))
        else:
            tiles.append(_tile(None, size, f'recon {name}: none'))
    if moved is not None:
        colours = error_colors(100.0 * gt.distance(moved.vertices))
        for name, yaw in VIEW_YAWS.items():
            tiles.append(_tile(render_mesh(moved, colours, yaw, size, centre, half), size,
                               f'error {name}'))
    else:
        tiles += [_tile(None, size, 'no reconstruction')] * len(VIEW_YAWS)
    return np.concatenate(tiles, axis=1)


# --- the evaluation run ------------------------------------------------------------------------

class _DefaultReconstruct:
    """The project's :class:`Reconstructor` as a reconstruction function, with :meth:`close`."""

    def __init__(self, config: Any) -> None:
        from ..core.config import MonoPortConfig
        from ..core.reconstruct import Reconstructor

        # the offline preset; with a config of the caller's, still per-image segmentation and
        # no blending with the previous case's surface (the cases are unrelated images, not a
        # video), and the whole mesh scored (the node's triangle budget would re-extract it on
        # a coarser grid)
        config = replace(config if config is not None else MonoPortConfig.offline(),
                         segmentation_tracking=False, steady_surface=False, mesh_max_triangles=0)
        self.rec = Reconstructor(config)

    def __call__(self, rgb: np.ndarray) -> Any:
        return self.rec.reconstruct(rgb, outputs={'mesh', 'views', 'mask'})

    def close(self) -> None:
        """Release the segmentation graph (MediaPipe can hang at interpreter exit otherwise)."""
        self.rec.close()


def default_reconstruct_fn(config: Any = None) -> ReconstructFn:
    """Wrap the project's :class:`Reconstructor` (segmentation included) as a function."""
    return _DefaultReconstruct(config)


def _per_key(rows: list[dict[str, float]], stat: Callable = np.mean) -> dict[str, float]:
    """``stat`` (mean by default) of each metric over ``rows`` ({} for no rows)."""
    return {k: float(stat([r[k] for r in rows])) for k in rows[0]} if rows else {}


def _by_pose(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean metrics per pose of the cases that name one, worst mean Chamfer first."""
    groups: dict[str, list[dict[str, float]]] = {}
    for e in results:
        if e.get('pose'):
            groups.setdefault(e['pose'], []).append({k: e['recon'][k] for k in METRIC_KEYS})
    table = {pose: {'n_cases': len(rows), **_per_key(rows)} for pose, rows in groups.items()}
    return dict(sorted(table.items(), key=lambda kv: -kv[1]['chamfer_cm']))


def _run_cases(case_dirs: list[Path], reconstruct_fn: ReconstructFn, baseline: bool,
               n_samples: int, iou_grid: int, seed: int,
               verbose: bool) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Reconstruct and score each case; return the per-case entries and figure rows."""
    results, rows = [], []
    for case_dir in case_dirs:
        case = load_case(case_dir)
        mask = true_mask(case.camera, case.gt)
        t0 = time.perf_counter()
        r = reconstruct_fn(case.image)
        entry: dict[str, Any] = {'name': case.name, 'time_s': time.perf_counter() - t0}
        pose = case_pose(case_dir)
        if pose:
            entry['pose'] = pose
        recon, shift = None, 0.0
        faces = getattr(r, 'faces', None)
        if not getattr(r, 'person', False):
            entry['status'] = 'no_person'
        elif faces is None or len(faces) == 0:
            entry['status'] = 'empty_mesh'
        else:
            verts = case.camera.model_to_metric(r.crop, np.asarray(r.vertices, np.float64))
            recon = Surface(verts, faces)
            entry['status'] = 'ok'
        if recon is None:
            entry['recon'] = dict(FAILURE_PENALTY)
        else:
            entry['recon'] = mesh_metrics(recon, case.gt, None, n_samples, seed, iou_grid)
            entry['recon']['watertight'] = recon.watertight
            shift = entry['recon']['z_shift_cm'] / 100.0
        pred_mask = getattr(r, 'mask', None)
        if pred_mask is not None and np.shape(pred_mask) == mask.shape:
            pred_mask = np.asarray(pred_mask, bool)
            union = np.count_nonzero(mask | pred_mask)
            entry['mask_iou'] = float(np.count_nonzero(mask & pred_mask) / union) if union else 0.0
        if baseline:
            entry['baseline'], _ = extrusion_baseline(mask, case.camera, case.gt,
                                                      n_samples=n_samples, seed=seed,
                                                      iou_grid=iou_grid)
        views = getattr(r, 'views', None) or {}
        label = f'{case.name}: ' + (f"{entry['recon']['chamfer_cm']:.2f} cm" if recon is not None
                                    else entry['status'])
        colors = getattr(r, 'vertex_colors', None) if recon is not None else None
        rows.append(case_figure_row(case.image, views, recon, shift, case.gt, label, colors))
        results.append(entry)
        if verbose:
            base = (f", baseline {entry['baseline']['chamfer_cm']:.2f} cm" if baseline else '')
            print(f"{case.name}: {entry['status']}, Chamfer {entry['recon']['chamfer_cm']:.2f} cm"
                  f"{base} ({entry['time_s']:.1f} s)", flush=True)
    return results, rows


def evaluate(data_dir: str | Path, config: Any = None, out_dir: str | Path = 'evaluation', *,
             baseline: bool = True, reconstruct_fn: ReconstructFn | None = None,
             n_samples: int = 20000, iou_grid: int = 128, seed: int = 0,
             verbose: bool = False) -> dict[str, Any]:
    """
    Reconstruct and score every case of ``data_dir``; write report.md, report.png, results.json.

    ``config`` is the :class:`MonoPortConfig` of the default reconstructor; ``reconstruct_fn``
    replaces that reconstructor (tests). A case without a person (or without a surface) is scored
    with :data:`FAILURE_PENALTY`. Returns the content of results.json.
    """
    case_dirs = find_cases(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    owned = reconstruct_fn is None
    if reconstruct_fn is None:
        reconstruct_fn = default_reconstruct_fn(config)
    try:
        results, rows = _run_cases(case_dirs, reconstruct_fn, baseline, n_samples, iou_grid, seed,
                                   verbose)
    finally:
        close = getattr(reconstruct_fn, 'close', None)
        if owned and callable(close):
            close()
    ok = [e for e in results if e['status'] == 'ok']
    recon = [{k: e['recon'][k] for k in METRIC_KEYS} for e in results]
    recon_ok = [{k: e['recon'][k] for k in METRIC_KEYS} for e in ok]
    summary: dict[str, Any] = {
        'data_dir': str(data_dir),
        'checkpoint': getattr(config, 'checkpoint', '') or 'shipped default',
        'resolution': getattr(config, 'resolution', None),
        'threshold': getattr(config, 'threshold', None),
        'fill_silhouette': getattr(config, 'fill_silhouette', None),
        'mirror_average': getattr(config, 'mirror_average', None),
        'shift_average': getattr(config, 'shift_average', None),
        'n_cases': len(results),
        'n_failed': len(results) - len(ok),
        'failure_penalty': FAILURE_PENALTY,
        'metrics': {
            'chamfer_cm': 'mean of P2S and gt->recon mean distances (PIFu), best z shift',
            'p2s_cm': 'mean distance of points sampled on the reconstruction to the gt surface',
            'gt_to_recon_cm': 'mean distance of points sampled on the gt to the reconstruction',
            'normal_consistency': 'mean signed cosine to the closest triangle normal, both ways',
            'normal_consistency_abs': 'mean |cosine| (orientation-free), both ways',
            'iou': f'volumetric IoU on a {iou_grid}-voxel (longest side) grid',
            'n_samples': n_samples,
        },
        'mean': {'recon': _per_key(recon), 'recon_ok_only': _per_key(recon_ok)},
        'median': {'recon': _per_key(recon, np.median)},
        'cases': results,
    }
    by_pose = _by_pose(results)
    if by_pose:
        summary['by_pose'] = by_pose
    if baseline:
        summary['mean']['baseline'] = _per_key([{k: e['baseline'][k] for k in METRIC_KEYS
                                                 + ('thickness_cm',)} for e in results])
    figure = np.concatenate(rows + [_colour_bar(rows[0].shape[1])], axis=0)
    cv2.imwrite(str(out / 'report.png'), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
    (out / 'results.json').write_text(json.dumps(summary, indent=1, default=_json_default))
    (out / 'report.md').write_text(_markdown(summary, baseline))
    return summary


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(f'not JSON serializable: {type(obj).__name__}')


def _markdown(summary: dict[str, Any], baseline: bool) -> str:
    """Write the report: settings, metric definitions, per-case table with the mean, figure."""
    def fmt(m: dict[str, float]) -> list[str]:
        return [f"{m['chamfer_cm']:.2f}", f"{m['p2s_cm']:.2f}", f"{m['normal_consistency']:.3f}",
                f"{m['iou']:.3f}"]

    head = ['case', 'status', 'Chamfer (cm)', 'P2S (cm)', 'normal cons.', 'IoU']
    if baseline:
        head += ['base. Chamfer', 'base. P2S', 'base. n.c.', 'base. IoU', 'base. thickness (cm)']
    head.append('time (s)')
    lines = [
        '# Evaluation report', '',
        f"Data: `{summary['data_dir']}` ({summary['n_cases']} cases, "
        f"{summary['n_failed']} failed); checkpoint: {summary['checkpoint']}; "
        f"resolution: {summary['resolution']}; threshold: {summary.get('threshold')}; "
        f"fill_silhouette: {summary.get('fill_silhouette')}; "
        f"mirror_average: {summary.get('mirror_average')}, "
        f"shift_average: {summary.get('shift_average')}.", '',
        'All metrics in the camera frame after the best z shift of the reconstruction. Chamfer: '
        'mean of the recon->gt (P2S) and gt->recon mean point-to-surface distances (PIFu). '
        'Normal consistency: mean signed cosine between a sampled point\'s normal and the '
        'closest triangle normal of the other surface, both ways (1 perfect, -1 inside-out). '
        'IoU: volumetric. '
        f"Points per surface: {summary['metrics']['n_samples']}. "
        f"A case without a person scores Chamfer = P2S = {FAILURE_PENALTY['chamfer_cm']:g} cm, "
        'normal consistency 0, IoU 0.', '',
    ]
    if baseline:
        lines += ['Baseline: the true silhouette extruded to the constant thickness that '
                  'minimizes its Chamfer distance.', '']
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for e in summary['cases']:
        cells = [e['name'], e['status']] + fmt(e['recon'])
        if baseline:
            cells += fmt(e['baseline']) + [f"{e['baseline']['thickness_cm']:.1f}"]
        cells.append(f"{e['time_s']:.1f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    mean = summary['mean']
    cells = ['**mean**', f"{summary['n_cases'] - summary['n_failed']}/{summary['n_cases']} ok"]
    cells += [f'**{c}**' for c in fmt(mean['recon'])]
    if baseline:
        cells += fmt(mean['baseline']) + [f"{mean['baseline']['thickness_cm']:.1f}"]
    cells.append(f"{np.mean([e['time_s'] for e in summary['cases']]):.1f}")
    lines.append('| ' + ' | '.join(cells) + ' |')
    cells = ['median', ''] + fmt(summary['median']['recon'])
    cells += [''] * (len(head) - len(cells))
    lines.append('| ' + ' | '.join(cells) + ' |')
    if summary.get('by_pose'):
        lines += ['', 'By pose (from the cases\' `info.json`), worst mean Chamfer first:', '',
                  '| pose | cases | Chamfer (cm) | P2S (cm) | normal cons. | IoU |',
                  '|---|---|---|---|---|---|']
        lines += ['| ' + ' | '.join([pose, str(m['n_cases'])] + fmt(m)) + ' |'
                  for pose, m in summary['by_pose'].items()]
    lines += ['', 'Per case: input, reconstruction front and side, distance of the reconstruction '
              f'to the ground truth (0 to {ERROR_MAX_CM:g} cm) front and side.', '',
              '![evaluation figure](report.png)', '']
    return '\n'.join(lines)


# --- command line ------------------------------------------------------------------------------

def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    from ..core.reconstruct_cli import add_model_arguments

    p = subparsers.add_parser(
        'evaluate', help='score reconstructions of an evaluation set',
        description='Reconstruct every case of DATA_DIR (image.png, camera.json, gt.ply) and '
                    'report Chamfer, P2S, normal consistency and IoU, with a silhouette baseline.')
    p.add_argument('data_dir', metavar='DATA_DIR')
    add_model_arguments(p)
    p.add_argument('--out', default='evaluation', help='output directory (default: ./evaluation)')
    p.add_argument('--no-baseline', action='store_true', help='skip the silhouette baseline')
    p.set_defaults(func=_cli_evaluate)


def _cli_evaluate(args: argparse.Namespace) -> int:
    from ..core.config import MonoPortConfig
    from ..core.reconstruct_cli import model_config_fields

    config = MonoPortConfig.offline(**model_config_fields(args), render_views=['front', 'side'])
    summary = evaluate(args.data_dir, config, args.out, baseline=not args.no_baseline,
                       verbose=True)
    rec = summary['mean']['recon']
    print(f"mean Chamfer {rec['chamfer_cm']:.2f} cm, P2S {rec['p2s_cm']:.2f} cm, "
          f"normal consistency {rec['normal_consistency']:.3f}, IoU {rec['iou']:.3f} over "
          f"{summary['n_cases']} cases ({summary['n_failed']} failed); median Chamfer "
          f"{summary['median']['recon']['chamfer_cm']:.2f} cm")
    if 'baseline' in summary['mean']:
        base = summary['mean']['baseline']
        print(f"baseline (extruded true silhouette): Chamfer {base['chamfer_cm']:.2f} cm")
    print(f'report: {Path(args.out) / "report.md"}')
    return 0
