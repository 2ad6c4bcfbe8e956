"""A model on a 4x latent grid (``train.py --latent-factor 4``) through every path that used to assume 8x:
the preview decoder and fast encoder (their nets and training tools), the engine's choice of previewer and
fast encoder, TAESD (8x) kept off it, the control model's condition embedding, and live jobs painting at size."""
from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from impasto.backend.engine.preview_net import (  # noqa: E402
    DEFAULT_ENCODER_WIDTHS,
    DEFAULT_WIDTHS,
    TinyFastEncoder,
    TinyPreviewDecoder,
    default_encoder_widths,
    default_widths,
    load_decoder,
    load_encoder,
    save_decoder,
    save_encoder,
)

PROMPT = "a red circle on a blue background"


def test_the_nets_take_one_x2_level_per_vae_level_and_keep_their_factor_through_their_files(tmp_path):
    assert default_widths(8) == DEFAULT_WIDTHS and default_encoder_widths(8) == DEFAULT_ENCODER_WIDTHS
    assert default_widths(4) == (64, 32, 16) and default_encoder_widths(4) == (16, 32, 64)
    with pytest.raises(ValueError):
        default_widths(6)
    torch.manual_seed(0)
    dec = TinyPreviewDecoder(4, default_widths(4), high_blocks=(1, 0)).eval()
    enc = TinyFastEncoder(4, default_encoder_widths(4)).eval()
    assert dec.scale_factor == enc.scale_factor == 4 and TinyPreviewDecoder(4).scale_factor == 8
    save_decoder(dec, tmp_path / "d.safetensors")
    save_encoder(enc, tmp_path / "e.safetensors")
    dec2, enc2 = load_decoder(tmp_path / "d.safetensors"), load_encoder(tmp_path / "e.safetensors")
    assert dec2.scale_factor == enc2.scale_factor == 4 and dec2.config["high_blocks"] == [1, 0]
    lat, pic = torch.randn(1, 4, 8, 8), torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert dec2(lat).shape == (1, 3, 32, 32) and torch.equal(dec2(lat), dec(lat))
        assert enc2(pic).shape == (1, 4, 8, 8) and torch.equal(enc2(pic), enc(pic))
    with pytest.raises(ValueError, match="one per x2 upsampling"):
        TinyPreviewDecoder(4, default_widths(4), high_blocks=(1, 0, 0))


