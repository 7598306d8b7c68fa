# Shell helpers shared by scripts/run.sh, scripts/bench-gst.sh and the
# end-to-end tests (tests/gst-e2e, examples/pipeline): a private mbqd, bounded
# waits, and figures read from mbqctl. Sourced by bash scripts.
#
# Nothing here sleeps to synchronise: a daemon is ready when a client can
# list its objects, a process is done when wait(1) returns, and every wait
# polls a real condition against a deadline, so a broken daemon or pipeline
# makes the caller fail, never hang. Processes a script starts should run
# under timeout(1) as well, so that wait(1) on them is bounded too.
#
# Needs: MBQD (the mbqd binary) and MBQCTL (mbqctl) set by the caller.

# mbq_now_ms: CLOCK_MONOTONIC-ish milliseconds (uptime is good enough to
# bound a wait).
mbq_now_ms() {
    local up
    read -r up _ </proc/uptime
    echo $(( ${up%.*} * 1000 + 10#${up#*.} * 10 ))
}

# mbq_wait_until SECONDS CMD...: runs CMD every 20 ms until it succeeds (0)
# or SECONDS pass (1).
mbq_wait_until() {
    local limit=$(( $(mbq_now_ms) + $1 * 1000 ))
    shift
    until "$@"; do
        [ "$(mbq_now_ms)" -lt "$limit" ] || return 1
        sleep 0.02
    done
}

# mbq_daemon_start DIR: starts mbqd on DIR/mbqd.sock (its log in
# DIR/mbqd.log), waits until it serves, and exports MBQ_SOCKET. Sets
# MBQD_PID. 0, or 1 with a message.
mbq_daemon_start() {
    local dir=$1
    export MBQ_SOCKET="$dir/mbqd.sock"
    "$MBQD" --socket "$MBQ_SOCKET" --log-target stderr >>"$dir/mbqd.log" 2>&1 &
    MBQD_PID=$!
    if ! mbq_wait_until 20 mbq_daemon_serves; then
        echo "mbqd did not serve on $MBQ_SOCKET within 20 s; its log:" >&2
        cat "$dir/mbqd.log" >&2
        return 1
    fi
}

mbq_daemon_serves() {
    kill -0 "$MBQD_PID" 2>/dev/null || return 2
    "$MBQCTL" --socket "$MBQ_SOCKET" list >/dev/null 2>&1
}

# mbq_daemon_stop: SIGTERM, then waits for it (bounded: SIGKILL after 10 s).
mbq_daemon_stop() {
    [ -n "${MBQD_PID:-}" ] || return 0
    kill "$MBQD_PID" 2>/dev/null || true
    if ! mbq_wait_until 10 mbq_gone "$MBQD_PID"; then
        kill -9 "$MBQD_PID" 2>/dev/null || true
    fi
    wait "$MBQD_PID" 2>/dev/null || true
    MBQD_PID=
}

# mbq_gone PID: the process has exited (a zombie counts as gone).
mbq_gone() {
    local state
    [ -r "/proc/$1/stat" ] || return 0
    state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 0
    [ "$state" = Z ] || [ -z "$state" ]
}

# mbq_stat NAME FIELD: one figure from `mbqctl --json stat NAME` (numbers,
# booleans and strings at the top level), or nothing if absent.
mbq_stat() {
    "$MBQCTL" --socket "$MBQ_SOCKET" --json stat "$1" 2>/dev/null |
        sed -n 's/.*"'"$2"'":\("[^"]*"\|[-0-9.]*\|true\|false\).*/\1/p' | tr -d '"'
}

# mbq_pool_idle POOL: every block of POOL is back (none in use) and every
# allocation has been freed.
mbq_pool_idle() {
    local used alloc frees
    used=$(mbq_stat "$1" blocks_used)
    alloc=$(mbq_stat "$1" allocations)
    frees=$(mbq_stat "$1" frees)
    [ -n "$used" ] && [ "$used" -eq 0 ] && [ "$alloc" = "$frees" ]
}

# mbq_queue_exists NAME
mbq_queue_exists() {
    "$MBQCTL" --socket "$MBQ_SOCKET" stat "$1" >/dev/null 2>&1
}

# mbq_check_video FILE FRAMES SECONDS: ffprobe finds a video stream in FILE
# with FRAMES decoded frames, a duration of SECONDS (to the millisecond),
# and strictly increasing presentation times (SECONDS empty: any duration).
# Sets MBQ_CHECK_RESULT to what
# it found (or what is wrong); 0 if every check holds.
mbq_check_video() {
    local file=$1 want_frames=$2 want_s=$3 pts dur n bad
    MBQ_CHECK_RESULT=
    if [ ! -s "$file" ]; then
        MBQ_CHECK_RESULT="missing or empty"
        return 1
    fi
    if ! pts=$(ffprobe -v error -select_streams v:0 -show_entries frame=pts_time \
                       -of csv=p=0 "$file" 2>&1); then
        MBQ_CHECK_RESULT="ffprobe cannot read it: $(echo "$pts" | head -2 | tr '\n' ' ')"
        return 1
    fi
    # One line a frame (side data adds empty fields and lines).
    pts=$(printf '%s\n' "$pts" | tr -d , | grep -E '^-?[0-9]') || true
    dur=$(ffprobe -v error -select_streams v:0 -show_entries stream=duration -of csv=p=0 "$file")
    n=$(printf '%s\n' "$pts" | grep -c .) || true
    # The first timestamp that is not above the one before it, if any.
    bad=$(printf '%s\n' "$pts" | awk 'NR > 1 && !($1 > prev) { print NR ": " prev " then " $1; exit }
                                      { prev = $1 }')
    MBQ_CHECK_RESULT="$n frames, duration $dur s, timestamps $(printf '%s\n' "$pts" | head -1) .. $(printf '%s\n' "$pts" | tail -1) s"
    if [ "$n" != "$want_frames" ]; then
        MBQ_CHECK_RESULT="$MBQ_CHECK_RESULT; expected $want_frames frames"
        return 1
    fi
    if [ -n "$want_s" ] && ! awk -v d="$dur" -v w="$want_s" 'BEGIN { x = d - w; exit !(x < 0.0005 && x > -0.0005) }'; then
        MBQ_CHECK_RESULT="$MBQ_CHECK_RESULT; expected a duration of $want_s s"
        return 1
    fi
    if [ -n "$bad" ]; then
        MBQ_CHECK_RESULT="$MBQ_CHECK_RESULT; timestamps do not rise at frame $bad"
        return 1
    fi
    MBQ_CHECK_RESULT="$MBQ_CHECK_RESULT, strictly increasing"
}
