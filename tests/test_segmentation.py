"""PersonSegmenter: MediaPipe person masks against the silhouettes of synthetic renders."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
from monoport_ros.offline import people, synthetic
from monoport_ros.core.preprocess import mask_iou
from monoport_ros.core.segmentation import PersonSegmenter
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def full_body():
    """Full-body people (60-90 % of a 640x480 frame) on every background kind, any yaw."""
    cases = []
    for i, bg in enumerate(synthetic.BACKGROUNDS):
        rng = np.random.default_rng(200 + i)
        person = people.make_person(rng)
        r = synthetic.render_person(person, float(rng.uniform(0, 360)), (640, 480), rng,
                                    background=bg)
        cases.append((r['image'], r['mask']))
    return cases


@pytest.fixture(scope='module')
def close_up():
    """People filling a portrait frame, roughly facing the camera, on plain backgrounds."""
    cases = []
    for i in range(4):
        rng = np.random.default_rng(300 + i)
        person = people.make_person(rng)
        r = synthetic.render_person(person, float(rng.uniform(-45, 45)), (384, 512), rng,
                                    background=('flat', 'gradient')[i % 2],
                                    height_fraction=(0.85, 0.95))
        cases.append((r['image'], r['mask']))
    return cases


@pytest.fixture(scope='module')
def pose_segmenter():
    with PersonSegmenter('pose') as seg:
        yield seg


def test_pose_model_matches_silhouette(full_body, pose_segmenter):
    # Measured on 60+ renders: IoU 0.90-0.98, mean 0.97.
    ious = []
    for image, truth in full_body:
        mask = pose_segmenter.segment(image)
        assert mask.dtype == np.bool_ and mask.shape == truth.shape
        n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        assert n == 2, 'exactly one person region (plus background) is kept'
        ious.append(mask_iou(mask, truth))
    assert min(ious) > 0.88, ious
    assert np.mean(ious) > 0.93, ious


def test_selfie_model_on_close_ups(close_up):
    # Measured on 16 such close-ups: IoU 0.74-0.97, mean 0.91 (full-body shots: mean 0.58).
    with PersonSegmenter('selfie') as seg:
        ious = [mask_iou(seg.segment(image), truth) for image, truth in close_up]
    assert np.mean(ious) > 0.8, ious


def test_video_mode_tracks_a_turning_person():
    rng = np.random.default_rng(7)
    person = people.make_person(rng)
    bg = synthetic.make_background(480, 640, rng, 'gradient')
    with PersonSegmenter('pose', video=True) as seg:
        for k in range(6):
            r = synthetic.render_person(person, 15.0 * k, (640, 480), np.random.default_rng(1),
                                        background=bg)
            assert mask_iou(seg.segment(r['image']), r['mask']) > 0.9


def test_video_mode_finds_the_person_right_after_a_cut():
    # a cut to another person elsewhere in the frame: the tracked region is empty, and the
    # segmenter must find the new person in that same frame, not one frame later
    shots = []
    for seed, left in ((11, True), (12, False), (13, True)):
        rng = np.random.default_rng(seed)
        person = people.make_person(rng)
        r = synthetic.render_person(person, float(rng.uniform(-30, 30)), (640, 480), rng,
                                    background='gradient', height_fraction=(0.6, 0.7))
        cols = np.flatnonzero(r['mask'].any(axis=0))
        shift = (40 - cols[0]) if left else (600 - cols[-1])     # to one side of the frame
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        image = cv2.warpAffine(r['image'], m, (640, 480), borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(r['mask'].astype(np.uint8), m, (640, 480)) > 0
        shots.append((image, mask))
    with PersonSegmenter('pose', video=True) as seg:
        for image, truth in shots:
            for _ in range(3):              # each shot lasts a few frames
                assert mask_iou(seg.segment(image), truth) > 0.85


@pytest.mark.parametrize('model', ['pose', 'selfie'])
def test_blank_images_give_empty_masks(model):
    with PersonSegmenter(model) as seg:
        for value in (0, 128, 255):
            blank = np.full((480, 640, 3), value, np.uint8)
            assert seg.segment(blank).sum() <= 0.001 * blank.shape[0] * blank.shape[1]
        noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        assert seg.segment(noise).mean() < 0.01


def test_probability_and_threshold(full_body):
    image, truth = full_body[0]
    with PersonSegmenter('pose', threshold=0.5, keep_largest=False) as seg:
        prob = seg.probability(image)
        assert prob.dtype == np.float32 and prob.shape == truth.shape
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        assert np.array_equal(seg.segment(image), prob > 0.5)
        assert prob[truth].mean() > 0.8 and prob[~truth].mean() < 0.05


@pytest.mark.parametrize('bad', [
    np.zeros((64, 64, 3), np.float32),           # float image
    np.zeros((64, 64), np.uint8),                # grey
    np.zeros((64, 64, 4), np.uint8),             # RGBA
    np.zeros((64, 64, 3, 1), np.uint8),          # extra axis
    np.zeros((8, 64, 3), np.uint8),              # too small
    [[[0, 0, 0]]],                               # not an array
])
def test_bad_input_raises_value_error(pose_segmenter, bad):
    with pytest.raises(ValueError):
        pose_segmenter.segment(bad)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match='unknown segmentation model'):
        PersonSegmenter('hair')
    for threshold in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match='threshold'):
            PersonSegmenter('selfie', threshold=threshold)


def test_concurrent_calls_match_sequential(full_body):
    images = [image for image, _ in full_body]
    with PersonSegmenter('pose') as seg:
        sequential = [seg.segment(image) for image in images]
        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(seg.segment, images * 2))
    for i, mask in enumerate(parallel):
        assert mask_iou(mask, sequential[i % len(images)]) > 0.99


def test_closed_segmenter_refuses_work(full_body):
    seg = PersonSegmenter('selfie')
    seg.close()
    seg.close()                                  # closing twice is fine
    with pytest.raises(RuntimeError, match='closed'):
        seg.segment(full_body[0][0])


def test_open_tracking_segmenter_does_not_hang_the_exit(tmp_path):
    """A tracking graph left open is closed before interpreter teardown (it used to hang there)."""
    import subprocess
    import sys
    from pathlib import Path
    sample = Path(__file__).resolve().parent.parent / 'src/monoport_ros/samples/person_000.png'
    code = ('import cv2\n'
            'from monoport_ros.core.segmentation import PersonSegmenter\n'
            f'rgb = cv2.cvtColor(cv2.imread({str(sample)!r}), cv2.COLOR_BGR2RGB)\n'
            "seg = PersonSegmenter('pose', video=True)\n"
            'assert seg.segment(rgb).sum() > 1000 and seg.segment(rgb).sum() > 1000\n')
    done = subprocess.run([sys.executable, '-c', code], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_a_tracking_segmenter_takes_a_new_image_size():
    """A camera other than the warm-up image's size (MediaPipe's smoothing needs one size)."""
    from monoport_ros.core.preprocess import load_rgb
    from monoport_ros.core.reconstruct import WARM_UP_IMAGE

    rgb = load_rgb(WARM_UP_IMAGE)
    with PersonSegmenter('pose', video=True) as seg:
        assert seg.segment(rgb).any()
        wide = np.zeros((480, 640, 3), np.uint8)
        wide[:, 64:576] = cv2.resize(rgb, (512, 480))
        assert seg.segment(wide).any()
        assert seg.segment(wide).shape == (480, 640)
