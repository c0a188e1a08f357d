"""
Model files: our safetensors checkpoints and the released PIFu / MonoPort weights.

The PIFu layout below is written out from the public PIFu code (``lib/model/HGFilters.py``,
``net_util.ConvBlock``, ``ResBlkPIFuNet.py``, ``SurfaceClassifier.py``,
``scripts/eval_default.sh``), independently of our modules, and the reference forward passes use
only ``torch.nn.functional`` on the raw tensors, so a passing test means the mapping reproduces
PIFu's computation.
"""
from __future__ import annotations

import copy

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from monoport_ros.core.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from monoport_ros.core.config import NetworkConfig
from monoport_ros.core.model_file import load_model
from monoport_ros.core.networks import MonoPortNet

torch.set_num_threads(1)

Z_SCALE = 256 / 200          # PIFu: z * (loadSize // 2) / z_size with loadSize 512, z_size 200
G_MLP = (257, 1024, 512, 256, 128, 1)
C_MLP = (513, 1024, 512, 256, 128, 3)


# ----------------------------------------------------------------------------- PIFu layout

def _convblock_shapes(out: dict, prefix: str, cin: int, cout: int) -> None:
    half, quarter = cout // 2, cout // 4
    out[f'{prefix}.conv1.weight'] = (half, cin, 3, 3)
    out[f'{prefix}.conv2.weight'] = (quarter, half, 3, 3)
    out[f'{prefix}.conv3.weight'] = (quarter, quarter, 3, 3)
    for name, c in (('bn1', cin), ('bn2', half), ('bn3', quarter), ('bn4', cin)):
        out[f'{prefix}.{name}.weight'] = (c,)
        out[f'{prefix}.{name}.bias'] = (c,)
    if cin != cout:
        out[f'{prefix}.downsample.0.weight'] = (cin,)      # the same module as bn4
        out[f'{prefix}.downsample.0.bias'] = (cin,)
        out[f'{prefix}.downsample.2.weight'] = (cout, cin, 1, 1)


def _classifier_shapes(out: dict, dims: tuple[int, ...]) -> None:
    for j in range(len(dims) - 1):
        cin = dims[j] + (dims[0] if j > 0 else 0)
        out[f'surface_classifier.conv{j}.weight'] = (dims[j + 1], cin, 1)
        out[f'surface_classifier.conv{j}.bias'] = (dims[j + 1],)


def pifu_g_shapes(stacks: int = 4, depth: int = 2) -> dict[str, tuple]:
    """Key -> shape of PIFu's HGPIFuNet state dict (released: 4 stacks, depth 2, group norm)."""
    s: dict[str, tuple] = {'image_filter.conv1.weight': (64, 3, 7, 7),
                           'image_filter.conv1.bias': (64,),
                           'image_filter.bn1.weight': (64,), 'image_filter.bn1.bias': (64,)}
    _convblock_shapes(s, 'image_filter.conv2', 64, 128)
    _convblock_shapes(s, 'image_filter.conv3', 128, 128)
    _convblock_shapes(s, 'image_filter.conv4', 128, 256)
    for i in range(stacks):
        for level in range(depth, 0, -1):
            for b in ('b1', 'b2', 'b3'):
                _convblock_shapes(s, f'image_filter.m{i}.{b}_{level}', 256, 256)
        _convblock_shapes(s, f'image_filter.m{i}.b2_plus_1', 256, 256)
        _convblock_shapes(s, f'image_filter.top_m_{i}', 256, 256)
        names = [f'conv_last{i}', f'l{i}'] + ([f'bl{i}', f'al{i}'] if i < stacks - 1 else [])
        for name in names:
            s[f'image_filter.{name}.weight'] = (256, 256, 1, 1)
            s[f'image_filter.{name}.bias'] = (256,)
        s[f'image_filter.bn_end{i}.weight'] = (256,)
        s[f'image_filter.bn_end{i}.bias'] = (256,)
    _classifier_shapes(s, G_MLP)
    return s


