"""Runs inside real Krita (``kritarunner -s drive_live -f main``): live painting in the docker.

Reuses ``drive_plugin``'s host, documents and report, and adds one scenario:
live mode on a real Krita document against a real daemon - the first
picture, a scripted edit seen by the idle check, an idle canvas read at most
every 500 ms, nothing read while the pen is down and the pen-up read at once
(on a stand-in canvas widget: kritarunner has no view), a flurry of strokes
where the newest wins,
a live job inside a selection (an "only masked" edit of its window), Keep
adding the picture as a layer, Discard, and switching off.
"""
from __future__ import annotations

import time

import drive_plugin as dp
from drive_plugin import check, make_document, select, set_form, wait_for


def _paint(doc, x, y, w, h, colour):
    layer = next(n for n in dp.layer_nodes(doc) if n.name() == "painting")   # the opaque one (on the background)
    layer.setPixelData(bytes(colour) * (w * h), x, y, w, h)
    doc.refreshProjection()
    doc.waitForDone()


def _stand_in_canvas(app):
    """A widget the live filter takes for Krita's canvas (its class name says so): kritarunner has no view.

    The full GUI tier (tests/krita/impasto_gui_driver) sends the same events to Krita's real
    ``KisOpenGLCanvas2``.
    """
    from impasto_krita.plugin_krita.impasto_krita.qt import BINDING, QtWidgets

    class PaintingCanvas(QtWidgets.QWidget):
        pass

    widget = PaintingCanvas()
    widget.resize(64, 64)
    qtest = __import__(BINDING + ".QtTest", fromlist=["QTest"]).QTest
    return widget, qtest


