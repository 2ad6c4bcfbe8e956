"""Train the starter's preview decoder: one command, a few minutes of one CPU thread.

    nice python -m impasto.backend.tooling.train_preview            # retrain for the shipped starter
    nice python -m impasto.backend.tooling.train_preview --model DIR --minutes 4

Why here and not in the starter's trainer: the preview decoder learns to copy
*a given* VAE's decode, so it is retrained whenever the starter's VAE changes
(``backend/starter/train.py`` may be rerun with a richer domain) - one command
after that, with no other state.

Pairs are (starter VAE latents of rendered domain scenes -> the full VAE decode
of the same latents): the decoder is taught the VAE's decode, never the
rendered picture, so a preview shows what the final image will show.  The
latents are the encoder's mean plus variants a preview actually meets while an
image forms: a posterior sample, the mean with noise added, blends of two
scenes, and the x0 predictions of real generations (every step of 48 runs of
training prompts: the engine's own previews, which no encoder produces).  Only the training colour x
shape combinations are used (``domain.train_combos``); the test and the bench
judge on held-out combinations and the never-trained star shape.

The result is written atomically to ``MODEL/preview_decoder.safetensors`` and
``impasto.json`` gets ``"preview_decoder": {...}`` (file name + provenance),
which is how the engine finds it (:func:`impasto.backend.engine.preview.choose_previewer`).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from impasto.backend.engine.preview import PREVIEW_DECODER_FILE as DECODER_FILE
from impasto.backend.engine.preview_net import TinyPreviewDecoder, save_decoder

TRAIN_SEED = 1234
COMMAND = "nice python -m impasto.backend.tooling.train_preview"


def starter_path() -> Path:
    from impasto.backend.engine.models import starter_dir

    path = starter_dir()
    if path is None:
        raise SystemExit("the starter model is not installed (backend/assets/starter)")
    return path


def load_vae(model_dir: Path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(Path(model_dir) / "vae"), local_files_only=True)
    return vae.eval().requires_grad_(False)


def render_scenes(combos: Sequence[Tuple[str, str, str]], count: int, seed: int, size: int = 64) -> torch.Tensor:
    """``count`` domain scenes (random combos from ``combos``) as (N, 3, size, size) in [-1, 1]."""
    from impasto.backend.starter import domain

    rng = np.random.default_rng(seed)
    out = np.zeros((count, size, size, 3), np.float32)
    for i in range(count):
        shape, fg, bg = combos[int(rng.integers(len(combos)))]
        out[i] = np.asarray(domain.render(shape, fg, bg, size, rng), np.float32) / 127.5 - 1
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def encode(vae, pixels: torch.Tensor, sample: bool = False, seed: int = 0, chunk: int = 64) -> torch.Tensor:
    """Scaled latents (what the UNet sees) of ``pixels``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(pixels), chunk):
        dist = vae.encode(pixels[i:i + chunk]).latent_dist
        out.append((dist.sample(gen) if sample else dist.mean) * vae.config.scaling_factor)
    return torch.cat(out)


