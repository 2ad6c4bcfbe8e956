"""Pixels -> latents with the loaded model's VAE, once per job.

Edits and img2img encode the picture themselves instead of letting the
pipeline do it: the pipeline encodes once per batch image (and once more for
the masked image of a 4-channel model, which it never uses), and samples the
latent distribution.  Here one deterministic encode (the distribution's mode)
serves the whole batch; seeds change only the noise.
"""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def encode_rgb(vae, rgb: np.ndarray, device, dtype) -> torch.Tensor:
    """Float or uint8 HxWx3 pixels (0..255, sides multiples of 8) -> scaled latents (1, C, H/8, W/8)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    x = (x / 127.5 - 1.0).to(device=device, dtype=vae.dtype)
    latents = vae.encode(x).latent_dist.mode()
    return (latents * vae.config.scaling_factor).to(dtype)
