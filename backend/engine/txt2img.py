"""Text to image: prompt (+ concepts) -> a batch of pictures at the asked size.

The diffusion size is the asked size rounded to 8 (capped by a small model's
``max_size``); for a family with aspect buckets (SDXL) a request far from the
native area is generated in the nearest bucket instead (:mod:`.native`), and
the pictures are resized to the asked size either way.
"""
from __future__ import annotations

import time
from typing import Dict

from PIL import Image

from . import native
from .common import diffusion_size, job_seeds, prompt_kwargs
from .denoise import decode, denoise, generators
from .gpu import configure_vae
from .hooks import JobHooks
from .images import to_rgba_array
from .runners import Output

__all__ = ["run", "diffusion_size"]


def size_note(w: int, h: int, width: int, height: int, loaded, bucketed: bool = False) -> str:
    """What the artist is told when the picture was not painted at the size they asked for."""
    side = loaded.entry.native_size
    if bucketed:
        why = "the nearest aspect bucket at the model's native area"
    elif loaded.entry.max_size and max(width, height) > loaded.entry.max_size:
        why = f"this model paints at most {loaded.entry.max_size} px"
    else:
        why = "the model works in multiples of 8 px"
    return (f"size changed: painted at {w}x{h} ({why}; native {side}x{side}) and resized to "
            f"{width}x{height}")


def run(engine, loaded, req, hooks: JobHooks) -> Output:
    seeds = job_seeds(req)
    timings: Dict[str, float] = {}
    info: Dict[str, object] = {}
    w, h = diffusion_size(req.width, req.height, loaded)
    bucket = native.plan(req.width, req.height, loaded.family, loaded.entry.native_size,
                         loaded.base.vae_scale_factor)
    if bucket is not None:
        w, h = bucket["generated"]
        info["native"] = bucket
    info["diffusion_size"] = [w, h]
    kwargs = dict(num_inference_steps=req.steps, width=w, height=h, generator=generators(seeds),
                  **prompt_kwargs(req, len(seeds), loaded.txt2img))
    pipe = loaded.txt2img
    if configure_vae(pipe.vae, w, h):
        info["vae_tiled"] = True
    if loaded.inpaint_unet:  # a 9-channel inpainting model paints from scratch on an all-masked canvas
        kwargs.update(image=Image.new("RGB", (w, h), (127, 127, 127)), mask_image=Image.new("L", (w, h), 255),
                      strength=1.0)
    kwargs.update(loaded.size_conditioning(w, h))
    latents, steps = denoise(pipe, loaded, req.sampler, hooks, timings, **kwargs)
    images = decode(pipe, latents, timings)
    t0 = time.perf_counter()
    if (w, h) != (req.width, req.height):
        images = [im.resize((req.width, req.height), Image.LANCZOS) for im in images]
        hooks.warnings.append(size_note(w, h, req.width, req.height, loaded, bucket is not None))
    timings["resize"] = time.perf_counter() - t0
    return Output(images=[to_rgba_array(im) for im in images], seeds=seeds, steps=steps, timings=timings, info=info)
