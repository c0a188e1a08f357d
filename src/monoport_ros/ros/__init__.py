"""Thin ROS 2 layer: messages in, core call, messages out."""
