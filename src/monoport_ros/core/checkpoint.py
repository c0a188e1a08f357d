"""
Model files: one safetensors file holds the weights and the NetworkConfig they were built with.

Loading never unpickles code: ``.safetensors`` files are plain tensors; released PyTorch ``.pth``
files go through ``torch.load(weights_only=True)`` (see :mod:`monoport_ros.core.released`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import NetworkConfig
from .networks import MonoPortNet

FORMAT = 'monoport_ros/1'


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | Path, net: MonoPortNet,
                    info: dict[str, Any] | None = None) -> None:
    """Write ``net``'s weights, its config and free-form ``info`` (JSON-able) to ``path``."""
    meta = {'format': FORMAT, 'network': json.dumps(net.cfg.to_dict()),
            'info': json.dumps(info or {})}
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def read_checkpoint(
        path: str | Path) -> tuple[NetworkConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read config, state dict and info from a monoport_ros safetensors file (no code is run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: model file not found')
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'{path}: not a readable safetensors file ({exc})') from exc
    if meta.get('format') != FORMAT:
        raise CheckpointError(f'{path}: missing or unknown format tag {meta.get("format")!r} '
                              f'(expected {FORMAT!r})')
    try:
        cfg = NetworkConfig.from_dict(json.loads(meta['network']))
        info = json.loads(meta.get('info', '{}'))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f'{path}: bad network config in metadata ({exc})') from exc
    return cfg, tensors, info


def load_state_strict(net: MonoPortNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``net``; CheckpointError listing missing/unexpected/mis-shaped keys."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    dtypes = sorted(f'{k}: {state[k].dtype}' for k in set(own) & set(state)
                    if state[k].dtype != own[k].dtype and not
                    (state[k].is_floating_point() and own[k].is_floating_point()))
    problems = []
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected),
                         ('shape mismatches', shapes), ('dtype mismatches', dtypes)):
        if items:
            shown = ', '.join(items[:8]) + (f' ... (+{len(items) - 8} more)'
                                            if len(items) > 8 else '')
            problems.append(f'{len(items)} {label}: {shown}')
    if problems:
        raise CheckpointError(f'{source}: weights do not fit the architecture; '
                              + '; '.join(problems))
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def load_checkpoint(path: str | Path, device: str | torch.device = 'cpu') -> MonoPortNet:
    """Build the network stored in ``path`` and load its weights (eval mode)."""
    cfg, state, info = read_checkpoint(path)
    net = MonoPortNet(cfg)
    load_state_strict(net, state, str(path))
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f'{path}: tensor {k} contains NaN or Inf')
    net.info = info
    return net.to(device).eval()
