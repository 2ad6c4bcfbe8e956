"""The GIMP dialog's control layer, without GIMP: its fields become a control unit read in the job's window."""
from __future__ import annotations

import numpy as np
import pytest

from impasto.plugin_gimp import jobs
from impasto.plugin_gimp.geometry import Rect
from impasto.protocol.errors import PlanError
from impasto.protocol.messages import Image


def test_fields_from_the_procedure_config_and_no_control_by_default():
    values = {"prompt": "a fox", "control-type": "lineart", "control-strength": 0.7, "control-start": 0.1,
              "control-end": 0.9, "control-model": " cn "}
    f = jobs.JobFields.from_config(lambda name: values[name] if name in values else None)
    layer = f.control()
    assert (layer.type, layer.strength, layer.start, layer.end, layer.model) == ("lineart", 0.7, 0.1, 0.9, "cn")
    plain = jobs.JobFields(prompt="a fox")
    assert plain.control() is None and jobs.txt2img_request(plain, 32, 24, control=b"\0" * 32 * 24 * 4).control == []


def test_every_job_kind_carries_the_control_layer_of_its_window():
    f = jobs.JobFields(prompt="a fox", control_type="scribble", control_strength=1.2)
    layer = np.random.default_rng(1).integers(0, 256, (60, 80, 4), dtype=np.uint8)
    t = jobs.txt2img_request(f, 80, 60, control=layer.tobytes())
    assert t.control[0].image.data == layer.tobytes() and t.control[0].strength == 1.2
    i = jobs.img2img_request(f, Image(80, 60, bytes(80 * 60 * 4)), control=layer.tobytes())
    assert i.control[0].type == "scribble"
    # an inpaint of a small selection on a big canvas: the control layer is read in the sent window only
    canvas, selection = Rect(0, 0, 2000, 1500), Rect(1500, 1000, 40, 30)
    sent = jobs.edit_window(f, canvas, selection)
    assert (sent.width, sent.height) != (2000, 1500)
    full = np.random.default_rng(2).integers(0, 256, (1500, 2000, 4), dtype=np.uint8)
    window = np.ascontiguousarray(full[sent.y:sent.bottom, sent.x:sent.right])
    mask = np.zeros((sent.height, sent.width), np.uint8)
    mask[5:20, 5:20] = 255
    e = jobs.edit_request(f, Image(sent.width, sent.height, bytes(sent.width * sent.height * 4)),
                          Image(sent.width, sent.height, mask.tobytes(), "gray8"), canvas=canvas, sent=sent,
                          control=window.tobytes())
    assert e.kind == "edit" and e.control[0].image.data == window.tobytes()
    assert (e.control[0].image.width, e.control[0].image.height) == (sent.width, sent.height)


def test_a_control_type_without_a_layer_or_bad_values_are_plan_errors():
    with pytest.raises(PlanError) as err:
        jobs.txt2img_request(jobs.JobFields(prompt="x", control_type="canny"), 32, 32)
    assert err.value.field == "control"
    with pytest.raises(PlanError) as err:
        jobs.txt2img_request(jobs.JobFields(prompt="x", control_type="canny", control_start=0.8, control_end=0.2),
                             8, 8, control=bytes(8 * 8 * 4))
    assert err.value.field == "control[0].end"