@torch.no_grad()
def full_decode(vae, latents: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The VAE's own decode of scaled latents, clamped to [-1, 1] like the final image."""
    out = [vae.decode(latents[i:i + chunk] / vae.config.scaling_factor).sample.clamp(-1, 1)
           for i in range(0, len(latents), chunk)]
    return torch.cat(out)


def live_x0_latents(combos, steps: int, seed: int, samplers=("euler_a", "ddim"), model_dir: Path = None) -> torch.Tensor:
    """The x0 predictions the engine previews during real generations (one per step), prompts = ``combos``.

    Early ones are soft, off-domain mixes no encoder produces: the previews an artist sees first.
    """
    from impasto.backend.engine import Engine
    from impasto.backend.engine.hooks import JobHooks
    from impasto.backend.starter import domain
    from impasto.protocol.messages import Generate

    model = "starter"
    saved = os.environ.get("IMPASTO_STARTER_DIR")
    if model_dir is not None:  # the model being trained for, loaded as the engine loads the starter
        os.environ["IMPASTO_STARTER_DIR"] = str(model_dir)
    try:
        eng = Engine()
        loaded = eng.model(model)
    finally:
        if saved is None:
            os.environ.pop("IMPASTO_STARTER_DIR", None)
        else:
            os.environ["IMPASTO_STARTER_DIR"] = saved
    seen = []
    real = loaded.previewer

    def capture(latents, *a, **k):
        seen.append(latents[:1].detach().float().cpu().clone())
        return None  # nothing is sent anywhere: only the latents are wanted

    loaded.previewer = capture
    try:
        for i, (shape, fg, bg) in enumerate(combos):
            eng.run(Generate(job=f"x{i}", model=model, prompt=domain.caption(shape, fg, bg), width=64, height=64,
                             steps=steps, sampler=samplers[i % len(samplers)], cfg_scale=5.0, seed=seed + i),
                    JobHooks(want_preview=True))
    finally:
        loaded.previewer = real
    return torch.cat(seen)


def training_latents(vae, scenes: int, seed: int, generations: int = 48, model_dir: Path = None) -> torch.Tensor:
    from impasto.backend.starter import domain

    pixels = render_scenes(domain.train_combos(), scenes, seed)
    mean = encode(vae, pixels)
    g = torch.Generator().manual_seed(seed + 1)
    sampled = encode(vae, pixels, sample=True, seed=seed + 2)
    sigma = torch.rand(len(mean), 1, 1, 1, generator=g) * 0.6 * mean.std()
    noisy = mean + sigma * torch.randn(mean.shape, generator=g)
    t = torch.rand(len(mean), 1, 1, 1, generator=g)
    blend = t * mean + (1 - t) * mean[torch.randperm(len(mean), generator=g)]
    parts = [mean, sampled, noisy, blend]
    if generations:
        rng = np.random.default_rng(seed + 4)
        combos = domain.train_combos()
        picks = [combos[int(j)] for j in rng.integers(len(combos), size=generations)]
        parts += [live_x0_latents(picks, 20, seed + 5, model_dir=model_dir)] * 2  # twice: the previews that matter most
    return torch.cat(parts)


def train(model_dir: Path, minutes: float = 8.0, scenes: int = 1500, max_steps: int = 3000, batch: int = 16,
          lr: float = 2e-3, seed: int = TRAIN_SEED, log=print) -> Tuple[TinyPreviewDecoder, dict]:
    torch.manual_seed(seed)
    vae = load_vae(model_dir)
    t0 = time.perf_counter()
    latents = training_latents(vae, scenes, seed, model_dir=model_dir)
    targets = full_decode(vae, latents)
    data_s = time.perf_counter() - t0
    log(f"{len(latents)} pairs in {data_s:.1f} s")
    model = TinyPreviewDecoder(latents.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max_steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed + 3)
    deadline = time.perf_counter() + minutes * 60
    step, loss_ema = 0, None
    model.train()
    while step < max_steps and time.perf_counter() < deadline:
        idx = torch.randint(len(latents), (batch,), generator=g)
        loss = (model(latents[idx]) - targets[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        if step % 200 == 0:
            log(f"step {step}: L1 {loss_ema * 127.5:.2f} levels (0-255)")
    model.eval()
    info = {"command": COMMAND, "vae_sha256": vae_fingerprint(model_dir), "seed": seed, "pairs": len(latents), "steps": step, "batch": batch, "lr": lr,
            "params": model.param_count(), "final_train_l1_levels": round(loss_ema * 127.5, 2),
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return model, info


def vae_fingerprint(model_dir: Path) -> str:
    """sha256 (first 16 hex) of the VAE weights a decoder was trained to copy: a retrained VAE shows."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted((Path(model_dir) / "vae").glob("*.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def held_out_latents(vae, count: int = 48, seed: int = 4321) -> torch.Tensor:
    """Scaled latents of scenes the decoder never saw: held-out combinations and the star shape."""
    from impasto.backend.starter import domain

    return encode(vae, render_scenes(domain.eval_combos() + domain.star_combos(), count, seed))


def preview_colour_error(previewer, vae, latents: torch.Tensor, full: torch.Tensor = None) -> float:
    """Mean absolute error (0-255) of the preview images an artist sees vs the full VAE decode.

    Each preview is the previewer's real output (the RGBA image sent to clients), resized to the
    decode's size; the reference is the decode quantised to 8 bits like the final picture.
    """
    from PIL import Image

    full = full_decode(vae, latents) if full is None else full
    ref = ((full + 1) * 127.5).round().clamp(0, 255).permute(0, 2, 3, 1).numpy()
    errs = []
    for i in range(len(latents)):
        img = previewer(latents[i:i + 1]).convert("RGB").resize(ref.shape[2:0:-1], Image.BILINEAR)
        errs.append(np.abs(np.asarray(img, np.float64) - ref[i]).mean())
    return float(np.mean(errs))


def install(model: TinyPreviewDecoder, info: dict, model_dir: Path) -> Path:
    """Write the decoder into the model folder and reference it from its impasto.json (both atomic)."""
    model_dir = Path(model_dir)
    path = model_dir / DECODER_FILE
    save_decoder(model, path, {"training": info})
    cfg_path = model_dir / "impasto.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg["preview_decoder"] = {"file": DECODER_FILE, **info}
    tmp = cfg_path.with_name(cfg_path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, cfg_path)
    return path


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped starter)")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock cap on the training loop")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--scenes", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model or starter_path()
    model, info = train(model_dir, args.minutes, args.scenes, args.steps)
    path = install(model, info, model_dir)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB): {info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
