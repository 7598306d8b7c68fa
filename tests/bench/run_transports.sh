#!/bin/sh
# Runs bench_transports and draws its plots: what scripts/bench.sh and
# `ctest -C Bench -L bench` both run.
#   run_transports.sh BENCH_TRANSPORTS MBQD OUT_DIR [bench_transports options...]
# Writes OUT_DIR/summary.md, results.tsv, *.dat and, when gnuplot is
# installed, *.png (tests/bench/bench_plots.gp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bench=$1 mbqd=$2 out=$3
shift 3
mkdir -p "$out"
rc=0
# The config's path as seen from here (it is recorded in the report).
config=$(realpath --relative-to=. "$here/roudi.toml" 2>/dev/null || echo "$here/roudi.toml")
"$bench" --out "$out" --mbqd "$mbqd" --roudi-config "$config" "$@" || rc=$?
if command -v gnuplot >/dev/null 2>&1; then
  (cd "$out" && gnuplot "$here/bench_plots.gp") || { echo "run_transports.sh: gnuplot failed" >&2; rc=1; }
else
  echo "run_transports.sh: gnuplot not installed; no plots" >&2
fi
exit $rc
