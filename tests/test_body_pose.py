"""The body pose prior: landmarks in model space, skeleton features, warm start, training data."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from monoport_ros.core import body_pose
from monoport_ros.core.body_pose import (BONES, FEATURES_PER_BONE, MIRRORED, N_BONE_FEATURES,
                                         BodyPose, bone_features, map_pose, mirror_pose,
                                         model_depth, skeleton)
from monoport_ros.core.camera import PersonCrop
from monoport_ros.core.checkpoint import load_checkpoint, save_checkpoint
from monoport_ros.core.config import MonoPortConfig, NetworkConfig
from monoport_ros.core.networks import MonoPortNet
from monoport_ros.core.reconstruct import DEFAULT_MODEL, PreparedFrame, Reconstructor
from monoport_ros.offline.training import Trainer, TrainConfig, add_pose_inputs
from monoport_ros.offline.training_data import AugmentConfig, collate, prepare_sample

TINY = {'image_size': 32, 'stem_channels': 8, 'branch_channels': [8, 16],
        'stage_blocks': [1], 'stage_modules': [1], 'feature_channels': 8, 'softz_bins': 4,
        'surface_mlp': [16, 8], 'color_feature_channels': 4, 'color_mlp': [8]}


def standing_pose(vis: float = 1.0) -> torch.Tensor:
    """Return a (1, 33, 4) pose array: a stick figure in the crop, every landmark at ``vis``."""
    p = torch.zeros(1, 33, 4)
    p[..., 3] = vis
    for i, (x, y, z) in {0: (0, 0.7, 0.1), 11: (0.2, 0.5, 0), 12: (-0.2, 0.5, 0),
                         13: (0.3, 0.2, 0), 14: (-0.3, 0.2, 0), 15: (0.35, -0.1, 0.2),
                         16: (-0.35, -0.1, 0), 23: (0.1, 0, 0), 24: (-0.1, 0, 0),
                         25: (0.1, -0.4, 0), 26: (-0.1, -0.4, 0), 27: (0.1, -0.8, 0),
                         28: (-0.1, -0.8, 0), 31: (0.1, -0.85, 0.1),
                         32: (-0.1, -0.85, 0.1)}.items():
        p[0, i, :3] = torch.tensor([x, y, z])
    return p


def bone_columns(name: tuple[int, int]) -> list[int]:
    """Columns of a bone's distance, position along and depth offset."""
    k = BONES.index(name)
    return [k + i * len(BONES) for i in range(FEATURES_PER_BONE)]


def test_landmarks_map_into_the_crop_like_the_image():
    crop = PersonCrop(cx=300.0, cy=200.0, side=160.0)       # half side 80 px
    lm = np.zeros((33, 3), np.float32)
    lm[0] = (300.0, 200.0, 0.0)         # the crop centre -> model origin
    lm[11] = (340.0, 120.0, -40.0)      # 40 px right, 80 px up, 40 px nearer the camera
    vis = np.full(33, 0.9, np.float32)
    arr = BodyPose(lm, vis).to_model(crop)
    assert arr.shape == (33, 4) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0, :3], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(arr[11], [0.5, 1.0, 0.5, 0.9], atol=1e-6)
    # the inverse of the crop's own model -> pixel map
    np.testing.assert_allclose(crop.model_to_pixels(arr[:, :2]), lm[:, :2], atol=1e-4)
    broken = lm.copy()
    broken[5] = np.nan
    assert not BodyPose(broken, vis).to_model(crop)[5].any()    # a NaN landmark is unseen


def test_depth_comes_from_the_world_landmarks_on_the_image_scale():
    rng = np.random.default_rng(3)
    world = rng.normal(0, 0.3, (33, 3)).astype(np.float32)
    world[[23, 24]] = [[0.1, 0.0, 0.05], [-0.1, 0.0, -0.05]]     # centred on the hips
    crop = PersonCrop(cx=200.0, cy=150.0, side=300.0)
    px_per_m = 120.0            # image: x right, y down as in the world frame, 120 px a metre
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0] = 210.0 + world[:, 0] * px_per_m
    lm[:, 1] = 160.0 + world[:, 1] * px_per_m
    lm[:, 2] = world[:, 2] * px_per_m * 3.0        # the image z: too deep
    arr = BodyPose(lm, np.ones(33, np.float32), world).to_model(crop)
    model_per_m = px_per_m / 150.0
    np.testing.assert_allclose(arr[:, 2], -world[:, 2] * model_per_m, atol=1e-5)
    no_world = BodyPose(lm, np.ones(33, np.float32)).to_model(crop)
    np.testing.assert_allclose(no_world[:, 2], -lm[:, 2] / 150.0, atol=1e-5)
    np.testing.assert_allclose(model_depth(no_world, None), no_world[:, 2])


