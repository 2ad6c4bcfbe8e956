"""Cheap previews while an image forms: the best previewer a model has, never its full VAE.

Three previewers, picked once per loaded model by :func:`choose_previewer`:

1. a *trained preview decoder* shipped in the model's folder (``impasto.json``
   ``"preview_decoder": {"file": ...}``; the starter's is trained by
   ``impasto.backend.tooling.train_preview``): a tiny conv net that copies that
   model's VAE decode at full scale, within a few levels of colour;
2. *TAESD / TAESDXL*: a diffusers ``AutoencoderTiny`` folder the artist put in
   the models folder, used for models of its family (a folder name containing
   ``xl`` is TAESDXL, for SDXL models; any other is TAESD, for SD1.5 / SD2);
3. the *linear map* (below), always available: the fallback.

The linear map:

Decoding with the VAE costs about as much as several denoising steps; a 4->3
linear map (plus bias) applied per latent pixel costs nothing and is close
enough to show composition and colour while the image forms.  The map is
fitted once per loaded model by least squares on a few synthetic colour
images pushed through the model's own VAE encoder, so it works for SD1.5, the
starter model or anything else without hand-tuned coefficients.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .model_card import card_block
from .native import vae_scale_factor

PREVIEW_MAX_SIDE = 256
#: where a model folder keeps its trained preview decoder (named by impasto.json "preview_decoder")
PREVIEW_DECODER_FILE = "preview_decoder.safetensors"

log = logging.getLogger("impasto.engine")


@torch.no_grad()
def fit_latent_rgb(vae, device, dtype, size: int = 128, count: int = 6, seed: int = 0) -> torch.Tensor:
    """Least-squares (C+1)x3 matrix mapping scaled latents to RGB in [-1, 1]."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), np.float32)
    for i in range(count):
        images[i] = rng.uniform(-1, 1, 3)
        for _ in range(12):  # flat colour blocks: what a latent pixel mostly encodes
            x0, y0 = rng.integers(0, size - 16, 2)
            w, h = rng.integers(16, size // 2, 2)
            images[i, y0:y0 + h, x0:x0 + w] = rng.uniform(-1, 1, 3)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    factor = size // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(pixels.float(), factor)
    lat = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    rgb = target.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([lat, torch.ones(lat.shape[0], 1, device=lat.device)], dim=1)
    solution = torch.linalg.lstsq(design.cpu(), rgb.cpu()).solution
    return solution  # (C+1, 3) on CPU, float32


def latents_to_preview(latents: torch.Tensor, matrix: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """First image of a latent batch -> small RGBA PIL preview."""
    lat = latents[0].detach().float().cpu()
    c, h, w = lat.shape
    flat = lat.permute(1, 2, 0).reshape(-1, c)
    rgb = flat @ matrix[:c] + matrix[c]
    arr = ((rgb.reshape(h, w, 3).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    img = Image.fromarray(arr, "RGB")
    scale = min(8, max(1, max_side // max(h, w)))
    if scale > 1:
        img = img.resize((w * scale, h * scale), Image.BILINEAR)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    return img.convert("RGBA")


def _to_image(pixels: torch.Tensor, max_side: int) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGBA preview at the decode's size, shrunk to ``max_side`` if larger.

    Never upscaled: the decode is already at the picture's size (like the linear map's 8x upscale),
    and clients scale a preview to their canvas anyway - a bigger one would only cost bytes.
    """
    arr = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(arr, "RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    return img.convert("RGBA")


class LinearPreviewer:
    """The fallback: the least-squares latent->RGB map, one colour per latent pixel."""

    kind = "linear"

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix
        self.source = "linear map fitted on the model's VAE"

    def pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) scaled latents -> (N, 3, h, w) in [-1, 1] (one pixel per latent pixel)."""
        lat = latents.detach().float().cpu()
        c = lat.shape[1]
        rgb = lat.permute(0, 2, 3, 1) @ self.matrix[:c] + self.matrix[c]
        return rgb.permute(0, 3, 1, 2).clamp(-1, 1)

    def __call__(self, latents: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
        return latents_to_preview(latents, self.matrix, max_side)


class DecoderPreviewer:
    """A small decoder network (the model's trained preview decoder, or TAESD / TAESDXL)."""

    def __init__(self, kind: str, module: torch.nn.Module, source: str, device, dtype, divide_by: float = 1.0):
        self.kind = kind  # "trained" | "taesd"
        self.source = source
        self.device, self.dtype = device, dtype
        self.module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.divide_by = float(divide_by) or 1.0
        # may it paint final pictures (live jobs, fast_vae)?  TAESD: yes; a trained decoder: when its
        # training checked that it keeps shapes (impasto.json preview_decoder.for_pictures)
        self.for_pictures = kind == "taesd"

    @torch.no_grad()
    def pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) scaled latents -> (N, 3, 8h, 8w) in [-1, 1]."""
        lat = latents.detach().to(device=self.device, dtype=self.dtype) / self.divide_by
        out = self.module.decode(lat).sample if hasattr(self.module, "decode") else self.module(lat)
        return out.float().clamp(-1, 1)

    def __call__(self, latents: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
        return _to_image(self.pixels(latents[:1])[0], max_side)


def model_file(model_dir: Path, key: str, what: str) -> Optional[Path]:
    """The file a model folder's ``impasto.json`` names under ``key`` (``{"file": ...}``), or None.

    None when there is no such block, and (logged) when the name points outside the model folder:
    a model's own small nets (its preview decoder, its fast encoder) live inside it.
    """
    spec = card_block(model_dir, key)
    if not isinstance(spec.get("file"), str):
        return None
    path = (Path(model_dir) / spec["file"]).resolve()
    if Path(model_dir).resolve() not in path.parents:
        log.warning("%s %s is outside the model folder: ignored", what, spec["file"])
        return None
    return path


def _trained_decoder(model_dir: Path, latent_channels: int, device, dtype,
                     scale_factor: int = 8) -> Optional[DecoderPreviewer]:
    path = model_file(model_dir, "preview_decoder", "preview decoder")
    if path is None:
        return None
    from .preview_net import load_decoder

    try:
        module = load_decoder(path)
    except Exception as exc:  # a broken file must not stop the model loading: previews fall back
        log.warning("preview decoder %s unusable (%s): linear previews", path, exc)
        return None
    if module.config["latent_channels"] != latent_channels:
        log.warning("preview decoder %s reads %d latent channels, the VAE has %d: ignored", path,
                    module.config["latent_channels"], latent_channels)
        return None
    if module.scale_factor != scale_factor:   # made for another VAE: its previews would be the wrong size
        log.warning("preview decoder %s upsamples %dx, the VAE %dx: ignored", path, module.scale_factor, scale_factor)
        return None
    # the trained decoder is tiny: float32 wherever it runs (no half-precision drift in its colours)
    found = DecoderPreviewer("trained", module, str(path), device, torch.float32)
    found.for_pictures = card_block(model_dir, "preview_decoder").get("for_pictures") is True
    return found


def taesd_family(folder: Path) -> str:
    """``sdxl`` for a TAESDXL folder (its name contains "xl"), else ``sd15`` (TAESD also fits SD2)."""
    return "sdxl" if "xl" in folder.name.lower() else "sd15"


def taesd_factor(cfg: dict) -> int:
    """Pixels per latent cell of an ``AutoencoderTiny`` config: one upsampling per decoder block but the last."""
    blocks = cfg.get("decoder_block_out_channels") or (64, 64, 64, 64)
    return int(cfg.get("upsampling_scaling_factor", 2)) ** (len(blocks) - 1)


def find_taesd(models_dir: Optional[Path], family: str, latent_channels: int = 4,
               scale_factor: int = 8) -> Optional[Path]:
    """The first ``AutoencoderTiny`` folder in ``models_dir`` that fits ``family`` and the VAE's grid, or None."""
    if models_dir is None or not Path(models_dir).is_dir():
        return None
    want = "sdxl" if family == "sdxl" else "sd15"
    for child in sorted(Path(models_dir).iterdir()):
        cfg_path = child / "config.json"
        if not child.is_dir() or not cfg_path.is_file():
            continue
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            continue
        if cfg.get("_class_name") != "AutoencoderTiny" or int(cfg.get("latent_channels", 4)) != latent_channels:
            continue
        if taesd_factor(cfg) != scale_factor:   # TAESD is 8x; a finer-grid model's previews would be mis-sized
            continue
        if taesd_family(child) == want:
            return child
    return None


def choose_previewer(model_path, vae, device, dtype, family: str, models_dir: Optional[Path] = None):
    """The best previewer for a loaded model: trained decoder > TAESD/TAESDXL > linear map."""
    latent_channels, factor = int(vae.config.latent_channels), vae_scale_factor(vae.config)
    model_dir = Path(model_path)
    if model_dir.is_dir():
        found = _trained_decoder(model_dir, latent_channels, device, dtype, factor)
        if found is not None:
            return found
    folder = find_taesd(models_dir, family, latent_channels, factor)
    if folder is not None:
        try:
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny.from_pretrained(str(folder), local_files_only=True)
            return DecoderPreviewer("taesd", tiny, str(folder), device, dtype,
                                    divide_by=float(tiny.config.scaling_factor))
        except Exception as exc:
            log.warning("TAESD folder %s unusable (%s): linear previews", folder, exc)
    return LinearPreviewer(fit_latent_rgb(vae, device, dtype))
