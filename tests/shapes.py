"""Analytic occupancy fields shared by the tests (inside = 1.0, outside = 0.0)."""
from __future__ import annotations

import math

import torch


def sphere(p: torch.Tensor, centre=(0.1, -0.05, 0.0), radius: float = 0.55) -> torch.Tensor:
    """Solid ball."""
    return ((p - torch.tensor(centre)).norm(dim=-1) < radius).float()


def torus(p: torch.Tensor, major: float = 0.5, minor: float = 0.15) -> torch.Tensor:
    """Solid torus around the y axis, tilted a little."""
    a = 0.3
    x = p[..., 0]
    y = p[..., 1] * math.cos(a) - p[..., 2] * math.sin(a)
    z = p[..., 1] * math.sin(a) + p[..., 2] * math.cos(a)
    q = torch.sqrt(x * x + z * z) - major
    return ((q * q + y * y) < minor * minor).float()


def thin_plates(p: torch.Tensor, thickness: float = 0.15) -> torch.Tensor:
    """Two tilted slabs of ``thickness`` clipped to a box (thin compared with their extent)."""
    n1 = torch.tensor([0.3, 0.9, 0.2])
    n1 = n1 / n1.norm()
    n2 = torch.tensor([0.8, -0.1, 0.55])
    n2 = n2 / n2.norm()
    box = (p.abs() < 0.8).all(dim=-1)
    s1 = ((p @ n1) - 0.2).abs() < thickness / 2
    s2 = ((p @ n2) + 0.3).abs() < thickness / 2
    return ((s1 | s2) & box).float()


def _capsule(p: torch.Tensor, a, b, r: float) -> torch.Tensor:
    a = torch.tensor(a)
    b = torch.tensor(b)
    ab = b - a
    t = (((p - a) @ ab) / (ab @ ab)).clamp(0, 1)
    return (p - (a + t[..., None] * ab)).norm(dim=-1) < r


def capsules(p: torch.Tensor) -> torch.Tensor:
    """Union of capsules: a stick figure (torso, head, limbs)."""
    parts = [((0, 0.1, 0), (0, 0.5, 0), 0.18), ((0, 0.62, 0), (0, 0.7, 0), 0.12),
             ((0, 0.45, 0), (0.5, 0.2, 0.1), 0.08), ((0, 0.45, 0), (-0.45, 0.55, -0.1), 0.08),
             ((0.05, 0.1, 0), (0.15, -0.8, 0.05), 0.1),
             ((-0.05, 0.1, 0), (-0.2, -0.75, -0.15), 0.1)]
    out = torch.zeros(p.shape[:-1], dtype=torch.bool)
    for a, b, r in parts:
        out |= _capsule(p, a, b, r)
    return out.float()


SHAPES = {'sphere': sphere, 'torus': torus, 'thin_plates': thin_plates, 'capsules': capsules}
