#!/bin/bash
# Runs inside the systemd-nspawn container, as mbq-ci-test.service (a
# oneshot whose exit status nspawn returns). Checks mbqd under a real
# systemd 252: socket activation, READY/STATUS, data streaming through
# `systemctl restart` and through a watchdog kill (fd store), the unit's
# hardening, the journal fields, and GStreamer pipelines (mbqsink, mbqsrc)
# through `systemctl restart` and through `stop` + start. Each check prints PASS or FAIL with what
# it saw; the exit status is the number of failures (capped at 99).
#
# Results go to /ci-out (bind-mounted from the host): test.log, the stream
# programs' output, and the journal of mbqd at the end.
#
# Synchronisation is by state, never by sleeping: systemctl restart returns
# once the new daemon said READY=1; stream progress is the consumer's counter
# file, polled with a bound; the producer waits at a gate (a file) that this
# script creates once the restart it wants mid-stream has happened.
set -u
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
OUT=/ci-out
LIB=/usr/local/libexec/mbq-ci
RUN=/run/mbq-ci
STREAM=$LIB/mbq-stream
N=${MBQ_CI_STREAM_COUNT:-3000}   # buffers per stream
PACE=${MBQ_CI_STREAM_PACE_US:-500}
mkdir -p "$RUN" "$OUT"
: >"$OUT/test.log"
npass=0 nfail=0 T0=$(date +%s%N)

