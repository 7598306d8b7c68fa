#!/bin/bash
# Real-systemd tests: mbqd under systemd 252 as PID 1, booted in systemd-nspawn.
#
# Builds mbq (build-systemd/, prefix /usr), installs it with
# `DESTDIR=... cmake --install` into an overlay on a cached minimal Debian
# bookworm rootfs (made with debootstrap on first use), adds the test
# programs of tests/systemd/nspawn/ and a oneshot unit that runs them, enables
# mbqd.socket and that unit offline, boots the container and returns the
# tests' result. See tests/systemd/nspawn/README.md.
#
# Usage: scripts/test-systemd.sh [--fresh-rootfs] [--help]
# Exit status: 0 all checks passed; 1 a check (or the build) failed;
#              2 the infrastructure is unusable here (no root/CAP_SYS_ADMIN,
#                no namespaces, no Debian mirror for debootstrap...): the
#                reason is printed, and callers treat it as "skipped".
# Environment:
#   MBQ_NSPAWN_CACHE     rootfs cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/mbq/nspawn-rootfs)
#   MBQ_DEBIAN_MIRROR    mirror for debootstrap (default: the one apt uses)
#   MBQ_SYSTEMD_BUILD    build directory (default build-systemd)
#   MBQ_CI_WATCHDOG_SEC  WatchdogSec for the test (drop-in; default 2; 0 keeps the unit's)
#   MBQ_CI_UNIT_DIR      extra/overriding units to put in /etc/systemd/system
#   MBQ_CI_STREAM_COUNT, MBQ_CI_STREAM_PACE_US, MBQ_CI_HANG, MBQ_CI_GST_FRAMES
#                        passed to ci-test.sh
#   REQUIRE_NSPAWN=1     turn "infrastructure unusable" (2) into a failure (1)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
HERE=$SRC/tests/systemd/nspawn
BUILD=${MBQ_SYSTEMD_BUILD:-$SRC/build-systemd}
CACHE=${MBQ_NSPAWN_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/mbq/nspawn-rootfs}
SUITE=bookworm
# What mbq needs at run time in the container (the daemon: libevent_core,
# libsystemd; libmbq: libprotobuf-c), beyond systemd itself; and for the
# GStreamer check (9 in ci-test.sh), gst-launch-1.0 with videotestsrc and
# fakesink: the mbq plugin's run-time libraries come with them.
INCLUDE=systemd,systemd-sysv,dbus,libsystemd0,libevent-core-2.1-7,libprotobuf-c1
INCLUDE=$INCLUDE,gstreamer1.0-tools,gstreamer1.0-plugins-base
# Bump when the rootfs recipe below changes: a new stamp means a new rootfs.
ROOTFS_RECIPE=1
FRESH=0
for a in "$@"; do
    case $a in
    --fresh-rootfs) FRESH=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-systemd: unknown argument '$a' (try --help)" >&2; exit 1 ;;
    esac
done

T_START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "test-systemd [$(elapsed)]: $*"; }
skip() {
    echo "test-systemd: SKIPPED, the real-systemd tests cannot run here: $*" >&2
    if [ "${REQUIRE_NSPAWN:-0}" = 1 ]; then
        echo "test-systemd: REQUIRE_NSPAWN=1, so this is a failure" >&2
        echo "systemd: 0 passed, 1 failed"
        exit 1
    fi
    echo "systemd: 0 passed, 0 failed, 1 skipped"
    exit 2
}
die() { echo "test-systemd: FAILED: $*" >&2; echo "systemd: 0 passed, 1 failed"; exit 1; }

# ---- can this machine run a container at all? -------------------------------
[ "$(id -u)" = 0 ] || skip "not root (systemd-nspawn needs root with CAP_SYS_ADMIN)"
capeff=$(awk '$1 == "CapEff:" {print $2}' /proc/self/status)
(( (0x$capeff >> 21) & 1 )) || skip "no CAP_SYS_ADMIN in this process (CapEff=$capeff); an unprivileged container cannot run systemd-nspawn"
if ! err=$(unshare --mount --propagation private true 2>&1); then
    skip "cannot create a mount namespace (unshare --mount: $err)"
fi

# ---- tools and build dependencies, from Debian's packages -----------------------
export DEBIAN_FRONTEND=noninteractive
need=()
for p in debootstrap systemd-container build-essential cmake pkg-config libevent-dev \
         libsystemd-dev libprotobuf-c-dev protobuf-c-compiler \
         libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update >/tmp/mbq-test-systemd-apt.log 2>&1 || true
    apt-get install -y -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" \
        >>/tmp/mbq-test-systemd-apt.log 2>&1 ||
        skip "apt-get install ${need[*]} failed: $(tail -3 /tmp/mbq-test-systemd-apt.log | tr '\n' ' ')"
fi
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed"

# ---- build ----------------------------------------------------------------------------
say "building mbq in $BUILD (prefix /usr)"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMBQ_BUILD_TESTS=OFF >"$BUILD/test-systemd-cmake.log" 2>&1 ||
    { cat "$BUILD/test-systemd-cmake.log"; die "cmake configure failed"; }
cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/test-systemd-build.log" 2>&1 ||
    { tail -40 "$BUILD/test-systemd-build.log"; die "build failed"; }

# ---- the rootfs: cached, keyed by a stamp of what it contains -------------------------
arch=$(dpkg --print-architecture)
stamp="mbq-nspawn-rootfs recipe=$ROOTFS_RECIPE suite=$SUITE arch=$arch variant=minbase include=$INCLUDE"
key=$(printf '%s' "$stamp" | sha256sum | cut -c1-12)
ROOTFS=$CACHE/$SUITE-$arch-$key
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || skip "could not lock $CACHE/.lock (another run stuck?)"
if [ $FRESH = 1 ] || [ "$(cat "$ROOTFS/.mbq-rootfs-stamp" 2>/dev/null)" != "$stamp" ]; then
    mirror=${MBQ_DEBIAN_MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    fi
    say "making the $SUITE rootfs with debootstrap from $mirror (once; about a minute) -> $ROOTFS"
    tmp=$CACHE/.new-$$
    rm -rf "$tmp"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1; then
        rm -rf "$tmp"
        skip "debootstrap $SUITE from $mirror failed (mirror unreachable?): $(grep -E '^(E|W):' "$CACHE/debootstrap.log" | tail -3 | tr '\n' ' ') (log: $CACHE/debootstrap.log)"
    fi
    # Smaller and quieter: no package cache, no timers that would run apt.
    rm -f "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages
    echo mbq-ci >"$tmp/etc/hostname"
    printf '%s' "$stamp" >"$tmp/.mbq-rootfs-stamp"
    rm -rf "$ROOTFS"
    mv "$tmp" "$ROOTFS"
    # older stamps of ours are dead weight
    for old in "$CACHE/$SUITE"-*; do [ "$old" = "$ROOTFS" ] || rm -rf "$old"; done
else
    say "reusing the cached rootfs $ROOTFS"
fi

# ---- this run's layer: mbq installed as a distribution would, plus the tests -----------
WORK=$BUILD/nspawn
OUT=$WORK/out
UPPER=$WORK/upper
if [ -d "$WORK" ]; then
    # a previous run's overlay work dir has root-only d--------- entries
    chmod -R u+rwx "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
fi
mkdir -p "$UPPER" "$WORK/ovl-work" "$WORK/merged" "$OUT"
DESTDIR=$UPPER cmake --install "$BUILD" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; die "cmake --install failed"; }
say "installed: $(sed -n 's/^-- \(Installing\|Up-to-date\): //p' "$WORK/install.log" | sed "s#^$UPPER##" | tr '\n' ' ')"

# The test programs, built against the installed library through its .pc file.
pcdir=$(dirname "$(find "$UPPER" -name mbq.pc -print -quit)")
[ -f "$pcdir/mbq.pc" ] || die "cmake --install put no mbq.pc in $UPPER"
LIBEXEC=$UPPER/usr/local/libexec/mbq-ci
mkdir -p "$LIBEXEC"
cflags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags mbq) || die "pkg-config --cflags mbq failed"
libs=$(PKG_CONFIG_PATH=$pcdir pkg-config --libs mbq) || die "pkg-config --libs mbq failed"
cc -O2 -g -Wall -Wextra -Werror -std=gnu11 $cflags -o "$LIBEXEC/mbq-stream" "$HERE/mbq-stream.c" $libs \
    || die "compiling tests/systemd/nspawn/mbq-stream.c against the installed libmbq failed"
install -m755 "$HERE/ci-test.sh" "$LIBEXEC/ci-test.sh"
mkdir -p "$UPPER/etc/systemd/system"
install -m644 "$HERE/mbq-ci-test.service" "$UPPER/etc/systemd/system/"
if [ -n "${MBQ_CI_UNIT_DIR:-}" ]; then
    say "adding units from MBQ_CI_UNIT_DIR=$MBQ_CI_UNIT_DIR: $(cd "$MBQ_CI_UNIT_DIR" && ls)"
    cp -r "$MBQ_CI_UNIT_DIR"/. "$UPPER/etc/systemd/system/"
fi
# The unit's watchdog period, shortened so that the watchdog check takes
# seconds (only if the unit has one: a missing WatchdogSec is a finding).
unit=$(find "$UPPER/etc/systemd/system" "$UPPER/usr/lib/systemd/system" "$UPPER/lib/systemd/system" \
       -name mbqd.service -print -quit 2>/dev/null || true)
[ -n "$unit" ] || die "no mbqd.service was installed (cmake --install put none in /usr/lib/systemd/system or /lib/systemd/system)"
[ -n "$(find "$UPPER" -name mbqd.socket -print -quit)" ] || die "no mbqd.socket was installed"
[ -n "$(find "$UPPER" -path '*/gstreamer-1.0/libgstmbq.so' -print -quit)" ] ||
    die "cmake --install put no GStreamer plugin (gstreamer-1.0/libgstmbq.so) in $UPPER"
