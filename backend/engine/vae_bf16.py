"""The VAE's decoder in bfloat16, for fast jobs on a CPU that computes bfloat16 natively.

A live job whose model has no fast decoder fit for pictures is decoded by the VAE
(:mod:`.fast_vae`): on the starter that was a quarter of a live job on the CPU (about
29 of 110 ms at one thread), all of it convolutions.  A CPU with AVX512-BF16 or AMX
(recent Xeons, AMD Zen 4 and later) runs the same convolutions in bfloat16,
channels-last, in about half the time; a CPU without them emulates bfloat16 and runs
*slower*.  So it is measured, not guessed: the first fast job on a loaded model times
the VAE's decode both ways on a small latent of a real picture (a second or less, once
per loaded model) and keeps bfloat16 only when it is clearly faster (by
:data:`MIN_GAIN`) and its picture stays within :data:`MAX_LEVELS` of float32's (mean
absolute difference, 0-255).  The decision and both times are logged and named in the
result's ``info["vae"]``.

Only fast jobs use it (live painting: the picture is the preview, the artist keeps it or
paints on); every other job decodes in the model's own precision.  Not on a GPU (the
model runs in float16 there already) nor for a tiled VAE (big pictures).
``IMPASTO_BF16_DECODE`` = ``off`` never uses it, ``on`` skips the timing (the quality
check still applies) - for tests and for measuring.

On small latents (up to :data:`TRACE_MAX_LATENT` cells: the starter's live job, 16 x 16)
the copy runs traced (TorchScript, recorded on the first decode of a shape, as the live
UNet is, :mod:`.live_unet`, and under the same setting): there Python's per-module
overhead is a quarter of the decode (18.1 -> 13.6 ms at one thread on the starter).  Big
latents are convolution-bound and stay eager.
"""
from __future__ import annotations

import copy
import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

log = logging.getLogger("impasto.engine")

MIN_GAIN = 0.15          # bfloat16 must save at least this share of the float32 decode
MAX_LEVELS = 1.5         # mean |bf16 - fp32| of the check picture, 0-255
CHECK_SIDE = 128         # the check picture's side in pixels (a 16 x 16 latent at the usual factor 8)
TRACE_MAX_LATENT = 32 * 32   # latent cells up to which a decode is overhead-bound enough to trace
ENV = "IMPASTO_BF16_DECODE"


@dataclass
class Decision:
    """What the check found for one loaded model."""

    use: bool
    why: str
    fp32_ms: float = float("nan")
    bf16_ms: float = float("nan")
    levels: float = float("nan")


class Bf16Decoder:
    """A bfloat16, channels-last copy of ``vae``'s ``post_quant_conv`` and decoder.

    ``decode`` takes what ``vae.decode`` takes (unscaled latents) and returns float32
    pixels in [-1, 1], like ``vae.decode(...)[0]``.
    """

    def __init__(self, vae):
        pqc = getattr(vae, "post_quant_conv", None)
        self.module = _Decode(copy.deepcopy(pqc) if pqc is not None else None, copy.deepcopy(vae.decoder))
        self.module.to(torch.bfloat16, memory_format=torch.channels_last).requires_grad_(False).eval()
        self.traced: Dict[tuple, Optional[Callable]] = {}    # latent shape -> its recording (None: eager)

    def _trace(self, z: torch.Tensor) -> Optional[Callable]:
        """A recording of the decode for ``z``'s shape, or None where it stays eager."""
        from . import live_unet

        if z.shape[-2] * z.shape[-1] > TRACE_MAX_LATENT or live_unet.mode() is None:
            return None
        live_unet._quiet_tracer()
        try:
            with torch.no_grad():
                traced = torch.jit.trace(self.module, (z,), check_trace=False)
            if not torch.equal(traced(z), self.module(z)):
                raise RuntimeError("the traced decode differs from the decode")
        except Exception as exc:    # no TorchScript, an odd decoder: decode eagerly
            log.info("bfloat16 decode of %s latents stays eager (%s)", tuple(z.shape), str(exc)[:200])
            return None
        return traced

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        key = tuple(z.shape)
        if key not in self.traced:
            self.traced[key] = self._trace(z)
        run = self.traced[key] or self.module
        return run(z).float()


