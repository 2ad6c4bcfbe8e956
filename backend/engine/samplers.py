"""Samplers by the names artists know, each a fresh diffusers scheduler per job.

A scheduler carries per-run state (step index, multistep history), so sharing
one between jobs would leak one job's state into the next; building a fresh one
from the model's own scheduler config costs microseconds.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Tuple

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)

from impasto.protocol.messages import SAMPLERS, ErrorCode

from .errors import EngineError
from .quadratic_lcm import QuadraticLCMScheduler

# name -> (scheduler class, config overrides)
SAMPLER_TABLE: Dict[str, Tuple[type, Dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                               "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                      "use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
    # few-step distilled models step at the *end* of each interval ("trailing", as their model cards say):
    # the default "leading" spacing never reaches t=999 and leaves a 1-4 step model grey
    "euler_trailing": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "euler_a_trailing": (EulerAncestralDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "ddim_trailing": (DDIMScheduler, {"timestep_spacing": "trailing"}),
    "tcd": (TCDScheduler, {}),
    # LCM's steps placed by DDIM's quadratic rule (finer where little noise is left): quadratic_lcm.py says why
    "lcm_quadratic": (QuadraticLCMScheduler, {}),
}
assert tuple(SAMPLER_TABLE) == SAMPLERS, "protocol and engine must agree on sampler names"

# Keys that belong to one scheduler family and confuse another when copied over.
_FAMILY_KEYS = ("algorithm_type", "solver_order", "use_karras_sigmas", "solver_type", "lower_order_final",
                "final_sigmas_type", "euler_at_final", "original_inference_steps")


def make_scheduler(name: str, base_config: Dict[str, Any], strength: float = 1.0):
    """A new scheduler for sampler ``name`` built from the model's scheduler config; ``strength`` is the job's
    denoising strength, which a scheduler that spaces its own steps (``lcm_quadratic``) needs to know."""
    try:
        cls, overrides = SAMPLER_TABLE[name]
    except KeyError:
        raise EngineError(ErrorCode.UNKNOWN_SAMPLER,
                          f"sampler: {name!r} is not one of {', '.join(SAMPLER_TABLE)}", "sampler") from None
    config = {k: v for k, v in dict(base_config).items() if k not in _FAMILY_KEYS}
    config.update(overrides)
    scheduler = cls.from_config(config)
    if isinstance(scheduler, QuadraticLCMScheduler):
        scheduler.strength = float(strength)
    return scheduler


class X0Tap:
    """Remembers the scheduler's latest prediction of the clean latents (x0).

    Previews show where the image is heading (x0), not the noisy current
    sample.  Most schedulers return x0 from ``step``; DPM-Solver++ keeps it as
    its last converted model output.  Installed only on a job's own scheduler.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.x0 = None
        self._step = scheduler.step
        # Keep step()'s signature visible: pipelines inspect it to decide whether
        # to pass the job's generator (stochastic samplers would go random without it).
        scheduler.step = functools.update_wrapper(functools.partial(self._wrapped), self._step)

    def _wrapped(self, *args: Any, **kwargs: Any):
        out = self._step(*args, **kwargs)
        x0 = None
        if isinstance(out, tuple):
            x0 = out[1] if len(out) > 1 else None
        else:
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = getattr(out, "denoised", None)
        if x0 is None:
            history = getattr(self.scheduler, "model_outputs", None)
            if history:
                x0 = history[-1]
        self.x0 = x0
        return out
