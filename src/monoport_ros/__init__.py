"""
monoport_ros: real-time monocular clothed-human reconstruction (MonoPort) for ROS 2.

The reconstruction core (``monoport_ros.core``) is plain PyTorch and imports no ROS; the ROS 2
layer lives in ``monoport_ros.ros``.
"""

__version__ = '0.1.0'
