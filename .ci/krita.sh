#!/usr/bin/env bash
# Real-Krita tier for the Impasto Krita plugin.
#
# Installs Debian's Krita 5 (kritarunner, PyQt5, pyzmq for Krita's Python, and
# Xvfb + xauth for the Krita GUI test) when missing, and a small virtualenv with
# PyQt6 (Krita 6's binding) in .cache/krita-pyqt6, then runs the Krita tests:
#   tests/test_krita_integration.py  the plugin inside real Krita: kritarunner (pyzmq) and the
#                                    Krita GUI under Xvfb (pure-Python ZMTP, action, undo)
#   tests/test_krita_qt.py           the docker panel under PyQt5 and PyQt6
#   tests/test_krita_{pixels,planning,install,session}.py  the host-free tier
# With IMPASTO_REQUIRE_KRITA=1 the Krita tests fail instead of skipping when a
# host is missing: in CI this tier must really run.
#
# Usage:  .ci/krita.sh            install what is missing, run the tier
#         .ci/krita.sh prepare    only install (what .ci/run calls; --install is the same)
# Env:    PYTHON                  interpreter for pytest (default python3)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES="krita python3-pyqt5 python3-zmq xvfb xauth"
QT6_VENV="$HERE/.cache/krita-pyqt6"

log() { printf '[krita.sh] %s\n' "$*" >&2; }

install_krita() {
    if command -v kritarunner >/dev/null 2>&1 && command -v xvfb-run >/dev/null 2>&1 \
        && command -v xauth >/dev/null 2>&1 && /usr/bin/python3 -c 'import PyQt5.QtWidgets, zmq' 2>/dev/null; then
        log "reusing $(kritarunner --version 2>/dev/null | head -n1 || echo kritarunner) at $(command -v kritarunner)"
        return 0
    fi
    local start
    start=$(date +%s)
    log "installing $PACKAGES (a few minutes, once)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    # Another job may hold the dpkg lock (the GIMP tier builds its root folder next door): wait for it.
    $sudo apt-get -o DPkg::Lock::Timeout=900 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        --no-install-recommends $PACKAGES
    command -v kritarunner >/dev/null
    log "Krita installed in $(( $(date +%s) - start )) s"
}

install_pyqt6() {
    if [ -x "$QT6_VENV/bin/python" ] && "$QT6_VENV/bin/python" -c 'import PyQt6.QtWidgets' 2>/dev/null; then
        return 0
    fi
    log "making $QT6_VENV with PyQt6 (Krita 6's binding) for the panel test"
    rm -rf "$QT6_VENV"
    mkdir -p "$(dirname "$QT6_VENV")"
    # No Impasto in this virtualenv on purpose: the test runs the installed plugin's vendored protocol.
    "$PYTHON" -m venv "$QT6_VENV"
    "$QT6_VENV/bin/python" -m pip install -q --disable-pip-version-check PyQt6
}

install_krita
if ! install_pyqt6; then
    log "!! PyQt6 could not be installed: the PyQt6 panel test will be skipped"
fi

if [ "${1:-}" = "prepare" ] || [ "${1:-}" = "--install" ] || [ "${1:-}" = "--build" ]; then
    exit 0
fi

cd "$HERE"
export QT_QPA_PLATFORM=offscreen IMPASTO_REQUIRE_KRITA=1
exec "$PYTHON" -m pytest tests/test_krita_integration.py tests/test_krita_qt.py tests/test_krita_pixels.py \
    tests/test_krita_planning.py tests/test_krita_install.py tests/test_krita_session.py -q -rs --durations=5