def test_segmenter_returns_landmarks_on_the_person():
    pytest.importorskip('mediapipe')
    from monoport_ros.offline import people, synthetic
    from monoport_ros.core.segmentation import PersonSegmenter

    rng = np.random.default_rng(7)
    r = synthetic.render_person(people.make_person(rng), 20.0, (480, 480), rng, 'flat')
    with PersonSegmenter('pose') as seg:
        found = seg.segment_with_pose(r['image'])
        assert np.array_equal(found.mask, seg.segment(r['image']))
        empty = seg.segment_with_pose(np.zeros((64, 64, 3), np.uint8))
    assert empty.pose is None and not empty.mask.any()
    pose = found.pose
    assert pose is not None and pose.image_landmarks.shape == (33, 3)
    assert pose.world_landmarks.shape == (33, 3) and pose.model == body_pose.LANDMARK_MODEL
    seen = pose.visibility > 0.5
    u, v = pose.image_landmarks[seen, :2].astype(int).T
    on_body = r['mask'][np.clip(v, 0, 479), np.clip(u, 0, 479)]
    assert seen.sum() >= 20 and on_body.mean() > 0.8


def test_bone_distance_is_zero_on_the_bone_and_grows_off_it():
    pose = standing_pose()
    a, b = pose[0, 25, :3], pose[0, 27, :3]             # left shin, knee to ankle
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])[:, None]
    on = a + t * (b - a)
    off = on[1:2] + torch.tensor([[0.0, 0.0, 1.0]]) * torch.tensor([[0.05], [0.1], [0.2]])
    f = bone_features(torch.cat([on, off])[None], pose)[0]
    shin = f[:, bone_columns((25, 27))]
    np.testing.assert_allclose(shin[:4, 0], 0.0, atol=1e-3)              # distance
    np.testing.assert_allclose(shin[:4, 1], t[:, 0], atol=1e-5)          # along
    np.testing.assert_allclose(shin[4:, 0], [0.05, 0.1, 0.2], atol=1e-5)
    np.testing.assert_allclose(shin[4:, 2], [0.05, 0.1, 0.2], atol=1e-5)  # in front: +z
    assert torch.all(f[:, -1] == 1.0)                                     # pose present
    far = bone_features(torch.tensor([[[0.1, -0.6 + 0.0, 0.0], [0.9, -0.6, 0.0]]]), pose)[0]
    assert far[1, bone_columns((25, 27))][0] > far[0, bone_columns((25, 27))][0]


def test_invisible_landmarks_zero_their_bones_and_no_pose_zeroes_all():
    pts = torch.rand(1, 50, 3) * 2 - 1
    pose = standing_pose()
    pose[0, 27, 3] = 0.2                                    # left ankle barely visible
    f = bone_features(pts, pose)[0]
    for bone in ((25, 27), (27, 31)):
        assert not f[:, bone_columns(bone)].any()
    assert f[:, bone_columns((24, 26))].abs().sum() > 0
    assert f.shape[-1] == N_BONE_FEATURES and torch.all(f[:, -1] == 1)
    for none in (None, standing_pose(vis=0.0)):
        assert not bone_features(pts, none).any()           # features and flag zero
    assert torch.equal(bone_features(pts, skeleton(pose)), bone_features(pts, pose))


