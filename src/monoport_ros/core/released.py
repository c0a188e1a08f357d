"""
Load the publicly released PIFu / MonoPort weights onto :class:`MonoPortNet`, running no code.

What was released (facts read from the public repositories; no code taken from them):

* MonoPort (github.com/Project-Splinter/MonoPort) publishes no weights of its own:
  ``scripts/download_model.sh`` fetches PIFu's ``net_G`` and ``net_C``, and ``RTL/main.py`` loads
  them with ``MonoPortNet.load_legacy_pifu`` into its ``PIFuHGFilters`` / ``PIFuResBlkFilters``
  backbones (``monoport/lib/modeling/MonoPortNet.py``, ``.../backbones/HGFilters.py``,
  ``ResBlkFilters.py``). Its HRNet backbone (``backbones/HRNetFilters.py``) has no released
  checkpoint; its trainer (``monoport/lib/common/trainer.py``) saves ``{'opt': yacs CfgNode, 'net':
  state_dict, 'optimizer': ...}``, which ``weights_only`` loading refuses because of the CfgNode.
* PIFu (github.com/shunsukesaito/PIFu): ``net_G`` / ``net_C`` are bare state dicts written
  by ``torch.save(net.state_dict())`` (``apps/train_shape.py``; ``apps/eval.py`` loads them with
  ``load_state_dict(torch.load(path))``), no ``module.`` prefix (``init_net`` wraps no DataParallel
  without gpu ids) and no file extension. Settings of the released pair
  (``scripts/eval_default.sh``): ``--num_stack 4 --num_hourglass 2 --hg_down ave_pool --norm group
  --norm_color group --mlp_dim 257 1024 512 256 128 1 --mlp_dim_color 513 1024 512 256 128 3
  --loadSize 512``.

``net_G`` (``lib/model/HGPIFuNet.py``, ``HGFilters.py``, ``net_util.py``): keys ``image_filter.*``
and ``surface_classifier.conv{i}.{weight,bias}``.

* ``image_filter.conv1`` 7x7/2 conv 3->64 with bias, ``bn1`` GroupNorm(32, 64); ``conv2`` ConvBlock
  64->128 then 2x2 average pooling; ``conv3`` ConvBlock 128->128; ``conv4`` ConvBlock 128->256.
* per stack ``i``: ``m{i}`` hourglass of depth 2 (``b1_2, b2_2, b1_1, b2_1, b2_plus_1, b3_1,
  b3_2``, each a ConvBlock 256->256; bicubic align-corners x2 upsampling), ``top_m_{i}`` ConvBlock,
  ``conv_last{i}`` 1x1 256->256, ``bn_end{i}`` GroupNorm, ``l{i}`` 1x1 256->256 (the feature map),
  and for all but the last stack ``bl{i}`` 1x1 256->256 and ``al{i}`` 1x1 256->256 feeding the
  next.
* ConvBlock(in, out): ``bn1`` GN(in), ``conv1`` 3x3 in->out/2, ``bn2``, ``conv2`` out/2->out/4,
  ``bn3``, ``conv3`` out/4->out/4 (no biases), output = cat(three convs) + shortcut; ``bn4`` GN(in)
  always exists, and for in != out ``downsample`` = (bn4 [the same module, so ``downsample.0.*``
  duplicates ``bn4.*``], ReLU, 1x1 conv ``downsample.2.weight``).
* ``surface_classifier.conv{i}``: Conv1d with kernel 1, weights (out, in, 1): (1024, 257), (512,
  1281), (256, 769), (128, 513), (1, 385); the 257-wide point feature (256 image + 1 depth) is
  concatenated after every hidden layer; leaky ReLU (slope 0.01) between layers, sigmoid at the
  end.
* Depth feature: ``z * (loadSize // 2) / z_size`` = ``z * 256 / 200``
  (``lib/model/DepthNormalizer.py``).
* Features are sampled with ``grid_sample(..., align_corners=True)`` (``lib/geometry.py``) at
  ``(x, -y)`` (the evaluation calib flips y, ``apps/eval.py``).

``net_C`` (``lib/model/ResBlkPIFuNet.py``): ``image_filter.model.{k}`` is a Sequential: reflection
pad 3, ``model.1`` 7x7 conv 3->64 (no bias), ``model.2`` GN, ReLU, ``model.4`` 3x3/2 conv 64->128,
``model.5`` GN, ReLU, ``model.7`` 3x3/2 conv 128->256, ``model.8`` GN, ReLU, then ``model.10`` ..
``model.15`` residual blocks with ``conv_block.{1,2,5,6}`` (reflection-padded 3x3 convs and GNs;
the last block has no ``conv_block.6``). ``surface_classifier.conv{i}``: (1024, 513), (512, 1537),
(256, 1025), (128, 769), (3, 641); its point feature is ``cat(net_G feature, net_C feature, z)``,
the output goes through tanh and colour = 0.5 * tanh + 0.5.

Mapping onto :class:`MonoPortNet` (``NetworkConfig.preset('pifu')``, ``encoder='pifu'``): the image
filters become ``surface_encoder`` / ``color_encoder`` with the same module names (only
``downsample.2`` -> ``shortcut``; ``downsample.0`` is checked equal to ``bn4`` and dropped); the
Conv1d weights are squeezed into ``nn.Linear`` weights; PIFu's depth scale is folded into every
layer's z column (our z input is the raw model-space z); the colour MLP's input columns are
permuted (ours is ``cat(colour, surface, z)``), and its last layer is doubled, since ``0.5 *
tanh(a) + 0.5 == sigmoid(2 a)``. These are exact rewrites, so the loaded network computes PIFu's
function.

Not covered: MonoPort's HRNet checkpoints (its HRNet upsamples with nearest neighbour, nests its
transition layers one level deeper and, without ``last_layer``, samples every branch separately
instead of a fused map, so our HRNet encoder does not express it); PIFu variants trained with
batch or instance norm, ``hg_down`` conv64/conv128 or ``--skip_hourglass``; ``use_tanh`` in the
colour filter (invisible in the weights, off in the release). Preprocessing differs in one respect:
PIFu zeroes the background after normalising (a 0.5 grey pixel), while our crops have a black
background.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, load_state_strict
from .config import NetworkConfig
from .networks import MonoPortNet

PIFU_Z_SCALE = (512 // 2) / 200.0       # PIFu DepthNormalizer: z * (loadSize // 2) / z_size
PIFU_IMAGE_SIZE = 512                   # loadSize of the released pair

_G_NAMES = ('netG', 'net_G', 'G')
_C_NAMES = ('netC', 'net_C', 'C')
_WRAPPERS = ('state_dict', 'net', 'model')
_SIBLING_SWAPS = (('net_G', 'net_C'), ('netG', 'netC'))

State = dict[str, torch.Tensor]


def read_torch_file(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``; CheckpointError for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: model file not found')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:   # torch.load raises many types (pickle, zip, EOF, index ...)
        text = str(exc)
        if 'Weights only load failed' in text or 'weights_only' in text:
            detail = next((line.strip() for line in text.splitlines()
                           if 'GLOBAL' in line or 'Unsupported' in line), 'not plain tensors')
            raise CheckpointError(f'{path}: refused, loading it would run code from the file '
                                  f'({detail})') from exc
        raise CheckpointError(f'{path}: not a readable PyTorch weights file '
                              f'({type(exc).__name__}: {text[:200]})') from exc


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _as_state(obj: Any, source: str) -> State:
    """Return a flat name -> tensor dict from a state dict or a {'net': ...}-style wrapper."""
    for _ in range(3):
        if _is_state(obj):
            state = dict(obj)
            if all(k.startswith('module.') for k in state):      # saved from DataParallel
                state = {k[len('module.'):]: v for k, v in state.items()}
            return state
        if isinstance(obj, dict):
            inner = [obj[k] for k in _WRAPPERS if k in obj]
            if inner:
                obj = inner[0]
                continue
        break
    shown = sorted(map(str, obj))[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f'{source}: no state dict of tensors found (top level: {shown})')


def _split_pair(obj: Any, source: str) -> tuple[State | None, State | None]:
    """(net_G state, net_C state) of a loaded file; either may be None."""
    if isinstance(obj, dict):
        g = next((obj[k] for k in _G_NAMES if k in obj), None)
        c = next((obj[k] for k in _C_NAMES if k in obj), None)
        if g is not None or c is not None:
            return (None if g is None else _as_state(g, f'{source} [netG]'),
                    None if c is None else _as_state(c, f'{source} [netC]'))
    state = _as_state(obj, source)
    kind = layout_of(state)
    if kind == 'pifu_g':
        return state, None
    if kind == 'pifu_c':
        return None, state
    if kind == 'monoport_hrnet':
        raise CheckpointError(
            f'{source}: MonoPort HRNet-backbone weights are not supported (no such weights were '
            'released; their HRNet differs from ours in upsampling, transition nesting and the '
            'per-branch feature sampling)')
    raise CheckpointError(f'{source}: unrecognised weights layout (first keys: '
                          f'{sorted(state)[:6]}); expected PIFu net_G/net_C')


def layout_of(state: State) -> str | None:
    """'pifu_g', 'pifu_c', 'monoport_hrnet' or None, judged by the key names."""
    if 'image_filter.layer1.0.conv1.weight' in state or any(
            k.startswith('image_filter.transition1.') for k in state):
        return 'monoport_hrnet'
    if 'image_filter.m0.b1_1.conv1.weight' in state or 'image_filter.conv4.conv1.weight' in state:
        return 'pifu_g'
    if 'image_filter.model.1.weight' in state:
        return 'pifu_c'
    return None


def _sibling(path: Path, want_color: bool) -> list[Path]:
    """Candidate paths of the other half of a net_G/net_C pair next to ``path``."""
    out = []
    for g, c in _SIBLING_SWAPS:
        old, new = (g, c) if want_color else (c, g)
        if old in path.name:
            out.append(path.with_name(path.name.replace(old, new)))
    return out


def _dir_members(folder: Path, names: tuple[str, ...]) -> list[Path]:
    return [folder / (n + ext) for n in names for ext in ('', '.pth', '.pt', '.tar')]


def _read_pair(path: Path, color_path: Path | None) -> tuple[State, State, str]:
    """Find and read both halves; returns (net_G, net_C, description of the sources)."""
    if path.is_dir():
        g_files = [p for p in _dir_members(path, _G_NAMES[:2]) if p.is_file()]
        if not g_files:
            raise CheckpointError(f'{path}: folder holds no net_G / netG weights file')
        path = g_files[0]
    g, c = _split_pair(read_torch_file(path), str(path))
    sources = str(path)
    if g is None or c is None:
        if color_path is not None:
            candidates = [Path(color_path)]
        else:
            candidates = _sibling(path, want_color=c is None)
            candidates += _dir_members(path.parent, _C_NAMES[:2] if c is None else _G_NAMES[:2])
        other = next((p for p in candidates
                      if p.is_file() and p.resolve() != path.resolve()), None)
        half = 'colour net (net_C)' if c is None else 'surface net (net_G)'
        if other is None:
            looked = ', '.join(sorted({str(p) for p in candidates})) or 'nowhere'
            raise CheckpointError(f'{path}: PIFu weights need a {half} too; looked for {looked}')
        g2, c2 = _split_pair(read_torch_file(other), str(other))
        g, c = g if g is not None else g2, c if c is not None else c2
        if g is None or c is None:
            raise CheckpointError(f'{other}: expected the {half}, found another kind of weights')
        sources = f'{path} + {other}'
    return g, c, sources


def _mlp_layers(state: State, source: str) -> list[tuple[str, str]]:
    """(weight, bias) keys of each classifier layer: PIFu ``conv{i}``, MonoPort ``filters.{i}``."""
    for fmt in ('surface_classifier.conv{}', 'surface_classifier.filters.{}'):
        layers = []
        while f'{fmt.format(len(layers))}.weight' in state:
            name = fmt.format(len(layers))
            layers.append((f'{name}.weight', f'{name}.bias'))
        if layers:
            return layers
    raise CheckpointError(f'{source}: no surface_classifier.conv0 / filters.0 layer found')


def _check_tensors(state: State, source: str) -> None:
    bad = sorted(f'{k}: {v.dtype}' for k, v in state.items() if not v.is_floating_point())
    if bad:
        raise CheckpointError(f'{source}: {len(bad)} tensors are not floating point: '
                              + ', '.join(bad[:8]))
    nonfinite = sorted(k for k, v in state.items() if not torch.isfinite(v).all())
    if nonfinite:
        raise CheckpointError(f'{source}: tensors contain NaN or Inf: ' + ', '.join(nonfinite[:8]))
    if any(k.endswith('running_mean') for k in state):
        raise CheckpointError(f'{source}: batch-norm PIFu variant; only the released group-norm '
                              'weights are supported')


def _mlp_shape(state: State, layers: list[tuple[str, str]], source: str
               ) -> tuple[int, tuple[int, ...], int, bool]:
    """(input width, hidden widths, output width, skip) of a PIFu classifier."""
    widths = [tuple(state[w].shape) for w, _ in layers]
    if any(len(s) not in (2, 3) or (len(s) == 3 and s[2] != 1) for s in widths) or len(widths) < 2:
        raise CheckpointError(f'{source}: classifier weights are not (out, in, 1) / (out, in): '
                              f'{widths}')
    cin, hidden, cout = widths[0][1], tuple(s[0] for s in widths[:-1]), widths[-1][0]
    skip = widths[1][1] == hidden[0] + cin
    if not skip and widths[1][1] != hidden[0]:
        raise CheckpointError(f'{source}: classifier layer 1 takes {widths[1][1]} inputs, '
                              f'expected {hidden[0]} or {hidden[0] + cin}')
    return cin, hidden, cout, skip


def pifu_config(g: State, c: State, source: str = 'weights') -> NetworkConfig:
    """Derive the :class:`NetworkConfig` (``encoder='pifu'``) of a PIFu net_G / net_C pair."""
    for state, label in ((g, 'net_G'), (c, 'net_C')):
        _check_tensors(state, f'{source} [{label}]')
    if 'image_filter.down_conv2.weight' in g:
        raise CheckpointError(f'{source}: PIFu hg_down conv64/conv128 variant is not supported '
                              '(the released net_G uses ave_pool)')
    stacks = 1 + max((int(m.group(1)) for k in g
                      if (m := re.match(r'image_filter\.m(\d+)\.', k))), default=-1)
    depth = max((int(m.group(1)) for k in g
                 if (m := re.match(r'image_filter\.m0\.b1_(\d+)\.', k))), default=0)
    if stacks < 1 or depth < 1 or f'image_filter.l{stacks - 1}.weight' not in g:
        raise CheckpointError(f'{source}: net_G has no complete hourglass stack '
                              f'(stacks={stacks}, depth={depth})')
    feat = g[f'image_filter.l{stacks - 1}.weight'].shape[0]
    if 'image_filter.model.2.weight' not in c:
        raise CheckpointError(f'{source}: net_C has no image_filter.model.2 norm weights '
                              '(instance-norm variant?); only the released group-norm net_C is '
                              'supported')
    cfeat = c['image_filter.model.1.weight'].shape[0] * 4
    blocks = len({m.group(1) for k in c
                  if (m := re.match(r'image_filter\.model\.(\d+)\.conv_block\.1\.weight$', k))})
    g_in, g_hidden, g_out, g_skip = _mlp_shape(g, _mlp_layers(g, source), f'{source} [net_G]')
    c_in, c_hidden, c_out, c_skip = _mlp_shape(c, _mlp_layers(c, source), f'{source} [net_C]')
    if (g_in, g_out) != (feat + 1, 1) or (c_in, c_out) != (feat + cfeat + 1, 3):
        raise CheckpointError(
            f'{source}: classifier widths do not fit the filters: net_G {g_in}->{g_out} (expected '
            f'{feat + 1}->1), net_C {c_in}->{c_out} (expected {feat + cfeat + 1}->3); '
            '--skip_hourglass variants are not supported')
    if g_skip != c_skip:
        raise CheckpointError(f'{source}: net_G and net_C disagree on the classifier skip input')
    return NetworkConfig(image_size=PIFU_IMAGE_SIZE, encoder='pifu', hg_stacks=stacks,
                         hg_depth=depth, color_blocks=blocks, feature_channels=feat,
                         softz_bins=0, surface_mlp=g_hidden, color_feature_channels=cfeat,
                         color_mlp=c_hidden, mlp_skip=g_skip, align_corners=True)


def _map_filter(state: State, prefix: str, source: str) -> State:
    """``image_filter.*`` -> ``prefix.*``; ConvBlock ``downsample.{0,2}`` -> bn4 / shortcut."""
    out: State = {}
    for key, value in state.items():
        if not key.startswith('image_filter.'):
            continue
        rest = key[len('image_filter.'):]
        m = re.match(r'(.*)\.downsample\.(0|2)\.(weight|bias)$', rest)
        if m and m.group(2) == '0':
            twin = f'image_filter.{m.group(1)}.bn4.{m.group(3)}'
            if twin in state and not torch.equal(state[twin], value):
                raise CheckpointError(f'{source}: {key} differs from {twin} (the same module in '
                                      'PIFu); the file is inconsistent')
            if twin in state:
                continue
            rest = f'{m.group(1)}.bn4.{m.group(3)}'
        elif m:
            rest = f'{m.group(1)}.shortcut.{m.group(3)}'
        out[f'{prefix}.{rest}'] = value
    return out


def _map_mlp(state: State, prefix: str, cin: int, perm: list[int] | None, out_scale: float,
             source: str) -> State:
    """Classifier ``conv{i}`` -> ``prefix.filters.{i}`` as Linear, with exact input rewrites."""
    layers = _mlp_layers(state, source)
    out: State = {}
    for i, (wkey, bkey) in enumerate(layers):
        w = state[wkey].float()
        w = w[..., 0] if w.dim() == 3 else w
        if w.dim() == 2 and w.shape[1] >= cin:
            w = w.clone()
            lo = 0 if i == 0 else w.shape[1] - cin   # the skipped-in point feature comes last
            if perm is not None:
                w[:, lo:lo + cin] = w[:, lo:lo + cin][:, perm]
            w[:, lo + cin - 1] *= PIFU_Z_SCALE
        b = state[bkey].float() if bkey in state else None
        if i == len(layers) - 1:
            w = w * out_scale
            b = None if b is None else b * out_scale
        out[f'{prefix}.filters.{i}.weight'] = w
        if b is not None:
            out[f'{prefix}.filters.{i}.bias'] = b
    return out


def map_pifu(g: State, c: State, cfg: NetworkConfig, source: str = 'weights') -> State:
    """Rename and rewrite PIFu net_G + net_C tensors into our state-dict layout."""
    feat, cfeat = cfg.feature_channels, cfg.color_feature_channels
    perm = list(range(feat, feat + cfeat)) + list(range(feat)) + [feat + cfeat]
    state = {**_map_filter(g, 'surface_encoder', f'{source} [net_G]'),
             **_map_filter(c, 'color_encoder', f'{source} [net_C]'),
             **_map_mlp(g, 'surface_mlp', feat + 1, None, 1.0, f'{source} [net_G]'),
             **_map_mlp(c, 'color_mlp', feat + cfeat + 1, perm, 2.0, f'{source} [net_C]')}
    for half, label in ((g, 'net_G'), (c, 'net_C')):      # keep leftovers: reported as unexpected
        for key in half:
            if not key.startswith(('image_filter.', 'surface_classifier.')):
                state[f'{label}:{key}'] = half[key]
    classifier = {k for k in set(g) | set(c) if k.startswith('surface_classifier.')}
    used = {k for w, b in _mlp_layers(g, source) + _mlp_layers(c, source) for k in (w, b)}
    for key in sorted(classifier - used):
        state[f'classifier:{key}'] = (g.get(key) if key in g else c[key])
    return state


def load_released(path: str | Path, device: str | torch.device = 'cpu',
                  color_path: str | Path | None = None) -> MonoPortNet:
    """
    Build a :class:`MonoPortNet` from released PIFu / MonoPort weights (eval mode).

    ``path`` is the ``net_G`` file (``net_C`` is looked for next to it, or given as
    ``color_path``), a ``net_C`` file (``net_G`` is looked for likewise), a folder holding both,
    or one file with a ``{'netG': ..., 'netC': ...}`` dict. Files are read with
    ``torch.load(weights_only=True)``; anything unreadable, refused, incomplete or mis-shaped
    raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f'{path}: model file not found')
    g, c, sources = _read_pair(path, None if color_path is None else Path(color_path))
    cfg = pifu_config(g, c, sources)
    state = map_pifu(g, c, cfg, sources)
    net = MonoPortNet(cfg)
    own = net.state_dict()
    for key in ('image_mean', 'image_std'):       # PIFu normalises with mean = std = 0.5 too
        state[key] = own[key]
    load_state_strict(net, state, f'{sources} (PIFu layout)')
    net.info = {'source': sources, 'layout': 'pifu'}
    return net.to(device).eval()
