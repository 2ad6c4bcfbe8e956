"""GIMP's "Save Result" without GIMP: the parameters a result layer keeps and the PNG written with them.

The GIMP side (parasites, the composite of a layer and what lies below it,
the procedure) runs in the real-GIMP tier (tests/test_gimp_real.py); this is
the glue it calls, read back with Pillow and the protocol's own A1111 parser.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from impasto.plugin_gimp import jobs, save_result
from impasto.plugin_gimp.results import LayerPlan
from impasto.plugin_gimp.geometry import Rect
from impasto.protocol.messages import Image, Result
from impasto.protocol.parameters import parse_parameters


def _picture(w, h, alpha=255, seed=0):
    rgba = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    return rgba


def test_png_round_trips_pixels_and_parameters():
    rgba = _picture(37, 21)
    png = save_result.png_bytes(37, 21, rgba.tobytes(), "a fox\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 9")
    im = PILImage.open(io.BytesIO(png))
    assert im.mode == "RGB" and im.size == (37, 21)                  # opaque: written as RGB
    assert (np.asarray(im) == rgba[..., :3]).all()
    assert parse_parameters(im.text["parameters"]).settings.seed == 9
    soft = _picture(5, 4, alpha=128, seed=1)
    im = PILImage.open(io.BytesIO(save_result.png_bytes(5, 4, soft.tobytes(), "x, Steps: 1, Seed: 1, Size: 5x4")))
    assert im.mode == "RGBA" and (np.asarray(im) == soft).all()
    with pytest.raises(save_result.SaveError):
        save_result.png_bytes(5, 4, b"\x00" * 10)


def test_png_path_adds_png_and_refuses_other_formats():
    assert save_result.png_path("/tmp/fox") == "/tmp/fox.png"
    assert save_result.png_path("/tmp/fox.PNG") == "/tmp/fox.PNG"
    with pytest.raises(save_result.SaveError, match="fox.png"):
        save_result.png_path("/tmp/fox.jpg")
    with pytest.raises(save_result.SaveError):
        save_result.png_path("")


def test_each_layer_of_a_result_gets_its_own_seed_and_the_request_settings():
    fields = jobs.JobFields(prompt="a red fox", negative_prompt="blurry", model="tiny", steps=3, cfg_scale=6.0,
                            sampler="ddim", seed=40, concepts="mycat:0.8", strength=0.6)
    req = jobs.edit_request(fields, Image(8, 8, b"\x10" * 256), Image(8, 8, b"\xff" * 64, "gray8"))
    result = Result(job=req.job, images=[Image(8, 8, b"\x00" * 256)] * 2, seeds=[40, 41], info={"model": "tiny"})
    tag = save_result.tagger(req, result, (203, 151))
    texts = [tag(LayerPlan(Rect(0, 0, 8, 8), b"", None, seed)) for seed in (40, 41)]
    for seed, text in zip((40, 41), texts):
        p = parse_parameters(text)
        assert p.settings.seed == seed and p.settings.prompt == "a red fox" and p.settings.negative_prompt == "blurry"
        assert (p.settings.steps, p.settings.sampler, p.settings.cfg_scale) == (3, "ddim", 6.0)
        assert p.settings.active_concepts() == [("mycat", 0.8)] and p.settings.model == "tiny"
        assert p.denoising == 0.6 and p.size == (203, 151)
    gen = jobs.txt2img_request(jobs.JobFields(prompt="a fox", steps=2, seed=9), 64, 48)
    text = save_result.layer_parameters(gen, Result(seeds=[9], info={"model": "starter"}), 9, (64, 48))
    p = parse_parameters(text)
    assert p.settings.model == "starter" and p.denoising is None and p.size == (64, 48)   # the daemon's default model


def test_gimp_names_a_running_daemon_with_another_models_folder():
    """Issue 19: a models folder in GIMP's daemon command only reaches a daemon GIMP starts; say so otherwise."""
    from impasto.plugin_gimp import daemon_link
    from impasto.plugin_gimp.settings import PluginSettings
    from impasto.protocol.messages import Models

    mine = PluginSettings(daemon_command="/venv/bin/impasto serve --models-dir '/home/me/my models'")
    assert daemon_link.asked_models_dir(mine) == "/home/me/my models"
    assert daemon_link.asked_models_dir(PluginSettings(daemon_command="impasto serve --models-dir=/m")) == "/m"
    note = daemon_link.models_note(mine, Models(models_dir="/srv/other"))
    assert "/srv/other" in note and "/home/me/my models" in note
    assert daemon_link.models_note(mine, Models(models_dir="/home/me/my models")) == ""
    assert daemon_link.models_note(PluginSettings(), Models(models_dir="/srv/other")) == ""   # none asked
