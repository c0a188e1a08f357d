"""Training: config loading, augmentation geometry, OHEM, loss decrease, checkpoints and resume."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from monoport_ros.core.checkpoint import load_checkpoint
from monoport_ros.offline.training import (Trainer, TrainConfig, batch_iou, ohem_probabilities,
                                           register_cli)
from monoport_ros.offline.training_data import AugmentConfig, prepare_sample

SIZE = 32
TINY_NET = {'image_size': SIZE, 'stem_channels': 8, 'branch_channels': [8, 16],
            'stage_blocks': [1], 'stage_modules': [1], 'feature_channels': 8, 'softz_bins': 4,
            'surface_mlp': [16, 8], 'color_feature_channels': 4, 'color_mlp': [8]}


def _ellipsoid_sample(radii: np.ndarray, colour: np.ndarray, rng: np.random.Generator,
                      n: int = 3000) -> dict[str, np.ndarray]:
    """Ellipsoid occupancy with its orthographic silhouette (an ellipse) as the image."""
    c = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    x, y = np.meshgrid(c, -c)                   # row 0 is the top (y = +1)
    mask = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 <= 1
    shade = (0.6 + 0.4 * (y[..., None] + 1) / 2)
    image = (mask[..., None] * colour * shade).astype(np.uint8)
    near = rng.normal(size=(n // 2, 3))
    near = near / np.linalg.norm(near, axis=1, keepdims=True) * radii
    near += rng.normal(0, 0.05, near.shape)
    points = np.concatenate([near, rng.uniform(-1, 1, (n - n // 2, 3))]).astype(np.float32)
    labels = (((points / radii) ** 2).sum(1) <= 1).astype(np.uint8)
    surf = rng.normal(size=(n // 2, 3))
    surf = (surf / np.linalg.norm(surf, axis=1, keepdims=True) * radii).astype(np.float32)
    colors = np.clip(colour * (0.6 + 0.4 * (surf[:, 1:2] + 1) / 2), 0, 255).astype(np.uint8)
    return {'image': image, 'mask': mask.astype(np.uint8) * 255, 'points': points,
            'labels': labels, 'color_points': surf, 'colors': colors}


def make_dataset(root: Path, subjects: int = 4, yaws: int = 2) -> Path:
    """Write a tiny data set in the generator's on-disk format."""
    rng = np.random.default_rng(0)
    (root / 'samples').mkdir(parents=True)
    for s in range(subjects):
        radii = np.array([0.3 + 0.12 * s, 0.8 - 0.1 * s, 0.3])
        colour = np.array([200, 60 + 40 * s, 50], float)
        for k in range(yaws):
            sample = _ellipsoid_sample(radii, colour, rng)
            np.savez_compressed(root / 'samples' / f'{s:04d}_{k * 90:03d}.npz', subject=s,
                                **sample)
    (root / 'meta.json').write_text(json.dumps({'subjects': subjects, 'image_size': SIZE}))
    return root


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp('data'))


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    cfg = TrainConfig(data=str(data), out=str(out), network_overrides=dict(TINY_NET),
                      steps_surface=40, steps_color=10, batch_size=4, points_per_sample=512,
                      color_points_per_sample=256, lr=3e-3, lr_color=3e-3, threads=1,
                      log_interval=1000, eval_interval=1000, checkpoint_interval=1000,
                      eval_samples=2, bn_batches=4)
    return dataclasses.replace(cfg, **changes)


def test_config_yaml_roundtrip_and_errors(tmp_path):
    repo_cfg = TrainConfig.load(Path(__file__).parents[1] / 'config' / 'train' / 'small.yaml')
    assert repo_cfg.network_config().image_size == 256
    path = tmp_path / 'c.yaml'
    path.write_text(repo_cfg.dump())
    assert TrainConfig.load(path) == repo_cfg
    with pytest.raises(ValueError, match='unknown keys'):
        TrainConfig.from_dict({'stepz_surface': 3})
    with pytest.raises(ValueError, match='batch_size'):
        TrainConfig.from_dict({'batch_size': 0})
    with pytest.raises(ValueError, match='should be a'):
        TrainConfig.from_dict({'ohem': {'alpha': 'big'}})
    with pytest.raises(ValueError, match='unknown network config'):
        TrainConfig.from_dict({'network_overrides': {'width': 3}})


