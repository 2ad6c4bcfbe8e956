"""``impasto img2img`` and ``impasto edit``: rework or inpaint a picture file from the shell.

Both read any picture file Pillow opens (PNG, JPEG, TIFF, WebP...; RGB,
RGBA, grey, palette, 16-bit), turn it into 8-bit RGBA for the wire and leave
all the work to the daemon.  Masks are read as grey (white = change); a mask
file whose colour is flat but whose transparency varies - a selection saved
as a transparent PNG - is read from its alpha channel.

This module must stay light: no torch, no engine import (the CLI is a client).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List

import numpy as np

from impasto.protocol import planner
from impasto.protocol.messages import FILL_MODES, Image as WireImage, Patch, Result
from impasto.protocol.settings import FILL_HINTS
from impasto.protocol.region import crop_bytes, paste_bytes
from impasto.backend import cli as _cli
CliError, DEFAULTS, plan, run_request, save_result = (
    _cli.CliError, _cli.DEFAULTS, _cli.plan, _cli.run_request, _cli.save_result)


# --------------------------------------------------------------------------- reading files


def _open(path: str):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise CliError(f"{path}: not a picture Pillow can read ({exc})") from None
    return ImageOps.exif_transpose(img)  # photos shot sideways arrive upright


def _to_8bit(img):
    """16-bit and float single-channel pictures scaled to 8 bits (PIL's convert clips them)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        else:
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img


def read_picture(path: str) -> WireImage:
    """Any picture file -> RGBA8 wire image."""
    img = _to_8bit(_open(path))
    img = img.convert("RGBA")
    return WireImage(width=img.width, height=img.height, data=img.tobytes(), format="rgba8")


def read_mask(path: str) -> WireImage:
    """Any picture file -> gray8 wire mask (white = change; see the module doc for alpha masks)."""
    img = _to_8bit(_open(path))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        grey = np.asarray(rgba.convert("L"))
        alpha = np.asarray(rgba)[..., 3]
        if grey.min() == grey.max() and alpha.min() != alpha.max():
            mask = alpha
        else:
            mask = grey
    else:
        mask = np.asarray(img.convert("L"))
    h, w = mask.shape
    return WireImage(width=w, height=h, data=np.ascontiguousarray(mask, np.uint8).tobytes(), format="gray8")


# --------------------------------------------------------------------------- output


def save_patches(result: Result, out: str) -> List[Path]:
    """Write each edit's changed region as an RGBA PNG (alpha = feathered mask)."""
    from PIL import Image

    paths = []
    for i, patch in enumerate(result.patches):
        path = Path(out)
        if len(result.patches) > 1:
            path = path.with_name(f"{path.stem}-{i + 1}{path.suffix or '.png'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.frombytes("RGBA", (patch.image.width, patch.image.height), patch.image.data)
        tmp = path.with_name(path.name + ".part")
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
        print(f"{path}  patch at {patch.x},{patch.y}  {patch.image.width}x{patch.image.height}")
        paths.append(path)
    return paths


def _report(result: Result, quiet: bool) -> None:
    if quiet:
        return
    info = result.info
    parts = [f"{result.steps_run} steps"]
    if "region" in info and "diffusion_size" in info:
        x, y, w, h = info["region"]
        dw, dh = info["diffusion_size"]
        parts.append(f"diffused {w}x{h} at {x},{y} as {dw}x{dh}")
    elif "diffusion_size" in info:
        dw, dh = info["diffusion_size"]
        parts.append(f"diffused at {dw}x{dh}")
    print("  ".join(parts), file=sys.stderr)


# --------------------------------------------------------------------------- commands


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"strength {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"strength {value:g} must be within 0..1 (1 = repaint fully)")
    return value


def cmd_img2img(args) -> int:
    image = read_picture(args.image)
    job = plan(args, (image.width, image.height), planner.REFINE, rgba=image.data)
    result = run_request(args, job.request)
    _report(result, args.quiet)
    save_result(result, args.output, args)
    return 0


def edit_plan(args, image: WireImage, mask: WireImage) -> planner.JobPlan:
    """The planner's edit of the picture file: only the window around the mask is sent."""
    if (image.width, image.height) != (mask.width, mask.height):
        raise CliError(f"the mask {args.mask} is {mask.width}x{mask.height} but the picture {args.image} is "
                       f"{image.width}x{image.height}: they must be the same size")
    size = (image.width, image.height)
    box = planner.mask_box(mask.data, *size)
    if box is None:
        raise CliError(f"the mask is empty (all black in {args.mask}): paint white where the picture should change")
    window = planner.window_for(size, box, _cli.settings_from_args(args), planner.INPAINT)
    return plan(args, size, planner.INPAINT, window, crop_bytes(image.data, image.width, window, 4),
                crop_bytes(mask.data, mask.width, window, 1))


def on_picture(job: planner.JobPlan, image: WireImage, result: Result) -> Result:
    """The daemon's answer for the sent window, put back into the whole picture (patches in its coordinates)."""
    x0, y0, x1, y1 = job.window
    if (x0, y0, x1, y1) == (0, 0, image.width, image.height):
        return result
    images = []
    for part in result.images:
        full = bytearray(image.data)
        paste_bytes(full, image.width, job.window, part.data, 4)
        images.append(WireImage(image.width, image.height, bytes(full), "rgba8"))
    patches = [Patch(x=p.x + x0, y=p.y + y0, image=p.image) for p in result.patches]
    info = dict(result.info)
    if "region" in info:
        rx, ry, rw, rh = info["region"]
        info["region"] = [rx + x0, ry + y0, rw, rh]
    return Result(job=result.job, images=images, seeds=result.seeds, patches=patches, steps_run=result.steps_run,
                  timings=result.timings, warnings=result.warnings, info=info)


def cmd_edit(args) -> int:
    image, mask = read_picture(args.image), read_mask(args.mask)
    job = edit_plan(args, image, mask)
    result = on_picture(job, image, run_request(args, job.request))
    _report(result, args.quiet)
    save_result(result, args.output, args)
    if args.patch:
        save_patches(result, args.patch)
    return 0


def register(sub, add_common) -> None:
    from impasto.backend.cli_control import add_options as add_control_options

    p = sub.add_parser("img2img", help="rework a whole picture at a denoising strength",
                       description="Rework IMAGE guided by PROMPT. The result has IMAGE's size.")
    p.add_argument("image", help="picture file (any format and mode Pillow reads)")
    add_common(p)
    p.add_argument("--strength", type=_strength, default=DEFAULTS.strength,
                   help=f"denoising strength 0..1: 0 keeps the picture, 1 repaints it fully "
                        f"(default {DEFAULTS.strength:g})")
    add_control_options(p)
    p.set_defaults(func=cmd_img2img)

    p = sub.add_parser("edit", help="repaint the masked part of a picture (inpainting)",
                       description="Repaint where MASK is white (grey = partly). Pixels outside the mask and its "
                                   "feather band stay bit-identical.")
    p.add_argument("image", help="picture file (any format and mode Pillow reads)")
    p.add_argument("mask", help="mask file, same size: white = change, black = keep, grey = partly")
    add_common(p)
    p.add_argument("--strength", type=_strength, default=DEFAULTS.strength,
                   help=f"denoising strength 0..1 (default {DEFAULTS.strength:g}; 1 ignores what is under the mask)")
    p.add_argument("--mask-blur", type=int, default=DEFAULTS.mask_blur,
                   help=f"feather the mask edge by this many px (default {DEFAULTS.mask_blur})")
    p.add_argument("--grow", type=int, default=DEFAULTS.grow, help="grow the mask by px first (negative shrinks)")
    p.add_argument("--padding", type=int, default=DEFAULTS.padding,
                   help=f"context around the mask, px, for the only-masked region (default {DEFAULTS.padding})")
    p.add_argument("--fill", choices=FILL_MODES, default=DEFAULTS.fill,
                   help=f"what the masked area holds before diffusion (default {DEFAULTS.fill}): "
                        + "; ".join(f"{m} - {FILL_HINTS[m][0].lower()}{FILL_HINTS[m][1:]}"  # the clients' hover help
                                    for m in FILL_MODES))
    p.add_argument("--whole-picture", action="store_true",
                   help="diffuse the whole picture instead of only the region around the mask")
    p.add_argument("--no-colour-match", dest="colour_match", action="store_false", default=DEFAULTS.colour_match,
                   help="paste the new pixels as diffusion made them (default: shift their colours to meet "
                        "the surroundings at the seam; pixels outside the mask stay untouched either way)")
    p.add_argument("--patch", default=None, metavar="PNG",
                   help="also write the changed region as an RGBA PNG (alpha = feathered mask) and print "
                        "where it goes")
    add_control_options(p)
    p.set_defaults(func=cmd_edit)


_cli.EXTRA_COMMANDS.append(register)
