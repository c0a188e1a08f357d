"""Evaluation metrics, the silhouette-extrusion baseline and the evaluate() report."""
from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import trimesh

from monoport_ros import cli
from monoport_ros.offline import evaluation as ev
from monoport_ros.offline import metrics
from monoport_ros.core.camera import OrthoCamera, PersonCrop

SAMPLES = 5000
GRID = 48


def sphere(radius: float, centre=(0.0, 0.0, 0.0)) -> metrics.Surface:
    m = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return metrics.Surface(m.vertices + np.asarray(centre), m.faces)


@pytest.fixture(scope='module')
def ball() -> metrics.Surface:
    return sphere(0.2)


def test_identical_meshes(ball):
    m = metrics.mesh_metrics(ball, ball, n_samples=SAMPLES, iou_grid=GRID)
    assert m['chamfer_cm'] < 0.01
    assert m['p2s_cm'] < 0.01
    assert abs(m['z_shift_cm']) < 0.1
    assert m['iou'] > 0.99
    assert m['normal_consistency'] > 0.99


def test_sphere_one_centimetre_larger(ball):
    m = metrics.mesh_metrics(ball, sphere(0.21), n_samples=SAMPLES, iou_grid=GRID)
    assert m['chamfer_cm'] == pytest.approx(1.0, abs=0.03)
    assert m['p2s_cm'] == pytest.approx(1.0, abs=0.05)
    assert m['gt_to_recon_cm'] == pytest.approx(1.0, abs=0.05)
    assert m['iou'] == pytest.approx((0.2 / 0.21) ** 3, abs=0.03)
    assert m['normal_consistency'] > 0.99


def test_best_z_shift_undoes_a_depth_offset(ball):
    moved = metrics.Surface(ball.vertices + [0.0, 0.0, 0.07], ball.faces)
    m = metrics.mesh_metrics(moved, ball, n_samples=SAMPLES, iou_grid=GRID)
    assert m['z_shift_cm'] == pytest.approx(-7.0, abs=0.1)
    assert m['chamfer_cm'] < 0.05
    assert m['iou'] > 0.97
    # with the shift forced to zero the offset shows
    unshifted = metrics.mesh_metrics(moved, ball, z_shift=0.0, n_samples=SAMPLES, iou_grid=GRID)
    assert unshifted['chamfer_cm'] > 2.0


def test_xy_offset_is_not_forgiven(ball):
    moved = metrics.Surface(ball.vertices + [0.03, 0.0, 0.0], ball.faces)
    m = metrics.mesh_metrics(moved, ball, n_samples=SAMPLES, iou_grid=GRID)
    assert m['chamfer_cm'] > 1.0
    assert abs(m['z_shift_cm']) < 0.5


def test_flipped_mesh_normal_consistency(ball):
    """Signed consistency is -1 for an inside-out copy; |cos| and the distances do not change."""
    flipped = metrics.Surface(ball.vertices, ball.faces[:, ::-1])
    m = metrics.mesh_metrics(flipped, ball, n_samples=SAMPLES, iou_grid=GRID)
    assert m['normal_consistency'] < -0.99
    assert m['normal_consistency_abs'] > 0.99
    assert m['chamfer_cm'] < 0.01
    assert m['iou'] > 0.99          # parity occupancy ignores orientation


def test_zero_area_triangles_do_not_make_the_metrics_nan(ball):
    """Marching cubes can leave a degenerate triangle; its missing normal must not spread NaN."""
    v = np.vstack([ball.vertices, [[0.0, 0.0, 0.0]]])
    centre = len(v) - 1
    faces = np.vstack([ball.faces, [[centre, centre, centre]] * 3])     # zero area, at the centre
    degenerate = metrics.Surface(v, faces)
    inside = np.zeros((5, 3))                            # the centre: closest to the bad triangles
    assert np.isfinite(degenerate.closest_normals(inside)).all()
    m = metrics.mesh_metrics(degenerate, ball, n_samples=SAMPLES, iou_grid=GRID)
    assert all(np.isfinite(x) for x in m.values())
    assert m['normal_consistency'] > 0.99


def test_evaluation_scores_the_whole_mesh():
    """The node's triangle budget would re-extract the surface on a coarser grid: not here."""
    from monoport_ros.core.config import MonoPortConfig
    run = ev._DefaultReconstruct(MonoPortConfig(segmentation=False, mesh_max_triangles=100))
    try:
        assert run.rec.config.mesh_max_triangles == 0
    finally:
        run.close()


