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

Over 500 lines on purpose: it is tooling, not runtime, and it keeps the whole
resumable pipeline (tokenizer, VAE, latent cache, UNet + text encoder, export)
of both domains in one file that reads top to bottom, the way diffusers'
training scripts do; each stage is a function of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from impasto.backend.engine.model_card import card_path, read_card, write_card

from . import domain as D
from . import scenes as SC

PAD_LEN = 24
EXTRA_WORDS = ("of", "the", "in", "with", "and", "photo", "painting", "style", "picture", "image")
PUNCT = tuple(".,!?-'\"():;/&+0123456789")

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)

# ------------------------------------------------------------------ configs
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 32, 32),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,
)

TEXT_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=PAD_LEN,
    hidden_act="quick_gelu",
    projection_dim=32,
)

TEXT_CONFIG_SCENES = dict(TEXT_CONFIG, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          max_position_embeddings=40, projection_dim=64)

UNET_PRESETS = {
    "s": dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=4),
    "m": dict(block_out_channels=(64, 128), layers_per_block=1, attention_head_dim=8),
    "m2": dict(block_out_channels=(48, 96), layers_per_block=2, attention_head_dim=8),
    # the richer 128 px starter: three levels on 16x16 latents, no attention at 16x16
    # (like SD1.5's plain deepest level, here the widest: 0.40 vs 0.93 s/step, batch 32, 1 thread, loaded)
    "l3": dict(block_out_channels=(32, 64, 128), layers_per_block=1, attention_head_dim=8,
               attention=(False, True, True)),
    # l3 with its 16x16 level twice as wide: that level draws the outline's edges, and l3 draws
    # straight edges wavy (docs/performance.md, "Where the family is lost"); 5.5 M parameters,
    # 1.26x l3's training step (batch 32, 2 threads), about 1.15x its call at batch 1
    "l3w": dict(block_out_channels=(64, 96, 128), layers_per_block=1, attention_head_dim=8,
                attention=(False, True, True)),
    # l3w wider again at its two outer levels (16x16: 96, 8x8: 128 channels), the capacity lever left once
    # more steps of l3w's recipe stopped paying (docs/performance.md, "A UNet-only fine-tune ..."): 7.4 M
    # parameters, about 1.5x l3w's training step (batch 32, 2 threads: 618 vs 403 ms, same process)
    "l3x": dict(block_out_channels=(96, 128, 128), layers_per_block=1, attention_head_dim=8,
                attention=(False, True, True)),
}


def add_device_argument(ap) -> None:
    """The training scripts' ``--device`` option (read with :func:`run_device`)."""
    ap.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                    help="auto: the engine's choice (the GPU when there is one)")


def run_device(name: str) -> torch.device:
    """``auto``: the engine's own choice (``engine.device.pick_device``: the GPU when torch sees one, and
    ``IMPASTO_DEVICE`` honoured), so a training script and the daemon never disagree about the machine;
    else the device named."""
    from impasto.backend.engine.device import pick_device

    return pick_device(None if name == "auto" else name).device


def unet_config(preset: str, latent_size: int, cross_dim: int = TEXT_CONFIG["hidden_size"]) -> dict:
    p = UNET_PRESETS[preset]
    att = p.get("attention", (True,) * len(p["block_out_channels"]))
    return dict(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in att),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(att)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=p["block_out_channels"],
        layers_per_block=p["layers_per_block"],
        cross_attention_dim=cross_dim,
        attention_head_dim=p["attention_head_dim"],
        norm_num_groups=16,
    )


# ---------------------------------------------------------------- tokenizer
def _bpe(symbols: List[str], ranks: Dict[tuple, int]) -> List[str]:
    word = list(symbols)
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def build_vocab(words=None):
    """-> (vocab dict, merges list).  Domain words are single tokens."""
    words = tuple(D.DOMAIN_WORDS) if words is None else tuple(words)
    tokens: List[str] = []
    seen = set()

    def add(t):
        if t not in seen:
            seen.add(t)
            tokens.append(t)

    for c in "abcdefghijklmnopqrstuvwxyz" + "".join(PUNCT):
        add(c)
    for c in "abcdefghijklmnopqrstuvwxyz" + "".join(PUNCT):
        add(c + "</w>")
    merges: List[tuple] = []
    ranks: Dict[tuple, int] = {}
    for w in tuple(dict.fromkeys(words + EXTRA_WORDS)):
        symbols = list(w[:-1]) + [w[-1] + "</w>"]
        seg = _bpe(symbols, ranks)
        while len(seg) > 1:  # extend with new (highest-rank) merges
            pair = (seg[0], seg[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            add(seg[0] + seg[1])
            seg = [seg[0] + seg[1]] + seg[2:]
        add(seg[0])
    add("<|startoftext|>")
    add("<|endoftext|>")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer(dest: Path, words=None, max_len: int = PAD_LEN):
    from transformers import CLIPTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in merges],
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=max_len,
    )
    tok.save_pretrained(str(dest))
    # the classic CLIP files too (what SD1.5 folders ship; slow tokenizers read them)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(str(dest))
    check_tokenizer(tok, words)
    return tok


