"""Live painting inside real Krita against a real daemon (tests/krita/drive_live.py).

Same tier and setup as tests/test_krita_integration.py (its ``krita_env``:
the plugin installed with ``impasto install-krita`` into a scratch profile);
skipped only where ``kritarunner`` is missing unless IMPASTO_REQUIRE_KRITA=1.
"""
from __future__ import annotations

import pytest

from test_krita_integration import KRITARUNNER, REQUIRED, SKIP_REASON, krita_env, run_driver  # noqa: F401

pytestmark = pytest.mark.skipif(KRITARUNNER is None and not REQUIRED, reason=SKIP_REASON)


def test_live_mode_inside_kritarunner(krita_env, daemon, tmp_path, monkeypatch):  # noqa: F811
    import test_krita_integration as tki

    real_run = tki.subprocess.run

    def run_live(cmd, **kw):   # the same runner, our driver module
        cmd = [c if c != "drive_plugin" else "drive_live" for c in cmd]
        return real_run(cmd, **kw)

    monkeypatch.setattr(tki.subprocess, "run", run_live)
    report, log = run_driver(krita_env, tmp_path, daemon.endpoint, "pyzmq", "live")
    assert report["ok"], "failed inside Krita:\n" + "\n".join(report["failures"]) + "\n--- log tail ---\n" + log
    names = {c["name"] for c in report["checks"]}
    expected = {"live: a stroke repaints", "live: an idle canvas is read at most every 500 ms",
                "live: nothing is read while the pen is down", "live: the pen-up reads the stroke at once", "live: the picture shown is the newest job's",
                "live: only the selection's window was sent", "live: Keep adds one layer", "live: switches off",
                "live: Keep and Discard are enabled while a picture is shown",
                "live: Keep and Discard are disabled once the picture is kept",
                "live: model default reads the live job's LoRA settings while live is on"}
    assert expected <= names, expected - names
