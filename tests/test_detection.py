"""Every person in a frame: the detector's decoding, tiles, instance masks, tracked ids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monoport_ros.core import detection
from monoport_ros.core.detection import (Detection, PersonDetector, PoseDetectorModel, box_iou,
                                         decode, detector_model_path, ssd_anchors, tile_windows,
                                         weighted_nms)
from monoport_ros.core.preprocess import load_rgb, mask_iou
from monoport_ros.core.tracking import PersonTracker

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
W, H = 640, 480


# --- decoding (no model) --------------------------------------------------------------------

def test_anchors_follow_the_graph_options():
    a = ssd_anchors()
    assert a.shape == (2254, 2)
    # stride 8: 28x28 cells, 2 anchors per cell, row-major, centres at (x + 0.5) / 28
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28], rtol=1e-6)
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28], rtol=1e-6)
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28], rtol=1e-6)
    # stride 16 starts after 1568; the three stride-32 layers share a 7x7 map, 6 per cell
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14], rtol=1e-6)
    np.testing.assert_allclose(a[1568 + 392:1568 + 392 + 6], [[0.5 / 7, 0.5 / 7]] * 6, rtol=1e-6)
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7], rtol=1e-6)


def test_decode_offsets_scales_and_threshold():
    anchors = ssd_anchors()
    raw = np.zeros((2254, 12), np.float32)
    logits = np.full(2254, -10.0, np.float32)
    i = 2000
    raw[i, :4] = [22.4, -11.2, 44.8, 67.2]          # dx, dy, w, h in input pixels (224)
    raw[i, 4:6] = [0.0, 22.4]                        # hip keypoint 0.1 below the anchor
    logits[i] = 3.0
    logits[5] = 0.1                                  # sigmoid 0.52: below 0.6
    boxes, kps, scores = decode(raw, logits, anchors, min_score=0.6)
    assert len(scores) == 1 and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    cx, cy = anchors[i] + [0.1, -0.05]
    np.testing.assert_allclose(boxes[0], [cx - 0.1, cy - 0.15, cx + 0.1, cy + 0.15], atol=1e-6)
    np.testing.assert_allclose(kps[0, 0], anchors[i] + [0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(kps[0, 1], anchors[i], atol=1e-6)


def test_weighted_nms_averages_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    kps = np.zeros((3, 4, 2))
    kps[1] = 1.0
    scores = np.array([0.6, 0.9, 0.7])
    b, k, s = weighted_nms(boxes, kps, scores)
    assert len(s) == 2
    np.testing.assert_allclose(s, [0.9, 0.7])
    np.testing.assert_allclose(b[0], [0.6, 0, 10.6, 10])       # (0.6*0 + 0.9*1) / 1.5
    np.testing.assert_allclose(k[0], 0.6)
    np.testing.assert_allclose(b[1], boxes[2])
    assert box_iou(boxes[:1], boxes[2:]).item() == 0.0


def test_tiles_cover_the_frame_at_two_finer_scales():
    wins = tile_windows(W, H)
    assert wins[0] == (0, 0, 0)
    sides = sorted({s for _, _, s in wins[1:]})
    assert sides == [144, 288]
    for side in sides:
        cover = np.zeros((H, W), bool)
        for x, y, s in wins:
            if s == side:
                assert 0 <= x and x + s <= W and 0 <= y and y + s <= H
                cover[y:y + s, x:x + s] = True
        assert cover.all()


def test_missing_model_is_a_clear_error(tmp_path):
    assert detector_model_path().name == 'pose_detection.tflite'
    with pytest.raises(FileNotFoundError, match='not found'):
        PoseDetectorModel(model_path=tmp_path / 'none.tflite')


def test_body_box_from_keypoints():
    d = Detection(np.zeros(4), np.array([[100, 200], [100, 120], [0, 0], [0, 0]], float), 0.9)
    assert d.body_size == pytest.approx(2 * 1.25 * 80)
    np.testing.assert_allclose(d.body_box, [0, 100, 200, 300])


# --- tracking (no model) --------------------------------------------------------------------

def _box(cx, h=100.0):
    return [cx - 0.2 * h, 100, cx + 0.2 * h, 100 + h]


def test_tracker_keeps_ids_while_in_view_and_never_reuses_them():
    tr = PersonTracker(max_missed=2)
    first = tr.update(np.array([_box(100), _box(300)]))
    assert first == [1, 2]
    for k in range(1, 6):       # both walk 10 px a frame; the order of the boxes changes
        ids = tr.update(np.array([_box(300 - 10 * k), _box(100 + 10 * k)]))
        assert ids == [2, 1]
        assert tr.ended == []
    # person 1 leaves: kept for max_missed frames, then ended
    assert tr.update(np.array([_box(250)])) == [2]
    assert tr.update(np.array([_box(250)])) == [2] and tr.ended == []
    assert tr.update(np.array([_box(250)])) == [2] and tr.ended == [1]
    # and comes back where they left: a new id, never 1 again
    assert tr.update(np.array([_box(150), _box(250)])) == [3, 2]
    assert tr.update(np.array([_box(400, 50)])) == [4] and tr.ended == []


def test_tracker_bridges_short_gaps_and_refuses_far_jumps():
    tr = PersonTracker(max_missed=2)
    assert tr.update(np.array([_box(100)])) == [1]
    assert tr.update(np.zeros((0, 4))) == []
    assert tr.update(np.array([_box(105)])) == [1]          # missed one frame: same id
    assert tr.update(np.array([_box(500)])) == [2]          # 4 heights away: someone else


# --- the model on real and synthetic frames -------------------------------------------------

@pytest.fixture(scope='module')
def finder():
    from monoport_ros.core.multiperson import PeopleFinder

    f = PeopleFinder(max_people=10, track=False)
    yield f
    f.close()


def test_whole_frame_alone_misses_the_man_on_the_box_tiles_find_him(finder):
    rgb = load_rgb(FIXTURES / 'sports2d' / 'demo_000.jpg')
    people = finder.find(rgb)
    assert len(people) == 1
    x0, y0, x1, y1 = people[0].box
    assert 0.3 < (y1 - y0) / rgb.shape[0] < 0.5          # about 40 % of the frame high
    assert 240 < (x0 + x1) / 2 < 340 and y1 < 230          # on the box, left of the sun
    # the failure issue 27 reports: the detector on the whole frame alone does not find him
    whole = PersonDetector(levels=0).detect(rgb)
    man = people[0].box[None].astype(float)
    assert all(box_iou(d.body_box[None], man).item() < 0.2 for d in whole)


def test_sports2d_two_people(finder):
    rgb = load_rgb(FIXTURES / 'sports2d' / 'demo_120.jpg')
    people = finder.find(rgb)
    assert len(people) == 2
    bottoms = sorted(p.box[3] for p in people)   # the man on the box, the woman on the grass
    assert bottoms[0] < 230 and bottoms[1] > 300
    assert not (people[0].mask & people[1].mask).any()


def test_vtest_pedestrians(finder):
    rgb = load_rgb(FIXTURES / 'vtest' / 'vtest_600.jpg')
    people = finder.find(rgb)
    # 6 pedestrians, all taller than 10 % of the frame (counted by hand, fixtures/README.md)
    assert len(people) == 6
    heights = [p.height_px for p in people]
    assert heights == sorted(heights, reverse=True)
    assert min(heights) > 0.1 * rgb.shape[0]
    owner = np.sum([p.mask for p in people], 0)
    assert owner.max() == 1                               # each pixel to at most one person


@pytest.fixture(scope='module')
def cutouts():
    from monoport_ros.offline.crowd import make_cutout

    rng = np.random.default_rng(27)
    return [make_cutout(rng) for _ in range(3)]


def _scene(cutouts, shift=0.0, far=True, seed=0):
    from monoport_ros.offline.crowd import Placement, compose, random_background

    pls = [Placement(0, 520 - shift, 200, 0.18 * H), Placement(1, 235 + shift, 380, 0.5 * H),
           Placement(2, 380 + shift, 470, 0.8 * H)]
    if not far:
        pls[0] = Placement(0, -500, 200, 0.18 * H)        # out of the frame
    return compose(cutouts, pls, random_background(H, W, np.random.default_rng(seed)))


def test_synthetic_people_at_three_distances(cutouts, finder):
    image, truth = _scene(cutouts)
    assert (truth[1] & truth[2]).sum() == 0 and truth[1].sum() > 0
    people = finder.find(image)
    assert len(people) == 3
    near, mid, far = people                              # largest first
    for person, true in zip((near, mid, far), (truth[2], truth[1], truth[0])):
        assert mask_iou(person.mask, true) > 0.7
    assert np.sum([p.mask for p in people], 0).max() == 1
    # max_people keeps the largest
    finder.max_people = 2
    try:
        two = finder.find(image)
    finally:
        finder.max_people = 10
    assert [mask_iou(p.mask, t) > 0.7 for p, t in zip(two, (truth[2], truth[1]))] == [True] * 2
    assert len(two) == 2


def test_ids_over_a_sequence(cutouts):
    from monoport_ros.core.multiperson import PeopleFinder

    finder = PeopleFinder(max_people=3, max_missed=1)
    seen: list[list[int]] = []
    ended: list[list[int]] = []
    try:
        # frames 0-2 everyone, 3-4 the far person has left, 5 they are back
        for k, far in enumerate([True, True, True, False, False, True]):
            image, truth = _scene(cutouts, shift=6.0 * k, far=far, seed=k)
            people = finder.find(image)
            assert len(people) == (3 if far else 2), k
            seen.append([p.track_id for p in people])
            ended.append(finder.ended)
    finally:
        finder.close()
    near, mid, far_id = seen[0]
    assert seen[1] == seen[2] == [near, mid, far_id]
    assert seen[3] == seen[4] == [near, mid]
    assert ended[4] == [far_id] and ended[3] == []       # ended after max_missed=1 frame
    assert seen[5][:2] == [near, mid] and seen[5][2] not in (near, mid, far_id)


def test_detector_model_is_found_inside_the_mediapipe_wheel():
    import mediapipe

    assert Path(mediapipe.__file__).parent in detector_model_path().parents
    assert detection.NUM_ANCHORS == len(ssd_anchors())


class _CountingDetector:
    """Records the windows each frame scans; finds nobody."""

    def __init__(self) -> None:
        self.scans: list = []

    def windows(self, width: int, height: int) -> list:
        return [(0, 0, 0)] + [(x, 0, 100) for x in range(0, 600, 50)]

    def detect(self, rgb, windows=None) -> list:
        self.scans.append(windows)
        return []


def test_video_mode_goes_round_the_tiles_faster_while_nobody_is_tracked():
    from monoport_ros.core.multiperson import PeopleFinder

    det = _CountingDetector()
    finder = PeopleFinder(detector=det, segmenter=object(), tiles_per_frame=1, idle_tiles=5)
    rgb = np.zeros((H, W, 3), np.uint8)
    for _ in range(3):
        assert finder.find(rgb) == []
    assert all(w[0] == (0, 0, 0) for w in det.scans)       # the whole frame, every frame
    tiles = [x for w in det.scans for x, _, _ in w[1:]]
    assert tiles == [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 0, 50, 100]
    finder.tracker.update(np.array([[10.0, 10.0, 60.0, 110.0]]))     # someone is tracked
    finder.find(rgb)
    # one tile, and a window around the tracked person (not followed: no graph of theirs)
    assert len(det.scans[-1]) == 3 and det.scans[-1][2][0] == 150


# --- the finder's rules, with a fake detector and segmenter (no model) ----------------------

def _det(hip: tuple[float, float], size: float) -> Detection:
    """Return a detection at ``hip`` whose body region is ``size`` pixels."""
    hip_ = np.array(hip, float)
    kps = np.array([hip_, hip_ + (0.0, size / 2.5), hip_, hip_], float)
    return Detection(np.r_[hip_ - 5, hip_ + 5], kps, 0.9)


class _FakeDetector:
    def __init__(self, dets: list[Detection]) -> None:
        self.dets = dets

    def windows(self, width: int, height: int) -> list:
        return [(0, 0, 0)]

    def detect(self, rgb, windows=None) -> list:
        return list(self.dets)


class _ColourSegmenter:
    """The person is the red pixels, anything green is a 'leftover'; hips as the test says."""

    threshold = 0.5

    def __init__(self) -> None:
        self.calls = 0

    def probability_with_pose(self, image):
        from monoport_ros.core.body_pose import BodyPose

        self.calls += 1
        red = (image[..., 0] > 200) & (image[..., 1] < 50)
        green = (image[..., 1] > 200) & (image[..., 0] < 50)
        region = red if red.any() else green
        ys, xs = np.nonzero(region)
        # red: landmarks on the person; green only: landmarks far off, beyond the crop
        hip = (xs.mean(), ys.mean()) if red.any() else (4.0 * image.shape[1], 0.0)
        lms = np.zeros((33, 3), np.float32)
        lms[:, :2] = hip
        return region.astype(np.float32), BodyPose(lms, np.ones(33, np.float32))


def test_a_detection_of_part_of_someone_found_is_not_a_second_person():
    # issue 27, sports2d: a small detection on a person's back whose crop, with her painted out,
    # left a strip of tree trunk beside her as a "second person" (its landmarks lay elsewhere)
    from monoport_ros.core.multiperson import PeopleFinder

    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[40:160, 80:120] = (255, 0, 0)          # the person
    rgb[60:100, 121:131] = (0, 255, 0)         # something beside her
    dets = [_det((100, 100), 120), _det((112, 80), 40)]
    finder = PeopleFinder(max_people=5, detector=_FakeDetector(dets),
                          segmenter=_ColourSegmenter(), track=False)
    people = finder.find(rgb)
    assert len(people) == 1
    person = np.zeros((200, 200), bool)
    person[40:160, 80:120] = True
    assert mask_iou(people[0].mask, person) > 0.9
