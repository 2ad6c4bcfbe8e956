"""Control units on every job kind, hooked into the one denoise path (no forked pipelines).

A job's ``control`` list is prepared once by :func:`prepare` (called by
:meth:`Engine.run` before the runner): each unit's control model is resolved
(the one installed that fits the base model's family and the unit's type, or
the one the unit names; another family is a typed error naming both), loaded
once into the :class:`.control_models.ControlStore` and kept resident; its
image is checked against the job's picture size (close aspect: resized with a
warning; far: refused with both sizes) and preprocessed at that size.  Units
at strength 0 are left out entirely, so such a job is bit-identical to one
without them.

The runners then say which part of the picture they diffuse and at what size
(:func:`bind`: the whole picture, or an edit's "only masked" region); the
control maps are cropped to it and scaled to the diffusion size.  The bound
control is handed to :func:`.denoise.denoise`, which wraps the UNet's forward
for the duration of the call (:meth:`BoundControl.attached`): every UNet
evaluation first runs the active units on the same latents, timestep and text
embeddings and passes their summed residuals in
(``down_block_additional_residuals`` / ``mid_block_additional_residual`` for
ControlNets, ``down_intrablock_additional_residuals`` for T2I-Adapters).  The
step counter the denoise loop keeps decides which units are active: unit
``[start, end]`` acts on step i of n when ``i/n >= start`` and
``(i+1)/n <= end`` (diffusers' ControlNet pipelines' rule).  txt2img,
img2img and the blended inpaint loop all call the UNet the same way, so one
hook serves all three.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from impasto.protocol.control import aspect_close, size_refusal
from impasto.protocol.messages import ErrorCode

from .control_models import ADAPTER, CONTROLNET, ControlEntry, ControlStore
from .control_preprocess import preprocess
from .errors import EngineError
from .forward_patch import forward_replaced
from .images import wire_array



@dataclass
class PreparedUnit:
    index: int
    entry: ControlEntry
    module: object
    type: str
    strength: float
    start: float
    end: float
    cond: np.ndarray            # HxWx3 uint8 control map at the job's picture size
    steps_active: int = 0

    @property
    def field(self) -> str:
        return f"control[{self.index}]"


@dataclass
class JobControl:
    """A job's prepared units (at the job's picture size) and the warnings they raised."""

    units: List[PreparedUnit]
    canvas: Tuple[int, int]
    bound: List["BoundControl"] = field(default_factory=list)

    def describe(self) -> List[Dict[str, object]]:
        return [{"model": u.entry.name, "kind": u.entry.kind, "type": u.type, "strength": u.strength,
                 "range": [u.start, u.end], "steps_active": u.steps_active} for u in self.units]


def canvas_size(req) -> Tuple[int, int]:
    """The picture a job's control images must match: the init image's size, else the asked size."""
    if req.init_image is not None:
        return req.init_image.width, req.init_image.height
    return req.width, req.height


def _rgba(unit) -> np.ndarray:
    arr = wire_array(unit.image)
    if arr.ndim == 2:                 # gray8: a map as luminance, opaque
        arr = np.stack([arr, arr, arr, np.full_like(arr, 255)], axis=2)
    return arr


def fit_to_canvas(rgba: np.ndarray, canvas: Tuple[int, int], field_name: str, warnings: List[str]) -> np.ndarray:
    """The control image at the picture's size: as is, resized with a warning, or refused (aspect far off)."""
    h, w = rgba.shape[:2]
    cw, ch = canvas
    if (w, h) == (cw, ch):
        return rgba
    if not aspect_close((w, h), (cw, ch)):
        raise EngineError(ErrorCode.BAD_FIELD, f"{field_name}.image: {size_refusal((w, h), (cw, ch))}",
                          f"{field_name}.image")
    warnings.append(f"{field_name}: control image {w}x{h} resized to the picture's {cw}x{ch}")
    img = Image.fromarray(np.ascontiguousarray(rgba), "RGBA").resize((cw, ch), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def choose_model(entries: List[ControlEntry], unit, loaded, field_name: str) -> ControlEntry:
    """The control model of a unit: the named one (checked against the base model), else the one that fits."""
    family, base = loaded.entry.family, loaded.entry.name
    usable = [e for e in entries if e.supported]
    if unit.model:
        for e in entries:
            if e.name == unit.model:
                if not e.supported:
                    raise EngineError(ErrorCode.UNKNOWN_MODEL, f"{field_name}.model: control model {e.name!r} "
                                      f"can't be used: {'; '.join(e.notes)}", f"{field_name}.model")
                if e.family != family:
                    raise EngineError(ErrorCode.BAD_FIELD, f"{field_name}.model: control model {e.name!r} is made "
                                      f"for {e.family} models, but the model {base!r} is {family}",
                                      f"{field_name}.model")
                return e
        listing = ", ".join(e.name for e in usable) or "none installed"
        raise EngineError(ErrorCode.UNKNOWN_MODEL, f"{field_name}.model: control model {unit.model!r} is not "
                          f"installed (available: {listing})", f"{field_name}.model")
    same_family = [e for e in usable if e.family == family and e.made_for(base)]
    fitting = [e for e in same_family if e.fits(unit.type)]
    exact = [e for e in fitting if e.controls == unit.type]
    own = [e for e in fitting if e.base_model == base]      # made for this very model (the starter's own)
    pick = own if len(own) == 1 else exact if len(exact) == 1 else fitting
    if len(pick) == 1:
        return pick[0]
    if not pick:
        others = ", ".join(f"{e.name} ({e.family}, {e.controls})" for e in usable) or "none installed"
        raise EngineError(ErrorCode.UNKNOWN_MODEL, f"{field_name}: no installed control model for {unit.type} fits "
                          f"the {family} model {base!r} (control models: {others})", f"{field_name}.model")
    names = ", ".join(e.name for e in pick)
    raise EngineError(ErrorCode.BAD_FIELD, f"{field_name}: several control models fit {unit.type} on {base!r} "
                      f"({names}): name one (--control-model)", f"{field_name}.model")


def _check_fit(entry: ControlEntry, module, loaded, field_name: str) -> None:
    """A control model of the right family but another shape (e.g. made for another fine-tune's width)."""
    unet = loaded.base.unet.config
    if entry.kind == CONTROLNET:
        mine, theirs = module.config.cross_attention_dim, unet.cross_attention_dim
        blocks_ok = list(module.config.block_out_channels) == list(unet.block_out_channels)
    else:
        mine = theirs = None
        blocks_ok = list(module.config.channels)[: len(unet.block_out_channels)] == list(unet.block_out_channels)
        # diffusers adds an adapter's feature inside a cross-attention down block (before its downsampler)
        # but after a plain one: SD1.5's adapters (features at 1, 1/2, 1/4...) fit UNets that start with
        # cross-attention, SDXL's (full_adapter_xl, first feature at 1/2) UNets that start without
        starts_plain = not str(unet.down_block_types[0]).startswith("CrossAttn")
        blocks_ok = blocks_ok and starts_plain == (module.config.adapter_type == "full_adapter_xl")
    if mine != theirs or not blocks_ok:
        raise EngineError(ErrorCode.BAD_FIELD, f"{field_name}.model: control model {entry.name!r} ({entry.family}) "
                          f"does not match the layers of the model {loaded.entry.name!r} ({loaded.entry.family}): "
                          f"it was made for a model of another size", f"{field_name}.model")


def prepare(engine, loaded, req, hooks) -> Optional[JobControl]:
    """The job's control units, resolved, loaded and preprocessed (None: no unit with strength > 0)."""
    if not req.control:
        return None
    store: ControlStore = engine.controls
    entries = store.entries()
    canvas = canvas_size(req)
    units: List[PreparedUnit] = []
    for i, unit in enumerate(req.control):
        name = f"control[{i}]"
        entry = choose_model(entries, unit, loaded, name)
        if entry.controls not in ("any", unit.type) and unit.type != "raw":
            hooks.warnings.append(f"{name}: control model {entry.name!r} was made for {entry.controls} maps, "
                                  f"given a {unit.type} map")
        if unit.strength == 0:
            continue                  # left out entirely: bit-identical to a job without this unit
        module = store.module(entry, loaded.choice)
        _check_fit(entry, module, loaded, name)
        rgba = fit_to_canvas(_rgba(unit), canvas, name, hooks.warnings)
        cond = preprocess(unit.type, rgba, f"{name}.type", store.models_dir, loaded.choice.device)
        units.append(PreparedUnit(i, entry, module, unit.type, float(unit.strength), float(unit.start),
                                  float(unit.end), cond))
    if not units:
        return None
    return JobControl(units, canvas)


def bind(hooks, size: Tuple[int, int], box: Optional[Tuple[int, int, int, int]] = None) -> Optional["BoundControl"]:
    """The job's control for a diffusion at ``size`` of the picture's ``box`` (None: the whole picture)."""
    job: Optional[JobControl] = getattr(hooks, "control", None)
    if job is None:
        return None
    bound = BoundControl(job, size, box)
    job.bound.append(bound)
    return bound


def _map_tensor(cond: np.ndarray, box, size: Tuple[int, int], device, dtype) -> torch.Tensor:
    x0, y0, x1, y1 = box
    img = Image.fromarray(np.ascontiguousarray(cond[y0:y1, x0:x1]), "RGB")
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return t.to(device=device, dtype=dtype)


class BoundControl:
    """A job's control units at one diffusion size, ready to wrap the UNet of one pipeline call."""

    def __init__(self, job: JobControl, size: Tuple[int, int], box=None):
        self.job = job
        self.size = size
        self.box = box or (0, 0, job.canvas[0], job.canvas[1])
        self.step = 0
        self._tensors: Dict[int, torch.Tensor] = {}
        self._features: Dict[int, List[torch.Tensor]] = {}
        self._counted: Dict[int, set] = {}

    def step_done(self, steps: int) -> None:
        """Called by the denoise loop at every step end: the next UNet call belongs to step ``steps``."""
        self.step = steps

    def _active(self, unit: PreparedUnit, total: int) -> bool:
        if total <= 0:
            return True
        return self.step / total >= unit.start and (self.step + 1) / total <= unit.end

    def _cond(self, unit: PreparedUnit, device, dtype) -> torch.Tensor:
        if unit.index not in self._tensors:
            size = self.size
            if unit.entry.kind == ADAPTER:   # the adapter's pixel unshuffle wants a multiple of its factor
                f = int(unit.module.config.downscale_factor)
                size = (-(-size[0] // f) * f, -(-size[1] // f) * f)
            self._tensors[unit.index] = _map_tensor(unit.cond, self.box, size, device, dtype)
        return self._tensors[unit.index]

    def _adapter_features(self, unit: PreparedUnit, device, dtype) -> List[torch.Tensor]:
        if unit.index not in self._features:   # an adapter reads the map once: its features do not depend on t
            feats = unit.module(self._cond(unit, device, dtype))
            self._features[unit.index] = [f * unit.strength for f in feats]
        return self._features[unit.index]

    def residuals(self, pipe, sample, timestep, encoder_hidden_states, kwargs) -> Dict[str, object]:
        """The extra UNet arguments for this call: the active units' summed residuals ({} when none)."""
        total = int(getattr(pipe, "_num_timesteps", 0) or 0)
        down = mid = intra = None
        n = sample.shape[0]
        for unit in self.job.units:
            if not self._active(unit, total):
                continue
            self._count(unit)
            module = unit.module
            dtype = next(module.parameters()).dtype
            if unit.entry.kind == CONTROLNET:
                cond = self._cond(unit, sample.device, dtype)
                cin = module.config.in_channels
                d, m = module(sample[:, :cin].to(dtype), timestep, encoder_hidden_states=encoder_hidden_states.to(dtype),
                              controlnet_cond=cond.expand(n, -1, -1, -1).contiguous(),
                              conditioning_scale=unit.strength, added_cond_kwargs=kwargs.get("added_cond_kwargs"),
                              return_dict=False)
                down = list(d) if down is None else [a + b for a, b in zip(down, d)]
                mid = m if mid is None else mid + m
            else:
                feats = self._adapter_features(unit, sample.device, dtype)
                intra = list(feats) if intra is None else [a + b for a, b in zip(intra, feats)]
        extra: Dict[str, object] = {}
        if down is not None:
            extra["down_block_additional_residuals"] = [t.to(sample.dtype) for t in down]
            extra["mid_block_additional_residual"] = mid.to(sample.dtype)
        if intra is not None:      # the UNet pops from this list: a fresh one each call
            extra["down_intrablock_additional_residuals"] = [t.to(sample.dtype).expand(n, -1, -1, -1)
                                                              for t in intra]
        return extra

    def _count(self, unit: PreparedUnit) -> None:
        """Count the steps a unit acted on (once per step, however many UNet calls the sampler makes)."""
        done = self._counted.setdefault(self.step, set())
        if unit.index not in done:
            done.add(unit.index)
            unit.steps_active += 1

    @contextlib.contextmanager
    def attached(self, pipe):
        """``pipe``'s UNet runs the control units on every call inside the block (restored after)."""
        self.step = 0

        def make(inner):
            def forward(sample, timestep, encoder_hidden_states=None, *args, **kwargs):
                extra = self.residuals(pipe, sample, timestep, encoder_hidden_states, kwargs)
                kwargs.update(extra)
                return inner(sample, timestep, encoder_hidden_states, *args, **kwargs)
            return forward

        with forward_replaced(pipe.unet, make):
            yield self
