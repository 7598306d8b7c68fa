#!/bin/bash
# Capture -> encoder across processes: mbqsink/mbqsrc against GStreamer's
# shmsink/shmsrc, and against the floor, one process with a queue element in
# place of the IPC. Same capture (live videotestsrc, I420), same encoder
# (videoconvert, x264enc ultrafast/zerolatency, fakesink), same depth (8
# frames) in each; 720p30 and 1080p60, 10 s each.
#
# Per run: frames delivered to the encoder (of those captured), stalls (a
# gap between two frames at the encoder's input over twice the frame
# period), latency capture -> encoder input (median, p95, max), and each
# process's CPU time and peak RSS. The latency is measured by
# mbq-gst-probe (tests/gst-e2e/probe.c): the capture process stamps each
# frame with a sequence number and CLOCK_MONOTONIC on videotestsrc's src
# pad, the encoder process reads the stamp on x264enc's sink pad.
#
# usage: scripts/bench-gst.sh [--reps N] [--seconds S] [--build DIR]
# Prints a markdown table (docs/PERFORMANCE.md, section 8) and writes every
# run's figures to DIR/bench-gst/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=1 seconds=10 build=build
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) reps=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-gst.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
export MBQD=$PWD/$build/daemon/mbqd MBQCTL=$PWD/$build/client/mbqctl
export GST_PLUGIN_PATH=$PWD/$build/gst
PROBE=$PWD/$build/tests/gst-e2e/mbq-gst-probe
for f in "$MBQD" "$MBQCTL" "$PROBE" "$build/gst/libgstmbq.so"; do
    [ -e "$f" ] || { echo "bench-gst.sh: $f is missing: build first (cmake --build $build)" >&2; exit 1; }
done
. scripts/lib/mbq.sh

out=$build/bench-gst
mkdir -p "$out"
T=$(mktemp -d "${TMPDIR:-/tmp}/mbq-bench-gst-XXXXXX")
trap 'mbq_daemon_stop; rm -rf "$T"' EXIT
mbq_daemon_start "$T"

ENC="videoconvert ! x264enc name=enc speed-preset=ultrafast tune=zerolatency ! fakesink"

