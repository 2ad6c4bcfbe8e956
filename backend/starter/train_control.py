"""Train the starter's control model: a small ControlNet steered by a rough drawing of the shape.

One command, resumable::

    python -m impasto.backend.starter.train_control --out DIR --work /tmp/control_work --steps 6000

The condition is what an artist scribbles (:mod:`.drawings`): a wobbly outline
or a filled silhouette of the shape, anywhere on the canvas at any size the
domain allows, white marks on black (the ``scribble`` preprocessor's
convention).  The target is the starter's own scene with the shape exactly
where the drawing is, captioned as the starter's training captions are.

How: ``ControlNetModel.from_unet`` copies the starter UNet's encoder half
(zero convolutions start at zero, so step 0 paints exactly as the starter);
only the ControlNet trains - the UNet, VAE and text encoder stay frozen - on
the starter's own noise objective (its scheduler, epsilon prediction, min-SNR
weighting), with 10 % of captions dropped so CFG still works with a drawing.
Scenes are drawn on the fly (a new geometry and drawing every sample: nothing
is seen twice); the evaluation's held-out drawings come from another seed
stream (``bench/starter_control_eval.py``).

Resumable: the ControlNet, optimizer, EMA, step and RNG state are saved
atomically to ``--work/control.pt`` every ``--ckpt-minutes`` and at the end;
running the same command again continues where it stopped (``--lr`` may change on
a resume).  Each run is one leg of the training (steps, lr, minutes, command, how it
stopped), kept in the checkpoint and written to the card, so a folder made in
several legs says how; running the finished command once more trains nothing and
only writes the folder again.  The result is a
diffusers ``ControlNetModel`` folder with an ``impasto.json`` saying what it
controls (``scribble``) and which family / base model it fits, written to a
temporary folder and renamed into place.  Put it in the models folder (or
its ``controlnet/`` sub-folder) and ``impasto generate --control scribble:drawing.png``
uses it.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from impasto.backend.engine.model_card import card_block, native_size, read_card, write_card
from impasto.backend.engine.native import vae_scale_factor

from .run_tools import add_device_argument, atomic_save, replace_folder, run_device, stop_requests


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class EMA:
    def __init__(self, params, decay: float):
        self.shadow = [p.detach().clone() for p in params]
        self.decay = decay

    @torch.no_grad()
    def update(self, params, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, params) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def load_base(base: Path, device):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(base / "unet").to(device).eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(base / "vae").to(device).eval().requires_grad_(False)
    te = CLIPTextModel.from_pretrained(base / "text_encoder").to(device).eval().requires_grad_(False)
    tok = CLIPTokenizer.from_pretrained(base / "tokenizer")
    sched = DDPMScheduler.from_pretrained(base / "scheduler")
    return unet, vae, te, tok, sched


#: the condition embedding's widths for an 8x VAE; a 4x VAE's are the last three (one /2 less)
DEFAULT_EMBED_CHANNELS = (16, 16, 32, 32)


def build_controlnet(unet, vae_factor: int, embed_channels):
    """The starter's ControlNet: its UNet's encoder half, a condition embedding reaching the latent grid."""
    from diffusers import ControlNetModel

    channels = tuple(embed_channels)
    if 2 ** (len(channels) - 1) != vae_factor:
        raise SystemExit(f"--embed-channels needs {int(math.log2(vae_factor)) + 1} entries for a VAE factor of "
                         f"{vae_factor}")
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)


def base_domain(base: Path) -> str:
    """``scenes`` for the 128 px scenes starter, ``shapes`` for the 64 px circle/square/triangle one."""
    return "scenes" if card_block(base, "training").get("domain") == "scenes" else "shapes"


def draw_batch(domain: str, n: int, size: int, rng: np.random.Generator):
    """(pictures, drawing maps, captions) of ``n`` fresh training samples of the base model's domain."""
    from . import drawings

    if domain == "scenes":
        pics, maps, caps, _ = drawings.sample_scenes(n, size, rng)
    else:
        pics, maps, caps, _ = drawings.sample(n, size, rng)
    return pics, maps, caps


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def vae_digest(vae) -> str:
    """A digest of the VAE's weights (not of its file: a re-export of the same weights matches)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(vae.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


#: how a pool's samples are drawn; a pool of another layout is built again (1: one seed stream per chunk)
POOL_LAYOUT = 1


def draw_chunk(job) -> tuple:
    """One chunk of a pool: its own seed stream ``(seed + 1, index)``, so the pool is the same whatever the
    number of worker processes that drew it."""
    domain, n, size, seed, index = job
    return draw_batch(domain, n, size, np.random.default_rng([seed + 1, index]))


def build_pool(path: Path, n: int, domain: str, size: int, vae, vae_id: str, seed: int, chunk: int = 64,
               workers: int = 1) -> dict:
    """Encode ``n`` training samples once (VAE latents, bit-packed drawings, captions); saved atomically.

    Why: on a CPU the VAE encode and the rendering are ~40 % of a training step at 128 px; the
    pool is made once (reused by a later run when the base's VAE is the same file) and a step then
    costs only the ControlNet and UNet passes.  Drawing a scene with its wobbly drawing costs ~16 ms of
    one core, so ``workers`` processes draw the chunks (16,000 samples: ~4 min on one core, seconds on
    a GPU machine's 16) while this one encodes them in order.  Samples come from their own seed streams
    (``seed + 1``): training order is the training run's, evaluation's drawings another stream.
    """
    jobs = [(domain, min(chunk, n - i), size, seed, i // chunk) for i in range(0, n, chunk)]
    lat, maps, caps = [], [], []
    t0 = time.time()
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as drawers:
        chunks = drawers.map(draw_chunk, jobs) if drawers else map(draw_chunk, jobs)
        for i, (pics, m, c) in zip(range(0, n, chunk), chunks):
            with torch.no_grad():
                x = torch.from_numpy(pics).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(vae.device)
                lat.append(vae.encode(x).latent_dist.mean.cpu().half())
            maps.append(np.packbits(m[..., 0] > 127, axis=-1))
            caps += c
            if (i // chunk) % 20 == 0:
                log(f"pool {i + len(c)}/{n} ({time.time() - t0:.0f} s)")
    pool = {"latents": torch.cat(lat), "maps": np.concatenate(maps), "captions": caps, "size": size,
            "domain": domain, "vae": vae_id, "seed": seed, "n": n, "layout": POOL_LAYOUT}
    atomic_save(pool, path)
    return pool


def load_pool(path: Path, n: int, domain: str, size: int, vae, vae_id: str, seed: int, workers: int = 1) -> dict:
    if path.is_file():
        pool = torch.load(path, map_location="cpu", weights_only=False)
        if (pool.get("vae"), pool.get("domain"), pool.get("size"), pool.get("n"), pool.get("seed"),
                pool.get("layout")) == (vae_id, domain, size, n, seed, POOL_LAYOUT):
            log(f"pool of {n} samples loaded from {path}")
            return pool
        log(f"{path} was made for another base / size / seed: building it again")
    return build_pool(path, n, domain, size, vae, vae_id, seed, workers=workers)


def export(out: Path, controlnet, args, meta: dict) -> None:
    """Write the diffusers folder + impasto.json to a temporary folder, then rename it into place."""
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    controlnet.save_pretrained(str(tmp), safe_serialization=True)
    write_card(tmp, meta)
    replace_folder(tmp, out)


def init_from(net, folder: Path, device) -> int:
    """Load a control model folder's weights (float16 or float32) into ``net``; returns its training
    steps (where the count goes on, and the new optimizer's warm-up starts). Refused when the
    architecture differs."""
    from diffusers import ControlNetModel

    old = ControlNetModel.from_pretrained(folder, torch_dtype=torch.float32)
    missing, unexpected = net.load_state_dict(old.state_dict(), strict=False)
    if missing or unexpected:
        raise SystemExit(f"{folder} is not a control model of this shape: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    net.to(device)
    return int((read_card(folder, required=True).get("training") or {}).get("steps", 0))   # before any training: no card, no run


def main(argv=None) -> int:
    from impasto.backend.engine.models import starter_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the ControlNet folder to write (a models folder's controlnet/NAME)")
    ap.add_argument("--work", default="/tmp/starter_control_work", help="checkpoint directory (resume from it)")
    ap.add_argument("--base", type=Path, default=None, help="the base model folder (default: the shipped starter)")
    ap.add_argument("--steps", type=int, default=6000, help="training steps in all (a resumed run keeps counting)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop (and save) after this long; 0: no limit")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--min-snr", type=float, default=5.0)
    ap.add_argument("--cond-drop", type=float, default=0.1, help="caption dropout (keeps CFG usable)")
    ap.add_argument("--embed-channels", default="",
                    help="the condition embedding's widths, comma-separated (its length fixes the downscale: "
                         "4 -> /8); default 16,16,32,32 for an 8x VAE, 16,32,32 for a 4x one")
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--domain", choices=("auto", "shapes", "scenes"), default="auto",
                    help="the drawings' domain (auto: the base model's, from its impasto.json)")
    ap.add_argument("--pool", type=int, default=0,
                    help="encode this many samples once (WORK/pool.pt, reused) and train on batches drawn from "
                         "them; 0: draw and encode fresh samples every step")
    ap.add_argument("--pool-workers", type=int, default=0,
                    help="processes drawing the pool's samples (0: one per CPU core, at most 16)")
    ap.add_argument("--base-name", default="",
                    help="the model name it is made for (impasto.json base_model; default: starter for the "
                         "shipped starter, else the base folder's name)")
    ap.add_argument("--t-sampling", choices=("uniform", "cubic"), default="cubic",
                    help="timesteps: uniform, or cubic (t = (1 - u^3) T: more of the noisy steps where the layout "
                         "is decided, as the T2I-Adapter paper trains structure conditions)")
    ap.add_argument("--fp16-export", action="store_true", help="save the weights in float16 (half the size)")
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    add_device_argument(ap)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue training a control model folder this script wrote before (its weights, its "
                         "step count; a fresh optimizer warmed up again): a longer run without its checkpoint")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = run_device(args.device)
    base = Path(args.base) if args.base else starter_dir()
    if base is None:
        raise SystemExit("no starter model installed: pass --base DIR")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ck = work / "control.pt"
    unet, vae, te, tok, sched = load_base(base, device)
    factor = vae_scale_factor(vae.config)
    size = native_size(base, default=unet.config.sample_size * factor)
    domain = base_domain(base) if args.domain == "auto" else args.domain
    embed = [int(c) for c in args.embed_channels.split(",")] if args.embed_channels else \
        DEFAULT_EMBED_CHANNELS[-(int(math.log2(factor)) + 1):]
    net = build_controlnet(unet, factor, embed).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = EMA(params, args.ema)
    step = warm_from = 0
    rng_state = None
    legs: list[dict] = []     # the runs before this one (a resumed run's card says how it was made end to end)
    run_loss = None
    if ck.exists():
        st = torch.load(ck, map_location="cpu", weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        ema.shadow = [s.to(device) for s in st["ema"]]
        step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        rng_state = st["np_rng"]
        log(f"resumed at step {step}/{args.steps}")
        warm_from = st.get("warm_from", 0)
        legs, run_loss = list(st.get("legs", [])), st.get("loss")
    elif args.init is not None:
        step = warm_from = init_from(net, Path(args.init), device)
        ema.shadow = [p.detach().clone() for p in params]
        log(f"continuing {args.init} from its step {step}/{args.steps} (fresh optimizer)")
    rng = np.random.default_rng(args.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    gen = torch.Generator("cpu").manual_seed(args.seed + step)
    acp = sched.alphas_cumprod.to(device)
    snr = acp / (1 - acp)
    scaling = float(vae.config.scaling_factor)
    with torch.no_grad():
        empty = te(tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
                   .input_ids.to(device))[0]
    n_params = sum(p.numel() for p in params)
    log(f"ControlNet of {base.name}: {n_params} trainable parameters, {size} px, {domain}, batch {args.batch}, "
        f"device {device}")
    workers = args.pool_workers or min(16, os.cpu_count() or 1)
    pool = load_pool(work / "pool.pt", args.pool, domain, size, vae, vae_digest(vae), args.seed, workers) \
        if args.pool else None
    meta = {
        "control": "scribble", "family": "sd15", "base_model": args.base_name or (
            "starter" if args.base is None else base.name), "base_dir": base.name,
        "base_unet": file_digest(next((base / "unet").glob("*.safetensors"))) if any((base / "unet").glob(
            "*.safetensors")) else "?", "native_size": size, "domain": domain,
        "description": "Impasto starter control model: a rough drawing (outline or silhouette, white on black "
                       "after the scribble preprocessor) places the shape",
        "training": {"command": "python -m impasto.backend.starter.train_control " + " ".join(argv or sys.argv[1:]),
                     "seed": args.seed, "batch": args.batch, "lr": args.lr, "params": n_params, "pool": args.pool,
                     "t_sampling": args.t_sampling,
                     "embed_channels": ",".join(str(c) for c in embed), "threads": args.threads, "device": str(device)},
    }
    if args.init is not None:   # the run it continued, so the folder says how it was made end to end
        before = read_card(args.init, required=True)
        meta["training"]["continued_from"] = before.get("training", {})
        if "output_gain" in before:   # calibrated weights (calibrate_control.py): training went on from them
            meta["training"]["continued_from"]["output_gain"] = before["output_gain"]

    leg_start = step

    def this_leg(stopped_by: str = "") -> list[dict]:
        """This run as one leg of the training (none when it trained no step: a re-run that only exports)."""
        if step == leg_start:
            return []
        leg = {"steps": f"{leg_start}-{step}", "lr": args.lr, "minutes": round((time.time() - t_start) / 60, 1),
               "command": meta["training"]["command"]}
        return [dict(leg, stopped_by=stopped_by) if stopped_by else leg]

    def save(stopped_by: str = "") -> None:
        atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "ema": [s.cpu() for s in ema.shadow],
                     "step": step, "torch_rng": torch.get_rng_state(), "np_rng": rng.bit_generator.state,
                     "warm_from": warm_from, "legs": legs + this_leg(stopped_by), "loss": run_loss}, ck)

    t_start, last_ck = time.time(), time.time()
    stopped_by = "finished"
    net.train()
    with stop_requests() as stop:
        while step < args.steps:
            if stop:   # Ctrl-C or SIGTERM, taken between two steps
                save("SIGTERM or Ctrl-C (checkpoint)")
                log(f"stopped at step {step}/{args.steps}, checkpoint saved: run the same command again to go on")
                raise SystemExit(130)
            if args.minutes and time.time() - t_start > args.minutes * 60:
                log(f"time budget reached at step {step}/{args.steps}")
                stopped_by = f"--minutes {args.minutes:g} (checkpoint)"
                break
            if pool is not None:
                idx = rng.integers(len(pool["captions"]), size=args.batch)
                maps = np.unpackbits(pool["maps"][idx], axis=-1, count=size).astype(np.uint8)[..., None].repeat(3, -1) * 255
                captions = [pool["captions"][i] for i in idx]
                x0 = pool["latents"][torch.from_numpy(idx)].float().to(device) * scaling
            else:
                scenes, maps, captions = draw_batch(domain, args.batch, size, rng)
            with torch.no_grad():
                if pool is None:
                    x = torch.from_numpy(scenes).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
                    x0 = vae.encode(x).latent_dist.mean * scaling
                ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt").input_ids.to(device)
                enc = te(ids)[0]
                drop = torch.rand(args.batch, generator=gen) < args.cond_drop
                enc = torch.where(drop[:, None, None].to(device), empty.expand_as(enc), enc)
            cond = torch.from_numpy(maps).permute(0, 3, 1, 2).float().div(255.0).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            T = sched.config.num_train_timesteps
            if args.t_sampling == "cubic":
                u = torch.rand(args.batch, generator=gen)
                t = ((1.0 - u ** 3) * T).long().clamp_(0, T - 1).to(device)
            else:
                t = torch.randint(0, T, (args.batch,), generator=gen).to(device)
            xt = sched.add_noise(x0, noise, t)
            down, mid = net(xt, t, encoder_hidden_states=enc, controlnet_cond=cond, return_dict=False)
            pred = unet(xt, t, encoder_hidden_states=enc, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample
            w = torch.clamp(snr[t], max=args.min_snr) / snr[t] if args.min_snr > 0 else torch.ones_like(snr[t])
            loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
            lr = args.lr * min(1.0, (step - warm_from + 1) / max(1, args.warmup))
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.update(params, step)
            step += 1
            run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
            if step % 50 == 0 or step == 1:
                log(f"step {step}/{args.steps} loss {run_loss:.4f} lr {lr:.2e} "
                    f"({(time.time() - t_start) / 60:.1f} min)")
            if time.time() - last_ck > args.ckpt_minutes * 60:
                save()
                last_ck = time.time()
    all_legs = legs + this_leg(stopped_by)
    save(stopped_by)
    ema.copy_to(params)
    meta["training"].update(steps=step, final_loss=None if run_loss is None else round(run_loss, 5),
                            wall_minutes=round(sum(leg["minutes"] for leg in all_legs), 1),
                            date=time.strftime("%Y-%m-%d"))
    if all_legs and [leg["steps"] for leg in all_legs] != [f"0-{step}"]:
        meta["training"]["legs"] = all_legs   # stopped and resumed (maybe with another lr): every run, in order
    if args.fp16_export:
        net = net.half()
    export(Path(args.out), net, args, meta)
    log(f"wrote {args.out} after {step} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
