#!/usr/bin/env bash
# Headless demo (no ros2 launch, no RViz needed): image_publisher streams the sample images,
# monoport_node reconstructs them and also writes every result to outputs/ (coloured mesh .ply,
# rendered views .png). Both processes are stopped cleanly at the end.
#
#   scripts/demo.sh [--frames N] [--rate HZ] [--seconds S] [--source PATH] [--out DIR]
#                   [--param NAME:=VALUE ...]
#
#   --frames N    frames to publish (default: one pass over the source's images)
#   --rate HZ     publishing rate (default 1)
#   --seconds S   give up waiting for results after S seconds (default 300)
#   --source PATH image folder, image or video (default src/monoport_ros/samples)
#   --out DIR     output folder (default outputs/)
#   --param N:=V  extra node parameter, e.g. --param resolution:=64 (repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."

FRAMES=0 RATE=1 SECONDS_MAX=300 SOURCE=src/monoport_ros/samples OUT=outputs
PARAMS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) FRAMES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_MAX=$2; shift 2 ;;
    --source) SOURCE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --param) PARAMS+=(-p "$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

BIN=.venv/bin
if [ ! -x "$BIN/monoport_node" ] || [ ! -x "$BIN/image_publisher" ]; then
  echo "demo.sh: $BIN/monoport_node not found; run scripts/setup.sh first" >&2
  exit 1
fi
if [ ! -e "$SOURCE" ]; then
  echo "demo.sh: image source $SOURCE does not exist" >&2
  exit 1
fi
if [ "$FRAMES" -le 0 ]; then
  if [ -d "$SOURCE" ]; then
    FRAMES=$(find "$SOURCE" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \) | wc -l)
  else
    FRAMES=1
  fi
  [ "$FRAMES" -gt 0 ] || { echo "demo.sh: no images in $SOURCE" >&2; exit 1; }
fi

# A private DDS domain on this machine only, so the demo neither sees nor disturbs other robots.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}

mkdir -p "$OUT"
rm -f "$OUT"/frame_*_mesh.ply "$OUT"/frame_*.png
NODE_PID=''
PUB_PID=''
cleanup() {
  [ -n "$PUB_PID" ] && kill -INT "$PUB_PID" 2>/dev/null || true
  [ -n "$NODE_PID" ] && kill -INT "$NODE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "demo: domain $ROS_DOMAIN_ID, $FRAMES frame(s) from $SOURCE at $RATE Hz -> $OUT/ (node log: $OUT/node.log)"
# queue_size: frames wait for the engine instead of being replaced by newer ones (newest wins
# is right for a live camera; the demo wants every sample reconstructed). image_reliability:
# image_publisher publishes reliably; a best-effort reader loses images larger than Fast DDS's
# shared-memory segment (512x512 rgb8 samples arrive fragmented over UDP, without repair).
# segmentation_tracking: a folder of images is a slideshow of unrelated people, not one camera
# stream, so each image is segmented on its own; a video keeps the node's default (tracking).
TRACKING=true
if [ -d "$SOURCE" ]; then TRACKING=false; fi
case "${SOURCE,,}" in *.png|*.jpg|*.jpeg) TRACKING=false ;; esac
"$BIN/monoport_node" --ros-args -p "output_dir:=$OUT" -p queue_size:=16 \
  -p image_reliability:=reliable -p "segmentation_tracking:=$TRACKING" "${PARAMS[@]}" \
  > "$OUT/node.log" 2>&1 &
NODE_PID=$!

"$BIN/image_publisher" "$SOURCE" --rate "$RATE" --count "$FRAMES" --wait-for-subscribers 120 &
PUB_PID=$!

# Until every frame has its mesh; a frame without a person has none, so also stop once the
# publisher is done and nothing new has been written for IDLE seconds.
meshes() { find "$OUT" -maxdepth 1 -name 'frame_*' | wc -l; }
IDLE=20
deadline=$(( $(date +%s) + SECONDS_MAX ))
status=0
last=-1
last_change=$(date +%s)
while [ "$(find "$OUT" -maxdepth 1 -name 'frame_*_mesh.ply' | wc -l)" -lt "$FRAMES" ]; do
  now=$(date +%s)
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    echo "demo: monoport_node stopped early:" >&2; tail -n 20 "$OUT/node.log" >&2; status=1; break
  fi
  if [ "$now" -ge "$deadline" ]; then
    echo "demo: stopping after ${SECONDS_MAX}s" >&2; break
  fi
  n=$(meshes)
  if [ "$n" != "$last" ]; then last=$n; last_change=$now; fi
  if ! kill -0 "$PUB_PID" 2>/dev/null && [ $(( now - last_change )) -ge "$IDLE" ]; then
    echo "demo: no new output for ${IDLE}s after the last frame was sent" >&2; break
  fi
  sleep 0.5
done
wait "$PUB_PID" || true
PUB_PID=''
if kill -0 "$NODE_PID" 2>/dev/null; then
  kill -INT "$NODE_PID"
  wait "$NODE_PID" || status=$?
fi
NODE_PID=''
trap - EXIT

echo "demo: monoport_node exited with status $status;" \
  "$(find "$OUT" -maxdepth 1 -name 'frame_*_mesh.ply' | wc -l) of $FRAMES frame(s) reconstructed:"
ls -l "$OUT"
exit "$status"
