"""The docker panel under PyQt5 (Krita 5) and PyQt6 (Krita 6): one codebase, both bindings.

``tests/krita/panel_offscreen.py`` builds the real panel offscreen with a
stand-in for Krita's document API, and runs a text-to-image job and an
inpaint through it against the test daemon, from an *installed* plugin copy
(vendored protocol) in a Python that has no Impasto of its own.

Interpreters: PyQt5 is Debian's ``/usr/bin/python3`` with ``python3-pyqt5``
(installed with Krita by ``.ci/krita.sh``); PyQt6 is ``$IMPASTO_PYQT6_PYTHON``
or ``.cache/krita-pyqt6`` (the virtualenv ``.ci/krita.sh`` makes).  Each is
skipped, loudly, only when that interpreter is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "krita" / "panel_offscreen.py"


def has_binding(python: str, module: str) -> bool:
    if not python or not os.path.exists(python):
        return False
    proc = subprocess.run([python, "-c", f"import {module}.QtWidgets"], capture_output=True, timeout=60,
                          env=clean_env())
    return proc.returncode == 0


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QT_"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


INTERPRETERS = {
    "PyQt5": ("/usr/bin/python3", "PyQt5"),
    "PyQt6": (os.environ.get("IMPASTO_PYQT6_PYTHON") or str(ROOT / ".cache" / "krita-pyqt6" / "bin" / "python"),
              "PyQt6"),
}
REQUIRED = os.environ.get("IMPASTO_REQUIRE_KRITA") == "1"  # .ci/krita.sh: a missing binding fails the tier


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    profile = tmp_path_factory.mktemp("qt-profile")
    proc = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "install-krita", "--profile", str(profile),
                           "--no-autostart"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return profile / "pykrita"


@pytest.mark.parametrize("binding", sorted(INTERPRETERS))
def test_panel_runs_jobs_under_each_pyqt(binding, installed, daemon, tmp_path):
    python, module = INTERPRETERS[binding]
    if not has_binding(python, module):
        reason = (f"{binding} PANEL TEST NOT RUN: no Python with {module} "
                  f"({'install python3-pyqt5' if binding == 'PyQt5' else 'set IMPASTO_PYQT6_PYTHON'}; "
                  ".ci/krita.sh sets both up)")
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    env = clean_env()
    env["IMPASTO_QT"] = "6" if binding == "PyQt6" else "5"
    env["IMPASTO_HOME"] = str(tmp_path / "home")     # the docker's Results history: never the user's
    shot = tmp_path / "panel.png"
    proc = subprocess.run([python, str(SCRIPT), str(installed), daemon.endpoint, str(shot)], capture_output=True,
                          text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["binding"] == module
    failed = [c for c in report["checks"] if not c[1]]
    assert not failed, failed
    assert len(report["checks"]) >= 10
