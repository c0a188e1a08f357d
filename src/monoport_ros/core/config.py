"""
Configuration dataclasses: the single source of every tunable setting.

``NetworkConfig`` describes an architecture (stored inside every checkpoint). ``MonoPortConfig``
holds the run-time settings. Its field metadata is the one source of what each setting is: the
ROS node declares one parameter per field (``ros/params.py``), ``launch/monoport.launch.py``
declares one launch argument per field, ``config/monoport.yaml`` is generated from it, the
fields that cannot change while the node runs are :data:`STARTUP_FIELDS`, and the offline
commands start from :meth:`MonoPortConfig.offline`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the image encoder, the surface MLP and the colour MLP."""

    image_size: int = 256                       # square crop fed to the encoder (pixels)
    stem_channels: int = 32                     # channels after the stride-4 stem
    stem_blocks: int = 1                        # residual blocks of HRNet's stage 1 (layer1)
    stem_bottleneck: bool = False               # layer1 of bottlenecks (expansion 4) as in HRNetV2
    branch_channels: tuple[int, ...] = (16, 32, 64)   # HRNet branch widths (1/4, 1/8, 1/16, ...)
    stage_blocks: tuple[int, ...] = (1, 1)      # basic blocks per branch in stages 2, 3, ...
    stage_modules: tuple[int, ...] = (1, 1)     # exchange modules in stages 2, 3, ...
    feature_channels: int = 32                  # channels of the fused feature map (stride 4)
    softz_bins: int = 8                         # Soft-Z ordinal depth bins (0 = scalar z)
    surface_mlp: tuple[int, ...] = (128, 64, 32)     # hidden widths of the surface MLP
    color_feature_channels: int = 16            # channels of the colour encoder's feature map
    color_mlp: tuple[int, ...] = (64, 32)      # hidden widths of the colour MLP
    # re-inject the point feature at each hidden layer (PIFu)
    mlp_skip: bool = True
    encoder: str = 'hrnet'                      # 'hrnet', or 'pifu' (hourglass + ResNet colour)
    hg_stacks: int = 4                          # pifu: stacked hourglass modules
    hg_depth: int = 2                           # pifu: recursion depth of each hourglass
    color_blocks: int = 6                       # pifu: residual blocks of the colour encoder
    align_corners: bool = False                 # feature sampling convention (PIFu weights: True)
    # body pose prior of the surface MLP: 'none', or 'bones' (features of each query point
    # relative to BlazePose's skeleton, see core.body_pose, through a linear layer of
    # pose_channels outputs beside the image feature and Soft-Z)
    pose_features: str = 'none'
    pose_channels: int = 16

    @staticmethod
    def preset(name: str) -> 'NetworkConfig':
        """Return a named architecture: ``small`` (CPU), ``monoport`` or ``pifu`` (released)."""
        if name == 'small':
            return NetworkConfig()
        if name == 'monoport':
            # MonoPort: HRNetV2-W18-small-v2 on a 512x512 crop, 256-channel stride-4 features,
            # PIFu MLP 1024-512-256-128 with the feature re-injected at every layer.
            return NetworkConfig(image_size=512, stem_channels=64, stem_blocks=2,
                                 stem_bottleneck=True,
                                 branch_channels=(18, 36, 72, 144), stage_blocks=(2, 2, 2),
                                 stage_modules=(1, 3, 2), feature_channels=256, softz_bins=0,
                                 surface_mlp=(1024, 512, 256, 128), color_feature_channels=256,
                                 color_mlp=(1024, 512, 256, 128))
        if name == 'pifu':
            # The released PIFu net_G/net_C (also what MonoPort's demo downloads): 4 stacked
            # hourglasses with group norm, 6-block ResNet colour filter, scalar z, 512x512 input.
            return NetworkConfig(image_size=512, encoder='pifu', feature_channels=256,
                                 softz_bins=0, surface_mlp=(1024, 512, 256, 128),
                                 color_feature_channels=256, color_mlp=(1024, 512, 256, 128),
                                 align_corners=True)
        raise ValueError(f"unknown network preset {name!r}; "
                         "expected 'small', 'monoport' or 'pifu'")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> 'NetworkConfig':
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(NetworkConfig)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f'unknown network config keys: {sorted(unknown)}')
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return NetworkConfig(**kw)


def _p(default: Any, description: str, *, lo: float | None = None, hi: float | None = None,
       step: float | None = None, choices: tuple[str, ...] | None = None, dynamic: bool = True,
       factory: Any = None) -> Any:
    """
    Field with the metadata the ROS node turns into a ParameterDescriptor.

    ``dynamic=False`` marks a setting fixed for the life of the node and its engine (the model,
    devices, arithmetic, worker layout, QoS): the node declares it read-only and the engine
    refuses to change it (:func:`check_startup_fields`).
    """
    meta = {'description': description, 'range': (lo, hi, step), 'choices': choices,
            'dynamic': dynamic}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


