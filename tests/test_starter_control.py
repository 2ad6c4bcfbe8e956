"""The starter's control model: procedural drawings, the training script's mechanics, and the shipped model.

The training runs a few steps on the tiny model (the real run is minutes on the
starter); what is checked is that it trains only the ControlNet, resumes where
it stopped, and writes a folder the engine lists and uses.  Built-in control
models (``assets/controlnet``) are found with no artist setup and offered only
for the model they were made for; the shipped one fits the shipped starter.
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
    legs = meta["training"]["legs"]        # stopped and resumed: both runs, in order, in the card
    assert [leg["steps"] for leg in legs] == ["0-2", "2-3"] and all(leg["stopped_by"] == "finished" for leg in legs)
    assert meta["training"]["final_loss"] is not None
    assert train_control.main(common + ["--steps", "3"]) == 0   # finished: only writes the folder again
    again = json.loads((out / "impasto.json").read_text())["training"]
    assert again["legs"] == legs and again["final_loss"] == meta["training"]["final_loss"]
    assert again["wall_minutes"] == meta["training"]["wall_minutes"]
    (entry,) = [e for e in scan(models) if e.name == "tiny-drawn"]
    assert (entry.kind, entry.family, entry.controls) == ("controlnet", "sd15", "scribble")
    engine = Engine(models)   # the exported folder is found and used as the one sd15 scribble model
    layer = np.full((64, 64, 4), 255, np.uint8)
    layer[20:40, 20:24, :3] = 0
    r = engine.run(Generate(job="t", prompt="a red circle", model="tiny", width=64, height=64, steps=2, seed=1,
                            sampler="ddim", control=[ControlUnit("scribble", Image(64, 64, layer.tobytes()))]))
    assert r.info["control"][0]["model"] == "tiny-drawn"
    # a longer run from the exported weights (no checkpoint): the same weights to start, the step count
    # carried on, both runs' settings in the folder's card
    more = models / "controlnet" / "tiny-more"
    calibrated = dict(meta, output_gain={"gain": 1.5, "total": 1.5, "why": "test"})   # as calibrate_control writes
    (out / "impasto.json").write_text(json.dumps(calibrated))
    assert train_control.main(["--base", str(base), "--out", str(more), "--work", str(tmp_path / "work2"),
                               "--batch", "2", "--warmup", "1", "--steps", "3", "--init", str(out)]) == 0
    assert "continuing" in capsys.readouterr().out
    meta2 = json.loads((more / "impasto.json").read_text())
    assert meta2["training"]["steps"] == 3 and meta2["training"]["continued_from"]["steps"] == 3
    assert meta2["training"]["continued_from"]["output_gain"]["total"] == 1.5   # the weights it went on from
    assert "output_gain" not in meta2                  # its own output is not calibrated (yet)
    from diffusers import ControlNetModel

    a = ControlNetModel.from_pretrained(out).state_dict()
    b = ControlNetModel.from_pretrained(more).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)      # steps == its own count: nothing more to train
    assert train_control.main(["--base", str(base), "--out", str(more), "--work", str(tmp_path / "work3"),
                               "--batch", "2", "--warmup", "1", "--steps", "5", "--init", str(out)]) == 0
    c = ControlNetModel.from_pretrained(more).state_dict()
    assert json.loads((more / "impasto.json").read_text())["training"]["steps"] == 5
    assert any(not torch.equal(a[k], c[k]) for k in a)  # two more steps moved it


def test_scene_drawings_follow_every_family_roughly_and_say_where_they_are():
    from impasto.backend.starter import drawings as Dr
    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import scenes as SC

    rng = np.random.default_rng(11)
    pics, maps, caps, drawn = Dr.sample_scenes(48, 128, rng)
    assert pics.shape == maps.shape == (48, 128, 128, 3) and set(np.unique(maps)) <= {0, 255}
    assert {d.filled for d in drawn} == {True, False}
    assert any(" on the " in c or " at the " in c or " in the " in c for c in caps)   # size + place captions
    assert any(c.split()[2] in FAM.TRAIN_FAMILIES for c in caps)                      # and plain ones
    train = set(SC.train_triples())
    for pic, m, d, cap in zip(pics, maps, drawn, caps):
        (o,) = d.scene.objects
        assert (o.family, o.fg, d.scene.bg) in train and cap == SC.caption(d.scene)
        if o.place:                                    # the place word is where the drawing is
            assert SC.place_of(*d.centre) == o.place
        region = Dr.scene_drawn_region(d, 128)
        shape = (pic != pic[0, 0]).any(-1)
        iou = (region & shape).sum() / (region | shape).sum()
        assert 0.8 < iou < 1.0, cap                   # rough (a wobble), but of this very shape and place
        marks = m[..., 0] > 0
        near = np.zeros_like(region)                   # every mark lies on or next to the drawn region
        ys, xs = np.nonzero(region)
        near[max(0, ys.min() - 3):ys.max() + 4, max(0, xs.min() - 3):xs.max() + 4] = True
        assert marks.any() and not (marks & ~near).any(), cap
    again = Dr.sample_scenes(48, 128, np.random.default_rng(11))[1]
    assert np.array_equal(maps, again)


def _tiny_builtin(tmp_path, monkeypatch, made_for: str):
    from impasto.backend.engine import control_models
    from impasto.backend.tooling.tiny_model import build_tiny_controlnet, build_tiny_model

    models = tmp_path / "models"
    base = build_tiny_model(models / "tiny")
    shipped = tmp_path / "assets" / "controlnet"
    build_tiny_controlnet(shipped / "tiny-drawn", base, controls="scribble")
    meta = json.loads((shipped / "tiny-drawn" / "impasto.json").read_text())
    (shipped / "tiny-drawn" / "impasto.json").write_text(json.dumps(dict(meta, base_model=made_for)))
    monkeypatch.setattr(control_models, "builtin_dir", lambda: shipped)
    return models


def test_a_builtin_control_model_is_found_and_chosen_for_its_model_with_no_setup(tmp_path, monkeypatch):
    from impasto.backend.engine import Engine
    from impasto.backend.engine.control_models import scan, scan_all
    from impasto.protocol.messages import ControlUnit, Generate, Image

    models = _tiny_builtin(tmp_path, monkeypatch, "tiny")
    assert scan(models) == []                       # nothing in the artist's models folder...
    (entry,) = scan_all(models)                      # ...and the shipped one is listed
    assert entry.builtin and entry.base_model == "tiny" and entry.controls == "scribble"
    layer = np.full((64, 64, 4), 255, np.uint8)
    layer[20:40, 20:24, :3] = 0
    r = Engine(models).run(Generate(job="t", prompt="a red circle", model="tiny", width=64, height=64, steps=2,
                                    seed=1, sampler="ddim", control=[ControlUnit("scribble",
                                                                                 Image(64, 64, layer.tobytes()))]))
    assert r.info["control"][0]["model"] == "tiny-drawn"


def test_a_builtin_control_model_is_not_offered_for_another_model(tmp_path, monkeypatch):
    import pytest

    from impasto.backend.engine import Engine
    from impasto.protocol.messages import ControlUnit, Generate, Image, ProtocolError

    models = _tiny_builtin(tmp_path, monkeypatch, "starter")
    layer = np.full((64, 64, 4), 255, np.uint8)
    with pytest.raises(ProtocolError) as err:
        Engine(models).run(Generate(job="t", prompt="a red circle", model="tiny", width=64, height=64, steps=2,
                                    seed=1, sampler="ddim",
                                    control=[ControlUnit("scribble", Image(64, 64, layer.tobytes()))]))
    assert "no installed control model for scribble" in err.value.message


def test_the_shipped_control_model_fits_the_shipped_starter():
    from impasto.backend.engine.control_models import builtin_dir, scan_all
    from impasto.backend.engine.models import starter_dir

    shipped = [e for e in scan_all(builtin_dir().parent / "no-models-folder") if e.builtin]
    (entry,) = [e for e in shipped if e.base_model == "starter"]
    assert (entry.kind, entry.family, entry.controls, entry.supported) == ("controlnet", "sd15", "scribble", True)
    cfg = json.loads((builtin_dir() / entry.name / "config.json").read_text())
    unet = json.loads((starter_dir() / "unet" / "config.json").read_text())
    assert cfg["block_out_channels"] == unet["block_out_channels"]
    assert cfg["cross_attention_dim"] == unet["cross_attention_dim"]
    meta = json.loads((builtin_dir() / entry.name / "impasto.json").read_text())
    assert meta["native_size"] == json.loads((starter_dir() / "impasto.json").read_text())["native_size"]
    from impasto.backend.starter.train_control import file_digest
    assert meta["base_unet"] == file_digest(next((starter_dir() / "unet").glob("*.safetensors")))   # trained on it
    size = sum(f.stat().st_size for f in (builtin_dir() / entry.name).iterdir())
    assert size < 8 * 2 ** 20                       # small: float16 weights


def test_the_pool_is_the_same_however_many_processes_draw_it(tmp_path):
    """Each chunk has its own seed stream, so a GPU machine's 16 drawing processes build the pool one core
    would; a pool of the old single-stream layout is not taken for it."""
    from impasto.backend.starter import train_control as TC
    from impasto.backend.tooling.tiny_model import build_tiny_model

    base = build_tiny_model(tmp_path / "tiny")
    vae = TC.load_base(base, torch.device("cpu"))[1]
    one = TC.build_pool(tmp_path / "one.pt", 10, "shapes", 64, vae, "v", 7, chunk=4, workers=1)
    two = TC.build_pool(tmp_path / "two.pt", 10, "shapes", 64, vae, "v", 7, chunk=4, workers=2)
    assert torch.equal(one["latents"], two["latents"]) and np.array_equal(one["maps"], two["maps"])
    assert one["captions"] == two["captions"] and len(one["captions"]) == 10
    assert len(set(one["captions"])) > 1   # chunks are not copies of each other
    old = dict(one)
    del old["layout"]
    torch.save(old, tmp_path / "old.pt")
    again = TC.load_pool(tmp_path / "old.pt", 10, "shapes", 64, vae, "v", 7)
    assert again["layout"] == TC.POOL_LAYOUT
