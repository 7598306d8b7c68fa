#!/bin/sh
# Installs everything mbq needs to build, test and benchmark, from Debian's packages.
# systemd: systemd-analyze and systemd-sysusers for the unit tests (tests/systemd).
# GStreamer: the mbq plugin (gst/) and its tests; ffmpeg for the pipelines that encode.
# gcc-multilib: the i686 (-m32) build of the layout in scripts/test.sh.
set -eu
PKGS="build-essential cmake pkg-config git libevent-dev libsystemd-dev libprotobuf-c-dev \
protobuf-c-compiler clang libclang-rt-14-dev valgrind gdb strace \
systemd libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
gstreamer1.0-plugins-bad ffmpeg gcc-multilib"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
missing=
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -o DPkg::Lock::Timeout=300 $missing
fi
