#!/bin/bash
# The preview takes the newest frame, whatever it missed. mbq-capture makes
# 6 frames as fast as it can while nobody reads; then mbq-preview, started
# after capture has finished, must show exactly one frame, the last (5), and
# count the 5 before it as dropped by its queue; then mbq-encode drains its
# queue and every block must be back in the pool. With a deeper preview
# queue (the demo kept 4) the preview would show frames 2..5, four of them.
#
# Environment (set by CTest): MBQD, MBQCTL, and PIPELINE_BIN, the folder of
# mbq-capture, mbq-preview and mbq-encode.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib/mbq.sh"

dir=$(mktemp -d "${TMPDIR:-/tmp}/mbq-preview-XXXXXX")
trap 'mbq_daemon_stop; rm -rf "$dir"' EXIT
mbq_daemon_start "$dir"

fail() { echo "FAIL: $*" >&2; exit 1; }
bin=$PIPELINE_BIN
timeout -k 5 30 "$bin/mbq-capture" --frames 6 --fps 1000 --report "$dir/capture" ||
    fail "mbq-capture failed"
timeout -k 5 30 "$bin/mbq-preview" --fps 0 --open-timeout 5 --report "$dir/preview" ||
    fail "mbq-preview failed"
timeout -k 5 30 "$bin/mbq-encode" --open-timeout 5 --report "$dir/encode" >/dev/null ||
    fail "mbq-encode failed"

get() { sed -n "s/^$2 //p" "$dir/$1"; }
echo "preview report:"; sed 's/^/  /' "$dir/preview"
[ "$(get capture frames)" = 6 ] || fail "capture made $(get capture frames) frames, not 6"
[ "$(get preview frames)" = 1 ] || fail "the preview showed $(get preview frames) frames, not 1 (the newest)"
[ "$(get preview next_number)" = 6 ] || fail "the preview's frame was $(( $(get preview next_number) - 1 )), not 5 (the newest)"
[ "$(get preview dropped)" = 5 ] || fail "the preview counted $(get preview dropped) drops, not 5"
[ "$(mbq_stat demo/preview dropped)" = 5 ] || fail "demo/preview dropped $(mbq_stat demo/preview dropped), not 5"
[ "$(get encode frames)" = 6 ] || fail "the encoder got $(get encode frames) frames, not 6"
mbq_wait_until 10 mbq_pool_idle demo/frames || fail "pool blocks still in use: $(mbq_stat demo/frames blocks_used)"
echo "PASS: the preview took frame 5 of 0..5, the newest; every block came back"