def pifu_c_shapes(blocks: int = 6) -> dict[str, tuple]:
    """Key -> shape of PIFu's ResBlkPIFuNet state dict (released: group norm, 6 blocks)."""
    s: dict[str, tuple] = {'image_filter.model.1.weight': (64, 3, 7, 7),
                           'image_filter.model.4.weight': (128, 64, 3, 3),
                           'image_filter.model.7.weight': (256, 128, 3, 3)}
    for idx, c in ((2, 64), (5, 128), (8, 256)):
        s[f'image_filter.model.{idx}.weight'] = (c,)
        s[f'image_filter.model.{idx}.bias'] = (c,)
    for b in range(blocks):
        p = f'image_filter.model.{10 + b}.conv_block'
        s[f'{p}.1.weight'] = (256, 256, 3, 3)
        s[f'{p}.2.weight'] = (256,)
        s[f'{p}.2.bias'] = (256,)
        s[f'{p}.5.weight'] = (256, 256, 3, 3)
        if b < blocks - 1:
            s[f'{p}.6.weight'] = (256,)
            s[f'{p}.6.bias'] = (256,)
    _classifier_shapes(s, C_MLP)
    return s


def random_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Random, well-scaled values; ``downsample.0`` shares bn4's tensors as in a real file."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if '.downsample.0.' in key:
            continue
        if len(shape) > 1:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else shape[2])
            state[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
        elif key.endswith('.weight'):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    for key in shapes:
        if '.downsample.0.' in key:
            state[key] = state[key.replace('.downsample.0.', '.bn4.')]
    return state


# ------------------------------------------------------------------- reference computations

def _gn(sd, key, x):
    return F.group_norm(x, 32, sd[f'{key}.weight'], sd[f'{key}.bias'])


def ref_convblock(sd, p, x):
    a = F.conv2d(F.relu(_gn(sd, f'{p}.bn1', x)), sd[f'{p}.conv1.weight'], padding=1)
    b = F.conv2d(F.relu(_gn(sd, f'{p}.bn2', a)), sd[f'{p}.conv2.weight'], padding=1)
    c = F.conv2d(F.relu(_gn(sd, f'{p}.bn3', b)), sd[f'{p}.conv3.weight'], padding=1)
    if f'{p}.downsample.2.weight' in sd:
        x = F.conv2d(F.relu(_gn(sd, f'{p}.downsample.0', x)), sd[f'{p}.downsample.2.weight'])
    return torch.cat([a, b, c], 1) + x


def ref_hourglass(sd, p, level, x):
    up = ref_convblock(sd, f'{p}.b1_{level}', x)
    low = ref_convblock(sd, f'{p}.b2_{level}', F.avg_pool2d(x, 2, stride=2))
    low = (ref_hourglass(sd, p, level - 1, low) if level > 1
           else ref_convblock(sd, f'{p}.b2_plus_1', low))
    low = ref_convblock(sd, f'{p}.b3_{level}', low)
    return up + F.interpolate(low, scale_factor=2, mode='bicubic', align_corners=True)


def ref_hg_filter(sd, x, stacks=4, depth=2):
    def conv(name, t):
        return F.conv2d(t, sd[f'image_filter.{name}.weight'], sd[f'image_filter.{name}.bias'])
    x = F.conv2d(x, sd['image_filter.conv1.weight'], sd['image_filter.conv1.bias'], 2, 3)
    x = F.relu(_gn(sd, 'image_filter.bn1', x))
    x = F.avg_pool2d(ref_convblock(sd, 'image_filter.conv2', x), 2, stride=2)
    prev = ref_convblock(sd, 'image_filter.conv4', ref_convblock(sd, 'image_filter.conv3', x))
    for i in range(stacks):
        y = ref_hourglass(sd, f'image_filter.m{i}', depth, prev)
        y = ref_convblock(sd, f'image_filter.top_m_{i}', y)
        y = F.relu(_gn(sd, f'image_filter.bn_end{i}', conv(f'conv_last{i}', y)))
        out = conv(f'l{i}', y)
        if i < stacks - 1:
            prev = prev + conv(f'bl{i}', y) + conv(f'al{i}', out)
    return out


def ref_resnet_filter(sd, x, blocks=6):
    def m(k):
        return f'image_filter.model.{k}'
    x = F.conv2d(F.pad(x, (3, 3, 3, 3), mode='reflect'), sd[f'{m(1)}.weight'])
    x = F.relu(_gn(sd, m(2), x))
    x = F.relu(_gn(sd, m(5), F.conv2d(x, sd[f'{m(4)}.weight'], stride=2, padding=1)))
    x = F.relu(_gn(sd, m(8), F.conv2d(x, sd[f'{m(7)}.weight'], stride=2, padding=1)))
    for b in range(blocks):
        p = f'{m(10 + b)}.conv_block'
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), sd[f'{p}.1.weight'])
        y = F.relu(_gn(sd, f'{p}.2', y))
        y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode='reflect'), sd[f'{p}.5.weight'])
        if f'{p}.6.weight' in sd:
            y = _gn(sd, f'{p}.6', y)
        x = x + y
    return x


