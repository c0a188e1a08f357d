"""Silhouette completion: mask pixels the network left empty get a limb attached to the body."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from monoport_ros.core.completion import fill_silhouette, mask_on_grid
from monoport_ros.core.localization import localize_surface
from monoport_ros.core.meshing import extract_mesh, is_watertight

RES, SIZE = 64, 128
TORSO_Z = 0.2          # the body's depth, away from the grid's middle on purpose


def _torso(p: torch.Tensor) -> torch.Tensor:
    q = (p - torch.tensor([-0.3, 0.0, TORSO_Z])) / torch.tensor([0.25, 0.6, 0.2])
    return q.norm(dim=-1) < 1.0


def _arm(p: torch.Tensor) -> torch.Tensor:
    """Return the arm: a bar from the torso to x = 0.8, 0.16 wide and deep (the mask shows it)."""
    return (p[:, 0] > -0.3) & (p[:, 0] < 0.8) & ((p[:, 1] - 0.2).abs() < 0.08) \
        & ((p[:, 2] - TORSO_Z).abs() < 0.08)


def _dropped_arm_field(p: torch.Tensor) -> torch.Tensor:
    """Act as a network sure of the torso and unsure (0.3) of the arm, which it loses."""
    return torch.where(_torso(p), 0.9, torch.where(_arm(p), 0.3, 0.02))


def _mask() -> np.ndarray:
    """Crop mask (SIZE x SIZE, row 0 at the top) of the torso and the arm."""
    c = (np.arange(SIZE) + 0.5) / SIZE * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)                        # pixel centres in model x, y
    pts = torch.from_numpy(np.stack([x, y], -1).reshape(-1, 2)).float()
    torso = ((pts - torch.tensor([-0.3, 0.0])) / torch.tensor([0.25, 0.6])).norm(dim=-1) < 1.0
    arm = (pts[:, 0] > -0.3) & (pts[:, 0] < 0.8) & ((pts[:, 1] - 0.2).abs() < 0.08)
    return (torso | arm).numpy().reshape(SIZE, SIZE)


def _volume():
    return localize_surface(_dropped_arm_field, RES, 3)


def test_mask_on_grid_keeps_the_orientation() -> None:
    """Image row 0 is the top (high y), column 0 the left (low x)."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[:SIZE // 4, :SIZE // 4] = True                 # top-left quarter
    grid = mask_on_grid(mask, RES)
    assert grid.shape == (RES + 1, RES + 1)
    ix, iy = np.nonzero(grid)
    assert ix.max() < RES // 4 + 1 and iy.min() > 3 * RES // 4 - 1


def test_the_dropped_arm_comes_back_attached_at_the_body_depth() -> None:
    vol = _volume()
    before = vol.values.clone()
    occ = vol.occupancy
    assert not occ[int((0.5 + 1) * RES / 2)].any()        # the network lost the arm at x = 0.5
    filled = fill_silhouette(vol, _mask())
    assert filled > 0
    want = mask_on_grid(_mask(), RES)
    has = vol.occupancy.any(dim=2).numpy()
    assert has[want].all()                                # every mask column holds geometry
    assert torch.all(vol.values >= before)                # values only grow ...
    changed = (vol.values != before).any(dim=2).numpy()
    assert not (changed & ~ndimage.binary_dilation(want)).any()   # ... and only under the mask
    # the arm lies at the torso's depth with about its width as depth, attached to the body
    arm_x = int((0.5 + 1) * RES / 2)
    z = np.flatnonzero(vol.occupancy[arm_x].any(dim=0).numpy())
    z_model = z * 2.0 / RES - 1.0
    assert abs(0.5 * (z_model.min() + z_model.max()) - TORSO_Z) < 2.5 * 2.0 / RES
    assert 0.08 < z_model.max() - z_model.min() < 0.3
    _, parts = ndimage.label(vol.occupancy.numpy())
    assert parts == 1


def test_the_completed_volume_meshes_closed() -> None:
    """Filled cells count as known, so marching cubes closes the new limb on every side."""
    vol = _volume()
    fill_silhouette(vol, _mask())
    assert not (vol.values == vol.threshold).any()    # such points make degenerate triangles
    mesh = extract_mesh(vol)
    assert is_watertight(mesh)
    assert mesh.vertices[:, 0].max() > 0.7                # the mesh reaches the hand


def test_nothing_to_fill_leaves_the_volume_alone() -> None:
    vol = _volume()
    fill_silhouette(vol, _mask())
    again = vol.values.clone()
    assert fill_silhouette(vol, _mask()) == 0             # every column has geometry now
    assert torch.equal(vol.values, again)
    empty = localize_surface(lambda p: torch.zeros(p.shape[0]), RES, 3)
    assert fill_silhouette(empty, _mask()) == 0           # no body to attach anything to
    assert not empty.occupancy.any()
    assert fill_silhouette(_volume(), np.zeros((SIZE, SIZE), bool)) == 0


@pytest.mark.parametrize('enabled', [True, False])
def test_the_engine_fills_what_its_network_dropped_when_asked(enabled: bool) -> None:
    """A network sure only of the lower half of a person: the rest comes back with the setting."""
    from monoport_ros.core.config import MonoPortConfig, NetworkConfig
    from monoport_ros.core.networks import MonoPortNet
    from monoport_ros.core.reconstruct import Reconstructor

    image = np.zeros((200, 200, 3), np.uint8)
    image[30:190, 40:80] = 200                         # torso and legs
    image[60:72, 80:180] = 200                         # an arm held out to the side
    cfg = MonoPortConfig(segmentation=False, resolution=64, octree_depth=3, render_views=[],
                         fill_silhouette=enabled)
    rec = Reconstructor(cfg, net=MonoPortNet(NetworkConfig.preset('small')).eval())

    def lower_half(feats: torch.Tensor, pts: torch.Tensor, pose=None) -> torch.Tensor:
        p = pts[0]
        return torch.where((p[:, 1] < 0.0) & (p[:, 2].abs() < 0.15), 0.9, 0.02)[None]
    rec.geo_net.occupancy = lower_half
    out = rec.reconstruct(image, frozenset({'mesh'}))
    assert out.person and len(out.faces)
    top = float(out.vertices[:, 1].max())
    if enabled:
        assert 'fill' in out.timings_ms
        assert top > 0.4                                # the upper body and the arm are there
        arm = out.vertices[out.vertices[:, 1] > 0.3]
        assert np.ptp(arm[:, 0]) > 0.8                  # the arm reaches out to the side
    else:
        assert 'fill' not in out.timings_ms
        assert top < 0.1
