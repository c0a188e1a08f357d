"""Reconstruction core: plain PyTorch, no ROS."""
