"""The model's fast autoencoder, for jobs where speed beats the last level of colour: live painting.

A live job on the starter spent a third of its time in the VAE (encoding the canvas, then
decoding the result: about as much as three of its four denoising steps at one thread).
Every model the engine loads already has a small decoder for previews (:mod:`.preview`):
its own *trained preview decoder* (the starter's copies its VAE's decode within about two
levels of colour) or the artist's TAESD / TAESDXL.  A job that asks for the fast
autoencoder is decoded by that network instead of the VAE - what StreamDiffusion does with
TAESD for its real-time pictures - and encoded by its partner when there is one: TAESD's
own encoder, or the model's *trained fast encoder* (``impasto.json`` ``"fast_encoder":
{"file": ...}``; the starter's is trained by ``impasto.backend.tooling.train_fast_encoder``).

Who asks: ``Generate.fast_vae``.  ``None`` (the default) means *on for live jobs* (the live
result is the preview: the artist keeps it or paints on) and *off for every other job*;
``True`` / ``False`` say so for any job.  A model whose only previewer is the linear map
has no fast decoder: its jobs decode with the VAE, and a job that asked for ``fast_vae``
explicitly is told so.  The result's ``info["vae"]`` names what encoded and decoded it.

A trained preview decoder paints the final picture only when its training checked that it
keeps shapes (``impasto.json`` ``"preview_decoder": {"for_pictures": true}``, written by
``train_preview`` when the strict judges accept its decodes of held-out scenes wherever
they accept the VAE's, within 10 %).  Colour error alone hid a decoder two levels off on
average that rounded every corner: live pictures of diamonds and rectangles came out as
blobs.  Otherwise a fast job is *encoded* fast and *decoded* by the VAE - in bfloat16 on a
CPU where that measured clearly faster and as good (:mod:`.vae_bf16`), as it also is for a
fast job on a model with no fast decoder at all.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

from .encoding import encode_rgb
from .hooks import JobHooks

#: where a model folder keeps its trained fast encoder (named by impasto.json "fast_encoder")
FAST_ENCODER_FILE = "fast_encoder.safetensors"
NO_FAST = "this model has no fast decoder "

log = logging.getLogger("impasto.engine")


@dataclass
class FastVAE:
    """What a fast job decodes (and, when ``encoder`` is set, encodes) with."""

    decoder: Optional[object]                            # a :class:`.preview.DecoderPreviewer`; None: the VAE
    encoder: Optional[Callable[[torch.Tensor], torch.Tensor]] = None   # [-1, 1] pixels -> scaled latents
    device: Optional[torch.device] = None                # where the encoder runs
    vae_decoder: Optional[object] = None                 # when the VAE decodes: its :class:`.vae_bf16.Bf16Decoder`

    def pixels(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder.pixels(latents)


def wanted(req) -> bool:
    """Whether ``req`` asks for the fast autoencoder (``fast_vae``; unset: live jobs only)."""
    fast = getattr(req, "fast_vae", None)
    return bool(getattr(req, "live", False)) if fast is None else bool(fast)


def for_job(loaded, req, hooks: JobHooks, info: Dict[str, object]) -> Optional[FastVAE]:
    """The fast autoencoder ``req`` runs with, or None (the VAE encodes and decodes)."""
    if not wanted(req):
        return None
    previewer = getattr(loaded, "previewer", None)
    kind = getattr(previewer, "kind", "linear")
    if kind == "trained":
        encoder = getattr(loaded, "fast_encoder", None)
        if not getattr(previewer, "for_pictures", False):
            if encoder is None:
                return _vae_decodes(loaded, info, "")
            return _vae_decodes(loaded, info, "fast: the model's trained fast encoder; decoded by the VAE (its "
                                "preview decoder is for previews only)", encoder, previewer.device)
        info["vae"] = "fast: the model's trained preview decoder" + (" and fast encoder" if encoder else "")
        return FastVAE(previewer, encoder, previewer.device)
    if kind == "taesd":
        info["vae"] = "fast: TAESD"
        module = previewer.module
        return FastVAE(previewer, lambda x: module.encode(x.to(previewer.dtype)).latents.float() * previewer.divide_by,
                       previewer.device)
    if getattr(req, "fast_vae", None) and not any(w.startswith(NO_FAST) for w in hooks.warnings):
        hooks.warn(NO_FAST + "(no trained preview decoder, no TAESD in the models folder): "
                   "the full VAE decoded the picture")
    return _vae_decodes(loaded, info, "")


def _vae_decodes(loaded, info: Dict[str, object], what: str, encoder=None, device=None) -> Optional[FastVAE]:
    """A fast job the VAE decodes: in bfloat16 where that pays (:mod:`.vae_bf16`), else as for any job."""
    from . import vae_bf16

    bf16 = vae_bf16.for_model(loaded) if hasattr(loaded, "base") else None
    if bf16 is not None:
        what = (what + "; " if what else "the VAE, ") + "decoded in bfloat16 (measured faster on this CPU: " + \
            vae_bf16.decision(loaded).why + ")"
    if what:
        info["vae"] = what
    if encoder is None and bf16 is None:
        return None
    return FastVAE(None, encoder, device, vae_decoder=bf16)


@torch.no_grad()
def encode(vae, rgb: np.ndarray, device, dtype, fast: Optional[FastVAE]) -> torch.Tensor:
    """Scaled latents (1, C, H/f, W/f) of ``rgb`` (HxWx3, 0..255): the fast encoder's when there is one."""
    if fast is None or fast.encoder is None:
        return encode_rgb(vae, rgb, device, dtype)
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    x = (x / 127.5 - 1.0).to(device=fast.device)
    return fast.encoder(x).to(device=device, dtype=dtype)


def load_encoder(model_dir, latent_channels: int, device,
                 scale_factor: int = 8) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The model folder's trained fast encoder as a callable, or None (none named, or unusable: logged)."""
    from .preview import model_file

    path = model_file(model_dir, "fast_encoder", "fast encoder")
    if path is None:
        return None
    from .preview_net import load_encoder as load_net

    try:
        module = load_net(path)
    except Exception as exc:  # a broken file must not stop the model loading: the VAE encodes
        log.warning("fast encoder %s unusable (%s): the VAE encodes live jobs", path, exc)
        return None
    if module.config["latent_channels"] != latent_channels:
        log.warning("fast encoder %s gives %d latent channels, the VAE has %d: ignored", path,
                    module.config["latent_channels"], latent_channels)
        return None
    if module.scale_factor != scale_factor:   # made for another VAE: latents of the wrong size
        log.warning("fast encoder %s downsamples %dx, the VAE %dx: ignored", path, module.scale_factor, scale_factor)
        return None
    # tiny: float32 wherever it runs, like the trained preview decoder
    module = module.to(device=device, dtype=torch.float32).requires_grad_(False)
    return lambda x: module(x.float())
