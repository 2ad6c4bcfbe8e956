"""What an artist sets for a job, as one value every front end shares.

Krita's docker, GIMP's dialogs, the canvas panel and the CLI each had their
own form model with its own defaults (mask blur 8 or 4, strength a percent or
a fraction, seed 0 plus a "random" flag or -1).  :class:`Settings` is the one
model; its defaults are read from the protocol's own :class:`Generate`
defaults, so a client that leaves a knob alone sends what the protocol says.
Where clients disagreed the protocol follows AUTOMATIC1111 /
krita-ai-diffusion conventions (docs/architecture.md): mask blur 4 px,
denoising strength a fraction 0..1 (0.75), seed -1 = a new random seed,
"only masked" padding 32 px, fill "original".

Stored as plain JSON (Krita's settings, the canvas's project files, GIMP's
last values).  Reading is tolerant: unknown keys are dropped, a value of the
wrong type keeps its default, and the older per-client names (``feather``,
``batch``, a percent ``strength``, ``random_seed``, ``[name, weight]``
concept pairs) are understood, so nobody's saved form is lost.

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, List, Optional, Tuple

from .messages import FILL_MODES, SAMPLERS, Generate

_G = Generate()


def _concepts_default() -> List[Dict[str, Any]]:
    return []


@dataclass
class Settings:
    """The knobs of a generate / refine / inpaint job (defaults: :class:`Generate`'s)."""

    prompt: str = ""
    negative_prompt: str = ""
    model: str = _G.model                 # "": the daemon's default model
    # unset (the model's recommendation, :class:`Recommendation`): sampler "", steps 0, CFG 0
    sampler: str = ""
    steps: int = 0
    cfg_scale: float = 0.0
    seed: int = _G.seed                   # -1: a new random seed each job
    strength: float = _G.strength         # denoising strength 0..1 (Refine / Inpaint)
    batch_size: int = _G.batch_size
    # {"name", "weight", "enabled"}: disabled ones stay in the form but are not sent
    concepts: List[Dict[str, Any]] = field(default_factory=_concepts_default)
    mask_blur: int = _G.mask_blur         # feather of the selection's edge, px
    grow: int = _G.grow                   # px; negative shrinks the selection
    padding: int = _G.padding             # "only masked" context around the selection, px
    fill: str = _G.fill                   # what the masked area starts from
    whole_picture: bool = _G.whole_picture
    colour_match: bool = _G.colour_match  # inpaint: match the new colours to the surroundings at the seam
    preview: bool = True                  # live previews while the job runs

    # ------------------------------------------------------------------ concepts

    def active_concepts(self) -> List[Tuple[str, float]]:
        """The (name, weight) pairs sent with a job: enabled concepts only."""
        return [(str(c["name"]), float(c.get("weight", 1.0))) for c in self.concepts if c.get("enabled", True)]

    def set_concepts(self, pairs) -> "Settings":
        """Replace the concepts by enabled ``(name, weight)`` pairs; returns self."""
        self.concepts = [{"name": str(n), "weight": float(w), "enabled": True} for n, w in pairs]
        return self

    # ------------------------------------------------------------------ the model's recommendation

    def unset(self) -> List[str]:
        """The knobs the artist left to the model (``sampler``, ``steps``, ``cfg_scale``)."""
        return [name for name, value in (("sampler", self.sampler), ("steps", self.steps),
                                         ("cfg_scale", self.cfg_scale)) if not value]

    def resolved(self, recommendation: Optional["Recommendation"] = None) -> "Settings":
        """A copy whose unset knobs hold the model's recommendation (the protocol's values without one)."""
        rec = recommendation or Recommendation()
        out = replace(self, concepts=[dict(c) for c in self.concepts])
        out.sampler = self.sampler or rec.sampler
        out.steps = self.steps or rec.steps
        out.cfg_scale = self.cfg_scale or rec.cfg_scale
        return out

    @classmethod
    def from_request(cls, req: Any, seed: Optional[int] = None) -> "Settings":
        """The settings a sent ``Generate`` request carried (for a result's history and its parameters)."""
        s = cls(prompt=req.prompt, negative_prompt=req.negative_prompt, model=req.model, sampler=req.sampler,
                steps=int(req.steps), cfg_scale=float(req.cfg_scale), seed=int(req.seed if seed is None else seed),
                strength=float(req.strength), batch_size=int(req.batch_size), mask_blur=int(req.mask_blur),
                grow=int(req.grow), padding=int(req.padding), fill=req.fill, whole_picture=bool(req.whole_picture),
                preview=bool(req.preview), colour_match=bool(getattr(req, "colour_match", True)))
        return s.set_concepts(req.concepts)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str]) -> "Settings":
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> "Settings":
        """Tolerant reading (see the module doc); never raises."""
        out = cls()
        if not isinstance(data, dict):
            return out
        data = _migrate(dict(data))
        for f in fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(out, f.name)
            if f.name == "concepts":
                value = _read_concepts(value)
                ok = value is not None
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if ok:
                setattr(out, f.name, value)
        if out.sampler not in SAMPLERS and out.sampler != "":
            out.sampler = ""
        if out.fill not in FILL_MODES:
            out.fill = _G.fill
        return out


