"""Every person of a frame through the engine's stages (core.frame_people), on real models."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from monoport_ros.core.body_pose import BodyPose
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.frame_people import FrameResult, PeopleReconstructor, uses_finder
from monoport_ros.core.preprocess import load_rgb, mask_box, mask_iou
from monoport_ros.core.reconstruct import Reconstructor

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
ENGINE = dict(resolution=32, render_views=['front'], render_size=32, mesh_max_triangles=2000,
              worker_processes=False)


def test_the_finder_is_used_only_where_it_can_be():
    assert uses_finder(MonoPortConfig())                                    # default: 3
    assert not uses_finder(MonoPortConfig(max_people=1))
    assert not uses_finder(MonoPortConfig(segmentation_model='selfie'))
    assert not uses_finder(MonoPortConfig(segmentation=False))
    assert MonoPortConfig.offline().max_people == 1         # reconstruct: the main person
    with pytest.raises(ValueError):
        MonoPortConfig(max_people=0).validate()


def test_a_pose_warps_with_its_crop():
    lm = np.array([[10.0, 20.0, -4.0]] * 33, np.float32)
    pose = BodyPose(lm, np.ones(33, np.float32))
    m = np.array([[2.0, 0.0, 5.0], [0.0, 2.0, -1.0]])        # scale 2, shift
    moved = pose.warped(m)
    np.testing.assert_allclose(moved.image_landmarks[0], [25.0, 39.0, -8.0])
    back = moved.warped(cv2.invertAffineTransform(m))
    np.testing.assert_allclose(back.image_landmarks, lm, atol=1e-5)


def test_two_people_each_get_their_own_mask_landmarks_and_surface(tiny_net):
    """sports2d frame 120: the man on the box and the woman on the grass (issue 27)."""
    rgb = load_rgb(FIXTURES / 'sports2d' / 'demo_120.jpg')
    with PeopleReconstructor(Reconstructor(MonoPortConfig(**ENGINE), net=tiny_net)) as engine:
        for _ in range(4):      # video mode: the far man is found once the tiles reach him
            frames = engine.prepare(rgb)
            if len(frames) == 2:
                break
        assert len(frames) == 2
        a, b = frames
        assert not (a.mask & b.mask).any()                  # separated instance masks
        assert a.person_height_px >= b.person_height_px     # largest first
        for f in frames:
            assert f.pose is not None and f.track_id > 0
            x0, y0, x1, y1 = mask_box(f.mask)
            hips = f.pose.image_landmarks[[23, 24], :2].mean(0)
            assert x0 <= hips[0] <= x1 and y0 <= hips[1] <= y1  # landmarks in the frame's pixels
        result = engine.color(engine.geometry(frames))
        assert isinstance(result, FrameResult) and len(result.people) == 2
        assert np.array_equal(result.mask, a.mask | b.mask)
        first, second = result.people
        assert set(first.views) == {'front'} and not second.views      # views: the first only
        for rec, f in zip(result.people, frames):
            assert len(rec.faces) > 0 and rec.track_id == f.track_id
            assert np.array_equal(rec.mask, f.mask) and rec.model_pose().shape == (33, 4)


def test_one_person_mode_keeps_the_main_person(tiny_net):
    rgb = load_rgb(FIXTURES / 'sports2d' / 'demo_120.jpg')
    config = MonoPortConfig(**ENGINE, max_people=1, segmentation_tracking=False)
    with PeopleReconstructor(Reconstructor(config, net=tiny_net)) as engine:
        result = engine.color(engine.geometry(rgb))
    assert len(result.people) == 1
    with PeopleReconstructor(Reconstructor(MonoPortConfig(**ENGINE), net=tiny_net)) as engine:
        both = engine.color(engine.geometry(rgb))
    assert mask_iou(result.people[0].mask, both.people[0].mask) > 0.8


def test_nobody_gives_an_empty_result_with_a_mask(tiny_net):
    rgb = np.full((240, 320, 3), 90, np.uint8)
    with PeopleReconstructor(Reconstructor(MonoPortConfig(**ENGINE), net=tiny_net)) as engine:
        result = engine.color(engine.geometry(rgb))
    assert not result.person and result.people == []
    assert result.mask.shape == (240, 320) and not result.mask.any()
