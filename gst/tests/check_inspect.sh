#!/bin/sh
# gst-inspect-1.0 finds the mbq plugin and documents each property of both
# elements with a blurb (a line "  name : text").
# Usage: check_inspect.sh GST_INSPECT
# MBQ_INSPECT_PRELOAD (sanitizer builds): preloaded into gst-inspect-1.0
# only, not into the shell tools.
set -eu
inspect=$1
run_inspect() {
  if [ -n "${MBQ_INSPECT_PRELOAD:-}" ]; then
    LD_PRELOAD=$MBQ_INSPECT_PRELOAD "$inspect" "$@"
  else
    "$inspect" "$@"
  fi
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run_inspect mbq >"$out" 2>&1 || { cat "$out"; echo "check_inspect: gst-inspect-1.0 mbq failed" >&2; exit 1; }
grep -q "mbqsink" "$out" && grep -q "mbqsrc" "$out" || { cat "$out"; echo "check_inspect: elements missing" >&2; exit 1; }
check() {
  element=$1; shift
  run_inspect "$element" >"$out" 2>&1 || { cat "$out"; exit 1; }
  for prop in "$@"; do
    if ! grep -Eq "^  $prop +: [^ ]" "$out"; then
      cat "$out"
      echo "check_inspect: $element property '$prop' is missing or has no blurb" >&2
      exit 1
    fi
  done
}
check mbqsink socket queue pool block-size blocks create capacity order full-policy timeout
check mbqsrc socket queue is-live wait-for-queue timeout max-held on-producer-lost
echo "check_inspect: every property of mbqsink and mbqsrc is documented"
