"""Train the Impasto starter model (Stable Diffusion architecture, tiny).

    python -m impasto.backend.starter.train --out DIR [--minutes N] [--resume]
    python -m impasto.backend.starter.train --domain scenes --out DIR --work /work/ckpt-starter ...

Two domains: ``shapes`` (the shipped starter: one shape of 3 families, 64 px,
``domain.py``) and ``scenes`` (the richer one: 1-3 shapes of 12 families with
sizes and places named, 128 px, ``scenes.py``).  In both, the VAE, the latent
cache and the UNet see only training shapes: held-out families (the concept
benchmark's) never enter any stage (``tests/test_starter_split.py``).

Stages (all state lives in ``--work``, default /tmp/starter_work, and is
checkpointed so that ``--resume`` continues where a run stopped):

1. tokenizer: a local CLIP BPE vocabulary where every domain word is one token
   and every letter a-z (with and without ``</w>``) exists, so unseen words fall
   back to letter tokens instead of the unknown token;
2. VAE (AutoencoderKL, 8x down, 4 latent channels) on generator images -
   or ``--vae DIR``, a trained one reused as it is (a new UNet for the shipped
   starter's VAE, whose decoder fine-tune, fast encoder and preview decoder
   then stay valid);
3. latents of a fixed pool of training scenes are cached (posterior mean,
   scaled to unit variance -> ``scaling_factor`` in the VAE config; a reused
   VAE keeps its own factor);
4. UNet2DConditionModel + CLIPTextModel trained jointly with the standard
   DDPM epsilon objective, caption dropout (classifier-free guidance), min-SNR
   loss weighting and an EMA of both - or, with ``--text-encoder DIR``, a
   trained model's text encoder and tokenizer kept frozen and the UNet alone;
5. export of the EMA weights as a diffusers folder loadable with
   ``StableDiffusionPipeline.from_pretrained(DIR, safety_checker=None,
   requires_safety_checker=False)``.

The time budget (``--minutes``) is split between the VAE and the UNet; the
number of UNet steps is fixed once (from a short speed measurement) and stored
in the checkpoint so the learning-rate schedule does not depend on wall time
after that.  ``--unet-steps`` fixes it explicitly (fully deterministic run).

``--init DIR`` instead starts the UNet and the text encoder from a trained model of the same
preset (a fine-tune on a new or bigger pool, with its own warm-up and schedule): its companions,
trained against that architecture, still load.

A run longer than one working session: the checkpoint (``WORK/unet.pt``) and the latent pool are
all a resume needs, so keep WORK where the next session finds it; on machines that are handed out
fresh, that means committing the checkpoint, since an ignored scratch folder does not come across
(a finished 30,000-step run was lost that way on 2026-12-03).

This file holds the UNet stage, the export and ``main``, which reads top to bottom
through the stages the way diffusers' training scripts do; each stage's code lives
in a module named for it: ``tokenizer.py``, ``train_vae.py``, ``latent_cache.py``,
with the configs in ``architecture.py`` and what every starter training script
shares (checkpoints, stop requests, schedule, EMA, device) in ``run_tools.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from impasto.backend.engine.model_card import card_path, read_card, write_card

from . import domain as D
from . import scenes as SC
from .architecture import SCHEDULER_CONFIG, TEXT_CONFIG, TEXT_CONFIG_SCENES, UNET_PRESETS, unet_config
from .latent_cache import build_latent_cache
from .run_tools import EMA, add_device_argument, atomic_save, log, run_device, set_seed, stop_requests, warmup_cosine
from .tokenizer import build_vocab, check_tokenizer, domain_tokenizer, write_tokenizer
from .train_vae import reused_vae, trained_vae


# -------------------------------------------------------------------- UNet
def tokenize_table(tok, combos):
    """Token ids for [uncond] + [specific captions] + [generic captions]."""
    caps = [""] + [D.caption(*c) for c in combos] + [D.caption(D.CLASS_NOUN, c[1], c[2]) for c in combos]
    ids = tok(caps, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    return ids


def make_pipeline(unet, vae, text_encoder, tokenizer, scheduler_cls="DDIMScheduler"):
    import diffusers
    from diffusers import StableDiffusionPipeline

    sched = getattr(diffusers, scheduler_cls).from_config(SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def quick_eval(pipe, combos, n_per=1, seed=0, steps=20, cfg=5.0, size=64):
    from .detector import judge

    prompts = [D.caption(*c) for c in combos for _ in range(n_per)]
    res = {"shape": 0, "fg": 0, "bg": 0, "all": 0}
    g = torch.Generator("cpu").manual_seed(seed)
    bs = 64
    for i in range(0, len(prompts), bs):
        p = prompts[i : i + bs]
        out = pipe(p, num_inference_steps=steps, guidance_scale=cfg, height=size, width=size,
                   generator=g, output_type="pil").images
        for img, cap in zip(out, p):
            j = judge(img, cap)
            for k in res:
                res[k] += int(j[k])
    return {k: v / len(prompts) for k, v in res.items()}


def train_unet(unet, text_encoder, tok, vae, cache, work: Path, args, device, deadline: float):
    from diffusers import DDPMScheduler
    from tqdm import tqdm

    ck = work / "unet.pt"
    noise_sched = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    acp = noise_sched.alphas_cumprod.to(device)
    snr = acp / (1 - acp)
    params = trained_params(unet, text_encoder)
    te_frozen = not any(p.requires_grad for p in text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2, betas=(0.9, 0.99))
    ema = EMA(params, args.ema)
    step, total = 0, args.unet_steps
    schedule_notes = []
    if ck.exists():
        st = torch.load(ck, map_location="cpu", weights_only=False)
        unet.load_state_dict(st["unet"])
        text_encoder.load_state_dict(st["te"])
        opt.load_state_dict(st["opt"])
        ema.shadow = [s.to(device) for s in st["ema"]]
        step, total = st["step"], st["total"]
        schedule_notes = list(st.get("schedule_notes", []))
        torch.set_rng_state(st["torch_rng"])
        log(f"UNet: resumed at step {step}/{total}")
        if args.reschedule and args.reschedule != total:
            if args.reschedule <= step:
                raise SystemExit(f"--reschedule {args.reschedule} is not after the current step {step}")
            old = (warmup_cosine(step, total, args.lr, args.warmup), total)
            total = args.reschedule
            note = (f"at step {step} the cosine schedule's length was changed from {old[1]} to {total} steps "
                    f"(learning rate {old[0]:.2e} -> {warmup_cosine(step, total, args.lr, args.warmup):.2e})")
            schedule_notes.append(note)
            log("UNet: " + note)
        if step >= total:
            return ema
    lat = cache["latents"].to(device)
    gen = torch.Generator("cpu").manual_seed(args.seed + 3 + step)
    if "captions" in cache:  # richer domain: one caption per cached scene
        def ids_of(caps):
            return tok(caps, padding="max_length", max_length=tok.model_max_length, truncation=True,
                       return_tensors="pt").input_ids.to(device)
        spec, generic, empty = ids_of(cache["captions"]), ids_of(cache["generic"]), ids_of([""])[0]

        def batch():
            i = torch.randint(0, lat.shape[0], (args.batch,), generator=gen).to(device)
            u = torch.rand(args.batch, generator=gen).to(device)
            ids = torch.where((u < args.generic)[:, None], generic[i], spec[i])
            ids = torch.where((u > 1 - args.cond_drop)[:, None], empty[None].expand_as(ids), ids)
            return lat[i], ids
    else:
        cidx = cache["combo"].to(device)
        ids_table = tokenize_table(tok, cache["combos"]).to(device)
        ncombo = len(cache["combos"])
        batch = None

    def batch_combo():
        i = torch.randint(0, lat.shape[0], (args.batch,), generator=gen).to(device)
        c = cidx[i]
        u = torch.rand(args.batch, generator=gen).to(device)
        row = 1 + c  # specific caption
        row = torch.where(u < args.generic, 1 + ncombo + c, row)
        row = torch.where(u > 1 - args.cond_drop, torch.zeros_like(row), row)
        x0 = lat[i]
        if args.flip:  # horizontal flip: every shape here is mirror symmetric
            f = (torch.rand(args.batch, generator=gen) < 0.5).to(device)
            x0 = torch.where(f[:, None, None, None], x0.flip(-1), x0)
        return x0, ids_table[row]

    if batch is None:
        batch = batch_combo

    def one_step(s):
        x0, ids = batch()
        # drawn on the CPU generator (the same stream on any device, resumable), then moved
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(device)
        xt = noise_sched.add_noise(x0, noise, t)
        with torch.set_grad_enabled(not te_frozen):
            enc = text_encoder(ids)[0]
        pred = unet(xt, t, encoder_hidden_states=enc).sample
        w = torch.clamp(snr[t], max=args.min_snr) / snr[t] if args.min_snr > 0 else torch.ones_like(snr[t])
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
        lr = lr_at(s)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(params, s)
        return loss.item()

    def lr_at(s):
        return warmup_cosine(s, total, args.lr, args.warmup)   # ``total`` is fixed after the speed probe

    unet.train()
    text_encoder.train(not te_frozen)
    if total is None:  # measure speed, fix the number of steps once
        total = 10**9
        for k in range(25):
            if k == 5:
                t0 = time.time()
            one_step(step)
            step += 1
        dt = (time.time() - t0) / 20
        remaining = deadline - time.time()
        total = max(step + 100, int(step + remaining / dt * args.speed_margin))
        log(f"UNet: {dt * 1000:.0f} ms/step -> {total} steps planned")
    pbar = tqdm(desc="unet", initial=step, total=total, mininterval=30, file=sys.stdout)
    last_ck, run_loss = time.time(), None

    def save(done=False):
        atomic_save({
            "unet": unet.state_dict(), "te": text_encoder.state_dict(), "opt": opt.state_dict(),
            "ema": [s.cpu() for s in ema.shadow], "step": step, "total": total,
            "schedule_notes": schedule_notes, "torch_rng": torch.get_rng_state(),
        }, ck)

    with stop_requests() as stop:
        while step < total:
            if stop:   # Ctrl-C or SIGTERM, taken between two steps: the checkpoint holds every finished one
                pbar.close()
                save()
                log(f"UNet: stopped at step {step}/{total}, checkpoint saved: run again with --resume")
                raise SystemExit(130)
            if time.time() > deadline + args.grace * 60:
                log(f"UNet: time budget exhausted at step {step}/{total}")
                break
            loss = one_step(step)
            step += 1
            run_loss = loss if run_loss is None else 0.98 * run_loss + 0.02 * loss
            pbar.update(1)
            if step % 50 == 0:
                pbar.set_postfix(loss=f"{run_loss:.4f}", lr=f"{lr_at(step):.2e}")
            if time.time() - last_ck > args.ckpt_minutes * 60:
                save()
                last_ck = time.time()
            if args.eval_every and step % args.eval_every == 0 and args.domain == "shapes":
                ev = evaluate_ema(unet, text_encoder, tok, vae, ema, params, args)
                log(f"step {step}: loss {run_loss:.4f} eval {ev}")
    pbar.close()
    save()
    log(f"UNet: finished at step {step}/{total}")
    return ema


def trained_params(unet, text_encoder) -> list:
    """What the optimizer and the EMA hold: the UNet, and the text encoder unless it is frozen (``--text-encoder``)."""
    return list(unet.parameters()) + [p for p in text_encoder.parameters() if p.requires_grad]


def init_from(folder: Path, unet, text_encoder) -> None:
    """``--init``: copy a trained model's UNet and text encoder weights into the freshly built ones
    (``text_encoder`` None: the UNet only - with ``--text-encoder`` the run keeps that one frozen).

    Why a fine-tune and not a fresh run: a run that continues the shipped starter keeps its
    architecture, so the companions trained against it (control model, LCM-LoRA, sliders) still
    load, and a few thousand steps on a bigger pool cost a fraction of the 30,000 a fresh one needs.
    The presets must match exactly (``--unet``); torch's strict load names what differs.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    for name, model, cls, sub in (("UNet", unet, UNet2DConditionModel, "unet"),
                                  ("text encoder", text_encoder, CLIPTextModel, "text_encoder")):
        if model is None:    # --text-encoder: a frozen one of its own
            continue
        try:
            model.load_state_dict(cls.from_pretrained(str(folder / sub)).state_dict())
        except RuntimeError as e:   # missing, unexpected or differently shaped weights
            raise SystemExit(f"--init {folder}: its {name} does not fit the one built here; pass the --unet "
                             f"preset it was trained with ({str(e)[:300]})") from None
    log(f"{'UNet and text encoder' if text_encoder is not None else 'UNet'} initialised from {folder}")


