"""Control layers on the canvas: a layer marked as control becomes a unit, read in the job's window, and runs."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from impasto.desktop import control_layers, job_plans, qt_images  # noqa: E402
from impasto.desktop.document import Document  # noqa: E402
from impasto.desktop.layers import Layer  # noqa: E402
from impasto.desktop.layers_panel import LayersPanel  # noqa: E402
from impasto.desktop.settings import GenerationSettings  # noqa: E402
from impasto.protocol.control import ControlLayer  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def qapp():
    return QApplication.instance() or QApplication([])


def sketch_doc(w=320, h=240):
    doc = Document(w, h)
    arr = np.zeros((h, w, 4), np.uint8)
    rng = np.random.default_rng(3)
    arr[...] = rng.integers(0, 256, arr.shape, dtype=np.uint8)
    arr[..., 3] = 255
    layer = Layer("sketch", qt_images.rgba_from_array(arr), visible=False)
    doc._insert_layer(layer, len(doc.layers))
    return doc, layer, arr


def settings(**kw):
    s = GenerationSettings(prompt="a red circle", steps=3, cfg_scale=5.0, sampler="euler", seed=4, model="tiny")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_marked_layer_travels_whole_for_generate_and_cut_for_an_only_masked_inpaint():
    doc, layer, arr = sketch_doc()
    assert job_plans.plan(doc, settings(), "generate").request.control == []
    control_layers.mark(doc, layer, ControlLayer("scribble", strength=0.6, start=0.0, end=0.8))
    assert control_layers.control_of(layer).source == layer.id and layer.info["control"]["type"] == "scribble"
    plan = job_plans.plan(doc, settings(), "generate")
    (unit,) = plan.request.control
    assert (unit.type, unit.strength, unit.end) == ("scribble", 0.6, 0.8)
    assert (unit.image.width, unit.image.height) == (320, 240) and unit.image.data == arr.tobytes()
    # an inpaint of a small painted mask: the unit holds the planner's window of the layer, nothing more
    mask = np.zeros((240, 320), np.uint8)
    mask[200:220, 280:300] = 255
    doc.mask = qt_images.gray_from_array(mask)
    plan = job_plans.plan(doc, settings(padding=8, mask_blur=2), "inpaint")
    x0, y0, x1, y1 = plan.core.window
    assert (x1 - x0, y1 - y0) != (320, 240)
    unit = plan.request.control[0]
    assert unit.image.data == np.ascontiguousarray(arr[y0:y1, x0:x1]).tobytes()
    control_layers.mark(doc, layer, None)
    assert job_plans.plan(doc, settings(), "generate").request.control == []


def test_layers_panel_has_the_control_button():
    doc, layer, _ = sketch_doc(64, 64)
    panel = LayersPanel(doc)
    assert panel.control_button.text() == "Control…"
    dialog = control_layers.ControlLayerDialog(layer)
    assert dialog.value() is None                  # not a control layer yet
    dialog.enabled.setChecked(True)
    dialog.type.setCurrentText("lineart")
    dialog.strength.setValue(1.3)
    assert dialog.value() == ControlLayer("lineart", strength=1.3)


def test_a_control_layer_job_runs_on_the_daemon(daemon):
    from impasto.protocol import Client

    doc, layer, _ = sketch_doc(64, 64)
    control_layers.mark(doc, layer, ControlLayer("scribble"))
    plain = job_plans.plan(doc, settings(), "generate").request
    plan = job_plans.plan(doc, settings(), "generate")
    with Client(daemon.endpoint) as client:
        result = client.submit(plan.request).wait(timeout=180)
        control_layers.mark(doc, layer, None)
        base = client.submit(job_plans.plan(doc, settings(), "generate").request).wait(timeout=180)
    assert result.info["control"][0]["model"] == "tiny-scribble" and plain.control
    assert result.images[0].data != base.images[0].data
