"""
MonoPort networks in plain torch: HRNetV2-style encoder, Soft-Z, surface and colour PIFu MLPs.

Written from the papers' descriptions (PIFu, MonoPort) and HRNetV2's published structure; module
names follow HRNet's public layout (``conv1``, ``layer1``, ``transition1``, ``stage2`` ...).
``encoder='pifu'`` swaps in PIFu's stacked-hourglass surface encoder and ResNet colour encoder,
with PIFu's module names, so the released PIFu/MonoPort weights load onto them
(see :mod:`monoport_ros.core.released`).
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .body_pose import N_BONE_FEATURES, Skeleton, bone_features
from .config import NetworkConfig

LOG = logging.getLogger(__name__)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                               nn.BatchNorm2d(cout)]
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
    down = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                  nn.BatchNorm2d(cout))
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
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode='bilinear',
                                      align_corners=False)
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
                *[HighResolutionModule(chans, cfg.stage_blocks[s])
                  for _ in range(cfg.stage_modules[s])]))
            prev = chans
        self.last_layer = nn.Sequential(
            nn.Conv2d(sum(prev), out_channels, 1), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
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
        up = [xs[0]] + [F.interpolate(x, size=size, mode='bilinear', align_corners=False)
                        for x in xs[1:]]
        return self.last_layer(torch.cat(up, dim=1))


class HGConvBlock(nn.Module):
    """PIFu's hourglass block: three pre-activated 3x3 convs, concatenated, plus a shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.GroupNorm(32, cin)
        self.conv1 = nn.Conv2d(cin, half, 3, 1, 1, bias=False)
        self.bn2 = nn.GroupNorm(32, half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.GroupNorm(32, quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.bn4 = nn.GroupNorm(32, cin)      # shortcut norm (PIFu creates it even when unused)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated branch outputs plus the (projected) input."""
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        res = x if self.shortcut is None else self.shortcut(F.relu(self.bn4(x)))
        return torch.cat([a, b, c], dim=1) + res


class Hourglass(nn.Module):
    """Recursive hourglass: full-resolution branch plus a pooled, processed, upsampled branch."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            for name in ('b1', 'b2', 'b3'):
                setattr(self, f'{name}_{level}', HGConvBlock(channels, channels))
        self.b2_plus_1 = HGConvBlock(channels, channels)

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = getattr(self, f'b1_{level}')(x)
        low = getattr(self, f'b2_{level}')(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f'b3_{level}')(low)
        return up + F.interpolate(low, scale_factor=2, mode='bicubic', align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return a map of the input's shape (sides divisible by 2**depth)."""
        return self._level(self.depth, x)


class HourglassEncoder(nn.Module):
    """PIFu's surface image filter: stride-4 stem, ``hg_stacks`` hourglasses, last stack out."""

    def __init__(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3)
        self.bn1 = nn.GroupNorm(32, 64)
        self.conv2 = HGConvBlock(64, 128)
        self.conv3 = HGConvBlock(128, 128)
        self.conv4 = HGConvBlock(128, 256)
        self.n_stacks = cfg.hg_stacks
        for i in range(cfg.hg_stacks):
            setattr(self, f'm{i}', Hourglass(cfg.hg_depth, 256))
            setattr(self, f'top_m_{i}', HGConvBlock(256, 256))
            setattr(self, f'conv_last{i}', nn.Conv2d(256, 256, 1))
            setattr(self, f'bn_end{i}', nn.GroupNorm(32, 256))
            setattr(self, f'l{i}', nn.Conv2d(256, out_channels, 1))
            if i < cfg.hg_stacks - 1:
                setattr(self, f'bl{i}', nn.Conv2d(256, 256, 1))
                setattr(self, f'al{i}', nn.Conv2d(out_channels, 256, 1))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) image -> (B, out_channels, S/4, S/4) features of the last stack."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        prev = self.conv4(self.conv3(x))
        out = prev
        for i in range(self.n_stacks):
            y = getattr(self, f'top_m_{i}')(getattr(self, f'm{i}')(prev))
            y = F.relu(getattr(self, f'bn_end{i}')(getattr(self, f'conv_last{i}')(y)))
            out = getattr(self, f'l{i}')(y)
            if i < self.n_stacks - 1:
                prev = prev + getattr(self, f'bl{i}')(y) + getattr(self, f'al{i}')(out)
        return out


class ReflectResBlock(nn.Module):
    """Residual block of two reflection-padded 3x3 convs (the last block has no final norm)."""

    def __init__(self, channels: int, last: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
            nn.GroupNorm(32, channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False)]
        if not last:
            layers.append(nn.GroupNorm(32, channels))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input plus the block's output."""
        return x + self.conv_block(x)


class ResNetEncoder(nn.Module):
    """PIFu's colour image filter: 7x7 stem, two stride-2 convs, ``color_blocks`` res blocks."""

    def __init__(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 128:
            raise ValueError('the pifu colour encoder needs color_feature_channels divisible by '
                             f'128 (32 norm groups at a quarter width), got {out_channels}')
        ngf = out_channels // 4
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=False),
            nn.GroupNorm(32, ngf), nn.ReLU(inplace=True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=False),
                       nn.GroupNorm(32, ngf * mult * 2), nn.ReLU(inplace=True)]
        layers += [ReflectResBlock(out_channels, last=i == cfg.color_blocks - 1)
                   for i in range(cfg.color_blocks)]
        self.model = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) image -> (B, out_channels, S/4, S/4) features."""
        return self.model(x)


ENCODERS = {'hrnet': (HRNetEncoder, HRNetEncoder), 'pifu': (HourglassEncoder, ResNetEncoder)}
POSE_FEATURES = ('none', 'bones')


def soft_z(z: torch.Tensor, bins: int) -> torch.Tensor:
    """
    Soft-Z depth code: a soft one-hot of ``z`` in [-1, 1] over ``bins`` ordinal bins (..., bins).

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
            nn.Linear(dims[i] + (cin if skip and i > 0 else 0), dims[i + 1])
            for i in range(len(dims) - 1))

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


