"""The bundled image source: video files, image folders and single images as sensor_msgs/Image."""
from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros_isolation import domain, ros_args

from monoport_ros.ros import conversions as conv
from monoport_ros.ros import image_publisher as ip


def _write_images(folder, n=3):
    folder.mkdir(exist_ok=True)
    images = []
    for i in range(n):
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[..., 0] = 40 * i
        rgb[2:10, 3:7] = (10, 200, 30)
        cv2.imwrite(str(folder / f'img_{i}.png'), rgb[:, :, ::-1])
        images.append(rgb)
    return images


def test_folder_frames_in_name_order_once_and_looping(tmp_path):
    images = _write_images(tmp_path / 'imgs')
    (tmp_path / 'imgs' / 'notes.txt').write_text('not an image')
    once = list(ip.frames(tmp_path / 'imgs', loop=False))
    assert len(once) == 3
    for got, want in zip(once, images):
        np.testing.assert_array_equal(got, want)            # RGB order, lossless PNG
    looped = list(itertools.islice(ip.frames(tmp_path / 'imgs', loop=True), 7))
    assert [int(f[0, 0, 0]) for f in looped] == [0, 40, 80, 0, 40, 80, 0]


def test_single_image_and_video(tmp_path):
    images = _write_images(tmp_path / 'imgs', 1)
    single = list(ip.frames(tmp_path / 'imgs' / 'img_0.png', loop=False))
    assert len(single) == 1 and np.array_equal(single[0], images[0])

    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (32, 24))
    assert writer.isOpened()
    for i in range(5):
        frame = np.full((24, 32, 3), 30 * i, np.uint8)
        writer.write(frame)
    writer.release()
    frames = list(ip.frames(video, loop=False))
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    assert abs(int(frames[4].mean()) - 120) <= 3                # lossy codec, same content
    assert len(list(itertools.islice(ip.frames(video, loop=True), 12))) == 12


@pytest.mark.parametrize('make, message', [
    (lambda d: d / 'missing.png', 'not a readable image'),
    (lambda d: d / 'nothing_here', 'no such file'),
    (lambda d: d, 'no images'),
])
def test_bad_sources_raise_value_error(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        next(ip.frames(make(tmp_path), loop=False))


def test_bad_video_raises_value_error(tmp_path):
    bogus = tmp_path / 'clip.mp4'
    bogus.write_bytes(b'not a video at all')
    with pytest.raises(ValueError, match='video'):
        next(ip.frames(bogus, loop=False))


def test_camera_info_is_a_centred_pinhole():
    info = ip.camera_info(640, 480, 0.0, Header(frame_id='cam'))
    assert (info.width, info.height, info.header.frame_id) == (640, 480, 'cam')
    assert list(info.k) == [640.0, 0.0, 320.0, 0.0, 640.0, 240.0, 0.0, 0.0, 1.0]
    assert list(info.p)[:3] == [640.0, 0.0, 320.0] and list(info.d) == [0.0] * 5
    assert ip.camera_info(640, 480, 500.0, Header()).k[0] == 500.0


def test_publishes_images_and_camera_info_then_stops(tmp_path):
    images = _write_images(tmp_path / 'imgs')
    args = ip.build_parser().parse_args([str(tmp_path / 'imgs'), '--count', '4', '--encoding',
                                         'bgr8', '--frame-id', 'optical', '--rate', '50'])
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain(), args=ros_args())
    try:
        node = ip.ImagePublisher(args, context=ctx)
        probe = rclpy.create_node('probe', context=ctx)
        got: dict[str, list] = {'image': [], 'info': []}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        probe.create_subscription(Image, 'image', got['image'].append, qos)
        probe.create_subscription(CameraInfo, 'camera_info', got['info'].append, qos)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(probe)
        assert node.wait_for_subscribers(10)
        while not node.done:
            node.publish_next()
        assert node.sent == 4
        end = time.monotonic() + 10
        while len(got['image']) < 4 or len(got['info']) < 4:
            ex.spin_once(timeout_sec=0.05)
            assert time.monotonic() < end
        for msg, info, want in zip(got['image'], got['info'], images + images[:1]):
            assert msg.encoding == 'bgr8' and msg.header.frame_id == 'optical'
            assert info.header == msg.header and (info.width, info.height) == (32, 24)
            np.testing.assert_array_equal(conv.image_to_rgb(msg), want)
        node.destroy_node()
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_main_reports_a_bad_source_with_exit_code_2(tmp_path, capfd):
    rc = ip.main([str(tmp_path / 'missing.png'), '--count', '1'])
    assert rc == 2
    err = capfd.readouterr().err
    assert 'missing.png' in err and 'Traceback' not in err
