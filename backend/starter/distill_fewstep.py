"""Distil a starter-like model into an LCM-LoRA: the same model painting in 1-4 steps (tooling, one command).

    python -m impasto.backend.starter.distill_fewstep --out OUT --work WORK [--model DIR] [--steps 4000]

Run the same command again to resume from ``WORK/checkpoint.pt``; ``OUT``
receives ``starter-lcm-lora.safetensors`` (library / diffusers peft keys,
importable with ``impasto concept import``; the file name makes the daemon's
few-step presets pick LCM, 4 steps, CFG 1 for it) and ``distill.json`` (the
run's settings, losses and, unless ``--eval 0``, a few-step evaluation).

**Why LCM distillation into a LoRA, not adversarial diffusion distillation.**

* *Small.*  The result is a LoRA on the existing UNet - a few hundred kB for
  the starter - riding on the model it was made from, exactly as artists use
  LCM-LoRA with SD1.5 / SDXL.  ADD trains a whole student UNet (a second copy
  of the model to ship).
* *No extra networks.*  ADD needs a discriminator on strong pretrained
  features (DINOv2 in the paper) - a download the project does not allow and
  a network far larger than the starter.  LCM needs only the model itself as
  its own teacher (its DDIM solver step) and target.
* *Stable and resumable.*  A regression loss (pseudo-Huber) on the
  consistency target; no adversarial game to balance, so a run can stop and
  resume at any checkpoint and a SHORT run already moves the right way.
* *What it costs:* LCM at 1 step is blurrier than ADD at 1 step (ADD's
  adversarial term is what keeps 1-step samples sharp); at 4 steps LCM is
  the established choice (LCM-LoRA, krita-ai-diffusion's live mode).

**The method** (Latent Consistency Models, Luo et al. 2023; LCM-LoRA, 2023),
written here from the papers' equations:

1. a training picture from the starter's own procedural domain (fresh every
   step: the data is infinite), encoded by the model's VAE; its caption
   encoded by the model's text encoder;
2. a skipping-step DDIM schedule of ``--ddim-steps`` (50) points over the
   1000 training timesteps: pick point ``t`` and its predecessor ``s = t - k``;
   noise the latent to ``t``;
3. teacher (the base model, LoRA off): classifier-free-guided noise
   prediction at a guidance ``w`` drawn from ``[--w-min, --w-max]`` (the
   guidance is distilled in: the LoRA paints at CFG 1), one DDIM step
   ``t -> s``;
4. student (LoRA on) at ``(x_t, t)`` and the target - the same student,
   without gradients, at ``(x_s, s)`` - each mapped through LCM's boundary
   parametrisation ``c_skip(t) x + c_out(t) x0(x, t)``
   (``sigma_data`` 0.5, timestep scaling 10), so that at ``t = 0`` the
   model is the identity;
5. pseudo-Huber loss between them (c = 0.001), AdamW on the LoRA only.

The evaluation judges the LoRA at 1, 2 and 4 LCM steps at CFG 1 against the
base model at 20 DDIM steps at its CFG 5 (the baseline) and the base alone at
the same few steps (controls), with the time per picture of each, all in the
same run, on held-out prompts of the model's own domain: ``--eval N`` prompts
of the 64 px shapes domain (``domain.eval_combos``, the detector), or for the
128 px scenes starter N prompts per kind (one object with size and place,
plain, two objects) built on the held-out triples and judged strictly
(``scenes_eval``: family by the per-family templates, colour, background,
place, size, count).  ``--eval-only`` judges a finished LoRA again.

This is tooling: nothing here runs in the daemon.  The shipped LoRA
(``backend/assets/starter-lcm-lora.safetensors``) rides on the starter it was
distilled from; ``engine/bundled.py`` makes it the starter's live model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from impasto.backend.engine.model_card import native_size, read_card
from impasto.protocol.atomic import write_atomic

from .run_tools import add_device_argument, atomic_save, run_device, stop_requests

ADAPTER = "lcm"
OUT_NAME = "starter-lcm-lora.safetensors"
CARD_NAME = "distill.json"
CHECKPOINT = "checkpoint.pt"
# what LCM-LoRA adapts (the same list as backend/tooling/tiny_lora.py's LCM_TARGETS)
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
           "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0
HUBER_C = 0.001


def log(msg: str) -> None:
    print(f"[distill {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- the model


def load(model_dir: Path, device: torch.device = torch.device("cpu")):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
        part.eval()
    return pipe


def target_modules(unet) -> List[str]:
    """Full names of the Linear / Conv2d modules LCM-LoRA adapts (whatever the UNet's size)."""
    out = []
    for name, mod in unet.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and any(
                name == t or name.endswith("." + t) for t in TARGETS):
            out.append(name)
    return out


def add_lora(unet, rank: int, seed: int) -> List[torch.nn.Parameter]:
    """A fresh LoRA (A gaussian, B zero: the student starts as the teacher); its trainable parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=target_modules(unet))
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_on(unet, on: bool) -> None:
    """Switch the LoRA on (student) or off (teacher) in every adapted layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for mod in unet.modules():
        if isinstance(mod, BaseTunerLayer):
            mod.enable_adapters(on)


def lora_state(unet) -> Dict[str, torch.Tensor]:
    """The LoRA as library tensors: ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (alpha == rank)."""
    out = {}
    for name, tensor in unet.state_dict().items():
        if f".{ADAPTER}." in name and ("lora_A" in name or "lora_B" in name):
            out["unet." + name.replace(f".{ADAPTER}.", ".")] = tensor.detach().float().contiguous().cpu()
    return out


def read_lora_file(path) -> Dict[str, torch.Tensor]:
    """A LoRA file written by :func:`export` (float16 or float32) as the float32 tensors
    :func:`load_lora_state` takes."""
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


def load_lora_state(unet, tensors: Dict[str, torch.Tensor]) -> None:
    own = dict(unet.named_parameters())
    for key, value in tensors.items():
        name = key[len("unet."):]
        module, _, kind = name.rpartition(".lora_")
        target = own[f"{module}.lora_{kind.split('.')[0]}.{ADAPTER}.weight"]
        with torch.no_grad():
            target.copy_(value)


# --------------------------------------------------------------------------- LCM's pieces


def boundary(t: torch.Tensor):
    """LCM's c_skip(t), c_out(t): the model is the identity at t = 0."""
    scaled = t.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
    c_out = scaled / (scaled ** 2 + SIGMA_DATA ** 2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def x0_and_eps(model_out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, prediction: str):
    """(clean latents, noise) from a model output of ``prediction`` type at cumulative alpha ``alpha``."""
    a = alpha.view(-1, 1, 1, 1)
    sa, s1 = a.sqrt(), (1 - a).sqrt()
    if prediction == "epsilon":
        return (x - s1 * model_out) / sa, model_out
    if prediction == "v_prediction":
        return sa * x - s1 * model_out, s1 * x + sa * model_out
    raise ValueError(f"prediction type {prediction!r} is not supported")


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (torch.sqrt((a.float() - b.float()) ** 2 + HUBER_C ** 2) - HUBER_C).mean()


# --------------------------------------------------------------------------- data


def domain_of(model_dir: Path) -> str:
    """Which procedural domain the model was trained on (impasto.json's native size: 128 = scenes)."""
    try:
        native = native_size(model_dir)
    except ValueError:
        native = 64
    return "scenes" if native >= 128 else "shapes"


def sample(domain: str, n: int, size: int, rng: np.random.Generator):
    """(uint8 pictures (n, size, size, 3), captions) of the model's training domain - training split only."""
    if domain == "scenes":
        from . import scenes

        imgs, caps, generic, _scenes = scenes.sample_batch(n, size, rng)
        # the starter was trained with the class-noun caption ("a red shape ...") on this fraction of scenes
        use_generic = rng.random(n) < scenes.GENERIC_CAPTION_FRACTION
        return np.asarray(imgs), [g if u else c for c, g, u in zip(caps, generic, use_generic)]
    from . import domain as D

    imgs, caps, _ = D.sample_batch(n, size, rng, combos=D.train_combos(), as_array=True)
    return imgs, caps


class TextCache:
    """Caption -> text-encoder hidden states (the starter's captions repeat: encode each once)."""

    def __init__(self, pipe, limit: int = 20000):
        self.pipe, self.limit, self.cache = pipe, limit, {}
        self.device = getattr(pipe, "device", None)   # the pipeline's (CPU or GPU)

    @torch.no_grad()
    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing and len(self.cache) + len(missing) > self.limit:
            # full: start over, re-encoding the whole batch (clearing after the lookup lost this batch's cached
            # captions: a KeyError about 800 steps into a 23-minute run, 2026-12-04)
            self.cache.clear()
            missing = list(dict.fromkeys(captions))
        if missing:
            tok = self.pipe.tokenizer(missing, padding="max_length", max_length=self.pipe.tokenizer.model_max_length,
                                      truncation=True, return_tensors="pt")
            ids = tok.input_ids if self.device is None else tok.input_ids.to(self.device)
            hidden = self.pipe.text_encoder(ids)[0]
            for c, h in zip(missing, hidden):
                self.cache[c] = h
        return torch.stack([self.cache[c] for c in captions])


# --------------------------------------------------------------------------- training


def train(args) -> Dict[str, object]:
    torch.set_num_threads(args.threads)
    device = run_device(args.device)
    model_dir = Path(args.model)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load(model_dir, device)
    unet, vae = pipe.unet, pipe.vae
    sched = pipe.scheduler.config
    prediction = sched.get("prediction_type", "epsilon")
    alphas = pipe.scheduler.alphas_cumprod.float().to(device)
    train_steps = int(sched.get("num_train_timesteps", 1000))
    k = train_steps // args.ddim_steps
    ddim_t = (torch.arange(1, args.ddim_steps + 1) * k - 1).to(device)   # 19, 39, ..., 999 for 50 points
    n_layers = len(target_modules(unet))
    params = add_lora(unet, args.rank, args.seed)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    domain = args.domain or domain_of(model_dir)
    size = int(unet.config.sample_size) * pipe.vae_scale_factor
    scale = float(vae.config.scaling_factor)
    text = TextCache(pipe)
    empty = text([""])
    state = {"step": 0, "losses": [], "seconds": 0.0}
    ckpt = work / CHECKPOINT
    settings = {k_: getattr(args, k_) for k_ in ("rank", "lr", "batch", "ddim_steps", "w_min", "w_max", "seed")}
    if args.init:
        settings["init"] = args.init
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved.get("settings") != settings or saved.get("model") != str(model_dir.resolve()):
            raise SystemExit(f"{ckpt} was made with other settings or another model ({saved.get('settings')}, "
                             f"{saved.get('model')}): use another --work folder, or delete it to start over")
        load_lora_state(unet, saved["lora"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        rng = np.random.default_rng()
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["py_rng"])
        log(f"resumed at step {state['step']} from {ckpt}")
    else:
        rng = np.random.default_rng(args.seed)
        random.seed(args.seed)
        if args.init:   # a warm start: the LoRA so far, distilled on (e.g. at another guidance range)
            load_lora_state(unet, read_lora_file(args.init))
            log(f"started from {args.init}")
    log(f"model {model_dir} ({domain} domain, {size} px, {prediction}, {device}), LoRA rank {args.rank} on "
        f"{n_layers} layers ({sum(p.numel() for p in params)} parameters), "
        f"steps {state['step']} -> {args.steps}")

    def save_checkpoint():
        atomic_save({"lora": lora_state(unet), "optimizer": opt.state_dict(), "state": state, "settings": settings,
                     "model": str(model_dir.resolve()), "numpy_rng": rng.bit_generator.state,
                     "torch_rng": torch.get_rng_state(), "py_rng": random.getstate()}, ckpt)

    deadline = time.monotonic() + args.minutes * 60 if args.minutes else math.inf
    t_run = time.monotonic()
    unet.train()
    with stop_requests() as stop:   # Ctrl-C or SIGTERM: taken between two steps, kept in the checkpoint
        while state["step"] < args.steps and time.monotonic() < deadline and not stop:
            imgs, caps = sample(domain, args.batch, size, rng)
            with torch.no_grad():
                x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
                latents = vae.encode(x).latent_dist.mean * scale
            cond = text(caps)
            uncond = empty.expand_as(cond)
            n = latents.shape[0]
            # drawn on the CPU's generator (the one the checkpoint keeps), whatever the device
            idx = torch.randint(0, args.ddim_steps, (n,)).to(device)
            t = ddim_t[idx]
            s = t - k                                                        # -1 for the first point: clean
            noise = torch.randn(latents.shape).to(device)
            a_t = alphas[t]
            a_s = torch.where(s >= 0, alphas[s.clamp(min=0)], torch.ones_like(a_t))
            x_t = a_t.sqrt().view(-1, 1, 1, 1) * latents + (1 - a_t).sqrt().view(-1, 1, 1, 1) * noise
            w = torch.empty(n).uniform_(args.w_min, args.w_max).view(-1, 1, 1, 1).to(device)
            # student at t
            lora_on(unet, True)
            out_t = unet(x_t, t, encoder_hidden_states=cond).sample
            x0_t, _ = x0_and_eps(out_t, x_t, a_t, prediction)
            c_skip, c_out = boundary(t)
            pred = c_skip * x_t + c_out * x0_t
            with torch.no_grad():
                # teacher: one guided DDIM step t -> s
                lora_on(unet, False)
                both = unet(torch.cat([x_t, x_t]), torch.cat([t, t]),
                            encoder_hidden_states=torch.cat([uncond, cond])).sample
                out_u, out_c = both.chunk(2)
                guided = out_u + w * (out_c - out_u)
                x0_g, eps_g = x0_and_eps(guided, x_t, a_t, prediction)
                x_s = a_s.sqrt().view(-1, 1, 1, 1) * x0_g + (1 - a_s).sqrt().view(-1, 1, 1, 1) * eps_g
                # target: the student at s
                lora_on(unet, True)
                s_in = s.clamp(min=0)
                out_s = unet(x_s, s_in, encoder_hidden_states=cond).sample
                x0_s, _ = x0_and_eps(out_s, x_s, torch.where(s >= 0, a_s, alphas[0].expand_as(a_s)), prediction)
                c_skip_s, c_out_s = boundary(torch.where(s >= 0, s, torch.zeros_like(s)))
                target = c_skip_s * x_s + c_out_s * x0_s
            loss = pseudo_huber(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state["step"] += 1
            state["losses"].append(round(float(loss.detach()), 6))
            if state["step"] % args.log_every == 0:
                recent = state["losses"][-args.log_every:]
                log(f"step {state['step']}/{args.steps} loss {np.mean(recent):.5f}")
            if args.checkpoint_every and state["step"] % args.checkpoint_every == 0:
                save_checkpoint()
    state["seconds"] = round(state["seconds"] + time.monotonic() - t_run, 1)
    save_checkpoint()
    if stop:
        log(f"stopped at step {state['step']}/{args.steps}, checkpoint saved: run the same command again to go on")
        raise SystemExit(130)
    unet.eval()
    lora_on(unet, True)
    path = export(out, unet, model_dir, state, settings, domain, args.dtype)
    load_lora_state(unet, read_lora_file(path))   # judge what was written
    card = {"method": "LCM distillation into a LoRA (see the module doc for why not ADD)",
            "command": "python -m impasto.backend.starter.distill_fewstep " + " ".join(sys.argv[1:]),
            "model": str(model_dir), "domain": domain, "settings": settings, "steps_done": state["step"],
            "train_seconds": state["seconds"], "threads": args.threads, "device": str(device),
            "loss_first_100": float(np.mean(state["losses"][:100])) if state["losses"] else None,
            "loss_last_100": float(np.mean(state["losses"][-100:])) if state["losses"] else None,
            "lora_file": path.name,
            # what the daemon picks for the file by its name (fewstep_presets.json, "starter LCM-LoRA")
            "recommended": {"sampler": "lcm_quadratic", "steps": 4, "cfg_scale": 1.0}}
    if args.eval and domain == "shapes":
        card["evaluation"] = evaluate(pipe, args.eval, args.seed, size)
    elif args.eval:
        card["evaluation"] = evaluate_scenes(pipe, args.eval, args.seed, size, kinds=args.eval_kinds.split(","))
    write_atomic(out / CARD_NAME, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    log(f"wrote {path} and {out / CARD_NAME}")
    return card


def export(out: Path, unet, model_dir: Path, state, settings, domain: str, dtype: str = "float16") -> Path:
    """The LoRA as a ``.safetensors`` file with library keys and the metadata an import reads."""
    from safetensors.torch import save_file

    from impasto.backend.engine.models import ModelEntry
    from impasto.backend.engine.pipelines import model_fingerprint

    # half precision on disk (half the package; the engine casts adapters to the model's dtype on load)
    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in lora_state(unet).items()}
    # the base's own name (its impasto.json), not its folder's: a copy of the starter distilled from a scratch
    # folder is still the starter to the engine, which matches the name and the fingerprint
    base_name = read_card(model_dir).get("name") or model_dir.name
    entry = ModelEntry(name=base_name, path=str(model_dir), format="diffusers", arch="sd15")
    meta = {"ss_output_name": "starter-lcm-lora", "impasto_method": "lora",
            "impasto_base_model": base_name,
            "impasto_base_fingerprint": model_fingerprint(entry), "impasto_base_arch": "sd15",
            "impasto_steps": str(state["step"]), "impasto_distill": json.dumps({"domain": domain, **settings}),
            "lora_adapter_metadata": json.dumps({"unet.lora_adapter_metadata": {"r": settings["rank"],
                                                                                "lora_alpha": settings["rank"]}})}
    path = out / OUT_NAME
    tmp = out / (OUT_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(pipe, n: int, seed: int, size: int) -> Dict[str, object]:
    """Held-out prompts judged by the detector: LoRA at 1/2/4 LCM steps (CFG 1) vs the base at 20 DDIM (CFG 5),
    and the base alone at the same few steps (controls)."""
    from impasto.backend.engine.samplers import make_scheduler

    from . import domain as D
    from .evaluate import generate, score

    combos = D.eval_combos()
    prompts = [D.caption(*combos[i % len(combos)]) for i in range(n)]
    base_sched = dict(pipe.scheduler.config)
    results: Dict[str, object] = {"prompts": n, "set": "held_out", "size": size}
    # controls: what the base model alone does with the same few steps (so the LoRA's share is visible)
    runs = [("base_ddim_20_cfg5", False, "ddim", 20, 5.0), ("base_ddim_4_cfg5", False, "ddim", 4, 5.0),
            ("base_lcm_4_cfg1", False, "lcm", 4, 1.0), ("base_lcm_2_cfg1", False, "lcm", 2, 1.0)] + \
        [(f"lcm_lora_{k}_cfg1", True, "lcm", k, 1.0) for k in (1, 2, 4)]
    for label, on, sampler, steps, cfg in runs:
        lora_on(pipe.unet, on)
        pipe.scheduler = make_scheduler(sampler, base_sched)
        t0 = time.perf_counter()
        imgs = generate(pipe, prompts, size, steps, cfg, seed)
        secs = (time.perf_counter() - t0) / n
        results[label] = {**score(imgs, prompts), "seconds_per_image": round(secs, 5)}
        log(f"eval {label}: {results[label]}")
    lora_on(pipe.unet, True)
    base = results["base_ddim_20_cfg5"]["seconds_per_image"]
    results["time_ratio_lcm4_over_base20"] = round(results["lcm_lora_4_cfg1"]["seconds_per_image"] / base, 3)
    return results


SCENES_RUNS = (("base_ddim_20_cfg5", False, "ddim", 20, 5.0), ("base_ddim_20_cfg3", False, "ddim", 20, 3.0),
               ("base_ddim_4_cfg5", False, "ddim", 4, 5.0),
               ("base_lcm_4_cfg1", False, "lcm", 4, 1.0), ("lcm_lora_1_cfg1", True, "lcm", 1, 1.0),
               ("lcm_lora_2_cfg1", True, "lcm", 2, 1.0), ("lcm_lora_4_cfg1", True, "lcm", 4, 1.0),
               # the LoRA's preset since 2026-12-05: LCM with DDIM's quadratic step selection (engine/quadratic_lcm.py)
               ("lcm_lora_2_quadratic", True, "lcm_quadratic", 2, 1.0),
               ("lcm_lora_4_quadratic", True, "lcm_quadratic", 4, 1.0))
#: the run the issue's target is read on: the sampler the shipped preset names (fewstep_presets.json)
TARGET_RUN = "lcm_lora_4_quadratic"
#: the attributes every kind of scenes prompt is judged on (scenes_eval.judge_scene)
SCENE_ATTRIBUTES = ("family", "colour", "bg", "place", "size", "count")


@torch.no_grad()
def evaluate_scenes(pipe, n: int, seed: int, size: int, kinds: Sequence[str] = ("one", "plain", "two"),
                    runs=SCENES_RUNS) -> Dict[str, object]:
    """The scenes starter's held-out prompts (``scenes_eval``: held-out triples, strict judges), ``n`` per kind:
    the LoRA at 1/2/4 LCM steps (CFG 1) vs the base at 20 DDIM steps, CFG 5 (the baseline), and the base alone
    at the same few steps and at 20 steps with CFG 3 (the starter's recommended guidance since 2026-12-02)
    (controls), same prompts, seeds and run.

    ``quality`` of a run = its "all attributes right" rate pooled over every prompt of every kind; its
    ``ratio_all`` is that over the baseline's (the issue's target: >= 0.9 at 4 steps).  Because the
    baseline itself gets few prompts all right (the starter's families are still weak), ``ratio_attributes``
    (the mean per-attribute rate over the baseline's) is reported beside it.
    """
    from diffusers import DDIMScheduler

    # the engine's own table, so a run here is the sampler an artist's job gets (at full strength)
    from impasto.backend.engine.samplers import make_scheduler

    from . import scenes as SC
    from . import scenes_eval as E
    from .evaluate import generate

    sets = {kind: E.prompt_scenes(kind, n, seed) for kind in kinds}
    prompts = {kind: [SC.caption(sc) for sc in scs] for kind, scs in sets.items()}
    total = sum(len(v) for v in prompts.values())
    base_sched = dict(pipe.scheduler.config)
    results: Dict[str, object] = {"set": "held_out triples (scenes_eval.prompt_scenes)", "judge": "strict "
                                  "(scenes_eval.judge_scene)", "prompts_per_kind": n, "kinds": list(kinds),
                                  "size": size, "seed": seed,
                                  "examples": {k: v[0] for k, v in prompts.items() if v}, "runs": {}}
    for label, on, sampler, steps, cfg in runs:
        lora_on(pipe.unet, on)
        pipe.scheduler = make_scheduler(sampler, base_sched)
        per_kind, seconds, judged = {}, 0.0, {a: 0 for a in ("all",) + SCENE_ATTRIBUTES}
        for kind in kinds:
            t0 = time.perf_counter()
            imgs = generate(pipe, prompts[kind], size, steps, cfg, seed, batch=16)
            seconds += time.perf_counter() - t0
            per_kind[kind] = E.score(imgs, sets[kind])
            for a in judged:
                judged[a] += per_kind[kind].get(a, 0.0) * len(imgs)
        pooled = {a: round(v / total, 4) for a, v in judged.items()}
        results["runs"][label] = {"lora": on, "sampler": sampler, "steps": steps, "cfg": cfg, "kinds": per_kind,
                                  "pooled": pooled, "seconds_per_image": round(seconds / total, 5)}
        log(f"eval {label}: pooled {pooled}, {seconds / total * 1000:.1f} ms/picture")
    lora_on(pipe.unet, True)
    pipe.scheduler = DDIMScheduler.from_config(base_sched)
    base = results["runs"]["base_ddim_20_cfg5"]
    for label, run in results["runs"].items():
        b_all, r_all = base["pooled"]["all"], run["pooled"]["all"]
        run["ratio_all"] = round(r_all / b_all, 3) if b_all else None
        b_attr = float(np.mean([base["pooled"][a] for a in SCENE_ATTRIBUTES]))
        run["ratio_attributes"] = round(float(np.mean([run["pooled"][a] for a in SCENE_ATTRIBUTES])) / b_attr, 3)
        run["time_vs_baseline"] = round(run["seconds_per_image"] / base["seconds_per_image"], 3)
    four = results["runs"].get(TARGET_RUN) or results["runs"].get("lcm_lora_4_cfg1")
    if four is not None:
        results["target"] = {"what": f"LoRA at 4 steps of {four['sampler']} >= 90 % of the baseline's all-right "
                                     "rate (pooled)",
                             "ratio_all": four["ratio_all"], "met": bool(four["ratio_all"] is not None
                                                                          and four["ratio_all"] >= 0.9)}
    return results


def parse_args(argv=None):
    from impasto.backend.engine.models import starter_dir

    ap = argparse.ArgumentParser(description="LCM-distil a starter-like model into a few-step LoRA (resumable)")
    ap.add_argument("--model", default=str(starter_dir() or ""), help="diffusers folder (default: the starter)")
    ap.add_argument("--out", required=True, help="folder for the LoRA file and distill.json")
    ap.add_argument("--work", required=True, help="checkpoint folder: the same command resumes from it")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop (and checkpoint) after this long; 0: no limit")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4,
                    help="LCM-LoRA's own rate. Not the starter's 30x concept rate: a short run at 3e-3 diverged "
                         "(loss 0.09 -> 0.61 at step 250; 4-step accuracy 6 %%), one at 1e-4 reached 97 %% "
                         "(docs/live.md)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--init", default="", help="start from this LoRA file (same rank and layers) instead of a fresh "
                    "LoRA; its steps are not counted in this run's")
    ap.add_argument("--w-min", type=float, default=2.0)
    ap.add_argument("--w-max", type=float, default=8.0)
    ap.add_argument("--domain", choices=("shapes", "scenes"), default=None, help="default: from the model's size")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    add_device_argument(ap)
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval", type=int, default=48,
                    help="held-out prompts to judge at the end (0: none); scenes domain: prompts per kind")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                    help="the exported file's precision (the checkpoint stays float32)")
    ap.add_argument("--eval-kinds", default="one,plain,two", help="scenes domain: kinds of held-out prompts")
    ap.add_argument("--eval-only", action="store_true",
                    help="judge the LoRA in --out (no training; --work untouched) and rewrite distill.json's "
                         "evaluation")
    args = ap.parse_args(argv)
    if not args.model:
        ap.error("no --model and no starter installed")
    return args


def eval_only(args) -> Dict[str, object]:
    """Judge the LoRA already in ``--out`` again (more prompts, another seed) and rewrite its card's evaluation."""
    torch.set_num_threads(args.threads)
    device = run_device(args.device)
    model_dir, out = Path(args.model), Path(args.out)
    tensors = read_lora_file(out / OUT_NAME)   # the shipped file's values
    rank = int(next(v.shape[0] for k, v in tensors.items() if "lora_A" in k))
    pipe = load(model_dir, device)
    add_lora(pipe.unet, rank, args.seed)
    load_lora_state(pipe.unet, tensors)
    lora_on(pipe.unet, True)
    domain = args.domain or domain_of(model_dir)
    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    card_path = out / CARD_NAME
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if domain == "shapes":
        card["evaluation"] = evaluate(pipe, args.eval, args.seed, size)
    else:
        card["evaluation"] = evaluate_scenes(pipe, args.eval, args.seed, size, kinds=args.eval_kinds.split(","))
    card["evaluation"]["command"] = "python -m impasto.backend.starter.distill_fewstep " + " ".join(sys.argv[1:])
    card["evaluation"]["threads"] = args.threads
    card["evaluation"]["device"] = str(device)
    write_atomic(card_path, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    log(f"rewrote {card_path}")
    return card


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    eval_only(args) if args.eval_only else train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
