"""Text to image: prompt (+ concepts) -> a batch of pictures at the asked size.

The diffusion size is the asked size rounded to 8 (capped by a small model's
``max_size``); for a family with aspect buckets (SDXL) a request far from the
native area is generated in the nearest bucket instead, and for any other
family a request under a quarter of the native area is generated at the
native area with its aspect (:mod:`.native`); the pictures are resized to
the asked size either way.  The artist hears of a changed size before the
first step (a progress event), not only in the result.
"""
from __future__ import annotations

import time
from typing import Dict

from PIL import Image

from . import fast_vae
from .common import diffusion_size, job_seeds, picture_size, prompt_kwargs  # noqa: F401  (diffusion_size: exported)
from .control import bind
from .denoise import decode, denoise, generators
from .gpu import configure_vae
from .hooks import JobHooks
from .images import to_rgba_array
from .runners import Output

__all__ = ["run", "diffusion_size"]


def run(engine, loaded, req, hooks: JobHooks) -> Output:
    if getattr(req, "p2p", None) is not None:   # a Prompt-to-Prompt edit of a picture of this model
        from .p2p import run as run_p2p

        return run_p2p(engine, loaded, req, hooks)
    seeds = job_seeds(req)
    timings: Dict[str, float] = {}
    info: Dict[str, object] = {}
    w, h = picture_size(req, loaded, hooks, info)   # said before the first step, not only in the result
    kwargs = dict(num_inference_steps=req.steps, width=w, height=h, generator=generators(seeds),
                  **prompt_kwargs(req, len(seeds), loaded.txt2img))
    pipe = loaded.txt2img
    if configure_vae(pipe.vae, w, h):
        info["vae_tiled"] = True
    if loaded.inpaint_unet:  # a 9-channel inpainting model paints from scratch on an all-masked canvas
        kwargs.update(image=Image.new("RGB", (w, h), (127, 127, 127)), mask_image=Image.new("L", (w, h), 255),
                      strength=1.0)
    kwargs.update(loaded.size_conditioning(w, h))
    latents, steps = denoise(pipe, loaded, req.sampler, hooks, timings, control=bind(hooks, (w, h)), **kwargs)
    images = decode(pipe, latents, timings, fast_vae.for_job(loaded, req, hooks, info))
    t0 = time.perf_counter()
    if (w, h) != (req.width, req.height):
        images = [im.resize((req.width, req.height), Image.LANCZOS) for im in images]
    timings["resize"] = time.perf_counter() - t0
    return Output(images=[to_rgba_array(im) for im in images], seeds=seeds, steps=steps, timings=timings, info=info)
