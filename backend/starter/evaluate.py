"""Evaluation of a starter-domain diffusers model.

* attribute accuracy: images generated with ``StableDiffusionPipeline`` for
  domain prompts are judged by :mod:`.detector` (shape, fg, bg, all);
* a Fréchet distance ("FD-13") between model images and generator images on a
  small fixed feature vector per image: the 8-bin palette histogram (fraction
  of pixels nearest each palette colour), solidity and roundness of the
  foreground mask, foreground area fraction, and the mask centroid (x, y).
  The baseline is the same distance between two independent generator sets of
  the same size; the closer a model's FD is to the baseline, the better.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from impasto.backend.engine.model_card import native_size

from . import domain as D
from .detector import analyse, judge

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
}


def features(img) -> np.ndarray:
    r = analyse(img)
    from .detector import _nearest, _to_array

    lab = _nearest(_to_array(img))
    hist = np.bincount(lab.ravel(), minlength=len(D.COLOR_NAMES)) / lab.size
    mask = r["mask"]
    if mask.any():
        ys, xs = np.nonzero(mask)
        cx, cy = xs.mean() / mask.shape[1], ys.mean() / mask.shape[0]
    else:
        cx = cy = 0.5
    return np.concatenate([hist, [r["solidity"], r["roundness"], r["fg_fraction"], cx, cy]]).astype(np.float64)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1 = np.cov(f1, rowvar=False)
    s2 = np.cov(f2, rowvar=False)
    r1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def load_pipeline(model_dir, scheduler: str = "ddim"):
    import diffusers
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False)
    cls = getattr(diffusers, SCHEDULERS.get(scheduler, scheduler))
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(pipe, prompts: Sequence[str], size: int, steps: int, cfg: float, seed: int, batch: int = 64):
    imgs = []
    for i in range(0, len(prompts), batch):
        chunk = list(prompts[i : i + batch])
        # one generator per image: image k of the list is reproducible on its own
        gens = [torch.Generator("cpu").manual_seed(seed + i + k) for k in range(len(chunk))]
        out = pipe(chunk, num_inference_steps=steps, guidance_scale=cfg, height=size, width=size,
                   generator=gens, output_type="pil").images
        imgs.extend(out)
    return imgs


@torch.no_grad()
def vae_roundtrip(pipe, imgs):
    from PIL import Image

    x = torch.from_numpy(np.stack([np.asarray(i) for i in imgs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    z = pipe.vae.encode(x).latent_dist.mode()
    r = pipe.vae.decode(z).sample.clamp(-1, 1)
    arr = ((r + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def save_grid(imgs, path: Path, cols: int = 12):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = imgs[0].size
    rows = (len(imgs) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, rows * h), (128, 128, 128))
    for i, im in enumerate(imgs):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    grid.save(path)


def score(imgs, prompts) -> Dict[str, float]:
    tot = {"shape": 0, "fg": 0, "bg": 0, "all": 0}
    for img, p in zip(imgs, prompts):
        j = judge(img, p)
        for k in tot:
            tot[k] += int(j[k])
    return {k: v / max(1, len(prompts)) for k, v in tot.items()}


def generator_images(combos_per_image: Sequence[D.Combo], size: int, seed: int):
    g = np.random.default_rng(seed)
    return [D.render(s, fg, bg, size, g) for (s, fg, bg) in combos_per_image]


def evaluate(model_dir, n_per_prompt: int = 2, steps: int = 20, cfg: float = 5.0, scheduler: str = "ddim",
             seed: int = 0, sets: Sequence[str] = ("held_out", "in_dist"), size: Optional[int] = None,
             grid_dir: Optional[str] = None) -> Dict:
    size = size or native_size(model_dir)
    pipe = load_pipeline(model_dir, scheduler)
    result = {"model": str(model_dir), "scheduler": scheduler, "steps": steps, "cfg": cfg, "size": size,
              "n_per_prompt": n_per_prompt, "seed": seed, "sets": {}}
    for name in sets:
        src = {"held_out": D.eval_combos, "in_dist": D.train_combos, "star": D.star_combos,
               "vae_recon": D.eval_combos}[name]
        combos = src()
        per_img = [c for c in combos for _ in range(n_per_prompt)]
        prompts = [D.caption(*c) for c in per_img]
        t0 = time.time()
        if name == "vae_recon":  # upper bound: generator images through the VAE only
            imgs = vae_roundtrip(pipe, generator_images(per_img, size, seed + 3))
        else:
            imgs = generate(pipe, prompts, size, steps, cfg, seed)
        dt = time.time() - t0
        acc = score(imgs, prompts)
        if grid_dir:
            save_grid(imgs[::n_per_prompt], Path(grid_dir) / f"starter_{name}.png")
        fm = np.stack([features(i) for i in imgs])
        fg1 = np.stack([features(i) for i in generator_images(per_img, size, seed + 1)])
        fg2 = np.stack([features(i) for i in generator_images(per_img, size, seed + 2)])
        result["sets"][name] = {
            "prompts": len(combos), "images": len(prompts), **{k: round(v, 4) for k, v in acc.items()},
            "fd_model_vs_generator": round(frechet_distance(fm, fg1), 4),
            "fd_generator_vs_generator": round(frechet_distance(fg2, fg1), 4),
            "seconds": round(dt, 1),
        }
    return result


def format_table(res: Dict) -> str:
    lines = [f"model {res['model']}  scheduler {res['scheduler']}  steps {res['steps']}  cfg {res['cfg']}  "
             f"size {res['size']}  images/prompt {res['n_per_prompt']}",
             f"{'set':10s} {'prompts':>7s} {'images':>6s} {'all':>6s} {'shape':>6s} {'fg':>6s} {'bg':>6s} "
             f"{'FD model':>9s} {'FD gen/gen':>10s} {'sec':>6s}"]
    for name, r in res["sets"].items():
        lines.append(f"{name:10s} {r['prompts']:7d} {r['images']:6d} {r['all']:6.3f} {r['shape']:6.3f} "
                     f"{r['fg']:6.3f} {r['bg']:6.3f} {r['fd_model_vs_generator']:9.4f} "
                     f"{r['fd_generator_vs_generator']:10.4f} {r['seconds']:6.1f}")
    return "\n".join(lines)
