"""Image to image: rework a whole picture at a denoising strength.

The picture (any PIL mode: RGB, RGBA, L, P, 16-bit...) is flattened over
white, scaled to the model's diffusion size (:func:`.region.picture_size`:
multiples of 8, capped by a small model's ``max_size``, small pictures scaled
up to the native area), encoded once, noised
to the strength's level and denoised by the model's derived
``StableDiffusionImg2ImgPipeline`` through :func:`.denoise.denoise`.  The
result is scaled back to the input's size and is opaque (diffusion paints
every pixel).

Strength s runs about steps x s steps with a floor (:mod:`.strength`);
strength 0 returns the input unchanged.  A model with a 9-channel inpainting
UNet has no plain img2img path: it runs as an edit of the whole picture with
a fully white mask (:mod:`.edit`), which is what that UNet was trained for.
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from impasto.protocol.messages import Generate, Result

from .denoise import decode, denoise, generators
from .encoding import encode_rgb
from .engine import JOB_RUNNERS, job_seeds
from .hooks import JobHooks
from .images import from_wire, to_rgb, to_rgba8, to_wire
from .pipelines import LoadedModel
from .strength import schedule
from .region import picture_size


def prompt_kwargs(req: Generate, batch: int) -> Dict[str, object]:
    """The prompt, negative prompt and CFG scale for a batch, as the pipelines take them."""
    return dict(
        prompt=[req.prompt] * batch,
        negative_prompt=[req.negative_prompt] * batch if req.negative_prompt else None,
        guidance_scale=req.cfg_scale,
    )


def nothing_to_do_warning(req: Generate) -> str:
    return (f"denoising strength {req.strength:g} is too low to run a single step: the picture is returned "
            f"unchanged")


def img2img(loaded: LoadedModel, init: Image.Image, req: Generate, seeds: List[int],
            hooks: JobHooks) -> Tuple[List[Image.Image], int, Dict[str, float], Dict[str, object]]:
    """(RGBA images at the input's size, steps run, timings, info) for ``init`` in any PIL mode."""
    timings: Dict[str, float] = {}
    width, height = init.size
    num_steps, expected = schedule(req.steps, req.strength, req.sampler)
    info: Dict[str, object] = {"strength": req.strength, "schedule_steps": num_steps}
    if expected == 0:
        hooks.warnings.append(nothing_to_do_warning(req))
        return [to_rgba8(init).copy() for _ in seeds], 0, timings, info
    if loaded.inpaint_unet:
        from .edit import edit_pictures, whole_picture_request

        out = edit_pictures(loaded, init, Image.new("L", init.size, 255), whole_picture_request(req), seeds, hooks)
        info.update(out.info)
        return [Image.fromarray(a, "RGBA") for a in out.images], out.steps, out.timings, info
    t0 = time.perf_counter()
    dw, dh = picture_size(width, height, loaded)
    info["diffusion_size"] = [dw, dh]
    rgb = to_rgb(init)
    if (dw, dh) != (width, height):
        rgb = rgb.resize((dw, dh), Image.LANCZOS)
    timings["prepare"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = loaded.img2img
    latents = encode_rgb(pipe.vae, np.asarray(rgb), loaded.choice.device, loaded.choice.dtype)
    latents = latents.repeat(len(seeds), 1, 1, 1)
    timings["encode"] = time.perf_counter() - t0
    out, steps = denoise(pipe, loaded, req.sampler, hooks, timings, image=latents, strength=req.strength,
                         num_inference_steps=num_steps, generator=generators(seeds), **prompt_kwargs(req, len(seeds)))
    info["latent_shape"] = list(out.shape)
    images = decode(pipe, out, timings)
    t0 = time.perf_counter()
    if (dw, dh) != (width, height):
        images = [im.resize((width, height), Image.LANCZOS) for im in images]
    timings["resize"] = time.perf_counter() - t0
    return [im.convert("RGBA") for im in images], steps, timings, info


def run_img2img(engine, loaded: LoadedModel, req: Generate, hooks: JobHooks) -> Result:
    seeds = job_seeds(req)
    images, steps, timings, info = img2img(loaded, from_wire(req.init_image), req, seeds, hooks)
    return Result(images=[to_wire(im) for im in images], seeds=seeds, steps_run=steps,
                  timings={k: round(v, 6) for k, v in timings.items()}, info=info)


JOB_RUNNERS["img2img"] = run_img2img
