"""
Test-time averaging of the surface network over views of one crop (mirror_average, shift_average).

Each view is the crop, possibly mirrored left-right and moved by a few pixels; the network is asked
about every view at the point where that view sees the model-space point, and the occupancies are
averaged. The views' errors differ (a mirrored figure, or the encoder's strides sampling the image
at other phases), and on the held-out sets their mean mostly scores better than the crop alone
(README, Evaluation). The first view is always the crop itself: its features are the colour
stage's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

# shift_average moves the crop by this fraction of its side along both diagonals (4 px of 256,
# one texel of the shipped encoder's stride-4 feature map; chosen on eval_synth among 2, 4, 6 and
# 8 px, README Evaluation)
SHIFT_FRACTION = 1 / 64


class View(NamedTuple):
    """One view of the crop: mirrored left-right first, then moved right ``dx`` and down ``dy``."""

    mirrored: bool
    dx: int
    dy: int


def averaged_views(mirror: bool, shift: bool, side: int) -> list[View]:
    """List the views averaged for a crop ``side`` pixels wide, the crop itself first."""
    d = max(1, round(side * SHIFT_FRACTION))
    moves = [(0, 0)] + ([(d, d), (-d, -d), (d, -d), (-d, d)] if shift else [])
    return [View(m, dx, dy) for m in ((False, True) if mirror else (False,)) for dx, dy in moves]


def view_images(image: torch.Tensor, views: list[View]) -> torch.Tensor:
    """Stack the views of a (1, 3, H, W) crop into a (len(views), 3, H, W) batch."""
    out = []
    for v in views:
        img = image.flip(3) if v.mirrored else image
        if v.dx or v.dy:
            # the masked crop's border is background, so what rolls round is background too
            img = torch.roll(img, (v.dy, v.dx), (2, 3))
        out.append(img)
    return torch.cat(out)


def view_point_maps(views: list[View], image_hw: tuple[int, int], feature_hw: tuple[int, int],
                    align_corners: bool, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Map model points into each view: view k sees p at ``p * scale[k] + offset[k]`` ((V, 1, 3)).

    Model x grows with the image column and y against the row (:func:`networks.sample_features`);
    a move of one image pixel is ``1 / stride`` of a feature texel, whose width in model units is
    2 / w (2 / (w - 1) with ``align_corners``).
    """
    (h_img, w_img), (h_feat, w_feat) = image_hw, feature_hw
    steps = []
    for size, feat in ((w_img, w_feat), (h_img, h_feat)):
        texel = 2.0 / (feat - 1 if align_corners else feat)
        steps.append(texel * feat / size)
    scale = torch.tensor([[[-1.0 if v.mirrored else 1.0, 1.0, 1.0]] for v in views],
                         device=device)
    offset = torch.tensor([[[v.dx * steps[0], -v.dy * steps[1], 0.0]] for v in views],
                          device=device)
    return scale, offset