def test_ohem_favours_low_iou():
    p = ohem_probabilities(np.array([0.9, 0.5, 0.2, 0.0]), np.array([True, True, True, False]),
                           alpha=2.0, uniform_mix=0.2)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] < p[1] < p[2] < p[3]
    assert p.min() >= 0.2 / 4
    logits = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    assert batch_iou(logits, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))[0] == pytest.approx(1 / 3)


def test_augmentation_keeps_points_aligned_with_image():
    """After flip/scale/shift, inside points still project onto the person in the image."""
    rng = np.random.default_rng(3)
    sample = _ellipsoid_sample(np.array([0.3, 0.7, 0.3]), np.array([200.0, 100, 50]), rng)
    aug = AugmentConfig(crop_shift=0.15, crop_scale=0.2, mask_edge_prob=0.0, color_jitter=0.0)
    for _ in range(5):
        out = prepare_sample(sample, SIZE, rng, aug)
        inside = out['points'][out['labels'] > 0.5]
        u = ((inside[:, 0] + 1) / 2 * SIZE).astype(int).clip(0, SIZE - 1)
        v = ((1 - inside[:, 1]) / 2 * SIZE).astype(int).clip(0, SIZE - 1)
        assert out['mask'][v, u].mean() > 0.95
        # the silhouette moves: the mask is not the original one every time
    assert not np.array_equal(out['mask'], sample['mask'] > 0)


def test_z_center_moves_depth_origin_to_the_body():
    rng = np.random.default_rng(1)
    sample = _ellipsoid_sample(np.array([0.3, 0.7, 0.2]), np.array([200.0, 100, 50]), rng)
    for key in ('points', 'color_points'):
        sample[key] = sample[key] + np.float32([0, 0, 0.25])
    centred = prepare_sample(sample, SIZE, rng, None, 'surface_median')
    assert abs(np.median(centred['color_points'][:, 2])) < 1e-6
    inside = centred['points'][centred['labels'] > 0.5]
    assert abs(inside[:, 2].mean()) < 0.03
    kept = prepare_sample(sample, SIZE, rng, None, 'data')
    assert np.allclose(kept['points'], sample['points'])
    with pytest.raises(ValueError, match='z_center'):
        prepare_sample(sample, SIZE, rng, None, 'bbox')
    with pytest.raises(ValueError, match='z_center'):
        TrainConfig.from_dict({'z_center': 'middle'})


def test_colour_jitter_applies_to_targets_too():
    rng = np.random.default_rng(0)
    sample = _ellipsoid_sample(np.array([0.5, 0.7, 0.3]), np.array([180.0, 90, 40]), rng)
    aug = AugmentConfig(flip=False, crop_shift=0, crop_scale=0, mask_edge_prob=0,
                        color_jitter=0.5)
    out = prepare_sample(sample, SIZE, rng, aug)
    plain = prepare_sample(sample, SIZE, rng, None)
    assert not np.allclose(out['colors'], plain['colors'])
    # the mean colour ratio image/target stays the same under the jitter
    ratio_img = out['image'][out['mask']].mean(0) / plain['image'][plain['mask']].mean(0)
    ratio_col = out['colors'].mean(0) / plain['colors'].mean(0)
    assert np.allclose(ratio_img, ratio_col, atol=0.12)


