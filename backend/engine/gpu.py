"""The GPU fast path, kept small and explicit: everything device-specific the engine does.

The CPU path runs the same functions (tests exercise them); what differs on
CUDA is spelled out here and nowhere else:

* precision: :mod:`.device` picks fp16, or bf16 where the card has it
  (``IMPASTO_PRECISION``); the VAE is upcast when its config says fp16 overflows
  (:func:`vae_needs_upcast`: SDXL's original VAE);
* attention: PyTorch's scaled-dot-product attention (diffusers' ``AttnProcessor2_0``)
  set explicitly on UNet and VAE;
* memory layout: channels_last for UNet and VAE on CUDA;
* ``torch.compile`` of the UNet when the daemon setting asks for it
  (``IMPASTO_COMPILE=1`` or ``IMPASTO_FAST=1``), compiled once per model and
  shape (shapes are kept to the aspect buckets, :mod:`.native`, so few graphs
  exist); concepts then swap into a fixed LoRA slot instead of adding
  adapters (:mod:`impasto.backend.concepts.hotswap`), so they never recompile;
* VAE tiling / slicing for canvases whose decode would not fit
  (:func:`configure_vae`), model offload when VRAM is short (``IMPASTO_OFFLOAD``);
* concept training: mixed precision (:func:`training_autocast`: the base in
  fp16 or bf16, LoRA master weights in fp32, a gradient scaler for fp16 only),
  gradient checkpointing (``Train.gradient_checkpointing``), and 8-bit Adam
  on CUDA when ``IMPASTO_ADAM8BIT=1`` and bitsandbytes is installed
  (:func:`adam_class`; it is not a dependency);
* a CUDA out-of-memory error becomes a typed ``out_of_memory`` error naming
  the size, after the memory is freed (:func:`oom_guard`): the daemon lives on.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
from dataclasses import dataclass

import torch

from impasto.protocol.messages import ErrorCode

from .errors import EngineError

log = logging.getLogger("impasto.engine")

TILE_ABOVE_PIXELS = 2048 * 2048     # decode/encode larger pictures tile by tile (bounded VRAM)


@dataclass(frozen=True)
class FastPath:
    """The daemon's speed settings (environment of ``impasto serve``, read at each model load).

    The *default path* is diffusers' own (SDPA attention, the model's dtype);
    ``IMPASTO_FAST=1`` turns on the *fast path*: channels_last and
    ``torch.compile`` of the UNet (each also on its own: ``IMPASTO_CHANNELS_LAST``,
    ``IMPASTO_COMPILE`` = 1 or 0).  ``IMPASTO_OFFLOAD`` = auto (on CUDA below
    8 GiB of VRAM), model or none.
    """

    sdpa: bool = True
    channels_last: bool = False
    compile: bool = False
    offload: str = "none"            # "none" | "model" (diffusers' model CPU offload)

    @classmethod
    def for_device(cls, choice) -> "FastPath":
        cuda = choice.device.type == "cuda"
        fast = os.environ.get("IMPASTO_FAST", "") == "1"

        def flag(name: str) -> bool:
            value = os.environ.get(name, "")
            return fast if value == "" else value == "1"

        offload = os.environ.get("IMPASTO_OFFLOAD", "auto").lower()
        if offload == "auto":
            offload = "model" if cuda and _vram_gib(choice.device) < 8 else "none"
        return cls(sdpa=True, channels_last=flag("IMPASTO_CHANNELS_LAST"), compile=flag("IMPASTO_COMPILE"),
                   offload=offload if cuda else "none")

    def describe(self) -> str:
        parts = ["sdpa"] + [n for n, on in (("channels_last", self.channels_last), ("compile", self.compile)) if on]
        return "+".join(parts) + ("" if self.offload == "none" else f" offload={self.offload}")


def _vram_gib(device) -> float:
    try:
        return torch.cuda.get_device_properties(device).total_memory / 2**30
    except Exception:  # no CUDA runtime: treat as plenty, never offload
        return 1e9


def vae_needs_upcast(vae) -> bool:
    """SDXL's original VAE overflows in fp16 (its config says ``force_upcast``); fp16-fixed VAEs don't."""
    return bool(getattr(vae.config, "force_upcast", False))


def optimize(pipe, choice, fast: FastPath, upcast_vae: bool = False) -> None:
    """Apply the fast path to a freshly loaded pipeline (same calls on CPU, with the CPU's settings)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    if fast.sdpa:
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    if fast.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if upcast_vae and choice.dtype == torch.float16 and vae_needs_upcast(pipe.vae):
        pipe.vae.to(torch.float32)   # decode/encode in fp32: fp16 overflows to NaN (black pictures)
    if fast.compile:
        from impasto.backend.concepts import hotswap

        hotswap.prepare(pipe.unet)   # concepts swap into this slot later: no recompile per concept
        backend = os.environ.get("IMPASTO_COMPILE_BACKEND", "inductor")   # tests: "eager" (dynamo, no codegen)
        pipe.unet = torch.compile(pipe.unet, backend=backend, fullgraph=False, dynamic=False)
    if fast.offload == "model":
        pipe.enable_model_cpu_offload(device=choice.device)


def configure_vae(vae, width: int, height: int) -> bool:
    """Tile and slice the VAE for pictures above :data:`TILE_ABOVE_PIXELS`; returns whether it tiles."""
    tiled = width * height > TILE_ABOVE_PIXELS
    if tiled:
        vae.enable_tiling()
        vae.enable_slicing()
    else:
        vae.disable_tiling()
        vae.disable_slicing()
    return tiled


def _size_of(req) -> str:
    image = getattr(req, "init_image", None)
    if image is not None:
        return f"{image.width}x{image.height}"
    w, h = getattr(req, "width", 0), getattr(req, "height", 0)
    return f"{w}x{h}" if w and h else "this size"


def free_memory(choice) -> None:
    gc.collect()
    if choice.device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def oom_guard(choice, req):
    """Turn an out-of-memory error into a typed one naming the size, after freeing the memory."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as exc:
        del exc
        free_memory(choice)
        size = _size_of(req)
        batch = getattr(req, "batch_size", 1)
        raise EngineError(ErrorCode.OUT_OF_MEMORY,
                          f"the {choice.device.type} ran out of memory for {size} x {batch}: try a smaller size "
                          f"or batch, or set IMPASTO_OFFLOAD=model", "width") from None


def training_autocast(choice):
    """Autocast for a training step: on CUDA in the model's half precision (fp16 or bf16), else off."""
    half = choice.dtype in (torch.float16, torch.bfloat16)
    return torch.autocast("cuda", dtype=choice.dtype if half else torch.float16,
                          enabled=choice.device.type == "cuda" and half)


def grad_scaler(choice):
    """fp16 training needs loss scaling (its gradients underflow); bf16 and fp32 do not."""
    if choice.device.type == "cuda" and choice.dtype == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def reset_peak_memory(choice) -> None:
    if choice.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(choice.device)


def peak_memory(choice):
    """Peak device memory of the job so far in bytes (CUDA), else None."""
    if choice.device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(choice.device))
    return None


def adam_class(choice):
    """The training optimizer: bitsandbytes' 8-bit AdamW on CUDA when asked for and installed, else torch's."""
    if choice.device.type == "cuda" and os.environ.get("IMPASTO_ADAM8BIT", "") == "1":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit
        except ImportError:
            log.warning("IMPASTO_ADAM8BIT=1 but bitsandbytes is not installed: plain AdamW")
    return torch.optim.AdamW
