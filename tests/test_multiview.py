"""The real-image benchmark's geometry, end to end on two shipped pose2sim frames (4 cameras)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from monoport_ros import cli
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.offline import multiview as mv

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'pose2sim'


@pytest.fixture(scope='module')
def data() -> mv.MultiviewData:
    return mv.open_data(FIXTURE)


def masks_of(data: mv.MultiviewData, frame: int) -> list[np.ndarray]:
    return [v.mask for v in mv.detect(data, [frame], None)[frame][1]]


def landmarks_of(data: mv.MultiviewData) -> np.ndarray:
    seen = mv.detect(data, range(data.n_frames), None)
    return np.array([[v.landmarks for v in seen[i][1]] for i in range(data.n_frames)])


def test_fixture_reads_with_the_image_size_quirk(data):
    assert [c.name for c in data.cameras] == ['cam01', 'cam02', 'cam03', 'cam04']
    assert data.n_frames == 2
    # cam01/02 are 1080 px videos of a 1088 px calibration: 270 px at a quarter
    sizes = [(c.width, c.height) for c in data.cameras]
    assert sizes == [(270, 480), (270, 480), (272, 480), (272, 480)]
    raw = mv.read_qca(FIXTURE / mv.CALIBRATION)
    assert raw[0].width == 1088 and raw[0].K[0, 0] == pytest.approx(107599.671875 / 64)
    assert data.cameras[0].K[0, 0] == pytest.approx(raw[0].K[0, 0] / 4)


def test_cameras_face_the_person(data):
    centre = mv.mask_centroid_point(data.cameras, masks_of(data, 0))
    for cam in data.cameras:
        assert np.allclose(cam.R @ cam.R.T, np.eye(3)) and np.linalg.det(cam.R) > 0
        z = cam.to_camera(centre[None])[0, 2]
        assert 2.0 < z < 8.0, (cam.name, z)          # in front of the camera, metres away
        u, v = cam.project(centre[None])[0]
        assert 0 < u < cam.width and 0 < v < cam.height


@pytest.mark.parametrize('change, message', [
    (lambda t: t.replace('focalLengthU="107599.671875"', ''), "'focalLengthU' missing"),
    (lambda t: t.replace('r11="0.5536380477336265"', 'r11="2.0"'), 'not a rotation'),
    (lambda t: t.replace('x="1460.2323709212087"', 'x="abc"'), "'x' missing or not a number"),
    (lambda t: t[:200], 'bad XML'),
    (lambda t: t.replace('<transform', '<transformed'), 'no <transform>'),
])
def test_malformed_calibration_is_a_clear_error(tmp_path, change, message):
    bad = tmp_path / 'Calib.qca.txt'
    bad.write_text(change((FIXTURE / mv.CALIBRATION).read_text()))
    with pytest.raises(ValueError, match=message):
        mv.read_qca(bad)


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match='pip download --no-deps pose2sim'):
        mv.open_data(tmp_path)
    assert cli.main(['evaluate-multiview', str(tmp_path / 'nowhere')]) == 2
    assert 'pip download --no-deps pose2sim' in capsys.readouterr().err


def test_rasteriser_agrees_with_projected_box(data):
    centre = mv.mask_centroid_point(data.cameras, masks_of(data, 0))
    box = trimesh.creation.box((0.4, 0.5, 0.9))
    verts = box.vertices + centre
    raster = mv.Rasteriser(verts, box.faces)
    for cam in data.cameras:
        sil = raster.silhouette(cam)
        hull = cv2.convexHull(np.round(cam.project(verts)).astype(np.int32))
        ref = np.zeros_like(sil, np.uint8)
        cv2.fillConvexPoly(ref, hull, 1)
        assert sil.sum() > 500
        assert mv.iou(sil, ref > 0) > 0.95, cam.name


def test_visual_hull_reprojects_onto_the_masks(data):
    for frame in range(data.n_frames):
        masks = masks_of(data, frame)
        ious = mv.hull_ious(data.cameras, masks, voxel=0.02)
        assert min(ious) > 0.8 and np.mean(ious) > 0.85, ious
    # the camera frame without pose2sim's turn by pi about x looks away: no hull
    flipped = [mv.Camera(c.name, c.width, c.height, c.K, c.dist, np.diag([1.0, -1, -1]) @ c.R,
                         np.diag([1.0, -1, -1]) @ c.t) for c in data.cameras]
    try:
        assert np.mean(mv.hull_ious(flipped, masks, voxel=0.02)) < 0.5
    except ValueError:
        pass


def test_landmark_refit_turns_cameras_slightly_and_lowers_the_error(data):
    fitted, report = mv.refit_rotations(data.cameras, landmarks_of(data))
    for cam in data.cameras:
        r = report[cam.name]
        assert r['refit'] and 0 < r['angle_deg'] < 5.0, r     # two frames: noisier
        assert r['median_px_after'] < r['median_px_before'] + 1.0, r
    before = sum(r['median_px_before'] for r in report.values())
    assert sum(r['median_px_after'] for r in report.values()) < before - 2.0, report
    masks = masks_of(data, 0)
    assert np.mean(mv.hull_ious(fitted, masks, voxel=0.02)) > 0.85


def _sphere(centre: np.ndarray, radius: float) -> trimesh.Trimesh:
    s = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    s.apply_translation(centre)
    return s


def _snowman(data: mv.MultiviewData, model_turn: np.ndarray | None = None):
    """
    Two spheres in the world, their masks in every camera, and the same shape in cam02's model.

    The model-space shape is written out here (not with mv.weak_perspective): model x right,
    y up, z towards the camera; pixel centres at +0.5 in the crop's coordinates. ``model_turn``
    turns the model-space shape about the origin.
    """
    cams = data.cameras
    source = cams[1]
    centre = mv.mask_centroid_point(cams, masks_of(data, 0))
    up, right = -source.R[1], source.R[0]
    parts = [(centre, 0.25), (centre + 0.45 * up + 0.15 * right, 0.12)]
    world = trimesh.util.concatenate([_sphere(c, r) for c, r in parts])
    truth = mv.Rasteriser(world.vertices, world.faces)
    masks = [truth.silhouette(c) for c in cams]
    crop, _ = mv.model_crop(masks[1])
    d_true = float(source.to_camera(centre[None])[0, 2])
    fx, fy = source.K[0, 0], source.K[1, 1]
    half = crop.side / 2.0
    model_parts = []
    for c, r in parts:
        x, y, z = source.to_camera(c[None])[0]
        u = fx * x / d_true + source.K[0, 2] + 0.5
        v = fy * y / d_true + source.K[1, 2] + 0.5
        p = np.array([(u - crop.cx) / half, -(v - crop.cy) / half,
                      -(z - d_true) * fy / d_true / half])
        if model_turn is not None:
            p = model_turn @ p
        model_parts.append(_sphere(p, r * fy / d_true / half))
    model = trimesh.util.concatenate(model_parts)
    raster = mv.Rasteriser(model.vertices, model.faces)
    targets = [(cams[t], masks[t]) for t in (0, 2, 3)]
    return raster, source, crop, targets, masks, d_true


def test_distance_search_finds_a_known_shape(data):
    """Two spheres seen by cam02, placed by weak perspective, are found at their distance."""
    raster, source, crop, targets, masks, d_true = _snowman(data)
    best = mv.best_placement(raster, source, crop, targets, (d_true / 2, d_true * 2))
    assert best.distance == pytest.approx(d_true, rel=0.03)
    assert best.mean > 0.9, best
    assert np.mean(mv.score(raster, source, crop, targets, 1.3 * d_true)) < best.mean - 0.1
    # and it covers its own silhouette in the source camera at any distance
    for d in (0.7 * d_true, d_true):
        a, b = mv.weak_perspective(source, crop, d)
        assert mv.iou(raster.silhouette(source, a, b), masks[1]) > 0.9


def test_tilt_search_undoes_a_known_tilt(data):
    raster, source, crop, targets, _, d_true = _snowman(data, mv.tilt_matrix(-20.0))
    untilted = mv.best_placement(raster, source, crop, targets, (d_true / 2, d_true * 2))
    best = mv.best_tilted_placement(raster, source, crop, targets, (d_true / 2, d_true * 2),
                                    tilts=(-20.0, 0.0, 20.0))
    assert best.tilt_deg == 20.0 and best.distance == pytest.approx(d_true, rel=0.03)
    assert best.mean > 0.9 and best.mean > untilted.mean + 0.03, (best, untilted)


def test_extrusion_baseline_reprojects_and_scores_between(data):
    masks = masks_of(data, 0)
    crop, crop_mask = mv.model_crop(masks[2])
    verts, faces = mv.extrusion(crop_mask)
    assert verts[:, 2].min() == pytest.approx(-0.5, abs=0.2)
    targets = [(data.cameras[t], masks[t]) for t in (0, 1, 3)]
    bounds = mv.distance_bounds(data.cameras[2], masks[2])
    best = mv.best_extrusion(crop_mask, data.cameras[2], crop, targets, bounds,
                             thicknesses=(0.05, 0.3))
    assert 0.3 < best.mean < 0.9 and best.thickness in (0.05, 0.3)
    # thin, it covers its own mask in the source camera (thick, perspective widens it)
    a, b = mv.weak_perspective(data.cameras[2], crop, best.distance, np.diag([1.0, 1.0, 0.02]))
    own = mv.Rasteriser(verts, faces).silhouette(data.cameras[2], a, b)
    assert mv.iou(own, masks[2]) > 0.9


def test_tilt_matrix_turns_about_x():
    r = mv.tilt_matrix(90.0)
    assert np.allclose(r @ [0, 1, 0], [0, 0, 1]) and np.allclose(r @ [1, 0, 0], [1, 0, 0])
    assert math.isclose(np.linalg.det(r), 1.0)


def test_benchmark_end_to_end_on_the_fixture(data):
    config = MonoPortConfig(resolution=32, precision='float32', mirror_average=False,
                            shift_average=False, segmentation_tracking=False,
                            mesh_max_triangles=0, render_views=[])
    summary = mv.evaluate_multiview(FIXTURE, {'shipped': config}, frames=1, scale=1.0,
                                    baseline=False, hull_voxel=0.02, log=lambda _: None)
    res = summary['results']['shipped']
    assert res['cases'] == 12 and res['reconstructions'] == 4 and res['failed'] == 0
    assert 0.2 < res['mean_iou'] < 0.95
    assert summary['visual_hull']['refit']['mean_iou'] > 0.85
    assert 'shipped' in mv.format_summary(summary)


def test_views_without_the_person_are_a_clear_error(data):
    masks = masks_of(data, 0)
    masks[2] = np.zeros_like(masks[2])
    with pytest.raises(ValueError, match='visual hull'):
        mv.hull_ious(data.cameras, masks, voxel=0.02)
    with pytest.raises(ValueError, match='empty'):
        mv.distance_bounds(data.cameras[2], masks[2])
    with pytest.raises(ValueError, match='empty mesh'):
        mv.Rasteriser(np.zeros((0, 3)), np.zeros((0, 3), int))


def test_cli_compares_two_checkpoints(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(data_dir, configs, **kw):
        seen.update(configs=configs, kw=kw)
        return {'results': {k: {'mean_iou': 0.5, 'cases': 12, 'failed': 0,
                                'median_distance_error_m': 0.05} for k in configs},
                'visual_hull': {'refit': {'mean_iou': 0.94, 'frames': 1}},
                'cameras': ['a', 'b', 'c', 'd'], 'frames': [0], 'seconds': 1.0}

    monkeypatch.setattr(mv, 'evaluate_multiview', fake)
    out = tmp_path / 'summary.json'
    assert cli.main(['evaluate-multiview', str(FIXTURE), '--checkpoint', 'new.safetensors',
                     '--compare', 'old.safetensors', '--frames', '3', '--out', str(out)]) == 0
    checkpoints = [c.checkpoint for c in seen['configs'].values()]
    assert checkpoints == ['new.safetensors', 'old.safetensors']
    config = next(iter(seen['configs'].values()))
    assert config.resolution == 128 and config.mirror_average and config.shift_average
    assert config.surface_smoothing == 1.0 and not config.segmentation_tracking
    assert seen['kw']['frames'] == 3 and seen['kw']['baseline'] and seen['kw']['refit']
    assert out.is_file() and 'model old.safetensors' in capsys.readouterr().out