@pytest.fixture(scope="module")
def models_4x(tmp_path_factory):
    """A tiny 4x starter (two training steps) in a models folder, with an 8x TAESD config beside it."""
    from impasto.backend.starter import train as T

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models4x")
    out = root / "fine"
    T.main(["--domain", "scenes", "--size", "128", "--latent-factor", "4", "--unet", "s", "--batch", "2",
            "--pool", "8", "--vae-minutes", "1", "--vae-batch", "2", "--vae-max-steps", "2", "--unet-steps", "2",
            "--warmup", "1", "--threads", "1", "--minutes", "10", "--work", str(root.parent / "work4x"),
            "--out", str(out)])
    taesd = root / "taesd"     # only its config is read when a previewer is chosen
    taesd.mkdir()
    (taesd / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny", "latent_channels": 4}))
    return root


def test_the_training_tools_make_4x_nets_and_the_engine_uses_them_and_refuses_8x_ones(models_4x):
    from impasto.backend.engine import Engine, JobHooks
    from impasto.backend.engine.fast_vae import FAST_ENCODER_FILE
    from impasto.backend.engine.preview import PREVIEW_DECODER_FILE, find_taesd
    from impasto.backend.engine.images import to_wire
    from impasto.backend.tooling import train_fast_encoder as tf
    from impasto.backend.tooling import train_preview as tp
    from impasto.protocol.messages import Generate
    from PIL import Image

    folder = models_4x / "fine"
    assert find_taesd(models_4x, "sd15") == models_4x / "taesd"          # an 8x model may use TAESD
    assert find_taesd(models_4x, "sd15", 4, scale_factor=4) is None       # a 4x one may not
    eng = Engine(models_dir=models_4x)
    assert eng.model("fine").previewer.kind == "linear" and eng.model("fine").fast_encoder is None
    assert eng.model("fine").entry.native_size == 128

    dec, info = tp.train(folder, minutes=1, scenes=4, max_steps=2, batch=2, crop=8, generations=2,
                         log=lambda *_: None)
    assert dec.scale_factor == 4 and info["widths"] == [64, 32, 16] and info["high_blocks"] == [0, 0]
    with pytest.raises(ValueError, match="this VAE is 4x"):
        tp.train(folder, minutes=1, scenes=4, max_steps=1, batch=2, widths=list(DEFAULT_WIDTHS), generations=0,
                 log=lambda *_: None)
    tp.install(dec, info, folder)
    enc, info = tf.train(folder, minutes=1, pool=4, max_steps=2, batch=2, crop=32, log=lambda *_: None)
    assert enc.scale_factor == 4 and info["held_out"]["pictures"] == 64
    tf.install(enc, info, folder)
    card = json.loads((folder / "impasto.json").read_text())
    card["preview_decoder"]["for_pictures"] = True      # so a live job decodes with it too
    (folder / "impasto.json").write_text(json.dumps(card))

    eng = Engine(models_dir=models_4x)
    loaded = eng.model("fine")
    assert loaded.previewer.kind == "trained" and loaded.fast_encoder is not None
    previews = []
    hooks = JobHooks(want_preview=True, progress=lambda s, t, p=None, l=None, st="": previews.append(p))
    out = eng.run(Generate(job="g", model="fine", prompt=PROMPT, width=128, height=128, steps=2, sampler="euler",
                           cfg_scale=3.0, seed=1), hooks)
    assert (out.images[0].width, out.images[0].height) == (128, 128)
    shown = [p for p in previews if p is not None]
    assert shown and all((p.width, p.height) == (128, 128) for p in shown)   # 4x the 32 x 32 latents
    canvas = to_wire(Image.new("RGB", (128, 128), (30, 60, 200)))
    live = eng.run(Generate(job="l", model="fine", prompt=PROMPT, init_image=canvas, strength=0.5, steps=2,
                            sampler="lcm", cfg_scale=1.0, seed=2, live=True), JobHooks())
    assert live.info["vae"].startswith("fast: the model's trained preview decoder and fast encoder")
    assert (live.images[0].width, live.images[0].height) == (128, 128)

    # nets made for an 8x VAE are refused (logged), not run at the wrong size: the VAE and linear map step in
    save_decoder(TinyPreviewDecoder(4), folder / PREVIEW_DECODER_FILE)
    save_encoder(TinyFastEncoder(4), folder / FAST_ENCODER_FILE)
    eng = Engine(models_dir=models_4x)
    assert eng.model("fine").previewer.kind == "linear" and eng.model("fine").fast_encoder is None
    live = eng.run(Generate(job="l2", model="fine", prompt=PROMPT, init_image=canvas, strength=0.5, steps=2,
                            sampler="lcm", cfg_scale=1.0, seed=2, live=True), JobHooks())
    assert (live.images[0].width, live.images[0].height) == (128, 128) and "vae" not in live.info


def test_a_control_model_for_a_4x_starter_gets_a_condition_embedding_that_reaches_its_grid(models_4x, tmp_path):
    from diffusers import ControlNetModel

    from impasto.backend.starter import train_control

    base = tmp_path / "base"
    shutil.copytree(models_4x / "fine", base)
    out = tmp_path / "control"
    assert train_control.main(["--base", str(base), "--out", str(out), "--work", str(tmp_path / "w"),
                               "--batch", "2", "--warmup", "1", "--steps", "1"]) == 0
    net = ControlNetModel.from_pretrained(out)
    assert list(net.config.conditioning_embedding_out_channels) == [16, 32, 32]
    assert json.loads((out / "impasto.json").read_text())["training"]["embed_channels"] == "16,32,32"
    cond = torch.zeros(1, 3, 128, 128)
    with torch.no_grad():
        assert net.controlnet_cond_embedding(cond).shape[-2:] == (32, 32)