def ref_index(feat, pts):
    """PIFu: orthographic calib with y flipped, grid_sample(align_corners=True) -> (B, C, N)."""
    uv = torch.stack([pts[..., 0], -pts[..., 1]], -1).unsqueeze(2)
    return F.grid_sample(feat, uv, align_corners=True)[..., 0]


def ref_classifier(sd, x):
    """Run PIFu's SurfaceClassifier with residual input: Conv1d layers, leaky ReLU between."""
    n = len([k for k in sd if k.startswith('surface_classifier.') and k.endswith('.weight')])
    y = x
    for j in range(n):
        w, b = sd[f'surface_classifier.conv{j}.weight'], sd[f'surface_classifier.conv{j}.bias']
        y = F.conv1d(y if j == 0 else torch.cat([y, x], 1), w, b)
        if j < n - 1:
            y = F.leaky_relu(y)
    return y


def ref_occupancy(g, feat_g, pts):
    z = pts[..., 2].unsqueeze(1) * Z_SCALE
    return torch.sigmoid(ref_classifier(g, torch.cat([ref_index(feat_g, pts), z], 1)))[:, 0]


def ref_color(c, feat_g, feat_c, pts):
    z = pts[..., 2].unsqueeze(1) * Z_SCALE
    x = torch.cat([ref_index(feat_g, pts), ref_index(feat_c, pts), z], 1)
    return (torch.tanh(ref_classifier(c, x)) * 0.5 + 0.5).transpose(1, 2)


def assert_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    err = (a - b).abs().max().item()
    assert err <= rel * (b.abs().max().item() + 1e-3), f'max abs diff {err}'


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """Write the released layout (full size, random values) as PIFu does (no extension)."""
    folder = tmp_path_factory.mktemp('pifu')
    g, c = random_state(pifu_g_shapes(), 1), random_state(pifu_c_shapes(), 2)
    torch.save(g, folder / 'net_G')
    torch.save(c, folder / 'net_C', _use_new_zipfile_serialization=False)   # 2019-era format
    return folder, g, c


@pytest.fixture(scope='module')
def tiny_released():
    """Make a reduced PIFu layout (2 stacks, depth 1, 2 colour blocks) for the error paths."""
    return random_state(pifu_g_shapes(2, 1), 3), random_state(pifu_c_shapes(2), 4)


def _inputs(size: int, n: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, size, size, generator=gen)
    pts = (torch.rand(1, n, 3, generator=gen) * 2 - 1) * 0.95
    return img, pts


