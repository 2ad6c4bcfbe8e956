"""Denoising strength -> how long a schedule to build and how many steps run.

diffusers runs ``int(num_inference_steps * strength)`` steps of an img2img or
inpaint job: 20 steps at strength 0.1 is 2 steps, at 0.04 it is 0 (an error).
Two steps from a noised picture leave visible noise, so low strengths get a
*floor*: the schedule is lengthened (finer steps over the same noise range,
as A1111's "exact steps" option does) until at least :data:`MIN_STEPS` run.
The starting noise level still follows the strength; only the step size
shrinks.  Strength 0 - or one so low that even the longest schedule runs no
step - means "no change" and runs nothing.
"""
from __future__ import annotations

import math
from typing import Tuple

MIN_STEPS = 4                 # the floor (or the requested steps, if fewer)
MAX_SCHEDULE = 1000           # the models' training timesteps
MAX_SCHEDULE_BY_SAMPLER = {"lcm": 50, "lcm_quadratic": 50, "tcd": 50}  # LCM and TCD: their 50 "original" steps


def steps_run_for(num_inference_steps: int, strength: float) -> int:
    """The step count diffusers' ``get_timesteps`` runs (mirrors it exactly)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


def schedule(steps: int, strength: float, sampler: str = "") -> Tuple[int, int]:
    """(num_inference_steps to ask the pipeline for, steps that will run)."""
    if strength <= 0:
        return steps, 0
    cap = MAX_SCHEDULE_BY_SAMPLER.get(sampler, MAX_SCHEDULE)
    floor = min(steps, MIN_STEPS)
    n = steps
    if steps_run_for(n, strength) < floor:
        n = math.ceil(floor / strength)
        while steps_run_for(n, strength) < floor and n < cap:  # float rounding: int(4 / 0.3 * 0.3) may be 3
            n += 1
    n = max(1, min(n, max(cap, steps)))
    return n, steps_run_for(n, strength)