wd=${MBQ_CI_WATCHDOG_SEC:-2}
if [ "$wd" != 0 ] && grep -q '^WatchdogSec=' "$unit"; then
    mkdir -p "$UPPER/etc/systemd/system/mbqd.service.d"
    printf '# test-systemd.sh: a short watchdog period for the test (the unit has %s)\n[Service]\nWatchdogSec=%ss\n' \
        "$(grep '^WatchdogSec=' "$unit" | tail -1)" "$wd" >"$UPPER/etc/systemd/system/mbqd.service.d/50-ci-watchdog.conf"
fi
env_file=$LIBEXEC/ci-test.env
: >"$env_file"
for v in MBQ_CI_STREAM_COUNT MBQ_CI_STREAM_PACE_US MBQ_CI_HANG MBQ_CI_GST_FRAMES; do
    [ -n "${!v:-}" ] && printf '%s=%q\n' "$v" "${!v}" >>"$env_file"
done
if [ -s "$env_file" ]; then
    mkdir -p "$UPPER/etc/systemd/system/mbq-ci-test.service.d"
    printf '[Service]\nEnvironmentFile=/usr/local/libexec/mbq-ci/ci-test.env\n' \
        >"$UPPER/etc/systemd/system/mbq-ci-test.service.d/env.conf"
fi

# ---- boot -------------------------------------------------------------------------------------
# In a private mount namespace: /run is a tmpfs (nspawn leaves nothing in the
# host's /run), the overlay keeps the cached rootfs pristine.
say "booting the container (systemd-nspawn -b)"
rc=0
unshare --mount --propagation private bash -c '
    set -e
    ROOTFS=$1 UPPER=$2 WORK=$3 OUT=$4
    mount -t tmpfs -o mode=755 tmpfs /run
    M=$WORK/merged
    if ! mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$UPPER,workdir=$WORK/ovl-work" "$M" 2>"$OUT/overlay.err"; then
        echo "test-systemd: overlayfs unavailable ($(cat "$OUT/overlay.err")); copying the rootfs" >&2
        cp -a --reflink=auto "$ROOTFS/." "$M/"; cp -a "$UPPER/." "$M/"
    fi
    systemctl --root="$M" mask console-getty.service >/dev/null 2>&1 || true   # no login prompt in the log
    systemctl --root="$M" enable mbqd.socket mbq-ci-test.service >"$OUT/enable.log" 2>&1 || {
        echo "infra: systemctl --root enable failed: $(cat "$OUT/enable.log")" >"$OUT/infra"; exit 0; }
    # Not exec: the overlay must stay mounted until nspawn is done with it.
    timeout 420 systemd-nspawn --quiet --register=no --keep-unit --private-network \
        --console=read-only --setenv=SYSTEMD_COLORS=0 --bind="$OUT:/ci-out" -D "$M" -b </dev/null >"$OUT/console.log" 2>&1
' test-systemd "$ROOTFS" "$UPPER" "$WORK" "$OUT" || rc=$?
flock -u 9

# ---- result -----------------------------------------------------------------------------------------
if [ -f "$OUT/infra" ]; then
    skip "$(cat "$OUT/infra")"
fi
if [ ! -s "$OUT/test.log" ]; then
    echo "---- console (last 30 lines) ----"; tail -30 "$OUT/console.log" 2>/dev/null || true
    skip "the container did not run the test (systemd-nspawn exit status $rc); console log: $OUT/console.log"
fi
cat "$OUT/test.log"
result=$(grep -o 'RESULT: [0-9]* passed, [0-9]* failed' "$OUT/test.log" | tail -1 || true)
if [ -z "$result" ]; then
    echo "---- the test did not finish (nspawn exit status $rc$([ $rc = 124 ] && echo ', timed out')); console tail ----"
    tail -30 "$OUT/console.log"
    jdir=$(find "$UPPER/var/log/journal" -mindepth 1 -maxdepth 1 -type d -print -quit 2>/dev/null || true)
    if [ -n "$jdir" ]; then
        echo "---- journal of mbqd ----"
        journalctl -D "$jdir" -u mbqd.service -u mbqd.socket -o short-monotonic --no-pager 2>&1 | tail -60
    fi
    echo "systemd: 0 passed, 1 failed"
    exit 1
fi
npass=$(echo "$result" | awk '{print $2}'); nfail=$(echo "$result" | awk '{print $4}')
if [ "$rc" != 0 ] || [ "$nfail" != 0 ]; then
    echo "---- journal of mbqd.service / mbqd.socket (last 80 lines; all in $OUT/mbqd.journal) ----"
    tail -80 "$OUT/mbqd.journal" 2>/dev/null || true
fi
say "done: $npass passed, $nfail failed (container exit status $rc); logs in $OUT"
echo "systemd: $npass passed, $nfail failed"
[ "$rc" = 0 ] && [ "$nfail" = 0 ]
