"""Cheap previews: a per-model linear map from latents to RGB, never the VAE.

Decoding with the VAE costs about as much as several denoising steps; a 4->3
linear map (plus bias) applied per latent pixel costs nothing and is close
enough to show composition and colour while the image forms.  The map is
fitted once per loaded model by least squares on a few synthetic colour
images pushed through the model's own VAE encoder, so it works for SD1.5, the
starter model or anything else without hand-tuned coefficients.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

PREVIEW_MAX_SIDE = 256


@torch.no_grad()
def fit_latent_rgb(vae, device, dtype, size: int = 128, count: int = 6, seed: int = 0) -> torch.Tensor:
    """Least-squares (C+1)x3 matrix mapping scaled latents to RGB in [-1, 1]."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), np.float32)
    for i in range(count):
        images[i] = rng.uniform(-1, 1, 3)
        for _ in range(12):  # flat colour blocks: what a latent pixel mostly encodes
            x0, y0 = rng.integers(0, size - 16, 2)
            w, h = rng.integers(16, size // 2, 2)
            images[i, y0:y0 + h, x0:x0 + w] = rng.uniform(-1, 1, 3)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    factor = size // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(pixels.float(), factor)
    lat = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    rgb = target.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([lat, torch.ones(lat.shape[0], 1, device=lat.device)], dim=1)
    solution = torch.linalg.lstsq(design.cpu(), rgb.cpu()).solution
    return solution  # (C+1, 3) on CPU, float32


def latents_to_preview(latents: torch.Tensor, matrix: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """First image of a latent batch -> small RGBA PIL preview."""
    lat = latents[0].detach().float().cpu()
    c, h, w = lat.shape
    flat = lat.permute(1, 2, 0).reshape(-1, c)
    rgb = flat @ matrix[:c] + matrix[c]
    arr = ((rgb.reshape(h, w, 3).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    img = Image.fromarray(arr, "RGB")
    scale = min(8, max(1, max_side // max(h, w)))
    if scale > 1:
        img = img.resize((w * scale, h * scale), Image.BILINEAR)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    return img.convert("RGBA")
