"""
Two-stage training of :class:`MonoPortNet` on a synthetic data set (CPU friendly).

Stage 1 trains the surface net (surface encoder + surface MLP, binary cross-entropy on occupancy
logits); stage 2 freezes it and trains the colour net (colour encoder + colour MLP, L1 on RGB at
surface points), as in PIFu / MonoPort.

The data set's layout and the per-sample preparation live in
:mod:`monoport_ros.offline.training_data`. Points are in model space ``[-1, 1]^3`` (x right, y up,
z towards the camera), aligned with the crop. By default (``z_center: surface_median``) depth is
re-centred per sample on the median z of its surface points, so trained networks place the body's
median surface depth at z = 0; a mesh that needs the files' convention (z = 0 at the centre of its
3D bounding box) is shifted by its own bounding-box centre after meshing. After each stage the
encoder's BatchNorm statistics are re-estimated over ``bn_batches`` batches (precise BN).

Online hard example mining (OHEM): every training sample keeps an IoU estimate, measured on the
``points_per_sample`` labelled points it contributes to a batch (threshold 0.5) and smoothed with
``iou <- m * iou + (1 - m) * iou_batch`` (first measurement taken as is; unseen samples count as
IoU 0). Samples are drawn without replacement within a batch with probability::

    p_i = (1 - u) * w_i / sum_j w_j + u / n,    w_i = (1 - iou_i + 0.05) ** alpha

so hard samples (low IoU) come back more often while every sample keeps at least ``u / n``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from ..core.checkpoint import load_state_strict, read_checkpoint, save_checkpoint
from ..core.config import NetworkConfig
from ..core.networks import MonoPortNet
from .training_data import (Z_CENTERS, AugmentConfig, SampleSet, collate, depth_negatives,
                            prepare_sample)

STATE_FILE = 'state.pt'
SURFACE_MODEL = 'surface.safetensors'
FINAL_MODEL = 'model.safetensors'
STAGES = ('surface', 'color')


@dataclass
class OhemConfig:
    """Online hard example mining settings (see the module docstring for the formula)."""

    enabled: bool = True
    alpha: float = 2.0          # exponent on (1 - IoU): larger = harder samples favoured more
    uniform_mix: float = 0.2    # share u of the uniform distribution in the sampling probability
    momentum: float = 0.5       # smoothing m of the per-sample IoU estimate


@dataclass
class TrainConfig:
    """Everything a training run needs; read from YAML with :meth:`load`."""

    data: str = 'data/train'
    out: str = 'data/train_run'
    network: str = 'small'
    network_overrides: dict[str, Any] = field(default_factory=dict)
    steps_surface: int = 1000
    steps_color: int = 300
    minutes_surface: float = 0.0        # wall-clock cap of the surface stage (0 = none)
    minutes_color: float = 0.0          # wall-clock cap of the colour stage (0 = none)
    batch_size: int = 4
    points_per_sample: int = 4096
    color_points_per_sample: int = 2048
    color_noise: float = 0.005          # std of the Gaussian jitter of colour query points
    # 'surface_median': shift z so the median surface point is at z = 0 (fixed depth origin);
    # 'data': keep the files' z (0 = centre of the view's 3D bounding box)
    z_center: str = 'surface_median'
    # extra points per sample inside the silhouette but clearly in front of or behind the body
    # (labelled outside, see depth_negatives); 0 = off
    depth_negatives: int = 0
    # fraction of them drawn just beyond the body's depth range (where slabs and puddles grow)
    # instead of uniformly in depth
    depth_negatives_near: float = 0.0
    # chance that a training sample's landmarks are withheld (networks with pose features learn
    # to reconstruct frames without them too)
    pose_dropout: float = 0.2
    lr: float = 1e-3
    lr_color: float = 1e-3
    lr_final_ratio: float = 0.1         # cosine decay of the learning rate to lr * this
    weight_decay: float = 0.0
    bn_batches: int = 50                # batches re-estimating BatchNorm statistics after a stage
    # last fraction of each stage trained with the encoder's BatchNorm statistics re-estimated and
    # then frozen, as inference uses them (0 = plain BatchNorm training, 1 = the whole stage)
    bn_freeze_fraction: float = 0.0
    init: str = ''                      # model file to start from (fine-tuning); '' = random
    seed: int = 0
    val_subjects: int = 1               # subjects (highest ids) held out for validation
    eval_samples: int = 8               # samples per validation / train-metric evaluation
    threads: int = 2
    log_interval: int = 25
    eval_interval: int = 250
    checkpoint_interval: int = 100
    ohem: OhemConfig = field(default_factory=OhemConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = 'config') -> 'TrainConfig':
        """Build from a plain dict; unknown keys or wrong types raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a mapping, got {type(data).__name__}')
        kw = dict(data)
        for name, cls in (('ohem', OhemConfig), ('augment', AugmentConfig)):
            if name in kw:
                kw[name] = _build(cls, kw[name] or {}, f'{source}: {name}')
        cfg = _build(TrainConfig, kw, source)
        cfg.validate()
        return cfg

    @staticmethod
    def load(path: str | Path) -> 'TrainConfig':
        """Read a YAML training config."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'training config {path} not found')
        return TrainConfig.from_dict(yaml.safe_load(path.read_text()) or {}, str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML / JSON-able)."""
        return dataclasses.asdict(self)

    def dump(self) -> str:
        """YAML text that :meth:`load` reads back to an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def network_config(self) -> NetworkConfig:
        """Return the preset named by ``network`` with ``network_overrides`` applied."""
        base = NetworkConfig.preset(self.network).to_dict()
        return NetworkConfig.from_dict({**base, **self.network_overrides})

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        positive = ('batch_size', 'points_per_sample', 'color_points_per_sample', 'threads',
                    'log_interval', 'eval_interval', 'checkpoint_interval', 'eval_samples')
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f'{name}={getattr(self, name)} must be at least 1')
        for name in ('steps_surface', 'steps_color', 'val_subjects', 'bn_batches',
                     'minutes_surface', 'minutes_color', 'depth_negatives'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name}={getattr(self, name)} must not be negative')
        if not (self.lr > 0 and self.lr_color > 0 and 0 < self.lr_final_ratio <= 1):
            raise ValueError('lr and lr_color must be > 0 and lr_final_ratio in (0, 1]')
        if not 0 <= self.pose_dropout <= 1:
            raise ValueError(f'pose_dropout={self.pose_dropout} must be in [0, 1]')
        if not 0 <= self.depth_negatives_near <= 1:
            raise ValueError(f'depth_negatives_near={self.depth_negatives_near} must be in [0, 1]')
        if not 0 <= self.bn_freeze_fraction <= 1:
            raise ValueError(f'bn_freeze_fraction={self.bn_freeze_fraction} must be in [0, 1]')
        if self.z_center not in Z_CENTERS:
            raise ValueError(f'z_center={self.z_center!r} is not one of {Z_CENTERS}')
        if not 0 <= self.ohem.uniform_mix <= 1 or not 0 <= self.ohem.momentum < 1:
            raise ValueError('ohem.uniform_mix must be in [0, 1] and ohem.momentum in [0, 1)')
        if self.augment.crop_scale < 0 or self.augment.crop_shift < 0 or \
                self.augment.mask_edge_px < 0 or not 0 <= self.augment.color_jitter < 1:
            raise ValueError('augment: crop_scale, crop_shift, mask_edge_px must be >= 0 and '
                             'color_jitter in [0, 1)')
        self.network_config()


def _build(cls: type, data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f'{source}: expected a mapping, got {type(data).__name__}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f'{source}: unknown keys {unknown}; known: {sorted(fields)}')
    defaults = cls()
    for key, value in data.items():
        ref = getattr(defaults, key)
        ok = (isinstance(value, type(ref)) or
              (isinstance(ref, float) and isinstance(value, int) and not isinstance(value, bool)))
        if isinstance(ref, int) and not isinstance(ref, bool) and isinstance(value, bool):
            ok = False
        if dataclasses.is_dataclass(ref):
            ok = isinstance(value, type(ref))
        if not ok:
            raise ValueError(f'{source}: {key}={value!r} should be a {type(ref).__name__}')
        if isinstance(ref, float):
            data = {**data, key: float(value)}
    return cls(**data)


# ----------------------------------------------------------------------------------------- OHEM

def ohem_probabilities(iou: np.ndarray, seen: np.ndarray, alpha: float,
                       uniform_mix: float) -> np.ndarray:
    """Return sampling probabilities from per-sample IoU estimates (unseen = IoU 0)."""
    est = np.where(seen, np.clip(iou, 0.0, 1.0), 0.0)
    w = (1.0 - est + 0.05) ** alpha
    return (1.0 - uniform_mix) * w / w.sum() + uniform_mix / len(w)


def batch_iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the IoU of ``logits > 0`` vs ``labels > 0.5`` per batch row (1 if both empty)."""
    pred = logits > 0
    gt = labels > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def add_pose_inputs(state: dict[str, torch.Tensor], net: MonoPortNet) -> dict[str, torch.Tensor]:
    """
    State dict of a network without pose features, widened to fit ``net`` (which has them).

    The surface MLP's pose inputs come last in every layer that takes the point input; their
    weights are zero, so the widened network's output equals the old one's for any pose. The
    pose encoder keeps ``net``'s own (random) initial weights, so it gets gradients once the
    MLP's pose weights move away from zero.
    """
    own = net.state_dict()
    out = dict(state)
    for key, value in own.items():
        if key not in out:                      # the pose encoder
            out[key] = value.detach().clone()
        elif out[key].shape != value.shape:
            old = out[key]
            if not (key.startswith('surface_mlp.') and key.endswith('.weight')
                    and old.ndim == 2 and old.shape[0] == value.shape[0]
                    and value.shape[1] - old.shape[1] == net.pose_dim):
                raise ValueError(f'{key}: cannot widen {tuple(old.shape)} to '
                                 f'{tuple(value.shape)} for the pose inputs')
            out[key] = torch.cat([old, old.new_zeros(old.shape[0], net.pose_dim)], dim=1)
    return out


