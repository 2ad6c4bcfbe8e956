"""Fine-tune the starter's VAE decoder with its encoder frozen: sharper pictures, same latents.

The starter's VAE was fine-tuned for only 225 steps (7 minutes of one core)
before its latents were cached and the UNet trained on them; its blur is why
small shapes lose their outline (docs/performance.md, "the VAE is the limit").
Retraining the whole VAE would move the latent space and with it the UNet,
the few-step LoRA, the control model and every slider and concept trained on
the starter.  Training the decoder alone - what Stable Diffusion's own
``ft-MSE`` VAE did - keeps the encoder, so every latent the UNet learned means
what it meant, and the decoder drops in.

Pictures are the starter's training scenes only (``scenes.sample_batch``
enforces the split: the benchmark families and held-out triples never reach
it).  The decoder reads samples of the frozen encoder's posterior, as in the
VAE's first training, so it stays robust to latents that are not exactly an
encoder's (the UNet's).  Loss L1 + MSE, as before; AdamW, warm-up then cosine
to a tenth.  Resumable (``WORK/decoder.pt``, written atomically every two
minutes); ``--out`` gets the VAE folder (config + weights) written atomically.

    python -m impasto.backend.starter.finetune_decoder --model backend/assets/starter \\
        --work WORK --out DIR --steps 3000 --minutes 60 [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import scenes as SC
from .run_tools import atomic_save, load_checkpoint, log, replace_folder, to_tensor, warmup_cosine
from .train_vae import vae_psnr


def decoder_parameters(vae):
    """What this stage trains: everything after the latent (post_quant_conv + decoder)."""
    return list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())


WARMUP = 50   # steps of linear warm-up before the cosine


def train(vae, work: Path, steps: int, batch: int, lr: float, deadline: float, seed: int) -> int:
    """Train the decoder until ``steps`` or ``deadline``; returns the step reached."""
    for p in vae.parameters():
        p.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ck = work / "decoder.pt"
    step = 0
    st = load_checkpoint(ck, vae, opt)
    if st is not None:
        step = st["step"]
        log(f"decoder: resumed at step {step}")
    rng = np.random.default_rng(seed + 7 + step)
    torch.manual_seed(seed + 7 + step)
    vae.encoder.eval()
    vae.decoder.train()
    last_ck, t0, losses = time.time(), time.time(), []

    def save() -> None:
        atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ck)

    while step < steps and time.time() < deadline:
        x = to_tensor(SC.sample_batch(batch, SC.NATIVE_SIZE, rng)[0])
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, steps, lr, WARMUP)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            log(f"decoder step {step}/{steps}: loss {np.mean(losses[-50:]):.4f}, "
                f"{(time.time() - t0) / len(losses):.2f} s/step")
        if time.time() - last_ck > 120:
            save()
            last_ck = time.time()
    save()
    return step


def write_vae(vae, out: Path) -> None:
    """``out`` becomes a diffusers VAE folder, replaced whole (a crash leaves the old one)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".vae-"))
    vae.save_pretrained(tmp, safe_serialization=True)
    cfg = json.loads((tmp / "config.json").read_text())
    cfg.pop("_name_or_path", None)          # where it was read from: not part of the model
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    replace_folder(tmp, out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the starter's folder (its vae/ is read)")
    ap.add_argument("--work", required=True, help="checkpoint folder (resumable)")
    ap.add_argument("--out", required=True, help="where the fine-tuned VAE folder is written")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(Path(args.model) / "vae")
    before = vae_psnr(vae, torch.device("cpu"), size=SC.NATIVE_SIZE, domain="scenes")
    log(f"decoder: PSNR before {before:.2f} dB")
    t0 = time.time()
    step = train(vae, work, args.steps, args.batch, args.lr, time.time() + args.minutes * 60, args.seed)
    minutes = (time.time() - t0) / 60
    vae.eval()
    after = vae_psnr(vae, torch.device("cpu"), size=SC.NATIVE_SIZE, domain="scenes")
    log(f"decoder: PSNR after {after:.2f} dB ({step} steps, {minutes:.1f} min this run)")
    write_vae(vae, Path(args.out))
    (work / "decoder.json").write_text(json.dumps({
        "steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed, "threads": args.threads,
        "psnr_before_db": round(before, 2), "psnr_after_db": round(after, 2),
        "minutes_last_run": round(minutes, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
