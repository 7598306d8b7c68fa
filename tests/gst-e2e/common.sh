# What every end-to-end GStreamer test shares: a private mbqd in a fresh
# directory, gst-launch-1.0 processes each bounded by timeout(1) with their
# output in that directory, and checks that say what went wrong.
#
# Environment (CTest sets it): MBQD, MBQCTL, GST_PLUGIN_PATH (the folder of
# libgstmbq.so). A test exits 0 (pass), 1 (fail) or 77 (skipped: what it
# needs is missing; CTest's SKIP_RETURN_CODE).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/mbq.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/mbq-gst-XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    mbq_daemon_stop
    if [ "${KEEP:-0}" = 1 ] || [ "${FAILED:-0}" = 1 ]; then
        echo "(files kept in $T)"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
export GST_DEBUG_NO_COLOR=1

fail() {
    FAILED=1
    echo "FAIL: $*" >&2
    local f
    for f in "$T"/*.log; do
        [ -e "$f" ] || continue
        echo "---- $(basename "$f") (last lines)" >&2
        tail -15 "$f" >&2
    done
    exit 1
}
skip() { echo "SKIP: $*"; exit 77; }
note() { echo "$*"; }

# gst_env CMD...: runs a GStreamer tool; in a sanitizer build with the
# sanitizer runtime loaded first (see CMakeLists.txt). Every GStreamer
# process of a test must: one that scans the registry without it would
# record the plugin as unloadable for the others.
gst_env() {
    if [ -n "${MBQ_GST_PRELOAD:-}" ]; then
        env LD_PRELOAD="$MBQ_GST_PRELOAD" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" "$@"
    else
        "$@"
    fi
}

need() { # need ELEMENT...: skips the test if an element is missing
    local e
    for e in "$@"; do
        gst_env gst-inspect-1.0 "$e" >/dev/null 2>&1 || skip "GStreamer element $e is not installed"
    done
}

# gst NAME SECONDS PIPELINE...: starts gst-launch-1.0 in the background,
# killed after SECONDS; its output goes to $T/NAME.log. Sets LAST_PID (the
# process to wait for: timeout(1), which exits with gst-launch's status, or
# 128 + the signal that killed it) and GST_PID (gst-launch-1.0 itself, the
# one to signal).
gst() {
    local name=$1 secs=$2
    shift 2
    timeout -k 5 "$secs" env ${MBQ_GST_PRELOAD:+LD_PRELOAD="$MBQ_GST_PRELOAD"} \
        ${MBQ_GST_PRELOAD:+ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"} \
        gst-launch-1.0 "$@" >"$T/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    mbq_wait_until 10 child_of "$LAST_PID" || fail "$name: gst-launch-1.0 did not start"
    PIDS+=("$GST_PID")
}
child_of() { GST_PID=$(pgrep -P "$1" | head -1); [ -n "$GST_PID" ]; }

# reap PID: waits for it (bounded by its timeout); its exit status in RC.
reap() {
    RC=0
    wait "$1" || RC=$?
}

# expect_exit NAME PID STATUS: the process ended with STATUS.
expect_exit() {
    reap "$2"
    [ "$RC" = "$3" ] || fail "$1 exited with status $RC, expected $3 (124: it was still running at its time limit)"
}

# A queue counter has reached at least N.
stat_at_least() { # NAME FIELD N
    local v
    v=$(mbq_stat "$1" "$2")
    [ -n "$v" ] && [ "$v" -ge "$3" ]
}

# Elapsed milliseconds since a mark taken with mark=$(mbq_now_ms).
since() { echo $(( $(mbq_now_ms) - $1 )); }

mbq_daemon_start "$T" || fail "mbqd did not start"