def test_training_lowers_loss_and_writes_loadable_model(dataset, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(dataset, tmp_path / 'run')
    trainer = Trainer(cfg, quiet=True)
    fixed = trainer.make_batch(trainer.data.train_idx[:4], np.random.default_rng(9), augment=False)

    def fixed_loss() -> float:
        trainer.net.eval()
        with torch.no_grad():
            return float(trainer.surface_forward(fixed)[0])
    before = fixed_loss()
    metrics = trainer.run()
    after = fixed_loss()
    assert after < 0.8 * before, (before, after)
    losses = [r['loss'] for r in trainer.history if r['stage'] == 'surface']
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    colour = [r['loss'] for r in trainer.history if r['stage'] == 'color']
    assert len(colour) == 10 and all(np.isfinite(colour))
    assert 'color_l1' in metrics['color']['val']

    for name in ('surface.safetensors', 'model.safetensors'):
        net = load_checkpoint(tmp_path / 'run' / name)
        assert net.info['steps']['surface'] == 40
        assert net.info['data']['subjects'] == 4
        with torch.no_grad():
            feat = net.encode_surface(fixed['image'][:1])
            occ = net.occupancy(feat, torch.zeros(1, 50, 3))
        assert occ.shape == (1, 50)
        assert torch.all((occ >= 0) & (occ <= 1))
    # the surface net is frozen in the colour stage
    final = load_checkpoint(tmp_path / 'run' / 'model.safetensors').state_dict()
    surf = load_checkpoint(tmp_path / 'run' / 'surface.safetensors').state_dict()
    for k in final:
        if k.startswith('surface_'):
            assert torch.equal(final[k], surf[k]), k
    assert not torch.equal(final['color_mlp.filters.0.weight'], surf['color_mlp.filters.0.weight'])


def test_bn_recalibration_replaces_stale_statistics(dataset, tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(dataset, tmp_path / 'run'), quiet=True)
    bn = trainer.net.surface_encoder.bn1
    bn.running_mean.fill_(50.0)
    bn.running_var.fill_(1e-4)
    trainer.net.surface_encoder.eval()
    trainer.recalibrate_bn(trainer.net.surface_encoder)
    assert bn.running_mean.abs().max() < 10
    assert bn.running_var.min() > 1e-3
    assert bn.momentum == 0.1 and not trainer.net.surface_encoder.training


def test_init_and_frozen_bn_finetune(dataset, tmp_path):
    torch.set_num_threads(1)
    base = tiny_config(dataset, tmp_path / 'a', steps_surface=3, steps_color=2)
    Trainer(base, quiet=True).run()
    model = tmp_path / 'a' / 'model.safetensors'
    tune = dataclasses.replace(base, out=str(tmp_path / 'b'), init=str(model),
                               bn_freeze_fraction=1.0)
    t = Trainer(tune, quiet=True)
    start = load_checkpoint(model).state_dict()
    assert torch.equal(t.net.state_dict()['surface_mlp.filters.0.weight'],
                       start['surface_mlp.filters.0.weight'])
    t.run()
    assert t.bn_frozen
    end = t.net.state_dict()
    # weights moved, BatchNorm statistics stayed at the re-estimated values during training
    assert not torch.equal(end["surface_mlp.filters.0.weight"],
                           start["surface_mlp.filters.0.weight"])
    final = load_checkpoint(tmp_path / 'b' / 'model.safetensors').state_dict()
    surf = load_checkpoint(tmp_path / 'b' / 'surface.safetensors').state_dict()
    assert torch.equal(final['surface_encoder.bn1.running_mean'],
                       surf['surface_encoder.bn1.running_mean'])
    other = dataclasses.replace(tune, network_overrides={**TINY_NET, 'softz_bins': 2})
    with pytest.raises(ValueError, match='architecture'):
        Trainer(other, quiet=True)


def test_resume_continues_from_saved_step(dataset, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / 'run'
    cfg = tiny_config(dataset, out, steps_surface=4, steps_color=0, checkpoint_interval=2)
    Trainer(cfg, quiet=True).run()
    first = torch.load(out / 'state.pt', weights_only=True)
    assert (first['stage'], first['step']) == ('color', 0)
    longer = dataclasses.replace(cfg, steps_color=3)
    resumed = Trainer(longer, resume=True, quiet=True)
    assert resumed.stage == 'color' and resumed.step == 0
    assert resumed.ohem_seen.any()
    resumed.run()
    assert [r['step'] for r in resumed.history if r['stage'] == 'color'] == [1, 2, 3]
    assert len([r for r in resumed.history if r['stage'] == 'surface']) == 4

    # mid-stage resume: stop a run after 2 of 6 surface steps, then finish it
    out2 = tmp_path / 'run2'
    short = tiny_config(dataset, out2, steps_surface=6, steps_color=0, checkpoint_interval=2)
    t = Trainer(short, quiet=True)
    t.cfg = dataclasses.replace(short, steps_surface=6)
    t._set_modes()
    batch = t.make_batch(t.data.train_idx[:2], t.rng)
    t.surface_forward(batch)[0].backward()
    t.step = 2
    t.save_state()
    again = Trainer(short, resume=True, quiet=True)
    assert (again.stage, again.step) == ('surface', 2)
    again.run()
    assert [r['step'] for r in again.history if r['stage'] == 'surface'] == [3, 4, 5, 6]
    with pytest.raises(FileNotFoundError, match='no training state'):
        Trainer(tiny_config(dataset, tmp_path / 'none'), resume=True, quiet=True)


def test_wall_clock_cap_ends_stage_early(dataset, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(dataset, tmp_path / 'run', steps_surface=1000, steps_color=1000,
                      minutes_surface=1e-6, minutes_color=1e-6)
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    assert trainer.done == {'surface': 1, 'color': 1}
    net = load_checkpoint(tmp_path / 'run' / 'model.safetensors')
    assert net.info['steps'] == {'surface': 1, 'color': 1}


def test_cli_parses_train_options(dataset, tmp_path):
    import argparse
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest='command'))
    args = parser.parse_args(['train', '--config', 'c.yaml', '--data', str(dataset), '--out',
                              str(tmp_path), '--resume', '--steps-surface', '7',
                              '--steps-color', '2'])
    assert (args.steps_surface, args.steps_color, args.resume) == (7, 2, True)
    assert callable(args.func)


def test_bad_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='samples'):
        Trainer(tiny_config(tmp_path, tmp_path / 'o'), quiet=True)
    (tmp_path / 'samples').mkdir()
    with pytest.raises(ValueError, match='no .npz'):
        Trainer(tiny_config(tmp_path, tmp_path / 'o'), quiet=True)


