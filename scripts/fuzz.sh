#!/bin/sh
# Runs the libFuzzer targets long (docs/MBQD.md, "Fuzzing"): builds them with
# clang in build-fuzz, then runs each for RUNS executions (default 5000000,
# so 10 M in total) over a working copy of its seed corpus, one target per
# core. Crashes are written to build-fuzz/fuzz-out/TARGET/ as crash-*,
# leak-*, timeout-*; the final statistics (executions, coverage) are printed.
# Usage: scripts/fuzz.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5000000}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMBQ_FUZZ=ON -DMBQ_WERROR=ON
cmake --build build-fuzz -j"$(nproc)" --target fuzz_dispatch fuzz_shm
out=build-fuzz/fuzz-out
pids=""
for t in dispatch shm; do
  mkdir -p "$out/$t/corpus"
  (cd "$out/$t" && ASAN_OPTIONS=detect_leaks=1 "../../tests/fuzz/fuzz_$t" -runs="$runs" -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 corpus "../../../tests/fuzz/corpus/$t" \
     >log 2>&1; echo "exit $?" >>log) &
  pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
for t in dispatch shm; do
  echo "== fuzz_$t"
  grep -E '^#[0-9]+ +DONE|^stat::|^exit|ERROR' "$out/$t/log" || true
  ls "$out/$t" | grep -E '^(crash|leak|timeout|oom)-' || echo "no crashes"
done
exit $rc
