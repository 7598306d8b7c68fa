#!/bin/sh
# Installs the freshly built mbq into a scratch prefix, then builds and runs a
# tiny program against it twice: with pkg-config and with CMake's
# find_package(mbq); then the same two against the build tree, uninstalled.
# Usage: check_install.sh BUILD_DIR C_COMPILER [EXTRA_CFLAGS]
set -eu
build=$1 cc=$2 extra=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

pc=$(find "$tmp/prefix" -name mbq.pc | head -n 1)
[ -n "$pc" ] || { echo "check_install: no mbq.pc installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH="$(dirname "$pc")"
# shellcheck disable=SC2046
"$cc" $extra -o "$tmp/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs mbq)
LD_LIBRARY_PATH=$libdir "$tmp/consumer-pc"

mkdir -p "$tmp/proj"
cat > "$tmp/proj/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(mbq REQUIRED)
add_executable(consumer-cmake "$here/consumer.c")
target_link_libraries(consumer-cmake PRIVATE mbq::mbq)
CMAKE
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/proj/build/consumer-cmake"
echo "check_install: pkg-config and find_package(mbq) both build against the installed library"

# The build tree: mbq-uninstalled.pc, and the exported mbqConfig.cmake.
# shellcheck disable=SC2046
"$cc" $extra -o "$tmp/consumer-bt-pc" "$here/consumer.c" \
  $(PKG_CONFIG_PATH="$build" pkg-config --cflags --libs mbq)
"$tmp/consumer-bt-pc"
cmake -S "$tmp/proj" -B "$tmp/proj/build-bt" -Dmbq_DIR="$build" \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >/dev/null
cmake --build "$tmp/proj/build-bt" >/dev/null
"$tmp/proj/build-bt/consumer-cmake"
echo "check_install: pkg-config and find_package(mbq) both build against the build tree"
