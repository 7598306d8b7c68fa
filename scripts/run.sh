#!/bin/bash
# The main job: a real capture -> H.264 encode -> preview pipeline, three
# GStreamer processes joined by mbq queues, then a summary that checks the
# result. Installs what is missing and builds mbq first (not for --help).
# See usage() below; the pipeline is described in the README, "The main job".
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: scripts/run.sh [--frames N] [--size WxH] [--fps N] [--live] [--out FILE]
       scripts/run.sh --demo [mbq-demo options]     the synthetic demo pipeline
       scripts/run.sh --help

Installs what is missing (scripts/install-deps.sh: the build dependencies,
GStreamer, x264 and ffmpeg), builds mbq with its GStreamer plugin, and runs three processes against a
private mbqd (or the one $MBQ_SOCKET names):

  capture  videotestsrc ! video/x-raw,... ! mbqsink queue=cam/encode,cam/preview
  encode   mbqsrc queue=cam/encode ! videoconvert ! x264enc ! mp4mux ! filesink
  preview  mbqsrc queue=cam/preview ! fakesink

Each frame is one block of the pool cam/frames, shared by both queues (no
copy). cam/encode holds 8 frames and makes capture wait when full (nothing
is lost); cam/preview holds 1 and drops the older frame, so the preview
always takes the newest. At the end it checks the file with ffprobe (every
frame there, the duration, strictly increasing timestamps) and that every
pool block came back, and exits non-zero if any check fails.

  --frames N    frames to capture (default 600)
  --size WxH    frame size (default 1920x1080)
  --fps N       frame rate (default 60)
  --live        a live camera (videotestsrc is-live=true): capture keeps the
                camera's pace, and a frame the encoder cannot take within 1 s
                is dropped (the frame-count check then fails); by default the
                source is not live and runs at the encoder's pace, so that
                nothing is dropped even where x264 is slower than real time
  --out FILE    the encoded file (default: build/run/out.mp4)
  --demo ...    the synthetic pipeline instead (mbq-capture, mbq-encode,
                mbq-preview, checksummed frames; mbq-demo --help lists its
                options)
EOF
}

frames=600 size=1920x1080 fps=60 live=false out=
case "${1:-}" in
-h | --help) usage; exit 0 ;;
--demo)
    shift
    scripts/install-deps.sh
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$(nproc)"
    echo
    exec build/examples/pipeline/mbq-demo "$@"
    ;;
esac
while [ $# -gt 0 ]; do
    case "$1" in
    --frames) frames=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --fps) fps=$2; shift 2 ;;
    --live) live=true; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$frames$fps" in *[!0-9]*) echo "run.sh: --frames and --fps take numbers" >&2; exit 2 ;; esac
