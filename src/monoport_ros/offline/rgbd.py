"""
Synthetic RGB-D frames of a person seen by a perspective camera, with a depth sensor's faults.

For the placement evaluation (``bench/depth_placement.py``): a synthetic person of a chosen
height stands at 1.5-6 m before a wall, seen by a level pinhole camera; the colour image is shaded
as the training renders are (:func:`offline.synthetic.render_person`), the depth image is what a
stereo RGB-D camera registered to colour reports:

- quantised disparity: depth ``z = f b / d`` with the disparity ``d`` rounded to 1/8 pixel after
  0.05 px of matching noise, so the depth step grows with ``z^2`` (about 1 cm at 2 m and 9 cm at
  6 m for a 50 mm baseline at f = 500 px);
- holes: half of the pixels at depth edges, and 2 % anywhere, read 0;
- flying pixels: the other edge pixels mix the person's depth with the wall's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.camera import PinholeCamera
from ..core.o3d import o3d
from .people import Person, make_person
from .synthetic import vertex_normals, make_background, rotate_y

BASELINE_M = 0.05          # stereo baseline of the simulated depth camera
SUBPIXEL = 1.0 / 8.0       # disparity quantum (pixels)
MATCH_NOISE_PX = 0.05      # disparity noise (pixels, one sigma)


@dataclass
class RgbdFrame:
    """One frame: colour, depth (m, 0 = no depth), the camera, and the true mesh in its frame."""

    rgb: np.ndarray                 # (H, W, 3) uint8
    depth: np.ndarray               # (H, W) float32 metres, 0 where the sensor has none
    camera: PinholeCamera
    vertices: np.ndarray            # (V, 3) optical frame: x right, y down, z forward, metres
    faces: np.ndarray
    mask: np.ndarray                # (H, W) bool, the true silhouette
    height_m: float
    distance_m: float               # depth of the person's 3D box centre


def sensor_depth(depth: np.ndarray, background: np.ndarray, focal: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Apply the stereo sensor's quantisation, holes and flying pixels to a true depth image."""
    d = focal * BASELINE_M / depth
    d = np.round((d + rng.normal(0.0, MATCH_NOISE_PX, d.shape)) / SUBPIXEL) * SUBPIXEL
    out = (focal * BASELINE_M / np.maximum(d, SUBPIXEL)).astype(np.float32)
    # depth edges: a 3x3 neighbourhood spanning more than 20 cm
    pad = np.pad(depth, 1, mode='edge')
    win = np.stack([pad[i:i + depth.shape[0], j:j + depth.shape[1]]
                    for i in range(3) for j in range(3)])
    edge = (win.max(0) - win.min(0)) > 0.2
    drop = edge & (rng.random(depth.shape) < 0.5)
    fly = edge & ~drop
    mix = rng.random(depth.shape)
    out[fly] = (mix * depth + (1 - mix) * background)[fly]
    out[drop | (rng.random(depth.shape) < 0.02)] = 0.0
    return out


def scaled_person(person: Person, height_m: float) -> np.ndarray:
    """Scale the person's vertices to ``height_m`` tall (y up, metres, centred on the box)."""
    v = person.vertices - (person.vertices.max(0) + person.vertices.min(0)) / 2.0
    return v * (height_m / np.ptp(person.vertices[:, 1]))


def make_rgbd_frame(rng: np.random.Generator, width: int = 1280, height: int = 720,
                    distance: tuple[float, float] = (1.5, 6.0),
                    height_range: tuple[float, float] = (1.5, 1.95)) -> RgbdFrame:
    """
    Render one person at a random height, distance, yaw and place in the view.

    The focal length (500-650 px at 1280x720) and the nearest distance are chosen so that the
    whole person is in the frame.
    """
    return make_rgbd_sequence(rng, 1, width, height, distance, height_range)[0]


