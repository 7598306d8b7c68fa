#!/bin/sh
# Installs the dependencies, builds mbq, and runs every test: the normal
# build (warnings are errors), the whole suite again under AddressSanitizer
# and UndefinedBehaviorSanitizer, the unit and integration tests under
# ThreadSanitizer, clang at -O3 -DNDEBUG (unit tests) and an i686 build of
# the layout, the libFuzzer targets for a short bounded
# time each (clang; see scripts/fuzz.sh), and the tests under a real systemd booted
# in systemd-nspawn (skipped, with the reason printed, where the machine
# cannot run a container).
# Usage: scripts/test.sh [ctest arguments, e.g. -L unit]
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMBQ_WERROR=ON
cmake --build build -j"$jobs"
# The real-systemd test boots a container: it runs once, below, not per build.
ctest --test-dir build --output-on-failure -j"$jobs" -LE '^systemd$' "$@"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMBQ_SANITIZE=ON -DMBQ_WERROR=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE '^systemd$' "$@"

# Other compilers and targets. clang at -O3 -DNDEBUG: assert()s vanish and
# the optimiser takes the most liberties with undefined behaviour; the unit
# tests run there. i686 (-m32): common/, the shm/ sources with layout
# assertions and client/abi_twins.c only (MBQ_LAYERS_ONLY: nothing that needs
# i386 libevent or protobuf-c), so that the _Static_asserts promising that
# 32- and 64-bit processes agree on the segments are evaluated. Build only.
CC=clang cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_C_FLAGS_RELEASE=-O3 -DNDEBUG" -DMBQ_WERROR=ON
cmake --build build-clang -j"$jobs"
ctest --test-dir build-clang --output-on-failure -j"$jobs" -L '^unit$'
cmake -S . -B build-i686 -DMBQ_LAYERS_ONLY=ON -DCMAKE_C_FLAGS=-m32 -DMBQ_WERROR=ON
cmake --build build-i686 -j"$jobs"

# ThreadSanitizer over the unit and integration tests (the data plane's
# threads within a process; processes are separate address spaces). A
# report fails the test (exitcode); tests/tsan.supp lists the races TSan
# cannot see the synchronisation of, each with its reason.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DMBQ_TSAN=ON -DMBQ_WERROR=ON
cmake --build build-tsan -j"$jobs"
TSAN_OPTIONS="suppressions=$(pwd)/tests/tsan.supp exitcode=66 second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j"$jobs" -L '^(unit|integration)$' "$@"

if [ $# -eq 0 ]; then
  # The fuzz targets only (the rest of this tree is instrumented and not
  # needed): each runs 20 s over its seed corpus, both at once.
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMBQ_FUZZ=ON -DMBQ_WERROR=ON
  cmake --build build-fuzz -j"$jobs" --target fuzz_dispatch fuzz_shm
  ctest --test-dir build-fuzz --output-on-failure -j2 -L fuzz

  rc=0
  scripts/test-systemd.sh || rc=$?
  case $rc in
    0) ;;
    2) echo "test.sh: the real-systemd tests were SKIPPED (reason above)" ;;
    *) exit "$rc" ;;
  esac
fi
