"""Load any supported model file: ours (:mod:`.checkpoint`) or PIFu's (:mod:`.released`)."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .networks import MonoPortNet
from .released import load_released


def load_model(path: str | Path, device: str | torch.device = 'cpu') -> MonoPortNet:
    """
    Load a model file (eval mode).

    ``.safetensors`` goes to :func:`load_checkpoint`; anything else (``.pth``, ``.pt``, ``.tar``,
    PIFu's extension-less ``net_G``, a folder) to :func:`load_released`.
    """
    path = Path(path)
    if path.suffix.lower() == '.safetensors':
        return load_checkpoint(path, device)
    return load_released(path, device)