# ----------------------------------------------------------------------------------------- trainer

class Trainer:
    """Runs the surface then the colour stage, with checkpoints in ``out``."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, quiet: bool = False) -> None:
        cfg.validate()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.quiet = quiet
        torch.set_num_threads(cfg.threads)
        cv2.setNumThreads(1)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.data = SampleSet(cfg.data, cfg.val_subjects)
        self.net_cfg = cfg.network_config()
        self.net = MonoPortNet(self.net_cfg)
        n = len(self.data.train_idx)
        self.ohem_iou = np.zeros(n, np.float64)
        self.ohem_seen = np.zeros(n, bool)
        self.stage = 'surface'
        self.step = 0
        self.elapsed = 0.0
        self.stage_elapsed = 0.0
        self.done: dict[str, int] = {}
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.optimizer = self._make_optimizer()
        self.eval_rng_seed = cfg.seed + 12345
        self.bn_frozen = False
        if cfg.init and not resume:
            self.load_init(cfg.init)
        if resume:
            self.load_state()

    # -- plumbing
    def _make_optimizer(self) -> torch.optim.Optimizer:
        net = self.net
        if self.stage == 'surface':
            params = [*net.surface_encoder.parameters(), *net.surface_mlp.parameters(),
                      *(net.pose_encoder.parameters() if net.pose_encoder is not None else ())]
            lr = self.cfg.lr
        else:
            params = [*net.color_encoder.parameters(), *net.color_mlp.parameters()]
            lr = self.cfg.lr_color
        return torch.optim.Adam(params, lr=lr, weight_decay=self.cfg.weight_decay)

    def _stage_steps(self, stage: str | None = None) -> int:
        stage = stage or self.stage
        return self.cfg.steps_surface if stage == 'surface' else self.cfg.steps_color

    def progress(self) -> float:
        """Fraction of the current stage done: steps or wall-clock cap, whichever is further."""
        total = self._stage_steps()
        t = self.step / total if total else 1.0
        minutes = self.cfg.minutes_surface if self.stage == 'surface' else self.cfg.minutes_color
        if minutes > 0:
            t = max(t, self.stage_elapsed / (60.0 * minutes))
        return t

    def _lr(self) -> float:
        base = self.cfg.lr if self.stage == 'surface' else self.cfg.lr_color
        t = min(self.progress(), 1.0)
        r = self.cfg.lr_final_ratio
        return base * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t)))

    def _log(self, msg: str) -> None:
        if not self.quiet:
            tqdm.write(msg)

    def state_path(self) -> Path:
        """Path of the resumable training state."""
        return self.out / STATE_FILE

    def save_state(self) -> None:
        """Write weights, optimizer, stage/step, OHEM and RNG state (weights_only-safe)."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = {'stage': self.stage, 'step': self.step, 'elapsed': self.elapsed,
                 'stage_elapsed': self.stage_elapsed, 'done': json.dumps(self.done),
                 'bn_frozen': self.bn_frozen,
                 'model': self.net.state_dict(), 'optimizer': self.optimizer.state_dict(),
                 'ohem_iou': torch.from_numpy(self.ohem_iou.copy()),
                 'ohem_seen': torch.from_numpy(self.ohem_seen.copy()),
                 'rng_torch': torch.get_rng_state(),
                 'rng_numpy': json.dumps(self.rng.bit_generator.state),
                 'history': json.dumps(self.history), 'metrics': json.dumps(self.metrics),
                 'config': self.cfg.dump()}
        tmp = self.state_path().with_suffix('.tmp')
        torch.save(state, tmp)
        os.replace(tmp, self.state_path())

    def load_state(self) -> None:
        """Restore a state written by :meth:`save_state` (ValueError when absent or mismatched)."""
        path = self.state_path()
        if not path.is_file():
            raise FileNotFoundError(f'--resume: no training state at {path}')
        state = torch.load(path, map_location='cpu', weights_only=True)
        if state['stage'] not in STAGES:
            raise ValueError(f'{path}: unknown stage {state["stage"]!r}')
        if len(state['ohem_iou']) != len(self.ohem_iou):
            raise ValueError(f'{path}: OHEM state has {len(state["ohem_iou"])} samples but the '
                             f'data set has {len(self.ohem_iou)} training samples')
        self.net.load_state_dict(state['model'])
        self.stage = state['stage']
        self.step = int(state['step'])
        self.elapsed = float(state['elapsed'])
        self.stage_elapsed = float(state['stage_elapsed'])
        self.done = json.loads(state['done'])
        self.bn_frozen = bool(state.get('bn_frozen', False))
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state['optimizer'])
        self.ohem_iou = state['ohem_iou'].numpy().copy()
        self.ohem_seen = state['ohem_seen'].numpy().copy()
        torch.set_rng_state(state['rng_torch'])
        self.rng.bit_generator.state = json.loads(state['rng_numpy'])
        self.history = json.loads(state['history'])
        self.metrics = json.loads(state['metrics'])

    # -- batches
    def draw(self, k: int | None = None) -> np.ndarray:
        """Positions (into ``train_idx``) of the next batch, OHEM-weighted in the surface stage."""
        n = len(self.data.train_idx)
        k = min(k or self.cfg.batch_size, n)
        if self.stage == 'surface' and self.cfg.ohem.enabled:
            p = ohem_probabilities(self.ohem_iou, self.ohem_seen, self.cfg.ohem.alpha,
                                   self.cfg.ohem.uniform_mix)
            return self.rng.choice(n, size=k, replace=False, p=p)
        return self.rng.choice(n, size=k, replace=False)

    def make_batch(self, indices: list[int] | np.ndarray, rng: np.random.Generator,
                   augment: bool = True) -> dict[str, torch.Tensor]:
        """Load, augment and stack the data-set samples ``indices``."""
        aug = self.cfg.augment if augment else None
        items = [prepare_sample(self.data.load(int(i)), self.net_cfg.image_size, rng, aug,
                                self.cfg.z_center) for i in indices]
        if self.cfg.depth_negatives and augment:
            for it in items:
                neg = depth_negatives(it, self.cfg.depth_negatives, rng,
                                      self.cfg.depth_negatives_near)
                it['points'] = np.concatenate([it['points'], neg])
                it['labels'] = np.concatenate([it['labels'], np.zeros(len(neg), np.float32)])
        return collate(items, rng, self.cfg.points_per_sample, self.cfg.color_points_per_sample,
                       self.cfg.color_noise if augment else 0.0,
                       self.cfg.pose_dropout if augment else 0.0)

    # -- losses
    def surface_forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE loss and logits of the surface net on ``batch``."""
        feat = self.net.encode_surface(batch['image'])
        logits = self.net.occupancy_logits(feat, batch['points'], batch['pose'])
        return F.binary_cross_entropy_with_logits(logits, batch['labels']), logits

    def color_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L1 colour loss of the colour net on ``batch`` (surface features without gradients)."""
        with torch.no_grad():
            feat_s = self.net.encode_surface(batch['image'])
        feat_c = self.net.encode_color(batch['image'])
        rgb = self.net.color(feat_s, feat_c, batch['color_points'])
        return (rgb - batch['colors']).abs().mean()

    def load_init(self, path: str | Path) -> None:
        """
        Start from the weights of a model file with the same architecture.

        A file without the config's pose features (the same architecture otherwise) is widened
        by :func:`add_pose_inputs`: the network starts out computing what the file computes.
        """
        cfg, state, _ = read_checkpoint(path)
        if cfg != self.net_cfg and cfg.pose_features == 'none' and cfg == dataclasses.replace(
                self.net_cfg, pose_features='none', pose_channels=cfg.pose_channels):
            state = add_pose_inputs(state, self.net)
            self._log(f'init {path}: pose inputs added with zero weights')
        elif cfg != self.net_cfg:
            raise ValueError(f'init model {path} has another architecture than the config: '
                             f'{cfg.to_dict()} vs {self.net_cfg.to_dict()}')
        load_state_strict(self.net, state, str(path))

    def _active_encoder(self) -> nn.Module:
        return self.net.surface_encoder if self.stage == 'surface' else self.net.color_encoder

    def _set_modes(self) -> None:
        surface_train = self.stage == 'surface'
        surface = [self.net.surface_encoder, self.net.surface_mlp]
        if self.net.pose_encoder is not None:
            surface.append(self.net.pose_encoder)
        for mod in surface:
            mod.train(surface_train)
            for p in mod.parameters():
                p.requires_grad_(surface_train)
        for mod in (self.net.color_encoder, self.net.color_mlp):
            mod.train(not surface_train)
            for p in mod.parameters():
                p.requires_grad_(not surface_train)
        if self.bn_frozen:                  # fixed statistics, as at inference
            for m in self._active_encoder().modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    @torch.no_grad()
    def recalibrate_bn(self, encoder: torch.nn.Module) -> None:
        """
        Re-estimate the BatchNorm running statistics of ``encoder`` (precise BN).

        The running averages kept during training lag behind the weights (momentum 0.1 over
        small batches); inference uses them, so they are recomputed as plain averages over
        ``bn_batches`` augmented training batches with the final weights.
        """
        bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns or self.cfg.bn_batches == 0:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None               # cumulative average
        was_training = encoder.training
        encoder.train()
        rng = np.random.default_rng(self.cfg.seed + 777)
        for _ in range(self.cfg.bn_batches):
            n = len(self.data.train_idx)
            pos = rng.choice(n, min(self.cfg.batch_size, n), replace=False)
            encoder(self.net.normalize(self.make_batch(self.data.train_idx[pos], rng)['image']))
        for m, mom in zip(bns, saved):
            m.momentum = mom
        encoder.train(was_training)

    # -- evaluation
    @torch.no_grad()
    def evaluate(self, which: str = 'val', n: int | None = None) -> dict[str, float]:
        """Sample-point IoU (threshold 0.5), BCE and colour L1 on ``n`` fixed, plain samples."""
        idx = self.data.val_idx if which == 'val' else self.data.train_idx
        if len(idx) == 0:
            return {}
        n = min(n or self.cfg.eval_samples, len(idx))
        pick = idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]
        rng = np.random.default_rng(self.eval_rng_seed)
        was_training = self.net.training
        self.net.eval()
        inter = union = 0.0
        bce = l1 = 0.0
        for i in pick:
            b = self.make_batch([i], rng, augment=False)
            feat = self.net.encode_surface(b['image'])
            logits = self.net.occupancy_logits(feat, b['points'], b['pose'])
            pred, gt = logits > 0, b['labels'] > 0.5
            inter += float((pred & gt).sum())
            union += float((pred | gt).sum())
            bce += float(F.binary_cross_entropy_with_logits(logits, b['labels']))
            if self.stage == 'color':
                rgb = self.net.color(feat, self.net.encode_color(b['image']), b['color_points'])
                l1 += float((rgb - b['colors']).abs().mean())
        self.net.train(was_training)
        self._set_modes()
        out = {'iou': inter / max(union, 1.0), 'bce': bce / n}
        if self.stage == 'color':
            out['color_l1'] = l1 / n
        return out

    # -- main loop
    def run(self) -> dict[str, Any]:
        """Train the remaining steps of both stages; returns the final metrics."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / 'config.yaml').write_text(self.cfg.dump())
        self._log(f'data: {json.dumps(self.data.summary())}')
        if self.stage == 'surface':
            self._run_stage()
            if not self.bn_frozen:
                self.recalibrate_bn(self.net.surface_encoder)
            self.metrics['surface'] = self._final_metrics()
            save_checkpoint(self.out / SURFACE_MODEL, self.net, self.info('surface'))
            self._log(f'surface stage done: {json.dumps(self.metrics["surface"])}; '
                      f'wrote {self.out / SURFACE_MODEL}')
            self.stage, self.step, self.stage_elapsed = 'color', 0, 0.0
            self.bn_frozen = False
            self.optimizer = self._make_optimizer()
            self.save_state()
        self._run_stage()
        if not self.bn_frozen:
            self.recalibrate_bn(self.net.color_encoder)
        self.metrics['color'] = self._final_metrics()
        save_checkpoint(self.out / FINAL_MODEL, self.net, self.info('color'))
        self.save_state()
        (self.out / 'history.json').write_text(json.dumps(self.history, indent=1))
        self._log(f'done: {json.dumps(self.metrics)}; wrote {self.out / FINAL_MODEL}')
        return self.metrics

    def _final_metrics(self) -> dict[str, Any]:
        return {'train': self.evaluate('train', 4 * self.cfg.eval_samples),
                'val': self.evaluate('val', 4 * self.cfg.eval_samples),
                'steps': self.step, 'elapsed_s': round(self.elapsed, 1)}

    def info(self, stage: str) -> dict[str, Any]:
        """Info stored in the model file: data, steps, time, metrics, config."""
        return {'stage': stage, 'data': self.data.summary(), 'data_meta': self.data.meta,
                'steps': {'surface': self.done.get('surface', 0),
                          'color': self.done.get('color', 0)},
                'time': {'train_seconds': round(self.elapsed, 1),
                         'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())},
                'metrics': self.metrics, 'train_config': self.cfg.to_dict()}

    def _run_stage(self) -> None:
        total = self._stage_steps()
        self._set_modes()
        loss_avg = iou_avg = None
        bar = tqdm(total=total, initial=min(self.step, total), desc=self.stage, disable=self.quiet,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
        t_last, s_last = time.time(), self.step
        while self.progress() < 1.0:
            t0 = time.time()
            if (not self.bn_frozen and self.cfg.bn_freeze_fraction > 0
                    and self.progress() >= 1.0 - self.cfg.bn_freeze_fraction):
                self.recalibrate_bn(self._active_encoder())
                self.bn_frozen = True
                self._set_modes()
                self._log(f'{self.stage} {self.step}: BatchNorm statistics re-estimated, frozen')
            pos = self.draw()
            batch = self.make_batch(self.data.train_idx[pos], self.rng)
            for g in self.optimizer.param_groups:
                g['lr'] = self._lr()
            if self.stage == 'surface':
                loss, logits = self.surface_forward(batch)
                ious = batch_iou(logits.detach(), batch['labels']).numpy()
                m = self.cfg.ohem.momentum
                seen = self.ohem_seen[pos]
                self.ohem_iou[pos] = np.where(seen, m * self.ohem_iou[pos] + (1 - m) * ious, ious)
                self.ohem_seen[pos] = True
                iou = float(ious.mean())
            else:
                loss = self.color_forward(batch)
                iou = float('nan')
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            val = float(loss.detach())
            if not math.isfinite(val):
                raise RuntimeError(f'{self.stage} step {self.step}: loss is {val}')
            self.step += 1
            t1 = time.time()
            self.stage_elapsed += t1 - t0
            last = self.progress() >= 1.0
            loss_avg = val if loss_avg is None else 0.95 * loss_avg + 0.05 * val
            if self.stage == 'surface':
                iou_avg = iou if iou_avg is None else 0.95 * iou_avg + 0.05 * iou
            bar.update(1)
            bar.set_postfix(loss=f'{loss_avg:.4f}',
                            **({'iou': f'{iou_avg:.3f}'} if iou_avg is not None else {}),
                            refresh=False)
            record: dict[str, Any] = {'stage': self.stage, 'step': self.step, 'loss': val,
                                      'lr': self._lr()}
            if self.stage == 'surface':
                record['iou'] = iou
            if self.step % self.cfg.log_interval == 0 or last:
                now = time.time()
                rate = (self.step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, self.step
                extra = f' iou {iou_avg:.3f}' if iou_avg is not None else ''
                if self.stage == 'surface' and self.ohem_seen.any():
                    extra += f' ohem-mean-iou {self.ohem_iou[self.ohem_seen].mean():.3f}'
                self._log(f'{self.stage} {self.step}/{total} loss {loss_avg:.4f}{extra} '
                          f'lr {self._lr():.2e} {rate:.3f} steps/s')
                record['loss_avg'] = loss_avg
                record['steps_per_s'] = rate
            if self.step % self.cfg.eval_interval == 0 or last:
                ev = {'val': self.evaluate('val'), 'train': self.evaluate('train')}
                record['eval'] = ev
                self._log(f'{self.stage} {self.step} eval {json.dumps(ev)}')
            self.history.append(record)
            self.stage_elapsed += time.time() - t1      # evaluation time counts too
            self.elapsed += time.time() - t0
            if self.step % self.cfg.checkpoint_interval == 0 and not last:
                self.save_state()
        bar.close()
        self.done[self.stage] = self.step


# ----------------------------------------------------------------------------------------- CLI

def _cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig.load(args.config)
    changes: dict[str, Any] = {}
    for key in ('data', 'out', 'steps_surface', 'steps_color', 'minutes_surface',
                'minutes_color', 'threads'):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    cfg = dataclasses.replace(cfg, **changes)
    metrics = Trainer(cfg, resume=args.resume).run()
    print(json.dumps(metrics, indent=1))
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser('train', help='train the surface then the colour network',
                              description=__doc__.splitlines()[0])
    p.add_argument('--config', required=True, help='training YAML (e.g. config/train/small.yaml)')
    p.add_argument('--data', help='data set folder (overrides the config)')
    p.add_argument('--out', help='output folder for checkpoints and the model (overrides config)')
    p.add_argument('--resume', action='store_true', help='continue from OUT/state.pt')
    p.add_argument('--steps-surface', dest='steps_surface', type=int, help='surface-stage steps')
    p.add_argument('--steps-color', dest='steps_color', type=int, help='colour-stage steps')
    p.add_argument('--minutes-surface', dest='minutes_surface', type=float,
                   help='wall-clock cap of the surface stage (minutes, 0 = none)')
    p.add_argument('--minutes-color', dest='minutes_color', type=float,
                   help='wall-clock cap of the colour stage (minutes, 0 = none)')
    p.add_argument('--threads', type=int, help='torch threads (overrides the config)')
    p.set_defaults(func=_cmd_train)