def test_iou_of_mesh_with_holes(ball):
    """A reconstruction with missing triangles is still mostly 'inside' (voted ray parity)."""
    keep = np.ones(len(ball.faces), bool)
    keep[::40] = False                                   # 2.5 % of the faces removed
    holed = metrics.Surface(ball.vertices, ball.faces[keep])
    assert not holed.watertight and ball.watertight
    assert metrics.volumetric_iou(holed, ball, grid=GRID) > 0.95


def test_watertight_keeps_nearly_coinciding_vertices_apart(ball):
    """
    Keep distinct vertices apart, however close; join exact duplicates only.

    Marching cubes makes such close pairs on neighbouring grid edges; exact duplicates are a split
    seam.
    """
    v, f = ball.vertices, ball.faces
    a, b, c = f[0]
    other = next(i for i, face in enumerate(f[1:], 1) if a in face and b in face)
    e = next(x for x in f[other] if x not in (a, b))
    d = len(v)                      # a new vertex on edge a-b, 1e-9 from a: split both faces
    v = np.vstack([v, v[a] + 1e-9 * (v[b] - v[a])])
    keep = np.ones(len(f), bool)
    keep[[0, other]] = False
    split = np.array([[a, d, c], [d, b, c], [b, d, e], [d, a, e]])
    assert metrics.Surface(v, np.vstack([f[keep], split])).watertight
    # the ball cut into two halves with their own copies of the rim vertices: joined, closed
    cut = f.copy()
    top = v[:len(ball.vertices)][:, 2] > 0
    moved = np.flatnonzero(top)
    copy_of = {int(i): len(ball.vertices) + k for k, i in enumerate(moved)}
    upper = top[f].all(axis=1)
    cut[upper] = np.vectorize(copy_of.get)(f[upper])
    seamed = metrics.Surface(np.vstack([ball.vertices, ball.vertices[moved]]), cut)
    assert not seamed.mesh.is_watertight and seamed.watertight


def test_bad_meshes_raise():
    with pytest.raises(ValueError, match='no faces'):
        metrics.Surface(np.zeros((3, 3)), np.zeros((0, 3), int))
    with pytest.raises(ValueError, match='out of range'):
        metrics.Surface(np.eye(3), np.array([[0, 1, 5]]))
    with pytest.raises(ValueError, match='zero area'):
        metrics.Surface(np.zeros((3, 3)), np.array([[0, 1, 2]]))


# --- a box "person" seen by a small orthographic camera ----------------------------------------

CAM = OrthoCamera(120, 120, 0.01)
BOX_EXTENTS = (0.4, 0.8, 0.12)
BOX_CENTRE = (0.05, 0.0, 0.0)


def box_surface(thickness: float = BOX_EXTENTS[2]) -> metrics.Surface:
    m = trimesh.creation.box(extents=(BOX_EXTENTS[0], BOX_EXTENTS[1], thickness))
    m = m.subdivide().subdivide()
    return metrics.Surface(m.vertices + np.asarray(BOX_CENTRE), m.faces)


def box_mask() -> np.ndarray:
    mask = np.zeros((CAM.height, CAM.width), bool)
    mask[20:100, 45:85] = True                # x in [-0.15, 0.25], y in [-0.4, 0.4] at 1 cm/px
    return mask


def test_true_mask_of_box():
    mask = ev.true_mask(CAM, box_surface())
    assert np.array_equal(mask, box_mask())


def test_extrusion_mesh_is_closed_and_outward():
    v, f = ev.extrusion_mesh(box_mask(), CAM, 0.2)
    mesh = trimesh.Trimesh(v, f)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(0.4 * 0.8 * 0.2, rel=0.03)
    # walls on the pixel boundaries, caps at +-thickness / 2
    assert np.allclose(v.min(axis=0), [-0.15, -0.4, -0.1], atol=1e-6)
    assert np.allclose(v.max(axis=0), [0.25, 0.4, 0.1], atol=1e-6)
    with pytest.raises(ValueError, match='empty mask'):
        ev.extrusion_mesh(np.zeros_like(box_mask()), CAM, 0.2)