def test_mirrored_view_sees_the_mirrored_pose():
    pose = standing_pose()
    mirrored = mirror_pose(pose)
    assert torch.equal(mirror_pose(mirrored), pose)
    assert torch.equal(mirrored[0, 12, :3], pose[0, 11, :3] * torch.tensor([-1.0, 1, 1]))
    scale = torch.tensor([[[1.0, 1, 1]], [[-1.0, 1, 1]]])
    offset = torch.tensor([[[0.0, 0, 0]], [[0.1, -0.1, 0]]])
    views = map_pose(pose, scale, offset)
    assert torch.equal(views[0], pose[0])
    expect = mirrored[0].clone()
    expect[:, :2] += torch.tensor([0.1, -0.1])
    assert torch.allclose(views[1], expect)
    assert np.array_equal(mirror_pose(pose[0].numpy()), mirrored[0].numpy())
    assert sorted(MIRRORED) == list(range(33))
    # a point and the pose mirrored together: the same features, left and right bones swapped
    pts = torch.rand(1, 20, 3) * 2 - 1
    f = bone_features(pts, pose)[0]
    g = bone_features(pts * torch.tensor([-1.0, 1, 1]), mirrored)[0]
    assert torch.allclose(g[:, bone_columns((12, 14))], f[:, bone_columns((11, 13))], atol=1e-5)


def test_shipped_model_loads_without_pose_features():
    net = load_checkpoint(DEFAULT_MODEL)
    assert net.cfg.pose_features == 'none' and net.pose_dim == 0 and net.pose_encoder is None
    assert net.surface_mlp.filters[0].in_features == net.cfg.feature_channels + 8


def test_pose_network_config_round_trips_through_a_model_file(tmp_path):
    cfg = NetworkConfig.from_dict({**TINY, 'pose_features': 'bones', 'pose_channels': 6})
    net = MonoPortNet(cfg)
    save_checkpoint(tmp_path / 'm.safetensors', net)
    back = load_checkpoint(tmp_path / 'm.safetensors')
    assert back.cfg == cfg and back.pose_dim == 6
    assert back.surface_mlp.filters[0].in_features == 8 + 4 + 6
    with pytest.raises(ValueError, match='pose_features'):
        MonoPortNet(dataclasses.replace(cfg, pose_features='smpl'))


def test_warm_start_reproduces_the_model_without_pose(tmp_path):
    torch.manual_seed(0)
    old = MonoPortNet(NetworkConfig.from_dict(TINY)).eval()
    save_checkpoint(tmp_path / 'old.safetensors', old)
    (tmp_path / 'data' / 'samples').mkdir(parents=True)
    np.savez(tmp_path / 'data' / 'samples' / '0000_000.npz',
             **fake_sample(np.random.default_rng(0)))
    cfg = TrainConfig(data=str(tmp_path / 'data'), out=str(tmp_path / 'run'), val_subjects=0,
                      network_overrides={**TINY, 'pose_features': 'bones'},
                      init=str(tmp_path / 'old.safetensors'))
    new = Trainer(cfg, quiet=True).net.eval()
    assert new.pose_dim == 16
    img = torch.rand(2, 3, 32, 32)
    pts = torch.rand(2, 300, 3) * 2 - 1
    pose = torch.cat([standing_pose(), standing_pose(0.3)])
    with torch.no_grad():
        ref = old.occupancy_logits(old.encode_surface(img), pts)
        feats = new.encode_surface(img)
        assert torch.equal(feats, old.encode_surface(img))
        for p in (pose, None):      # the added inputs' weights are zero: equal up to rounding
            assert torch.allclose(new.occupancy_logits(feats, pts, p), ref, rtol=0, atol=1e-6)
    # the pose inputs are really wired in: non-zero weights make the pose matter
    with torch.no_grad():
        new.surface_mlp.filters[0].weight[:, -16:].normal_()
        assert not torch.allclose(new.occupancy_logits(feats, pts, pose), ref, atol=1e-3)