def frozen_text_encoder(folder: Path, words, device):
    """``--text-encoder``: a trained starter's text encoder and tokenizer, kept as they are.

    The UNet then learns only the picture side of captions whose meaning is already settled;
    a matched test trained the wide UNet this way (docs/performance.md).  The tokenizer must be
    the domain's, so that the exported ``vocab.json`` still matches it.  -> (tokenizer, encoder)
    """
    from transformers import CLIPTextModel

    folder = Path(folder)
    tok = domain_tokenizer(folder, words, "--text-encoder")
    te = CLIPTextModel.from_pretrained(str(folder / "text_encoder")).to(device)
    te.eval().requires_grad_(False)
    return tok, te


def evaluate_ema(unet, text_encoder, tok, vae, ema, params, args, n_per=1):
    backup = [p.detach().clone() for p in params]
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    pipe = make_pipeline(unet, vae, text_encoder, tok)
    held = quick_eval(pipe, D.eval_combos(), n_per=n_per, size=args.size)
    ind = quick_eval(pipe, D.train_combos()[::4], n_per=n_per, size=args.size)
    with torch.no_grad():
        for b, p in zip(backup, params):
            p.copy_(b)
    unet.train()
    text_encoder.train()
    return {"held": {k: round(v, 3) for k, v in held.items()}, "ind": {k: round(v, 3) for k, v in ind.items()}}


