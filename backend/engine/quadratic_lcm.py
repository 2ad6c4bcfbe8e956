"""LCM with DDIM's *quadratic* timestep selection: the ``lcm_quadratic`` sampler.

LCM's own schedule takes its few steps evenly spaced on the 50-step grid it was
distilled on: 4 steps are t = 999, 759, 499, 259, so the last prediction of the
clean picture is made from a fairly noisy point and an outline's edges stay
soft.  The DDIM paper's other selection rule (Song et al. 2020, section 5:
"quadratic", tau_i ~ c i^2) puts the steps closer together where little noise
is left: 4 steps are t = 999, 579, 259, 79 on the same grid.  On the starter's
LCM-LoRA that is +6-8 points of prompts painted all right at 4 steps on two
tuning sets (docs/performance.md, "The few-step starter"); what it does to real
SD1.5 / SDXL LCM-LoRAs is not measured here, so plain ``lcm`` keeps LCM's own
rule and only a preset that was measured with it names this one.

Denoising strength keeps its meaning.  diffusers' img2img and inpaint pipelines
ask the scheduler for ``n`` steps and run the last ``int(n * strength)`` of them,
so the noise a job starts from is the uniform schedule's entry at that point.
:attr:`QuadraticLCMScheduler.strength` (set by the engine before the pipeline
runs) lets ``set_timesteps`` keep that starting entry and spread the steps that
run quadratically below it; the entries before it are never run.  (diffusers'
own LCM img2img pipeline, which passes ``strength`` to ``set_timesteps`` itself,
is not one the engine runs.)
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from diffusers import LCMScheduler


def quadratic_indices(n: int, length: int) -> List[int]:
    """``n`` increasing indices into a descending grid of ``length`` timesteps, the first 0, spaced so that
    the share of the grid still ahead of step ``i`` falls as ``((n - i) / n) ** 2`` (DDIM's quadratic rule)."""
    if not 1 <= n <= length:
        raise ValueError(f"{n} steps do not fit a grid of {length}")
    out: List[int] = []
    for i in range(n):
        idx = int(np.floor((1.0 - ((n - i) / n) ** 2) * length))
        idx = max(idx, out[-1] + 1 if out else 0)      # strictly increasing ...
        out.append(min(idx, length - (n - i)))           # ... and room left for the steps after it
    return out


class QuadraticLCMScheduler(LCMScheduler):
    """:class:`~diffusers.LCMScheduler` whose own schedule follows :func:`quadratic_indices`."""

    #: the job's denoising strength (1: text to image); the engine sets it before the pipeline runs
    strength: float = 1.0

    def set_timesteps(self, num_inference_steps: Optional[int] = None, device=None,
                      original_inference_steps: Optional[int] = None, timesteps=None, strength: float = 1.0):
        super().set_timesteps(num_inference_steps, device=device, original_inference_steps=original_inference_steps,
                              timesteps=timesteps, strength=strength)
        if timesteps is not None:     # a caller's own list: theirs, as LCM takes it
            return
        uniform = self.timesteps.cpu().numpy()
        n = len(uniform)
        run = min(int(n * float(self.strength)), n)     # what the pipeline's get_timesteps will run
        if run < 1:
            return
        head, start = uniform[: n - run], int(uniform[n - run])
        k = self.config.num_train_timesteps // (original_inference_steps or self.config.original_inference_steps)
        grid = np.arange(start, k - 2, -k)                   # the distillation grid from the start to k - 1
        if run > len(grid):
            return                                           # finer than the grid: LCM's own spacing
        tail = grid[quadratic_indices(run, len(grid))]
        self.timesteps = torch.from_numpy(np.concatenate([head, tail]).astype(np.int64)).to(
            device=self.timesteps.device if device is None else device)
