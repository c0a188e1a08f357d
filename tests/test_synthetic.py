"""Synthetic people: meshes, renders, training samples and evaluation cases."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import trimesh

from monoport_ros.cli import build_parser, main
from monoport_ros.offline import people
from monoport_ros.offline import synthetic as syn
from monoport_ros.core.camera import OrthoCamera
from monoport_ros.core.o3d import o3d


@pytest.fixture(scope='module')
def person() -> people.Person:
    return people.make_person(np.random.default_rng(7), pose='walk')


def _winding_number(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Generalized winding number (van Oosterom-Strackee solid angles), independent of Open3D."""
    out = np.empty(len(points))
    for i, p in enumerate(points):
        a, b, c = (vertices[faces[:, k]] - p for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum('ij,ij->i', a, np.cross(b, c))
        div = (la * lb * lc + np.einsum('ij,ij->i', a, b) * lc
               + np.einsum('ij,ij->i', b, c) * la + np.einsum('ij,ij->i', c, a) * lb)
        out[i] = np.arctan2(det, div).sum() * 2.0 / (4.0 * np.pi)
    return out


def _project(camera: OrthoCamera, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame metres -> integer pixel (u, v) containing the point."""
    m = camera.metres_per_pixel
    u = np.floor(pts[:, 0] / m + camera.width / 2.0).astype(int)
    v = np.floor(camera.height / 2.0 - pts[:, 1] / m).astype(int)
    return u, v


def test_mesh_is_watertight_person_sized_and_upright(person):
    mesh = trimesh.Trimesh(person.vertices, person.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0.02                       # outward normals, an adult's volume (m^3)
    ext = np.ptp(person.vertices, axis=0)
    assert 1.3 < ext[1] < 2.2 and ext[1] > ext[0] and ext[1] > ext[2]
    assert person.face_colors.shape == (len(person.faces), 3)
    assert person.face_colors.dtype == np.uint8
    # y is up: the head is at the top and the feet at the bottom
    head = person.face_parts == people.PARTS.index('head')
    feet = person.face_parts == people.PARTS.index('foot')
    tri_y = person.vertices[person.faces][:, :, 1].mean(axis=1)
    assert tri_y[head].mean() > 1.2 and tri_y[feet].mean() < 0.2


def test_person_faces_the_camera(person):
    """The toes and the face point towards +z (the camera) at yaw 0."""
    cen = person.vertices[person.faces].mean(axis=1)
    feet = person.face_parts == people.PARTS.index('foot')
    shin = person.face_parts == people.PARTS.index('shin')
    assert cen[feet, 2].max() > cen[shin, 2].max() + 0.05


def test_make_person_is_reproducible_and_varied():
    a = people.make_person(np.random.default_rng(3))
    b = people.make_person(np.random.default_rng(3))
    c = people.make_person(np.random.default_rng(4))
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.face_colors, b.face_colors)
    assert not np.allclose(a.vertices, c.vertices)


def test_mask_is_the_rendered_silhouette(person):
    rng = np.random.default_rng(0)
    bg = np.full((160, 120, 3), (10, 200, 30), np.uint8)
    r = syn.render_person(person, 30.0, (120, 160), rng, background=bg)
    img, mask, cam = r['image'], r['mask'], r['camera']
    assert img.shape == (160, 120, 3) and img.dtype == np.uint8 and mask.shape == (160, 120)
    assert (cam.width, cam.height) == (120, 160)
    np.testing.assert_array_equal(img[~mask], bg[~mask])
    assert (np.abs(img[mask].astype(int) - bg[mask]).sum(axis=1) > 0).mean() > 0.95
    # an independent silhouette: fill the projected triangles (pixel centres)
    m = cam.metres_per_pixel
    uv = np.stack([r['mesh_cam'][:, 0] / m + cam.width / 2 - 0.5,
                   cam.height / 2 - r['mesh_cam'][:, 1] / m - 0.5], axis=1)
    sil = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(sil, list(np.round(uv[person.faces] * 16).astype(np.int32)), 1, shift=4)
    sil = sil.astype(bool)
    iou = (sil & mask).sum() / (sil | mask).sum()
    assert iou > 0.9, iou
    # the person is 60-90% of the image height
    rows = np.flatnonzero(mask.any(axis=1))
    assert 0.6 * 160 - 2 <= rows[-1] - rows[0] + 1 <= 0.9 * 160 + 2
    # z = 0 through the centre of the 3D bounding box
    z = r['mesh_cam'][:, 2]
    assert abs(z.min() + z.max()) < 1e-9


def test_projected_surface_points_land_in_mask(person):
    rng = np.random.default_rng(1)
    r = syn.render_person(person, 200.0, 256, rng, background='clutter')
    pts, _ = syn.sample_surface(r['mesh_cam'], person.faces, 2000, rng)
    u, v = _project(r['camera'], pts)
    assert (u >= 0).all() and (u < 256).all() and (v >= 0).all() and (v < 256).all()
    inside = r['mask'][v, u]
    assert inside.mean() > 0.9
    # the few misses are silhouette points, within a pixel and a half of the mask
    dist = cv2.distanceTransform((~r['mask']).astype(np.uint8), cv2.DIST_L2, 5)
    assert dist[v, u].max() <= 1.5
    # points in front of the body do not project onto the background: a ray hits the mesh
    assert r['mask'][v[inside], u[inside]].all()


def test_placement_varies_and_is_not_always_centred(person):
    rng = np.random.default_rng(2)
    centres = []
    for _ in range(6):
        mask = syn.render_person(person, 0.0, 96, rng, background='flat')['mask']
        cols = np.flatnonzero(mask.any(axis=0))
        centres.append((cols[0] + cols[-1]) / 2)
    assert np.ptp(centres) > 5


@pytest.mark.parametrize('kind', syn.BACKGROUNDS)
def test_backgrounds(kind):
    img = syn.make_background(40, 50, np.random.default_rng(0), kind)
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8
    assert (np.ptp(img.reshape(-1, 3), axis=0) == 0).all() == (kind == 'flat')


def test_occupancy_agrees_with_winding_number(person):
    rng = np.random.default_rng(5)
    pts, _ = syn.sample_surface(person.vertices, person.faces, 60, rng)
    pts = np.concatenate([pts + rng.normal(0, 0.03, pts.shape),
                          rng.uniform(person.vertices.min(0), person.vertices.max(0), (60, 3))])
    occ = syn.occupancy(person.vertices, person.faces, pts)
    wn = _winding_number(person.vertices, person.faces, pts)
    assert occ.any() and not occ.all()
    np.testing.assert_array_equal(occ, wn > 0.5)


def test_occupancy_counts_overlapping_shells_as_inside():
    """Where two closed shells overlap (as a posed arm in a torso) the point is inside."""
    a = trimesh.creation.box((1.0, 1.0, 1.0))
    b = trimesh.creation.box((1.0, 1.0, 1.0))
    b.apply_translation((0.5, 0.0, 0.0))
    verts = np.concatenate([a.vertices, b.vertices])
    faces = np.concatenate([a.faces, b.faces + len(a.vertices)]).astype(np.int32)
    pts = np.array([[0.25, 0.1, 0.05], [-0.3, 0.2, 0.1], [0.8, -0.2, 0.3], [1.2, 0.0, 0.0],
                    [0.25, 0.7, 0.0]])
    np.testing.assert_array_equal(syn.occupancy(verts, faces, pts),
                                  [True, True, True, False, False])
    np.testing.assert_array_equal(_winding_number(verts, faces, pts) > 0.5,
                                  [True, True, True, False, False])


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='pose'):
        people.make_person(rng, pose='moonwalk')
    with pytest.raises(ValueError, match='background'):
        syn.make_background(10, 10, rng, 'stripes')
    with pytest.raises(ValueError, match='yaw_step'):
        syn.write_training_set('/nonexistent/x', 1, 0, yaw_step=0)
    with pytest.raises(ValueError, match='n_subjects'):
        syn.write_training_set('/nonexistent/x', 0, 0)
    with pytest.raises(ValueError, match='n must be'):
        syn.write_eval_set('/nonexistent/x', 0, 0)


def test_training_set_files(tmp_path):
    meta = syn.write_training_set(tmp_path, 1, seed=11, image_size=160, crop_size=64,
                                  yaw_step=180, n_surface=600, n_uniform=200, n_color=300)
    on_disk = json.loads((tmp_path / 'meta.json').read_text())
    assert on_disk == json.loads(json.dumps(meta))
    for key, value in {'n_subjects': 1, 'yaw_step': 180, 'crop_size': 64, 'seed': 11,
                       'n_samples': 800, 'complete': True, 'n_files': 2}.items():
        assert on_disk[key] == value, key
    files = sorted((tmp_path / 'samples').glob('*.npz'))
    assert [f.name for f in files] == ['0000_000.npz', '0000_180.npz']
    assert sorted(p.name for p in (tmp_path / 'samples').iterdir()) == [f.name for f in files]
    for f in files:
        d = np.load(f)
        assert {'image', 'mask', 'points', 'labels', 'color_points', 'colors',
                'subject'} <= set(d.files)
        assert d['image'].shape == (64, 64, 3) and d['image'].dtype == np.uint8
        assert d['mask'].shape == (64, 64) and d['mask'].dtype == np.uint8
        assert set(np.unique(d['mask'])) == {0, 1}
        assert d['points'].shape == (800, 3) and d['points'].dtype == np.float32
        assert d['labels'].shape == (800,) and d['labels'].dtype == np.uint8
        assert d['color_points'].shape == (300, 3) and d['color_points'].dtype == np.float32
        assert d['colors'].shape == (300, 3) and d['colors'].dtype == np.uint8
        assert int(d['subject']) == 0
        assert (d['image'][d['mask'] == 0] == 0).all()
        labels = d['labels'].astype(bool)
        assert 0.05 < labels.mean() < 0.8
        # uniform samples fill the model cube; inside points project into the mask
        assert np.abs(d['points'][-200:]).max() <= 1.0 + 1e-5
        pin = d['points'][labels]
        u = np.clip(np.floor((pin[:, 0] + 1) / 2 * 64).astype(int), 0, 63)
        v = np.clip(np.floor((1 - pin[:, 1]) / 2 * 64).astype(int), 0, 63)
        assert d['mask'][v, u].mean() > 0.85
        # the person fills the crop as at inference (longer side ~ CROP_FILL of the crop)
        rows = np.flatnonzero(d['mask'].any(axis=1))
        assert 0.75 * 64 < rows[-1] - rows[0] + 1 <= 0.9 * 64
    # an interrupted run resumes with the same samples
    before = dict(np.load(files[1]))
    files[1].unlink()
    meta = syn.write_training_set(tmp_path, 1, seed=11, image_size=160, crop_size=64,
                                  yaw_step=180, n_surface=600, n_uniform=200, n_color=300)
    assert meta['n_files'] == 2
    after = np.load(files[1])
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_eval_set_loads_and_gt_projects_onto_mask(tmp_path):
    cases = syn.write_eval_set(tmp_path, 1, seed=3, image_size=128)
    case = cases[0]
    assert case == tmp_path / 'case_000'
    img = cv2.imread(str(case / 'image.png'))
    mask = cv2.imread(str(case / 'mask.png'), cv2.IMREAD_GRAYSCALE) > 0
    cam = OrthoCamera.load(case / 'camera.json')
    assert img.shape == (128, 128, 3) and (cam.width, cam.height) == (128, 128)
    mesh = o3d.io.read_triangle_mesh(str(case / 'gt.ply'))
    verts = np.asarray(mesh.vertices)
    assert len(mesh.triangles) > 10000 and mesh.has_vertex_colors()
    # closed and manifold (Open3D's is_watertight() also demands no self-intersection, which
    # posed skinned bodies do not meet at the finger tips and arm pits)
    assert mesh.is_edge_manifold() and mesh.is_vertex_manifold()
    assert trimesh.load(case / 'gt.ply', process=False).is_watertight
    u, v = _project(cam, verts)
    assert mask[np.clip(v, 0, 127), np.clip(u, 0, 127)].mean() > 0.85
    rows = np.flatnonzero(mask.any(axis=1))
    assert 0.6 * 128 - 2 <= rows[-1] - rows[0] + 1 <= 0.9 * 128 + 2
    # metres: the gt height matches the recorded subject height (up to the pose)
    info = json.loads((case / 'info.json').read_text())
    assert info['subject'] >= syn.EVAL_SEED_OFFSET
    assert 1.0 < np.ptp(verts[:, 1]) <= info['bbox_height_m'] + 1e-6


def test_cli_registers_commands(tmp_path):
    args = build_parser().parse_args(['make-train-set', str(tmp_path), '--subjects', '3',
                                      '--seed', '2', '--yaw-step', '30', '--workers', '1'])
    assert (args.subjects, args.seed, args.yaw_step, args.workers) == (3, 2, 30, 1)
    assert args.func is syn._cmd_train
    args = build_parser().parse_args(['make-eval-set', str(tmp_path), '--n', '2', '--seed', '1'])
    assert (args.n, args.seed, args.size) == (2, 1, 512) and args.func is syn._cmd_eval
    assert main(['make-eval-set', str(tmp_path / 'ev'), '--n', '1', '--size', '64']) == 0
    assert (tmp_path / 'ev' / 'case_000' / 'gt.ply').is_file()
    assert main(['make-train-set', str(tmp_path / 'tr'), '--subjects', '0']) == 2
