"""``monoport-ros reconstruct``: one sample image to a coloured mesh, points and views on disk."""
import json
from pathlib import Path

import cv2
import numpy as np

from monoport_ros import cli
from monoport_ros.core.camera import OrthoCamera
from monoport_ros.core.o3d import o3d

SAMPLES = Path(cli.__file__).parent / 'samples'


def test_reconstruct_writes_mesh_points_and_views_in_metres(tmp_path, capsys):
    image = SAMPLES / 'person_000.png'
    rc = cli.main(['reconstruct', str(image), '--camera', str(SAMPLES / 'person_000.json'),
                   '--resolution', '64', '--no-mirror-average', '--render-views', 'front,side',
                   '--render-size', '96', '--mesh', str(tmp_path / 'm.ply'),
                   '--points', str(tmp_path / 'p.ply'), '--views', str(tmp_path / 'v')])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    mesh = o3d.io.read_triangle_mesh(str(tmp_path / 'm.ply'))
    verts = np.asarray(mesh.vertices)
    assert len(verts) == summary['vertices'] > 100 and len(mesh.triangles) == summary['faces']
    assert mesh.has_vertex_colors()
    # the sample is an anny body 2.33 m tall (make-eval-set --seed 7, case 0); centred in depth
    assert abs(np.ptp(verts[:, 1]) - 2.33) < 0.12
    assert abs(verts[:, 2].min() + verts[:, 2].max()) < 1e-3
    cloud = o3d.io.read_point_cloud(str(tmp_path / 'p.ply'))
    assert len(cloud.points) > 100 and cloud.has_colors()
    # the mesh lies within the camera's field of view (image width in metres)
    camera = OrthoCamera.load(SAMPLES / 'person_000.json')
    assert np.ptp(verts[:, 0]) < camera.width * camera.metres_per_pixel
    for name in ('front', 'side', 'front_normals', 'side_normals'):
        img = cv2.imread(str(tmp_path / 'v' / f'{name}.png'))
        assert img.shape == (96, 96, 3) and img.any()
    # without a camera the person is taken to be 1.7 m tall
    assert cli.main(['reconstruct', str(image), '--resolution', '64', '--no-mirror-average',
                     '--render-views', '', '--mesh', str(tmp_path / 'm17.ply')]) == 0
    verts = np.asarray(o3d.io.read_triangle_mesh(str(tmp_path / 'm17.ply')).vertices)
    assert abs(np.ptp(verts[:, 1]) - 1.7) < 0.09


def test_reconstruct_reports_bad_input(tmp_path, capsys):
    blank = tmp_path / 'blank.png'
    cv2.imwrite(str(blank), np.full((64, 64, 3), 128, np.uint8))
    assert cli.main(['reconstruct', str(blank), '--resolution', '64']) == 2
    assert 'no person found' in capsys.readouterr().err
    assert cli.main(['reconstruct', str(tmp_path / 'missing.png'), '--resolution', '64']) == 2
    assert 'not a readable image' in capsys.readouterr().err
