"""The ``train`` job: a personal concept (DreamBooth-style LoRA) from a few pictures.

It runs on the daemon's worker like any other job: queued, progress after
every step with the loss, cancellable at every step, sample pictures every
``sample_every`` steps as progress previews.  What it does:

1. the pictures are squared to the training size; captions default to
   ``"a <trigger> <class noun>"`` (DreamBooth's rare-word identifier);
2. prior preservation (on by default): the base model draws the class prompts
   (the captions without the trigger) once; the pictures are cached per model;
3. everything that stays fixed is computed once before the loop: the VAE
   latent distribution of every picture, the text embeddings of every caption
   (unless the text encoder is trained too) - diffusers' reference script
   re-encodes them at every step;
4. a peft LoRA (``lora``: UNet attention ``to_q/to_k/to_v/to_out.0``;
   ``custom_diffusion``: cross-attention ``attn2.to_k/to_v`` only; optional
   text-encoder LoRA) is trained with the noise-prediction loss + the prior
   loss, AdamW, gradient clipping at 1.0 - the recipe of diffusers'
   ``train_dreambooth_lora.py``; fp16 autocast and gradient checkpointing on CUDA.
   Added to it (each measured on the starter model, ``docs/performance.md``):
   the unconditional prior (:data:`UNCOND_PRIOR`), the text prior
   (:data:`TEXT_PRIOR_WEIGHT`), neighbour prompts (:data:`NEIGHBOUR_PROMPTS`) and
   neighbour distillation (:data:`NEIGHBOUR_DISTILL`);
5. checkpoints every ``checkpoint_every`` steps and at a cancel, so
   ``Train(resume=True)`` continues where it stopped;
6. the concept is saved to the library atomically, with sample pictures.

The resident model is left exactly as it was: the training adapter is taken
out again and every parameter flag and module mode is put back.

Over 500 lines on purpose: one training job's whole life (prepare, cache, the
loop, checkpoints, finish) reads as one story; its parts that stand alone live
in ``dataset``, ``class_images``, ``checkpoint``, ``adapters`` and ``text_cond``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from impasto.protocol.messages import TRAIN_FALLBACKS, ErrorCode, Train

from impasto.backend.engine.denoise import generators
from impasto.backend.engine.errors import Cancelled, EngineError
from impasto.backend.engine.hooks import JobHooks
from impasto.backend.engine.images import to_rgba_array
from impasto.backend.engine.runners import Output
from impasto.backend.engine.gpu import adam_class, grad_scaler, training_autocast
from impasto.backend.engine.samplers import make_scheduler

from .text_cond import TextConditioning

# ``library`` by module: importing it may be what started the engine import that leads here
from . import adapters, checkpoint, class_images, dataset, library

log = logging.getLogger("impasto.concepts")

PRIOR_LOSS_WEIGHT = 1.0
# Share of prior-preservation examples trained with the empty prompt.  Classifier-free
# guidance extrapolates from the model's *unconditional* prediction; a concept that moves
# it (nothing in plain DreamBooth holds it in place) gets distorted at every CFG above 1.
# Anchoring it on the base model's own class pictures keeps it where it was.
UNCOND_PRIOR = 0.25
# With a text-encoder LoRA, the prompts of prior preservation also keep their *embeddings*:
# the encoder may change what the trigger means, not what "a red circle" means.  Free: the
# class prompts go through the encoder anyway, their base embeddings are cached.
TEXT_PRIOR_WEIGHT = 1.0
NEIGHBOUR_PROMPTS = 48      # prior prompts around the class (see dataset.neighbour_prompts), one picture each
# Neighbour distillation: on prompts around the class, the trained model's noise prediction is held
# at the base model's own, on noisy class pictures at any timestep.  No pictures are drawn for
# them: before the loop the base UNet predicts NEIGHBOUR_DISTILL_BANK (noisy picture, timestep,
# prompt) examples once, and each step trains on a few of them.  Of NEIGHBOUR_CANDIDATES
# prompts (dataset.neighbour_prompts) the NEIGHBOUR_DISTILL_KEEP whose text embedding is furthest
# from the class prompts' are kept: "a red circle" moves further from "a red shape" than "a red
# photo" does, and is what a concept can break.  Measured on the starter (docs/performance.md):
# circle/square/triangle prompts right with the concept on 64% -> 93-96%, stars with the trigger kept >= 92%.
NEIGHBOUR_DISTILL = 2.0     # weight of that loss (0 = off); only with prior preservation
NEIGHBOUR_CANDIDATES = 256
NEIGHBOUR_DISTILL_KEEP = 32
NEIGHBOUR_DISTILL_ROWS = 0.5   # rows per step, as a share of the instance batch
NEIGHBOUR_DISTILL_BANK = 512   # base-model examples predicted before the loop (at most steps x rows)
MAX_GRAD_NORM = 1.0
# The trigger embedding's learning rate, in units of the token table's spread (its std):
# the same relative step on SD1.5's 768-wide table as on a tiny model's.
TRIGGER_LR_SCALE = 0.2
# Keep each trigger row no longer than the longest row of the token table: a textual-inversion
# vector left free grows until it outshouts the prompt's other words (colours ignored).
TRIGGER_NORM_CAP = True
ADAM = dict(betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)   # diffusers' script defaults
SAMPLE_SAMPLER = "ddim"
SAMPLE_STEPS = 25
SAMPLE_CFG = 7.0
FINAL_SAMPLES = 2


def instance_batch(n_images: int, loaded) -> int:
    """Pictures per step.  4 (diffusers' default) where a step is cheap - any GPU, or
    a small model - else 1: on a CPU a full-size SD step is seconds, and short
    steps keep progress, previews and cancel responsive."""
    small = (loaded.entry.native_size or 512) <= 128
    if loaded.choice.device.type != "cpu" or small:
        return min(4, n_images)
    return 1


def training_resolution(req: Train, loaded) -> int:
    res = req.resolution or loaded.entry.native_size or 512
    mult = 8 * 2  # the VAE's factor, and one UNet level of headroom
    return max(mult, (res // mult) * mult)


def _checkpointing(model) -> bool:
    """Whether gradient (activation) checkpointing is on, for diffusers and transformers models."""
    for attr in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if attr in dir(type(model)):
            return bool(getattr(model, attr))
    return False


def set_checkpointing(model, on: bool) -> None:
    names = (("activation_checkpointing_enable", "enable_gradient_checkpointing", "gradient_checkpointing_enable")
             if on else
             ("activation_checkpointing_disable", "disable_gradient_checkpointing", "gradient_checkpointing_disable"))
    for name in names:
        fn = getattr(model, name, None)
        if fn is not None:
            fn()
            return


class _ModelSnapshot:
    """Module modes and gradient-checkpointing flags of the components, to restore."""

    def __init__(self, loaded):
        self.items = []
        for comp in ("unet", "text_encoder", "text_encoder_2", "vae"):
            model = getattr(loaded.base, comp, None)
            if model is not None:
                self.items.append((model, model.training, _checkpointing(model)))

    def restore(self) -> None:
        for model, training, gc in self.items:
            model.train(training)
            if _checkpointing(model) != gc:
                set_checkpointing(model, gc)


class Trainer:
    """One training run (a job); :func:`run_train` is its entry point."""

    def __init__(self, engine, loaded, req: Train, hooks: JobHooks):
        self.engine, self.loaded, self.req, self.hooks = engine, loaded, req, hooks
        self.warnings = hooks.warnings
        self.device = loaded.choice.device
        self.dtype = loaded.choice.dtype
        self.cuda = self.device.type == "cuda"
        self.timings: Dict[str, float] = {}
        self.distill_prompts: List[str] = []   # neighbour distillation (chosen in prepare/cache)
        self.distill_rows = 0
        self.resolution = training_resolution(req, loaded)
        self.text_encoder_lora = bool(req.train_text_encoder)
        self.cond = TextConditioning(loaded, self.resolution)
        self.trigger_emb = bool(getattr(req, "trigger_embedding", False)) and bool(req.trigger.strip())
        if self.trigger_emb and self.cond.sdxl:
            # the trigger embedding hooks one token table; SDXL has two (not trained yet): the LoRA carries it
            self.trigger_emb = False
            self.warnings.append("trigger embedding: not trained on SDXL models yet; the LoRA alone learns the "
                                 "trigger word")
        self.prior = bool(req.prior_preservation) and req.class_images > 0
        if self.prior and not req.class_noun.strip():
            self.warnings.append("no class noun given: prior preservation is off (name the class, e.g. 'dog')")
            self.prior = False
        self.trigger = req.trigger.strip()
        self.class_noun = req.class_noun.strip()
        self.ckpt_dir = checkpoint.training_dir(req.name)
        self.step = 0
        self.losses: List[float] = []
        self.step_times: List[float] = []
        self.last_saved = -1

    # ------------------------------------------------------------------ settings

    def settings(self) -> Dict[str, Any]:
        """What a checkpoint must agree with to be resumed."""
        return {
            "model_fingerprint": self.loaded.fingerprint,
            "method": self.req.method,
            "rank": self.req.rank,
            "resolution": self.resolution,
            "text_encoder": self.text_encoder_lora,
            "trigger_embedding": self.trigger_emb,
            "trigger": self.trigger,
            "class_noun": self.class_noun,
            "prior": self.prior,
            "neighbour_distill": NEIGHBOUR_DISTILL if self.prior else 0.0,
        }

    # ------------------------------------------------------------------ preparation

    def prepare(self) -> None:
        req = self.req
        t0 = time.perf_counter()
        self.pictures = dataset.prepare_images(req.images, self.resolution, self.warnings)
        self.captions = dataset.instance_captions(req.captions, len(self.pictures), self.trigger,
                                                  self.class_noun, self.warnings)
        self.digest = dataset.images_digest(req.images)
        self.batch = instance_batch(len(self.pictures), self.loaded)
        self.timings["prepare"] = time.perf_counter() - t0
        self.class_pictures: List = []
        self.class_captions: List[str] = []
        if self.prior:
            t0 = time.perf_counter()
            prompts = dataset.class_prompts(self.captions, self.trigger, self.class_noun)
            wanted = dataset.pair_counts(prompts, req.class_images)
            near = dataset.neighbour_prompts(prompts, self.class_noun,
                                             dataset.vocabulary_words(self.loaded.base.tokenizer),
                                             [self.trigger], NEIGHBOUR_PROMPTS, req.seed)
            wanted += [(p, 1) for p in near]
            self.class_pictures = class_images.ensure(self.loaded, wanted, self.resolution, self.hooks)
            self.class_captions = [p for p, c in wanted for _ in range(c)]
            self.timings["class_images"] = time.perf_counter() - t0
            self.distill_prompts = self.distill_candidates(prompts)

    def distill_candidates(self, class_prompts: List[str]) -> List[str]:
        """Neighbour prompts for distillation (none when it is off); cache() keeps the furthest."""
        if NEIGHBOUR_DISTILL <= 0:
            return []
        return dataset.neighbour_prompts(class_prompts, self.class_noun,
                                         dataset.vocabulary_words(self.loaded.base.tokenizer), [self.trigger],
                                         NEIGHBOUR_CANDIDATES, self.req.seed + 7)

    @torch.no_grad()
    def cache(self) -> None:
        """VAE latent distributions and text embeddings, once, before the loop."""
        t0 = time.perf_counter()
        base = self.loaded.base
        vae = base.vae
        self.scaling = float(vae.config.scaling_factor)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)

        self.inst_mean, self.inst_std = dataset.encode(vae, self.pictures, self.device)
        if self.class_pictures:
            self.class_mean, self.class_std = dataset.encode(vae, self.class_pictures, self.device)
        ids, te = self.cond.ids, self.cond.encode  # no adapter yet: these are the base model's embeddings
        self.inst_ids = ids(self.captions)
        self.class_ids = ids(self.class_captions) if self.class_captions else None
        self.empty_ids = ids([""])
        self.inst_emb = te(self.inst_ids)
        self.class_emb = te(self.class_ids) if self.class_ids is not None else None
        self.empty_emb = te(self.empty_ids)
        if self.distill_prompts and self.prior:
            self._choose_neighbours(te, ids)
            self._distill_bank()
        self.timings["cache"] = time.perf_counter() - t0

    def _choose_neighbours(self, te, ids) -> None:
        """Keep the distillation prompts furthest (in base text embedding) from the class prompts."""
        self.distill_ids = ids(self.distill_prompts)
        emb = torch.cat([te(self.distill_ids[i:i + 64]) for i in range(0, len(self.distill_ids), 64)])
        anchors = te(ids(dataset.class_prompts(self.captions, self.trigger, self.class_noun)))
        far = torch.cdist(emb.flatten(1).float(), anchors.flatten(1).float()).min(dim=1).values
        keep = torch.topk(far, min(NEIGHBOUR_DISTILL_KEEP, len(far))).indices.sort().values
        self.distill_ids, self.distill_emb = self.distill_ids[keep], emb[keep]
        self.distill_prompts = [self.distill_prompts[int(i)] for i in keep]

    def _distill_bank(self) -> None:
        """The base model's noise predictions for neighbour prompts on noisy class pictures, once.

        Its own seeded generator: a resumed training rebuilds the same bank.  Progress is
        stage ``"neighbours"``; cancel is honoured between chunks (a few UNet rows each)."""
        from diffusers import DDPMScheduler

        g = torch.Generator("cpu").manual_seed(int(self.req.seed) + 11)
        sched = DDPMScheduler.from_config(self.loaded.scheduler_config)
        self.distill_rows = max(1, round(self.batch * NEIGHBOUR_DISTILL_ROWS))
        size = max(self.distill_rows, min(NEIGHBOUR_DISTILL_BANK, self.req.steps * self.distill_rows))
        unet = self.loaded.base.unet
        noisy, times, which, teacher = [], [], [], []
        chunk = 4 * self.batch
        for start in range(0, size, chunk):
            self.hooks.check()
            self.hooks.progress(start, size, None, None, "neighbours")
            n = min(chunk, size - start)
            cidx = torch.randint(0, self.class_mean.shape[0], (n,), generator=g)
            latents = self._latents(self.class_mean, self.class_std, cidx, g)
            noise = torch.randn(latents.shape, generator=g).to(self.device)
            t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=g).to(self.device).long()
            p = torch.randint(0, len(self.distill_prompts), (n,), generator=g).to(self.device)
            x = sched.add_noise(latents, noise, t)
            with training_autocast(self.loaded.choice):
                pred = self.cond.unet(unet, x, t, self.distill_emb[p])
            noisy.append(x)
            times.append(t)
            which.append(p)
            teacher.append(pred.float())
        self.bank = (torch.cat(noisy), torch.cat(times), torch.cat(which), torch.cat(teacher))

    # ------------------------------------------------------------------ model

    def unet_layers(self) -> str:
        """The UNet layer set a LoRA trains (``attention`` or ``locon``): the model's ``concept_training``."""
        return (getattr(self.loaded.entry, "concept_training", None) or {}).get("unet_layers", "attention")

    def setup(self, resume: Optional[checkpoint.Checkpoint]) -> None:
        req = self.req
        loaded = self.loaded
        layers = self.unet_layers()
        params = adapters.inject_training(loaded, "unet", adapters.unet_targets(req.method, layers), req.rank,
                                          req.seed)
        if self.text_encoder_lora:
            for i, comp in enumerate(self.cond.encoders):   # SDXL: both text encoders
                params += adapters.inject_training(loaded, comp, adapters.TEXT_ENCODER_TARGETS, req.rank,
                                                   req.seed + 1 + i)
        self.params = params
        groups = [dict(params=params, lr=req.learning_rate)]
        self.trigger_params: List[torch.nn.Parameter] = []
        if self.trigger_emb:
            delta = adapters.inject_training_trigger(loaded, self.trigger)
            if delta is None:
                self.trigger_emb = False
            else:
                self.trigger_params = [delta]
                table = loaded.base.text_encoder.get_input_embeddings().weight.detach().float()
                table_std = float(table.std())
                self.trigger_cap = float(table.norm(dim=1).max())
                groups.append(dict(params=self.trigger_params, lr=TRIGGER_LR_SCALE * table_std, weight_decay=0.0))
        self.gen = torch.Generator("cpu").manual_seed(int(req.seed))
        if resume is not None:
            tensors = resume.adapter()
            for comp in self.components():
                adapters.load_training_state(loaded, comp, tensors)
            if self.trigger_emb:
                adapters.load_training_trigger(loaded, tensors)
        lrs = [g["lr"] for g in groups]
        self.optimizer = adam_class(loaded.choice)(groups, **ADAM)
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer())
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr
            self.gen.set_state(resume.rng())
            self.step = resume.step
            self.last_saved = resume.step
            self.losses = list(resume.state.get("losses", []))
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(loaded.scheduler_config)
        self.scaler = grad_scaler(loaded.choice)
        unet = loaded.base.unet
        unet.train()
        if self.text_encoder_lora:
            for comp in self.cond.encoders:
                getattr(loaded.base, comp).train()
        if req.gradient_checkpointing:
            set_checkpointing(unet, True)
            if self.text_encoder_lora:
                for comp in self.cond.encoders:
                    set_checkpointing(getattr(loaded.base, comp), True)

    def components(self) -> List[str]:
        return ["unet"] + (list(self.cond.encoders) if self.text_encoder_lora else [])

    def adapter_tensors(self, checkpoint: bool = False) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for comp in self.components():
            out.update(adapters.training_state_dict(self.loaded, comp))
        if self.trigger_emb:
            out.update(adapters.training_trigger_state(self.loaded, checkpoint))
        return out

    # ------------------------------------------------------------------ the loop

    def _latents(self, mean, std, idx, g: Optional[torch.Generator] = None):
        """Scaled latents drawn from the cached distributions (``g``: the training's generator by default)."""
        g = self.gen if g is None else g
        eps = torch.randn(mean[idx].shape, generator=g).to(self.device)
        return ((mean[idx] + std[idx] * eps) - self.shift) * self.scaling

    def train_step(self) -> float:
        g = self.gen
        n = self.inst_mean.shape[0]
        idx = torch.randint(0, n, (self.batch,), generator=g)
        latents = self._latents(self.inst_mean, self.inst_std, idx)
        parts_ids = [self.inst_ids[idx.to(self.device)]]
        parts_emb = [self.inst_emb[idx.to(self.device)]]
        if self.prior:
            cidx = torch.randint(0, self.class_mean.shape[0], (self.batch,), generator=g)
            uncond = (torch.rand(self.batch, generator=g) < UNCOND_PRIOR).to(self.device)
            latents = torch.cat([latents, self._latents(self.class_mean, self.class_std, cidx)])
            class_ids = self.class_ids[cidx.to(self.device)]
            parts_ids.append(torch.where(uncond[:, None], self.empty_ids, class_ids))
            class_emb = self.class_emb[cidx.to(self.device)]
            parts_emb.append(torch.where(uncond[:, None, None], self.empty_emb, class_emb))
        bsz = latents.shape[0]
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,),
                                  generator=g).to(self.device).long()
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        distill = self.prior and bool(self.distill_prompts)
        if distill:  # a few of the base model's own predictions for neighbour prompts, appended
            b_noisy, b_t, b_prompt, b_teacher = self.bank
            pick = torch.randint(0, b_noisy.shape[0], (self.distill_rows,), generator=g).to(self.device)
            k, teacher = self.distill_rows, b_teacher[pick]
            noisy = torch.cat([noisy, b_noisy[pick]])
            timesteps = torch.cat([timesteps, b_t[pick]])
            parts_ids.append(self.distill_ids[b_prompt[pick]])
            parts_emb.append(self.distill_emb[b_prompt[pick]])
        unet = self.loaded.base.unet
        with training_autocast(self.loaded.choice):
            text_prior = None
            if not self.text_encoder_lora and not self.trigger_emb:
                hidden = torch.cat(parts_emb)   # cached
            elif not self.text_encoder_lora:
                # only the captions with the trigger change; prompts without it read as the base model's
                hidden = torch.cat([self.cond.encode(parts_ids[0])] + parts_emb[1:])
            else:
                hidden = self.cond.encode(torch.cat(parts_ids))
                if len(parts_emb) > 1:
                    n_inst = parts_ids[0].shape[0]
                    text_prior = F.mse_loss(hidden[n_inst:].float(), torch.cat(parts_emb[1:]).float())
            pred = self.cond.unet(unet, noisy, timesteps, hidden)
            if distill:
                distill_loss = F.mse_loss(pred[-k:].float(), teacher)
                pred, timesteps = pred[:-k], timesteps[:-k]
        kind = self.noise_scheduler.config.prediction_type
        target = noise if kind == "epsilon" else self.noise_scheduler.get_velocity(latents, noise, timesteps)
        pred, target = pred.float(), target.float()
        if self.prior:
            pred, pred_prior = pred.chunk(2)
            target, target_prior = target.chunk(2)
            loss = F.mse_loss(pred, target) + PRIOR_LOSS_WEIGHT * F.mse_loss(pred_prior, target_prior)
            if text_prior is not None:
                loss = loss + TEXT_PRIOR_WEIGHT * text_prior
        else:
            loss = F.mse_loss(pred, target)
        if distill:
            loss = loss + NEIGHBOUR_DISTILL * distill_loss
        return self.optimise(loss)

    def optimise(self, loss) -> float:
        """One optimiser step on ``loss`` (fp16 loss scaling where the device uses it); the loss as a float."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._clip()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.trigger_params and TRIGGER_NORM_CAP:
            adapters.cap_training_trigger(self.loaded, self.trigger_cap)
        return float(loss.detach())

    def _clip(self) -> None:
        """Gradient clipping, the LoRA and the trigger embedding each on their own (their scales differ)."""
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        if self.trigger_params:
            torch.nn.utils.clip_grad_norm_(self.trigger_params, MAX_GRAD_NORM)

    def save_checkpoint(self) -> None:
        if self.step <= 0 or self.step == self.last_saved:
            return
        checkpoint.save(self.ckpt_dir, self.step, self.adapter_tensors(checkpoint=True), self.optimizer.state_dict(),
                        self.gen.get_state(), dict(self.settings(), digest=self.digest, total=self.req.steps,
                                                   losses=self.losses[-200:]))
        self.last_saved = self.step

    def samples(self, n: int) -> List:
        """Pictures of the first caption with the adapter as trained so far (fixed seeds)."""
        pipe = self.loaded.txt2img
        pipe.scheduler = make_scheduler(SAMPLE_SAMPLER, self.loaded.scheduler_config)
        models = [self.loaded.base.unet] + [getattr(self.loaded.base, c) for c in self.cond.encoders]
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        try:
            with torch.inference_mode():
                out = pipe(prompt=[self.captions[0]] * n, num_inference_steps=SAMPLE_STEPS,
                           guidance_scale=SAMPLE_CFG, width=self.resolution, height=self.resolution,
                           generator=generators([self.req.seed + i for i in range(n)]), output_type="pil")
        finally:
            for m, mode in zip(models, modes):
                m.train(mode)
        return list(out.images)

    def loop(self) -> None:
        req, hooks = self.req, self.hooks
        total = req.steps
        t_loop = time.perf_counter()
        try:
            while self.step < total:
                hooks.steps_done = self.step   # a cancel reports the training steps run
                hooks.check()
                t0 = time.perf_counter()
                loss = self.train_step()
                self.step += 1
                self.step_times.append(time.perf_counter() - t0)
                if not math.isfinite(loss):
                    raise EngineError(ErrorCode.INTERNAL, f"training diverged at step {self.step} (loss {loss}): "
                                      "lower the learning rate", "learning_rate")
                self.losses.append(round(loss, 6))
                preview = None
                hooks.steps_done = self.step
                if req.preview and req.sample_every and self.step % req.sample_every == 0 and self.step < total:
                    hooks.check()
                    preview = self.samples(1)[0]
                hooks.progress(self.step, total, preview, loss, "train")
                if req.checkpoint_every and self.step % req.checkpoint_every == 0 and self.step < total:
                    self.save_checkpoint()
        except Cancelled:
            self.save_checkpoint()  # a cancel keeps its progress: resume continues from here
            raise
        finally:
            self.timings["train"] = time.perf_counter() - t_loop

    # ------------------------------------------------------------------ the job

    def finish(self) -> Output:
        req, loaded = self.req, self.loaded
        self.save_checkpoint()  # if saving to the library fails (disk full), resume can still save it
        t0 = time.perf_counter()
        self.hooks.progress(self.step, req.steps, None, None, "samples")
        pictures = self.samples(FINAL_SAMPLES)
        self.timings["samples"] = time.perf_counter() - t0
        meta = library.new_meta(
            trigger=self.trigger, class_noun=self.class_noun, method=req.method, rank=req.rank, steps=self.step,
            learning_rate=req.learning_rate, resolution=self.resolution, images=len(self.pictures),
            captions=self.captions, prior_preservation=self.prior, class_images=len(self.class_pictures),
            base_model=loaded.entry.name, base_fingerprint=loaded.fingerprint, base_arch=loaded.entry.arch,
            text_encoder=self.text_encoder_lora, trigger_embedding=self.trigger_emb, source="trained", seed=req.seed,
            final_loss=self.final_loss(), train_seconds=round(self.timings.get("train", 0.0), 3),
        )
        info = self.store(req.name, req.steps, meta, pictures)
        return Output(
            images=[to_rgba_array(p) for p in pictures], seeds=[req.seed + i for i in range(len(pictures))],
            steps=self.step, timings=dict(self.timings),
            info={"concept": info.to_wire(), **self.run_info(meta), "distilled_prompts": list(self.distill_prompts)},
        )

    def final_loss(self):
        """The mean loss of the last 20 steps (None before any step): what the summary and the concept report."""
        return round(statistics.fmean(self.losses[-20:]), 6) if self.losses else None

    def store(self, name: str, total_steps: int, meta: dict, pictures):
        """Save the trained adapter as the library's concept ``name`` (one of that name is replaced, with a
        warning), then drop the checkpoint."""
        t0 = time.perf_counter()
        lib = library.ConceptLibrary()
        replaced = lib.find(name) is not None
        info = lib.save(name, self.adapter_tensors(), meta, pictures, replace=True)
        if replaced:
            self.warnings.append(f"the earlier concept {name!r} was replaced")
        checkpoint.clear(self.ckpt_dir)
        self.timings["save"] = time.perf_counter() - t0
        self.hooks.progress(self.step, total_steps, None, None, "saved")
        return info

    def run_info(self, meta: dict) -> dict:
        """How this run went, for the result's info (the CLI's summary reads it)."""
        step_median = statistics.median(self.step_times) if self.step_times else 0.0
        return {"steps_this_run": len(self.step_times), "resumed_from": self.resumed_from, "batch": self.batch,
                "step_median_s": round(step_median, 6), "final_loss": meta["final_loss"]}

    def check_input(self) -> None:
        """Refuse unusable input before anything is changed (a slider trainer checks its own)."""
        dataset.check_count(self.req.images)

    def run(self) -> Output:
        req = self.req
        self.check_input()  # before anything is changed
        resume = None
        if req.resume:
            resume = checkpoint.latest(self.ckpt_dir)
            if resume is None:
                raise EngineError(ErrorCode.NOT_FOUND, f"resume: no checkpoint of a training named {req.name!r} to "
                                  "resume (train it without resume)", "resume")
            diff = [k for k, v in self.settings().items() if resume.state.get(k) != v]
            if diff:
                was = ", ".join(f"{k} {resume.state.get(k)!r}" for k in diff)
                raise EngineError(ErrorCode.BAD_FIELD, f"resume: the checkpoint of {req.name!r} was made with "
                                  f"{was}: resume with the same settings, or train anew", "resume")
        else:
            old = checkpoint.latest(self.ckpt_dir)
            if old is not None:
                self.warnings.append(f"an unfinished training of {req.name!r} (step {old.step}) was discarded; "
                                     "use resume to continue one")
            checkpoint.clear(self.ckpt_dir)
        self.resumed_from = resume.step if resume is not None else 0
        adapters.unload_all(self.loaded)   # concept adapters out (the next job reloads what it uses)
        snapshot = _ModelSnapshot(self.loaded)
        try:
            self.hooks.progress(0, req.steps, None, None, "prepare")
            self.prepare()
            if resume is not None and resume.state.get("digest") != self.digest:
                self.warnings.append("the pictures differ from the ones the checkpoint was trained on")
            self.cache()
            self.setup(resume)
            self.loop()
            return self.finish()
        finally:
            adapters.unload_all(self.loaded)
            snapshot.restore()
            self.optimizer = None
            if self.cuda:
                torch.cuda.empty_cache()


def with_model_defaults(req: Train, loaded) -> Train:
    """The request with its 0s (rank, steps, learning rate) and its unset text-encoder choice
    filled in: the model's own recommendation from its impasto.json, else diffusers' SD1.5 values.  A LoRA's effect
    scales with the width of the layers it sits on, so a 1 M-parameter model needs a
    learning rate ~30x SD1.5's (docs/concepts.md)."""
    recommended = getattr(loaded.entry, "concept_training", None) or {}
    values = {key: getattr(req, key) or recommended.get(key) or fallback for key, fallback in TRAIN_FALLBACKS.items()}
    if req.train_text_encoder is None:
        values["train_text_encoder"] = bool(recommended.get("train_text_encoder", False))
    return dataclasses.replace(req, **values)


def run_train(engine, loaded, req: Train, hooks: JobHooks) -> Output:
    req = with_model_defaults(req, loaded)
    # gradients on, whatever the caller's context (a script under no_grad / inference_mode)
    with torch.inference_mode(False), torch.enable_grad():
        return Trainer(engine, loaded, req, hooks).run()

