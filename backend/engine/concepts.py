"""Seam where personal concepts (LoRA adapters) are switched on for a job.

``activate`` is called by :meth:`Engine.run` before every Generate job with the
request's ``[(name, weight)]`` list.  Concepts come from the library
(``IMPASTO_HOME/concepts``); each is loaded into the resident model once (a
peft adapter) and later jobs only switch adapters and weights - no base
weights are read or touched.  A weight of 0 leaves a concept out entirely, so
the output is bit-identical to a job without it.

Problems an artist can fix are typed errors naming the list entry
(``concepts[1]``: unknown name, listed twice, made for another architecture);
a concept trained on another model of the same architecture is used with a
warning in the result, as is one whose trigger word the prompt lacks (when the
caller passes the prompt).  A Concept Slider (metadata ``slider``) takes a
signed weight in ``SLIDER_WEIGHT_RANGE``; outside it is a typed error.  A slider
whose metadata has an ``end`` (a share of the steps; picture-pair sliders) acts
for that share of the denoising steps only (``adapters.end_schedule``, called
by ``denoise`` after each step); live jobs, folded in, keep the whole schedule.
A model's own few-step LoRA shipped beside it (``bundled.py``: the starter's
LCM-LoRA) is found by its name before the library.  Live jobs (``fuse``) run
with their adapters folded into the weights, restored exactly for the next job
that wants anything else (``adapters.set_active``).
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from impasto.protocol.messages import SLIDER_WEIGHT_RANGE, ErrorCode

from .errors import EngineError


def base_weights(loaded) -> None:
    """A job that is not a generation (training a concept or a slider) needs the model's own
    weights: a live job before it may have left its adapters folded in (``adapters.fuse``)."""
    from impasto.backend.concepts import adapters

    adapters.unfuse(loaded)


def activate(engine, loaded, concepts: List[Tuple[str, float]], hooks, prompt: Optional[str] = None,
             fuse: bool = False) -> None:
    from impasto.backend.concepts import adapters
    from impasto.backend.concepts.library import ConceptLibrary
    from impasto.backend.concepts.lora_io import slider_end

    from . import bundled

    st = adapters.state_for(loaded)
    if not concepts:
        if st.resident or st.active:
            adapters.set_active(loaded, {})
        return
    library = ConceptLibrary()
    weights = {}
    ends = {}
    order = {}
    seen = set()
    for i, (name, weight) in enumerate(concepts):
        field = f"concepts[{i}]"
        if name in seen:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: concept {name!r} is listed twice", field)
        seen.add(name)
        own = bundled.concept_for(loaded.entry, name)   # the model's shipped few-step LoRA (live painting)
        info = own if own is not None else library.get(name, field)
        end = None
        if isinstance(info.meta.get("slider"), dict):   # a Concept Slider: signed weight, -3..+3
            lo, hi = SLIDER_WEIGHT_RANGE
            if not lo <= weight <= hi:
                raise EngineError(ErrorCode.BAD_FIELD, f"{field}.weight: {weight:g} is outside slider {name!r}'s "
                                  f"range {lo:+g}..{hi:+g}", f"{field}.weight")
            end = slider_end(info.meta["slider"])     # picture-pair sliders: a share of the steps
        if weight == 0:
            continue  # weight 0: not even loaded, the job runs on the bare base model
        resident = adapters.ensure_loaded(loaded, info, bundled.load_weights if own is not None
                                          else library.load_weights, field)
        weights[resident.adapter] = float(weight)
        order[resident.adapter] = info.id
        if end is not None:
            ends[resident.adapter] = end
        if resident.trigger_note:
            hooks.warn(f"concept {info.name!r}: {resident.trigger_note}")
        for warning in concept_warnings(info, loaded, prompt):
            hooks.warn(warning)
    # one summation order per set of concepts (by their ids): listing them in another order, or
    # loading them in another order in another session, paints the same bits
    adapters.set_active(loaded, dict(sorted(weights.items(), key=lambda kv: order[kv[0]])), fuse=fuse, ends=ends)


def end_schedule(loaded):
    """The step-end hook of the job's concepts that stop part way (None: none does); ``denoise``
    calls it with (steps done, steps in all) after every step."""
    from impasto.backend.concepts import adapters

    return adapters.end_schedule(loaded)


def concept_warnings(info, loaded, prompt: Optional[str]) -> List[str]:
    out = []
    meta = info.meta
    fp, base = meta.get("base_fingerprint", ""), meta.get("base_model", "")
    if fp and fp != loaded.fingerprint:
        out.append(f"concept {info.name!r} was trained on model {base or '?'!r}, not on {loaded.entry.name!r}: "
                   "it may look different than in its samples")
    arch = meta.get("base_arch", "")
    if arch and loaded.entry.arch and arch.split("-")[0] != loaded.entry.arch.split("-")[0]:
        out.append(f"concept {info.name!r} was made for {arch} models, {loaded.entry.name!r} is {loaded.entry.arch}")
    trigger = info.trigger
    if prompt is not None and trigger and not re.search(rf"(?<![\w-]){re.escape(trigger)}(?![\w-])", prompt,
                                                          re.IGNORECASE):
        out.append(f"concept {info.name!r} is on but its trigger word {trigger!r} is not in the prompt")
    return out
