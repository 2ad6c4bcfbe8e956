"""Mask-blended editing (inpainting) - Blended Latent Diffusion plus pixel paste-back.

One edit, start to finish:

1. the mask is grown/shrunk and feathered (:mod:`.masks`), around its
   bounding box only; an empty mask is a typed error;
2. the region to diffuse is chosen (:mod:`.region`: "only masked" context
   at the model's native resolution, or the whole picture);
3. the region is cropped, flattened over white and scaled to diffusion size;
   the masked area is filled per ``fill`` (:mod:`.fill`);
4. latents: the original region is encoded once; inside the latent mask the
   start latents come from the filled picture, outside from the original;
5. diffusers' inpaint pipeline (``StableDiffusionInpaintPipeline``, or the
   SDXL one for SDXL-family models) denoises (through
   :func:`.denoise.denoise`).  With a 4-channel UNet it *is* Blended Latent
   Diffusion: after every step the original latents, re-noised to the next
   timestep with the job's *fixed* noise, replace everything outside the
   latent mask, and the last step puts them back clean.  With a 9-channel
   inpainting UNet the same call runs the model's native path (mask and
   masked-image latents as extra input channels);
6. with ``colour_match`` (the default) the decoded region's colours are
   shifted towards the surroundings by a smooth field measured on a ring of
   pixels just outside the feathered mask (:mod:`.colour_match`), inside the
   feathered mask only;
7. the decoded region is scaled back and composited over the original
   through the feathered mask (:mod:`.paste`): pixels outside mask + feather
   band are bit-identical to the input, which the VAE round trip alone would
   not give.

The pipeline gets block-aligned masks and precomputed latents (its own
preprocessing would binarize and nearest-sample a soft mask, and encode the
picture once per batch image); see :func:`_denoise_region`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Tuple, Union

import numpy as np
import torch
from PIL import Image

from impasto.protocol.messages import ErrorCode, Generate

from . import colour_match, masks
from .common import job_seeds, nothing_to_do_warning, prompt_kwargs
from .control import bind
from .denoise import decode, denoise, generators
from . import fast_vae
from .encoding import encode_rgb
from .errors import EngineError
from .fill import NEUTRAL, apply_fill
from .gpu import configure_vae
from .hooks import JobHooks
from .images import to_rgba8, wire_array
from .paste import make_patch, paste
from .region import only_masked, whole_picture
from .runners import Output
from .strength import schedule

Picture = Union[Image.Image, np.ndarray]


def picture_to_array(image: Picture) -> np.ndarray:
    """Any PIL mode (or an HxWx4 uint8 array, used as is) -> RGBA uint8 array."""
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(to_rgba8(image), dtype=np.uint8)


def mask_to_array(mask: Picture) -> np.ndarray:
    """Any PIL mode (or an HxW uint8 array) -> uint8 mask (16-bit scaled; colour masks by luminance)."""
    if isinstance(mask, np.ndarray):
        return mask
    if mask.mode != "L":
        mask = to_rgba8(mask).convert("L")
    return np.asarray(mask, dtype=np.uint8)


def _resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A uint8 mask resized (bilinear, area-aware when shrinking) to float 0..1."""
    img = Image.fromarray(np.ascontiguousarray(mask), "L")
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _latent_cells(feathered: np.ndarray, size: Tuple[int, int], factor: int) -> np.ndarray:
    """Latent cells to regenerate: every cell whose canvas footprint holds a feathered pixel, plus a ring.

    Computed on canvas pixels (an OR over each cell's footprint), so even a
    one-pixel touch at a 64x downscale counts.  The extra ring of cells keeps
    the scaled-back result free of the original's VAE round trip under the
    faintest feather pixels (resampling filters reach a few pixels across a
    cell edge).
    """
    h, w = feathered.shape
    cols, rows = size[0] // factor, size[1] // factor
    x_starts = (np.arange(cols) * w) // cols
    y_starts = (np.arange(rows) * h) // rows
    touched = feathered > 0
    cells = np.logical_or.reduceat(np.logical_or.reduceat(touched, y_starts, axis=0), x_starts, axis=1)
    ring = cells.copy()
    ring[1:, :] |= cells[:-1, :]
    ring[:-1, :] |= cells[1:, :]
    cells = ring.copy()
    cells[:, 1:] |= ring[:, :-1]
    cells[:, :-1] |= ring[:, 1:]
    return cells