def check_tokenizer(tok, words=None):
    unk = tok.unk_token_id
    for w in tuple(D.DOMAIN_WORDS if words is None else words):
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != unk, (w, ids)
    for c in "abcdefghijklmnopqrstuvwxyz":
        assert c in tok.get_vocab() and c + "</w>" in tok.get_vocab(), c
    ids = tok("zwx", add_special_tokens=False).input_ids
    assert len(ids) == 3 and unk not in ids, ids


# ------------------------------------------------------------------ helpers
def log(msg: str):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def to_tensor(imgs_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def set_seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EMA:
    def __init__(self, params, max_decay: float):
        self.shadow = [p.detach().clone() for p in params]
        self.max_decay = max_decay

    @torch.no_grad()
    def update(self, params, step: int):
        d = min(self.max_decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def atomic_save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out`` in one rename (a crash leaves the old folder or the new one)."""
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def warmup_cosine(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` down to a tenth of it at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))


# --------------------------------------------------------------------- VAE
def training_images(domain: str, n: int, size: int, rng) -> np.ndarray:
    """uint8 (n, size, size, 3) training pictures of a domain: training shapes only.

    The one source of pictures for the VAE stage (and its PSNR check): held-out
    shapes (the star of ``domain.py``, the benchmark families of ``scenes.py``)
    and held-out combinations never reach it (issue 21 item 7).
    """
    if domain == "scenes":
        return SC.sample_batch(n, size, rng)[0]
    return D.sample_batch(n, size, rng, combos=D.train_combos(), as_array=True)[0]


@torch.no_grad()
def analytic_vae_init(vae):
    """Initialise an AutoencoderKL as a fixed, sensible autoencoder.

    Latent channels 0-2 = 8x8 area average of R, G, B (channel 3 = 0); the
    decoder interpolates them back (nearest x2 + [1,2,1] blur per level).
    Colours are carried as (c, -c) channel pairs inside one GroupNorm group so
    that GroupNorm keeps them (mean 0) and silu(c) - silu(-c) = c recovers them.
    Every residual branch is zero-initialised at its last layer (identity), so
    fine-tuning starts from this autoencoder instead of a long plateau.
    """
    from diffusers.models.resnet import ResnetBlock2D

    def zero(m):
        m.weight.zero_()
        if m.bias is not None:
            m.bias.zero_()

    def pairs_in(conv, n_in, sign_pairs=True):
        zero(conv)
        k = conv.kernel_size[0] // 2
        for c in range(3):
            conv.weight[2 * c, c, k, k] = 1.0
            conv.weight[2 * c + 1, c, k, k] = -1.0

    for m in vae.modules():
        if isinstance(m, ResnetBlock2D):
            zero(m.conv2)
            if m.conv_shortcut is not None:
                zero(m.conv_shortcut)
                n = min(m.conv_shortcut.in_channels, m.conv_shortcut.out_channels)
                for i in range(n):
                    m.conv_shortcut.weight[i, i, 0, 0] = 1.0
    for mid in (vae.encoder.mid_block, vae.decoder.mid_block):
        for att in mid.attentions:
            zero(att.to_out[0])
    # encoder
    pairs_in(vae.encoder.conv_in, 3)
    for blk in vae.encoder.down_blocks:
        for ds in blk.downsamplers or []:
            zero(ds.conv)
            for i in range(ds.conv.out_channels):
                ds.conv.weight[i, i, 0:2, 0:2] = 0.25
    conv = vae.encoder.conv_out
    zero(conv)
    nl = vae.config.latent_channels
    for c in range(3):
        conv.weight[c, 2 * c, 1, 1] = 1.0
        conv.weight[c, 2 * c + 1, 1, 1] = -1.0
    conv.bias[nl:] = -8.0  # log-variance: tiny posterior std
    zero(vae.quant_conv)
    for i in range(2 * nl):
        vae.quant_conv.weight[i, i, 0, 0] = 1.0
    zero(vae.post_quant_conv)
    for i in range(nl):
        vae.post_quant_conv.weight[i, i, 0, 0] = 1.0
    # decoder
    pairs_in(vae.decoder.conv_in, nl)
    blur = torch.tensor([1.0, 2.0, 1.0])
    blur = torch.outer(blur, blur) / 16
    for blk in vae.decoder.up_blocks:
        for us in blk.upsamplers or []:
            zero(us.conv)
            for i in range(us.conv.out_channels):
                us.conv.weight[i, i] = blur
    conv = vae.decoder.conv_out
    zero(conv)
    for c in range(3):
        conv.weight[c, 2 * c, 1, 1] = 1.0
        conv.weight[c, 2 * c + 1, 1, 1] = -1.0


def load_checkpoint(ck: Path, model, opt):
    """Model and optimizer state from an :func:`atomic_save` checkpoint -> its dict, or None if there is none."""
    if not ck.exists():
        return None
    st = torch.load(ck, map_location="cpu", weights_only=False)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    return st


def train_vae(vae, work: Path, args, device, deadline: float):
    ck = work / "vae.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step = 0
    st = load_checkpoint(ck, vae, opt)
    if st is not None:
        step = st["step"]
        if st.get("done"):
            log(f"VAE: already trained ({step} steps)")
            return
    from tqdm import tqdm

    rng = np.random.default_rng(args.seed + 1 + step)
    torch.manual_seed(args.seed + 1 + step)
    vae.train()
    pbar = tqdm(desc="vae", initial=step, total=args.vae_max_steps, mininterval=20, file=sys.stdout)
    last_ck = time.time()
    while step < args.vae_max_steps and time.time() < deadline:
        imgs = training_images(args.domain, args.vae_batch, args.size, rng)
        x = to_tensor(imgs).to(device)
        post = vae.encode(x).latent_dist
        z = post.sample()
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (z[0].numel())
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        for gparam in opt.param_groups:
            gparam["lr"] = args.vae_lr * min(1.0, (step + 1) / 50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        pbar.update(1)
        if step % 25 == 0:
            with torch.no_grad():
                psnr = 10 * math.log10(4.0 / F.mse_loss(rec, x).item())
            pbar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.1f}")
        if time.time() - last_ck > 120:
            atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ck)
            last_ck = time.time()
    pbar.close()
    atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "done": True}, ck)
    log(f"VAE: done after {step} steps")


@torch.no_grad()
def vae_psnr(vae, device, n=256, seed=12345, size=64, domain: str = "shapes") -> float:
    vae.eval()
    imgs = training_images(domain, n, size, np.random.default_rng(seed))
    mse = 0.0
    for i in range(0, n, 32):
        x = to_tensor(imgs[i:i + 32]).to(device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse += F.mse_loss(rec, x, reduction="sum").item()
    return 10 * math.log10(4.0 / (mse / imgs[:n].size))


# ----------------------------------------------------------------- latents
def latent_scale(lat: torch.Tensor, scale: Optional[float]) -> float:
    """The cache's scaling factor: a reused VAE's own, else one over the latents' standard deviation."""
    return float(1.0 / lat.std()) if scale is None else float(scale)


@torch.no_grad()
def build_latent_cache(vae, work: Path, args, device, scale: float = None):
    """Render and encode ``args.pool`` training scenes once (``WORK/latents.pt``).

    ``scale``: the latents' scaling factor; default one over their standard deviation (a new
    VAE), a reused VAE's own factor (``--vae``) so its latents mean what they meant.
    """
    path = work / "latents.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=False)
    log(f"rendering and encoding {args.pool} training scenes")
    vae.eval()
    rng = np.random.default_rng(args.seed + 2)
    if args.domain == "scenes":
        return _build_scene_cache(vae, path, args, device, rng, scale)
    combos = D.train_combos()
    lat, combo_idx = [], []
    index = {c: i for i, c in enumerate(combos)}
    chunk = 500
    for start in range(0, args.pool, chunk):
        imgs, _, used = D.sample_batch(chunk, args.size, rng, combos=combos, generic_fraction=0.0, as_array=True)
        z = vae.encode(to_tensor(imgs).to(device)).latent_dist.mean
        lat.append(z.cpu())
        combo_idx += [index[c] for c in used]
    lat = torch.cat(lat)
    scale = latent_scale(lat, scale)
    cache = {"latents": lat * scale, "combo": torch.tensor(combo_idx), "combos": combos, "scale": scale}
    atomic_save(cache, path)
    log(f"latent cache: {tuple(lat.shape)}, scaling_factor={scale:.4f}")
    return cache


@torch.no_grad()
def _build_scene_cache(vae, path: Path, args, device, rng, scale: float = None):
    """Latents + per-scene captions (specific and generic) of the richer domain."""
    lat, caps, gcaps = [], [], []
    chunk = 250
    t0 = time.time()
    for start in range(0, args.pool, chunk):
        imgs, c, gc, _ = SC.sample_batch(chunk, args.size, rng)  # enforces the split
        z = vae.encode(to_tensor(imgs).to(device)).latent_dist.mean
        lat.append(z.cpu())
        caps += c
        gcaps += gc
        if start % 2500 == 0:
            log(f"  cache {start + chunk}/{args.pool} ({time.time() - t0:.0f} s)")
    lat = torch.cat(lat)
    scale = latent_scale(lat, scale)
    cache = {"latents": lat * scale, "captions": caps, "generic": gcaps, "scale": scale}
    atomic_save(cache, path)
    log(f"latent cache: {tuple(lat.shape)}, scaling_factor={scale:.4f}")
    return cache


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


@contextlib.contextmanager
def stop_requests():
    """Ctrl-C and SIGTERM during a training loop (the UNet stage here, ``train_control``, ``distill_fewstep``), as
    a list the loop checks between steps.

    A long CPU run is stopped by whoever needs the machine. Raising ``KeyboardInterrupt`` wherever the signal
    lands could leave the step counter, EMA and optimizer out of step with each other (it once landed in the
    progress bar's update, after the step, outside the handler, and lost the checkpoint); a request taken at
    the top of the loop never does. Handlers can only be installed from the main thread: elsewhere the
    signals keep their usual meaning."""
    got: list = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    kept = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def trained_params(unet, text_encoder) -> list:
    """What the optimizer and the EMA hold: the UNet, and the text encoder unless it is frozen (``--text-encoder``)."""
    return list(unet.parameters()) + [p for p in text_encoder.parameters() if p.requires_grad]


def domain_tokenizer(folder: Path, words, option: str):
    """The tokenizer of a trained model folder, refused unless it is this domain's (the exported vocab must match)."""
    from transformers import CLIPTokenizer

    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise SystemExit(f"{option} {folder}: needs a model folder with text_encoder/ and tokenizer/")
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    if tok.get_vocab() != build_vocab(words)[0]:
        raise SystemExit(f"{option} {folder}: its tokenizer is not this domain's")
    return tok


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
def trained_vae(work: Path, args, device, deadline: float):
    """The VAE stage: fine-tuned from the analytic init (resumable); -> (vae, PSNR dB)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**{**VAE_CONFIG, "sample_size": args.size}).to(device)
    analytic_vae_init(vae)  # a working (blurry) autoencoder to fine-tune from
    vae_minutes = args.vae_minutes if args.vae_minutes is not None else min(12.0, max(2.0, 0.14 * args.minutes))
    if args.export_only:
        vae.load_state_dict(torch.load(work / "vae.pt", map_location="cpu", weights_only=False)["model"])
    else:
        train_vae(vae, work, args, device, deadline=min(deadline, time.time() + vae_minutes * 60))
    # measured once and stored with the VAE checkpoint: a resume does not pay for it again
    vst = torch.load(work / "vae.pt", map_location="cpu", weights_only=False) if (work / "vae.pt").exists() else {}
    if "psnr" in vst:
        return vae, vst["psnr"]
    psnr = vae_psnr(vae, device, n=64 if args.export_only else 256, size=args.size, domain=args.domain)
    if vst.get("done") and not args.export_only:
        vst["psnr"] = psnr
        atomic_save(vst, work / "vae.pt")
    return vae, psnr


def reused_vae(folder: Path, work: Path, args, device):
    """``--vae``: a trained VAE folder (e.g. the shipped starter's ``vae/``) instead of the VAE stage.

    Its scaling factor is kept, so what was trained on its latents - the fast encoder, the
    preview decoder, a fine-tuned decoder - stays valid for the new UNet.  PSNR measured once
    (``WORK/vae.json``).  -> (vae, PSNR dB)
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder).to(device)
    if vae.config.sample_size != args.size:
        raise SystemExit(f"--vae {folder}: made for {vae.config.sample_size} px, not --size {args.size}")
    info = work / "vae.json"
    if info.exists():
        return vae, json.loads(info.read_text())["psnr"]
    psnr = vae_psnr(vae, device, n=256, size=args.size, domain=args.domain)
    info.write_text(json.dumps({"psnr": psnr, "from": str(folder)}))
    return vae, psnr


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
    ap.add_argument("--size", type=int, default=64, help="native image size (latents are size/8)")
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
                  "domain", "unet_steps", "warmup", "vae", "text_encoder", "init"):
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

    latent_size = args.size // 8
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
        "seed": args.seed, "unet_preset": args.unet, "unet_params": n_unet, "text_encoder_params": n_te,
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
