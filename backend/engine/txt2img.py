"""Text to image: prompt (+ concepts) -> a batch of pictures at the asked size."""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

from PIL import Image

from impasto.protocol.messages import Generate

from .denoise import decode, denoise, generators
from .hooks import JobHooks
from .pipelines import LoadedModel


def diffusion_size(width: int, height: int, loaded: LoadedModel) -> Tuple[int, int]:
    """The size the model actually diffuses at.

    Rounded to the VAE's multiple of 8.  A model with a small ``max_size``
    (the starter, 64 px native) diffuses at most that large and the result is
    upscaled: its UNet never saw larger scenes and would tile them.
    """
    limit = loaded.entry.max_size
    if limit and max(width, height) > limit:
        scale = limit / max(width, height)
        width, height = width * scale, height * scale
    mult = loaded.base.vae_scale_factor
    return max(mult, int(round(width / mult)) * mult), max(mult, int(round(height / mult)) * mult)


def size_note(w: int, h: int, width: int, height: int, loaded: LoadedModel) -> str:
    """What the artist is told when the picture was not painted at the size they asked for."""
    native = loaded.entry.native_size
    why = f"this model paints at most {loaded.entry.max_size} px" if loaded.entry.max_size and \
        max(width, height) > loaded.entry.max_size else "the model works in multiples of 8 px"
    return (f"size changed: painted at {w}x{h} ({why}; native {native}x{native}) and resized to "
            f"{width}x{height}")


def run(loaded: LoadedModel, req: Generate, seeds: List[int], hooks: JobHooks) -> Tuple[List[Image.Image], int, Dict[str, float]]:
    timings: Dict[str, float] = {}
    w, h = diffusion_size(req.width, req.height, loaded)
    kwargs = dict(
        prompt=[req.prompt] * len(seeds),
        negative_prompt=[req.negative_prompt] * len(seeds) if req.negative_prompt else None,
        num_inference_steps=req.steps,
        guidance_scale=req.cfg_scale,
        width=w,
        height=h,
        generator=generators(seeds),
    )
    pipe = loaded.txt2img
    if loaded.inpaint_unet:  # a 9-channel inpainting model paints from scratch on an all-masked canvas
        kwargs.update(image=Image.new("RGB", (w, h), (127, 127, 127)), mask_image=Image.new("L", (w, h), 255),
                      strength=1.0)
    latents, steps = denoise(pipe, loaded, req.sampler, hooks, timings, **kwargs)
    images = decode(pipe, latents, timings)
    t0 = time.perf_counter()
    if (w, h) != (req.width, req.height):
        images = [im.resize((req.width, req.height), Image.LANCZOS) for im in images]
        hooks.warnings.append(size_note(w, h, req.width, req.height, loaded))
    timings["resize"] = time.perf_counter() - t0
    return images, steps, timings
