"""``train.py --vae`` / ``--text-encoder``: a new UNet on the shipped VAE (no VAE stage) and, optionally, the shipped
text encoder frozen - what is reused is exported bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from impasto.backend.starter import train as T  # noqa: E402
from impasto.backend.starter.run_tools import stop_requests  # noqa: E402

SHIPPED_VAE = Path(T.__file__).resolve().parent.parent / "assets" / "starter" / "vae"


def test_a_new_unet_trains_on_a_reused_vae_and_exports_it_unchanged(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--domain", "scenes", "--size", "128", "--unet", "s", "--batch", "2", "--pool", "8",
            "--vae", str(SHIPPED_VAE), "--unet-steps", "2", "--warmup", "1", "--threads", "1",
            "--minutes", "10", "--work", str(work), "--out", str(out)]
    T.main(args)
    assert not (work / "vae.pt").exists()                      # no VAE stage ran
    shipped = diffusers.AutoencoderKL.from_pretrained(SHIPPED_VAE)
    got = diffusers.AutoencoderKL.from_pretrained(out / "vae")
    assert got.config.scaling_factor == shipped.config.scaling_factor
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, got.state_dict()[k]), k
    cache = torch.load(work / "latents.pt", weights_only=False)
    assert cache["scale"] == shipped.config.scaling_factor     # the latents mean what they meant
    info = json.loads((out / "impasto.json").read_text())["training"]
    assert info["unet_steps"] == 2 and info["vae_reused_from"] == str(SHIPPED_VAE)
    assert info["vae_psnr_db"] > 30                             # measured on the reused VAE
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pic = pipe("a red circle on a blue background", num_inference_steps=2, height=128, width=128,
               output_type="np").images
    assert pic.shape == (1, 128, 128, 3)

    i = args.index("--vae")
    T.main(args[:i] + args[i + 2:] + ["--resume"])              # a resume reads the run's --vae back
    assert not (work / "vae.pt").exists()
    assert json.loads((out / "impasto.json").read_text())["training"]["vae_reused_from"] == str(SHIPPED_VAE)

    with pytest.raises(SystemExit, match="not after the current step 2"):   # a schedule cannot end in the past
        T.main(args[:i] + args[i + 2:] + ["--resume", "--reschedule", "1"])
    T.main(args[:i] + args[i + 2:] + ["--resume", "--reschedule", "4"])    # lengthened: two more steps run
    info = json.loads((out / "impasto.json").read_text())["training"]
    assert info["unet_steps"] == 4
    assert info["schedule_note"].startswith("at step 2 the cosine schedule's length was changed from 2 to 4")


def test_a_frozen_text_encoder_is_kept_bit_for_bit_and_only_the_unet_trains(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    starter = SHIPPED_VAE.parent
    args = ["--domain", "scenes", "--size", "128", "--unet", "s", "--batch", "2", "--pool", "8",
            "--vae", str(SHIPPED_VAE), "--text-encoder", str(starter), "--unet-steps", "2", "--warmup", "1",
            "--threads", "1", "--minutes", "10", "--work", str(work), "--out", str(out)]
    T.main(args)
    from transformers import CLIPTextModel

    shipped = CLIPTextModel.from_pretrained(starter / "text_encoder").state_dict()
    got = CLIPTextModel.from_pretrained(out / "text_encoder").state_dict()
    assert shipped.keys() == got.keys()
    for k, v in shipped.items():
        assert torch.equal(v, got[k]), k
    st = torch.load(work / "unet.pt", map_location="cpu", weights_only=False)
    unet = diffusers.UNet2DConditionModel.from_pretrained(out / "unet")
    assert len(st["ema"]) == len(list(unet.parameters()))        # the EMA and optimizer hold the UNet only
    assert json.loads((out / "impasto.json").read_text())["training"]["text_encoder_frozen_from"] == str(starter)
    assert (out / "tokenizer" / "vocab.json").read_text() == (starter / "tokenizer" / "vocab.json").read_text()

    i = args.index("--text-encoder")
    T.main(args[:i] + args[i + 2:] + ["--resume", "--reschedule", "3"])   # a resume reads it back from run.json
    got = CLIPTextModel.from_pretrained(out / "text_encoder").state_dict()
    assert all(torch.equal(v, got[k]) for k, v in shipped.items())
    assert json.loads((out / "impasto.json").read_text())["training"]["unet_steps"] == 3


def test_a_text_encoder_folder_without_one_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="text_encoder/ and tokenizer/"):
        T.main(["--domain", "scenes", "--size", "128", "--vae", str(SHIPPED_VAE), "--text-encoder", str(tmp_path),
                "--unet-steps", "1", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--threads", "1"])


def test_a_vae_for_another_size_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="128 px"):
        T.main(["--domain", "scenes", "--size", "64", "--vae", str(SHIPPED_VAE), "--unet-steps", "1",
                "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--threads", "1"])


def test_a_stop_request_is_taken_between_steps_and_the_handlers_come_back():
    """SIGTERM inside ``stop_requests`` is noted, not raised (the loop saves at its next step); outside it, and
    in a thread other than the main one (where no handler can be installed), the signals keep their meaning."""
    import os
    import signal
    import threading
    import time

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_requests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.time() + 5
        while len(stop) < 2 and time.time() < deadline:
            time.sleep(0.01)
        assert stop == [signal.SIGTERM, signal.SIGINT]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before

    seen = []

    def worker():
        with stop_requests() as got:
            seen.append((got, signal.getsignal(signal.SIGTERM)))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [([], before[0])]


def test_sigterm_saves_a_checkpoint_and_resume_goes_on_from_it(tmp_path):
    """A long CPU run is stopped by whoever needs the machine: SIGTERM keeps every finished step."""
    import signal
    import subprocess
    import sys
    import time

    work, out = tmp_path / "work", tmp_path / "out"
    args = [sys.executable, "-m", "impasto.backend.starter.train", "--domain", "scenes", "--size", "128",
            "--unet", "s", "--batch", "2", "--pool", "8", "--vae", str(SHIPPED_VAE), "--unet-steps", "100000",
            "--warmup", "1", "--threads", "1", "--minutes", "30", "--ckpt-minutes", "100",
            "--work", str(work), "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not (work / "latents.pt").exists() and time.time() < deadline:   # the UNet stage has begun
            time.sleep(0.5)
        time.sleep(8)
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, log[-2000:]
    assert "checkpoint saved" in log
    st = torch.load(work / "unet.pt", map_location="cpu", weights_only=False)
    assert 0 < st["step"] < 100000 and not out.exists()          # stopped mid-run, nothing exported
    resumed = subprocess.run(args + ["--resume", "--minutes", "0.01", "--grace", "0"],   # the last --minutes wins
                             capture_output=True, text=True, timeout=300)
    assert f"resumed at step {st['step']}/" in resumed.stdout + resumed.stderr


def test_init_starts_from_a_trained_model_and_refuses_one_that_does_not_fit(tmp_path):
    """``--init``: the fine-tune begins at the trained weights (one step at a vanishing learning rate exports
    them unchanged), takes the model's tokenizer, records where it came from; a different preset is refused."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    starter = SHIPPED_VAE.parent
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--domain", "scenes", "--size", "128", "--unet", "l3w", "--batch", "2", "--pool", "8",
            "--vae", str(SHIPPED_VAE), "--init", str(starter), "--unet-steps", "1", "--warmup", "1",
            "--lr", "1e-12", "--threads", "1", "--minutes", "10", "--work", str(work), "--out", str(out)]
    T.main(args)
    for sub, cls in (("unet", UNet2DConditionModel), ("text_encoder", CLIPTextModel)):
        shipped = cls.from_pretrained(starter / sub).state_dict()
        got = cls.from_pretrained(out / sub).state_dict()
        for k, v in shipped.items():
            assert torch.allclose(v, got[k], atol=1e-6), (sub, k)
    assert (out / "tokenizer" / "vocab.json").read_text() == (starter / "tokenizer" / "vocab.json").read_text()
    assert json.loads((out / "impasto.json").read_text())["training"]["initialised_from"] == str(starter)

    with pytest.raises(SystemExit, match="does not fit the one built here"):
        T.main(args[:args.index("--work")] + ["--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")]
               + ["--unet", "s"])
    # --init with --text-encoder: the UNet continues, the text encoder is that folder's, frozen (a UNet-only
    # fine-tune, as the wide UNet itself was trained); a learning rate that moves it shows it is not trained
    T.main(args[:args.index("--lr")] + ["--lr", "1e-2"] + args[args.index("--lr") + 2:args.index("--work")]
           + ["--work", str(tmp_path / "w3"), "--out", str(tmp_path / "o3"), "--text-encoder", str(starter)])
    te = CLIPTextModel.from_pretrained(starter / "text_encoder").state_dict()
    kept = CLIPTextModel.from_pretrained(tmp_path / "o3" / "text_encoder").state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in te.items())
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "o3" / "unet").state_dict()
    shipped = UNet2DConditionModel.from_pretrained(starter / "unet").state_dict()
    assert all(torch.allclose(v, unet[k], atol=1e-2) for k, v in shipped.items())       # started from it
    assert any(not torch.equal(v, unet[k]) for k, v in shipped.items())                 # and trained on