def make_rgbd_sequence(rng: np.random.Generator, frames: int, width: int = 1280,
                       height: int = 720, distance: tuple[float, float] = (1.5, 6.0),
                       height_range: tuple[float, float] = (1.5, 1.95), speed_mps: float = 0.0,
                       fps: float = 10.0) -> list[RgbdFrame]:
    """
    Frames of one person, standing still (``speed_mps`` 0) or moving sideways at ``speed_mps``.

    Each frame has its own sensor noise, lighting stays; a moving person keeps the pose (the
    body translates, as a planner sees a walking person's box). The person stays in view.
    """
    person = make_person(rng)
    h_m = float(rng.uniform(*height_range))
    focal = float(rng.uniform(500.0, 650.0))
    camera = PinholeCamera(width, height, focal, focal, width / 2.0 - 0.5, height / 2.0 - 0.5)
    v = rotate_y(scaled_person(person, h_m), float(rng.uniform(0, 360)))
    near = max(distance[0], 1.1 * h_m * focal / height + 0.5 * np.ptp(v[:, 2]))
    z = float(rng.uniform(near, max(near, distance[1])))
    half_w = 0.5 * np.ptp(v[:, 0]) * focal / z
    half_h = 0.5 * h_m * focal / z
    travel = speed_mps * (frames - 1) / fps * focal / z          # pixels crossed
    lo, hi = half_w + 2, width - half_w - 2 - travel
    u = rng.uniform(lo, hi) if hi > lo else (width - travel) / 2
    w = rng.uniform(half_h + 2, height - half_h - 2) if height > 2 * half_h + 4 else height / 2
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.0), -1.0])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.3, 0.5)
    background = make_background(height, width, rng)
    wall_z = z + float(rng.uniform(1.0, 3.0))
    out = []
    for k in range(frames):
        centre = np.array([(u - camera.cx) * z / focal + speed_mps * k / fps,
                           (w - camera.cy) * z / focal, z])
        opt = np.stack([v[:, 0], -v[:, 1], -v[:, 2]], 1) + centre
        rgb, mask, true_depth = _render(opt, person, camera, light, ambient, background, wall_z)
        rgb = np.clip(rgb + rng.normal(0.0, 2.0, rgb.shape) + 0.5, 0, 255).astype(np.uint8)
        depth = sensor_depth(true_depth, np.full_like(true_depth, wall_z), focal, rng)
        out.append(RgbdFrame(rgb, depth, camera, opt, person.faces, mask, h_m, z))
    return out


def _render(opt: np.ndarray, person: Person, camera: PinholeCamera, light: np.ndarray,
            ambient: float, background: np.ndarray, wall_z: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast the optical-frame mesh: shaded colour, silhouette and true depth (wall behind)."""
    width, height = camera.width, camera.height
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(opt.astype(np.float32)),
                        o3d.core.Tensor(person.faces.astype(np.uint32)))
    uu, vv = np.meshgrid(np.arange(width), np.arange(height))
    dirs = np.stack([(uu - camera.cx) / camera.fx, (vv - camera.cy) / camera.fy,
                     np.ones_like(uu, float)], -1)
    rays = np.concatenate([np.zeros_like(dirs), dirs], -1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays), nthreads=0)
    t_hit = ans['t_hit'].numpy()
    mask = np.isfinite(t_hit)
    true_depth = np.where(mask, t_hit, wall_z).astype(np.float32)    # dirs have z = 1
    prim = ans['primitive_ids'].numpy().astype(np.int64)[mask]
    bary = ans['primitive_uvs'].numpy()[mask].astype(np.float64)
    vn = vertex_normals(opt, person.faces)
    tri = person.faces[prim]
    n = (vn[tri[:, 0]] * (1 - bary[:, :1] - bary[:, 1:]) + vn[tri[:, 1]] * bary[:, :1]
         + vn[tri[:, 2]] * bary[:, 1:])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    shade = ambient + (1 - ambient) * np.abs(n @ light)
    rgb = background.copy()
    rgb[mask] = np.clip(person.face_colors[prim] * shade[:, None] + 0.5, 0, 255).astype(np.uint8)
    return rgb, mask, true_depth
