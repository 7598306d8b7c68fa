#!/bin/sh
# Installs the dependencies, builds mbq, and runs every test: first the
# normal build (warnings are errors), then the whole suite again under
# AddressSanitizer and UndefinedBehaviorSanitizer.
# Usage: scripts/test.sh [ctest arguments, e.g. -L unit]
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMBQ_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" "$@"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMBQ_SANITIZE=ON -DMBQ_WERROR=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" "$@"
