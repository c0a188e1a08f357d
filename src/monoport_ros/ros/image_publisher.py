"""
``image_publisher``: stream a video file, an image folder or one image as sensor_msgs/Image.

Publishes ``image`` (sensor_msgs/Image) and ``camera_info`` (sensor_msgs/CameraInfo, a pinhole
camera whose focal length is ``--focal`` or the longer image side) at ``--rate`` Hz, stamped with
the current time in frame ``--frame-id``. Loops over the source unless ``--once``; ``--count N``
stops after N frames. Without a source it streams the package's sample images. Topic names can be
remapped with the usual ``--ros-args -r image:=/camera/image_raw``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from . import conversions as conv
from .signals import interrupts_ignored
from ..core.preprocess import load_rgb

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
SAMPLES = Path(__file__).resolve().parent.parent / 'samples'


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def frames(source: Path, loop: bool) -> Iterator[np.ndarray]:
    """RGB frames of a video file, an image folder or one image; forever when ``loop``."""
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise ValueError(f'{source}: no images ({", ".join(IMAGE_SUFFIXES)})')
        images = [load_rgb(p) for p in files]
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        images = [load_rgb(source)]
    elif source.is_file():
        images = None
    else:
        raise ValueError(f'{source}: no such file or folder')
    while True:
        if images is not None:
            yield from images
        else:
            cap = cv2.VideoCapture(str(source))
            if not cap.isOpened():
                raise ValueError(f'{source}: cannot open as a video')
            n = 0
            try:
                while True:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    n += 1
                    yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            finally:
                cap.release()
            if n == 0:
                raise ValueError(f'{source}: the video has no frames')
        if not loop:
            return


def camera_info(width: int, height: int, focal: float, header: Header) -> CameraInfo:
    """Describe an undistorted pinhole camera (principal point at the centre) as CameraInfo."""
    f = float(focal) if focal > 0 else float(max(width, height))
    cx, cy = width / 2.0, height / 2.0
    info = CameraInfo(header=header, width=width, height=height, distortion_model='plumb_bob')
    info.d = [0.0] * 5
    info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog='image_publisher', description=__doc__.splitlines()[0])
    p.add_argument('source', nargs='?', default=str(SAMPLES),
                   help='video file, image folder or image (default: the sample images)')
    p.add_argument('--rate', type=float, default=5.0, help='frames per second (default 5)')
    p.add_argument('--once', action='store_true', help='publish the source once, do not loop')
    p.add_argument('--count', type=int, default=0,
                   help='stop after this many frames (0 = no limit)')
    p.add_argument('--frame-id', default='camera_optical_frame', help='header frame_id')
    p.add_argument('--encoding', default='rgb8', choices=sorted(conv.ENCODINGS),
                   help='published image encoding (default rgb8)')
    p.add_argument('--focal', type=float, default=0.0,
                   help='focal length in pixels for camera_info (default: longer image side)')
    p.add_argument('--reliability', default='reliable', choices=('reliable', 'best_effort'),
                   help='QoS reliability of both topics (reliable reaches best-effort readers)')
    p.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                   help='wait up to this long for image subscribers before publishing')
    p.add_argument('--min-subscribers', type=int, default=1, metavar='N',
                   help='how many image subscribers --wait-for-subscribers waits for')
    return p


class ImagePublisher(Node):
    """Publishes frames from an iterator on a timer."""

    def __init__(self, args: argparse.Namespace, **node_kwargs: Any) -> None:
        super().__init__('image_publisher', **node_kwargs)
        if args.rate <= 0:
            raise ValueError(f'--rate must be positive, got {args.rate}')
        self.args = args
        self.frames = frames(Path(args.source).expanduser(), loop=not args.once)
        rel = ReliabilityPolicy.RELIABLE if args.reliability == 'reliable' \
            else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=rel)
        self.pub_image = self.create_publisher(conv.Image, 'image', qos)
        self.pub_info = self.create_publisher(CameraInfo, 'camera_info', qos)
        self.sent = 0
        self.done = False

    def wait_for_subscribers(self, timeout: float, count: int = 1) -> bool:
        """Wait until the image topic has ``count`` subscribers (or ``timeout`` seconds pass)."""
        end = time.monotonic() + timeout
        while self.pub_image.get_subscription_count() < count:
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def publish_next(self) -> None:
        """Publish one frame and its camera_info; sets ``done`` at the end of the source."""
        if self.done:
            return
        try:
            rgb = next(self.frames)
        except StopIteration:
            self.done = True
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.args.frame_id)
        h, w = rgb.shape[:2]
        self.pub_info.publish(camera_info(w, h, self.args.focal, header))
        self.pub_image.publish(conv.rgb_to_image(rgb, self.args.encoding, header))
        self.sent += 1
        if self.args.count and self.sent >= self.args.count:
            self.done = True


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``image_publisher``."""
    argv = sys.argv if argv is None else ['image_publisher', *argv]
    args = build_parser().parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = None
    try:
        node = ImagePublisher(args)
        if args.wait_for_subscribers > 0 and not node.wait_for_subscribers(
                args.wait_for_subscribers, args.min_subscribers):
            node.get_logger().warning('no image subscriber yet; publishing anyway')
        period = 1.0 / args.rate
        next_t = time.monotonic()
        while rclpy.ok() and not node.done:
            node.publish_next()
            next_t += period
            rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
            while rclpy.ok() and time.monotonic() < next_t:
                rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
        node.get_logger().info(f'published {node.sent} frames')
        time.sleep(0.2)                 # let reliable writers deliver the last frame
    except ValueError as exc:
        rclpy.logging.get_logger('image_publisher').fatal(str(exc))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        with interrupts_ignored():              # Ctrl-C under ros2 launch comes twice
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
