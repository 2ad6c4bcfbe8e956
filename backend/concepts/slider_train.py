"""The ``train_slider`` job: a Concept Slider (Gandikota et al. 2023), a LoRA used with a signed weight.

A slider is a concept like any other (a peft LoRA in the library, applied through
the same concept path) whose metadata says ``slider``; the artist dials it from
-3 to +3 and 0 leaves the base model bit-identical.  Two ways to make one:

* **text** (no pictures): with the LoRA at +1 the model must predict, for the
  target prompt on a noisy picture, what the *frozen* model predicts for the
  target plus ``guidance`` x (its prediction for the positive prompt - its
  prediction for the negative prompt); at -1 the same with a minus.  The noisy
  pictures are the base model's own drawings of the target (made once, cached
  like prior-preservation pictures), noised at random timesteps.  ``preserve``
  phrases are appended to all three prompts in turn, so the direction is learnt
  across what must stay (the paper's preservation prompts).
* **images** (the paper's visual sliders): pairs of pictures that differ only in
  the attribute.  One noise and one timestep per pair: at +1 the LoRA learns to
  denoise the high end, at -1 the low end; what the pair shares cancels, the
  difference is what the LoRA holds.

Both signs are trained at every step, so the slider is symmetric around 0.
Everything else is the concept trainer's (:class:`.train.Trainer`): the
training adapter, AdamW, clipping, fp16 autocast, progress with the loss,
cancel at every step, checkpoints and ``resume``, the resident model put back
exactly.  Samples (progress previews and the saved concept's pictures) are the
same seed at weights -1, 0 and +1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
import types
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from impasto.protocol.messages import (
    SLIDER_FALLBACKS, SLIDER_WEIGHT_RANGE, ErrorCode, TrainSlider,
)

from impasto.backend.engine.denoise import generators
from impasto.backend.engine.errors import EngineError
from impasto.backend.engine.hooks import JobHooks
from impasto.backend.engine.images import from_wire, to_rgb, to_rgba_array
from impasto.backend.engine.runners import Output
from impasto.backend.engine.gpu import training_autocast
from impasto.backend.engine.samplers import make_scheduler

from . import adapters, checkpoint, class_images, dataset, library, train
from .text_cond import TextConditioning

SAMPLE_WEIGHTS = (-1.0, 0.0, 1.0)
# Picture pairs: share of rows trained with the empty prompt.  Classifier-free guidance extrapolates
# from the unconditional prediction; a slider that moves only the captioned one is pushed through
# CFG as an inconsistency (distorted outlines).  Measured on the starter: docs/performance.md.
CAPTION_DROPOUT = 0.0
# Picture pairs: the share of the denoising steps the slider acts for (its metadata's ``end``; the
# base model alone draws the rest).  The noisy steps set the layout the pairs differ in; left on to
# the last step the slider also paints its own fine detail - speckles and wavy outlines at high
# weights.  Chosen on the starter's tuning split (bench/slider_proof.py --tune --slider-end):
# docs/performance.md, Concept Sliders.
PICTURE_SLIDER_END = 0.8


def slider_prompts(req: TrainSlider) -> List[Tuple[str, str, str]]:
    """(target, positive, negative) per preserve phrase (one triple without any)."""
    tails = [p.strip() for p in req.preserve if p.strip()] or [""]
    return [tuple(" ".join(x for x in (part.strip(), tail) if x) for part in (req.target, req.positive, req.negative))
            for tail in tails]


def slider_meta(req: TrainSlider, pairs: int = 0) -> Dict[str, object]:
    """What the library (and every client) knows of a slider: its kind, range and ends."""
    lo, hi = SLIDER_WEIGHT_RANGE
    meta: Dict[str, object] = {"mode": req.mode, "range": [lo, hi], "target": req.target.strip()}
    if req.mode == "text":
        meta.update(positive=req.positive.strip(), negative=req.negative.strip(), guidance=req.guidance,
                    preserve=[p.strip() for p in req.preserve if p.strip()])
    else:
        meta.update(pairs=pairs, end=PICTURE_SLIDER_END)
    return meta


class SliderTrainer(train.Trainer):
    """One slider training (a job); :func:`run_train_slider` is its entry point.

    It reuses the concept trainer's setup, loop, checkpoints and clean-up; what
    differs is the data (prompts or picture pairs) and the step's objective."""

    def __init__(self, engine, loaded, req: TrainSlider, hooks: JobHooks):
        self.engine, self.loaded, self.hooks = engine, loaded, hooks
        self.slider = req
        # the concept trainer's view of the request: a UNet LoRA, no text-encoder LoRA, no trigger word
        view = {f.name: getattr(req, f.name) for f in dataclasses.fields(req)}
        self.req = types.SimpleNamespace(**view, method="lora", train_text_encoder=False, trigger_embedding=False)
        self.warnings = hooks.warnings
        self.device = loaded.choice.device
        self.dtype = loaded.choice.dtype
        self.cuda = self.device.type == "cuda"
        self.timings: Dict[str, float] = {}
        self.resolution = train.training_resolution(req, loaded)
        self.text_encoder_lora = False
        self.trigger_emb = False
        self.trigger_params: List[torch.nn.Parameter] = []
        self.cond = TextConditioning(loaded, self.resolution)
        self.ckpt_dir = checkpoint.training_dir(req.name)
        self.step = 0
        self.losses: List[float] = []
        self.step_times: List[float] = []
        self.last_saved = -1
        self.distill_prompts: List[str] = []

    # ------------------------------------------------------------------ settings

    def settings(self) -> Dict[str, object]:
        s = self.slider
        return {
            "kind": "slider",
            "model_fingerprint": self.loaded.fingerprint,
            "mode": s.mode,
            "rank": s.rank,
            "resolution": self.resolution,
            "guidance": s.guidance if s.mode == "text" else 0.0,
            "prompts": [list(t) for t in slider_prompts(s)] if s.mode == "text" else [],
        }

    def check_input(self) -> None:
        s = self.slider
        if s.mode == "images" and len(s.images) < 2:   # validate_job says so too; engine callers may skip it
            raise EngineError(ErrorCode.BAD_FIELD, "images: an image-pair slider needs at least 2 pairs", "images")

    # ------------------------------------------------------------------ data

    def _square(self, images, name: str) -> List:
        out, small = [], []
        for i, wire in enumerate(images):
            pil = to_rgb(from_wire(wire))
            if min(pil.size) < self.resolution // 2:
                small.append(f"{name}[{i}] ({pil.width}x{pil.height})")
            out.append(dataset.fit_square(pil, self.resolution))
        if small:
            self.warnings.append(f"{', '.join(small)} smaller than half the training size of {self.resolution} px: "
                                 "upscaled, the slider may come out soft")
        return out

    def prepare(self) -> None:
        s = self.slider
        t0 = time.perf_counter()
        self.batch = train.instance_batch(max(len(s.images), 4), self.loaded)
        if s.mode == "text":
            self.triples = slider_prompts(s)
            counts = dataset.split_counts(max(s.base_pictures, len(self.triples)), len(self.triples))
            wanted = [(t[0], c) for t, c in zip(self.triples, counts)]
            self.pictures = class_images.ensure(self.loaded, wanted, self.resolution, self.hooks)
            self.picture_prompt = torch.tensor([i for i, c in enumerate(counts) for _ in range(c)])
            self.sample_prompt = self.triples[0][0]
            self.digest = hashlib.sha256(repr(self.triples).encode()).hexdigest()[:16]
        else:
            self.low = self._square(s.images, "images")
            self.high = self._square(s.images_high, "images_high")
            self.captions = list(s.captions) if s.captions else [s.target.strip()] * len(self.low)
            self.sample_prompt = self.captions[0]
            self.digest = dataset.images_digest(list(s.images) + list(s.images_high))
        self.timings["prepare"] = time.perf_counter() - t0

    @torch.no_grad()
    def cache(self) -> None:
        t0 = time.perf_counter()
        vae = self.loaded.base.vae
        self.scaling = float(vae.config.scaling_factor)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        ids, te = self.cond.ids, self.cond.encode
        if self.slider.mode == "text":
            self.mean, self.std = dataset.encode(vae, self.pictures, self.device)
            self.target_emb, self.pos_emb, self.neg_emb = (
                te(ids([t[k] for t in self.triples])) for k in range(3))
        else:
            self.low_mean, self.low_std = dataset.encode(vae, self.low, self.device)
            self.high_mean, self.high_std = dataset.encode(vae, self.high, self.device)
            self.caption_emb = te(ids(self.captions))
            self.empty_emb = te(ids([""]))
        self.timings["cache"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ the objective

    def _set_scale(self, weight: float) -> None:
        """The training adapter's weight (its alpha equals its rank, so this is the LoRA's factor).

        The LoRA layers are looked up once (after ``setup`` injected them): a few calls a step."""
        layers = self.__dict__.get("_lora_layers")
        if layers is None:
            layers = self._lora_layers = adapters.tuner_layers(adapters.component(self.loaded, "unet"))
        for layer in layers:
            layer.set_scale(adapters.TRAIN_ADAPTER, float(weight))

    def _noise(self, latents: torch.Tensor):
        g = self.gen
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                          generator=g).to(self.device).long()
        return noise, t

    def _target(self, latents, noise, t):
        if self.noise_scheduler.config.prediction_type == "epsilon":
            return noise
        return self.noise_scheduler.get_velocity(latents, noise, t)

    def train_step(self) -> float:
        unet = self.loaded.base.unet
        g = self.gen
        try:
            if self.slider.mode == "text":
                idx = torch.randint(0, self.mean.shape[0], (self.batch,), generator=g)
                latents = self._latents(self.mean, self.std, idx)
                noise, t = self._noise(latents)
                noisy = self.noise_scheduler.add_noise(latents, noise, t)
                tri = self.picture_prompt[idx].to(self.device)
                emb = self.target_emb[tri]
                with torch.no_grad(), training_autocast(self.loaded.choice):
                    self._set_scale(0.0)     # the frozen model: its three predictions in one batch
                    frozen = self.cond.unet(unet, torch.cat([noisy] * 3), torch.cat([t] * 3),
                                            torch.cat([emb, self.pos_emb[tri], self.neg_emb[tri]])).float()
                e_t, e_pos, e_neg = frozen.chunk(3)
                delta = self.guidance * (e_pos - e_neg)
                wanted = {1.0: e_t + delta, -1.0: e_t - delta}
                inputs = {1.0: noisy, -1.0: noisy}
            else:
                idx = torch.randint(0, self.low_mean.shape[0], (self.batch,), generator=g)
                high = self._latents(self.high_mean, self.high_std, idx)
                low = self._latents(self.low_mean, self.low_std, idx)
                noise, t = self._noise(high)   # one noise and one timestep for both ends of a pair
                emb = self.caption_emb[idx.to(self.device)]
                if CAPTION_DROPOUT > 0:
                    drop = (torch.rand(self.batch, generator=g) < CAPTION_DROPOUT).to(self.device)
                    emb = torch.where(drop[:, None, None], self.empty_emb, emb)
                inputs = {1.0: self.noise_scheduler.add_noise(high, noise, t),
                          -1.0: self.noise_scheduler.add_noise(low, noise, t)}
                wanted = {1.0: self._target(high, noise, t).float(), -1.0: self._target(low, noise, t).float()}
            loss = 0.0
            for weight in (1.0, -1.0):
                self._set_scale(weight)
                with training_autocast(self.loaded.choice):
                    pred = self.cond.unet(unet, inputs[weight], t, emb)
                loss = loss + F.mse_loss(pred.float(), wanted[weight])
        finally:
            self._set_scale(1.0)
        return self.optimise(loss)

    # ------------------------------------------------------------------ samples

    def _sample_at(self, weights: Sequence[float]) -> List:
        pipe = self.loaded.txt2img
        unet = self.loaded.base.unet
        mode = unet.training
        unet.eval()
        out = []
        try:
            with torch.inference_mode():
                for w in weights:
                    pipe.scheduler = make_scheduler(train.SAMPLE_SAMPLER, self.loaded.scheduler_config)
                    self._set_scale(w)
                    out += pipe(prompt=[self.sample_prompt], num_inference_steps=train.SAMPLE_STEPS,
                                guidance_scale=train.SAMPLE_CFG, width=self.resolution, height=self.resolution,
                                generator=generators([self.slider.seed]), output_type="pil").images
        finally:
            self._set_scale(1.0)
            unet.train(mode)
        return out

    def samples(self, n: int) -> List:
        """One seed at weights -1, 0, +1: the three pictures, or (``n == 1``, a progress preview) one strip."""
        pictures = self._sample_at(SAMPLE_WEIGHTS)
        if n != 1:
            return pictures
        from PIL import Image

        w, h = pictures[0].size
        strip = Image.new("RGB", (w * len(pictures), h))
        for i, p in enumerate(pictures):
            strip.paste(p, (i * w, 0))
        return [strip]

    # ------------------------------------------------------------------ the job

    def finish(self) -> Output:
        s, loaded = self.slider, self.loaded
        self.save_checkpoint()
        t0 = time.perf_counter()
        self.hooks.progress(self.step, s.steps, None, None, "samples")
        pictures = self.samples(len(SAMPLE_WEIGHTS))
        self.timings["samples"] = time.perf_counter() - t0
        meta = library.new_meta(
            trigger="", class_noun="", method="lora", rank=s.rank, steps=self.step, learning_rate=s.learning_rate,
            resolution=self.resolution, images=len(s.images), base_model=loaded.entry.name,
            base_fingerprint=loaded.fingerprint, base_arch=loaded.entry.arch, text_encoder=False,
            trigger_embedding=False, source="trained", seed=s.seed,
            slider=slider_meta(s, len(s.images)), sample_weights=list(SAMPLE_WEIGHTS),
            final_loss=self.final_loss(), train_seconds=round(self.timings.get("train", 0.0), 3),
        )
        info = self.store(s.name, s.steps, meta, pictures)
        return Output(
            images=[to_rgba_array(p) for p in pictures], seeds=[s.seed] * len(pictures), steps=self.step,
            timings=dict(self.timings),
            info={"concept": info.to_wire(), "sample_weights": list(SAMPLE_WEIGHTS), **self.run_info(meta)},
        )

    @property
    def guidance(self) -> float:
        return float(self.slider.guidance)


def with_model_defaults(req: TrainSlider, loaded) -> TrainSlider:
    """The request with its 0s filled in: the model's ``slider_training`` recommendation, else its
    ``concept_training`` rank and learning rate (a LoRA's effect scales with layer width either
    way), else the paper's SD1.5 values (:data:`SLIDER_FALLBACKS`)."""
    entry = loaded.entry
    own = getattr(entry, "slider_training", None) or {}
    concept = getattr(entry, "concept_training", None) or {}
    values = {}
    for key, fallback in SLIDER_FALLBACKS.items():
        values[key] = (getattr(req, key) or own.get(key)
                       or (concept.get(key) if key in ("rank", "learning_rate") else None) or fallback)
    return dataclasses.replace(req, **values)


def run_train_slider(engine, loaded, req: TrainSlider, hooks: JobHooks) -> Output:
    req = with_model_defaults(req, loaded)
    with torch.inference_mode(False), torch.enable_grad():
        return SliderTrainer(engine, loaded, req, hooks).run()
