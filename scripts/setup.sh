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
stamp=.venv/.requirements.sha
want=$(cat requirements.txt setup.py setup.cfg | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing pinned requirements into .venv (log: .venv/pip.log) ..."
  if ! .venv/bin/python -m pip install -r requirements.txt > .venv/pip.log 2>&1; then
    grep -v "is ignored: it is neither" .venv/pip.log | tail -40
    exit 1
  fi
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import monoport_ros, torch, rclpy; from monoport_ros.core.o3d import o3d; print('monoport_ros set up: torch', torch.__version__)"
