"""The docker's "Edit prompt" section under any PyQt: ``python prompt_edit_offscreen.py PYKRITA ENDPOINT OUT``.

Builds the real panel offscreen with ``panel_offscreen.py``'s stand-in for
Krita's document API, generates a picture, then edits its prompt from the
section below Results against a real daemon (installed plugin copy, vendored
protocol).  Prints one JSON line: {"binding", "checks": [[name, ok, detail]...]}.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import panel_offscreen as po  # noqa: E402  (puts PYKRITA on sys.path, reads ENDPOINT and OUT)

from impasto_krita.plugin_krita.impasto_krita.config import MemoryStore  # noqa: E402
from impasto_krita.plugin_krita.impasto_krita.qt import BINDING, QtWidgets  # noqa: E402

SRC = "a red circle on a blue background"


def main():
    from impasto_krita.plugin_krita.impasto_krita.panel import ImpastoPanel, _select_data

    check, wait = po.check, po.wait
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    doc = po.FakeDoc(48, 40)
    panel = ImpastoPanel(po.FakeHost(doc), MemoryStore(), install_info={"endpoint": po.ENDPOINT,
                                                                         "auto_start": False})
    panel.resize(340, 1000)
    panel.show()
    ok = wait(app, lambda: panel.state.status not in ("connecting", "starting"), 60)
    check("connects", ok and panel.state.ready, panel.status_label.text())
    section = panel.edit_prompt
    check("section below Results", section.section.parentWidget() is panel.results_section.parentWidget())
    count = panel.outcome_count
    check("nothing to edit yet", not section.edit() and "generate one first" in panel.last_message,
          panel.last_message)
    panel.prompt_edit.setPlainText(SRC)
    panel.steps_spin.setValue(3)
    panel.random_seed_check.setChecked(False)
    panel.seed_spin.setValue(12)
    _select_data(panel.model_combo, "tiny")
    _select_data(panel.sampler_combo, "euler")
    panel.generate()
    wait(app, lambda: panel.outcome_count > count, 180)
    check("original layer", panel.outcome == "layers" and len(doc.layers) == 1, panel.last_message)
    panel.results.list.setCurrentRow(0)
    check("prompt filled from the result", section.prompt.text() == SRC, section.prompt.text())
    section.prompt.setText("a green circle on a blue background")
    section.cross.setValue(0.7)
    check("local edit is the default", section.local.isChecked())
    check("layout auto is the default", section.self_.text() == "auto", section.self_.text())
    section.local.setChecked(False)
    sent = {}
    real_start = panel.session.start_job

    def spy(build):
        plan = build()
        sent["request"] = plan.request
        return real_start(lambda: plan)

    panel.session.start_job = spy
    count = panel.outcome_count
    check("edit starts", section.edit(), panel.last_message)
    wait(app, lambda: panel.outcome_count > count, 180)
    req = sent.get("request")
    check("edit request", req is not None and req.p2p is not None and req.p2p.source_prompt == SRC
          and req.seed == 12 and req.p2p.cross_replace == 0.7 and req.p2p.local is False
          and req.p2p.self_replace is None
          and (req.width, req.height) == (48, 40), req)
    check("edit layer", panel.outcome == "layers" and len(doc.layers) == 2
          and (doc.layers[1].plan.width, doc.layers[1].plan.height) == (48, 40), panel.last_message)
    if len(doc.layers) == 2:
        check("edit differs from the original", doc.layers[0].data != doc.layers[1].data)
    check("edit in Results", panel.results.list.count() == 2, panel.results.list.count())
    # an edit of the edit (selected in Results) is made from the first original
    rows = [panel.results.list.item(i).text() for i in range(panel.results.list.count())]
    edit_row = next((i for i, t in enumerate(rows) if "green" in t), -1)
    panel.results.list.setCurrentRow(edit_row)
    check("the edit selected", section.prompt.text() == "a green circle on a blue background", rows)
    section.prompt.setText("a yellow circle on a blue background")
    sent.clear()
    count = panel.outcome_count
    check("edit of the edit starts", section.edit(), panel.last_message)
    wait(app, lambda: panel.outcome_count > count, 180)
    req = sent.get("request")
    check("edit of the edit is made from the original", req is not None and req.p2p.source_prompt == SRC
          and req.prompt == "a yellow circle on a blue background", req)
    section.prompt.setText("three green dogs under a tall tree")
    check("too many words is a message", not section.edit() and "changes" in panel.last_message,
          panel.last_message)
    panel.grab().save(po.OUT)
    panel.shutdown()
    print(json.dumps({"binding": BINDING, "checks": po.CHECKS}))


if __name__ == "__main__":
    main()
