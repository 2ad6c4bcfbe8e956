"""Train the starter's control model: a small ControlNet steered by a rough drawing of the shape.

One command, resumable::

    python -m impasto.backend.starter.train_control --out DIR --work /tmp/control_work --steps 6000

The condition is what an artist scribbles (:mod:`.drawings`): a wobbly outline
or a filled silhouette of the shape, anywhere on the canvas at any size the
domain allows, white marks on black (the ``scribble`` preprocessor's
convention).  The target is the starter's own scene with the shape exactly
where the drawing is, captioned as the starter's training captions are.

How: ``ControlNetModel.from_unet`` copies the starter UNet's encoder half
(zero convolutions start at zero, so step 0 paints exactly as the starter);
only the ControlNet trains - the UNet, VAE and text encoder stay frozen - on
the starter's own noise objective (its scheduler, epsilon prediction, min-SNR
weighting), with 10 % of captions dropped so CFG still works with a drawing.
Scenes are drawn on the fly (a new geometry and drawing every sample: nothing
is seen twice); the evaluation's held-out drawings come from another seed
stream (``bench/starter_control_eval.py``).

Resumable: the ControlNet, optimizer, EMA, step and RNG state are saved
atomically to ``--work/control.pt`` every ``--ckpt-minutes`` and at the end;
running the same command again continues where it stopped.  The result is a
diffusers ``ControlNetModel`` folder with an ``impasto.json`` saying what it
controls (``scribble``) and which family / base model it fits, written to a
temporary folder and renamed into place.  Put it in the models folder (or
its ``controlnet/`` sub-folder) and ``impasto generate --control scribble:drawing.png``
uses it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .train import atomic_save


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class EMA:
    def __init__(self, params, decay: float):
        self.shadow = [p.detach().clone() for p in params]
        self.decay = decay

    @torch.no_grad()
    def update(self, params, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, params) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def load_base(base: Path, device):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(base / "unet").to(device).eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(base / "vae").to(device).eval().requires_grad_(False)
    te = CLIPTextModel.from_pretrained(base / "text_encoder").to(device).eval().requires_grad_(False)
    tok = CLIPTokenizer.from_pretrained(base / "tokenizer")
    sched = DDPMScheduler.from_pretrained(base / "scheduler")
    return unet, vae, te, tok, sched


def build_controlnet(unet, vae_factor: int, embed_channels):
    """The starter's ControlNet: its UNet's encoder half, a condition embedding reaching the latent grid."""
    from diffusers import ControlNetModel

    channels = tuple(embed_channels)
    if 2 ** (len(channels) - 1) != vae_factor:
        raise SystemExit(f"--embed-channels needs {int(math.log2(vae_factor)) + 1} entries for a VAE factor of "
                         f"{vae_factor}")
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)


def export(out: Path, controlnet, args, meta: dict) -> None:
    """Write the diffusers folder + impasto.json to a temporary folder, then rename it into place."""
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    controlnet.save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "impasto.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None) -> int:
    from impasto.backend.engine.models import starter_dir

    from . import drawings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the ControlNet folder to write (a models folder's controlnet/NAME)")
    ap.add_argument("--work", default="/tmp/starter_control_work", help="checkpoint directory (resume from it)")
    ap.add_argument("--base", type=Path, default=None, help="the base model folder (default: the shipped starter)")
    ap.add_argument("--steps", type=int, default=6000, help="training steps in all (a resumed run keeps counting)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop (and save) after this long; 0: no limit")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--min-snr", type=float, default=5.0)
    ap.add_argument("--cond-drop", type=float, default=0.1, help="caption dropout (keeps CFG usable)")
    ap.add_argument("--embed-channels", default="16,16,32,32",
                    help="the condition embedding's widths (its length fixes the downscale: 4 -> /8)")
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = Path(args.base) if args.base else starter_dir()
    if base is None:
        raise SystemExit("no starter model installed: pass --base DIR")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ck = work / "control.pt"
    unet, vae, te, tok, sched = load_base(base, device)
    size = int(json.loads((base / "impasto.json").read_text()).get("native_size", 64)) \
        if (base / "impasto.json").is_file() else unet.config.sample_size * 8
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    net = build_controlnet(unet, factor, [int(c) for c in args.embed_channels.split(",")]).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = EMA(params, args.ema)
    step = 0
    rng_state = None
    if ck.exists():
        st = torch.load(ck, map_location="cpu", weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        ema.shadow = [s.to(device) for s in st["ema"]]
        step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        rng_state = st["np_rng"]
        log(f"resumed at step {step}/{args.steps}")
    rng = np.random.default_rng(args.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    gen = torch.Generator("cpu").manual_seed(args.seed + step)
    acp = sched.alphas_cumprod.to(device)
    snr = acp / (1 - acp)
    scaling = float(vae.config.scaling_factor)
    with torch.no_grad():
        empty = te(tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
                   .input_ids.to(device))[0]
    n_params = sum(p.numel() for p in params)
    log(f"ControlNet of {base.name}: {n_params} trainable parameters, {size} px, batch {args.batch}, device {device}")
    meta = {
        "control": "scribble", "family": "sd15", "base_model": base.name,
        "description": "Impasto starter control model: a rough drawing (outline or silhouette, white on black "
                       "after the scribble preprocessor) places the shape",
        "training": {"command": "python -m impasto.backend.starter.train_control " + " ".join(argv or sys.argv[1:]),
                     "seed": args.seed, "batch": args.batch, "lr": args.lr, "params": n_params,
                     "embed_channels": args.embed_channels, "threads": args.threads, "device": str(device)},
    }

    def save() -> None:
        atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "ema": [s.cpu() for s in ema.shadow],
                     "step": step, "torch_rng": torch.get_rng_state(), "np_rng": rng.bit_generator.state}, ck)

    t_start, last_ck, run_loss = time.time(), time.time(), None
    net.train()
    while step < args.steps:
        if args.minutes and time.time() - t_start > args.minutes * 60:
            log(f"time budget reached at step {step}/{args.steps}")
            break
        scenes, maps, captions, _ = drawings.sample(args.batch, size, rng)
        with torch.no_grad():
            x = torch.from_numpy(scenes).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
            x0 = vae.encode(x).latent_dist.mean * scaling
            ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids.to(device)
            enc = te(ids)[0]
            drop = torch.rand(args.batch, generator=gen) < args.cond_drop
            enc = torch.where(drop[:, None, None].to(device), empty.expand_as(enc), enc)
        cond = torch.from_numpy(maps).permute(0, 3, 1, 2).float().div(255.0).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=gen).to(device)
        xt = sched.add_noise(x0, noise, t)
        down, mid = net(xt, t, encoder_hidden_states=enc, controlnet_cond=cond, return_dict=False)
        pred = unet(xt, t, encoder_hidden_states=enc, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        w = torch.clamp(snr[t], max=args.min_snr) / snr[t] if args.min_snr > 0 else torch.ones_like(snr[t])
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(params, step)
        step += 1
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % 50 == 0 or step == 1:
            log(f"step {step}/{args.steps} loss {run_loss:.4f} lr {lr:.2e} "
                f"({(time.time() - t_start) / 60:.1f} min)")
        if time.time() - last_ck > args.ckpt_minutes * 60:
            save()
            last_ck = time.time()
    save()
    ema.copy_to(params)
    meta["training"].update(steps=step, final_loss=round(run_loss or 0.0, 5),
                            date=time.strftime("%Y-%m-%d"))
    export(Path(args.out), net, args, meta)
    log(f"wrote {args.out} after {step} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
