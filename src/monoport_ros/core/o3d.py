"""
Open3D import that also works where the system libusb is missing.

It uses the libusb-package wheel.
"""
from __future__ import annotations

import ctypes

try:
    import open3d
except ImportError:                  # libusb-1.0.so.0 not installed system-wide
    import libusb_package

    ctypes.CDLL(str(libusb_package.get_library_path()), mode=ctypes.RTLD_GLOBAL)
    import open3d

o3d = open3d

__all__ = ['o3d']