def test_baseline_recovers_box_thickness():
    metrics, surf = ev.extrusion_baseline(box_mask(), CAM, box_surface(), n_samples=SAMPLES,
                                          iou_grid=GRID)
    assert metrics['thickness_cm'] == pytest.approx(12.0, abs=0.5)
    assert metrics['chamfer_cm'] < 0.3
    assert metrics['iou'] > 0.9
    assert abs(metrics['z_shift_cm']) < 0.5
    assert surf.watertight


def _write_case(d, image: np.ndarray, gt: metrics.Surface) -> None:
    d.mkdir(parents=True)
    cv2.imwrite(str(d / 'image.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    CAM.save(d / 'camera.json')
    trimesh.Trimesh(gt.vertices, gt.faces).export(d / 'gt.ply')


def make_dataset(root):
    """Case 'a': a red box on grey; case 'b': the same box, invisible (no person found)."""
    gt = box_surface()
    image = np.full((CAM.height, CAM.width, 3), 90, np.uint8)
    image[box_mask()] = (220, 40, 30)
    _write_case(root / 'a', image, gt)
    _write_case(root / 'b', np.full_like(image, 90), gt)
    (root / 'not_a_case').mkdir()
    return gt


def stub_reconstruct(gt: metrics.Surface, dz: float = 0.05):
    """Stands in for Reconstructor: the ground truth, in model space, pushed back by ``dz``."""
    def run(rgb: np.ndarray) -> SimpleNamespace:
        mask = rgb[..., 0] > 150
        if not mask.any():
            return SimpleNamespace(person=False, mask=mask, crop=None, vertices=np.zeros((0, 3)),
                                   faces=np.zeros((0, 3), int), views={})
        crop = PersonCrop.from_mask(mask)
        verts = CAM.metric_to_model(crop, gt.vertices + [0.0, 0.0, dz])
        return SimpleNamespace(person=True, mask=mask, crop=crop,
                               vertices=verts.astype(np.float32),
                               faces=gt.faces.astype(np.int32), views={'front': rgb})
    return run


def test_evaluate_writes_report(tmp_path):
    gt = make_dataset(tmp_path / 'data')
    (tmp_path / 'data' / 'a' / 'info.json').write_text(json.dumps({'pose': 'stand'}))
    (tmp_path / 'data' / 'b' / 'info.json').write_text(json.dumps({'pose': 'walk', 'seed': 1}))
    out = tmp_path / 'out'
    res = ev.evaluate(tmp_path / 'data', None, out, reconstruct_fn=stub_reconstruct(gt),
                      n_samples=SAMPLES, iou_grid=32)
    for name in ('report.md', 'report.png', 'results.json'):
        assert (out / name).is_file()
    saved = json.loads((out / 'results.json').read_text())
    assert saved['n_cases'] == 2 and saved['n_failed'] == 1
    a, b = saved['cases']
    assert (a['name'], a['status'], b['name'], b['status']) == ('a', 'ok', 'b', 'no_person')
    for key in ev.METRIC_KEYS:
        assert key in a['recon'] and key in a['baseline'] and key in saved['mean']['recon']
    assert a['recon']['chamfer_cm'] < 0.05
    assert a['recon']['z_shift_cm'] == pytest.approx(-5.0, abs=0.1)
    assert a['mask_iou'] == pytest.approx(1.0)
    assert b['recon'] == ev.FAILURE_PENALTY
    assert b['mask_iou'] == 0.0
    assert a['baseline']['thickness_cm'] == pytest.approx(12.0, abs=0.5)
    assert saved['mean']['recon']['chamfer_cm'] == pytest.approx(
        (a['recon']['chamfer_cm'] + ev.FAILURE_PENALTY['chamfer_cm']) / 2)
    assert saved['mean']['recon_ok_only']['chamfer_cm'] == pytest.approx(a['recon']['chamfer_cm'])
    assert res['mean'] == saved['mean']
    assert saved['median']['recon']['chamfer_cm'] == pytest.approx(
        saved['mean']['recon']['chamfer_cm'])                   # the median of two is their mean
    # per pose, worst first: the failed case's pose carries the penalty
    assert list(saved['by_pose']) == ['walk', 'stand']
    assert saved['by_pose']['walk']['chamfer_cm'] == ev.FAILURE_PENALTY['chamfer_cm']
    assert saved['by_pose']['stand']['n_cases'] == 1
    assert saved['by_pose']['stand']['iou'] == pytest.approx(a['recon']['iou'])
    md = (out / 'report.md').read_text()
    assert '| a | ok |' in md and '| b | no_person |' in md and '**mean**' in md
    assert '| median |' in md and '| walk | 1 |' in md and md.index('| walk') < md.index('| stand')
    assert 'report.png' in md
    fig = cv2.imread(str(out / 'report.png'))
    assert fig.shape[0] > 2 * 192 and fig.shape[1] == 5 * 192
    # the error tile of case 'a' shows the surface in the low-error (dark blue) end of the map
    err_tile = fig[20:192, 3 * 192:4 * 192].reshape(-1, 3).astype(float)    # BGR
    drawn = err_tile[err_tile.sum(axis=1) < 600]
    assert len(drawn) > 0.05 * len(err_tile)
    assert drawn[:, 0].mean() > drawn[:, 2].mean() + 5


def test_cli_evaluate(tmp_path, monkeypatch, capsys):
    gt = make_dataset(tmp_path / 'data')
    seen = {}

    class FakeReconstructor:
        def __init__(self):
            self.run = stub_reconstruct(gt, dz=-0.02)

        def __call__(self, rgb):
            return self.run(rgb)

        def close(self):
            seen['closed'] = True

    def fake_default(config):
        seen['config'] = config
        return FakeReconstructor()
    monkeypatch.setattr(ev, 'default_reconstruct_fn', fake_default)
    rc = cli.main(['evaluate', str(tmp_path / 'data'), '--out', str(tmp_path / 'o'),
                   '--resolution', '64', '--no-baseline'])
    assert rc == 0
    assert seen['config'].resolution == 64 and seen['config'].checkpoint == ''
    assert seen['closed']                     # the segmentation graph is released
    saved = json.loads((tmp_path / 'o' / 'results.json').read_text())
    assert 'baseline' not in saved['cases'][0] and saved['n_failed'] == 1
    assert 'mean Chamfer' in capsys.readouterr().out


def test_case_pose_is_optional(tmp_path):
    assert ev.case_pose(tmp_path) is None                       # no info.json
    for text in ('not json', '[1, 2]', '{"pose": 3}', '{"pose": ""}'):
        (tmp_path / 'info.json').write_text(text)
        assert ev.case_pose(tmp_path) is None, text
    (tmp_path / 'info.json').write_text('{"pose": "walk"}')
    assert ev.case_pose(tmp_path) == 'walk'


def test_evaluate_rejects_bad_data(tmp_path):
    with pytest.raises(ValueError, match='no evaluation case'):
        ev.evaluate(tmp_path, None, tmp_path / 'o', reconstruct_fn=lambda rgb: None)
    make_dataset(tmp_path / 'data')
    OrthoCamera(64, 64, 0.01).save(tmp_path / 'data' / 'a' / 'camera.json')
    with pytest.raises(ValueError, match='camera.json says 64x64'):
        ev.load_case(tmp_path / 'data' / 'a')
    assert cli.main(['evaluate', str(tmp_path / 'missing')]) == 2


def test_reconstruct_and_evaluate_share_model_options(tmp_path):
    from monoport_ros.core.reconstruct_cli import model_config_fields
    opts = ['--checkpoint', 'm.safetensors', '--resolution', '128', '--precision', 'bfloat16',
            '--threshold', '0.4', '--no-mirror-average', '--surface-smoothing', '0.5',
            '--no-shift-average']
    parser = cli.build_parser()
    fields = [model_config_fields(parser.parse_args(cmd + opts))
              for cmd in (['evaluate', str(tmp_path)], ['reconstruct', 'image.png'])]
    assert fields[0] == fields[1] == {
        'checkpoint': 'm.safetensors', 'resolution': 128, 'precision': 'bfloat16',
        'threshold': 0.4, 'fill_silhouette': True, 'surface_smoothing': 0.5,
        'mirror_average': False, 'shift_average': False, 'pose_prior': 'none'}
    # offline, smoothing and both averages are on unless asked otherwise (the node's are off)
    defaults = model_config_fields(parser.parse_args(['evaluate', str(tmp_path)]))
    assert defaults['mirror_average'] and defaults['shift_average']
    # offline, smoothing is on unless asked otherwise (the node's default is off)
    assert model_config_fields(parser.parse_args(['evaluate', str(tmp_path)]))[
        'surface_smoothing'] == 1.0
    with pytest.raises(SystemExit):                 # the precision is checked when parsing
        parser.parse_args(['evaluate', str(tmp_path), '--precision', 'float64'])