def _outputs(net: MonoPortNet, img, pts):
    with torch.no_grad():
        fs, fc = net.encode_surface(img), net.encode_color(img)
        return fs, fc, net.occupancy(fs, pts), net.color(fs, fc, pts)


def _save_pair(folder: Path, g, c) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(g, folder / 'net_G')
    torch.save(c, folder / 'net_C')
    return folder / 'net_G'


# -------------------------------------------------------------------- released weights

def test_released_layout_matches_pifu_computation(released):
    folder, g, c = released
    net = load_model(folder / 'net_G')
    assert net.cfg == NetworkConfig.preset('pifu')
    assert not net.training
    img, pts = _inputs(32)
    fs, fc, occ, rgb = _outputs(net, img, pts)
    with torch.no_grad():
        x = (img - 0.5) / 0.5
        ref_fs, ref_fc = ref_hg_filter(g, x), ref_resnet_filter(c, x)
        assert fs.shape == ref_fs.shape == (1, 256, 8, 8)
        assert_close(fs, ref_fs)
        assert_close(fc, ref_fc)
        # MLPs alone on the same feature maps, then end to end
        assert_close(net.occupancy(ref_fs, pts), ref_occupancy(g, ref_fs, pts), 1e-5)
        assert_close(net.color(ref_fs, ref_fc, pts), ref_color(c, ref_fs, ref_fc, pts), 1e-5)
        assert_close(occ, ref_occupancy(g, ref_fs, pts))
        assert_close(rgb, ref_color(c, ref_fs, ref_fc, pts))
    assert occ.std() > 1e-3 and rgb.std() > 1e-3          # not a constant output


def test_first_mlp_layer_is_squeezed_and_rescaled(released):
    folder, g, _ = released
    net = load_model(folder / 'net_G')
    w_file = g['surface_classifier.conv0.weight'][..., 0]
    w_net = net.surface_mlp.filters[0].weight.detach()
    assert torch.equal(w_net[:, :256], w_file[:, :256])
    assert torch.allclose(w_net[:, 256], w_file[:, 256] * Z_SCALE)
    x = torch.randn(5, 257)
    z_scaled = torch.cat([torch.ones(256), torch.tensor([Z_SCALE])])[:, None]
    ref = F.conv1d(x.T.unsqueeze(0) * z_scaled,
                   g['surface_classifier.conv0.weight'], g['surface_classifier.conv0.bias'])
    assert_close(net.surface_mlp.filters[0](x), ref[0].T, 1e-5)


def test_released_found_from_net_c_or_folder_and_combined_file(tmp_path, tiny_released):
    g, c = tiny_released
    path = _save_pair(tmp_path / 'pair', g, c)
    img, pts = _inputs(32, seed=1)
    ref = _outputs(load_model(path), img, pts)
    for other in (tmp_path / 'pair' / 'net_C', tmp_path / 'pair'):
        for a, b in zip(_outputs(load_model(other), img, pts), ref):
            assert torch.equal(a, b)
    both = tmp_path / 'both.pth'         # one file, DataParallel-prefixed keys
    torch.save({'netG': {f'module.{k}': v for k, v in g.items()},
                'netC': {f'module.{k}': v for k, v in c.items()}}, both)
    net = load_model(both)
    assert (net.cfg.hg_stacks, net.cfg.hg_depth, net.cfg.color_blocks) == (2, 1, 2)
    for a, b in zip(_outputs(net, img, pts), ref):
        assert torch.equal(a, b)


def test_released_needs_the_colour_net(tmp_path, tiny_released):
    g, _ = tiny_released
    torch.save(g, tmp_path / 'net_G.pth')
    with pytest.raises(CheckpointError, match=r'net_G\.pth.*colour net \(net_C\)'):
        load_model(tmp_path / 'net_G.pth')


