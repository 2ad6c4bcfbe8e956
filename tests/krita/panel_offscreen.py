"""The docker panel under any PyQt (5 or 6) without Krita: ``python panel_offscreen.py PYKRITA ENDPOINT OUT``.

Krita 6 moves to PyQt6; this script builds the same panel the docker shows
with a stand-in for Krita's document API and runs a text-to-image job and an
inpaint through it against a real daemon, so the Qt-compat layer is tested
under both bindings.  ``PYKRITA`` is an installed plugin folder (the vendored
protocol is used: this interpreter has no Impasto installed).  Prints one
JSON line: {"binding", "checks": [[name, ok, detail]...]}.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, sys.argv[1])
ENDPOINT, OUT = sys.argv[2], sys.argv[3]

from impasto_krita.plugin_krita.impasto_krita.config import MemoryStore  # noqa: E402
from impasto_krita.plugin_krita.impasto_krita.pixels import swap_red_blue  # noqa: E402
from impasto_krita.plugin_krita.impasto_krita.qt import BINDING, Qt, QtWidgets  # noqa: E402

CHECKS = []


def check(name, ok, detail=""):
    CHECKS.append([name, bool(ok), str(detail)[:500]])


class FakeDoc:
    """The parts of krita.Document the plugin reads."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        self.bgra = bytes([60, 120, 180, 255]) * (w * h)
        self.selection = None
        self.layers = []
        self.nodes = []

    def topLevelNodes(self):  # noqa: N802
        return list(self.nodes)

    def width(self):
        return self.w

    def height(self):
        return self.h

    def name(self):
        return "fake"

    def colorModel(self):  # noqa: N802
        return "RGBA"

    def colorDepth(self):  # noqa: N802
        return "U8"

    def colorProfile(self):  # noqa: N802
        return "sRGB-elle-V2-srgbtrc.icc"


class FakeNode:
    """A paint layer as krita.Node shows it (BGRA8 pixels, a unique id)."""

    def __init__(self, name, w, h, bgra):
        self._name, self.w, self.bgra = name, w, bgra
        self.reads = []

    def name(self):
        return self._name

    def type(self):
        return "paintlayer"

    def childNodes(self):  # noqa: N802
        return []

    def uniqueId(self):  # noqa: N802
        class Uid:
            def toString(inner):  # noqa: N805
                return "{" + self._name + "-uid}"
        return Uid()

    def colorModel(self):  # noqa: N802
        return "RGBA"

    def colorDepth(self):  # noqa: N802
        return "U8"

    def colorProfile(self):  # noqa: N802
        return "sRGB-elle-V2-srgbtrc.icc"

    def pixelData(self, x, y, w, h):  # noqa: N802
        from impasto_krita.plugin_krita.impasto_krita.masks import crop

        self.reads.append((x, y, w, h))
        return crop(self.bgra, self.w, (x, y, w, h), 4)


class FakeHost:
    def __init__(self, doc):
        self.doc = doc
        self.windows = []

    def active_document(self):
        return self.doc

    def is_open(self, doc):
        return True

    def canvas_size(self, doc):
        return doc.w, doc.h

    def has_selection(self, doc):
        return doc.selection is not None

    def read_selection(self, doc):
        return doc.selection

    def read_pixels(self, doc, window):
        from impasto_krita.plugin_krita.impasto_krita.masks import crop
        from impasto_krita.plugin_krita.impasto_krita.pixels import RGBA8

        self.windows.append(tuple(window))
        return crop(doc.bgra, doc.w, window, 4), RGBA8, None

    def add_layers(self, doc, prepared):
        doc.layers.extend(prepared)
        return [p.plan for p in prepared]


