"""The starter's latent cache: a fixed pool of training scenes rendered and encoded once (``WORK/latents.pt``).

The UNet stage then never runs the VAE: each step draws cached latents (posterior means, scaled to
unit variance - or by a reused VAE's own factor) with their captions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import domain as D
from . import scenes as SC
from .run_tools import atomic_save, log, to_tensor


def latent_scale(lat: torch.Tensor, scale: Optional[float]) -> float:
    """The cache's scaling factor: a reused VAE's own, else one over the latents' standard deviation."""
    return float(1.0 / lat.std()) if scale is None else float(scale)


@torch.no_grad()
def build_latent_cache(vae, work: Path, args, device, scale: float = None):
    """Render and encode ``args.pool`` training scenes once (``WORK/latents.pt``).

    ``scale``: the latents' scaling factor; default one over their standard deviation (a new
    VAE), a reused VAE's own factor (``--vae``) so its latents mean what they meant.
    """
    path = work / "latents.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=False)
    log(f"rendering and encoding {args.pool} training scenes")
    vae.eval()
    rng = np.random.default_rng(args.seed + 2)
    if args.domain == "scenes":
        return _build_scene_cache(vae, path, args, device, rng, scale)
    combos = D.train_combos()
    lat, combo_idx = [], []
    index = {c: i for i, c in enumerate(combos)}
    chunk = 500
    for start in range(0, args.pool, chunk):
        imgs, _, used = D.sample_batch(chunk, args.size, rng, combos=combos, generic_fraction=0.0, as_array=True)
        z = vae.encode(to_tensor(imgs).to(device)).latent_dist.mean
        lat.append(z.cpu())
        combo_idx += [index[c] for c in used]
    lat = torch.cat(lat)
    scale = latent_scale(lat, scale)
    cache = {"latents": lat * scale, "combo": torch.tensor(combo_idx), "combos": combos, "scale": scale}
    atomic_save(cache, path)
    log(f"latent cache: {tuple(lat.shape)}, scaling_factor={scale:.4f}")
    return cache


@torch.no_grad()
def _build_scene_cache(vae, path: Path, args, device, rng, scale: float = None):
    """Latents + per-scene captions (specific and generic) of the richer domain."""
    lat, caps, gcaps = [], [], []
    chunk = 250
    t0 = time.time()
    for start in range(0, args.pool, chunk):
        imgs, c, gc, _ = SC.sample_batch(chunk, args.size, rng)  # enforces the split
        z = vae.encode(to_tensor(imgs).to(device)).latent_dist.mean
        lat.append(z.cpu())
        caps += c
        gcaps += gc
        if start % 2500 == 0:
            log(f"  cache {start + chunk}/{args.pool} ({time.time() - t0:.0f} s)")
    lat = torch.cat(lat)
    scale = latent_scale(lat, scale)
    cache = {"latents": lat * scale, "captions": caps, "generic": gcaps, "scale": scale}
    atomic_save(cache, path)
    log(f"latent cache: {tuple(lat.shape)}, scaling_factor={scale:.4f}")
    return cache