@pytest.mark.parametrize('change, message', [
    (lambda g: g.pop('image_filter.m1.b3_1.conv2.weight'),
     r'missing keys: surface_encoder\.m1\.b3_1\.conv2\.weight'),
    (lambda g: g.update({'image_filter.conv3.conv1.weight': torch.zeros(64, 128, 1, 1)}),
     r'shape mismatches: surface_encoder\.conv3\.conv1\.weight'),
    (lambda g: g.update({'image_filter.extra.weight': torch.zeros(3)}),
     r'unexpected keys: surface_encoder\.extra\.weight'),
    (lambda g: g.update({'image_filter.l1.bias': torch.full((256,), float('nan'))}),
     r'NaN or Inf: image_filter\.l1\.bias'),
    (lambda g: g.update({'image_filter.l1.bias': torch.zeros(256, dtype=torch.int64)}),
     r'not floating point: image_filter\.l1\.bias'),
    (lambda g: g.update({'image_filter.conv2.downsample.0.weight': torch.zeros(64)}),
     r'downsample\.0\.weight differs'),
])
def test_released_bad_weights_are_named(tmp_path, tiny_released, change, message):
    g, c = dict(tiny_released[0]), tiny_released[1]
    change(g)
    path = _save_pair(tmp_path, g, c)
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_monoport_hrnet_layout_is_refused_clearly(tmp_path):
    state = {'image_filter.conv1.weight': torch.zeros(64, 3, 3, 3),
             'image_filter.layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1),
             'surface_classifier.filters.0.weight': torch.zeros(1024, 271, 1)}
    torch.save({'net': state}, tmp_path / 'netG_latest.pth')
    with pytest.raises(CheckpointError, match='MonoPort HRNet.*not supported'):
        load_model(tmp_path / 'netG_latest.pth')


