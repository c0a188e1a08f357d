"""Cameras: orthographic JSON convention, person crop, model <-> metric maps, pinhole placement."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monoport_ros.core.camera import (OrthoCamera, PersonCrop, PinholeCamera,
                                      ortho_camera_from_height)
from monoport_ros.core.networks import sample_features
from monoport_ros.core.preprocess import crop_person


def test_ortho_json_round_trip_and_validation(tmp_path) -> None:
    cam = OrthoCamera(640, 480, 0.004)
    cam.save(tmp_path / 'c.json')
    assert OrthoCamera.load(tmp_path / 'c.json') == cam
    bad = dict(cam.to_dict(), projection='perspective')
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(ValueError, match='orthographic'):
        OrthoCamera.load(tmp_path / 'bad.json')
    with pytest.raises(ValueError):
        OrthoCamera.from_dict(dict(cam.to_dict(), metres_per_pixel=-1))


def test_pixel_centres_follow_the_documented_convention() -> None:
    """Pixel (u, v) sees x = (u + 0.5 - W/2) m, y = (H/2 - v - 0.5) m."""
    cam = OrthoCamera(200, 100, 0.01)
    crop = PersonCrop(cx=80.0, cy=40.0, side=64.0)
    u, v = 90, 20
    xy = np.array([[(u + 0.5 - crop.cx) / 32.0, (crop.cy - v - 0.5) / 32.0, 0.0]])
    metric = cam.model_to_metric(crop, xy)[0]
    assert metric[0] == pytest.approx((u + 0.5 - 100) * 0.01)
    assert metric[1] == pytest.approx((50 - v - 0.5) * 0.01)
    assert np.allclose(crop.model_to_pixels(xy[:, :2])[0], [u + 0.5, v + 0.5])
    back = cam.metric_to_model(crop, cam.model_to_metric(crop, xy))
    assert np.allclose(back, xy)


def test_crop_and_feature_sampling_agree() -> None:
    """A model point samples the crop exactly where crop_person drew that image pixel."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[20:100, 50:90] = True
    crop_img, _, crop = crop_person(img, mask, 128)
    # pick a pixel inside the person, find its model coordinate, sample the crop there
    u, v = 70, 60
    xy = np.array([[(u + 0.5 - crop.cx) / (crop.side / 2), (crop.cy - v - 0.5) / (crop.side / 2)]])
    feats = torch.from_numpy(crop_img).permute(2, 0, 1)[None]
    sampled = sample_features(feats, torch.from_numpy(xy).float()[None])[0, 0].numpy()
    assert np.allclose(sampled * 255, img[v, u], atol=40)   # bilinear + area resampling


def test_crop_needs_a_person() -> None:
    with pytest.raises(ValueError, match='no person'):
        PersonCrop.from_mask(np.zeros((10, 10), bool))


def test_height_prior_gives_metres() -> None:
    cam = ortho_camera_from_height(640, 480, person_height_px=340, subject_height_m=1.7)
    assert cam.metres_per_pixel == pytest.approx(0.005)


def test_pinhole_weak_perspective_placement() -> None:
    cam = PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0)
    cam.validate()
    crop = PersonCrop(cx=420.0, cy=240.0, side=400.0)
    d = cam.subject_distance(person_height_px=340, subject_height_m=1.7)
    assert d == pytest.approx(2.5)
    pts = cam.model_to_optical(crop, np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0, 0, 0.5]]), d)
    assert pts[0] == pytest.approx([100 * d / 500, 0.0, d])      # crop centre on its ray
    assert pts[1][1] < pts[0][1]                                  # model up = optical -y
    assert pts[2][2] < pts[0][2]                                  # model +z = towards the camera
    with pytest.raises(ValueError):
        PinholeCamera(640, 480, 0.0, 500.0, 320.0, float('nan')).validate()
