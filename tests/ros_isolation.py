"""
Keep this test run's ROS traffic to itself.

CI machines run several test runs at once, and containers there often have the same pids, so a
pid-derived ROS_DOMAIN_ID can be shared with another run; with localhost discovery its publishers
would then feed our nodes. Each run therefore puts every node, topic and service it makes under a
namespace of its own (``NS``), and draws its domains at random.
"""
from __future__ import annotations

import itertools
import random
import secrets

NS = '/test_' + secrets.token_hex(4)
NODE = f'{NS}/monoport_node'        # the node's name, also the key of the params files tests write

# domains 1-101: on Linux higher ones' ports can clash with the ephemeral port range (ROS 2 docs)
_domains = itertools.cycle(random.sample(range(1, 102), 101))


def domain() -> int:
    """Return a ROS_DOMAIN_ID not used before by this process (until all 101 are)."""
    return next(_domains)


def ros_args(*extra: str) -> list[str]:
    """``--ros-args`` that put a process's (or a context's) nodes into ``NS``."""
    return ['--ros-args', '-r', f'__ns:={NS}', *extra]