class _Payload:
    """Unpickling this creates a marker file: the code-execution path weights_only must block."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), 'w'))


@pytest.mark.parametrize('name', ['evil.pth', 'net_G'])
def test_malicious_pickle_is_refused_without_running(tmp_path, name):
    marker = tmp_path / 'PWNED'
    path = tmp_path / name
    torch.save({'image_filter.conv1.weight': torch.zeros(1), 'x': _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match='refused') as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)       # the payload is real: a plain load runs it
    assert marker.exists()


@pytest.mark.parametrize('name', ['junk.pth', 'net_G', 'junk.safetensors'])
def test_random_bytes_and_missing_files(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(CheckpointError, match='not found') as err:
        load_model(path)
    assert str(path) in str(err.value)
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(5),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_truncated_released_file(tmp_path, tiny_released):
    path = _save_pair(tmp_path, *tiny_released)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a readable PyTorch weights file') as err:
        load_model(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------- safetensors files

TINY_PIFU = NetworkConfig(image_size=64, encoder='pifu', hg_stacks=1, hg_depth=1, color_blocks=1,
                          feature_channels=32, softz_bins=0, surface_mlp=(32,),
                          color_feature_channels=128, color_mlp=(32,), align_corners=True)


@pytest.mark.parametrize('cfg', [NetworkConfig.preset('small'), TINY_PIFU], ids=['small', 'pifu'])
def test_safetensors_round_trip(tmp_path, cfg):
    torch.manual_seed(0)
    net = MonoPortNet(cfg).eval()
    with torch.no_grad():           # non-trivial norm statistics, so buffers must round-trip too
        for name, buf in net.named_buffers():
            if 'running_var' in name:
                buf.uniform_(0.5, 2.0)
    path = tmp_path / 'model.safetensors'
    save_checkpoint(path, net, {'epoch': 3})
    loaded = load_model(path)
    assert loaded.cfg == cfg and loaded.info == {'epoch': 3}
    img, pts = _inputs(64, seed=2)
    for a, b in zip(_outputs(loaded, img, pts), _outputs(net, img, pts)):
        assert torch.equal(a, b)


@pytest.mark.parametrize('cfg', [NetworkConfig.preset('small'), TINY_PIFU], ids=['small', 'pifu'])
def test_channels_last_encoders_give_the_same_features(cfg):
    torch.manual_seed(0)
    net = MonoPortNet(cfg).eval()
    img, _ = _inputs(64, seed=3)
    fast = copy.deepcopy(net).use_channels_last()
    with torch.inference_mode():
        for encode in ('encode_surface', 'encode_color'):
            want, got = getattr(net, encode)(img), getattr(fast, encode)(img)
            assert got.is_contiguous() and torch.allclose(got, want, atol=1e-4)
    weight = next(p for p in fast.surface_encoder.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('cfg', [NetworkConfig.preset('small'), TINY_PIFU], ids=['small', 'pifu'])
def test_batchnorm_folded_into_convolutions_gives_the_same_features(cfg):
    torch.manual_seed(0)
    net = MonoPortNet(cfg).eval()
    with torch.no_grad():           # non-trivial statistics, so folding them matters
        for name, buf in net.named_buffers():
            if 'running_var' in name:
                buf.uniform_(0.5, 2.0)
            elif 'running_mean' in name:
                buf.uniform_(-0.5, 0.5)
    img, _ = _inputs(64, seed=4)
    fused = copy.deepcopy(net).fuse_batchnorm()
    with torch.inference_mode():
        for encode in ('encode_surface', 'encode_color'):
            want, got = getattr(net, encode)(img), getattr(fused, encode)(img)
            assert torch.allclose(got, want, atol=1e-4)
    if cfg.encoder == 'hrnet':      # PIFu's encoders use group norm: nothing to fold
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with pytest.raises(RuntimeError, match='eval'):
        MonoPortNet(cfg).fuse_batchnorm()


def _small_tensors():
    torch.manual_seed(0)
    net = MonoPortNet(NetworkConfig.preset('small'))
    return net, {k: v.contiguous() for k, v in net.state_dict().items()}


def _meta(cfg: NetworkConfig) -> dict[str, str]:
    return {'format': FORMAT, 'network': json.dumps(cfg.to_dict()), 'info': '{}'}


def test_safetensors_wrong_architecture(tmp_path):
    net, tensors = _small_tensors()
    other = NetworkConfig(surface_mlp=(96, 64, 32))
    save_file(tensors, str(tmp_path / 'm.safetensors'), metadata=_meta(other))
    with pytest.raises(CheckpointError, match=r'shape mismatches: surface_mlp\.filters') as err:
        load_model(tmp_path / 'm.safetensors')
    assert 'm.safetensors' in str(err.value)


def test_safetensors_wrong_dtype(tmp_path):
    net, tensors = _small_tensors()
    key = 'surface_mlp.filters.0.weight'
    tensors[key] = tensors[key].to(torch.int32)
    save_file(tensors, str(tmp_path / 'm.safetensors'), metadata=_meta(net.cfg))
    with pytest.raises(CheckpointError, match=r'dtype mismatches: surface_mlp\.filters\.0\.w'):
        load_model(tmp_path / 'm.safetensors')


def test_safetensors_nan_and_missing_tag(tmp_path):
    net, _ = _small_tensors()
    with torch.no_grad():
        net.color_mlp.filters[1].bias[0] = float('nan')
    save_checkpoint(tmp_path / 'nan.safetensors', net)
    with pytest.raises(CheckpointError, match=r'nan\.safetensors.*color_mlp\.filters\.1\.bias'):
        load_model(tmp_path / 'nan.safetensors')
    save_file({'a': torch.zeros(2)}, str(tmp_path / 'plain.safetensors'))
    with pytest.raises(CheckpointError, match='format tag'):
        load_checkpoint(tmp_path / 'plain.safetensors')


def test_safetensors_truncated(tmp_path):
    net, _ = _small_tensors()
    path = tmp_path / 'm.safetensors'
    save_checkpoint(path, net)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a readable safetensors file') as err:
        load_model(path)
    assert str(path) in str(err.value)
