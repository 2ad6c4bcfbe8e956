"""Train the starter's fast encoder: a tiny network that copies its VAE's encoder, for live jobs.

    nice python -m impasto.backend.tooling.train_fast_encoder            # for the shipped starter
    nice python -m impasto.backend.tooling.train_fast_encoder --model DIR --minutes 6

A live job repaints the canvas after every stroke: it encodes the canvas, runs a few
denoising steps and decodes.  The preview decoder (``train_preview``) already stands in
for the VAE's decoder in live jobs (:mod:`impasto.backend.engine.fast_vae`); this is the
other half, so a live job on the starter never runs the VAE at all.

Pairs are (a picture -> the VAE encoder's latents of it: the distribution's mode times
``scaling_factor``, exactly what :func:`impasto.backend.engine.encoding.encode_rgb` gives):
the network is taught the VAE's encoding, so the latents it gives mean what the UNet
learned.  The pictures are what a live canvas holds: scenes of the model's own domain
(training combinations only), half of them painted over with a few brush strokes of any
colour and width (an artist's marks, which no scene has).  Loss: L1 on the latents.

The result is written atomically to ``MODEL/fast_encoder.safetensors`` and ``impasto.json``
gets ``"fast_encoder": {...}`` (file name + provenance + held-out figures), which is how
the engine finds it (:func:`impasto.backend.engine.fast_vae.load_encoder`).  The held-out
check: scenes of held-out combinations and never-trained shapes, stroked like the training
ones, both latents decoded by the VAE: how far the fast encoder's round trip is from the
VAE's own (levels of 0-255).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from impasto.backend.engine.fast_vae import FAST_ENCODER_FILE
from impasto.backend.engine.native import vae_scale_factor
from impasto.backend.engine.preview_net import TinyFastEncoder, default_encoder_widths, save_encoder
from impasto.backend.tooling.train_preview import (
    _to_tensor,
    domain_pixels,
    full_decode,
    install_net,
    load_vae,
    model_domain,
    starter_path,
    vae_fingerprint,
)

TRAIN_SEED = 1234
HELD_OUT_SEED = 4321
COMMAND = "nice python -m impasto.backend.tooling.train_fast_encoder"


def add_strokes(pixels: torch.Tensor, seed: int, share: float = 0.5) -> torch.Tensor:
    """A copy of ``pixels`` ((N, 3, S, S) in [-1, 1]) with 1-4 brush strokes painted on ``share`` of them."""
    from PIL import Image, ImageDraw

    g = np.random.default_rng(seed)
    arr = ((pixels.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    size = arr.shape[1]
    for i in range(len(arr)):
        if g.random() >= share:
            continue
        img = Image.fromarray(arr[i])
        draw = ImageDraw.Draw(img)
        for _ in range(int(g.integers(1, 5))):
            points = [tuple(int(v) for v in g.integers(0, size, 2))]
            for _ in range(int(g.integers(2, 7))):
                x, y = points[-1]
                points.append((int(np.clip(x + g.integers(-size // 3, size // 3 + 1), 0, size - 1)),
                               int(np.clip(y + g.integers(-size // 3, size // 3 + 1), 0, size - 1))))
            colour = tuple(int(v) for v in g.integers(0, 256, 3))
            draw.line(points, fill=colour, width=int(g.integers(2, max(3, size // 8))), joint="curve")
        arr[i] = np.asarray(img)
    return _to_tensor(arr)


@torch.no_grad()
def vae_latents(vae, pixels: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """What the engine's VAE path gives: the mode of the latent distribution times ``scaling_factor``."""
    return torch.cat([vae.encode(pixels[i:i + chunk]).latent_dist.mode() * vae.config.scaling_factor
                      for i in range(0, len(pixels), chunk)])


def pictures(model_dir: Path, count: int, seed: int, held_out: bool = False) -> torch.Tensor:
    return add_strokes(domain_pixels(model_dir, count, seed, held_out=held_out), seed + 1)


