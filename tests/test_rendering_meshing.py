"""
Direct rendering and meshing.

Rendering: silhouette, depth order, normals, colour only at visible points.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch

from monoport_ros.core.localization import localize_surface
from monoport_ros.core import meshing
from monoport_ros.core.meshing import SurfaceMesh, decimate, extract_mesh, is_watertight
from monoport_ros.core.preprocess import mask_iou
from monoport_ros.core.rendering import render_view
from shapes import SHAPES, sphere

SIZE = 129


def _disc(cx: float, cy: float, r: float, size: int = SIZE) -> np.ndarray:
    lin = np.linspace(-1, 1, size)
    x = lin[None, :]
    y = lin[::-1, None]
    return (x - cx) ** 2 + (y - cy) ** 2 < r * r


@pytest.mark.parametrize('yaw,cx', [(0, 0.1), (90, 0.0), (180, -0.1), (270, 0.0), (45, 0.0707)])
def test_sphere_silhouette(yaw: float, cx: float) -> None:
    vol = localize_surface(sphere, 128, 4)
    view = render_view(vol, yaw, SIZE)
    assert mask_iou(view.mask, _disc(cx, -0.05, 0.55)) > 0.97
    assert view.color.shape == (SIZE, SIZE, 3) and view.color.dtype == np.uint8
    assert np.isnan(view.depth[~view.mask]).all()


def test_depth_order_and_front_back() -> None:
    """
    Two balls, one in front of the other.

    The front view sees the near one, the back view the far.
    """
    def two(p: torch.Tensor) -> torch.Tensor:
        near = sphere(p, centre=(0.0, 0.0, 0.45), radius=0.3)
        far = sphere(p, centre=(0.2, 0.0, -0.45), radius=0.4)
        return torch.maximum(near, far)
    vol = localize_surface(two, 128, 4)
    colors = {}

    def color_fn(pts: torch.Tensor) -> torch.Tensor:
        # red for the near ball (z > 0), blue for the far one
        return torch.stack([(pts[:, 2] > 0).float(), torch.zeros(len(pts)),
                            (pts[:, 2] <= 0).float()], 1)
    front = render_view(vol, 0, SIZE, color_fn)
    back = render_view(vol, 180, SIZE, color_fn)
    c = SIZE // 2
    colors['front'] = front.color[c, c]
    colors['back'] = back.color[c, c]
    assert tuple(colors['front']) == (255, 0, 0)
    assert tuple(colors['back']) == (0, 0, 255)
    # depth of the front hit at the centre: near ball's front at z = 0.45 + 0.3
    assert front.depth[c, c] == pytest.approx(0.75, abs=0.03)
    # far ball seen from behind at x = 0 (its centre is at x = 0.2): 0.45 + sqrt(0.4^2 - 0.2^2)
    assert back.depth[c, c] == pytest.approx(0.45 + (0.16 - 0.04) ** 0.5, abs=0.03)


def test_normals_point_outwards() -> None:
    vol = localize_surface(lambda p: sphere(p, centre=(0, 0, 0), radius=0.6), 128, 4)
    view = render_view(vol, 0, SIZE)
    n = view.normals.astype(np.float32) / 255 * 2 - 1
    c = SIZE // 2
    assert n[c, c, 2] > 0.95                       # facing the viewer
    right = c + int(0.5 / 2 * (SIZE - 1))          # model x = 0.5
    assert n[c, right, 0] > 0.6                    # tilted to the right
    top = c - int(0.5 / 2 * (SIZE - 1))            # model y = +0.5
    assert n[top, c, 1] > 0.6                      # tilted up


def test_colour_queried_only_at_visible_points() -> None:
    vol = localize_surface(sphere, 64, 3)
    asked = []

    def color_fn(pts: torch.Tensor) -> torch.Tensor:
        asked.append(len(pts))
        return torch.full((len(pts), 3), 0.5)
    view = render_view(vol, 0, 65, color_fn)
    assert sum(asked) == int(view.mask.sum()) == len(view.points)


def test_larger_images_are_shaded_at_the_grid_rays() -> None:
    """Above resolution + 1 pixels, colour is asked once per hit ray and resampled smoothly."""
    vol = localize_surface(lambda p: sphere(p, centre=(0, 0, 0), radius=0.6), 64, 3)
    asked = []

    def color_fn(pts: torch.Tensor) -> torch.Tensor:
        asked.append(len(pts))
        return (pts + 1) / 2                     # a smooth colour: position
    small = render_view(vol, 0, 65, color_fn)
    big = render_view(vol, 0, 257, color_fn)
    assert asked[1] == int(small.mask.sum()) < int(big.mask.sum()) / 3
    inner = big.mask & (np.abs(big.normals.astype(np.float32)[..., 2] / 255 * 2 - 1) > 0.5)
    expected = np.round((big.points + 1) / 2 * 255)[inner[big.mask]]
    assert np.abs(big.color[inner] - expected).mean() < 2.0     # 1 unit = 1/255
    n = big.normals.astype(np.float32)[inner] / 255 * 2 - 1
    pts = big.points[inner[big.mask]]
    cos = (n * pts / np.linalg.norm(pts, axis=1, keepdims=True)).sum(1)
    assert np.median(cos) > 0.98 and cos.mean() > 0.95     # per-pixel normals: 0.985, 0.971


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_closed_shapes_give_watertight_meshes(name: str) -> None:
    mesh = extract_mesh(localize_surface(SHAPES[name], 64, 3))
    assert not mesh.empty
    assert is_watertight(mesh)
    # outward orientation: signed volume positive
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    signed = np.einsum('ij,ij->i', tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert signed > 0


def test_mesh_of_sphere_has_right_radius() -> None:
    mesh = extract_mesh(
        localize_surface(lambda p: sphere(p, centre=(0, 0, 0), radius=0.5), 128, 4))
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - 0.5) < 2.0 / 128


def test_shape_touching_the_border_is_still_closed() -> None:
    mesh = extract_mesh(localize_surface(lambda p: (p[..., 0] > 0.5).float(), 32, 2))
    assert is_watertight(mesh)


def _soft_sphere(p: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid((0.6 - (p - torch.tensor([0.2, 0.0, -0.1])).norm(dim=-1)) * 20)


@pytest.mark.parametrize('case', ['sphere', 'torus', 'thin_plates', 'capsules', 'border',
                                  'soft_clipped_by_region'])
def test_marching_cubes_mask_gives_the_unmasked_mesh(case: str, monkeypatch) -> None:
    """Skipping cells with unqueried corners (marching-cubes mask) must not change the mesh."""
    region = None
    if case == 'border':
        field = lambda p: (p[..., 0] > 0.5).float()      # noqa: E731
    elif case == 'soft_clipped_by_region':
        field, region = _soft_sphere, ((10, 60), (0, 40), (5, 64))   # the region cuts the ball
    else:
        field = SHAPES[case]
    volume = localize_surface(field, 64, 3, region=region)
    masked = extract_mesh(volume)
    monkeypatch.setattr(meshing, '_surface_cells', lambda volume, box: None)
    plain = extract_mesh(volume)
    assert not plain.empty
    np.testing.assert_array_equal(masked.faces, plain.faces)
    np.testing.assert_array_equal(masked.vertices, plain.vertices)


def test_decimation_respects_budget_and_keeps_colours() -> None:
    mesh = extract_mesh(localize_surface(sphere, 64, 3))
    mesh.colors = np.tile(np.array([[0.2, 0.4, 0.6]], np.float32), (len(mesh.vertices), 1))
    small = decimate(mesh, 1000)
    assert 0 < len(small.faces) <= 1000
    assert small.colors is not None and small.colors.shape == small.vertices.shape
    assert np.allclose(small.colors, [0.2, 0.4, 0.6], atol=1e-3)


def test_empty_volume_gives_empty_mesh() -> None:
    mesh = extract_mesh(localize_surface(lambda p: torch.zeros(len(p)), 32, 2))
    assert mesh.empty and isinstance(mesh, SurfaceMesh)


def test_mesh_within_budget_uses_a_coarser_grid() -> None:
    from monoport_ros.core.meshing import mesh_within_budget
    vol = localize_surface(sphere, 128, 4)
    full = extract_mesh(vol)
    small = mesh_within_budget(vol, full, len(full.faces) // 3)
    assert 0 < len(small.faces) <= len(full.faces) // 3
    assert is_watertight(extract_mesh(vol, stride=2))
    r_full = np.linalg.norm(full.vertices - [0.1, -0.05, 0], axis=1).mean()
    r_small = np.linalg.norm(small.vertices - [0.1, -0.05, 0], axis=1).mean()
    assert abs(r_small - r_full) < 4.0 / 128
    assert mesh_within_budget(vol, full, 0) is full


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_surface_points_are_the_marching_cubes_vertices(name: str) -> None:
    from monoport_ros.core.meshing import surface_points
    vol = localize_surface(SHAPES[name], 64, 3)
    mesh = extract_mesh(vol)
    points = surface_points(vol).numpy()
    assert len(points) > 1000
    # every edge crossing is a vertex of the mesh; marching cubes (Lewiner) adds a few vertices
    # inside some ambiguous cells (1 of 3,233 on the capsules), nothing else
    dist, _ = cKDTree(mesh.vertices).query(points)
    assert dist.max() < 1e-5
    assert len(np.unique(points, axis=0)) == len(points)
    assert len(points) <= len(mesh.vertices) <= len(points) + max(2, len(points) // 1000)
    # a closed surface has about twice as many triangles as vertices: the budget's estimate
    assert abs(len(mesh.faces) - 2 * len(points)) <= 0.01 * len(mesh.faces) + 8


def test_mesh_within_budget_from_an_estimate_equals_from_the_full_mesh() -> None:
    from monoport_ros.core.meshing import mesh_within_budget, surface_points
    vol = localize_surface(sphere, 128, 4)
    full = extract_mesh(vol)
    estimate = 2 * len(surface_points(vol))
    for budget in (0, 2 * len(full.faces), len(full.faces) // 3, 1000):
        a = mesh_within_budget(vol, full, budget)
        b = mesh_within_budget(vol, None, budget, triangles=estimate)
        assert np.array_equal(a.faces, b.faces) and np.array_equal(a.vertices, b.vertices)
