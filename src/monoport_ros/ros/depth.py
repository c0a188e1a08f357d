"""Pair depth images with colour frames by stamp (``depth_slop``), without blocking either."""
from __future__ import annotations

import collections
import threading

from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

HISTORY = 30        # depth messages kept (one second of a 30 Hz driver)


def stamp_seconds(stamp: Time) -> float:
    """Return a header stamp in seconds."""
    return stamp.sec + 1e-9 * stamp.nanosec


class DepthPairer:
    """
    The recent depth images, looked up by the stamp of a colour frame.

    The depth callback adds each image; the result thread looks a frame's partner up once the
    frame is reconstructed, by which time a depth image that came a little after its colour
    image has arrived as well. Like message_filters' approximate-time policy with one partner,
    but no callback waits for the other stream.
    """

    def __init__(self, history: int = HISTORY) -> None:
        self._messages: collections.deque = collections.deque(maxlen=history)
        self._lock = threading.Lock()
        self.received = 0

    def add(self, msg: Image) -> None:
        """Keep a depth image (the oldest kept one goes)."""
        with self._lock:
            self._messages.append((stamp_seconds(msg.header.stamp), msg))
            self.received += 1

    def match(self, stamp: Time, slop: float) -> Image | None:
        """Return the depth image nearest in time to ``stamp``, if within ``slop`` seconds."""
        t = stamp_seconds(stamp)
        with self._lock:
            best = min(self._messages, key=lambda m: abs(m[0] - t), default=None)
        if best is None or abs(best[0] - t) > slop:
            return None
        return best[1]