def scenario_live(ctx):
    from impasto_krita.plugin_krita.impasto_krita.qt import QtCore

    krita, app, panel, host = ctx["krita"], ctx["qt"], ctx["panel"], ctx["host"]
    set_form(panel, model="tiny", strength=60, steps=3, seed=7, prompt="a red circle")
    doc, _rgba = make_document(krita, "live", 128, 128)
    host.doc = doc
    live = panel.live
    check("live: switches on", live.set_enabled(True) and live.enabled, panel.last_message)
    check("live: the first picture arrives", wait_for(app, lambda: live.last is not None, 90), panel.last_message)
    stats = live.session.stats
    first = live.last.result.images[0].data if live.last else b""
    painted = stats.painted
    _paint(doc, 4, 4, 20, 6, (0, 0, 255, 255))      # an edit no pen-up announces (a script): the idle check
    check("live: a stroke repaints", wait_for(app, lambda: stats.painted > painted, 90), stats.as_dict())
    # idle: the canvas is read every IDLE_MS at most (the timer this replaced read it every 80 ms)
    reads = live.reads
    dp.pump(app, 2.0)
    check("live: an idle canvas is read at most every 500 ms", live.reads - reads <= 5,
          {"reads_in_2s": live.reads - reads, "interval_ms": live.idle_interval_ms()})
    # pen down: nothing read until the pen-up, which reads at once
    canvas, qtest = _stand_in_canvas(app)
    left, none = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    strokes, reads = stats.strokes, live.reads
    qtest.mousePress(canvas, left, none, QtCore.QPoint(5, 5))
    _paint(doc, 30, 4, 10, 10, (0, 0, 255, 255))
    dp.pump(app, 1.2)
    check("live: nothing is read while the pen is down", live.reads == reads and stats.strokes == strokes,
          {"reads": live.reads - reads, "strokes": stats.strokes - strokes})
    live.set_idle_ms(600_000)                                       # only the pen-up can read now
    qtest.mouseRelease(canvas, left, none, QtCore.QPoint(9, 9))
    check("live: the pen-up reads the stroke at once", wait_for(app, lambda: stats.strokes > strokes, 5),
          stats.as_dict())
    check("live: the picture changed with the stroke",
          live.last is not None and live.last.result.images[0].data != first)
    check("live: the job was a live img2img of the canvas",
          live.last is not None and live.last.plan.kind == "img2img" and live.last.plan.request.live
          and not live.last.plan.request.preview)
    # a flurry: strokes faster than jobs
    strokes_before, sent_before = stats.strokes, stats.submitted
    for i in range(8):                                              # each stroke ends with a pen-up
        qtest.mousePress(canvas, left, none, QtCore.QPoint(5, 5))
        _paint(doc, 4 + i * 6, 40, 5, 5, (0, 200, 0, 255))
        qtest.mouseRelease(canvas, left, none, QtCore.QPoint(9, 9))
        dp.pump(app, 0.1)
    settle = lambda: not live.session.busy and not live.session.debounce.pending  # noqa: E731
    check("live: the flurry settles", wait_for(app, settle, 120), stats.as_dict())
    dp.pump(app, 0.3)
    strokes, sent = stats.strokes - strokes_before, stats.submitted - sent_before
    check("live: strokes were seen", strokes >= 4, stats.as_dict())
    check("live: every job sent ended (painted, cancelled or dropped)",
          stats.painted + stats.cancelled + stats.stale_results + stats.errors == stats.submitted, stats.as_dict())
    check("live: the picture shown is the newest job's",
          live.last is not None and live.last.job_index == live.session._index, stats.as_dict())
    ctx["report"]["info"]["live_flurry"] = {"strokes": strokes, "sent": sent, **stats.as_dict()}
    live.set_idle_ms(500)
    # inside a selection: an only-masked edit of the selection's window
    select(doc, 80, 80, 16, 16)
    painted = stats.painted
    _paint(doc, 84, 84, 8, 8, (255, 0, 0, 255))
    check("live: a stroke in a selection repaints", wait_for(app, lambda: stats.painted > painted
                                                              and live.last.plan.kind == "edit", 90), stats.as_dict())
    req = live.last.plan.request if live.last else None
    check("live: only the selection's window was sent",
          req is not None and req.mask is not None and req.init_image.width * req.init_image.height < 128 * 128,
          req and (req.init_image.width, req.init_image.height))
    # keep: a real layer (the docker's Keep and Discard act only while a live picture is shown)
    check("live: Keep and Discard are enabled while a picture is shown",
          live.last is not None and live.keep_button.isEnabled() and live.discard_button.isEnabled())
    layers = len(dp.layer_nodes(doc))
    nodes = live.keep()
    kept_buttons = (live.keep_button.isEnabled(), live.discard_button.isEnabled())
    doc.waitForDone()
    check("live: Keep and Discard are disabled once the picture is kept", kept_buttons == (False, False),
          kept_buttons)
    check("live: Keep adds one layer", len(nodes) == 1 and len(dp.layer_nodes(doc)) == layers + 1,
          [n.name() for n in dp.layer_nodes(doc)])
    check("live: the kept layer is named as live", bool(nodes) and nodes[0].name().startswith("Live"))
    wait_for(app, lambda: live.last is not None, 60)
    live.discard()
    check("live: Discard drops the picture", live.last is None and not live.keep_button.isEnabled()
          and not live.discard_button.isEnabled())
    live.set_enabled(False)
    check("live: switches off", not live.enabled and live.session is None)
    # the starter ships its LCM-LoRA: while live is on, "model default" reads what live jobs use
    from impasto_krita.plugin_krita.impasto_krita.panel import _select_data

    check("live: the starter is listed", _select_data(panel.model_combo, "starter"))
    panel.show_recommendation()
    off = (panel.sampler_combo.itemText(0), panel.steps_spin.specialValueText(), panel.cfg_spin.specialValueText())
    live.set_enabled(True)
    on = (panel.sampler_combo.itemText(0), panel.steps_spin.specialValueText(), panel.cfg_spin.specialValueText())
    wait_for(app, lambda: live.last is not None, 90)
    live.set_enabled(False)
    back = (panel.sampler_combo.itemText(0), panel.steps_spin.specialValueText(), panel.cfg_spin.specialValueText())
    check("live: model default reads the live job's LoRA settings while live is on",
          "LCM" in on[0] and on[1:] == ("model (4)", "model (1.0)") and "LCM" not in off[0] and back == off,
          {"off": off, "on": on, "back": back})
    doc.close()


dp.SCENARIOS["live"] = scenario_live


def main(*args):
    dp.main(*args)
