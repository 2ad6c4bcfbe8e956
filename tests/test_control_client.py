"""Control layers in the client core (planner, ``protocol/control.py``) and the CLI's ``--control``.

The planner cuts each control layer to the job's window (the one region rule
for "only masked" edits); the CLI reads picture files, parses
``TYPE:IMAGE[:STRENGTH[:START:END]]`` and lists control models; a real daemon
runs the jobs.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from impasto.protocol import planner
from impasto.protocol.control import ControlLayer, parameters_extra, parse_spec, window_pixels
from impasto.protocol.messages import ControlUnit
from impasto.protocol.parameters import format_parameters, parse_parameters
from impasto.protocol.errors import PlanError
from impasto.protocol.region import crop_bytes
from impasto.protocol.settings import Settings


def test_parse_spec():
    assert parse_spec("scribble:a.png") == ControlLayer("scribble", "a.png")
    assert parse_spec("canny:C:\\art\\a.png:0.5") == ControlLayer("canny", "C:\\art\\a.png", 0.5)
    assert parse_spec("raw:x.png:0.8:0.25:0.75") == ControlLayer("raw", "x.png", 0.8, 0.25, 0.75)
    for bad in ("scribble", "blur:a.png", "scribble:a.png:0.5:0.2"):
        with pytest.raises(PlanError):
            parse_spec(bad)


def _doc(w, h, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8).tobytes()


def test_parameters_name_each_acting_unit_and_still_parse():
    units = [ControlUnit("lineart", None, "cn-lines", 0.75, 0.1, 0.8), ControlUnit("canny", None, "", 0.0)]
    extra = parameters_extra(units)
    assert extra == {"ControlNet 0": "Module: lineart, Model: cn-lines, Weight: 0.75, Guidance Start: 0.1, "
                                     "Guidance End: 0.8"}
    text = format_parameters(Settings(prompt="a red star", steps=20, sampler="ddim", cfg_scale=5.0), 7, (128, 128),
                             "starter", extra=extra)
    parsed = parse_parameters(text)
    assert parsed.settings.prompt == "a red star" and parsed.settings.seed == 7 and parsed.size == (128, 128)
    assert parsed.values["ControlNet 0"] == extra["ControlNet 0"]


def test_txt2img_sends_the_whole_layer_and_checks_values():
    doc = (96, 64)
    layer = _doc(*doc, 1)
    settings = Settings(prompt="a red circle", steps=4, cfg_scale=5, sampler="ddim")
    plan = planner.plan_job(doc, settings, planner.GENERATE,
                            controls=[(ControlLayer("scribble", strength=0.7, start=0.1, end=0.9), layer),
                                      (ControlLayer("canny", enabled=False), layer)],
                            control_model="cn")
    (unit,) = plan.request.control
    assert (unit.image.width, unit.image.height, unit.image.data) == (96, 64, layer)
    assert (unit.type, unit.strength, unit.start, unit.end, unit.model) == ("scribble", 0.7, 0.1, 0.9, "cn")
    assert "scribble 0.7" in plan.label
    with pytest.raises(PlanError) as err:     # out-of-range values are plan errors in artist words
        planner.plan_job(doc, settings, planner.GENERATE, controls=[(ControlLayer("scribble", strength=3), layer)])
    assert err.value.field == "control[0].strength" and "control layer 1 strength" in err.value.message.lower()
    with pytest.raises(PlanError):            # pixels not read for the window
        planner.plan_job(doc, settings, planner.GENERATE, controls=[(ControlLayer("scribble"), layer[:-4])])


def test_only_masked_edit_sends_the_control_layer_cut_to_the_window():
    doc = (640, 480)
    picture, layer = _doc(*doc, 2), _doc(*doc, 3)
    mask = np.zeros((480, 640), np.uint8)
    mask[300:340, 500:560] = 255
    settings = Settings(prompt="a cat", steps=4, cfg_scale=5, sampler="ddim")
    box = planner.mask_box(mask.tobytes(), *doc)
    window = planner.window_for(doc, box, settings, planner.INPAINT)
    assert window != (0, 0, 640, 480)
    plan = planner.plan_job(doc, settings, planner.INPAINT, window, crop_bytes(picture, 640, window, 4),
                            crop_bytes(mask.tobytes(), 640, window, 1),
                            controls=[(ControlLayer("lineart"), window_pixels(layer, doc, window))])
    unit = plan.request.control[0]
    x0, y0, x1, y1 = window
    want = np.frombuffer(layer, np.uint8).reshape(480, 640, 4)[y0:y1, x0:x1]
    assert (unit.image.width, unit.image.height) == (x1 - x0, y1 - y0)
    assert unit.image.data == want.tobytes()


@pytest.fixture(scope="module")
def control_daemon(tmp_path_factory):
    from conftest import DaemonProcess
    from impasto.backend.tooling.tiny_model import (build_tiny_controlnet, build_tiny_model, build_tiny_sdxl,
                                                    build_tiny_t2i_adapter)

    root = tmp_path_factory.mktemp("cli-control")
    models = root / "models"
    build_tiny_model(models / "tiny")
    build_tiny_controlnet(models / "controlnet" / "cn-scribble", models / "tiny", controls="scribble")
    build_tiny_t2i_adapter(models / "controlnet" / "t2i-canny", models / "tiny", controls="canny")
    build_tiny_sdxl(root / "xl")
    build_tiny_controlnet(models / "controlnet" / "xl-cn", root / "xl", controls="scribble")
    daemon = DaemonProcess(models, root / "home", extra_args=["--no-preload"]).start()
    yield daemon, root
    daemon.stop()


def cli(daemon, *args):
    return subprocess.run([sys.executable, "-m", "impasto.backend.cli", *args, "--no-spawn"], env=daemon.env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.torch
@pytest.mark.daemon
def test_cli_lists_control_models_and_paints_with_them(control_daemon):
    daemon, root = control_daemon
    out = cli(daemon, "models")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:5] for line in out.stdout.split("control models")[1].splitlines()[1:]}
    assert rows["cn-scribble"] == ["sd15", "ControlNet", "controls", "scribble"]
    assert rows["t2i-canny"] == ["sd15", "T2I-Adapter", "controls", "canny"]
    assert rows["xl-cn"][0] == "sdxl"

    drawing = np.full((64, 64, 3), 255, np.uint8)
    drawing[16:48, 20:28] = 0
    PILImage.fromarray(drawing).save(root / "drawing.png")
    common = ["--model", "tiny", "--steps", "3", "--seed", "4", "--sampler", "euler", "--cfg", "5", "-q"]
    plain, steered, zero = root / "plain.png", root / "steered.png", root / "zero.png"
    assert cli(daemon, "generate", "a red circle", "--size", "64x64", "-o", str(plain), *common).returncode == 0
    out = cli(daemon, "generate", "a red circle", "--size", "64x64", "-o", str(steered), *common,
              "--control", f"scribble:{root / 'drawing.png'}:1.0:0:1", "--control", f"canny:{root / 'drawing.png'}:0.5")
    assert out.returncode == 0, out.stderr
    out = cli(daemon, "generate", "a red circle", "--size", "64x64", "-o", str(zero), *common,
              "--control", f"scribble:{root / 'drawing.png'}:0", "--control-model", "cn-scribble")
    assert out.returncode == 0, out.stderr
    a, b, c = (np.asarray(PILImage.open(p)) for p in (plain, steered, zero))
    assert np.array_equal(a, c) and (a != b).mean() > 0.05
    # the saved pictures say which control steered them, as A1111 writes it (a unit at strength 0 did not act)
    steered_text = PILImage.open(steered).info["parameters"]
    assert ('ControlNet 0: "Module: scribble, Model: auto, Weight: 1, Guidance Start: 0, Guidance End: 1"'
            in steered_text), steered_text
    assert 'ControlNet 1: "Module: canny, Model: auto, Weight: 0.5,' in steered_text
    assert "ControlNet" not in PILImage.open(zero).info["parameters"]

    # img2img and edit take control layers too (the edit's is cut to the window the planner sends)
    src, mask = root / "src.png", root / "mask.png"
    PILImage.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(src)
    m = np.zeros((64, 64), np.uint8)
    m[20:44, 20:44] = 255
    PILImage.fromarray(m).save(mask)
    out = cli(daemon, "img2img", str(src), "a cat", "-o", str(root / "i2i.png"), *common,
              "--control", f"scribble:{root / 'drawing.png'}", "--control-model", "cn-scribble")
    assert out.returncode == 0, out.stderr
    out = cli(daemon, "edit", str(src), str(mask), "a cat", "-o", str(root / "edit.png"), *common,
              "--control", f"lineart:{root / 'drawing.png'}", "--control-model", "cn-scribble")
    assert out.returncode == 0, out.stderr
    assert "made for scribble maps, given a lineart map" in out.stderr


@pytest.mark.torch
@pytest.mark.daemon
def test_cli_control_errors_are_one_readable_line(control_daemon):
    daemon, root = control_daemon
    PILImage.new("RGB", (64, 64), "white").save(root / "blank.png")
    PILImage.new("RGB", (200, 64), "white").save(root / "wide.png")
    common = ["--model", "tiny", "--size", "64x64", "--steps", "2", "--seed", "1", "--sampler", "euler", "--cfg", "5",
              "-q", "-o", str(root / "x.png"), "--force"]
    out = cli(daemon, "generate", "a cat", *common, "--control", f"scribble:{root / 'blank.png'}",
              "--control-model", "xl-cn")
    assert out.returncode != 0 and "'xl-cn' is made for sdxl" in out.stderr and "'tiny' is sd15" in out.stderr
    out = cli(daemon, "generate", "a cat", *common, "--control", f"scribble:{root / 'wide.png'}")
    assert out.returncode != 0 and "200x64" in out.stderr and "64x64" in out.stderr
    out = cli(daemon, "generate", "a cat", *common, "--control", f"depth:{root / 'blank.png'}",
              "--control-model", "cn-scribble")
    assert out.returncode != 0 and "depth estimator" in out.stderr
    out = cli(daemon, "generate", "a cat", *common, "--control", f"blur:{root / 'blank.png'}")
    assert out.returncode != 0 and "control type 'blur'" in out.stderr
    assert "pose. Set it with --control." in out.stderr          # two sentences: the error, then the flag
