"""A test plugin for the full Krita GUI (under Xvfb): the Impasto plugin as an artist meets it.

tests/test_krita_integration.py copies this folder and its ``.desktop`` file
into a scratch profile next to the installed Impasto plugin, enables both in
``kritarc`` and starts ``krita`` itself.  Once the main window exists this
driver opens a document in a real view, selects a region, presses the
``impasto_generate`` *action* (what Ctrl+Shift+Return does), waits for the
docker to add the layer, then triggers Krita's own Undo once and checks the
canvas is back to what it was.  With ``$IMPASTO_DRIVER_SHOT`` it saves the
docker as Krita draws it, mid-job, for docs/krita-docker.png.  Report: ``$IMPASTO_DRIVER_OUT`` (JSON); then Krita is left
with ``os._exit`` (quitting Krita from a plugin tends to crash it on exit).
"""
from __future__ import annotations

import json
import os
import time
import traceback

from krita import Krita, Selection

REPORT = {"checks": [], "failures": [], "timings": {}, "info": {}}
_started = [False]


def check(name, ok, detail=""):
    REPORT["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    if not ok:
        REPORT["failures"].append(f"{name}: {detail}")
    return bool(ok)


def wait_for(app, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def finish():
    REPORT["ok"] = not REPORT["failures"]
    out = os.environ.get("IMPASTO_DRIVER_OUT", "gui-report.json")
    with open(out + ".tmp", "w") as f:
        json.dump(REPORT, f, indent=2)
    os.replace(out + ".tmp", out)
    os._exit(0)


def run():
    try:
        _run()
    except Exception:
        check("GUI driver ran to the end", False, traceback.format_exc())
    finish()


def _run():
    from impasto_krita.plugin_krita.impasto_krita import plugin
    from impasto_krita.plugin_krita.impasto_krita.panel import _select_data
    from impasto_krita.plugin_krita.impasto_krita.qt import QtWidgets

    app = QtWidgets.QApplication.instance()
    k = Krita.instance()
    window = k.activeWindow()
    if not check("Krita opened a main window", window is not None):
        return
    dockers = [d for d in k.dockers() if d.objectName() == plugin.DOCKER_ID]
    check("the Impasto docker is registered in the window", len(dockers) == 1, [d.objectName() for d in k.dockers()])
    action = k.action("impasto_generate")
    check("the generate action has its default shortcut", action is not None
          and action.shortcut().toString() == "Ctrl+Shift+Return", action and action.shortcut().toString())
    panel = plugin.active_panel()
    if not check("the docker built its panel", panel is not None):
        return
    dock = dockers[0]
    dock.setVisible(True)
    W, H = 96, 80
    doc = k.createDocument(W, H, "gui", "RGBA", "U8", "", 72.0)
    window.addView(doc)
    app.processEvents()
    layer = doc.createNode("painting", "paintlayer")
    rgba = bytearray()
    for y in range(H):
        for x in range(W):
            rgba += bytes(((x * 5) % 256, (y * 3) % 256, 160, 255))
    layer.setPixelData(bytes(rgba), 0, 0, W, H)  # BGRA order does not matter for an equality check
    doc.rootNode().addChildNode(layer, None)
    doc.setActiveNode(layer)
    sel = Selection()
    sel.select(30, 24, 28, 22, 255)
    doc.setSelection(sel)
    doc.waitForDone()
    doc.refreshProjection()
    before = bytes(doc.pixelData(0, 0, W, H))
    names_before = [n.name() for n in doc.rootNode().childNodes()]
    t0 = time.monotonic()
    ok = wait_for(app, lambda: panel.state.status not in ("connecting", "starting"), 120)
    REPORT["timings"]["connect_s"] = round(time.monotonic() - t0, 3)
    REPORT["info"]["transport"] = panel.state.transport
    if not check("docker connects to the daemon", ok and panel.state.ready, panel.status_label.text()):
        return
    if os.environ.get("IMPASTO_TRANSPORT") == "zmtp":
        check("the pure-Python ZMTP transport is in use", panel.state.transport == "ZmtpDealer",
              panel.state.transport)
    panel.prompt_edit.setPlainText("a small red house")
    panel.steps_spin.setValue(4)
    panel.random_seed_check.setChecked(False)
    panel.seed_spin.setValue(7)
    panel.feather_spin.setValue(3)
    panel.padding_spin.setValue(16)
    _select_data(panel.model_combo, "tiny")
    _select_data(panel.sampler_combo, "euler")
    if os.environ.get("IMPASTO_DRIVER_SHOT") and panel.model_combo.findData("starter") >= 0:
        # the docs picture shows Impasto painting: the starter, a scene it knows, its own sampler/steps/CFG
        panel.prompt_edit.setPlainText("a yellow circle on a blue background")
        _select_data(panel.model_combo, "starter")
        _select_data(panel.sampler_combo, "")
        panel.steps_spin.setValue(0)
    panel._refresh_action_label()
    check("button says inpaint for the active document's selection",
          panel.generate_button.text() == "Inpaint selection", panel.generate_button.text())
    shot = os.environ.get("IMPASTO_DRIVER_SHOT")
    if shot:  # the docker as Krita draws it, mid-inpaint: progress, live preview, Cancel enabled
        dock.setFloating(True)  # a docked dock is as tall as the main window's dock area allows
        dock.resize(360, 900)
        wait_for(app, lambda: dock.height() >= 880, 3)
        original = panel.job_progress

        def progress(plan, ev):
            original(plan, ev)
            if ev.preview is not None and ev.step >= max(1, ev.total // 2) and not os.path.exists(shot):
                dock.repaint()
                dock.grab().save(shot)

        panel.job_progress = progress
    count = panel.outcome_count
    t0 = time.monotonic()
    action.trigger()  # what Ctrl+Shift+Return does
    ended = wait_for(app, lambda: panel.outcome_count > count, 180)
    REPORT["timings"]["inpaint_s"] = round(time.monotonic() - t0, 3)
    if not check("the action inpainted the selection", ended and panel.outcome == "layers", panel.last_message):
        return
    doc.waitForDone()
    names = [n.name() for n in doc.rootNode().childNodes()]
    new = panel.last_layers[0]
    check("one new layer, right above the active layer", len(names) == len(names_before) + 1
          and names.index(new.name()) == names.index("painting") + 1, names)
    b = new.bounds()
    check("the patch sits on the selection", 30 - 9 <= b.x() <= 30 and 24 - 9 <= b.y() <= 24
          and b.x() + b.width() >= 58 and b.y() + b.height() >= 46, (b.x(), b.y(), b.width(), b.height()))
    if shot:
        check("docker screenshot saved", os.path.exists(shot), shot)
    undo = k.action("edit_undo")
    undo.trigger()
    doc.waitForDone()
    wait_for(app, lambda: len(doc.rootNode().childNodes()) == len(names_before), 10)
    doc.refreshProjection()
    doc.waitForDone()
    check("one Undo removes the result", [n.name() for n in doc.rootNode().childNodes()] == names_before,
          [n.name() for n in doc.rootNode().childNodes()])
    check("after Undo the canvas is exactly as before", bytes(doc.pixelData(0, 0, W, H)) == before)


def _on_window():
    if _started[0]:
        return
    _started[0] = True
    from impasto_krita.plugin_krita.impasto_krita.qt import QtCore

    QtCore.QTimer.singleShot(1500, run)


Krita.instance().notifier().windowCreated.connect(_on_window)
