"""Text embeddings of an unchanged prompt, kept between live jobs.

Live painting repaints the canvas after every stroke with the same prompt;
running the text encoder(s) again each time is pure waste (one CLIP-L pass per
prompt and per negative prompt, two encoders for SDXL: a few ms on a GPU, more
on a CPU - a noticeable share of a 4-step job).  Live jobs therefore take their
embeddings from here.

What a key holds - everything that changes the embeddings: the prompt and
negative prompt, the batch size, whether CFG runs (a negative is encoded only
then), and the concept adapters active on the model (a concept may carry a
text-encoder LoRA or a trigger-word embedding; adapter names are unique per
load, so a concept replaced under the same name is a new key).  The cache
lives on the loaded model, so another model never sees it and it goes when
the model is unloaded.  Small LRU: a live session uses one or two prompts.

The embeddings are what the pipeline would have computed itself from the
strings (the same ``encode_prompt`` call, or :mod:`.prompts` for weighted
prompts), so a live job paints bit-identically to the same job sent
without ``live`` (and the same ``fast_vae``: a live job decodes with the
model's fast autoencoder by default, :mod:`.fast_vae`) -
``tests/test_live_daemon.py`` checks it.
"""
from __future__ import annotations

import collections
from typing import Any, Dict, Tuple

import torch

MAX_ENTRIES = 8


def _cache(loaded) -> "collections.OrderedDict":
    cache = getattr(loaded, "_prompt_cache", None)
    if cache is None:
        cache = loaded._prompt_cache = collections.OrderedDict()
    return cache


def _adapters_key(loaded) -> Tuple:
    try:
        from impasto.backend.concepts import adapters
    except ImportError:  # pragma: no cover - concepts ship with the engine
        return ()
    return tuple(sorted(adapters.state_for(loaded).active.items()))


def do_cfg(pipe, cfg_scale: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (diffusers' own rule)."""
    return cfg_scale > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


@torch.no_grad()
def _encode(pipe, req, batch: int, cfg: bool) -> Dict[str, Any]:
    from . import prompts

    if prompts.needed(pipe, req.prompt, req.negative_prompt):
        return prompts.embeddings(pipe, req.prompt, req.negative_prompt, batch)
    negative = [req.negative_prompt] * batch if req.negative_prompt else None
    out = pipe.encode_prompt(prompt=[req.prompt] * batch, device=pipe._execution_device, num_images_per_prompt=1,
                             do_classifier_free_guidance=cfg, negative_prompt=negative)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return {k: v for k, v in zip(names, out) if v is not None}


def prompt_kwargs(pipe, loaded, req, batch: int, info: Dict[str, object]) -> Dict[str, Any]:
    """The pipeline's prompt arguments as embeddings, from the cache when the prompt is unchanged."""
    cfg = do_cfg(pipe, req.cfg_scale)
    key = (req.prompt, req.negative_prompt, batch, cfg, loaded.family, _adapters_key(loaded))
    cache = _cache(loaded)
    hit = key in cache
    if hit:
        cache.move_to_end(key)
        embeds = cache[key]
    else:
        embeds = _encode(pipe, req, batch, cfg)
        cache[key] = embeds
        while len(cache) > MAX_ENTRIES:
            cache.popitem(last=False)
    info["prompt_cache"] = "hit" if hit else "miss"
    return dict(guidance_scale=req.cfg_scale, **embeds)
