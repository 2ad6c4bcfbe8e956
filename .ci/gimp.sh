#!/usr/bin/env bash
# Real-GIMP tier for the Impasto GIMP 3 plug-in.
#
# Debian 12 ships GIMP 2.10 without Python, so the plug-in is tested inside GIMP
# 3.0 from Debian 13 (trixie) living in a root folder (chroot).  This script
# builds that folder when it is missing (debootstrap minbase trixie from the
# Debian mirror this machine's apt already uses, then gimp + python3-gi +
# gir1.2-gimp-3.0, plus xvfb + xdotool for the interactive dialogs (pressed with X events) --
# deliberately WITHOUT python3-numpy / python3-zmq, which proves the plug-in
# runs on GIMP's own Python alone) and reuses it otherwise, then runs the GIMP
# tests (tests/test_gimp_*.py).  The daemon runs outside the chroot; loopback
# TCP is shared with it.
#
# Usage:  .ci/gimp.sh            build the root folder if needed, run the tier
#         .ci/gimp.sh --build    only build / check the root folder
# Env:    IMPASTO_GIMP_ROOT      root folder (default /var/cache/impasto-gimp-root)
#         IMPASTO_DEBIAN_MIRROR  mirror override (default: from /etc/apt/sources*)
#         PYTHON                 interpreter for pytest (default python3)
set -euo pipefail

ROOT="${IMPASTO_GIMP_ROOT:-/var/cache/impasto-gimp-root}"
READY="$ROOT/.impasto-gimp-ready"
PYTHON="${PYTHON:-python3}"
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 xvfb xauth xdotool"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[gimp.sh] %s\n' "$*" >&2; }

debian_mirror() {
    if [ -n "${IMPASTO_DEBIAN_MIRROR:-}" ]; then
        echo "$IMPASTO_DEBIAN_MIRROR"; return
    fi
    # deb822 sources first (URIs: line of a Debian suite), then one-line lists.
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '{print $2}' | grep -v -- '-security' | grep -i debian | head -n1 || true)"
    if [ -z "$uri" ]; then
        uri="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                | awk '{print $2}' | grep -v -- '-security' | grep -i debian | head -n1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

build_root() {
    local mirror partial start
    mirror="$(debian_mirror)"
    partial="$ROOT.partial"
    start=$(date +%s)
    log "building trixie root folder $ROOT from $mirror (a few minutes, once)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        # Another job may hold the dpkg lock (CI installs Krita next door): wait for it.
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq debootstrap
    fi
    # Build into ROOT.partial and rename at the end: an interrupted build never
    # looks like a usable root folder.
    if mountpoint -q "$partial/proc" 2>/dev/null; then umount "$partial/proc"; fi
    rm -rf "$partial"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase trixie "$partial" "$mirror"
    printf 'deb %s trixie main\n' "$mirror" > "$partial/etc/apt/sources.list"
    mount -t proc proc "$partial/proc"
    trap 'umount "$partial/proc" 2>/dev/null || true' EXIT
    chroot "$partial" apt-get update -qq
    chroot "$partial" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $PACKAGES
    chroot "$partial" apt-get clean
    umount "$partial/proc"
    trap - EXIT
    # Prove the point of the tier: no numpy / pyzmq in GIMP's Python.
    if chroot "$partial" python3 -c 'import zmq' 2>/dev/null \
        || chroot "$partial" python3 -c 'import numpy' 2>/dev/null; then
        log "root folder has numpy or pyzmq installed; the tier must run without them"
        exit 1
    fi
    chroot "$partial" gimp-console-3.0 --version
    date -u +%FT%TZ > "$partial/.impasto-gimp-ready"
    rm -rf "$ROOT"
    mv "$partial" "$ROOT"
    log "root folder ready in $(( $(date +%s) - start )) s"
}

top_up_root() {
    # A root folder built by an older version of this script may lack a package added since.
    local missing=""
    for pkg in $PACKAGES; do
        chroot "$ROOT" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    log "adding$missing to $ROOT"
    mount -t proc proc "$ROOT/proc"
    trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
    chroot "$ROOT" apt-get update -qq
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    chroot "$ROOT" apt-get clean
    umount "$ROOT/proc"
    trap - EXIT
}

if [ ! -f "$READY" ]; then
    build_root
else
    log "reusing root folder $ROOT (built $(cat "$READY"))"
    top_up_root
fi

if [ "${1:-}" = "--build" ]; then
    exit 0
fi

cd "$HERE"
export IMPASTO_GIMP_ROOT="$ROOT"
# The tier must really run in CI: a skip here would mean the root folder is broken.
exec "$PYTHON" -m pytest tests/test_gimp_real.py tests/test_gimp_pure.py tests/test_gimp_install.py -q -rs --durations=5
