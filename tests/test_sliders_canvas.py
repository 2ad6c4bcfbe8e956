"""The canvas's Concept Sliders box (desktop/slider_widgets.py) wired into the Generate panel, offscreen."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from impasto.desktop import headless  # noqa: E402
from impasto.desktop.generation_panel import GenerationPanel  # noqa: E402
from impasto.desktop.settings import GenerationSettings  # noqa: E402

LISTING = [
    {"name": "mycat", "trigger": "sks"},
    {"name": "size", "trigger": "", "slider": {"mode": "images", "pairs": 8}},
    {"name": "warmth", "trigger": "", "slider": {"mode": "text", "negative": "a blue circle",
                                                 "positive": "a red circle"}},
]


@pytest.fixture(scope="module")
def qapp():
    return headless.application()


def test_slider_concepts_get_a_slider_and_reach_the_job_signed(qapp):
    panel = GenerationPanel()
    assert not panel.sliders.isVisibleTo(panel)                 # no sliders in the library: no box
    panel.set_concepts_info(LISTING)
    assert panel.sliders.isVisibleTo(panel) and panel.sliders.names() == ["size", "warmth"]
    row = panel.sliders.row("warmth")
    assert (row.low.text(), row.high.text(), row.slider.minimum(), row.slider.maximum()) == (
        "a blue circle", "a red circle", -60, 60)
    row.slider.setValue(-30)
    assert row.value.text() == "-1.50"
    panel.add_concept("mycat", 0.8)
    assert panel.settings().active_concepts() == [("mycat", 0.8), ("warmth", -1.5)]   # size at 0: off
    panel.sliders.row("size").set_weight(2.25)
    assert ("size", 2.25) in panel.settings().active_concepts()
    panel.sliders.row("size").reset.click()
    assert all(n != "size" for n, _ in panel.settings().active_concepts())


def test_saved_settings_load_sliders_into_their_sliders(qapp):
    panel = GenerationPanel()
    saved = GenerationSettings(prompt="a circle").set_concepts([("mycat", 0.5), ("size", -2.0)])
    panel.set_settings(saved)                     # before the library is listed: a plain concept row for now
    assert [r.value() for r in panel._concept_rows] == [("mycat", 0.5), ("size", -2.0)]
    panel.set_concepts_info(LISTING)              # listed: the row moves to its slider, weight kept
    assert [r.value() for r in panel._concept_rows] == [("mycat", 0.5)]
    assert panel.sliders.weights() == {"size": -2.0, "warmth": 0.0}
    assert panel.settings().active_concepts() == [("mycat", 0.5), ("size", -2.0)]
    panel.set_settings(GenerationSettings().set_concepts([("warmth", 1.0)]))
    assert panel.sliders.weights() == {"size": 0.0, "warmth": 1.0} and panel._concept_rows == []
    panel.set_concepts_info(LISTING[:2])          # warmth deleted from the library: its slider goes
    assert panel.sliders.names() == ["size"]