# points per network pass at inference on CPU: the MLP's activations stay in the caches (measured,
# one core: 50k points took 24 ms in chunks of 8192 in bfloat16, 54 ms in one pass; float32 37
# vs 95 ms)
POINT_CHUNK = 8192


def padded_rows(n: int) -> int:
    """
    Smallest size >= ``n`` of the form 2^k or 3 * 2^(k-1) (at most 1.5 ``n``, or 64).

    oneDNN compiles a new bfloat16 kernel for every new row count; a flood of surface queries
    of ever-changing sizes then costs more in compilation than in arithmetic (measured: 60 random
    sizes took 2-5x longer than the same work padded to these few sizes).
    """
    if n <= 64:
        return 64
    k = (n - 1).bit_length()
    return 3 << (k - 2) if n <= 3 << (k - 2) else 1 << k


def sample_features(features: torch.Tensor, xy: torch.Tensor,
                    align_corners: bool = False, mode: str = 'bilinear') -> torch.Tensor:
    """
    Sample (B, C, h, w) features at model-space ``xy`` (B, N, 2) -> (B, N, C).

    ``align_corners=True`` puts xy = +-1 on the centres of the border texels (PIFu's convention).
    """
    grid = torch.stack([xy[..., 0], -xy[..., 1]], dim=-1).unsqueeze(1)   # image v grows downwards
    return F.grid_sample(features, grid.to(features.dtype), mode=mode, padding_mode='border',
                         align_corners=align_corners)[:, :, 0].transpose(1, 2)


