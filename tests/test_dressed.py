"""Dressed synthetic people: garments as geometry, a closed union, the sets' option."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from monoport_ros.offline import garments, people
from monoport_ros.offline import synthetic as syn

VOXEL = 0.025       # coarse grids keep each test to a few seconds


@pytest.fixture(scope='module')
def body() -> people.Person:
    return people.make_person(np.random.default_rng(7), pose='stand')


def _outfit(**kw) -> dict:
    o = garments.sample_outfit(np.random.default_rng(0))
    o.update({'top': 'none', 'sleeves': 'none', 'bottom': 'shorts', 'shorts_length': 0.3,
              'hair': 'bald', 'hat': 'none', 'bag': 'none', 'shoes': 'shoes'})
    o.update(kw)
    return o


def _dressed(body, **kw) -> people.Person:
    return garments.dress(body, np.random.default_rng(1), VOXEL, _outfit(**kw))


def _volume(p: people.Person) -> float:
    return trimesh.Trimesh(p.vertices, p.faces, process=False).volume


def test_union_is_watertight_outward_and_contains_the_body(body):
    p = _dressed(body, top='coat', sleeves='long', top_offset_m=0.04, hair='long', bag='backpack')
    mesh = trimesh.Trimesh(p.vertices, p.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > _volume(body)
    # points 3 cm inside the body are inside the dressed union
    pts, fid = syn.sample_surface(body.vertices, body.faces, 400, np.random.default_rng(2))
    normals = np.cross(*(body.vertices[body.faces[fid, k]] - body.vertices[body.faces[fid, 0]]
                         for k in (1, 2)))
    inner = pts - 0.03 * normals / np.linalg.norm(normals, axis=1, keepdims=True)
    inner = inner[syn.occupancy(body.vertices, body.faces, inner)]
    assert len(inner) > 200
    assert syn.occupancy(p.vertices, p.faces, inner).mean() > 0.98
    assert p.face_colors.shape == (len(p.faces), 3) and p.face_parts.shape == (len(p.faces),)


def test_skirt_fills_the_space_between_the_legs(body):
    b = garments._Body(body)
    y = 0.5 * (b.y_hip + b.y_knee)
    gap = np.array([[b.hip_centre[0], y, b.hip_centre[2]]])
    assert not syn.occupancy(body.vertices, body.faces, gap)[0]
    shorts = _dressed(body)
    skirt = _dressed(body, bottom='skirt', skirt_length=0.9, skirt_flare=0.1)
    assert not syn.occupancy(shorts.vertices, shorts.faces, gap)[0]
    assert syn.occupancy(skirt.vertices, skirt.faces, gap)[0]


def test_coat_stands_off_the_body(body):
    bare = _volume(_dressed(body))
    shirt = _volume(_dressed(body, top='shirt', sleeves='long', top_offset_m=0.01))
    coat = _volume(_dressed(body, top='coat', sleeves='long', top_offset_m=0.045, top_hem=0.7))
    assert bare < shirt < coat
    assert coat - bare > 0.02          # m^3: a coat 4.5 cm off the trunk, to the knees


def test_garments_are_reproducible_from_the_seed(body):
    a = garments.dress(body, np.random.default_rng(5), VOXEL)
    b = garments.dress(body, np.random.default_rng(5), VOXEL)
    c = garments.dress(body, np.random.default_rng(6), VOXEL)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.face_colors, b.face_colors)
    assert a.params['outfit'] == b.params['outfit'] != c.params['outfit']
    assert json.loads(json.dumps(a.params['outfit'])) == a.params['outfit']


def test_tilt_keeps_the_ground_truth_in_the_camera_frame(body):
    r = syn.render_person(body, 0.0, 128, np.random.default_rng(0), 'flat', pitch_deg=30.0)
    level = syn.render_person(body, 0.0, 128, np.random.default_rng(0), 'flat')
    # seen from above, the head is nearer the camera than the feet
    part = body.face_parts
    v = r['mesh_cam'][body.faces[:, 0]]
    head, feet = part == people.PARTS.index('head'), part == people.PARTS.index('foot')
    assert v[head, 2].mean() > v[feet, 2].mean() + 0.6      # about 1.6 m * sin(30 deg)
    assert np.ptp(r['mesh_cam'][:, 2]) > np.ptp(level['mesh_cam'][:, 2]) + 0.3


def test_eval_set_records_the_outfit_and_undressed_stays(tmp_path):
    case = syn.write_eval_set(tmp_path / 'd', 1, seed=3, image_size=96)[0]
    info = json.loads((case / 'info.json').read_text())
    assert info['dressed'] and 0.0 <= info['pitch_deg'] <= 35.0
    assert set(info['outfit']) >= {'top', 'bottom', 'shoes', 'hair', 'hat', 'bag', 'colours'}
    assert trimesh.load(case / 'gt.ply', process=False).is_watertight
    case = syn.write_eval_set(tmp_path / 'u', 1, seed=3, image_size=96, dressed=False)[0]
    info = json.loads((case / 'info.json').read_text())
    assert not info['dressed'] and info['pitch_deg'] == 0.0 and 'outfit' not in info
    ref = people.make_person(syn.subject_rng(3, syn.EVAL_SEED_OFFSET))
    gt = trimesh.load(case / 'gt.ply', process=False)
    assert len(gt.faces) == len(ref.faces)
    turned = syn.rotate_y(ref.vertices, info['yaw_deg'])
    np.testing.assert_allclose(np.ptp(gt.vertices, axis=0), np.ptp(turned, axis=0), atol=1e-5)
