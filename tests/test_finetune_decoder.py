"""The starter's decoder fine-tune: the encoder (and so every latent the UNet learned) never moves."""
from __future__ import annotations

import time

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from impasto.backend.starter import finetune_decoder as FD  # noqa: E402
from impasto.backend.starter.architecture import VAE_CONFIG  # noqa: E402
from impasto.backend.starter.train_vae import analytic_vae_init  # noqa: E402


def _vae():
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(**{**VAE_CONFIG, "sample_size": 128})
    analytic_vae_init(vae)
    return vae


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_the_decoder_learns_and_training_resumes(tmp_path):
    torch.set_num_threads(1)
    vae = _vae()
    enc, quant = _snapshot(vae.encoder), _snapshot(vae.quant_conv)
    dec = _snapshot(vae.decoder)
    assert FD.train(vae, tmp_path, steps=3, batch=1, lr=1e-3, deadline=time.time() + 60, seed=0) == 3
    for k, v in vae.encoder.state_dict().items():
        assert torch.equal(v, enc[k]), k
    for k, v in vae.quant_conv.state_dict().items():
        assert torch.equal(v, quant[k]), k
    assert any(not torch.equal(v, dec[k]) for k, v in vae.decoder.state_dict().items())
    assert (tmp_path / "decoder.pt").is_file()

    again = _vae()   # a fresh process would start from the model's VAE: the checkpoint carries it on
    assert FD.train(again, tmp_path, steps=5, batch=1, lr=1e-3, deadline=time.time() + 60, seed=0) == 5
    for k, v in again.encoder.state_dict().items():
        assert torch.equal(v, enc[k]), k


def test_the_written_vae_loads_back_the_same_and_replaces_the_old_folder(tmp_path):
    vae = _vae()
    out = tmp_path / "vae"
    out.mkdir()
    (out / "stale.txt").write_text("from before")
    FD.write_vae(vae, out)
    assert not (out / "stale.txt").exists()
    assert not list(tmp_path.glob(".vae-*")) and not (tmp_path / "vae.old").exists()
    assert "_name_or_path" not in (out / "config.json").read_text()
    back = diffusers.AutoencoderKL.from_pretrained(out)
    for k, v in vae.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    lrs = [FD.warmup_cosine(s, 1000, 1e-3, FD.WARMUP) for s in range(1000)]
    assert lrs[0] < lrs[49] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert all(a >= b for a, b in zip(lrs[50:], lrs[51:]))