class _Decode(torch.nn.Module):
    """``post_quant_conv`` then the decoder: what ``vae.decode`` runs, as one module (one recording)."""

    def __init__(self, post_quant_conv, decoder):
        super().__init__()
        self.post_quant_conv = post_quant_conv
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


def check_picture(side: int = CHECK_SIDE) -> np.ndarray:
    """A small picture with flat areas, hard edges and a gradient (what live pictures hold)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([255 * x, 255 * (1 - y), np.full_like(x, 96)], axis=-1)
    disc = (x - 0.4) ** 2 + (y - 0.45) ** 2 < 0.06
    rgb[disc] = (220, 40, 40)
    rgb[(abs(x - 0.75) < 0.12) & (abs(y - 0.7) < 0.12)] = (30, 60, 200)
    return rgb.round().astype(np.uint8)


def _ms(fn) -> float:
    """Milliseconds one call of ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


@torch.inference_mode()
def measure(vae, device, dtype, repeats: int = 5, mode: str = "auto") -> tuple:
    """(:class:`Decision`, the decoder or None) for ``vae``: timed both ways, picture compared."""
    from .encoding import encode_rgb

    decoder = Bf16Decoder(vae)
    latents = encode_rgb(vae, check_picture(), device, dtype) / vae.config.scaling_factor
    ref = vae.decode(latents, return_dict=False)[0].float()
    out = decoder.decode(latents)
    levels = float((out - ref).abs().mean()) * 127.5
    if not levels <= MAX_LEVELS:
        return Decision(False, f"bfloat16 decode {levels:.2f} levels from float32 (limit {MAX_LEVELS})",
                        levels=levels), None
    if mode == "on":
        return Decision(True, f"bfloat16 decode ({ENV}=on; {levels:.2f} levels from float32)", levels=levels), decoder
    fp32, bf16 = [], []
    for _ in range(repeats):           # interleaved: the machine's noise falls on both
        fp32.append(_ms(lambda: vae.decode(latents, return_dict=False)))
        bf16.append(_ms(lambda: decoder.decode(latents)))
    f, b = statistics.median(fp32), statistics.median(bf16)
    use = b <= (1 - MIN_GAIN) * f
    why = (f"bfloat16 decode {'kept' if use else 'not kept'}: {b:.1f} vs {f:.1f} ms float32 on a "
           f"{CHECK_SIDE} px check, {levels:.2f} levels apart")
    return Decision(use, why, f, b, levels), (decoder if use else None)


_LOCK = threading.Lock()


def for_model(loaded) -> Optional[Bf16Decoder]:
    """The loaded model's bfloat16 decoder when it pays on this machine, else None (decided once, cached)."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode == "off":
        return None
    choice = loaded.choice
    vae = loaded.base.vae
    if choice.device.type != "cpu" or vae.dtype != torch.float32 or getattr(vae, "use_tiling", False):
        return None
    with _LOCK:
        cache = loaded.__dict__.setdefault("_bf16_decode", {})
        if mode not in cache:
            try:
                found = measure(vae, choice.device, vae.dtype, mode=mode)
            except Exception as exc:   # an odd VAE must not fail the job: it decodes in float32
                found = Decision(False, f"bfloat16 decode unavailable ({exc})"), None
            log.info("%s: %s", loaded.entry.name, found[0].why)
            cache[mode] = found
    return cache[mode][1]


def decision(loaded) -> Optional[Decision]:
    """What :func:`for_model` decided for ``loaded`` in the current mode (None before its first fast job)."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    found = getattr(loaded, "_bf16_decode", {}).get(mode)
    return found[0] if found else None
