"""The GIMP dialog's Concept Sliders box on GIMP 3's own Python and GTK (the real-GIMP tier's root folder).

The box is what an artist drags; it must only ever edit the procedure's ``concepts`` text, so the
dialog and scripts stay one interface.  Runs ``tests/gimp/slider_box_check.py`` inside the root folder
under xvfb on the plug-in as ``impasto install-gimp`` lays it out.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("IMPASTO_GIMP_ROOT", "/var/cache/impasto-gimp-root"))
CHECK = Path(__file__).resolve().parent / "gimp" / "slider_box_check.py"

pytestmark = pytest.mark.skipif(
    not ROOT.is_dir(),
    reason=f"REAL-GIMP TIER NOT RUN: no GIMP 3 root folder at {ROOT} - build it with `.ci/gimp.sh --build`")


def test_slider_box_edits_the_concepts_field_in_gimps_gtk():
    inner = f"/tmp/impasto-sliders-{uuid.uuid4().hex[:8]}"
    outer = ROOT / inner.lstrip("/")
    try:
        outer.mkdir(parents=True)
        proc = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "install-gimp", "--profile",
                               str(outer / "profile")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        shutil.copy(CHECK, outer / "check.py")
        cmd = ["chroot", str(ROOT), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
               "xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -noreset",   # no reset between clients
               "python3", f"{inner}/check.py", f"{inner}/profile"]
        if os.geteuid() != 0:
            cmd = ["unshare", "--map-root-user"] + cmd
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "SLIDER-BOX-OK" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    finally:
        shutil.rmtree(outer, ignore_errors=True)
