"""The canvas's "Edit prompt…" on a staged result (desktop/prompt_edit.py), real window, real daemon (tiny model)."""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from impasto.desktop import headless, qt_images  # noqa: E402
from test_canvas_window import open_window, own_home, dialogs_seen, qapp  # noqa: E402,F401 (fixtures)

SRC = "a red circle on a blue background"


def test_edit_prompt_stages_an_edit_of_the_candidate_and_refuses_what_it_cannot_edit(open_window, daemon):
    w = open_window(daemon.endpoint)
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    editor = w.prompt_editor
    assert not editor.button.isEnabled()                     # nothing staged
    w.panel.prompt.setPlainText(SRC)
    w.panel.steps.setValue(3)
    w.panel.set_seed(21)
    w.panel.generate_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 1), w.panel.status.text()
    original = w.staging.current()
    assert editor.button.isVisible() and editor.button.isEnabled()
    editor.button.click()
    dialog = editor.dialog
    assert dialog is not None and dialog.prompt.toPlainText() == SRC
    dialog.prompt.setPlainText("a green circle on a blue background")
    dialog.cross.setValue(0.75)
    assert dialog.self_.text() == "auto" and dialog.values()["self_replace"] is None   # the default: auto
    dialog.self_.setValue(0.5)
    assert dialog.values()["self_replace"] == 0.5
    dialog.self_.setValue(dialog.self_.minimum())
    assert dialog.values()["self_replace"] is None
    assert dialog.local.isChecked()                        # the default: only where the changed words are
    dialog.local.setChecked(False)
    dialog.accept()
    assert headless.pump(90, lambda: len(w.staging) == 2), w.panel.status.text()
    edit = w.staging.current()
    assert edit.info["p2p"]["local"] is False               # the checkbox reached the daemon
    assert edit.seed == 21 and edit.settings.prompt == "a green circle on a blue background"
    assert edit.info["p2p"]["source_prompt"] == SRC and edit.info["p2p"]["cross_steps"] == 2
    assert edit.info["p2p"]["layout_auto"] is True and edit.info["p2p"]["layout"] == 1.0   # a colour swap
    assert edit.rect == original.rect and edit.mode == "generate"
    a = qt_images.rgba_array(original.image)
    b = qt_images.rgba_array(edit.image)
    assert a.shape == b.shape and not np.array_equal(a, b)
    # an edit of the edit is sent from the first original
    job = editor.edit(edit, new_prompt="a yellow circle on a blue background")
    plan = w.controller.jobs[job][1]
    assert plan.request.p2p.source_prompt == SRC and plan.request.seed == 21
    assert headless.pump(90, lambda: len(w.staging) == 3), w.panel.status.text()
    # refusals are a sentence in the panel, nothing is sent
    sent = len(w.controller.jobs)
    assert editor.edit(original, new_prompt="three green dogs under a tall tree") is None
    assert "changes" in w.panel.status.text() and len(w.controller.jobs) == sent
    assert editor.edit(original, new_prompt=SRC, reweight_word="dog", reweight=2.0) is None
    assert "not a word" in w.panel.status.text()
    # a refined candidate was not painted from its seed alone: no edit
    w.staging.discard_all()
    w.panel.strength.setValue(0.5)
    w.panel.refine_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 1), w.panel.status.text()
    assert w.staging.current().mode == "refine" and not editor.button.isEnabled()
    assert editor.open() is None
