"""The starter's control-model tooling: procedural drawings, and the training script's mechanics (resume, export).

The training runs a few steps on the tiny model (the real run is minutes to
hours on the starter); what is checked is that it trains only the ControlNet,
resumes where it stopped, and writes a folder the engine lists and uses.
"""
from __future__ import annotations

import json

import numpy as np
import torch

torch.set_num_threads(1)


def test_drawings_are_rough_binary_marks_around_the_shape():
    from impasto.backend.starter import drawings as Dr

    rng = np.random.default_rng(5)
    scenes, maps, captions, drawn = Dr.sample(24, 64, rng)
    assert scenes.shape == maps.shape == (24, 64, 64, 3) and set(np.unique(maps)) <= {0, 255}
    assert {d.filled for d in drawn} == {True, False}          # outlines and silhouettes both occur
    ious = []
    for scene, d, cap in zip(scenes, drawn, captions):
        region = Dr.drawn_region(d, 64)
        shape = (scene != scene[0, 0]).any(-1)                   # the scene's shape (the corner is background)
        ious.append((region & shape).sum() / (region | shape).sum())
        # rough, not exact: the drawing covers the shape's place and size, give or take its wobble
        assert 0.5 < ious[-1] < 1.0, cap
    assert np.median(ious) > 0.75
    again = Dr.sample(24, 64, np.random.default_rng(5))[1]
    assert np.array_equal(maps, again)                           # deterministic from the generator


def test_training_resumes_and_exports_a_control_model_the_engine_uses(tmp_path, capsys):
    from impasto.backend.engine import Engine
    from impasto.backend.engine.control_models import scan
    from impasto.backend.starter import train_control
    from impasto.backend.tooling.tiny_model import build_tiny_model
    from impasto.protocol.messages import ControlUnit, Generate, Image

    models = tmp_path / "models"
    base = build_tiny_model(models / "tiny")
    out, work = models / "controlnet" / "tiny-drawn", tmp_path / "work"
    common = ["--base", str(base), "--out", str(out), "--work", str(work), "--batch", "2", "--warmup", "1"]
    assert train_control.main(common + ["--steps", "2"]) == 0
    first = torch.load(work / "control.pt", weights_only=False)
    assert first["step"] == 2
    assert train_control.main(common + ["--steps", "3"]) == 0
    assert "resumed at step 2/3" in capsys.readouterr().out
    meta = json.loads((out / "impasto.json").read_text())
    assert meta["control"] == "scribble" and meta["training"]["steps"] == 3
    (entry,) = [e for e in scan(models) if e.name == "tiny-drawn"]
    assert (entry.kind, entry.family, entry.controls) == ("controlnet", "sd15", "scribble")
    engine = Engine(models)   # the exported folder is found and used as the one sd15 scribble model
    layer = np.full((64, 64, 4), 255, np.uint8)
    layer[20:40, 20:24, :3] = 0
    r = engine.run(Generate(job="t", prompt="a red circle", model="tiny", width=64, height=64, steps=2, seed=1,
                            sampler="ddim", control=[ControlUnit("scribble", Image(64, 64, layer.tobytes()))]))
    assert r.info["control"][0]["model"] == "tiny-drawn"
