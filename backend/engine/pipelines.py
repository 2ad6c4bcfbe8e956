"""Loading a model once and deriving every job kind from it without reloading.

The base pipeline is built from the model's folder (or single file); img2img
and inpaint pipelines are derived with diffusers' ``from_pipe``, which shares
the already-loaded UNet, VAE and text encoder(s) - switching job kinds costs no
weight I/O.  One model is resident at a time (the daemon's worker owns it).

The model's *family* picks the pipeline classes (:data:`FAMILY_PIPELINES`):
SD1.5's, or SDXL's (two text encoders, size conditioning); everything above
this module - runners, denoise, previews, concepts - is the same code for
both.  The GPU fast path is applied once here (:mod:`.gpu`).
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Dict

import torch
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from .device import DeviceChoice
from .fast_vae import FAST_ENCODER_FILE, load_encoder as load_fast_encoder
from .gpu import FastPath, optimize
from .models import ModelEntry, family_of
from .safetensors_header import safetensors_layout
from .preview import PREVIEW_DECODER_FILE, LinearPreviewer, choose_previewer, fit_latent_rgb
from .single_file import SD15_CONFIG_DIR, load_pipeline as load_single_file  # noqa: F401 (SD15_CONFIG_DIR re-exported)
from .speedups import cache_processor_signatures

# family -> (txt2img, img2img, inpaint) pipeline classes
FAMILY_PIPELINES = {
    "sd15": (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline),
    "sd2": (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline),
    "sdxl": (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline),
}

log = logging.getLogger("impasto.engine")

cache_processor_signatures()   # diffusers asks inspect for every attention call's signature (speedups.py)

_PINNED: Dict[type, type] = {}


def pin_execution_device(pipe, device: torch.device):
    """Make ``pipe._execution_device`` a constant: ``device``.

    diffusers' property looks for offload hooks by walking every sub-module of
    every component on each call - 14 ms on the starter with its LoRA layers
    (measured, one thread), once per job: a tenth of a live job.  Without
    offloading (:class:`.gpu.FastPath` ``offload == "none"``) the answer is
    always the device the weights were moved to, so it is fixed here; with
    model offload the pipeline keeps diffusers' own lookup.  Done by switching
    the instance to a subclass of its own class (cached per class), which keeps
    ``isinstance`` and ``from_pipe`` working.
    """
    base = type(pipe)
    if base not in _PINNED.values():
        cls = _PINNED.get(base)
        if cls is None:
            cls = _PINNED[base] = type(base.__name__, (base,), {
                "__module__": base.__module__, "__doc__": base.__doc__,
                "_execution_device": property(lambda self: self._impasto_device)})
        pipe.__class__ = cls
    pipe._impasto_device = torch.device(device)
    return pipe


def pipeline_family(entry: ModelEntry) -> str:
    """The family whose pipelines run ``entry`` (an unknown one runs as SD1.5, the oldest layout)."""
    family = family_of(entry.arch)
    return family if family in FAMILY_PIPELINES else "sd15"


# a VAE's tensors that a concept's training sees: the encoder makes the latents every LoRA, control
# model and slider learns on; the decoder only paints them, and fine-tuning it changes no concept's meaning
VAE_ENCODER_PREFIXES = ("encoder.", "quant_conv.")
_FINGERPRINT_BYTES = 1 << 20


def _hash_vae_encoder(path: Path, h) -> bool:
    """Feed ``h`` the encoder half of a VAE safetensors file: its tensors' names, shapes and dtypes and
    the first MiB of their data, in file order.  False (the caller hashes the file's head) when the file
    is not a readable safetensors file or holds no encoder tensor."""
    import struct

    try:
        header, data_start = safetensors_layout(path)
        tensors = sorted((v["data_offsets"][0], v["data_offsets"][1], k, v["dtype"], v["shape"])
                         for k, v in header.items() if k != "__metadata__" and k.startswith(VAE_ENCODER_PREFIXES))
        if not tensors:
            return False
        left = _FINGERPRINT_BYTES
        with open(path, "rb") as fh:
            for start, end, name, dtype, shape in tensors:
                h.update(f"{name}|{dtype}|{shape}".encode())
                if left > 0:
                    fh.seek(data_start + start)
                    chunk = fh.read(min(end - start, left))
                    h.update(chunk)
                    left -= len(chunk)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error):
        return False
    return True


def model_fingerprint(entry: ModelEntry) -> str:
    """A cheap stable id of the weights a concept depends on (sizes + first MiB), for concept metadata.

    Left out, because retraining them must not orphan the model's concepts: the preview decoder, the
    fast encoder and the VAE's decoder (a folder's ``vae/`` counts by its encoder half only).  A single
    file is hashed whole (its head), as it is one blob.
    """
    h = hashlib.sha256()
    root = Path(entry.path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.safetensors")
                                                if p.relative_to(root).as_posix() not in (PREVIEW_DECODER_FILE,
                                                                                          FAST_ENCODER_FILE))
    for p in files:
        h.update(p.name.encode())
        if root.is_dir() and p.relative_to(root).parts[0] == "vae" and _hash_vae_encoder(p, h):
            continue
        h.update(str(p.stat().st_size).encode())
        with open(p, "rb") as fh:
            h.update(fh.read(_FINGERPRINT_BYTES))
    return h.hexdigest()[:16]


class LoadedModel:
    """A model resident on the device, with its derived pipelines."""

    def __init__(self, entry: ModelEntry, choice: DeviceChoice, models_dir=None):
        self.entry = entry
        self.choice = choice
        self.family = pipeline_family(entry)
        self.classes = FAMILY_PIPELINES[self.family]
        self.fast = FastPath.for_device(choice)
        t0 = time.perf_counter()
        self.base = self._load_base(entry, choice, self.fast)
        self.base.set_progress_bar_config(disable=True)
        optimize(self.base, choice, self.fast, upcast_vae=self.family == "sdxl")
        self.load_seconds = time.perf_counter() - t0
        self.scheduler_config = dict(self.base.scheduler.config)
        self.inpaint_unet = self.base.unet.config.in_channels == 9
        # trained preview decoder > TAESD / TAESDXL in the models folder > linear map (see preview.py)
        self.previewer = choose_previewer(entry.path, self.base.vae, choice.device, self.base.vae.dtype,
                                          self.family, models_dir)
        # a live job's fast encoder (the decoder half is the previewer): see fast_vae.py
        self.fast_encoder = load_fast_encoder(entry.path, int(self.base.vae.config.latent_channels), choice.device,
                                              int(self.base.vae_scale_factor))
        self.fingerprint = model_fingerprint(entry)
        self._derived: Dict[type, object] = {type(self.base): self.base}
        if self.fast.offload == "none":
            pin_execution_device(self.base, choice.device)
        log.info("loaded %s (%s) on %s in %.2f s", entry.name, entry.arch, choice.describe(), self.load_seconds)

    @property
    def preview_matrix(self) -> torch.Tensor:
        """The linear latent->RGB map (fitted on first use when a decoder does the previews)."""
        if not isinstance(self.previewer, LinearPreviewer):
            if getattr(self, "_linear", None) is None:
                self._linear = fit_latent_rgb(self.base.vae, self.choice.device, self.base.vae.dtype)
            return self._linear
        return self.previewer.matrix

    @staticmethod
    def _load_base(entry: ModelEntry, choice: DeviceChoice, fast: FastPath = FastPath()):
        classes = FAMILY_PIPELINES[pipeline_family(entry)]
        cls = classes[2] if entry.arch.endswith("inpaint") else classes[0]
        common = dict(torch_dtype=choice.dtype)
        if cls in (StableDiffusionXLPipeline, StableDiffusionXLInpaintPipeline):
            common.update(add_watermarker=False)
        else:
            common.update(safety_checker=None, requires_safety_checker=False)
        if entry.format == "single_file":
            # shipped SD1.5 / SDXL configs (+ a NAME.config/ sidecar): never a hub (see single_file.py)
            pipe = load_single_file(cls, Path(entry.path), entry.arch, **common)
        else:
            pipe = cls.from_pretrained(entry.path, local_files_only=True, **common)
        if fast.offload == "model":
            return pipe  # stays on the CPU; gpu.optimize moves each component in when it runs
        return pipe.to(choice.device)

    def size_conditioning(self, width: int, height: int) -> dict:
        """SDXL's micro-conditioning for a picture diffused at ``width`` x ``height`` (nothing for SD1.5).

        Original and target size are the diffusion size: the picture is made
        whole at that size, never a crop (crop coordinates stay 0, 0).
        """
        if self.family != "sdxl":
            return {}
        return {"original_size": (height, width), "target_size": (height, width)}

    def pipeline(self, cls):
        """The pipeline of class ``cls`` sharing this model's weights (built once)."""
        if cls not in self._derived:
            pipe = cls.from_pipe(self.base)
            pipe.set_progress_bar_config(disable=True)
            if self.fast.offload == "none":
                pin_execution_device(pipe, self.choice.device)
            self._derived[cls] = pipe
        return self._derived[cls]

    @property
    def txt2img(self):
        if self.inpaint_unet:
            return self.base
        return self.pipeline(self.classes[0])

    @property
    def img2img(self):
        return self.pipeline(self.classes[1])

    @property
    def inpaint(self):
        return self.pipeline(self.classes[2])

    def close(self) -> None:
        self._derived.clear()
        self.base = None
        if self.choice.device.type == "cuda":
            torch.cuda.empty_cache()