class MonoPortNet(nn.Module):
    """Surface PIFu (geometry) and texture PIFu (colour) sharing model space."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        zdim = max(cfg.softz_bins, 1)
        if cfg.encoder not in ENCODERS:
            raise ValueError(f'unknown encoder {cfg.encoder!r}; '
                             f'expected one of {sorted(ENCODERS)}')
        surface_cls, color_cls = ENCODERS[cfg.encoder]
        if cfg.pose_features not in POSE_FEATURES:
            raise ValueError(f'unknown pose_features {cfg.pose_features!r}; '
                             f'expected one of {POSE_FEATURES}')
        self.surface_encoder = surface_cls(cfg, 3, cfg.feature_channels)
        # the pose channels come last in the surface MLP's input (warm starts add them as zeros)
        self.pose_dim = cfg.pose_channels if cfg.pose_features == 'bones' else 0
        self.pose_encoder = nn.Linear(N_BONE_FEATURES, self.pose_dim) if self.pose_dim else None
        self.surface_mlp = PointMLP(cfg.feature_channels + zdim + self.pose_dim, cfg.surface_mlp,
                                    1, cfg.mlp_skip)
        self.color_encoder = color_cls(cfg, 3, cfg.color_feature_channels)
        self.color_mlp = PointMLP(cfg.color_feature_channels + cfg.feature_channels + zdim,
                                  cfg.color_mlp, 3, cfg.mlp_skip)
        self.register_buffer('image_mean', torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer('image_std', torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.compute_dtype = torch.float32
        self.channels_last = False

    def set_precision(self, dtype: torch.dtype) -> 'MonoPortNet':
        """
        Run the encoders and MLPs in ``dtype`` (e.g. ``torch.bfloat16``); return self.

        Feature sampling, the depth code, the pose features (and their small linear layer) and
        all outputs stay float32: point coordinates in bfloat16 would be rounded by up to a
        512^3 voxel.
        """
        for module in (self.surface_encoder, self.surface_mlp, self.color_encoder,
                       self.color_mlp):
            module.to(dtype)
        self.compute_dtype = dtype
        return self

    def _run_mlp(self, mlp: PointMLP, x: torch.Tensor) -> torch.Tensor:
        """``mlp`` on (B, N, C) float32 inputs in the compute type; float32 out."""
        x = x.to(self.compute_dtype)
        n = x.shape[1]
        if self.compute_dtype != torch.float32 and padded_rows(n) != n:
            x = F.pad(x, (0, 0, 0, padded_rows(n) - n))     # reduced precision: few shapes
        return mlp(x)[:, :n].float()

    def use_channels_last(self) -> 'MonoPortNet':
        """
        Keep the encoders' weights and inputs channels-last (NHWC); return self.

        oneDNN's convolutions run about 1.4x faster so on CPU (measured, one core: 16.4 -> 11.4
        ms per encoder on a 256x256 crop); the feature maps come out in the usual layout.
        """
        self.surface_encoder.to(memory_format=torch.channels_last)
        self.color_encoder.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def fuse_batchnorm(self) -> 'MonoPortNet':
        """
        Fold the encoders' BatchNorm layers into the convolutions before them; return self.

        Inference only (the running statistics become part of the weights). torch.fx's conv-bn
        fusion; features equal to ~1e-6, measured on one core 12.1 -> 10.7 ms (surface encoder)
        and 12.1 -> 9.7 ms (colour encoder) per 256x256 crop. Encoders without such pairs (PIFu's
        group norm) or that torch.fx cannot trace are kept as they are.
        """
        if self.training:
            raise RuntimeError('fuse_batchnorm is for inference: call eval() first')
        try:
            with warnings.catch_warnings():     # the import touches deprecated torch.jit helpers
                warnings.simplefilter('ignore', DeprecationWarning)
                from torch.fx.experimental.optimization import fuse
        except ImportError as exc:              # an experimental module: may move one day
            LOG.debug('encoders kept unfused: %s', exc)
            return self
        for name in ('surface_encoder', 'color_encoder'):
            try:
                setattr(self, name, fuse(getattr(self, name)))      # fuse works on a copy
            except Exception as exc:    # noqa: BLE001 - an untraceable encoder still works
                LOG.debug('%s kept unfused: %s', name, exc)
        return self

    def _encode(self, encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images).to(self.compute_dtype)
        if self.channels_last:
            return encoder(x.contiguous(memory_format=torch.channels_last)).float().contiguous()
        return encoder(x).float()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] (background already zeroed) -> network input."""
        return (images - self.image_mean) / self.image_std

    def encode_surface(self, images: torch.Tensor) -> torch.Tensor:
        """Surface feature map (float32) of normalized-to-[0,1] crops."""
        return self._encode(self.surface_encoder, images)

    def encode_color(self, images: torch.Tensor) -> torch.Tensor:
        """Colour feature map (float32) of the same crops."""
        return self._encode(self.color_encoder, images)

    def _point_input(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return torch.cat([sample_features(features, points[..., :2], self.cfg.align_corners),
                          soft_z(points[..., 2].to(features.dtype), self.cfg.softz_bins)], dim=-1)

    def _surface_input(self, features: torch.Tensor, points: torch.Tensor,
                       pose: torch.Tensor | Skeleton | None) -> torch.Tensor:
        x = self._point_input(features, points)
        if not self.pose_dim:
            return x
        code = self.pose_encoder(bone_features(points, pose))
        return torch.cat([x, F.leaky_relu(code, 0.01)], dim=-1)

    def _in_chunks(self, fn: Callable[[torch.Tensor], torch.Tensor],
                   points: torch.Tensor) -> torch.Tensor:
        """``fn`` over (B, N, 3) ``points``; on CPU at inference in chunks of POINT_CHUNK."""
        if self.training or points.shape[1] <= POINT_CHUNK or points.device.type != 'cpu':
            return fn(points)
        return torch.cat([fn(p) for p in points.split(POINT_CHUNK, dim=1)], dim=1)

    def occupancy_logits(self, features: torch.Tensor, points: torch.Tensor,
                         pose: torch.Tensor | Skeleton | None = None) -> torch.Tensor:
        """
        Inside/outside logits (B, N) at model-space ``points`` (B, N, 3).

        ``pose``: pose arrays (B, 33, 4) in model space (:mod:`core.body_pose`) or their
        ``skeleton`` (once per frame: cheaper over many calls), None for none; ignored by a
        network without pose features.
        """
        return self._in_chunks(
            lambda p: self._run_mlp(self.surface_mlp,
                                    self._surface_input(features, p, pose))[..., 0],
            points)

    def occupancy(self, features: torch.Tensor, points: torch.Tensor,
                  pose: torch.Tensor | Skeleton | None = None) -> torch.Tensor:
        """Inside probability (B, N) at ``points`` (``pose`` as in :meth:`occupancy_logits`)."""
        return torch.sigmoid(self.occupancy_logits(features, points, pose))

    def color(self, surface_features: torch.Tensor, color_features: torch.Tensor,
              points: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, N, 3) at ``points`` from both feature maps."""
        def rgb(p: torch.Tensor) -> torch.Tensor:
            x = torch.cat([sample_features(color_features, p[..., :2], self.cfg.align_corners),
                           self._point_input(surface_features, p)], dim=-1)
            return torch.sigmoid(self._run_mlp(self.color_mlp, x))
        return self._in_chunks(rgb, points)
