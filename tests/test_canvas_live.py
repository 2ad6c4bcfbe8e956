"""Live mode in the offscreen canvas, against a real daemon: strokes repaint, newest wins, keep and discard."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from impasto.desktop import headless, qt_images  # noqa: E402
from impasto.desktop.connection import DaemonLink  # noqa: E402
from impasto.desktop.document import Document  # noqa: E402
from impasto.desktop.main_window import MainWindow  # noqa: E402


@pytest.fixture(scope="module")
def qapp():
    return headless.application()


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))


@pytest.fixture
def window(qapp, daemon):
    with headless.DialogRecorder({"ask_save_changes": "discard", "confirm": True}):
        link = DaemonLink(daemon.endpoint, poll_ms=250, autostart=False, ping_timeout=0.6)
        w = MainWindow(link, Document(64, 64))
        w.resize(1100, 760)
        w.show()
        link.start()
        assert headless.pump(90, lambda: link.connected), link.message
        w.panel.prompt.setPlainText("a red circle")
        w.panel.steps.setValue(4)
        w.panel.strength.setValue(0.6)
        w.panel.set_seed(5)
        yield w
        w.live.set_enabled(False)
        w.close()
        headless.pump(0.05)


def canvas_drag(w, points):
    w.view.fit()
    headless.drag(w.view, [(p.x(), p.y()) for p in (w.view.to_widget(QPointF(x, y)) for x, y in points)])


def stroke(w, y):
    w.select_tool("brush")
    w.brush.color = QColor(20, 40, 200)
    w.size_spin.setValue(6)
    canvas_drag(w, [(4, y), (30, y), (60, y)])


def test_live_mode_repaints_after_strokes_and_keeps_one_undo_step(window):
    w = window
    assert not w.a_keep_live.isEnabled() and not w.a_discard_live.isEnabled()   # nothing to keep yet
    w.a_live.trigger()
    assert w.live.enabled and w.a_live.isChecked()
    assert headless.pump(60, lambda: w.live.candidate is not None)           # the first picture, at once
    assert w.a_keep_live.isEnabled() and w.a_discard_live.isEnabled()
    first = qt_images.to_wire(w.live.candidate.image).data
    stats = w.live.session.stats
    painted = stats.painted
    stroke(w, 20)
    assert headless.pump(60, lambda: stats.painted > painted)
    second = qt_images.to_wire(w.live.candidate.image).data
    assert second != first                                                    # the stroke changed the picture
    # the live picture is an overlay: the artist's layers are untouched until Keep
    layers = len(w.doc.layers)
    undo_steps = w.doc.undo.count()
    sent_before = stats.submitted
    layer = w.live.keep()
    assert layer is not None and len(w.doc.layers) == layers + 1 and w.doc.undo.count() == undo_steps + 1
    assert w.live.candidate is None and not w.a_keep_live.isEnabled()
    kept = np.frombuffer(qt_images.to_wire(w.doc.layers[-1].image).data, np.uint8)
    assert kept.any()
    headless.pump(0.3)
    assert stats.submitted == sent_before                 # keeping is not a stroke: no new job
    w.doc.undo.undo()                                     # one undo step removes the kept layer
    assert len(w.doc.layers) == layers
    assert headless.pump(60, lambda: w.live.candidate is not None)   # the undo was an edit: repainted
    assert w.a_discard_live.isEnabled()
    w.live.discard()
    assert w.live.candidate is None and w.view._candidate is None
    assert not w.a_keep_live.isEnabled() and not w.a_discard_live.isEnabled()
    w.a_live.trigger()
    assert not w.live.enabled and w.live.session is None


def test_a_flurry_of_strokes_runs_fewer_jobs_and_paints_the_newest(window):
    w = window
    w.live.set_enabled(True)
    assert headless.pump(60, lambda: w.live.candidate is not None)
    stats = w.live.session.stats
    base_strokes, base_sent = stats.strokes, stats.submitted
    # a flurry: strokes closer together than the debounce.  At the product's 10 ms the strokes below
    # (10 ms apart) fell either side of it by the machine's load - a CI run sent all 10, each cancelling
    # the one before - so the session's debounce is made longer than the whole flurry for this test
    w.live.session.debounce.delay = 1.0
    for i in range(10):
        stroke(w, 5 + i * 5)
        headless.pump(0.01)
    assert headless.pump(60, lambda: not w.live.session.busy and not w.live.session.debounce.pending
                         and w.live.candidate is not None)
    headless.pump(0.3)
    strokes, sent = stats.strokes - base_strokes, stats.submitted - base_sent
    assert strokes == 10 and 1 <= sent < strokes, stats.as_dict()
    # what is shown is the newest job's picture
    last = w.live.session._index
    assert stats.painted >= 2 and w.live.candidate.job  # a real result
    assert headless.pump(5, lambda: w.live.session._pending is None)
    assert w.live.session._index == last


def test_a_few_step_lora_in_the_concepts_becomes_the_panels_model_default(qapp):
    """The canvas's "model default" follows a few-step LoRA switched on in the concepts (the daemon's
    concept listing carries its preset), and goes back when it is removed."""
    from types import SimpleNamespace

    from impasto.desktop.generation_panel import GenerationPanel

    panel = GenerationPanel()
    panel.set_models(SimpleNamespace(default="sd15", models=[
        {"name": "sd15", "native_size": 512, "recommended": {"scheduler": "DDIMScheduler", "steps": 25,
                                                             "guidance_scale": 6.0}}]))
    panel.set_concept_names(["cat", "lcm-lora-sdv1-5"])
    panel.set_concept_listing([{"name": "cat"}, {"name": "lcm-lora-sdv1-5", "recommended": {
        "sampler": "lcm", "steps": 4, "cfg_scale": 1.0, "preset": "LCM-LoRA"}}])
    assert (panel.recommendation().sampler, panel.recommendation().steps) == ("ddim", 25)
    row = panel.add_concept("lcm-lora-sdv1-5", 1.0)
    rec = panel.recommendation()
    assert (rec.sampler, rec.steps, rec.cfg_scale) == ("lcm", 4, 1.0)
    assert panel.sampler.itemText(0) == "model default (LCM, 4, 1.0, LCM-LoRA)"
    row.weight.setValue(0.0)                                   # off: the model's own again
    assert panel.recommendation().sampler == "ddim" and panel.sampler.itemText(0).startswith("model default (DDIM")
    row.weight.setValue(1.0)
    panel._remove_concept(row)
    assert panel.recommendation().sampler == "ddim"
