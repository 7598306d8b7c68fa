#!/bin/sh
# The performance comparison in one command (docs/PERFORMANCE.md): installs
# what the benchmark needs besides mbq's own dependencies (iceoryx's C
# binding and RouDi, gnuplot), builds mbqd and bench_transports in Release,
# runs every case against mbq's peers — the raw shared-memory ring, iceoryx,
# POSIX mq, Unix SOCK_SEQPACKET — and writes docs/performance/: summary.md
# (the tables), results.tsv (every measurement), *.png (the plots).
# About 8 minutes on a quiet 2-vCPU machine; longer if it has to wait for
# quiet. Arguments go to bench_transports, e.g.:
#   scripts/bench.sh                     everything, 5 repetitions
#   scripts/bench.sh --reps 3 --cases rtt64,stream64
#   scripts/bench.sh --quick --reps 1    a smoke test (a tenth of the iterations)
#   scripts/bench.sh --help
# Then it runs bench_scale (the scale curves and a client's page faults:
# tests/bench/bench_scale.c) into the same directory: scale.txt,
# scale_*.dat and scale_*.png; a few more minutes.
# Environment: MBQ_BENCH_BUILD (build directory, default build-bench),
# MBQ_BENCH_OUT (output directory, default docs/performance),
# MBQ_BENCH_SCALE (0: skip the scale curves; default 1),
# MBQ_BENCH_SCALE_REPS (their repetitions, default 3).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
PKGS="iceoryx libiceoryx-binding-c-dev gnuplot-nox"
missing=
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  # Without them the run goes on: iceoryx's cases are skipped (and said so),
  # and there are no plots.
  { $SUDO apt-get update &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -o DPkg::Lock::Timeout=300 $missing; } ||
    echo "bench.sh: could not install$missing; going on without" >&2
fi
build=${MBQ_BENCH_BUILD:-build-bench}
out=${MBQ_BENCH_OUT:-docs/performance}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_transports bench_scale mbqd mbqctl
MBQ_BENCH_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || MBQ_BENCH_REVISION="$MBQ_BENCH_REVISION + uncommitted changes"
export MBQ_BENCH_REVISION
rc=0
tests/bench/run_transports.sh "$build/tests/bench/bench_transports" "$build/daemon/mbqd" "$out" "$@" || rc=$?
if [ "${MBQ_BENCH_SCALE:-1}" != 0 ]; then
  "$build/tests/bench/bench_scale" --mbqd "$build/daemon/mbqd" --mbqctl "$build/client/mbqctl" \
    --out "$out" --reps "${MBQ_BENCH_SCALE_REPS:-3}" > "$out/scale.txt" || rc=$?
  if command -v gnuplot >/dev/null 2>&1; then
    here=$(pwd)
    (cd "$out" && gnuplot "$here/tests/bench/bench_scale.gp") || rc=1
  fi
fi
exit $rc
