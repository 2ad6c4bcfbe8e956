"""GIMP's "Repaint Now" inside real GIMP 3 (the real-GIMP tier: tests/test_gimp_real.py's root folder).

The procedure sends the client core's live job; the picture replaces the one
"Impasto live" layer at each press, and inside a selection it is a masked layer
on the selection's region only.  Pure parts (the request) are checked without GIMP.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from impasto.plugin_gimp import jobs, live
from impasto.plugin_gimp.geometry import Rect
from impasto.protocol.settings import Recommendation

DRIVER = Path(__file__).resolve().parent / "gimp" / "drive_live.py"
IMAGE = (96, 80)
SELECT = (56, 44, 20, 16)
JOB = dict(prompt="a red fox", model="tiny", steps=3, seed=-1, strength=0.5, padding=4, mask_blur=2)


def _reader(w, h, channels, value=128):
    calls = []

    def read(rect):
        calls.append(rect)
        return bytes([value]) * (rect.width * rect.height * channels)

    return read, calls


def test_repaint_request_is_the_live_job_of_the_picture_or_the_selection():
    fields = jobs.JobFields(prompt="x", seed=-1, strength=0.4, padding=4, mask_blur=2, batch_size=3,
                            recommendation=Recommendation(sampler="lcm", steps=4, cfg_scale=1.0))
    seed = live.session_seed(fields.seed, 7)
    assert seed == live.session_seed(-1, 7) != live.session_seed(-1, 8) and live.session_seed(42, 7) == 42
    rgba, rcalls = _reader(*IMAGE, 4)
    mask, mcalls = _reader(*IMAGE, 1, 255)
    plan, sent, m = live.repaint_request(fields, Rect(0, 0, *IMAGE), None, seed, rgba, mask)
    r = plan.request
    assert r.live and r.batch_size == 1 and not r.preview and r.seed == seed and r.mask is None and m is None
    assert (r.sampler, r.steps, r.cfg_scale) == ("lcm", 4, 1.0)
    assert sent == Rect(0, 0, *IMAGE) and not mcalls
    plan, sent, m = live.repaint_request(fields, Rect(0, 0, *IMAGE), Rect(*SELECT), seed, rgba, mask)
    assert plan.kind == "edit" and plan.request.live and m is not None
    assert sent.width * sent.height < IMAGE[0] * IMAGE[1] and sent.contains(Rect(*SELECT))


ROOT_TIER = pytest.importorskip("test_gimp_real")


@pytest.mark.skipif(not ROOT_TIER.ROOT.is_dir(), reason="REAL-GIMP TIER NOT RUN: no GIMP 3 root folder "
                    "(.ci/gimp.sh --build)")
def test_repaint_now_inside_gimp(daemon):
    base, log, seconds = ROOT_TIER._session(daemon, DRIVER, dict(image=IMAGE, select=SELECT, job=JOB))
    try:
        run = ROOT_TIER.GimpRun(base / "out", log, seconds)
        r = run.report
        assert r.get("done") and not r["errors"], run.context()
        assert [s["status"] for s in r["steps"]] == ["success"] * 4, r["steps"]
        for key in ("after_first", "after_second"):
            names = [l["name"] for l in r[key]]
            assert names.count("Impasto live") == 1 and names[0] == "Impasto live", names   # replaced, on top
            top = r[key][0]
            assert (top["x"], top["y"], top["width"], top["height"]) == (0, 0, *IMAGE) and not top["has_mask"]
        one, two = run.raw("live1.rgba", *IMAGE, 4), run.raw("live2.rgba", *IMAGE, 4)
        assert not np.array_equal(one, two)                 # the stroke changed the repaint
        sel = [l for l in r["after_selection"] if l["name"] == "Impasto live"]
        assert len(sel) == 1 and sel[0]["has_mask"] and sel[0]["width"] * sel[0]["height"] < IMAGE[0] * IMAGE[1]
        x, y, w, h = SELECT
        assert sel[0]["x"] <= x and sel[0]["y"] <= y and sel[0]["x"] + sel[0]["width"] >= x + w
    finally:
        ROOT_TIER._cleanup(base)
