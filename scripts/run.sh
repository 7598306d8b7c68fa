#!/bin/sh
# Installs the dependencies, builds mbq, and runs the main job: the
# data-plane demo (a producer and a consumer process streaming frames
# through a shared pool and buffer queue). Arguments go to the demo.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mbq-dataplane-demo
exec build/mbq-dataplane-demo "$@"
