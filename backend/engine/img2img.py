"""Image to image: rework a whole picture at a denoising strength.

The picture (any PIL mode: RGB, RGBA, L, P, 16-bit...) is flattened over
white, scaled to the model's diffusion size (:func:`.region.picture_size`:
multiples of 8, capped by a small model's ``max_size``, small pictures scaled
up to the native area; for a family with aspect buckets - SDXL - a picture far
above the native area is reworked in the nearest bucket, :mod:`.native`, and
the result says so), encoded once, noised
to the strength's level and denoised by the model's derived img2img pipeline
(SD or SDXL) through :func:`.denoise.denoise`.  The
result is scaled back to the input's size and is opaque (diffusion paints
every pixel).

Strength s runs about steps x s steps with a floor (:mod:`.strength`);
strength 0 returns the input unchanged.  A model with a 9-channel inpainting
UNet has no plain img2img path: it runs as an edit of the whole picture with
a fully white mask (:mod:`.edit`), which is what that UNet was trained for.
"""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np
from PIL import Image

from . import fast_vae, native
from .common import job_seeds, nothing_to_do_warning, prompt_kwargs
from .control import bind
from .denoise import decode, denoise, generators
from .gpu import configure_vae
from .edit import edit_pictures, whole_picture_request
from .hooks import JobHooks
from .images import from_wire, to_rgb, to_rgba_array
from .region import picture_size
from .runners import Output
from .strength import schedule


def img2img(loaded, init: Image.Image, req, seeds: List[int], hooks: JobHooks) -> Output:
    """RGBA pictures at the input's size for ``init`` in any PIL mode."""
    timings: Dict[str, float] = {}
    width, height = init.size
    num_steps, expected = schedule(req.steps, req.strength, req.sampler)
    info: Dict[str, object] = {"strength": req.strength, "schedule_steps": num_steps}
    if expected == 0:
        hooks.warn(nothing_to_do_warning(req))
        return Output(images=[to_rgba_array(init).copy() for _ in seeds], seeds=seeds, steps=0, timings=timings,
                      info=info)
    if loaded.inpaint_unet:
        out = edit_pictures(loaded, init, Image.new("L", init.size, 255), whole_picture_request(req), seeds, hooks)
        out.info = {**info, **out.info}
        out.patches = []
        return out
    t0 = time.perf_counter()
    dw, dh = picture_size(width, height, loaded)
    bucket = native.plan(dw, dh, loaded.family, loaded.entry.native_size, loaded.base.vae_scale_factor)
    if bucket is not None:   # SDXL: a picture far above ~1 MP is reworked at the native area, then scaled back
        dw, dh = bucket["generated"]
        info["native"] = dict(bucket, asked=[width, height], how=bucket["how"].replace(
            f"to {bucket['asked'][0]}x{bucket['asked'][1]}", f"to {width}x{height}"))
    info["diffusion_size"] = [dw, dh]
    rgb = to_rgb(init)
    if (dw, dh) != (width, height):
        # a fast (live) job scales a big canvas down in two passes, a box reduce then Lanczos
        # (PIL's reducing_gap): 1.5 instead of 3.3 ms from 512 to 128 px, visually the same
        gap = 2.0 if fast_vae.wanted(req) else None
        rgb = rgb.resize((dw, dh), Image.LANCZOS, reducing_gap=gap)
    timings["prepare"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = loaded.img2img
    if configure_vae(pipe.vae, dw, dh):
        info["vae_tiled"] = True
    fast = fast_vae.for_job(loaded, req, hooks, info)
    latents = fast_vae.encode(pipe.vae, np.asarray(rgb), loaded.choice.device, loaded.choice.dtype, fast)
    latents = latents.repeat(len(seeds), 1, 1, 1)
    timings["encode"] = time.perf_counter() - t0
    out, steps = denoise(pipe, loaded, req.sampler, hooks, timings, control=bind(hooks, (dw, dh)),
                         live=bool(getattr(req, "live", False)), info=info,
                         image=latents, strength=req.strength,
                         num_inference_steps=num_steps, generator=generators(seeds),
                         **prompt_kwargs(req, len(seeds), pipe, loaded, info), **loaded.size_conditioning(dw, dh))
    info["latent_shape"] = list(out.shape)
    images = decode(pipe, out, timings, fast)
    t0 = time.perf_counter()
    if (dw, dh) != (width, height):
        images = [im.resize((width, height), Image.LANCZOS) for im in images]
    timings["resize"] = time.perf_counter() - t0
    return Output(images=[to_rgba_array(im) for im in images], seeds=seeds, steps=steps, timings=timings, info=info)


def run(engine, loaded, req, hooks: JobHooks) -> Output:
    return img2img(loaded, from_wire(req.init_image), req, job_seeds(req), hooks)