@torch.no_grad()
def held_out_check(model: TinyFastEncoder, vae, model_dir: Path, count: int = 64) -> dict:
    """Latent and round-trip errors on stroked held-out scenes (the VAE's own round trip is the reference)."""
    x = pictures(model_dir, count, HELD_OUT_SEED, held_out=True)
    want = vae_latents(vae, x)
    got = model(x)
    ref = full_decode(vae, want)
    back = full_decode(vae, got)
    levels = lambda a, b: float(((a - b).abs() * 127.5).mean())  # noqa: E731
    return {"pictures": count, "latent_l1": round(float((got - want).abs().mean()), 4),
            "latent_l1_relative": round(float((got - want).abs().mean() / want.abs().mean()), 4),
            "round_trip_vs_vae_levels": round(levels(back, ref), 2),
            "vae_round_trip_vs_picture_levels": round(levels(ref, x), 2),
            "fast_round_trip_vs_picture_levels": round(levels(back, x), 2)}


def train(model_dir: Path, minutes: float = 6.0, pool: int = 3000, max_steps: int = 4000, batch: int = 32,
          lr: float = 2e-3, seed: int = TRAIN_SEED, crop: int = 64, log=print) -> Tuple[TinyFastEncoder, dict]:
    torch.manual_seed(seed)
    vae = load_vae(model_dir)
    t0 = time.perf_counter()
    x = pictures(model_dir, pool, seed)
    y = vae_latents(vae, x)
    data_s = time.perf_counter() - t0
    log(f"{len(x)} pairs in {data_s:.1f} s")
    train_t0 = time.perf_counter()
    model = TinyFastEncoder(y.shape[1], default_encoder_widths(vae_scale_factor(vae.config)))  # one /2 per VAE level
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max_steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed + 3)
    deadline = time.perf_counter() + minutes * 60
    step, loss_ema = 0, None
    model.train()
    size, factor = int(x.shape[-1]), int(x.shape[-1]) // int(y.shape[-1])
    crop = min(int(crop or size), size) // factor * factor
    while step < max_steps and time.perf_counter() < deadline:
        idx = torch.randint(len(x), (batch,), generator=g)
        # a random window aligned to the latent grid: the same steps learn from 4x fewer pixels
        # (the network is local; the targets are the whole picture's latents, so context is kept)
        oy, ox = (int(v) * factor for v in torch.randint((size - crop) // factor + 1, (2,), generator=g))
        xs = x[idx, :, oy:oy + crop, ox:ox + crop]
        ys = y[idx, :, oy // factor:(oy + crop) // factor, ox // factor:(ox + crop) // factor]
        loss = (model(xs) - ys).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        if step % 200 == 0:
            log(f"step {step}: latent L1 {loss_ema:.4f}")
    model.eval()
    info = {"command": COMMAND, "vae_sha256": vae_fingerprint(model_dir), "seed": seed, "pairs": len(x),
            "steps": step, "batch": batch, "lr": lr, "crop": crop, "native_size": int(x.shape[-1]),
            "params": model.param_count(), "final_train_latent_l1": round(loss_ema, 4),
            "held_out": held_out_check(model, vae, model_dir),
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
            "training_minutes": round((time.perf_counter() - train_t0) / 60, 2), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return model, info


def install(model: TinyFastEncoder, info: dict, model_dir: Path) -> Path:
    """Write the encoder into the model folder and reference it from its impasto.json (both atomic)."""
    return install_net(save_encoder, model, info, model_dir, FAST_ENCODER_FILE, "fast_encoder")


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped starter)")
    ap.add_argument("--minutes", type=float, default=6.0, help="wall-clock cap on the training loop")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--pool", type=int, default=3000, help="training pictures (rendered and VAE-encoded once)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--crop", type=int, default=64,
                    help="train on random CROP x CROP pixel windows (aligned to the latent grid; 0: whole pictures)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model or starter_path()
    model_domain(model_dir)   # a folder without impasto.json is the old domain: still works
    model, info = train(model_dir, args.minutes, args.pool, args.steps, batch=args.batch, lr=args.lr, crop=args.crop)
    info["command"] = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    path = install(model, info, model_dir)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB): {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