def test_depth_negatives_are_outside_a_real_body():
    """Depth negatives from a rendered anny person, checked against its mesh (Open3D)."""
    from monoport_ros.core.preprocess import crop_person
    from monoport_ros.offline.people import make_person
    from monoport_ros.offline.synthetic import occupancy, render_person, sample_surface
    from monoport_ros.offline.training_data import depth_negatives
    rng = np.random.default_rng(5)
    person = make_person(rng)
    for yaw in (0.0, 90.0, 200.0):
        r = render_person(person, yaw, 512, rng)
        _, crop_mask, crop = crop_person(r['image'], r['mask'], 256)
        cam, verts = r['camera'], r['mesh_cam']
        surf, _ = sample_surface(verts, person.faces, 4000, rng)
        near = surf + rng.normal(size=surf.shape) * 0.02
        sample = {'mask': crop_mask > 0.5,
                  'color_points': cam.metric_to_model(crop, surf).astype(np.float32),
                  'points': cam.metric_to_model(crop, near).astype(np.float32),
                  'labels': occupancy(verts, person.faces, near).astype(np.float32)}
        for near in (0.0, 1.0):     # anywhere in depth; just beyond the body's depth range
            neg = depth_negatives(sample, 3000, rng, near)
            assert len(neg) > 1000
            u = ((neg[:, 0] + 1) * 128).astype(int)
            v = ((1 - neg[:, 1]) * 128).astype(int)
            assert sample['mask'][v.clip(0, 255), u.clip(0, 255)].mean() > 0.99   # silhouette
            inside = occupancy(verts, person.faces,
                               cam.model_to_metric(crop, neg.astype(np.float64)))
            assert inside.mean() < 0.002
