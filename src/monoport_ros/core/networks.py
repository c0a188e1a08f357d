"""MonoPort networks in plain torch: HRNetV2-style encoder, Soft-Z, surface and colour PIFu MLPs.

Written from the papers' descriptions (PIFu, MonoPort) and HRNetV2's published structure; module names
follow HRNet's public layout (``conv1``, ``layer1``, ``transition1``, ``stage2`` ...) so released weights
map onto them by name (see :mod:`monoport_ros.core.released`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions)."""

    expansion = 1

    def __init__(self, cin: int, cout: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1; expansion 4)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _blocks(block: type, cin: int, planes: int, n: int) -> nn.Sequential:
    cout = planes * block.expansion
    down = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
    layers = [block(cin, planes, down)] + [block(cout, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches at several resolutions followed by all-to-all fusion (HRNet)."""

    def __init__(self, channels: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_blocks(BasicBlock, c, c, blocks) for c in channels)
        n = len(channels)
        fuse = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:       # lower resolution -> 1x1 conv, upsample in forward
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                             nn.BatchNorm2d(channels[i])))
                elif j == i:
                    row.append(nn.Identity())
                else:           # higher resolution -> strided 3x3 convs
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(_conv_bn(channels[j], channels[i] if last else channels[j],
                                              3, 2, relu=not last))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run branches, then fuse every branch into every other."""
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode='bilinear', align_corners=False)
                y = y + z
            out.append(F.relu(y))
        return out


class HRNetEncoder(nn.Module):
    """HRNetV2-style encoder: stride-4 stem, multi-resolution stages, all branches fused at 1/4."""

    def __init__(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        c0 = cfg.stem_channels
        self.conv1 = nn.Conv2d(in_channels, c0, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.conv2 = nn.Conv2d(c0, c0, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c0)
        block = Bottleneck if cfg.stem_bottleneck else BasicBlock
        self.layer1 = _blocks(block, c0, c0, cfg.stem_blocks)
        prev = (c0 * block.expansion,)
        self.n_stages = len(cfg.branch_channels) - 1
        if len(cfg.stage_blocks) != self.n_stages or len(cfg.stage_modules) != self.n_stages:
            raise ValueError('stage_blocks and stage_modules need one entry per stage '
                             f'({self.n_stages} for {len(cfg.branch_channels)} branches)')
        for s in range(self.n_stages):
            chans = tuple(cfg.branch_channels[:s + 2])
            trans = []
            for b, c in enumerate(chans):
                if b < len(prev):
                    trans.append(nn.Identity() if prev[b] == c else _conv_bn(prev[b], c, 3, 1))
                else:
                    trans.append(_conv_bn(prev[-1], c, 3, 2))
            setattr(self, f'transition{s + 1}', nn.ModuleList(trans))
            setattr(self, f'stage{s + 2}', nn.Sequential(
                *[HighResolutionModule(chans, cfg.stage_blocks[s]) for _ in range(cfg.stage_modules[s])]))
            prev = chans
        self.last_layer = nn.Sequential(
            nn.Conv2d(sum(prev), out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) image -> (B, out_channels, S/4, S/4) features."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in range(self.n_stages):
            trans = getattr(self, f'transition{s + 1}')
            xs = [t(xs[b] if b < len(xs) else xs[-1]) for b, t in enumerate(trans)]
            for module in getattr(self, f'stage{s + 2}'):
                xs = module(xs)
        size = xs[0].shape[-2:]
        up = [xs[0]] + [F.interpolate(x, size=size, mode='bilinear', align_corners=False) for x in xs[1:]]
        return self.last_layer(torch.cat(up, dim=1))


def soft_z(z: torch.Tensor, bins: int) -> torch.Tensor:
    """Soft-Z depth code: a soft one-hot of ``z`` in [-1, 1] over ``bins`` ordinal bins (..., bins).

    Linear interpolation between the two nearest bin centres (weights sum to 1); with ``bins == 0``
    the scalar z itself, as in the original PIFu.
    """
    if bins == 0:
        return z.unsqueeze(-1)
    pos = (z.clamp(-1.0, 1.0) + 1.0) * 0.5 * (bins - 1)
    centres = torch.arange(bins, dtype=z.dtype, device=z.device)
    return torch.clamp(1.0 - (pos.unsqueeze(-1) - centres).abs(), min=0.0)


class PointMLP(nn.Module):
    """PIFu point classifier: linear layers, with the input re-injected at every hidden layer."""

    def __init__(self, cin: int, hidden: tuple[int, ...], cout: int, skip: bool) -> None:
        super().__init__()
        dims = [cin, *hidden, cout]
        self.skip = skip
        self.filters = nn.ModuleList(
            nn.Linear(dims[i] + (cin if skip and i > 0 else 0), dims[i + 1]) for i in range(len(dims) - 1))

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """(..., cin) -> (..., cout) raw output (and the last hidden activation when asked)."""
        y = x
        hidden = x
        for i, f in enumerate(self.filters):
            y = f(y if i == 0 or not self.skip else torch.cat([y, x], dim=-1))
            if i < len(self.filters) - 1:
                y = F.leaky_relu(y, 0.01)
                hidden = y
        return (y, hidden) if return_hidden else y


def sample_features(features: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample (B, C, h, w) features at model-space ``xy`` (B, N, 2) -> (B, N, C)."""
    grid = torch.stack([xy[..., 0], -xy[..., 1]], dim=-1).unsqueeze(1)   # image v grows downwards
    return F.grid_sample(features, grid.to(features.dtype), mode='bilinear', padding_mode='border',
                         align_corners=False)[:, :, 0].transpose(1, 2)


class MonoPortNet(nn.Module):
    """Surface PIFu (geometry) and texture PIFu (colour) sharing model space."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        zdim = max(cfg.softz_bins, 1)
        self.surface_encoder = HRNetEncoder(cfg, 3, cfg.feature_channels)
        self.surface_mlp = PointMLP(cfg.feature_channels + zdim, cfg.surface_mlp, 1, cfg.mlp_skip)
        self.color_encoder = HRNetEncoder(cfg, 3, cfg.color_feature_channels)
        self.color_mlp = PointMLP(cfg.color_feature_channels + cfg.feature_channels + zdim,
                                  cfg.color_mlp, 3, cfg.mlp_skip)
        self.register_buffer('image_mean', torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer('image_std', torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] (background already zeroed) -> network input."""
        return (images - self.image_mean) / self.image_std

    def encode_surface(self, images: torch.Tensor) -> torch.Tensor:
        """Surface feature map of normalized-to-[0,1] crops."""
        return self.surface_encoder(self.normalize(images))

    def encode_color(self, images: torch.Tensor) -> torch.Tensor:
        """Colour feature map of the same crops."""
        return self.color_encoder(self.normalize(images))

    def _point_input(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return torch.cat([sample_features(features, points[..., :2]),
                          soft_z(points[..., 2].to(features.dtype), self.cfg.softz_bins)], dim=-1)

    def occupancy_logits(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Inside/outside logits (B, N) at model-space ``points`` (B, N, 3)."""
        return self.surface_mlp(self._point_input(features, points))[..., 0]

    def occupancy(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Inside probability (B, N) at ``points``."""
        return torch.sigmoid(self.occupancy_logits(features, points))

    def color(self, surface_features: torch.Tensor, color_features: torch.Tensor,
              points: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, N, 3) at ``points`` from both feature maps."""
        x = torch.cat([sample_features(color_features, points[..., :2]),
                       self._point_input(surface_features, points)], dim=-1)
        return torch.sigmoid(self.color_mlp(x))