PRECISIONS = ('auto', 'float32', 'bfloat16', 'float16')
PRIOR_MODES = ('none', 'carve', 'union')   # pose_prior: see core.pose_body
COARSEST_GRID = 32      # surface localization starts on a 32^3 grid (spacing 1/16 of the cube)
GPU_COARSEST_GRID = 128     # on a GPU it starts finer: half the resolution, at most 128^3


def octree_depth_for(resolution: int, device_type: str = 'cpu') -> int:
    """
    Localization levels chosen for ``resolution`` on a device of ``device_type`` ('cpu', 'cuda').

    On a CPU the coarsest grid is COARSEST_GRID^3: its spacing, 1/16 of the cube (about 6 cm on a
    1.7 m person), is below the thickness of arms and legs, which the exact coarse-to-fine result
    needs (see :mod:`core.localization`); it was the fastest depth measured at 128^3 and 256^3. On
    a GPU the network is cheap and every level costs launches and host syncs: a finer coarsest
    grid, half the resolution up to GPU_COARSEST_GRID^3 (64^3 at 128^3, 128^3 at 256^3 and
    512^3), gave the highest frame rates on an H100 (docs/speed.md).
    """
    coarsest = COARSEST_GRID
    if device_type != 'cpu':
        coarsest = min(GPU_COARSEST_GRID, max(COARSEST_GRID, resolution // 2))
    return max(1, resolution.bit_length() - coarsest.bit_length() + 1)


_AUTO_LEVELS = '; '.join(
    f'{where} ' + ', '.join(f'{octree_depth_for(r, device)} at {r}^3' for r in (128, 256, 512))
    for where, device in (('on a CPU', 'cpu'), ('on a GPU', 'cuda')))

VIEW_YAWS = {'front': 0.0, 'left': 90.0, 'back': 180.0, 'right': 270.0, 'side': 90.0}


@dataclass
class MonoPortConfig:
    """Run-time settings of the reconstruction (and of the node that wraps it)."""

    checkpoint: str = _p('', 'Model file (.safetensors or released .pth); empty = shipped default',
                         dynamic=False)
    resolution: int = _p(128, 'Final grid resolution per axis (power of two)', lo=16, hi=512)
    octree_depth: int = _p(0, 'Coarse-to-fine levels of surface localization: 0 = auto (from '
                           'resolution and geometry device: ' + _AUTO_LEVELS + '), 1 = dense; '
                           'coarsest grid resolution / 2^(depth-1), keep it 32 or finer',
                           lo=0, hi=7)
    threshold: float = _p(0.5, 'Occupancy iso-level', lo=0.01, hi=0.99)
    geometry_device: str = _p('cpu',
                              'Torch device of the encoder and surface net (cpu, cuda:0, ...)',
                              dynamic=False)
    color_device: str = _p('cpu', 'Torch device of the colour net and renderer', dynamic=False)
    precision: str = _p('auto', 'Network arithmetic: auto (bfloat16 where the CPU or GPU has it '
                        'natively, else float32), float32, bfloat16 or float16 (CUDA only)',
                        choices=PRECISIONS, dynamic=False)
    device_fallback: bool = _p(True, 'Fall back to cpu when a device is unavailable (else fail)',
                               dynamic=False)
    render_views: list[str] = _p(None,
                                 'Direct-render views: front, left, back, right, side or yawNN',
                                 factory=lambda: ['front', 'side', 'back'])
    render_size: int = _p(256, 'Rendered image size (pixels, square)', lo=32, hi=1024)
    mesh_max_triangles: int = _p(50000, 'Triangle budget of published meshes (0 = no limit)',
                                 lo=0, hi=2000000)
    frame_id: str = _p('', 'Frame of the outputs; empty = the input image frame')
    max_rate: float = _p(0.0, 'Most reconstructions per second (0 = as fast as possible)',
                         lo=0.0, hi=120.0)
    subject_height: float = _p(1.7, 'Assumed subject height (m) for metric placement',
                               lo=0.3, hi=3.0)
    subject_distance: float = _p(0.0,
                                 'Assumed subject distance (m) with camera_info; 0 = from height',
                                 lo=0.0, hi=100.0)
    depth_placement: bool = _p(True, 'Place the person with the registered depth image of the '
                               'depth topic (16UC1 mm or 32FC1 m, aligned to the colour image) '
                               'where one arrives; frames without one use subject_height or '
                               'subject_distance')
    depth_slop: float = _p(0.05, 'Largest stamp difference (s) of a depth image and its colour '
                           'image', lo=0.0, hi=1.0)
    steady_placement: bool = _p(True, 'Steady where the person is placed over a stream (a '
                                'One-Euro filter on position and scale, by image stamp): a '
                                'still person stops jittering, a moving one is followed')
    steady_min_cutoff: float = _p(0.5, 'Cut-off (Hz) of the placement filter for a still '
                                  'person: lower is steadier, and lags more', lo=0.01, hi=30.0)
    steady_beta: float = _p(10.0, 'How fast the placement filter\'s cut-off rises with speed '
                            '(Hz per m/s): higher follows a moving person more closely',
                            lo=0.0, hi=100.0)
    steady_surface: bool = _p(True, 'Blend the occupancy with the previous frame\'s while the '
                              'person has not moved (crop within half a voxel, masks alike): '
                              'a still person\'s surface stops shimmering; up to 256^3')
    largest_component: bool = _p(True, 'Keep only the largest connected part (one person)')
    mirror_average: bool = _p(False, 'Average the occupancy with that of the mirrored image '
                              '(better depth; the geometry stage takes about 1.5x as long)')
    shift_average: bool = _p(False, 'Also average over the crop moved by 1/64 of its side along '
                             'both diagonals (better depth; 5x the network passes of the '
                             'geometry stage, 10x with mirror_average)')
    pose_prior: str = _p('none', 'Correct the depth with a coarse body built on the pose '
                         'landmarks (core.pose_body): none; carve (remove the network\'s '
                         'material far from it); union (carve, then add the body)',
                         choices=PRIOR_MODES)
    fill_silhouette: bool = _p(True, 'Give every pixel of the person mask geometry (thin limbs '
                               'the network dropped come back as round limbs)')
    surface_smoothing: float = _p(0.0, 'Gaussian smoothing of the occupancy before the surface '
                                  'is taken, sigma in voxels of a 256^3 grid (half as many at '
                                  '128^3); 0 = off, 1 = the offline commands\' default: fewer '
                                  'spurious thin surfaces and bumps, limbs a little thinner',
                                  lo=0.0, hi=4.0)
    segmentation: bool = _p(True, 'Segment the person; false for pre-masked input')
    segmentation_model: str = _p('pose',
                                 'MediaPipe model: pose (full body, robust) or selfie (faster)',
                                 choices=('pose', 'selfie'), dynamic=False)
    segmentation_tracking: bool = _p(True, 'Frames are one camera stream: MediaPipe follows the '
                                     'person from frame to frame (shorter segmentation step); '
                                     'false for unrelated images', dynamic=False)
    max_people: int = _p(3, 'Most people reconstructed per frame, largest (nearest) first, found '
                         'by a person detector over tiles (far people too); 1: only the main '
                         'person, as MediaPipe tracks them (the cheapest)', lo=1, hi=10,
                         dynamic=False)
    max_image_pixels: int = _p(4096 * 4096, 'Frames larger than this are dropped', lo=1,
                               hi=100_000_000)
    image_reliability: str = _p('best_effort', 'QoS reliability of the image subscription '
                                '(per-topic qos_overrides.<topic>.subscription.* work as well)',
                                choices=('best_effort', 'reliable'), dynamic=False)
    output_reliability: str = _p('reliable', 'QoS reliability of the published outputs '
                                 '(per-topic qos_overrides.<topic>.publisher.* work as well)',
                                 choices=('best_effort', 'reliable'), dynamic=False)
    output_dir: str = _p('', 'Also write each result (mesh .ply, views .png) here; empty = off')
    queue_size: int = _p(1, 'Frames waiting for the pipeline: 1 = the newest wins; more = a '
                         'backlog taken in order, the oldest dropped when full', lo=1, hi=16,
                         dynamic=False)
    frames_in_flight: int = _p(0, 'Frames inside the pipeline at once (0 = auto: 3, or the '
                               'number of CPU cores up to 3 when every stage runs on the CPU); '
                               'more overlap raises throughput until the devices are busy, '
                               'beyond that it only adds latency',
                               lo=0, hi=3, dynamic=False)
    worker_processes: bool = _p(True, 'With every stage on the CPU, reconstruct whole frames in '
                                'worker processes, one per frame in flight, instead of one '
                                'thread per stage (the threads contend for Python\'s global '
                                'lock); false: threads, less memory. Ignored with a CUDA device',
                                dynamic=False)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and why."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi, _ = f.metadata['range']
            if lo is not None and not (lo <= value <= hi):
                raise ValueError(f'{f.name}={value!r} is outside [{lo}, {hi}]')
            choices = f.metadata['choices']
            if choices and value not in choices:
                raise ValueError(f'{f.name}={value!r} is not one of {choices}')
        if self.resolution & (self.resolution - 1):
            raise ValueError(f'resolution={self.resolution} must be a power of two')
        if self.octree_depth and self.resolution >> (self.octree_depth - 1) < 2:
            raise ValueError(f'octree_depth={self.octree_depth} too deep for resolution '
                             f'{self.resolution} (coarsest grid must be at least 2)')
        for view in self.render_views:
            view_yaw(view)

    def smoothing_sigma_voxels(self) -> float:
        """``surface_smoothing`` in voxels of this resolution (its unit is a 256^3 voxel)."""
        return self.surface_smoothing * self.resolution / 256.0

    def localization_levels(self, device: str = 'cpu') -> int:
        """Return ``octree_depth``, or the automatic choice for a geometry device (cpu, cuda:0)."""
        return self.octree_depth or octree_depth_for(self.resolution, device.split(':')[0])

    def replace(self, **changes: Any) -> 'MonoPortConfig':
        """Return a validated copy with ``changes`` applied."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    @classmethod
    def preset(cls, name: str, **changes: Any) -> 'MonoPortConfig':
        """Return the validated settings of a named entry of :data:`PRESETS`, with ``changes``."""
        if name not in PRESETS:
            raise ValueError(f'unknown preset {name!r}; expected one of {sorted(PRESETS)}')
        return cls().replace(**{**PRESETS[name], **changes})

    @classmethod
    def offline(cls, **changes: Any) -> 'MonoPortConfig':
        """Return the settings of ``monoport-ros reconstruct`` and ``evaluate`` (``PRESETS``)."""
        return cls.preset('offline', **changes)


# Named departures from the defaults (which are the node's: real time on a CPU).
PRESETS: dict[str, dict[str, Any]] = {
    'node': {},
    # One image at a time, accuracy before speed: a finer grid, the exact float32 arithmetic,
    # both averages and the occupancy smoothing (on the held-out sets at 256^3 smoothing lowered
    # Chamfer and P2S and raised normal consistency and IoU on each: README, Evaluation);
    # unrelated images, so no segmentation tracking and no blending with the previous image's
    # surface; the whole mesh, no triangle budget.
    'offline': {'resolution': 256, 'precision': 'float32', 'mirror_average': True,
                'shift_average': True, 'surface_smoothing': 1.0, 'segmentation_tracking': False,
                'steady_surface': False, 'mesh_max_triangles': 0, 'max_people': 1},
}
# Settings fixed for the life of the node and its engine (``dynamic=False`` in the metadata).
STARTUP_FIELDS: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(MonoPortConfig) if not f.metadata['dynamic'])


def check_startup_fields(old: MonoPortConfig, new: MonoPortConfig) -> None:
    """Raise ValueError if ``new`` changes one of :data:`STARTUP_FIELDS` of ``old``."""
    for name in sorted(STARTUP_FIELDS):
        if getattr(new, name) != getattr(old, name):
            raise ValueError(f'{name} cannot change at run time; restart with the new value')


def field_from_text(name: str, text: str) -> Any:
    """
    Parse ``text`` (a launch argument, a command-line value) as the value of field ``name``.

    Booleans are ``true``/``false`` (any case), lists are comma-separated (``front,side``) or a
    YAML flow list (``[front, side]``); ValueError names the field and what it expected.
    """
    fields = {f.name: f for f in dataclasses.fields(MonoPortConfig)}
    if name not in fields:
        raise ValueError(f'unknown setting {name!r}')
    default = getattr(MonoPortConfig(), name)
    kind = type(default)
    text = text.strip()
    if kind is bool:
        if text.lower() not in ('true', 'false'):
            raise ValueError(f'{name}: expected true or false, got {text!r}')
        return text.lower() == 'true'
    if kind is list:
        items = text[1:-1] if text.startswith('[') and text.endswith(']') else text
        return [v.strip().strip('\'"') for v in items.split(',') if v.strip()]
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f'{name}: expected {kind.__name__}, got {text!r}') from None


def view_yaw(view: str) -> float:
    """
    Yaw angle (degrees, about the vertical axis) of a named view.

    Views are named such as ``front`` or ``yaw45``.
    """
    if view in VIEW_YAWS:
        return VIEW_YAWS[view]
    if view.startswith('yaw'):
        try:
            return float(view[3:])
        except ValueError:
            pass
    raise ValueError(f'unknown render view {view!r}: use {sorted(VIEW_YAWS)} or yaw<degrees>')
