"""Test-time averaging over views of the crop: mirrored and moved crops, and their point maps."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from monoport_ros.core.averaging import View, averaged_views, view_images, view_point_maps
from monoport_ros.core.model_file import load_model
from monoport_ros.core.config import MonoPortConfig
from monoport_ros.core.reconstruct import DEFAULT_MODEL, WARM_UP_IMAGE, Reconstructor


@pytest.fixture(scope='module')
def net_and_crop():
    """Load the shipped network, a sample person's crop and 3,000 points in its silhouette."""
    pytest.importorskip('mediapipe', reason='segments a sample photo (not on the GPU machines)')
    net = load_model(DEFAULT_MODEL).eval()
    rgb = cv2.cvtColor(cv2.imread(str(WARM_UP_IMAGE)), cv2.COLOR_BGR2RGB)
    with Reconstructor(MonoPortConfig(resolution=64), net) as rec:
        frame = rec.prepare(rgb)
    image = torch.from_numpy(frame.crop_image).permute(2, 0, 1)[None].float()
    rows, cols = np.nonzero(frame.crop_mask)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(cols), 3000)
    side = frame.crop_mask.shape[0]
    points = np.stack([(cols[pick] + 0.5) / side * 2 - 1, 1 - (rows[pick] + 0.5) / side * 2,
                       rng.uniform(-0.3, 0.3, 3000)], axis=1)
    return net, image, torch.tensor(points, dtype=torch.float32)[None]


def test_the_views_to_average() -> None:
    assert averaged_views(False, False, 256) == [View(False, 0, 0)]
    assert len(averaged_views(True, False, 256)) == 2
    shifted = averaged_views(False, True, 256)
    assert shifted[0] == View(False, 0, 0) and len(shifted) == 5
    assert {(v.dx, v.dy) for v in shifted[1:]} == {(4, 4), (-4, -4), (4, -4), (-4, 4)}
    both = averaged_views(True, True, 512)
    assert len(both) == 10 and both[0] == View(False, 0, 0) and both[5] == View(True, 0, 0)
    assert max(abs(v.dx) for v in both) == 8          # moves scale with the crop
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)[:1]
    batch = view_images(image, [View(False, 0, 0), View(True, 1, 0), View(False, 0, 1)])
    assert torch.equal(batch[0], image[0])
    assert torch.equal(batch[1, :, :, 1:], image[0].flip(2)[:, :, :-1])    # mirrored, then right
    assert torch.equal(batch[2, :, 1:], image[0, :, :-1])                   # down one row


@pytest.mark.parametrize('view', [View(False, 4, 4), View(False, 4, -4), View(True, 0, 0),
                                  View(True, -4, 4)], ids=str)
def test_each_view_sees_a_point_where_its_map_puts_it(net_and_crop, view: View) -> None:
    """The network asked about a view at the mapped point answers nearly as for the crop."""
    net, image, points = net_and_crop
    with torch.inference_mode():
        crop = net.occupancy(net.encode_surface(image), points)[0]
        feats = net.encode_surface(view_images(image, [view]))
        scale, offset = view_point_maps([view], image.shape[-2:], feats.shape[-2:],
                                        net.cfg.align_corners, torch.device('cpu'))
        mapped = net.occupancy(feats, points * scale + offset)[0]
        # the control: the move taken the wrong way (or the mirror ignored)
        wrong = points * scale - offset if view.dx or view.dy else points
        unmapped = net.occupancy(feats, wrong)[0]
    right_error = float((mapped - crop).abs().mean())        # measured: 0.027-0.035
    wrong_error = float((unmapped - crop).abs().mean())      # measured: 0.146-0.196
    assert right_error < 0.06 and wrong_error > 3 * right_error, (right_error, wrong_error)


def test_shift_average_moves_the_surface_a_little() -> None:
    pytest.importorskip('mediapipe', reason='segments a sample photo (not on the GPU machines)')
    rgb = cv2.cvtColor(cv2.imread(str(WARM_UP_IMAGE.parent / 'person_001.png')),
                       cv2.COLOR_BGR2RGB)
    net = load_model(DEFAULT_MODEL)
    base = dict(resolution=64, octree_depth=3, render_views=['front'], fill_silhouette=False)
    with Reconstructor(MonoPortConfig(**base), net) as rec:
        plain = (rec.geometry(rgb).volume.values > 0.5).cpu().numpy()
    with Reconstructor(MonoPortConfig(shift_average=True, **base), net) as rec:
        averaged = (rec.geometry(rgb).volume.values > 0.5).cpu().numpy()
    inside = plain | averaged
    assert inside.sum() > 1000
    changed = (plain != averaged).sum() / inside.sum()
    assert 0.0 < changed < 0.2, changed
