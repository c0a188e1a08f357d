"""
Ctrl-C under ``ros2 launch``: a node's clean-up runs to its end.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group, so a launched node gets
it from the terminal and then again from ``ros2 launch``, which passes it on to each process. The
first ends the node's spin; the second would raise KeyboardInterrupt in the middle of its
clean-up (stopping workers, destroying the node) and kill it by the signal (exit code -2).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT inside the block (in the main thread; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        # None: the handler was not Python's (rclpy's, removed by its shutdown meanwhile)
        signal.signal(signal.SIGINT, previous if previous is not None
                      else signal.default_int_handler)