# run_one MODE W H FPS: one run; leaves $T/rows, $T/cap.stats, $T/enc.stats.
run_one() {
    local mode=$1 w=$2 h=$3 fps=$4 n=$(($4 * seconds))
    local caps="video/x-raw,format=I420,width=$w,height=$h,framerate=$fps/1"
    local src="videotestsrc name=cam is-live=true num-buffers=$n"
    local limit=$((seconds * 3 + 30)) capp encp
    rm -f "$T"/rows "$T"/*.stats "$T"/shm.sock
    case $mode in
    single)
        timeout -k 5 $limit "$PROBE" --stamp cam --read "enc:$T/rows" --stats "$T/enc.stats" \
            $src ! $caps ! queue max-size-buffers=8 max-size-bytes=0 max-size-time=0 ! $ENC \
            >"$T/enc.log" 2>&1 || echo "  (single: exit $?)" >&2
        cp "$T/enc.stats" "$T/cap.stats"
        ;;
    mbq)
        "$MBQCTL" unlink bench/encode >/dev/null 2>&1 || true
        "$MBQCTL" unlink bench/frames >/dev/null 2>&1 || true
        timeout -k 5 $limit "$PROBE" --read "enc:$T/rows" --stats "$T/enc.stats" \
            mbqsrc queue=bench/encode timeout=30000000000 ! $ENC >"$T/enc.log" 2>&1 &
        encp=$!
        timeout -k 5 $limit "$PROBE" --stamp cam --stats "$T/cap.stats" \
            $src ! $caps ! mbqsink queue=bench/encode pool=bench/frames blocks=16 capacity=8 \
            >"$T/cap.log" 2>&1 || echo "  (mbq capture: exit $?)" >&2
        wait $encp || echo "  (mbq encoder: exit $?)" >&2
        ;;
    shm)
        # Sixteen frames of shared memory: the capture's own buffer pool
        # takes its buffers from the same area (shmsink proposes its
        # allocator), and with eight frames' worth capture stalled for good.
        timeout -k 5 $limit "$PROBE" --stamp cam --stats "$T/cap.stats" \
            $src ! $caps ! shmsink socket-path="$T/shm.sock" shm-size=$((w * h * 3 / 2 * 16 + 65536)) \
            wait-for-connection=true sync=false >"$T/cap.log" 2>&1 &
        capp=$!
        mbq_wait_until 20 test -S "$T/shm.sock" || echo "  (shmsink made no socket)" >&2
        # shmsrc carries no end of stream: when shmsink goes, it stops with
        # an error, which ends the run here.
        timeout -k 5 $limit "$PROBE" --read "enc:$T/rows" --stats "$T/enc.stats" \
            shmsrc socket-path="$T/shm.sock" is-live=true do-timestamp=true ! $caps ! $ENC \
            >"$T/enc.log" 2>&1 || true
        if ! wait $capp; then
            echo "  (shm capture: exit $?; logs in $out/shm-${w}x$h-*.log)" >&2
            cp "$T/cap.log" "$out/shm-${w}x$h-capture.log"
            cp "$T/enc.log" "$out/shm-${w}x$h-encoder.log"
        fi
        ;;
    esac
}

# summarise MODE SIZE FPS REP: one line of results.tsv from the run's files.
summarise() {
    local mode=$1 size=$2 fps=$3 rep=$4 stamped n med p95 max stalls ccpu crss
    touch "$T/rows" "$T/cap.stats" "$T/enc.stats"
    # A process that did not finish wrote no figures: "?" in the table.
    stamped=$(sed -n 's/^stamped //p' "$T/cap.stats")
    [ -n "$stamped" ] || stamped=-1
    awk '{ printf "%.3f\n", ($3 - $2) / 1e6 }' "$T/rows" | sort -g >"$T/lat"
    n=$(wc -l <"$T/lat")
    if [ "$n" -gt 0 ]; then
        med=$(sed -n "$(( (n + 1) / 2 ))p" "$T/lat")
        p95=$(sed -n "$(( (n * 95 + 99) / 100 ))p" "$T/lat")
        max=$(tail -1 "$T/lat")
    else
        med=0 p95=0 max=0
    fi
    # In arrival order, a gap over twice the period is a stall.
    stalls=$(awk '{ print $3 }' "$T/rows" | sort -n |
             awk -v p="$((2000000000 / fps))" 'NR > 1 && $1 - prev > p { s++ } { prev = $1 } END { print s + 0 }')
    ccpu=$(sed -n 's/^cpu_s //p' "$T/cap.stats") crss=$(sed -n 's/^rss_kb //p' "$T/cap.stats")
    [ "$mode" != single ] || ccpu=- crss=-
    printf '%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n' "$mode" "$size" "$rep" "$n" \
        "$stamped" "$med" "$p95" "$max" "$stalls" "${ccpu:-?}" "${crss:-0}" \
        "$(sed -n 's/^cpu_s //p' "$T/enc.stats")" "$(sed -n 's/^rss_kb //p' "$T/enc.stats")"
}

tsv=$out/results.tsv
printf 'mode\tsize\trep\tdelivered\tcaptured\tlat_p50_ms\tlat_p95_ms\tlat_max_ms\tstalls\tcap_cpu_s\tcap_rss_kb\tenc_cpu_s\tenc_rss_kb\n' >"$tsv"
for rep in $(seq 1 "$reps"); do
    for cfg in "1280 720 30" "1920 1080 60"; do
        set -- $cfg
        for mode in single mbq shm; do
            echo "run $rep: $mode ${1}x$2 at $3 fps, $seconds s" >&2
            run_one $mode "$1" "$2" "$3"
            summarise $mode "${2}p$3" "$3" "$rep" | tee -a "$tsv" >&2
        done
    done
done

echo
echo "| run | size | transport | delivered | stalls | latency p50 / p95 / max (ms) | capture CPU s, peak RSS MiB | encoder CPU s, peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' 'NR > 1 {
    crss = ($11 == "-") ? "-" : sprintf("%.0f", $11 / 1024)
    ccpu = ($10 == "-") ? "(one process)" : ($10 == "?") ? "did not finish" : $10 " s, " crss
    cap = ($5 < 0) ? "?" : $5
    printf "| %d | %s | %s | %d/%s | %d | %.1f / %.1f / %.1f | %s | %s s, %.0f |\n",
        $3, $2, ($1 == "single" ? "one process (queue)" : $1 == "mbq" ? "mbqsink/mbqsrc" : "shmsink/shmsrc"),
        $4, cap, $9, $6, $7, $8, ccpu, $12, $13 / 1024 }' "$tsv"
echo
echo "(every run: $tsv; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