def _migrate(data: Dict[str, Any]) -> Dict[str, Any]:
    """The older per-client names -> today's (Krita's docker and the canvas kept their own)."""
    for old, new in (("feather", "mask_blur"), ("batch", "batch_size"), ("live_preview", "preview")):
        if old in data and new not in data:
            data[new] = data.pop(old)
    strength = data.get("strength")
    if isinstance(strength, int) and not isinstance(strength, bool) and strength > 1:
        data["strength"] = strength / 100.0           # Krita stored a whole percent
    if data.pop("random_seed", False) is True:
        data["seed"] = -1
    return data


def _read_concepts(value: Any) -> Optional[List[Dict[str, Any]]]:
    if not isinstance(value, list):
        return None
    out: List[Dict[str, Any]] = []
    for c in value:
        if isinstance(c, dict) and isinstance(c.get("name"), str):
            weight = c.get("weight", 1.0)
            out.append({"name": c["name"], "weight": float(weight) if isinstance(weight, (int, float)) else 1.0,
                        "enabled": bool(c.get("enabled", True))})
        elif isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], str) \
                and isinstance(c[1], (int, float)):
            out.append({"name": c[0], "weight": float(c[1]), "enabled": True})
        else:
            return None
    return out


# impasto.json "recommended" scheduler (a diffusers class name) -> the protocol's sampler name
SCHEDULER_SAMPLERS = {
    "DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_a", "DPMSolverMultistepScheduler": "dpmpp_2m",
    "LCMScheduler": "lcm", "TCDScheduler": "tcd",
}


