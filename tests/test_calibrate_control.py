"""Calibrating a control model's output gain in its weights: the same residuals as a unit at gain x strength."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def _residuals(net, base_unet_cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    cond = torch.rand(1, 3, 64, 64, generator=g)
    text = torch.randn(1, 4, base_unet_cfg["cross_attention_dim"], generator=g)
    with torch.no_grad():
        down, mid = net(x, torch.tensor([500]), encoder_hidden_states=text, controlnet_cond=cond,
                        conditioning_scale=1.0, return_dict=False)
    return down, mid


def test_a_calibrated_model_gives_gain_times_the_residuals_and_keeps_its_precision(tmp_path):
    from diffusers import ControlNetModel

    from impasto.backend.starter.calibrate_control import calibrate, saved_dtype
    from impasto.backend.tiny_model import build_tiny_model
    from impasto.backend.tooling.tiny_model import build_tiny_controlnet

    torch.set_num_threads(1)
    build_tiny_model(tmp_path / "tiny")
    folder = build_tiny_controlnet(tmp_path / "ctl", tmp_path / "tiny", controls="scribble")
    # save it in float16 like the shipped starter control model
    ControlNetModel.from_pretrained(str(folder)).to(torch.float16).save_pretrained(str(folder))
    assert saved_dtype(folder) == torch.float16
    cfg = json.loads((tmp_path / "tiny" / "unet" / "config.json").read_text())
    before = ControlNetModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    down0, mid0 = _residuals(before, cfg)
    record = calibrate(folder, 1.5, why="tuning drawings")
    assert record["gain"] == 1.5 and record["total"] == 1.5 and record["why"] == "tuning drawings"
    assert json.loads((folder / "impasto.json").read_text())["control"] == "scribble"   # the rest kept
    assert saved_dtype(folder) == torch.float16                                         # same precision
    after = ControlNetModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    down1, mid1 = _residuals(after, cfg)
    for a, b in zip(list(down0) + [mid0], list(down1) + [mid1]):
        assert torch.allclose(b, 1.5 * a, rtol=2e-3, atol=2e-3)                         # float16 rounding only
        assert b.abs().max() > 0
    # everything but the output layers is untouched
    sd0, sd1 = before.state_dict(), after.state_dict()
    same = [k for k in sd0 if not k.startswith(("controlnet_down_blocks.", "controlnet_mid_block."))]
    assert same and all(torch.equal(sd0[k], sd1[k]) for k in same)
    # a second calibration multiplies, and remembers the first
    again = calibrate(folder, 0.5, why="back")
    assert again["total"] == 0.75 and again["earlier"]["gain"] == 1.5
    with pytest.raises(ValueError):
        calibrate(folder, 0.0)
