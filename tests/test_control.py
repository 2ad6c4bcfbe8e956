"""Control units (ControlNet / T2I-Adapter) in the engine: every job kind, both families, every layout.

Tiny random control models of SD1.5 and SDXL shape are built in code
(``tooling/tiny_model.py``); their zero convolutions are random, so a unit
visibly changes a picture - the tests assert it does, and that strength 0 is
bit-identical to no unit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.protocol.messages import ControlUnit, ErrorCode, Generate, Image, ProtocolError, validate_job

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def control_models(tmp_path_factory):
    from impasto.backend.tooling.tiny_model import (build_tiny_controlnet, build_tiny_model, build_tiny_sdxl,
                                                    build_tiny_t2i_adapter, write_control_single_file)

    root = tmp_path_factory.mktemp("control-models")
    build_tiny_model(root / "tiny")
    build_tiny_sdxl(root / "xl")
    sub = root / "ControlNet"          # A1111 spells the sub-folder so; any case is found
    sub.mkdir()
    build_tiny_controlnet(sub / "cn-scribble", root / "tiny", controls="scribble")
    build_tiny_t2i_adapter(sub / "t2i-canny", root / "tiny", controls="canny")
    build_tiny_controlnet(sub / "xl-cn", root / "xl", controls="scribble")
    build_tiny_t2i_adapter(sub / "xl-t2i", root / "xl", controls="canny")
    write_control_single_file(sub / "cn-scribble", root / "cn-ldm.safetensors", "ldm")
    write_control_single_file(sub / "cn-scribble", root / "cn-diff.safetensors", "diffusers")
    write_control_single_file(sub / "xl-cn", root / "xl-cn-ldm.safetensors", "ldm")
    return root


@pytest.fixture(scope="module")
def ceng(control_models):
    from impasto.backend.engine import Engine

    return Engine(control_models)


def strokes(w=64, h=64) -> Image:
    arr = np.zeros((h, w, 4), np.uint8)
    arr[h // 4: 3 * h // 4, w // 3: w // 3 + 10] = 255
    arr[h // 2: h // 2 + 6, w // 4: 3 * w // 4] = (0, 0, 0, 255)
    return Image(w, h, arr.tobytes())


def run(engine, units, model="tiny", **kw):
    fields = dict(job="c1", prompt="a red circle", model=model, width=64, height=64, steps=4, seed=5,
                  sampler="euler", control=units)
    fields.update(kw)
    r = engine.run(Generate(**fields))
    return np.frombuffer(r.images[0].data, np.uint8).reshape(r.images[0].height, r.images[0].width, 4), r


def picture_kwargs(kind):
    if kind == "txt2img":
        return {}
    init = np.zeros((64, 64, 4), np.uint8)
    init[..., 0] = np.arange(64)[None, :] * 4
    init[..., 2] = 200
    init[..., 3] = 255
    kw = dict(init_image=Image(64, 64, init.tobytes()), strength=0.8)
    if kind == "edit":
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        kw["mask"] = Image(64, 64, mask.tobytes(), "gray8")
    return kw


def test_models_folder_lists_control_models_with_family_and_type(control_models):
    from impasto.backend.engine.control_models import scan
    from impasto.backend.engine.models import ModelRegistry

    found = {e.name: e for e in scan(control_models)}
    assert set(found) == {"cn-scribble", "t2i-canny", "xl-cn", "xl-t2i", "cn-ldm", "cn-diff", "xl-cn-ldm"}
    assert (found["cn-scribble"].family, found["cn-scribble"].kind, found["cn-scribble"].controls) == \
        ("sd15", "controlnet", "scribble")
    assert (found["xl-t2i"].family, found["xl-t2i"].kind, found["xl-t2i"].controls) == ("sdxl", "t2i_adapter", "canny")
    assert (found["cn-ldm"].layout, found["cn-ldm"].format) == ("ldm", "single_file")
    assert found["xl-cn-ldm"].family == "sdxl" and found["cn-diff"].layout == "diffusers"
    # control files are not offered as base models
    bases = {e.name for e in ModelRegistry(control_models).scan()}
    assert not bases & set(found) and {"tiny", "xl"} <= bases


@pytest.mark.parametrize("kind", ["txt2img", "img2img", "edit"])
@pytest.mark.parametrize("model,unit_model", [("tiny", "cn-scribble"), ("tiny", "t2i-canny"),
                                              ("xl", "xl-cn"), ("xl", "xl-t2i")])
def test_strength_zero_is_bit_identical_and_a_unit_steers(ceng, kind, model, unit_model):
    kw = picture_kwargs(kind)
    plain, _ = run(ceng, [], model=model, **kw)
    zero, rz = run(ceng, [ControlUnit("scribble", strokes(), unit_model, 0.0)], model=model, **kw)
    steered, rs = run(ceng, [ControlUnit("scribble", strokes(), unit_model, 1.0)], model=model, **kw)
    assert np.array_equal(plain, zero) and "control" not in rz.info
    assert (plain != steered).mean() > 0.05
    assert rs.info["control"][0]["model"] == unit_model and rs.info["control"][0]["steps_active"] == rs.steps_run
    if kind == "edit":   # outside the mask + feather band the picture comes back untouched, control or not
        assert np.array_equal(steered[:8], plain[:8])


def test_single_files_paint_as_their_folder(ceng):
    folder, _ = run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble")])
    for name in ("cn-ldm", "cn-diff"):
        single, _ = run(ceng, [ControlUnit("scribble", strokes(), name)])
        assert np.array_equal(folder, single), name
    xl_folder, _ = run(ceng, [ControlUnit("scribble", strokes(), "xl-cn")], model="xl")
    xl_single, _ = run(ceng, [ControlUnit("scribble", strokes(), "xl-cn-ldm")], model="xl")
    assert np.array_equal(xl_folder, xl_single)


def test_start_end_range_and_several_units(ceng):
    full, r_full = run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble", 1.0, 0.0, 1.0)])
    late, r_late = run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble", 1.0, 0.5, 1.0)])
    assert r_late.info["control"][0]["steps_active"] == 2 and not np.array_equal(full, late)
    both, r_both = run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble", 1.0, 0.5, 1.0),
                              ControlUnit("canny", strokes(), "t2i-canny", 0.7)])
    assert [u["model"] for u in r_both.info["control"]] == ["cn-scribble", "t2i-canny"]
    assert r_both.info["control"][1]["steps_active"] == 4 and not np.array_equal(both, late)
    again, _ = run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble", 1.0, 0.5, 1.0),
                          ControlUnit("canny", strokes(), "t2i-canny", 0.7)])
    assert np.array_equal(both, again)   # same request, same bits


def test_models_stay_resident_and_switch_without_reloads(ceng):
    run(ceng, [ControlUnit("scribble", strokes(), "cn-scribble")])
    run(ceng, [ControlUnit("canny", strokes(), "t2i-canny")])
    loads = ceng.controls.loads
    for name in ("cn-scribble", "t2i-canny", "cn-scribble"):
        run(ceng, [ControlUnit("scribble", strokes(), name)])
    assert ceng.controls.loads == loads


def test_automatic_choice_by_family_and_type(ceng):
    _, r = run(ceng, [ControlUnit("canny", strokes())], model="xl")   # the one sdxl model made for canny
    assert r.info["control"][0]["model"] == "xl-t2i"
    _, r = run(ceng, [ControlUnit("canny", strokes())])
    assert r.info["control"][0]["model"] == "t2i-canny"
    with pytest.raises(ProtocolError) as err:     # sd15 scribble: the folder and both single files fit
        run(ceng, [ControlUnit("scribble", strokes())])
    assert err.value.field == "control[0].model" and "cn-ldm" in err.value.message and "xl-cn" not in err.value.message


def test_family_mismatch_is_a_typed_error_naming_both(ceng):
    with pytest.raises(ProtocolError) as err:
        run(ceng, [ControlUnit("scribble", strokes(), "xl-cn")])
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "control[0].model"
    assert "'xl-cn' is made for sdxl" in err.value.message and "'tiny' is sd15" in err.value.message
    with pytest.raises(ProtocolError) as err:
        run(ceng, [ControlUnit("scribble", strokes(), "nope")])
    assert err.value.code == ErrorCode.UNKNOWN_MODEL and "cn-scribble" in err.value.message


def test_an_adapter_of_the_other_layout_is_a_typed_error(control_models, tmp_path):
    """A T2I-Adapter whose widths match but whose layout is SDXL's (first feature at half the latent) on an
    SD1.5-layout UNet: diffusers would fail mid-step on the shapes; the engine says why before the job runs."""
    import json
    import os

    from diffusers import T2IAdapter

    from impasto.backend.engine import Engine

    root = tmp_path / "models"
    (root / "controlnet").mkdir(parents=True)
    os.symlink(control_models / "tiny", root / "tiny")
    cfg = json.loads((control_models / "tiny" / "unet" / "config.json").read_text())
    T2IAdapter(in_channels=3, channels=list(cfg["block_out_channels"]), num_res_blocks=1, downscale_factor=16,
               adapter_type="full_adapter_xl").save_pretrained(str(root / "controlnet" / "odd-t2i"))
    (root / "controlnet" / "odd-t2i" / "impasto.json").write_text(json.dumps({"control": "canny",
                                                                              "family": "sd15"}))
    with pytest.raises(ProtocolError) as err:
        run(Engine(root), [ControlUnit("canny", strokes(), "odd-t2i")])
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "control[0].model"
    assert "'odd-t2i'" in err.value.message and "does not match the layers" in err.value.message


def test_sizes_resized_with_a_warning_or_refused(ceng):
    _, r = run(ceng, [ControlUnit("scribble", strokes(72, 64), "cn-scribble")])
    assert any("72x64 resized to the picture's 64x64" in w for w in r.warnings)
    with pytest.raises(ProtocolError) as err:
        run(ceng, [ControlUnit("scribble", strokes(128, 64), "cn-scribble")])
    assert "128x64" in err.value.message and "64x64" in err.value.message and err.value.field == "control[0].image"


def test_depth_and_pose_say_which_weights_they_need(ceng):
    for kind, word in (("depth", "depth estimator"), ("pose", "ViTPose")):
        with pytest.raises(ProtocolError) as err:
            run(ceng, [ControlUnit(kind, strokes(), "cn-scribble")])
        assert word in err.value.message and "raw" in err.value.message and err.value.field == "control[0].type"


def test_depth_runs_with_an_estimator_in_the_models_folder(ceng, control_models):
    """``annotators/depth`` holding a (tiny random) transformers depth estimator: depth units run and steer."""
    import shutil

    from impasto.backend.engine.control_preprocess import preprocess
    from impasto.backend.tooling.tiny_model import build_tiny_depth_estimator

    folder = control_models / "annotators" / "depth"
    build_tiny_depth_estimator(folder)
    try:
        picture = np.random.default_rng(0).integers(0, 256, (48, 40, 4), dtype=np.uint8)
        picture[..., 3] = 255
        depth_map = preprocess("depth", picture, "f", control_models)
        assert depth_map.shape == (48, 40, 3) and depth_map.min() == 0 and depth_map.max() == 255
        plain, _ = run(ceng, [])
        steered, r = run(ceng, [ControlUnit("depth", strokes(), "cn-scribble")])
        assert (plain != steered).mean() > 0.05 and r.info["control"][0]["type"] == "depth"
    finally:
        shutil.rmtree(control_models / "annotators")


def test_pose_runs_with_an_estimator_in_the_models_folder(ceng, control_models, monkeypatch):
    """``annotators/pose`` holding a (tiny random) ViTPose: pose units draw a skeleton map and steer."""
    import shutil

    from impasto.backend.engine import control_pose
    from impasto.backend.tooling.tiny_model import build_tiny_pose_estimator

    build_tiny_pose_estimator(control_models / "annotators" / "pose")
    monkeypatch.setattr(control_pose, "MIN_SCORE", 0.0)      # a random estimator is never sure: draw what it finds
    try:
        plain, _ = run(ceng, [])
        steered, r = run(ceng, [ControlUnit("pose", strokes(), "cn-scribble")])
        assert (plain != steered).mean() > 0.05 and r.info["control"][0]["type"] == "pose"
    finally:
        shutil.rmtree(control_models / "annotators")


def test_edit_crops_the_control_map_to_the_region(ceng):
    """An "only masked" edit diffuses a region; the control map is cropped to it, not squeezed into it."""
    from impasto.backend.engine import control

    seen = {}
    real = control.BoundControl.__init__

    def spy(self, job, size, box=None):
        real(self, job, size, box)
        seen["box"], seen["size"] = self.box, size

    init = np.full((256, 256, 4), 180, np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    mask[10:30, 200:240] = 255
    control.BoundControl.__init__ = spy
    try:
        _, r = run(ceng, [ControlUnit("scribble", strokes(256, 256), "cn-scribble")],
                   init_image=Image(256, 256, init.tobytes()), mask=Image(256, 256, mask.tobytes(), "gray8"),
                   strength=0.8, padding=8, mask_blur=2)
    finally:
        control.BoundControl.__init__ = real
    x, y, w, h = r.info["region"]
    assert seen["box"] == (x, y, x + w, y + h) and (w, h) != (256, 256)
    assert tuple(seen["size"]) == tuple(r.info["diffusion_size"])


def test_validation_of_units():
    def check(**kw):
        unit = dict(type="scribble", image=strokes(), strength=1.0, start=0.0, end=1.0)
        unit.update(kw)
        validate_job(Generate(job="v", width=64, height=64, control=[ControlUnit(**unit)]))

    check()
    for bad, fieldname in ((dict(type="blur"), "control[0].type"), (dict(image=None), "control[0].image"),
                           (dict(strength=2.5), "control[0].strength"), (dict(start=0.6, end=0.4), "control[0].end"),
                           (dict(end=float("nan")), "control[0].end"), (dict(model="../x"), "control[0].model"),
                           (dict(image=Image(4, 4, b"\0" * 10)), "control[0].image")):
        with pytest.raises(ProtocolError) as err:
            check(**bad)
        assert err.value.field == fieldname, bad
    with pytest.raises(ProtocolError):
        validate_job(Generate(job="v", control=[ControlUnit(image=strokes())] * 5))


def test_preprocessors_make_white_marks_on_black():
    from impasto.backend.engine.control_preprocess import preprocess

    opaque = np.full((48, 48, 4), 255, np.uint8)
    opaque[12:36, 12:36, :3] = 0                  # a black square drawn on white
    layer = np.zeros((48, 48, 4), np.uint8)
    layer[12:36, 20:24] = (200, 30, 30, 255)       # a red stroke on a transparent layer
    canny = preprocess("canny", opaque, "f")[..., 0] > 0
    assert canny[12, 20] or canny[11, 20]          # the square's top edge
    assert not canny[24, 24] and not canny[2, 2]   # not its inside, not the background
    assert canny.sum() < 4 * 26 + 8                # thin: one line around the square
    assert (preprocess("scribble", opaque, "f")[..., 0] == 255).sum() == 24 * 24
    assert (preprocess("scribble", layer, "f")[..., 0] == 255).sum() == 24 * 4
    assert preprocess("lineart", opaque, "f")[20, 20, 0] == 255 and preprocess("lineart", opaque, "f")[0, 0, 0] == 0
    soft = preprocess("softedge", opaque, "f")[..., 0]
    assert soft[12, 24] > 100 and soft[24, 24] < soft[12, 24] and soft[0, 0] < 40
    assert np.array_equal(preprocess("raw", layer, "f")[22, 21], [200, 30, 30])