@dataclass
class Recommendation:
    """What a model recommends for the knobs an artist leaves unset (its ``impasto.json``).

    The daemon's model listing carries each model's ``recommended`` block and
    ``native_size``; :meth:`from_model` reads one entry.  A model that
    recommends nothing gets the protocol's values.
    """

    sampler: str = _G.sampler
    steps: int = _G.steps
    cfg_scale: float = _G.cfg_scale
    native_size: int = 512
    from_model_file: bool = False
    preset: str = ""                      # a few-step preset's name ("SDXL-Lightning", "LCM-LoRA"), when one applied
    # the model's own few-step LoRA (the listing's ``live`` block, backend/engine/bundled.py): its concept name
    # and what it recommends; live painting switches it on by itself (protocol/live.py ``live_job``)
    live_concept: str = ""
    live: Optional["Recommendation"] = None

    @classmethod
    def from_model(cls, entry: Optional[Dict[str, Any]]) -> "Recommendation":
        out = cls()
        if not isinstance(entry, dict):
            return out
        native = entry.get("native_size")
        if isinstance(native, int) and not isinstance(native, bool) and native > 0:
            out.native_size = native
        live = entry.get("live")
        if isinstance(live, dict) and isinstance(live.get("concept"), str) and live["concept"] \
                and isinstance(live.get("recommended"), dict):
            own = cls.from_model({"recommended": live["recommended"], "native_size": out.native_size})
            if own.from_model_file:
                own.preset = own.preset or live["concept"]
                out.live_concept, out.live = live["concept"], own
        rec = entry.get("recommended")
        if not isinstance(rec, dict):
            return out
        sampler = rec.get("sampler") or SCHEDULER_SAMPLERS.get(str(rec.get("scheduler", "")), "")
        if sampler in SAMPLERS:
            out.sampler, out.from_model_file = sampler, True
        steps = rec.get("steps", rec.get("num_inference_steps"))
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            out.steps, out.from_model_file = steps, True
        cfg = rec.get("cfg_scale", rec.get("guidance_scale"))
        if isinstance(cfg, (int, float)) and not isinstance(cfg, bool) and cfg > 0:
            out.cfg_scale, out.from_model_file = float(cfg), True
        if isinstance(rec.get("preset"), str):
            out.preset = rec["preset"]
        return out

    @classmethod
    def for_model(cls, models: Any, name: str = "", default: str = "") -> "Recommendation":
        """The recommendation of model ``name`` (or the daemon's default) in a model listing."""
        wanted = name or default
        for entry in models or []:
            if isinstance(entry, dict) and entry.get("name") == wanted:
                return cls.from_model(entry)
        return cls()

    def with_concepts(self, concepts: Any, active: Any) -> "Recommendation":
        """This recommendation under the job's concepts: a few-step LoRA's own settings win.

        ``concepts`` is the daemon's concept listing (dicts), ``active`` the job's
        ``(name, weight)`` pairs.  An LCM-LoRA, Hyper-SD or Lightning LoRA at a
        weight above 0 carries a ``recommended`` block (the daemon's presets);
        with it on, unset knobs become its sampler / steps / CFG, not the base
        model's 20 steps at CFG 7, which would burn the picture.  The first such
        concept in the job's order wins.
        """
        by_name = {c.get("name"): c for c in concepts or [] if isinstance(c, dict)}
        for name, weight in active or []:
            if name and name == self.live_concept and self.live is not None and isinstance(weight, (int, float)) \
                    and weight > 0:
                return replace(self.live)        # the model's own few-step LoRA, named by hand
            entry = by_name.get(name)
            if not entry or not isinstance(weight, (int, float)) or weight <= 0:
                continue
            rec = entry.get("recommended")
            if isinstance(rec, dict) and rec:
                out = Recommendation.from_model({"recommended": rec, "native_size": self.native_size})
                if out.from_model_file:
                    out.preset = str(rec.get("preset", "")) or name
                    return out
        return self

    def label(self) -> str:
        """``model default (DDIM, 20, 3.0)``: the words help texts and panels show for "unset"."""
        return f"model default {self.settings()}"

    def settings(self) -> str:
        """``(DDIM, 20, 3.0)``: sampler, steps and CFG (and a few-step preset's name), for sentences of their own."""
        preset = f", {self.preset}" if self.preset else ""   # "(LCM, 4, 1.0, LCM-LoRA)"
        return f"({SAMPLER_LABELS_SHORT.get(self.sampler, self.sampler)}, {self.steps}, {self.cfg_scale:.1f}{preset})"


SAMPLER_LABELS_SHORT = {"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "ddpm": "DDPM",
                        "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "lcm": "LCM",
                        "euler_trailing": "Euler trailing", "euler_a_trailing": "Euler a trailing",
                        "ddim_trailing": "DDIM trailing", "tcd": "TCD", "lcm_quadratic": "LCM quadratic"}
#: What a sampler is for, where its name alone does not tell an artist: the model families that need it.
SAMPLER_HINTS = {"lcm": "few steps", "euler_trailing": "Lightning", "euler_a_trailing": "Turbo",
                 "ddim_trailing": "Hyper-SD", "tcd": "few steps", "lcm_quadratic": "few steps"}


def sampler_label(name: str) -> str:
    """``Euler trailing (Lightning)``: the words a sampler menu shows, the same in every client."""
    short = SAMPLER_LABELS_SHORT.get(name, name)
    return f"{short} ({SAMPLER_HINTS[name]})" if name in SAMPLER_HINTS else short


#: A fill mode's menu words, the same in every client (backend/engine/fill.py says what each does).
FILL_LABELS = {"original": "Original pixels", "blur": "Blurred surroundings", "neutral": "Neutral grey",
               "noise": "Noise"}
#: What each fill is for: the item's tooltip (Krita, canvas) or the choice's help line (GIMP).
FILL_HINTS = {"original": "The pixels as they are: keep the composition, change the details",
              "blur": "The surroundings' colours, blurred into the hole: for removing an object",
              "neutral": "Flat mid-grey: no colour bias, the prompt alone decides",
              "noise": "Random colours: for something else entirely"}


def fill_label(name: str) -> str:
    """``Blurred surroundings``: the words a fill menu shows; a newer daemon's mode shows as itself."""
    return FILL_LABELS.get(name, name)