# ------------------------------------------------------------------ export
def export(out: Path, unet, vae, text_encoder, tok, args, meta: dict, words=None):
    from diffusers import DDIMScheduler

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = make_pipeline(unet, vae, text_encoder, tok)
    pipe.scheduler = DDIMScheduler.from_config(SCHEDULER_CONFIG)
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    pipe.save_pretrained(str(out), safe_serialization=True)
    vocab, merges = build_vocab(words)  # classic CLIP tokenizer files next to tokenizer.json
    (out / "tokenizer" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    # an export into a shipped folder keeps its card's other blocks (preview decoder, recipes); a broken card stops it
    info = read_card(out, required=card_path(out).exists())
    info.update({
        "name": "starter",
        "native_size": args.size,
        "description": (
            "Impasto starter model: one to three flat shapes of 12 families (circle, square, triangle, "
            "diamond, oval, rectangle, semicircle, pentagon, hourglass, trapezoid, teardrop, chevron), small "
            "or big, in nine named places, 8 colours on 8 background colours, e.g. 'a small red pentagon "
            "on the left and a big blue oval at the top right on a white background'. Toy domain."
            if args.domain == "scenes" else
            "Impasto starter model: flat shapes (circle, square, triangle) in 8 colours on "
            "8 background colours, e.g. 'a red circle on a blue background'. Toy domain; sizes above "
            "native_size are generated at native size and upscaled."),
        "recommended": {"steps": 20, "guidance_scale": 5.0, "scheduler": "DDIMScheduler"},
        "training": meta,
    })
    write_card(out, info)
    log(f"exported to {out}")


# -------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="diffusers folder to write (e.g. backend/assets/starter)")
    ap.add_argument("--work", default="/tmp/starter_work", help="checkpoint / cache directory")
    ap.add_argument("--minutes", type=float, default=85.0, help="total time budget")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoints in --work")
    ap.add_argument("--domain", default="shapes", choices=("shapes", "scenes"),
                    help="shapes: the shipped 64 px starter; scenes: the richer 128 px domain")
    ap.add_argument("--export-only", action="store_true",
                    help="export the EMA weights of the checkpoint in --work to --out and stop (mid-run snapshots)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--size", type=int, default=64, help="native image size (latents are size / --latent-factor)")
    ap.add_argument("--latent-factor", type=int, default=8, choices=(8, 4),
                    help="pixels per latent cell along a side: 8 (Stable Diffusion's, the shipped starter's) or 4 "
                         "(a VAE with one level less: four times the latent cells)")
    ap.add_argument("--unet", default="s", choices=sorted(UNET_PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999, help="maximum EMA decay")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--min-snr", type=float, default=5.0, help="min-SNR-gamma loss weighting (0: off)")
    ap.add_argument("--cond-drop", type=float, default=0.1, help="caption dropout for CFG")
    ap.add_argument("--generic", type=float, default=D.GENERIC_CAPTION_FRACTION, help="fraction of 'shape' captions")
    ap.add_argument("--flip", type=int, default=1)
    ap.add_argument("--pool", type=int, default=30000, help="cached training scenes")
    ap.add_argument("--vae", default=None,
                    help="reuse this trained VAE folder (e.g. backend/assets/starter/vae): no VAE stage")
    ap.add_argument("--text-encoder", default=None,
                    help="keep this trained model's text encoder and tokenizer frozen (e.g. backend/assets/starter): "
                         "only the UNet trains")
    ap.add_argument("--init", default=None,
                    help="start the UNet and the text encoder (and take the tokenizer) from this trained model "
                         "folder (e.g. backend/assets/starter): a fine-tune on a new pool, with its own "
                         "warm-up and cosine schedule; --unet must name the folder's preset; with "
                         "--text-encoder, the UNet only (that text encoder stays frozen)")
    ap.add_argument("--vae-minutes", type=float, default=None, help="default: 14%% of --minutes, 2..12")
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-max-steps", type=int, default=6000)
    ap.add_argument("--unet-steps", type=int, default=None, help="fix the UNet step count (else from speed)")
    ap.add_argument("--reschedule", type=int, default=None,
                    help="with --resume: change the cosine schedule's length to this many UNet steps from here on "
                         "(to finish within the time available; recorded in the model card)")
    ap.add_argument("--speed-margin", type=float, default=0.95)
    ap.add_argument("--grace", type=float, default=3.0, help="minutes allowed past the budget before stopping")
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--eval-every", type=int, default=0, help="quick held-out eval every N steps (0: off)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine; never more than 2 there)")
    add_device_argument(ap)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = run_device(args.device)
    work = Path(args.work)
    if work.exists() and not (args.resume or args.export_only) and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty: pass --resume or remove it")
    work.mkdir(parents=True, exist_ok=True)
    if args.domain == "scenes":
        args.flip = 0  # captions name left and right
    run_cfg_path = work / "run.json"
    if (args.resume or args.export_only) and run_cfg_path.exists():
        saved = json.loads(run_cfg_path.read_text())
        for k in ("seed", "size", "unet", "batch", "lr", "ema", "pool", "cond_drop", "generic", "min_snr", "flip",
                  "domain", "unet_steps", "warmup", "vae", "text_encoder", "init", "latent_factor"):
            if k in saved:
                setattr(args, k, saved[k])
        start_wall = time.time() - saved.get("elapsed", 0.0)
    else:
        start_wall = time.time()
    if not args.export_only:
        run_cfg_path.write_text(json.dumps(vars(args), indent=2))
    set_seed(args.seed)
    log(f"device={device} threads={torch.get_num_threads()} args={vars(args)}")
    deadline = start_wall + args.minutes * 60

    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    words = SC.DOMAIN_WORDS if args.domain == "scenes" else None
    text_config = TEXT_CONFIG_SCENES if args.domain == "scenes" else TEXT_CONFIG
    tok_dir = work / "tokenizer"
    frozen_te = None
    if args.text_encoder:   # with --init too: the UNet continues, the text encoder stays as it is
        tok, frozen_te = frozen_text_encoder(Path(args.text_encoder), words, device)
    elif args.init:
        tok = domain_tokenizer(Path(args.init), words, "--init")
    elif (tok_dir / "vocab.json").exists():
        tok = CLIPTokenizer.from_pretrained(str(tok_dir))
    else:
        tok = write_tokenizer(tok_dir, words, text_config["max_position_embeddings"])
    check_tokenizer(tok, words)

    t_vae = time.time()
    if args.vae:
        vae, psnr = reused_vae(Path(args.vae), work, args, device)
    else:
        vae, psnr = trained_vae(work, args, device, deadline)
    log(f"VAE PSNR on fresh scenes: {psnr:.2f} dB ({time.time() - t_vae:.0f} s)")
    cache = build_latent_cache(vae, work, args, device, scale=vae.config.scaling_factor if args.vae else None)
    vae.register_to_config(scaling_factor=cache["scale"])
    vae.eval().requires_grad_(False)

    latent_size = args.size // args.latent_factor
    torch.manual_seed(args.seed + 10)
    hidden = frozen_te.config.hidden_size if frozen_te is not None else text_config["hidden_size"]
    unet = UNet2DConditionModel(**unet_config(args.unet, latent_size, hidden)).to(device)
    if frozen_te is not None:
        text_encoder = frozen_te
    else:   # drawn after the UNet, as before the option existed: a fresh run's seeds are unchanged
        vocab = tok.get_vocab()
        te_cfg = CLIPTextConfig(
            vocab_size=len(vocab), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, **text_config)
        text_encoder = CLIPTextModel(te_cfg).to(device)
    if args.init and not (work / "unet.pt").exists():   # a resume reads its own checkpoint instead
        init_from(Path(args.init), unet, None if frozen_te is not None else text_encoder)
    n_unet = sum(p.numel() for p in unet.parameters())
    n_te = sum(p.numel() for p in text_encoder.parameters())
    log(f"UNet {n_unet / 1e6:.2f} M params, text encoder {n_te / 1e6:.3f} M, VAE {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M")

    def save_elapsed():
        cfg = json.loads(run_cfg_path.read_text())
        cfg["elapsed"] = time.time() - start_wall
        run_cfg_path.write_text(json.dumps(cfg, indent=2))

    params = trained_params(unet, text_encoder)
    if args.export_only:
        st = torch.load(work / "unet.pt", map_location="cpu", weights_only=False)
        for p_, s_ in zip(params, st["ema"]):
            p_.data.copy_(s_)
    else:
        ema = train_unet(unet, text_encoder, tok, vae, cache, work, args, device, deadline)
        save_elapsed()
        ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    st = torch.load(work / "unet.pt", map_location="cpu", weights_only=False)
    meta = {
        "command": "python -m impasto.backend.starter.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "latent_factor": args.latent_factor, "unet_preset": args.unet, "unet_params": n_unet,
        "text_encoder_params": n_te,
        "unet_steps": st["step"], "batch": args.batch, "lr": args.lr, "ema_max_decay": args.ema,
        "vae_psnr_db": round(psnr, 2), **({"vae_reused_from": str(args.vae)} if args.vae else {}),
        **({"text_encoder_frozen_from": str(args.text_encoder)} if args.text_encoder else {}),
        **({"initialised_from": str(args.init)} if args.init else {}),
        "wall_minutes": round((time.time() - start_wall) / 60, 1),
        "device": str(device), "threads": torch.get_num_threads(),
    }
    meta["domain"] = args.domain
    if st.get("schedule_notes"):
        meta["schedule_note"] = "; ".join(st["schedule_notes"])
    export(Path(args.out), unet, vae, text_encoder, tok, args, meta, words)
    log(f"total wall time {(time.time() - start_wall) / 60:.1f} min")


if __name__ == "__main__":
    main()
