"""Prior-preservation pictures: what the base model makes of the class prompts.

DreamBooth keeps a model from forgetting its class ("shape", "dog") by
training, next to the artist's pictures, on pictures the *base* model
generates for the class prompts.  They cost real generation time, so they
are cached in ``IMPASTO_HOME/cache/class_images/<model fingerprint>/<size>/``
keyed by prompt and generation settings: the second concept of the same
class on the same model starts training at once.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import List, Sequence, Tuple

import torch
from PIL import Image

from impasto.backend.engine.denoise import generators
from impasto.backend.engine.models import impasto_home
from impasto.backend.engine.samplers import make_scheduler

CLASS_SAMPLER = "ddim"
CLASS_STEPS = 25
CLASS_CFG = 7.0


def cache_dir(loaded, resolution: int, prompt: str) -> Path:
    key = hashlib.sha256(f"{prompt}|{CLASS_SAMPLER}|{CLASS_STEPS}|{CLASS_CFG}".encode()).hexdigest()[:16]
    return impasto_home() / "cache" / "class_images" / loaded.fingerprint / f"{resolution}px" / key


def _seed(prompt: str, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{prompt}#{i}".encode()).digest()[:4], "little")


def _save_png(img: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.part")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def generate(loaded, prompts: Sequence[str], seeds: Sequence[int], resolution: int, hooks) -> List[Image.Image]:
    """Base-model pictures (the caller makes sure no adapter is active)."""
    pipe = loaded.txt2img
    pipe.scheduler = make_scheduler(CLASS_SAMPLER, loaded.scheduler_config)

    def on_step(p, i, t, kw):
        hooks.check()
        return {}

    with torch.inference_mode():
        out = pipe(prompt=list(prompts), num_inference_steps=CLASS_STEPS, guidance_scale=CLASS_CFG,
                   width=resolution, height=resolution, generator=generators(list(seeds)), output_type="pil",
                   callback_on_step_end=on_step)
    return list(out.images)


def ensure(loaded, wanted: Sequence[Tuple[str, int]], resolution: int, hooks, batch: int = 4) -> List[Image.Image]:
    """``count`` pictures for each ``(prompt, count)``: cached ones reused, the rest made.

    Progress is reported as stage ``"class images"``; cancel is honoured
    between denoising steps (what was finished stays cached).
    """
    total = sum(c for _, c in wanted)
    todo: List[Tuple[Path, str, int]] = []
    found: List[Tuple[Path, Image.Image]] = []
    for prompt, count in wanted:
        folder = cache_dir(loaded, resolution, prompt)
        for i in range(count):
            path = folder / f"{i:04d}.png"
            img = None
            if path.is_file():
                try:
                    with Image.open(path) as im:
                        img = im.convert("RGB")
                except OSError:
                    img = None
            if img is not None and img.size == (resolution, resolution):
                found.append((path, img))
            else:
                todo.append((path, prompt, i))
    done = len(found)
    hooks.progress(done, total, None, None, "class images")
    made: List[Tuple[Path, Image.Image]] = []
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        images = generate(loaded, [p for _, p, _ in chunk], [_seed(p, i) for _, p, i in chunk], resolution, hooks)
        for (path, prompt, _), img in zip(chunk, images):
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (path.parent / "prompt.txt").exists():
                (path.parent / "prompt.txt").write_text(prompt + "\n", encoding="utf-8")
            try:
                _save_png(img, path)
            except OSError:
                pass  # a cache that can't be written only costs time next run
            made.append((path, img))
        done += len(chunk)
        preview = images[-1] if getattr(hooks, "want_preview", False) else None
        hooks.progress(done, total, preview, None, "class images")
    by_path = dict(found + made)
    ordered = []
    for prompt, count in wanted:
        folder = cache_dir(loaded, resolution, prompt)
        ordered.extend(by_path[folder / f"{i:04d}.png"] for i in range(count))
    return ordered