def test_a_4x_latent_starter_trains_exports_and_paints_and_its_vae_is_refused_as_an_8x_one(tmp_path):
    """``--latent-factor 4``: the VAE with one level less (32 x 32 latents at 128 px), a UNet on them,
    a diffusers folder that paints at 128 px; a resume keeps the factor; an 8x run refuses that VAE."""
    from impasto.backend.starter.architecture import VAE_CONFIG, VAE_CONFIG_4X, latent_factor

    assert (latent_factor(VAE_CONFIG), latent_factor(VAE_CONFIG_4X)) == (8, 4)
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--domain", "scenes", "--size", "128", "--latent-factor", "4", "--unet", "l4w", "--batch", "2",
            "--pool", "8", "--vae-minutes", "1", "--vae-batch", "2", "--vae-max-steps", "2", "--unet-steps", "2",
            "--warmup", "1", "--threads", "1", "--minutes", "10", "--work", str(work), "--out", str(out)]
    T.main(args)
    assert torch.load(work / "latents.pt", weights_only=False)["latents"].shape[-2:] == (32, 32)
    info = json.loads((out / "impasto.json").read_text())["training"]
    assert info["latent_factor"] == 4 and info["unet_preset"] == "l4w"
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 32
    pic = pipe("a red circle on a blue background", num_inference_steps=2, height=128, width=128,
               output_type="np").images
    assert pic.shape == (1, 128, 128, 3)

    i = args.index("--latent-factor")
    T.main(args[:i] + args[i + 2:] + ["--resume"])              # the run's factor is read back, not the default
    assert json.loads((out / "impasto.json").read_text())["training"]["latent_factor"] == 4

    with pytest.raises(SystemExit, match="4x latents, not --latent-factor 8"):
        T.main(["--domain", "scenes", "--size", "128", "--unet", "s", "--batch", "2", "--pool", "8",
                "--vae", str(out / "vae"), "--unet-steps", "1", "--threads", "1", "--minutes", "10",
                "--work", str(tmp_path / "w8"), "--out", str(tmp_path / "o8")])