def _region_rgb(canvas: np.ndarray, box, size: Tuple[int, int]) -> np.ndarray:
    """The region flattened over white (diffusion sees no transparency), at diffusion size, float 0..255."""
    x0, y0, x1, y1 = box
    crop = Image.fromarray(np.ascontiguousarray(canvas[y0:y1, x0:x1]), "RGBA")
    if crop.getextrema()[3][0] < 255:
        white = Image.new("RGBA", crop.size, (255, 255, 255, 255))
        white.alpha_composite(crop)
        crop = white
    rgb = crop.convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.LANCZOS)
    return np.asarray(rgb, dtype=np.float32)


def _denoise_region(loaded, rgb: np.ndarray, weight: np.ndarray, cells: np.ndarray, req: Generate,
                    seeds: List[int], num_steps: int, hooks: JobHooks, timings: Dict[str, float],
                    info: Dict[str, object], control=None) -> Tuple[List[Image.Image], int]:
    """Diffuse one region (``rgb`` at diffusion size): (decoded images, steps run)."""
    pipe = loaded.inpaint
    dev, dtype, vae = loaded.choice.device, loaded.choice.dtype, pipe.vae
    h, w = rgb.shape[:2]
    if configure_vae(vae, w, h):   # a whole-picture edit of a big canvas: encode and decode tile by tile
        info["vae_tiled"] = True
    t0 = time.perf_counter()
    fast = fast_vae.for_job(loaded, req, hooks, info)
    original = fast_vae.encode(vae, rgb, dev, dtype, fast)
    cell_t = torch.from_numpy(cells.astype(np.float32))[None, None].to(dev, dtype)
    if req.fill == "original":
        start = original.repeat(len(seeds), 1, 1, 1)
    else:
        fills = [apply_fill(rgb, weight, req.fill, seed) for seed in (seeds if req.fill == "noise" else seeds[:1])]
        filled = torch.cat([fast_vae.encode(vae, f, dev, dtype, fast) for f in fills])
        filled = filled.repeat(len(seeds) // filled.shape[0], 1, 1, 1)
        # inside the latent mask diffusion starts from the fill; outside the
        # pipeline blends back these latents, which must be the original's
        start = cell_t * filled + (1 - cell_t) * original
    pixel_cells = masks.cells_to_pixels(cells, pipe.vae_scale_factor)
    if loaded.inpaint_unet:  # the UNet sees the picture with the regenerated cells greyed out
        masked = np.where(pixel_cells[..., None] > 0, np.float32(NEUTRAL), rgb)
        masked_latents = encode_rgb(vae, masked, dev, dtype)
    else:  # a 4-channel UNet never reads them: zeros spare the pipeline a VAE encode
        masked_latents = torch.zeros_like(original)
    timings["encode"] = time.perf_counter() - t0
    out, steps = denoise(
        pipe, loaded, req.sampler, hooks, timings, control=control, live=bool(getattr(req, "live", False)), info=info,
        image=start, mask_image=Image.fromarray(pixel_cells, "L"), masked_image_latents=masked_latents,
        height=h, width=w, strength=req.strength, num_inference_steps=num_steps,
        generator=generators(seeds), **prompt_kwargs(req, len(seeds), pipe, loaded, info), **loaded.size_conditioning(w, h),
    )
    info["latent_shape"] = list(out.shape)
    return decode(pipe, out, timings, fast), steps


def edit_pictures(loaded, image: Picture, mask: Picture, req: Generate, seeds: List[int],
                  hooks: JobHooks) -> Output:
    """Edit ``image`` (any PIL mode) where ``mask`` (any mode, same size) says; see the module doc."""
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    canvas, mask_arr = picture_to_array(image), mask_to_array(mask)
    height, width = canvas.shape[:2]
    if mask_arr.shape != (height, width):
        raise EngineError(ErrorCode.BAD_FIELD, f"mask: size {mask_arr.shape[1]}x{mask_arr.shape[0]} differs from "
                                               f"the image's {width}x{height}", "mask")
    prepared = masks.prepare(mask_arr, req.grow, req.mask_blur)
    fx0, fy0, fx1, fy1 = prepared.feathered_bbox
    factor = loaded.base.vae_scale_factor
    if req.whole_picture:
        region = whole_picture((width, height), loaded)
    else:
        region = only_masked(prepared.feathered_bbox, (width, height), req.padding, loaded.entry.native_size,
                             loaded.entry.max_size, factor)
    num_steps, expected = schedule(req.steps, req.strength, req.sampler)
    info: Dict[str, object] = {
        "strength": req.strength, "schedule_steps": num_steps, "fill": req.fill,
        "mask_bbox": [fx0, fy0, fx1 - fx0, fy1 - fy0],
        "region": [region.box[0], region.box[1], region.width, region.height],
        "diffusion_size": list(region.size), "latent_size": [region.size[0] // factor, region.size[1] // factor],
        "whole_picture": bool(req.whole_picture), "inpaint_unet": bool(loaded.inpaint_unet),
    }
    if expected == 0:
        hooks.warn(nothing_to_do_warning(req))
        return Output(images=[canvas.copy() for _ in seeds], seeds=seeds, steps=0, timings=timings, info=info)

    x0, y0, x1, y1 = region.box
    rgb = _region_rgb(canvas, region.box, region.size)
    weight = _resize_mask(prepared.crop(region.box, "grown"), region.size)
    cells = _latent_cells(prepared.crop(region.box, "feathered"), region.size, factor)
    info["regenerated_cells"] = int(cells.sum())
    timings["prepare"] = time.perf_counter() - t0

    decoded, steps = _denoise_region(loaded, rgb, weight, cells, req, seeds, num_steps, hooks, timings, info,
                                     control=bind(hooks, region.size, region.box))

    t0 = time.perf_counter()
    alpha = prepared.crop((fx0, fy0, fx1, fy1), "feathered")
    region_alpha = prepared.crop(region.box, "feathered") if req.colour_match else None
    images, patches, matched = [], [], []
    for im in decoded:
        if im.size != (region.width, region.height):
            im = im.resize((region.width, region.height), Image.LANCZOS)
        new = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if region_alpha is not None:
            new, done = colour_match.match(new, canvas[y0:y1, x0:x1], region_alpha)
            matched.append(done)
        new = new[fy0 - y0: fy1 - y0, fx0 - x0: fx1 - x0]
        patch = make_patch(new, alpha)
        patches.append((fx0, fy0, patch))
        images.append(paste(canvas, patch, fx0, fy0))
    info["colour_match"] = matched_info(matched) if req.colour_match else {"applied": False, "reason": "off"}
    timings["paste"] = time.perf_counter() - t0
    return Output(images=images, seeds=seeds, patches=patches, steps=steps, timings=timings, info=info)


def matched_info(matched: List[Dict[str, object]]) -> Dict[str, object]:
    """One ``Result.info["colour_match"]`` for a batch: per-image shifts, applied if any image was."""
    out: Dict[str, object] = {"applied": any(m["applied"] for m in matched), "ring_px": matched[0]["ring_px"]}
    if out["applied"]:
        out["seam_shift"] = [m.get("seam_shift") for m in matched]  # per image: mean [r, g, b] on the seam
        out["max_shift"] = [m.get("max_shift") for m in matched]
        out["seam_step_before"] = [m.get("ring_error_before") for m in matched]
    else:
        out["reason"] = matched[0]["reason"]
    return out


def run(engine, loaded, req: Generate, hooks: JobHooks) -> Output:
    return edit_pictures(loaded, wire_array(req.init_image), wire_array(req.mask), req, job_seeds(req), hooks)


def whole_picture_request(req: Generate) -> Generate:
    """``req`` as an edit of the whole picture with a fully white, unfeathered mask."""
    return dataclasses.replace(req, whole_picture=True, grow=0, mask_blur=0, fill="original",
                               colour_match=False)  # nothing around a full mask to match

