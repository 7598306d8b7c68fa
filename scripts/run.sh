#!/bin/sh
# Installs the dependencies, builds mbq, and runs the main job: the demo
# pipeline. mbq-capture makes 1080p60 frames into a pool and two buffer
# queues held by mbqd; mbq-encode checks every frame, mbq-preview shows the
# newest; the launcher (mbq-demo) starts a private mbqd unless $MBQ_SOCKET
# names a running one, and ends with a summary. It exits 0 only if every
# frame reached the encoder intact and in order. Arguments go to mbq-demo:
#   scripts/run.sh                  600 frames (10 s)
#   scripts/run.sh --frames 0       until Ctrl-C
#   scripts/run.sh --help           the other options
# See examples/pipeline/README.md.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo
exec build/examples/pipeline/mbq-demo "$@"
