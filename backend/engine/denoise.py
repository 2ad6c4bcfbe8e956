"""The thin wrapper every job kind runs its diffusers pipeline through.

It installs a fresh scheduler for the job's sampler, taps the scheduler for
x0 (previews), checks the cancel flag at every step end and once more before
the VAE decode, and reports progress.  The pipeline itself is left to do what
it does: txt2img, img2img and the blended inpaint loop are diffusers' own.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from PIL import Image

from . import concepts as concept_seam
from . import live_unet
from .hooks import JobHooks
from .samplers import X0Tap, make_scheduler


def generators(seeds: List[int]) -> List[torch.Generator]:
    """One CPU generator per image: image i's noise depends on seeds[i] alone.

    CPU generators make the same seed give the same noise on every device.
    """
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def denoise(pipe, loaded, sampler: str, hooks: JobHooks, timings: Dict[str, float], control=None,
            step_end=None, live: bool = False, info: Optional[Dict[str, object]] = None,
            **kwargs: Any) -> Tuple[torch.Tensor, int]:
    """Run ``pipe`` to latents; returns (latents, steps actually run).

    ``control`` (a :class:`.control.BoundControl`, from :func:`.control.bind`)
    is the named point where control units join: it wraps the UNet for this
    call and learns the step count from the step-end callback.  ``step_end``
    (``(steps done, latents) -> new latents or None``) is the named point where
    a job changes the latents between steps (Prompt-to-Prompt's local blend).
    ``live`` (a live job without either) runs its UNet calls through the
    model's traced (or compiled) live UNet once that is built, unless the
    daemon setting turns it off (:mod:`.live_unet`; ``info["live_unet"]``
    says what ran).
    """
    scheduler = make_scheduler(sampler, loaded.scheduler_config, kwargs.get("strength", 1.0))
    pipe.scheduler = scheduler
    tap = X0Tap(scheduler)
    state = {"steps": 0, "first": None}
    hooks.steps_done = 0
    concepts_end = concept_seam.end_schedule(loaded)   # sliders that stop acting part way (None: none)
    t0 = time.perf_counter()

    cuda = loaded.choice.device.type == "cuda"

    def on_step_end(p, i, t, cb_kwargs):
        if cuda:  # "step i done" means done: no CPU run-ahead in progress events and it/s figures
            torch.cuda.synchronize(loaded.choice.device)
        state["steps"] = hooks.steps_done = i + 1
        if control is not None:
            control.step_done(i + 1)
        if concepts_end is not None:
            concepts_end(i + 1, p.num_timesteps)
        if state["first"] is None:
            state["first"] = time.perf_counter() - t0
        hooks.check()
        out = {}
        if step_end is not None:
            changed = step_end(i + 1, cb_kwargs["latents"])
            if changed is not None:
                out["latents"] = changed
        preview = None
        if hooks.want_preview and (i % max(1, hooks.preview_every) == 0 or i + 1 == p.num_timesteps):
            x0 = tap.x0 if tap.x0 is not None else cb_kwargs["latents"]
            preview = loaded.previewer(x0)
        hooks.progress(i + 1, p.num_timesteps, preview, None, "denoise")
        return out

    hooks.check()
    attached = control.attached(pipe) if control is not None else contextlib.nullcontext()
    fast_unet = live_unet.for_model(loaded) if live and control is None and step_end is None else None
    compiled = fast_unet.attached(pipe, info if info is not None else {}) if fast_unet is not None \
        else contextlib.nullcontext()
    with torch.inference_mode(), attached, compiled:
        out = pipe(output_type="latent", callback_on_step_end=on_step_end, **kwargs)
    timings["denoise"] = time.perf_counter() - t0
    if state["first"] is not None:
        timings["first_step"] = state["first"]
    hooks.check()  # cancelled during the last step: never pay for the decode
    return out.images, state["steps"]


@torch.no_grad()
def decode(pipe, latents: torch.Tensor, timings: Dict[str, float], fast=None) -> List[Image.Image]:
    """Latents -> pictures with the VAE, or with ``fast`` (the model's fast decoder, :mod:`.fast_vae`,
    or the VAE's bfloat16 copy, :mod:`.vae_bf16`)."""
    t0 = time.perf_counter()
    if fast is not None and fast.decoder is not None:
        images = pipe.image_processor.postprocess(fast.pixels(latents), output_type="pil")
        timings["decode"] = time.perf_counter() - t0
        return images
    vae = pipe.vae
    bf16 = fast.vae_decoder if fast is not None else None
    images = []
    for i in range(latents.shape[0]):  # one at a time: bounded memory for big batches
        lat = latents[i : i + 1].to(vae.dtype) / vae.config.scaling_factor
        pixels = bf16.decode(lat) if bf16 is not None else vae.decode(lat, return_dict=False)[0]
        images.extend(pipe.image_processor.postprocess(pixels, output_type="pil"))
    timings["decode"] = time.perf_counter() - t0
    return images
