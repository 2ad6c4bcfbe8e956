"""Helpers every job runner shares: seeds, prompt arguments, sizes and the size note, the "nothing to do" note.

They lived in whichever runner first needed them (``prompt_kwargs`` in
img2img, ``diffusion_size`` in txt2img), which made the runners import each
other; here they have one home that imports no runner.
"""
from __future__ import annotations

import secrets
from typing import Dict, List, Tuple


def job_seeds(req) -> List[int]:
    """Image i of a batch uses seed + i; -1 asks for a fresh random seed."""
    base = req.seed if req.seed >= 0 else secrets.randbelow(2**32)
    return [base + i for i in range(req.batch_size)]


def prompt_kwargs(req, batch: int, pipe=None, loaded=None, info=None) -> Dict[str, object]:
    """The prompt, negative prompt and CFG scale for a batch, as the pipelines take them.

    A live job (``req.live``) takes the embeddings of an unchanged prompt from
    :mod:`.prompt_cache` (``info["prompt_cache"]`` says hit or miss).

    A prompt with weights (``(word:1.3)``, ``[word]``, ``BREAK``...) or longer
    than one 75-token chunk goes to ``pipe`` as embeddings built by
    :mod:`.prompts` (both prompts then, so their lengths match); a plain one
    goes as the strings, exactly as before.
    """
    from . import prompts

    if getattr(req, "live", False) and pipe is not None and loaded is not None:
        from . import prompt_cache

        return prompt_cache.prompt_kwargs(pipe, loaded, req, batch, info if info is not None else {})
    if pipe is not None and prompts.needed(pipe, req.prompt, req.negative_prompt):
        return dict(guidance_scale=req.cfg_scale,
                    **prompts.embeddings(pipe, req.prompt, req.negative_prompt, batch))
    return dict(
        prompt=[req.prompt] * batch,
        negative_prompt=[req.negative_prompt] * batch if req.negative_prompt else None,
        guidance_scale=req.cfg_scale,
    )


def nothing_to_do_warning(req) -> str:
    return (f"denoising strength {req.strength:g} is too low to run a single step: the picture is returned "
            f"unchanged")


def round_to(value: float, mult: int) -> int:
    return max(mult, int(round(value / mult)) * mult)


def diffusion_size(width: int, height: int, loaded) -> Tuple[int, int]:
    """The size the model actually diffuses at for an asked ``width`` x ``height``.

    Rounded to the VAE's multiple of 8.  A model with a small ``max_size``
    (the starter, 64 px native) diffuses at most that large and the result is
    upscaled: its UNet never saw larger scenes and would tile them.  Native
    area and aspect buckets (SDXL) are :mod:`.native`'s business, applied by
    txt2img on top of this.
    """
    limit = loaded.entry.max_size
    if limit and max(width, height) > limit:
        scale = limit / max(width, height)
        width, height = width * scale, height * scale
    mult = loaded.base.vae_scale_factor
    return round_to(width, mult), round_to(height, mult)


def size_note(w: int, h: int, width: int, height: int, loaded, bucketed: bool = False, small: bool = False) -> str:
    """What the artist is told when the picture was not painted at the size they asked for."""
    side = loaded.entry.native_size
    if bucketed:
        why = "the nearest aspect bucket at the model's native area"
    elif small:
        why = "the asked size is under a quarter of the model's native area, too small for it to compose a " \
              "picture; same aspect at the native area"
    elif loaded.entry.max_size and max(width, height) > loaded.entry.max_size:
        why = f"this model paints at most {loaded.entry.max_size} px"
    else:
        why = "the model works in multiples of 8 px"
    return (f"size changed: painted at {w}x{h} ({why}; native {side}x{side}) and resized to "
            f"{width}x{height}")


def picture_size(req, loaded, hooks, info: Dict[str, object]) -> Tuple[int, int]:
    """The size a text-to-image picture is diffused at, said to the artist before the first step.

    One rule for txt2img and its Prompt-to-Prompt edits (an edit repaints its
    original at the size the original was painted): the model's multiple of 8
    and ``max_size``, SDXL's aspect buckets, and the model's native area for
    a size under a quarter of it.  ``info`` gets ``native`` and ``diffusion_size``.
    """
    from . import native

    w, h = diffusion_size(req.width, req.height, loaded)
    bucket = native.plan(req.width, req.height, loaded.family, loaded.entry.native_size,
                         loaded.base.vae_scale_factor)
    small = None
    if bucket is None:
        small = native.area_plan(req.width, req.height, loaded.entry.native_size, loaded.base.vae_scale_factor,
                                 loaded.entry.max_size, diffused=(w, h))
    if bucket is not None or small is not None:
        w, h = (bucket or small)["generated"]   # type: ignore[index]
        info["native"] = bucket or small
    info["diffusion_size"] = [w, h]
    if (w, h) != (req.width, req.height):
        hooks.warn(size_note(w, h, req.width, req.height, loaded, bucket is not None, small is not None))
    return w, h
