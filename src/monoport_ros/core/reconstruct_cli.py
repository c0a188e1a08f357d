"""``monoport-ros reconstruct``: one image to a coloured mesh (and points, views) in metres."""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .camera import OrthoCamera, ortho_camera_from_height
from .config import MonoPortConfig, PRECISIONS, PRIOR_MODES
from .preprocess import load_rgb
from .reconstruct import Reconstructor
from .results import write_mesh, write_points, write_views


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options every single-image command shares; defaults: the offline preset."""
    offline = MonoPortConfig.offline()
    p.add_argument('--checkpoint', default=offline.checkpoint,
                   help='model file (default: the shipped model)')
    p.add_argument('--resolution', type=int, default=offline.resolution,
                   help='grid resolution (power of two; default: %(default)s)')
    p.add_argument('--precision', default=offline.precision, choices=PRECISIONS,
                   help='network arithmetic (default: %(default)s; bfloat16 is faster on CPUs '
                   'and GPUs that have it)')
    p.add_argument('--threshold', type=float, default=offline.threshold,
                   help='occupancy iso-level (default: %(default)s)')
    p.add_argument('--no-fill-silhouette', action='store_true',
                   help='do not fill mask pixels the network left empty (fill_silhouette off)')
    p.add_argument('--surface-smoothing', type=float, default=offline.surface_smoothing,
                   metavar='SIGMA',
                   help='Gaussian smoothing of the occupancy, sigma in voxels of a 256^3 grid '
                   '(scaled with --resolution), 0 = off (default: '
                   '%(default)s; the node\'s default is off, for speed)')
    p.add_argument('--no-mirror-average', action='store_true',
                   help='ask the network about the image only, not also its mirror image '
                   '(mirror_average off, as the node runs by default: faster, worse depth)')
    p.add_argument('--pose-prior', default=offline.pose_prior, choices=PRIOR_MODES,
                   help='correct the depth with a coarse body on the pose landmarks: carve '
                   'away what lies far from it, or also add it (pose_prior; default: '
                   '%(default)s)')
    p.add_argument('--no-shift-average', action='store_true',
                   help='do not also ask the network about the crop moved a few pixels '
                   '(shift_average off, as the node runs by default: faster, worse depth)')


def model_config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """``MonoPortConfig`` fields from the options of :func:`add_model_arguments`."""
    return {'checkpoint': args.checkpoint, 'resolution': args.resolution,
            'precision': args.precision, 'threshold': args.threshold,
            'fill_silhouette': not args.no_fill_silhouette,
            'surface_smoothing': args.surface_smoothing,
            'mirror_average': not args.no_mirror_average,
            'shift_average': not args.no_shift_average, 'pose_prior': args.pose_prior}


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``reconstruct`` sub-command."""
    p = sub.add_parser('reconstruct', help='reconstruct a coloured 3D person from one image')
    p.add_argument('image')
    p.add_argument('--camera', help='orthographic camera JSON; default: the person is 1.7 m tall')
    p.add_argument('--mesh', help='output coloured mesh (.ply) in the camera frame, metres')
    p.add_argument('--points', help='output coloured surface points (.ply), metres')
    p.add_argument('--views',
                   help='directory for direct renderings (<view>.png, <view>_normals.png)')
    add_model_arguments(p)
    p.add_argument('--octree-depth', type=int, default=0,
                   help='localization levels (0: auto by resolution and device)')
    p.add_argument('--geometry-device', default='cpu')
    p.add_argument('--color-device', default='cpu')
    p.add_argument('--render-views', default='front,side,back')
    p.add_argument('--render-size', type=int, default=512)
    p.add_argument('--max-triangles', type=int, default=0, help='decimate the mesh (0 = keep all)')
    p.add_argument('--no-segmentation', action='store_true',
                   help='input is pre-masked (black background)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``reconstruct``."""
    config = MonoPortConfig.offline(
        **model_config_fields(args), octree_depth=args.octree_depth,
        geometry_device=args.geometry_device, color_device=args.color_device,
        render_views=[v for v in args.render_views.split(',') if v],
        render_size=args.render_size, mesh_max_triangles=args.max_triangles,
        segmentation=not args.no_segmentation)
    rgb = load_rgb(args.image)
    with Reconstructor(config) as reconstructor:
        rec = reconstructor.reconstruct(rgb)
    if not rec.person:
        raise ValueError(f'{args.image}: no person found')
    h, w = rgb.shape[:2]
    camera = OrthoCamera.load(args.camera) if args.camera else \
        ortho_camera_from_height(w, h, rec.person_height_px)
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f'camera image_size {camera.width}x{camera.height} != image {w}x{h}')
    # The network's depth origin is the body's median surface depth; the camera JSON puts z = 0
    # through the centre of the subject's 3D bounding box, so centre the surface in z.
    surface = rec.points if len(rec.points) else rec.vertices
    z_shift = 0.0
    if len(surface):
        z = camera.model_to_metric(rec.crop, surface)[:, 2]
        z_shift = float(z.min() + z.max()) / 2.0

    def to_camera(model_points: np.ndarray) -> np.ndarray:
        out = camera.model_to_metric(rec.crop, model_points)
        out[:, 2] -= z_shift
        return out

    summary = {'vertices': len(rec.vertices), 'faces': len(rec.faces), 'queries': rec.queries,
               'timings_ms': {k: round(v, 1) for k, v in rec.timings_ms.items()}}
    if args.mesh:
        write_mesh(args.mesh, rec, to_camera)
        summary['mesh'] = args.mesh
    if args.points:
        write_points(args.points, rec, to_camera)
        summary['points'] = args.points
    if args.views:
        write_views(args.views, rec, normals=True)
        summary['views'] = args.views
    print(json.dumps(summary))
    return 0
