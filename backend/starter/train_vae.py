"""The starter's VAE stage: an analytic initialisation, a resumable fine-tune on training pictures,
its PSNR - or a trained VAE reused as it is (``--vae``).

Only training shapes reach it: held-out families never enter any stage (``tests/test_starter_split.py``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import domain as D
from . import scenes as SC
from .architecture import VAE_CONFIGS, latent_factor
from .run_tools import atomic_save, load_checkpoint, log, to_tensor


def training_images(domain: str, n: int, size: int, rng) -> np.ndarray:
    """uint8 (n, size, size, 3) training pictures of a domain: training shapes only.

    The one source of pictures for the VAE stage (and its PSNR check): held-out
    shapes (the star of ``domain.py``, the benchmark families of ``scenes.py``)
    and held-out combinations never reach it (issue 21 item 7).
    """
    if domain == "scenes":
        return SC.sample_batch(n, size, rng)[0]
    return D.sample_batch(n, size, rng, combos=D.train_combos(), as_array=True)[0]


@torch.no_grad()
def analytic_vae_init(vae):
    """Initialise an AutoencoderKL as a fixed, sensible autoencoder.

    Latent channels 0-2 = the area average of R, G, B over a latent cell (8 x 8 px, 4 x 4 for the
    4x VAE; channel 3 = 0); the decoder interpolates them back (nearest x2 + [1,2,1] blur per level).
    Colours are carried as (c, -c) channel pairs inside one GroupNorm group so
    that GroupNorm keeps them (mean 0) and silu(c) - silu(-c) = c recovers them.
    Every residual branch is zero-initialised at its last layer (identity), so
    fine-tuning starts from this autoencoder instead of a long plateau.
    """
    from diffusers.models.resnet import ResnetBlock2D

    def zero(m):
        m.weight.zero_()
        if m.bias is not None:
            m.bias.zero_()

    def pairs_in(conv, n_in, sign_pairs=True):
        zero(conv)
        k = conv.kernel_size[0] // 2
        for c in range(3):
            conv.weight[2 * c, c, k, k] = 1.0
            conv.weight[2 * c + 1, c, k, k] = -1.0

    for m in vae.modules():
        if isinstance(m, ResnetBlock2D):
            zero(m.conv2)
            if m.conv_shortcut is not None:
                zero(m.conv_shortcut)
                n = min(m.conv_shortcut.in_channels, m.conv_shortcut.out_channels)
                for i in range(n):
                    m.conv_shortcut.weight[i, i, 0, 0] = 1.0
    for mid in (vae.encoder.mid_block, vae.decoder.mid_block):
        for att in mid.attentions:
            zero(att.to_out[0])
    # encoder
    pairs_in(vae.encoder.conv_in, 3)
    for blk in vae.encoder.down_blocks:
        for ds in blk.downsamplers or []:
            zero(ds.conv)
            for i in range(ds.conv.out_channels):
                ds.conv.weight[i, i, 0:2, 0:2] = 0.25
    conv = vae.encoder.conv_out
    zero(conv)
    nl = vae.config.latent_channels
    for c in range(3):
        conv.weight[c, 2 * c, 1, 1] = 1.0
        conv.weight[c, 2 * c + 1, 1, 1] = -1.0
    conv.bias[nl:] = -8.0  # log-variance: tiny posterior std
    zero(vae.quant_conv)
    for i in range(2 * nl):
        vae.quant_conv.weight[i, i, 0, 0] = 1.0
    zero(vae.post_quant_conv)
    for i in range(nl):
        vae.post_quant_conv.weight[i, i, 0, 0] = 1.0
    # decoder
    pairs_in(vae.decoder.conv_in, nl)
    blur = torch.tensor([1.0, 2.0, 1.0])
    blur = torch.outer(blur, blur) / 16
    for blk in vae.decoder.up_blocks:
        for us in blk.upsamplers or []:
            zero(us.conv)
            for i in range(us.conv.out_channels):
                us.conv.weight[i, i] = blur
    conv = vae.decoder.conv_out
    zero(conv)
    for c in range(3):
        conv.weight[c, 2 * c, 1, 1] = 1.0
        conv.weight[c, 2 * c + 1, 1, 1] = -1.0


def train_vae(vae, work: Path, args, device, deadline: float):
    ck = work / "vae.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step = 0
    st = load_checkpoint(ck, vae, opt)
    if st is not None:
        step = st["step"]
        if st.get("done"):
            log(f"VAE: already trained ({step} steps)")
            return
    from tqdm import tqdm

    rng = np.random.default_rng(args.seed + 1 + step)
    torch.manual_seed(args.seed + 1 + step)
    vae.train()
    pbar = tqdm(desc="vae", initial=step, total=args.vae_max_steps, mininterval=20, file=sys.stdout)
    last_ck = time.time()
    while step < args.vae_max_steps and time.time() < deadline:
        imgs = training_images(args.domain, args.vae_batch, args.size, rng)
        x = to_tensor(imgs).to(device)
        post = vae.encode(x).latent_dist
        z = post.sample()
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (z[0].numel())
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        for gparam in opt.param_groups:
            gparam["lr"] = args.vae_lr * min(1.0, (step + 1) / 50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        pbar.update(1)
        if step % 25 == 0:
            with torch.no_grad():
                psnr = 10 * math.log10(4.0 / F.mse_loss(rec, x).item())
            pbar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.1f}")
        if time.time() - last_ck > 120:
            atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ck)
            last_ck = time.time()
    pbar.close()
    atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "done": True}, ck)
    log(f"VAE: done after {step} steps")


@torch.no_grad()
def vae_psnr(vae, device, n=256, seed=12345, size=64, domain: str = "shapes") -> float:
    vae.eval()
    imgs = training_images(domain, n, size, np.random.default_rng(seed))
    mse = 0.0
    for i in range(0, n, 32):
        x = to_tensor(imgs[i:i + 32]).to(device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse += F.mse_loss(rec, x, reduction="sum").item()
    return 10 * math.log10(4.0 / (mse / imgs[:n].size))


def trained_vae(work: Path, args, device, deadline: float):
    """The VAE stage: fine-tuned from the analytic init (resumable); -> (vae, PSNR dB)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**{**VAE_CONFIGS[args.latent_factor], "sample_size": args.size}).to(device)
    analytic_vae_init(vae)  # a working (blurry) autoencoder to fine-tune from
    vae_minutes = args.vae_minutes if args.vae_minutes is not None else min(12.0, max(2.0, 0.14 * args.minutes))
    if args.export_only:
        vae.load_state_dict(torch.load(work / "vae.pt", map_location="cpu", weights_only=False)["model"])
    else:
        train_vae(vae, work, args, device, deadline=min(deadline, time.time() + vae_minutes * 60))
    # measured once and stored with the VAE checkpoint: a resume does not pay for it again
    vst = torch.load(work / "vae.pt", map_location="cpu", weights_only=False) if (work / "vae.pt").exists() else {}
    if "psnr" in vst:
        return vae, vst["psnr"]
    psnr = vae_psnr(vae, device, n=64 if args.export_only else 256, size=args.size, domain=args.domain)
    if vst.get("done") and not args.export_only:
        vst["psnr"] = psnr
        atomic_save(vst, work / "vae.pt")
    return vae, psnr


def reused_vae(folder: Path, work: Path, args, device):
    """``--vae``: a trained VAE folder (e.g. the shipped starter's ``vae/``) instead of the VAE stage.

    Its scaling factor is kept, so what was trained on its latents - the fast encoder, the
    preview decoder, a fine-tuned decoder - stays valid for the new UNet.  PSNR measured once
    (``WORK/vae.json``).  -> (vae, PSNR dB)
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder).to(device)
    if vae.config.sample_size != args.size:
        raise SystemExit(f"--vae {folder}: made for {vae.config.sample_size} px, not --size {args.size}")
    if latent_factor(vae.config) != args.latent_factor:
        raise SystemExit(f"--vae {folder}: {latent_factor(vae.config)}x latents, not --latent-factor {args.latent_factor}")
    info = work / "vae.json"
    if info.exists():
        return vae, json.loads(info.read_text())["psnr"]
    psnr = vae_psnr(vae, device, n=256, size=args.size, domain=args.domain)
    info.write_text(json.dumps({"psnr": psnr, "from": str(folder)}))
    return vae, psnr