case "$size" in [0-9]*x[0-9]*) ;; *) echo "run.sh: --size takes WxH" >&2; exit 2 ;; esac
[ "$frames" -gt 0 ] && [ "$fps" -gt 0 ] || { echo "run.sh: --frames and --fps must be > 0" >&2; exit 2; }
width=${size%x*} height=${size#*x}

# ---- dependencies and build ------------------------------------------------
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo

export MBQD=$PWD/build/daemon/mbqd MBQCTL=$PWD/build/client/mbqctl
export GST_PLUGIN_PATH=$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
if [ ! -e build/gst/libgstmbq.so ] || ! gst-inspect-1.0 mbqsink >/dev/null 2>&1; then
    echo "run.sh: the GStreamer plugin (build/gst/libgstmbq.so) was not built or does not load" >&2
    exit 1
fi
. scripts/lib/mbq.sh

# ---- the pipeline ------------------------------------------------------------
work=build/run
mkdir -p "$work"
rm -f "$work"/*.log
[ -n "$out" ] || out=$work/out.mp4
rm -f "$out"
own_daemon=false
if [ -n "${MBQ_SOCKET:-}" ] && "$MBQCTL" --socket "$MBQ_SOCKET" list >/dev/null 2>&1; then
    echo "mbqd: the one at $MBQ_SOCKET"
else
    daemon_dir=$(mktemp -d "${TMPDIR:-/tmp}/mbq-run-XXXXXX")
    mbq_daemon_start "$daemon_dir"
    own_daemon=true
    echo "mbqd: private, on $MBQ_SOCKET (log: $daemon_dir/mbqd.log)"
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if $own_daemon; then mbq_daemon_stop; rm -rf "$daemon_dir"; fi
}
trap cleanup EXIT
trap 'echo; echo "run.sh: interrupted"; exit 130' INT TERM

# The preview's queue is made here, before capture creates the encoder's:
# one frame, dropping the older one (mbqsink opens queues that exist, and
# creates the others with its own capacity and policy).
if ! mbq_queue_exists cam/preview; then
    "$MBQCTL" create buffer-queue cam/preview --capacity 1 --drop-oldest >/dev/null
elif [ "$(mbq_stat cam/preview full_policy)" != drop-oldest ]; then
    echo "run.sh: warning: cam/preview exists and does not drop the oldest: the preview may slow capture down" >&2
fi

caps="video/x-raw,format=I420,width=$width,height=$height,framerate=$fps/1"
# Every process is bounded: 2 minutes plus 20 times the video's length,
# at most 30 minutes (x264 at 1080p60 on 2 cores runs at about real time).
limit=$(( frames / fps * 20 + 120 )); [ "$limit" -le 1800 ] || limit=1800
wait_ns=30000000000 # the consumers wait up to 30 s for capture's queues
run() { # run NAME PIPELINE...: one process, its output in $work/NAME.log
    local name=$1; shift
    timeout -k 5 "$limit" gst-launch-1.0 -e "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
echo "capture: videotestsrc is-live=$live, ${width}x$height I420 at $fps fps, $frames frames"
echo "         --> cam/encode  (capacity 8, capture waits when full) --> encode: x264enc ultrafast/zerolatency, mp4mux -> $out"
echo "         --> cam/preview (capacity 1, drops the older frame)   --> preview: fakesink"
echo "watch it:  MBQ_SOCKET=$MBQ_SOCKET $MBQCTL watch"
start=$(mbq_now_ms)
run encode mbqsrc queue=cam/encode timeout=$wait_ns ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$out"
run preview mbqsrc queue=cam/preview timeout=$wait_ns ! fakesink sync=false
run capture videotestsrc num-buffers="$frames" is-live=$live ! "$caps" \
    ! mbqsink queue=cam/encode,cam/preview pool=cam/frames blocks=16 capacity=8 full-policy=block
names=(encode preview capture)
status=()
for i in 0 1 2; do
    rc=0; wait "${pids[$i]}" || rc=$?
    status[$i]=$rc
done
pids=()
elapsed=$(( $(mbq_now_ms) - start ))

# ---- the summary ---------------------------------------------------------------
echo
echo "---- summary ----------------------------------------------------------------"
ok=true
failed() { echo "  FAILED: $*"; ok=false; }
for i in 0 1 2; do
    if [ "${status[$i]}" -eq 0 ]; then
        echo "${names[$i]}: exit status 0"
    else
        failed "${names[$i]} exited with status ${status[$i]} (${status[$i]} = 124: timed out); its log ends:"
        tail -5 "$work/${names[$i]}.log" | sed 's/^/    /'
    fi
done
printf 'time: %d.%02d s for %s frames (%s s of video)\n' $((elapsed / 1000)) $((elapsed % 1000 / 10)) \
    "$frames" "$(awk "BEGIN{printf \"%.3f\", $frames / $fps}")"
if mbq_check_video "$out" "$frames" "$(awk "BEGIN{printf \"%.3f\", $frames / $fps}")"; then
    echo "file: $out: $MBQ_CHECK_RESULT"
else
    failed "file $out: $MBQ_CHECK_RESULT"
fi
for q in cam/encode cam/preview; do
    echo "queue $q: enqueued $(mbq_stat $q enqueued), dequeued $(mbq_stat $q dequeued)," \
         "dropped $(mbq_stat $q dropped), rejected full $(mbq_stat $q rejected_full)," \
         "high water $(mbq_stat $q high_water)"
done
[ "$(mbq_stat cam/encode dropped)" = 0 ] || failed "cam/encode dropped frames"
if mbq_wait_until 10 mbq_pool_idle cam/frames; then
    echo "pool cam/frames: $(mbq_stat cam/frames allocations) allocations, $(mbq_stat cam/frames frees) frees, every block back"
else
    failed "pool cam/frames: $(mbq_stat cam/frames blocks_used) blocks still in use"
fi
if $ok; then
    echo "result: OK"
else
    echo "result: FAILED (logs in $work/)"
    exit 1
fi