def wait(app, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def main():
    from impasto_krita.plugin_krita.impasto_krita.panel import ImpastoPanel, _select_data

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    doc = FakeDoc(48, 40)
    panel = ImpastoPanel(FakeHost(doc), MemoryStore(), install_info={"endpoint": ENDPOINT, "auto_start": False})
    panel.resize(340, 900)
    panel.show()
    ok = wait(app, lambda: panel.state.status not in ("connecting", "starting"), 60)
    check("connects", ok and panel.state.ready, panel.status_label.text())
    # concepts the daemon lists become rows with a tick and a LoRA weight, and reach the request
    import dataclasses

    real_state = panel.state
    panel.state_changed(dataclasses.replace(real_state, concepts=[{"name": "mycat", "trigger": "sks"},
                                                                  {"name": "style2", "trigger": ""}]))
    rows = panel.concept_rows
    check("concept rows", sorted(rows) == ["mycat", "style2"] and "sks" in rows["mycat"][0].text(), sorted(rows))
    if "mycat" in rows:
        rows["mycat"][0].setChecked(True)
        rows["mycat"][1].setValue(0.75)
        check("concept in the request", panel.read_form().active_concepts() == [("mycat", 0.75)],
              panel.read_form().active_concepts())
        rows["mycat"][0].setChecked(False)
    # a Concept Slider listed by the daemon is a -3..+3 slider row; off 0 it reaches the request, signed
    panel.state_changed(dataclasses.replace(real_state, concepts=[
        {"name": "mycat", "trigger": "sks"},
        {"name": "bigger", "trigger": "", "slider": {"mode": "text", "negative": "a small shape",
                                                     "positive": "a big shape"}}]))
    rows = panel.concept_rows
    check("slider row", "bigger" in rows and rows["bigger"][1].slider.maximum() == 60
          and rows["bigger"][1].low.text() == "a small shape" and not rows["bigger"][0].isChecked(), sorted(rows))
    if "bigger" in rows:
        rows["bigger"][1].setValue(-1.5)
        check("slider in the request", panel.read_form().active_concepts() == [("bigger", -1.5)],
              panel.read_form().active_concepts())
        rows["bigger"][1].setValue(0.0)
        check("slider at 0 is off", panel.read_form().active_concepts() == [], panel.read_form().active_concepts())
    # knobs left unset show, and use, the model's recommendation (the daemon's listing carries it)
    # a model of its own name: the real listing may hold the shipped starter, with its own recommendation
    starter = {"name": "starter-like", "native_size": 64,
               "recommended": {"steps": 20, "guidance_scale": 5.0, "scheduler": "DDIMScheduler"}}
    panel.state_changed(dataclasses.replace(real_state, models=list(real_state.models) + [starter],
                                            default_model="starter-like"))
    _select_data(panel.model_combo, "")
    check("model default shown", panel.sampler_combo.itemText(0) == "model default (DDIM, 20, 5.0)"
          and panel.read_form().unset() == ["sampler", "steps", "cfg_scale"]
          and panel.steps_spin.text() == "model (20)", [panel.sampler_combo.itemText(0), panel.steps_spin.text()])
    check("model default used", (panel.recommendation().sampler, panel.recommendation().steps) == ("ddim", 20),
          panel.recommendation())
    fills = [(panel.fill_combo.itemText(i), panel.fill_combo.itemData(i, Qt.ItemDataRole.ToolTipRole))
             for i in range(panel.fill_combo.count())]
    check("fill menu in the client core's words, each with its hint",
          fills[panel.fill_combo.findData("neutral")][0] == "Neutral grey" and all(tip for _, tip in fills), fills)
    panel.state_changed(real_state)
    panel.prompt_edit.setPlainText("a blue square")
    panel.steps_spin.setValue(3)
    panel.random_seed_check.setChecked(False)
    panel.seed_spin.setValue(5)
    _select_data(panel.model_combo, "tiny")
    _select_data(panel.sampler_combo, "euler")
    check("generate label", panel.generate_button.text() == "Generate", panel.generate_button.text())
    count = panel.outcome_count
    check("generate starts", panel.generate(), panel.last_message)
    wait(app, lambda: panel.outcome_count > count, 180)
    check("txt2img layer", panel.outcome == "layers" and len(doc.layers) == 1
          and (doc.layers[0].plan.width, doc.layers[0].plan.height) == (48, 40), panel.last_message)
    # the Results section keeps it with its settings; "Use settings" brings the seed and steps back
    results = panel.results
    check("result in the history", results.list.count() == 1 and "seed 5" in results.list.item(0).text()
          and "Steps: 3" in results.list.item(0).toolTip() and not results.list.item(0).icon().isNull(),
          [results.list.item(i).text() for i in range(results.list.count())])
    if results.list.count():
        panel.seed_spin.setValue(99)
        panel.steps_spin.setValue(11)
        results.list.setCurrentRow(0)
        results.use_button.click()
        check("use settings", (panel.read_form().seed, panel.read_form().steps) == (5, 3), panel.read_form())
        import os
        import tempfile
        from impasto_krita.protocol.parameters import png_text

        saved = results.save_selected(os.path.join(tempfile.mkdtemp(), "saved.png"))
        text = png_text(open(saved, "rb").read()) if saved else ""
        check("saved result carries its parameters", "a blue square" in (text or "") and "Seed: 5," in (text or "")
              and "Steps: 3," in (text or ""), text)
        panel.steps_spin.setValue(3)
    # inpaint a selection
    sel = bytearray(48 * 40)
    for y in range(10, 22):
        sel[y * 48 + 12:y * 48 + 30] = b"\xff" * 18
    doc.selection = bytes(sel)
    panel._refresh_action_label()
    check("inpaint label", panel.generate_button.text() == "Inpaint selection", panel.generate_button.text())
    check("colour match on by default", panel.colour_check.isChecked() and panel.read_form().colour_match)
    panel.colour_check.setChecked(False)                  # the toggle reaches the request the docker sends
    count = panel.outcome_count
    panel.generate()
    wait(app, lambda: panel.outcome_count > count, 180)
    sent = getattr(getattr(panel.session, "_plan", None), "request", None)
    check("colour match off in the request", sent is not None and sent.colour_match is False,
          getattr(sent, "colour_match", None))
    panel.colour_check.setChecked(True)
    ok = panel.outcome == "layers" and len(doc.layers) == 2
    check("inpaint layer", ok, panel.last_message)
    if ok:
        p = doc.layers[1].plan
        check("patch around the selection", 4 <= p.x <= 12 and 2 <= p.y <= 10 and p.x + p.width >= 30,
              (p.x, p.y, p.width, p.height))
        check("layer pixels are BGRA for Krita", doc.layers[1].data == swap_red_blue(p.rgba))
    # a control layer: picked in the docker, read in the job's window, a control unit in the request
    sketch = bytearray(bytes([255, 255, 255, 255]) * (48 * 40))
    for y in range(8, 30):
        sketch[(y * 48 + 20) * 4:(y * 48 + 24) * 4] = bytes([0, 0, 0, 255]) * 4
    node = FakeNode("sketch", 48, 40, bytes(sketch))
    doc.nodes = [node]
    row = panel.control_box.add()
    row.layer_combo.refresh()
    check("control layer listed", row.layer_combo.count() == 1 and row.layer_combo.currentText() == "sketch",
          row.layer_combo.count())
    row.strength.setValue(0.8)
    count = panel.outcome_count
    panel.generate()
    wait(app, lambda: panel.outcome_count > count, 180)
    info = getattr(panel.last_result, "info", {}) or {}
    control = info.get("control") or [{}]
    check("control unit ran", panel.outcome == "layers" and control[0].get("model") == "tiny-scribble"
          and control[0].get("strength") == 0.8 and control[0].get("type") == "scribble", (panel.last_message, info))
    check("control layer read in the job's window", node.reads and node.reads[-1] == panel.host.windows[-1],
          (node.reads, panel.host.windows))
    panel.control_box.remove(row)
    check("preview shown", panel.preview.pixmap() is not None and not panel.preview.pixmap().isNull())
    # issue 19: a daemon warning shows while the job runs (a 40x12 picture is painted at the native area)
    said = []
    show = panel.show_message
    panel.show_message = lambda text, error=False: (said.append((panel.outcome_count, text)), show(text, error))
    small = FakeDoc(40, 12)
    panel.host.doc = small
    panel._refresh_action_label()
    count = panel.outcome_count
    panel.generate()
    wait(app, lambda: panel.outcome_count > count, 180)
    live = [t for n, t in said if n == count and "size changed" in t and "new layer" not in t]
    check("warning shown while the job runs", bool(live) and panel.outcome == "layers", said)
    check("warning kept with the result", "size changed" in panel.last_message, panel.last_message)
    panel.show_message = show
    panel.host.doc = doc
    panel.grab().save(OUT)
    check("screenshot", os.path.getsize(OUT) > 1000)
    panel.shutdown()
    print(json.dumps({"binding": BINDING, "checks": CHECKS}))


if __name__ == "__main__":
    main()