ts()   { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[%3d.%03d]' $((ms / 1000)) $((ms % 1000)); }
say()  { echo "$(ts) $*" | tee -a "$OUT/test.log"; }
pass() { npass=$((npass + 1)); say "PASS $*"; }
fail() { nfail=$((nfail + 1)); say "FAIL $*"; }
# check NAME COMMAND...: PASS/FAIL by the command's status
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
prop() { systemctl show -p "$2" --value "$1" 2>/dev/null; }
# waitfor SECONDS COMMAND...: polls COMMAND every 20 ms until it succeeds
waitfor() {
    local limit=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$limit" ] || return 1
        sleep 0.02
    done
}
progress() { local n=0; read -r n <"$RUN/progress" 2>/dev/null; echo "${n:-0}"; }
progress_at_least() { [ "$(progress)" -ge "$1" ]; }
# ... or the consumer has exited (then waiting longer is pointless)
progress_or_gone() { progress_at_least "$1" || ! kill -0 "$CPID" 2>/dev/null; }
prop_is() { [ "$(prop "$1" "$2")" = "$3" ]; }
prop_not() { [ "$(prop "$1" "$2")" != "$3" ]; }
dump_journal() {
    journalctl -b -u mbqd.service -u mbqd.socket -o short-monotonic --no-pager >"$OUT/mbqd.journal" 2>&1
    journalctl -b -u mbqd.service -o json --no-pager >"$OUT/mbqd.journal.json" 2>&1
}
finish() {
    dump_journal
    say "RESULT: $npass passed, $nfail failed"
    local rc=$nfail; [ $rc -gt 99 ] && rc=99
    exit $rc
}

ldconfig   # libmbq.so.0 was installed by `cmake --install`, as a package would (its postinst runs ldconfig)
say "mbq real-systemd tests: $(systemctl --version | head -1), $(mbqd --version 2>&1 | head -1)"
# (not `is-system-running --wait`: this unit is itself part of the boot transaction)
say "system state: $(systemctl is-system-running 2>&1); failed units: $(systemctl list-units --failed --plain --no-legend | awk '{printf "%s ", $1}')"

# ---- 0. the installed units are clean ----------------------------------------
# systemd-analyze verify exits 0 on parse warnings: any output is a failure.
out=$(systemd-analyze verify mbqd.socket mbqd.service 2>&1)
if [ -z "$out" ]; then pass "0 systemd-analyze verify mbqd.socket mbqd.service: no output"
else fail "0 systemd-analyze verify mbqd.socket mbqd.service printed: $(echo "$out" | tr '\n' '|')"; fi
say "     $(systemd-analyze security mbqd.service 2>&1 | grep -i 'overall exposure' || echo 'security: n/a')"
sed -n 's/^ExecStart=/     ExecStart=/p;s/^WatchdogSec=/     WatchdogSec=/p' \
    "$(systemctl show -p FragmentPath --value mbqd.service)" | tee -a "$OUT/test.log"

# 0b. everything mbq installed finds its libraries in this minimal rootfs
# (the run-time packages a distribution package would depend on).
missing=$(for f in /usr/bin/mbqd /usr/bin/mbqctl /usr/lib/*/libmbq.so.0 "$STREAM"; do
              ldd "$f" 2>&1 | grep 'not found' | sed "s#^#$f: #"; done)
if [ -z "$missing" ]; then
    pass "0b run-time libraries: $(ldd /usr/bin/mbqd /usr/lib/*/libmbq.so.0 | awk '$2 == "=>" && $1 !~ /^(libc|libm|ld-linux)/ {print $1}' | sort -u | tr '\n' ' ')all found"
else
    fail "0b run-time libraries missing: $(echo "$missing" | tr '\n' '|')"
fi

# ---- 1. socket activation on first connection --------------------------------
s_sock=$(prop mbqd.socket ActiveState)/$(prop mbqd.socket SubState)
s_before=$(prop mbqd.service ActiveState)
listen=$(prop mbqd.socket Listen)
mbqctl_out=$(timeout 20 mbqctl list 2>&1); mbqctl_rc=$?
s_after=$(prop mbqd.service ActiveState)
if [ "$s_sock" = active/listening ] && [ "$s_before" = inactive ] && [ $mbqctl_rc = 0 ] &&
   [ "$s_after" = active ]; then
    pass "1 socket activation: mbqd.socket $s_sock on '$listen'; mbqd.service $s_before before, $s_after after 'mbqctl list' (rc $mbqctl_rc)"
else
    fail "1 socket activation: mbqd.socket $s_sock on '$listen'; mbqd.service $s_before before, $s_after after 'mbqctl list' (rc $mbqctl_rc: $(echo "$mbqctl_out" | head -3 | tr '\n' '|'))"
fi
# Not in the fallback: the socket really is systemd's (the daemon did not bind its own).
pid=$(prop mbqd.service MainPID)
if [ "${pid:-0}" != 0 ]; then
    inherited=$(prop mbqd.socket NAccepted)/$(prop mbqd.socket NConnections)
    say "     MainPID=$pid; mbqd.socket NAccepted/NConnections=$inherited; socket $(stat -c '%U:%G %a' /run/mbq/mbqd.sock 2>&1), /run/mbq $(stat -c '%U:%G %a' /run/mbq 2>&1)"
fi

# ---- 2. READY and STATUS --------------------------------------------------------
waitfor 10 prop_is mbqd.service SubState running
show=$(systemctl show -p Type,SubState,StatusText,NFileDescriptorStore,FileDescriptorStoreMax,WatchdogUSec mbqd.service)
status_line=$(systemctl status --no-pager mbqd.service 2>&1 | grep -m1 'Status:' | sed 's/^ *//')
sub=$(prop mbqd.service SubState); text=$(prop mbqd.service StatusText); typ=$(prop mbqd.service Type)
if [ "$typ" = notify ] && [ "$sub" = running ] && [ -n "$text" ] && [ -n "$status_line" ]; then
    pass "2 READY/STATUS: $(echo "$show" | tr '\n' ' ')| systemctl status: $status_line"
else
    fail "2 READY/STATUS: $(echo "$show" | tr '\n' ' ')| systemctl status: '${status_line}'"
fi

# ---- 5. hardening in force -----------------------------------------------------------
pid=$(prop mbqd.service MainPID)
if [ "${pid:-0}" != 0 ] && [ -r "/proc/$pid/status" ]; then
    st=$(cat "/proc/$pid/status")
    f() { echo "$st" | awk -v k="$1:" '$1 == k {print $2}'; }
    uid=$(f Uid); capeff=$(f CapEff); capbnd=$(f CapBnd); nnp=$(f NoNewPrivs); sec=$(f Seccomp)
    user=$(prop mbqd.service User); dyn=$(prop mbqd.service DynamicUser)
    name=$(getent passwd "$uid" | cut -d: -f1)
    seen="pid $pid uid=$uid (${name:-no passwd entry}; User=$user DynamicUser=$dyn) CapEff=$capeff CapBnd=$capbnd NoNewPrivs=$nnp Seccomp=$sec"
    if [ "$uid" != 0 ] && [ -n "$uid" ] && [ "$capeff" = 0000000000000000 ] && [ "$nnp" = 1 ] && [ "$sec" = 2 ]; then
        pass "5 hardening: $seen"
    else
        fail "5 hardening: $seen"
    fi
else
    fail "5 hardening: no running mbqd (MainPID=${pid:-none})"
fi

# ---- 3 and 4: streams through restarts ------------------------------------------------------
# stream NAME GATES...: starts a consumer and a producer on pool/queue ci/NAME
# with gates at the given sequence numbers (gate files $RUN/NAME.gateK).
stream_start() {
    local name=$1; shift
    local gates=() k=0
    for g in "$@"; do gates+=(--gate "$g:$RUN/$name.gate$k"); k=$((k + 1)); done
    rm -f "$RUN/progress" "$RUN/$name".gate*
    "$STREAM" consumer --count "$N" --progress "$RUN/progress" \
        --pool "ci/$name-pool" --queue "ci/$name-queue" >"$OUT/$name-consumer.log" 2>&1 &
    CPID=$!
    "$STREAM" producer --count "$N" --pace-us "$PACE" "${gates[@]}" \
        --pool "ci/$name-pool" --queue "ci/$name-queue" >"$OUT/$name-producer.log" 2>&1 &
    PPID_=$!
}
# stream_end NAME NUM WHAT EXTRA: waits for both, checks exactly-once (NUMb),
# the library's reconnection (NUMc) and that no pool block leaked (NUMd)
stream_end() {
    local name=$1 num=$2 what=$3 extra=$4 crc prc label="${2}b exactly-once through $3"
    wait "$CPID"; crc=$?
    wait "$PPID_"; prc=$?
    local cline pline ccontrol pcontrol
    cline=$(grep -m1 'consumer: done' "$OUT/$name-consumer.log" || tail -2 "$OUT/$name-consumer.log" | tr '\n' '|')
    pline=$(grep -m1 'producer: done' "$OUT/$name-producer.log" || tail -2 "$OUT/$name-producer.log" | tr '\n' '|')
    if [ $crc = 0 ] && [ $prc = 0 ]; then
        pass "$label: $extra; $cline; $pline"
    else
        fail "$label: $extra; consumer rc=$crc: $cline; producer rc=$prc: $pline"
        grep -h 'FAIL\|expected\|corrupt\|gate' "$OUT/$name-consumer.log" "$OUT/$name-producer.log" | head -10 | sed 's/^/     /' | tee -a "$OUT/test.log"
    fi
    ccontrol=$(grep -m1 'control:' "$OUT/$name-consumer.log"); pcontrol=$(grep -m1 'control:' "$OUT/$name-producer.log")
    if [[ "$ccontrol" == *"control: ok"* && "$pcontrol" == *"control: ok"* ]]; then
        pass "${num}c reconnect: libmbq's control connection works after the restart(s): $ccontrol; $pcontrol"
    else
        fail "${num}c reconnect: libmbq's control connection after the restart(s): ${ccontrol:-consumer: no report}; ${pcontrol:-producer: no report}"
    fi
    # Nothing leaked: with both gone, every block of the pool is free again,
    # and the objects (restored from the fd store) are still listed.
    local st used
    st=$(timeout 10 mbqctl --json stat "ci/$name-pool" 2>&1)
    used=$(echo "$st" | grep -o '"blocks_used":[0-9]*' | cut -d: -f2)
    if [ "$used" = 0 ]; then
        pass "${num}d no leak: pool ci/$name-pool blocks_used=0 after both clients exited"
    else
        fail "${num}d no leak: pool ci/$name-pool after both clients exited: blocks_used=${used:-?} ($(echo "$st" | head -c 300))"
    fi
}
# restart_when_progress NAME AT LABEL COMMAND...: waits until the consumer has
# seen AT buffers, runs COMMAND (which restarts the daemon), records what
# happened, then opens the producer's next gate.
restart_log=
restart_mid_stream() {
    local name=$1 gate=$2 at=$3; shift 3
    if ! waitfor 30 progress_or_gone "$at" || ! progress_at_least "$at"; then
        say "     $name: consumer at $(progress) (wanted $at before the restart; $(kill -0 "$CPID" 2>/dev/null && echo stuck || echo exited))"
        : >"$RUN/$name.gate$gate"; return 1
    fi
    local p0 pid0 pid1 n0 n1 rc
    p0=$(progress); pid0=$(prop mbqd.service MainPID); n0=$(prop mbqd.service NRestarts)
    "$@"; rc=$?
    pid1=$(prop mbqd.service MainPID); n1=$(prop mbqd.service NRestarts)
    local p1; p1=$(progress)
    local fds; fds=$(prop mbqd.service NFileDescriptorStore)
    restart_log="$restart_log [${*:1:2}: rc=$rc pid $pid0->$pid1 NRestarts $n0->$n1 progress $p0->$p1/$N fdstore=$fds]"
    : >"$RUN/$name.gate$gate"
    [ $rc = 0 ] && [ "$pid1" != "$pid0" ] && [ "$pid1" != 0 ] && [ "$p1" -lt "$N" ]
}
# This test starts mbqd 7 times within seconds; systemd's default start rate
# limit (5 starts per 10 s) would stop it, and take mbqd.socket down with it
# ('service-start-limit-hit'). So each deliberate restart resets the counter
# first, as an operator would after a burst of maintenance; the unit stays as
# installed.
do_restart() { systemctl reset-failed mbqd.service; timeout 60 systemctl restart mbqd.service; }

# 3. two `systemctl restart` while the stream runs
say "     3: stream of $N buffers (one per ${PACE} us), restart at 1/5 and 3/5 ..."
stream_start s3 $((N * 2 / 5)) $((N * 4 / 5))
ok3=1
restart_mid_stream s3 0 $((N / 5)) do_restart || ok3=0
restart_mid_stream s3 1 $((N * 3 / 5)) do_restart || ok3=0
listed=$(timeout 10 mbqctl list 2>&1 | grep -c 'ci/s3-')
if [ $ok3 = 1 ] && [ "$listed" = 2 ]; then pass "3a two restarts mid-stream, objects kept ($listed/2 listed):$restart_log"
else fail "3a two restarts mid-stream (each must succeed, change MainPID, finish before the stream does, keep the 2 objects: $listed listed):$restart_log"; fi
stream_end s3 3 "2x systemctl restart" "MainPID $(prop mbqd.service MainPID)"
show=$(systemctl show -p SubState,NFileDescriptorStore,StatusText mbqd.service | tr '\n' ' ')
say "     after 3: $show"

# 4. a watchdog kill
wd=$(prop mbqd.service WatchdogUSec)
# The daemon's test hook: SIGUSR2 stops its watchdog pings at once while it
# keeps serving (daemon/main.c; --debug-hang-after-ms N is the other form).
HANG=${MBQ_CI_HANG:-systemctl kill --kill-who=main -s SIGUSR2 mbqd.service}
hang_hook() { eval "$HANG"; }
if [ "$wd" = 0 ] || [ -z "$wd" ] || [ "$wd" = infinity ]; then
    fail "4 watchdog: mbqd.service has no WatchdogSec (WatchdogUSec=$wd)"
else
    systemctl reset-failed mbqd.service   # (resets NRestarts too)
    n_before=$(prop mbqd.service NRestarts)
    say "     4: stream of $N buffers, hang the daemon ($HANG) at 1/5; WatchdogUSec=$wd"
    stream_start s4 $((N * 2 / 5))
    restart_log=
    wd_restart() {
        hang_hook
        # bounded: watchdog timeout + restart
        waitfor 60 prop_not mbqd.service NRestarts "$n_before" && waitfor 30 prop_is mbqd.service SubState running
    }
    ok4=1
    restart_mid_stream s4 0 $((N / 5)) wd_restart hang || ok4=0
    n_after=$(prop mbqd.service NRestarts)
    result=$(journalctl -b -u mbqd.service -q --no-pager -o cat | grep -c 'Watchdog timeout')
    listed=$(timeout 10 mbqctl list 2>&1 | grep -c 'ci/s4-')
    if [ $ok4 = 1 ] && [ "$n_after" -gt "$n_before" ] && [ "$result" -ge 1 ] && [ "$listed" = 2 ]; then
        pass "4a watchdog kill + restart mid-stream: NRestarts $n_before->$n_after, 'Watchdog timeout' in journal, objects kept ($listed/2 listed);$restart_log"
    else
        fail "4a watchdog kill + restart mid-stream: NRestarts $n_before->$n_after, 'Watchdog timeout' lines=$result, $listed/2 objects listed;$restart_log"
    fi
    stream_end s4 4 "the watchdog kill + restart" "MainPID $(prop mbqd.service MainPID)"
fi

# ---- 8. a client killed around a restart leaks nothing ----------------------------------------
# holder_start NAME: a process holding 8 buffers of pool ci/NAME-pool
holder_start() {
    "$STREAM" holder --count 8 --pool "ci/$1-pool" --queue "ci/$1-queue" >"$OUT/$1-holder.log" 2>&1 &
    HPID=$!
    waitfor 10 grep -q 'holding 8' "$OUT/$1-holder.log"
}
blocks_used() { timeout 10 mbqctl --json stat "ci/$1-pool" 2>&1 | grep -o '"blocks_used":[0-9]*' | cut -d: -f2; }
blocks_used_is() { [ "$(blocks_used "$1")" = "$2" ]; }
# 8a: the daemon crashes (SIGKILL: Restart=on-failure) and the client dies
# while no daemon runs; the restarted daemon must take its blocks back.
if holder_start h8a; then
    u0=$(blocks_used h8a)
    systemctl reset-failed mbqd.service   # (resets NRestarts too)
    n0=$(prop mbqd.service NRestarts)
    systemctl kill --kill-who=main -s SIGKILL mbqd.service
    kill -9 "$HPID"; wait "$HPID" 2>/dev/null
    waitfor 30 prop_not mbqd.service NRestarts "$n0"; waitfor 30 prop_is mbqd.service SubState running
    n1=$(prop mbqd.service NRestarts)
    if waitfor 10 blocks_used_is h8a 0 && [ "$n1" -gt "$n0" ]; then
        pass "8a daemon SIGKILLed (Restart=on-failure: NRestarts $n0->$n1) while a client holding buffers was killed: blocks_used $u0 -> 0"
    else
        fail "8a daemon SIGKILLed (NRestarts $n0->$n1) while a client holding buffers was killed: blocks_used $u0 -> $(blocks_used h8a) (want 0)"
    fi
else
    kill -9 "$HPID" 2>/dev/null; fail "8a holder did not start: $(tail -2 "$OUT/h8a-holder.log" | tr '\n' '|')"
fi
# 8b: a client from before a restart, killed after it, without reconnecting
if holder_start h8b; then
    u0=$(blocks_used h8b)
    do_restart
    kill -9 "$HPID"; wait "$HPID" 2>/dev/null
    if waitfor 10 blocks_used_is h8b 0; then
        pass "8b a client from before a systemctl restart killed after it: blocks_used $u0 -> 0"
    else
        fail "8b a client from before a systemctl restart killed after it: blocks_used $u0 -> $(blocks_used h8b) (want 0)"
    fi
else
    kill -9 "$HPID" 2>/dev/null; fail "8b holder did not start: $(tail -2 "$OUT/h8b-holder.log" | tr '\n' '|')"
fi

# ---- 6. journal fields ---------------------------------------------------------------------------
json=$(journalctl -b -u mbqd.service -o json --no-pager 2>/dev/null)
n_entries=$(echo "$json" | grep -c '"MESSAGE"')
n_daemon=$(echo "$json" | grep '"_COMM":"mbqd"' | grep -c '"PRIORITY"')
has() { echo "$json" | grep -c "\"$1\":"; }
n_obj=$(has MBQ_OBJECT); n_cpid=$(has MBQ_CLIENT_PID)
fields=$(echo "$json" | grep '"_COMM":"mbqd"' | grep -o '"MBQ_[A-Z_]*"' | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}' | tr -d '"')
transports=$(echo "$json" | grep '"_COMM":"mbqd"' | grep -o '"_TRANSPORT":"[a-z]*"' | sort | uniq -c | awk '{printf "%s ", $0}' | tr -d '"')
sample=$(echo "$json" | grep '"MBQ_OBJECT"' | head -1 | grep -o '"\(MESSAGE\|PRIORITY\|MBQ_[A-Z_]*\)":"[^"]*"' | tr '\n' ' ')
if [ "$n_daemon" -gt 0 ] && [ "$n_obj" -gt 0 ] && [ "$n_cpid" -gt 0 ]; then
    pass "6 journal: $n_daemon daemon entries with PRIORITY; MBQ_OBJECT in $n_obj, MBQ_CLIENT_PID in $n_cpid; fields: $fields; transports: $transports; e.g. $sample"
else
    fail "6 journal: $n_entries entries for mbqd.service, $n_daemon from mbqd with PRIORITY; MBQ_OBJECT in $n_obj, MBQ_CLIENT_PID in $n_cpid; MBQ_ fields seen: ${fields:-none}; transports: ${transports:-none}"
fi

# 6b. nothing the daemon said at warning level or worse, except the test
# hook's own warning (a clean run of these tests is not a reason to warn).
warn=$(journalctl -b -p warning -o cat --no-pager _COMM=mbqd 2>/dev/null |
       grep -v 'watchdog pings stopped on request' | sort | uniq -c | sort -rn)
if [ -z "$warn" ]; then
    pass "6b journal: no warnings or errors from mbqd (besides the test hook's)"
else
    fail "6b journal: mbqd logged warnings/errors in a clean run: $(echo "$warn" | head -5 | sed 's/^ *//' | tr '\n' '|')"
fi

# ---- 9. GStreamer through restarts ----------------------------------------------------------------
# A capture pipeline (videotestsrc, live, 100 frames/s) into mbq through
# mbqsink, and a consumer pipeline (mbqsrc ! fakesink) that prints every
# buffer's pts and offset. mbqd is restarted mid-stream: 9a with
# `systemctl restart` (the fd store keeps the objects: every frame must
# arrive, in order), 9b with `systemctl stop` and a start (stop drops the
# store: mbqsink re-creates its queue and pool, mbqsrc finds them; frames
# in the old queue are delivered, at most one frame is lost).
GN=${MBQ_CI_GST_FRAMES:-400}
export GST_REGISTRY=$RUN/gst-registry.bin GST_DEBUG_NO_COLOR=1
gst_frames() { local n; n=$(grep -c 'last-message = chain' "$OUT/$1-consumer.log" 2>/dev/null); echo "${n:-0}"; }
gst_frames_at_least() { [ "$(gst_frames "$1")" -ge "$2" ] || ! kill -0 "$GCPID" 2>/dev/null; }
# gst_start NAME: the consumer, then the capture, on queue ci/NAME
gst_start() {
    GST_DEBUG=mbq:4 timeout 120 gst-launch-1.0 -v mbqsrc queue="ci/$1" timeout=10000000000 \
        ! fakesink silent=false >"$OUT/$1-consumer.log" 2>&1 &
    GCPID=$!
    GST_DEBUG=mbq:3 timeout 120 gst-launch-1.0 videotestsrc is-live=true num-buffers="$GN" \
        ! video/x-raw,format=I420,width=160,height=120,framerate=100/1 \
        ! mbqsink queue="ci/$1" pool="ci/$1-pool" blocks=16 capacity=8 timeout=5000000000 \
        >"$OUT/$1-capture.log" 2>&1 &
    GPPID=$!
}
# gst_result NAME: "frames missing first-pts-error" from the consumer's log:
# how many buffers, how many offsets of 0..GN-1 are missing, and the first
# pts that does not rise (or "ok").
gst_result() {
    grep -o 'pts: [0-9:.]*, duration: [^,]*, offset: [0-9]*' "$OUT/$1-consumer.log" |
        awk -v n="$GN" '{
            split($2, t, ":"); pts = (t[1] * 3600 + t[2] * 60 + t[3]) * 1e9; off = $6
            if (NR > 1 && !(pts > prev) && bad == "") bad = "pts " prev " then " pts " at buffer " NR
            prev = pts; seen[off] = 1; count++
        } END {
            for (i = 0; i < n; i++) if (!(i in seen)) miss++
            printf "%d %d %s\n", count, miss + 0, bad == "" ? "ok" : bad
        }' | tr -d ','
}
# gst_check NAME NUM WHAT MAXLOST RECREATE RESTARTCMD...: a stream through
# RESTARTCMD; RECREATE: whether mbqsink must have re-created its objects
# and mbqsrc left its old queue for the new one (yes: the daemon came back
# without them; no: the store kept them).
gst_check() {
    local name=$1 num=$2 what=$3 maxlost=$4 recreate=$5 crc prc count miss order pid0 pid1 at re=no moved=no
    shift 5
    gst_start "$name"
    if ! waitfor 60 gst_frames_at_least "$name" $((GN / 4)) || ! kill -0 "$GCPID" 2>/dev/null; then
        fail "${num}a GStreamer: the stream did not start ($(gst_frames "$name") frames): $(tail -3 "$OUT/$name-consumer.log" "$OUT/$name-capture.log" | tr '\n' '|')"
        kill "$GCPID" "$GPPID" 2>/dev/null; wait "$GCPID" "$GPPID" 2>/dev/null
        return
    fi
    pid0=$(prop mbqd.service MainPID)
    "$@"
    pid1=$(prop mbqd.service MainPID); at=$(gst_frames "$name")
    wait "$GPPID"; prc=$?
    wait "$GCPID"; crc=$?
    read -r count miss order < <(gst_result "$name")
    local seen="$what mid-stream (MainPID $pid0 -> $pid1, consumer at $at/$GN frames after it);"
    seen="$seen capture rc=$prc, consumer rc=$crc; $count buffers, $miss of $GN offsets missing, timestamps $order"
    grep -q 'reconnected to mbqd' "$OUT/$name-capture.log" && re=yes
    grep -q "queue ci/$name lost" "$OUT/$name-consumer.log" && moved=yes
    seen="$seen; sink: $(grep -m1 -o 'reconnected to mbqd.*' "$OUT/$name-capture.log" || echo 'kept its queue and pool')"
    seen="$seen; source: $(grep -m1 -o "queue ci/$name lost.*" "$OUT/$name-consumer.log" || echo 'stayed on its queue')"
    if [ $prc = 0 ] && [ $crc = 0 ] && [ "$pid1" != "$pid0" ] && [ "$at" -lt "$GN" ] &&
       [ "$order" = ok ] && [ "$miss" -le "$maxlost" ] && [ "$count" = $((GN - miss)) ] &&
       [ "$re" = "$recreate" ] && [ "$moved" = "$recreate" ]; then
        pass "${num} GStreamer capture -> mbq -> consumer through $seen"
    else
        fail "${num} GStreamer capture -> mbq -> consumer through $seen (want: both rc 0, a new MainPID before the end, timestamps rising, at most $maxlost lost, re-created: $recreate)"
    fi
}
do_stop_start() {
    systemctl reset-failed mbqd.service
    timeout 60 systemctl stop mbqd.service 2>/dev/null
    timeout 60 systemctl start mbqd.service
}
if ! command -v gst-launch-1.0 >/dev/null || ! gst-inspect-1.0 mbqsink >/dev/null 2>&1; then
    fail "9 GStreamer: gst-launch-1.0 or the mbq plugin missing in the image: $(gst-inspect-1.0 mbqsink 2>&1 | head -2 | tr '\n' '|')"
else
    gst_check g9a 9a "systemctl restart (fd store)" 0 no do_restart
    gst_check g9b 9b "systemctl stop + start (no store)" 1 yes do_stop_start
fi

# ---- 7. a clean stop ------------------------------------------------------------------------------------
pid_stop=$(prop mbqd.service MainPID)
timeout 60 systemctl stop mbqd.service
res=$(prop mbqd.service Result); code=$(prop mbqd.service ExecMainStatus); st=$(prop mbqd.service ActiveState)
last=$(journalctl -b -q --no-pager -o cat _COMM=mbqd _PID="$pid_stop" 2>/dev/null | tail -1)
if [ "$st" = inactive ] && [ "$res" = success ] && [ "$code" = 0 ]; then
    pass "7 systemctl stop: ActiveState=$st Result=$res ExecMainStatus=$code; mbqd's last words: '$last'"
else
    fail "7 systemctl stop: ActiveState=$st Result=$res ExecMainStatus=$code; mbqd's last words: '$last'"
fi

finish
