"""Krita's "Edit prompt" section: its plan (pure Python) and the real docker under PyQt5 and PyQt6.

The docker run is ``tests/krita/prompt_edit_offscreen.py`` (the real panel,
a stand-in for Krita's document API, an installed plugin copy with the
vendored protocol, a real daemon), driven like ``tests/test_krita_qt.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from impasto.plugin_krita.impasto_krita.prompt_edit import plan_edit
from impasto.protocol.errors import PlanError
from impasto.protocol.settings import Settings
from test_krita_qt import INTERPRETERS, REQUIRED, ROOT, clean_env, has_binding

SCRIPT = ROOT / "tests" / "krita" / "prompt_edit_offscreen.py"
SRC = "a red circle on a blue background"


def test_the_plan_of_an_edit():
    s = Settings(prompt=SRC, steps=9, cfg_scale=5.0, sampler="ddim", model="starter")
    plan = plan_edit(s, 33, (64, 48), (200, 100), "a green circle on a blue background", 0.5, 0.2)
    assert plan.kind == "txt2img" and plan.window == (0, 0, 64, 48)
    assert (plan.canvas_width, plan.canvas_height) == (200, 100)
    req = plan.request
    assert (req.seed, req.width, req.height, req.steps, req.model) == (33, 64, 48, 9, "starter")
    assert req.p2p.source_prompt == SRC and (req.p2p.cross_replace, req.p2p.self_replace) == (0.5, 0.2)
    with pytest.raises(PlanError):
        plan_edit(s, 33, (64, 48), (64, 48), SRC)          # nothing to edit


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    profile = tmp_path_factory.mktemp("qt-profile")
    proc = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "install-krita", "--profile", str(profile),
                           "--no-autostart"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return profile / "pykrita"


@pytest.mark.parametrize("binding", sorted(INTERPRETERS))
def test_edit_prompt_in_the_docker_under_each_pyqt(binding, installed, daemon, tmp_path):
    python, module = INTERPRETERS[binding]
    if not has_binding(python, module):
        reason = f"{binding} EDIT PROMPT TEST NOT RUN: no Python with {module} (.ci/krita.sh sets both up)"
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    env = clean_env()
    env["IMPASTO_QT"] = "6" if binding == "PyQt6" else "5"
    env["IMPASTO_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([python, str(SCRIPT), str(installed), daemon.endpoint, str(tmp_path / "panel.png")],
                          capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["binding"] == module
    failed = [c for c in report["checks"] if not c[1]]
    assert not failed, failed
    assert len(report["checks"]) >= 10
