#!/usr/bin/env bash
# One-command set-up: creates .venv/ at the repo root, installs the pinned requirements and the
# package itself (editable), so that .venv/bin/monoport-ros and .venv/bin/monoport_node exist.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The real ROS 2 launch stack (launch, launch_ros, ros2 launch/param/topic, ...) as offline
# wheels, where shared/ lies beside the repository (not on PyPI; see its README.md).
launch_wheels=${MONOPORT_LAUNCH_WHEELS:-../shared/ros2-launch}
launch_req=
if [ -f "$launch_wheels/requirements.txt" ]; then
  launch_req=$launch_wheels/requirements.txt
fi
stamp=.venv/.requirements.sha
want=$( { cat requirements.txt setup.py setup.cfg
          if [ -n "$launch_req" ]; then cat "$launch_req"; ls "$launch_wheels"; fi
        } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing pinned requirements into .venv (log: .venv/pip.log) ..."
  if ! .venv/bin/python -m pip install -r requirements.txt > .venv/pip.log 2>&1; then
    grep -v "is ignored: it is neither" .venv/pip.log | tail -40
    exit 1
  fi
  if [ -n "$launch_req" ]; then
    echo "installing the ROS 2 launch wheels of $launch_wheels ..."
    # --no-deps: their setup.py name ROS packages by ROS names, which the ros-* wheels do not use
    if ! .venv/bin/python -m pip install --no-deps --no-index --find-links "$launch_wheels" \
        -r "$launch_req" >> .venv/pip.log 2>&1; then
      tail -40 .venv/pip.log
      exit 1
    fi
  fi
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import monoport_ros, torch, rclpy; from monoport_ros.core.o3d import o3d; print('monoport_ros set up: torch', torch.__version__)"
if [ -n "$launch_req" ]; then
  (cd .venv && bin/python -c "from launch import LaunchDescription; import launch_ros.actions" \
    && echo "ROS 2 launch set up: $(bin/ros2 launch --help >/dev/null && echo ros2 launch works)")
fi