def fake_sample(rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
    mask = np.zeros((size, size), np.uint8)
    mask[4:28, 10:22] = 1
    pose = standing_pose()[0].numpy()
    return {'image': (rng.random((size, size, 3)) * 255 * mask[..., None]).astype(np.uint8),
            'mask': mask, 'points': rng.uniform(-1, 1, (400, 3)).astype(np.float32),
            'labels': (rng.random(400) < 0.5).astype(np.uint8),
            'color_points': rng.uniform(-0.5, 0.5, (100, 3)).astype(np.float32),
            'colors': rng.integers(0, 255, (100, 3)).astype(np.uint8), 'subject': 0,
            'pose': pose}


def test_training_sample_carries_landmarks_and_dropout_drops_them():
    rng = np.random.default_rng(1)
    sample = fake_sample(rng)
    plain = prepare_sample(sample, 32, rng, None)
    assert np.array_equal(plain['pose'], sample['pose'])    # no depth re-centring of the pose
    flip = AugmentConfig(flip=True, color_jitter=0, crop_shift=0.05, crop_scale=0.1,
                         mask_edge_prob=0)
    flips = set()
    for seed in range(8):       # the landmarks move with the image and the points
        lm = dict(sample, points=sample['pose'][:, :3].copy(), labels=np.ones(33, np.uint8))
        out = prepare_sample(lm, 32, np.random.default_rng(seed), flip, z_center='data')
        same = np.allclose(out['pose'][:, :3], out['points'], atol=1e-6)
        swapped = np.allclose(out['pose'][:, :3], out['points'][list(MIRRORED)], atol=1e-6)
        assert same or swapped      # mirrored: left and right landmarks trade places
        flips.add(swapped)
    assert flips == {False, True}
    kept = collate([plain] * 8, rng, 64, 16, 0.0, pose_dropout=0.0)
    assert kept['pose'].shape == (8, 33, 4) and torch.all(kept['pose'][..., 3] == 1)
    dropped = collate([plain] * 8, rng, 64, 16, 0.0, pose_dropout=1.0)
    assert not dropped['pose'].any()
    some = collate([plain] * 400, rng, 8, 4, 0.0, pose_dropout=0.2)
    share = float((some['pose'][..., 3].sum(-1) == 0).float().mean())
    assert 0.12 < share < 0.28
    old = {k: v for k, v in sample.items() if k != 'pose'}    # an older data set: no landmarks
    old = prepare_sample(old, 32, rng, None)
    assert 'pose' not in old
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    batch = collate([old] * 4, a, 8, 4, 0.0, pose_dropout=0.5)
    assert not batch['pose'].any()
    collate([old] * 4, b, 8, 4, 0.0, pose_dropout=0.0)
    assert a.random() == b.random()     # no draws for the dropout: old runs replay the same


def pose_net() -> MonoPortNet:
    """Return the shipped model widened with pose inputs, their weights small but not zero."""
    old = load_checkpoint(DEFAULT_MODEL)
    net = MonoPortNet(dataclasses.replace(old.cfg, pose_features='bones'))
    net.load_state_dict(add_pose_inputs(old.state_dict(), net))
    torch.manual_seed(0)
    with torch.no_grad():
        for f in net.surface_mlp.filters:
            f.weight[:, -net.pose_dim:].normal_(0, 0.1)
    return net.eval()


@pytest.mark.parametrize('averaged', [False, True])
def test_frames_with_and_without_landmarks_reconstruct(averaged):
    import cv2
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.ellipse(img, (150, 120), (30, 100), 0, 0, 360, (200, 120, 90), -1)
    cfg = MonoPortConfig(segmentation=False, resolution=32, octree_depth=2,
                         mirror_average=averaged, shift_average=averaged)
    rec = Reconstructor(cfg, pose_net())
    frame = rec.prepare(img)
    assert frame.pose is None and frame.model_pose() is None
    without = rec.reconstruct(img, {'mesh'})
    assert without.person and len(without.faces) > 0
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0], lm[:, 1] = 150.0, np.linspace(30, 210, 33)
    vis = np.ones(33, np.float32)
    vis[:5] = 0.0                                       # some landmarks unseen: still fine
    posed = dataclasses.replace(frame, pose=BodyPose(lm, vis))
    geo = rec.geometry(posed)
    assert geo.person and geo.volume is not None
    out = rec.color(geo, frozenset({'mesh'}))
    assert len(out.faces) > 0
    base = rec.geometry(frame)
    assert not torch.equal(base.volume.values, geo.volume.values)   # the pose reached the net


def test_prepared_frame_default_has_no_pose():
    frame = PreparedFrame(np.zeros((4, 4), bool))
    assert frame.pose is None and frame.model_pose() is None
    assert json.dumps(NetworkConfig().to_dict())      # the new fields stay JSON-able
