"""Train the starter's preview decoder: one command, a few minutes of one CPU thread.

    nice python -m impasto.backend.tooling.train_preview            # retrain for the shipped starter
    nice python -m impasto.backend.tooling.train_preview --model DIR --minutes 4

Why here and not in the starter's trainer: the preview decoder learns to copy
*a given* VAE's decode, so it is retrained whenever the starter's VAE changes
(``backend/starter/train.py`` may be rerun with a richer domain) - one command
after that, with no other state.

Pairs are (starter VAE latents of rendered domain scenes -> the full VAE decode
of the same latents): the decoder is taught the VAE's decode, never the
rendered picture, so a preview shows what the final image will show.  The
latents are the encoder's mean plus variants a preview actually meets while an
image forms: a posterior sample, the mean with noise added, blends of two
scenes, and the x0 predictions of real generations (every step of 48 runs of
training prompts: the engine's own previews, which no encoder produces).
Scenes come from the model's own domain (``impasto.json``'s ``training.domain``:
the 128 px ``scenes`` of ``starter/scenes.py``, or the old 64 px ``shapes``) and
use training combinations only; the test and the bench judge on held-out
combinations and on shapes no starter stage ever saw (the concept families).

The loss is L1 plus L1 on the pictures' horizontal and vertical differences
(``--edge-weight``): whole-picture L1 is dominated by flat areas and let an early
decoder round every corner while two levels off on average.  After training, on
the scenes domain, the strict shape judges read the decoder's pictures of held-out
scenes (:func:`shape_agreement`); ``for_pictures`` is written true when they
accept at least 90 % of the scenes they accept from the VAE's decode - only then
do live jobs paint their final picture with it (``backend/engine/fast_vae.py``).

The result is written atomically to ``MODEL/preview_decoder.safetensors`` and
``impasto.json`` gets ``"preview_decoder": {...}`` (file name + provenance),
which is how the engine finds it (:func:`impasto.backend.engine.preview.choose_previewer`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from impasto.backend.engine.model_card import card_path, read_card, write_card
from impasto.backend.engine.preview import PREVIEW_DECODER_FILE as DECODER_FILE
from impasto.backend.engine.native import vae_scale_factor
from impasto.backend.engine.preview_net import TinyPreviewDecoder, default_widths, save_decoder, widths_factor

TRAIN_SEED = 1234
COMMAND = "nice python -m impasto.backend.tooling.train_preview"
EDGE_WEIGHT = 1.0
MAX_HELD_OUT_L1 = 10.0            # issue 19's colour bound: a decoder above it is not installed
FOR_PICTURES_SHARE = 0.9          # kept shapes (of the VAE's) for a decoder to paint final pictures


def starter_path() -> Path:
    from impasto.backend.engine.models import starter_dir

    path = starter_dir()
    if path is None:
        raise SystemExit("the starter model is not installed (backend/assets/starter)")
    return path


def load_vae(model_dir: Path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(Path(model_dir) / "vae"), local_files_only=True)
    return vae.eval().requires_grad_(False)


def model_domain(model_dir: Path) -> Tuple[str, int]:
    """(domain, native size) of a starter folder: its ``impasto.json`` says which generator made it.

    ``scenes`` is the richer 128 px domain (``starter/scenes.py``), ``shapes`` the old 64 px one
    (``starter/domain.py``); a folder that says nothing is the old domain at its native size.
    """
    cfg = read_card(model_dir or starter_path())
    dom = (cfg.get("training") or {}).get("domain", "shapes")
    return dom, int(cfg.get("native_size", 128 if dom == "scenes" else 64))


def _to_tensor(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(imgs, np.float32) / 127.5 - 1).permute(0, 3, 1, 2).contiguous()


def render_scenes(combos: Sequence[Tuple[str, str, str]], count: int, seed: int, size: int = 64) -> torch.Tensor:
    """``count`` old-domain scenes (random combos from ``combos``) as (N, 3, size, size) in [-1, 1]."""
    from impasto.backend.starter import domain

    rng = np.random.default_rng(seed)
    out = np.zeros((count, size, size, 3), np.uint8)
    for i in range(count):
        shape, fg, bg = combos[int(rng.integers(len(combos)))]
        out[i] = np.asarray(domain.render(shape, fg, bg, size, rng))
    return _to_tensor(out)


def held_out_scenes(count: int, seed: int):
    """Scenes-domain scenes no training stage drew: a held-out triple each, every other one with a
    concept-benchmark family (star, plus, heart, ...) added, which no starter stage ever saw."""
    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import scenes as SC

    g = np.random.default_rng(seed)
    ev = SC.eval_triples()
    out = []
    for i in range(count):
        fam, fg, bg = ev[int(g.integers(len(ev)))]
        if i % 2 == 0:
            out.append(SC.Scene(bg, [SC.make_object(fam, fg, None, None, g)]))
            continue
        a = SC.make_object(fam, fg, "big", "left", g)
        new_fg = [c for c in SC.COLOR_NAMES if c != bg][int(g.integers(len(SC.COLOR_NAMES) - 1))]
        b = SC.make_object(FAM.HELD_OUT_FAMILIES[i % len(FAM.HELD_OUT_FAMILIES)], new_fg, "big", "right", g)
        out.append(SC.Scene(bg, [a, b]))
    return out


def domain_pixels(model_dir: Path, count: int, seed: int, held_out: bool = False) -> torch.Tensor:
    """Pictures of the model's own domain, training combinations (or held-out ones), at its native size."""
    model_dir = model_dir or starter_path()
    dom, size = model_domain(model_dir)
    if dom == "scenes":
        from impasto.backend.starter import scenes as SC

        if held_out:
            return _to_tensor(np.stack([np.asarray(SC.render(s, size)) for s in held_out_scenes(count, seed)]))
        return _to_tensor(SC.sample_batch(count, size, seed)[0])
    from impasto.backend.starter import domain

    combos = domain.eval_combos() + domain.star_combos() if held_out else domain.train_combos()
    return render_scenes(combos, count, seed, size)


def domain_prompts(model_dir: Path, count: int, seed: int, held_out: bool = False) -> List[str]:
    """Prompts of the model's domain: training captions, or held-out ones (never in training)."""
    dom, _ = model_domain(model_dir)
    if dom == "scenes":
        from impasto.backend.starter import scenes as SC
        from impasto.backend.starter import scenes_eval as E

        if held_out:  # the prompt-following benchmark's three kinds, interleaved
            per_kind = [E.prompt_scenes(kind, (count + 2) // 3, seed) for kind in ("plain", "one", "two")]
            return [SC.caption(per_kind[i % 3][i // 3]) for i in range(count)]
        return SC.sample_batch(count, 16, seed)[1]
    from impasto.backend.starter import domain

    combos = domain.eval_combos() if held_out else domain.train_combos()
    g = np.random.default_rng(seed)
    if held_out:
        return [domain.caption(*combos[i % len(combos)]) for i in range(count)]
    return [domain.caption(*combos[int(j)]) for j in g.integers(len(combos), size=count)]


@torch.no_grad()
def encode(vae, pixels: torch.Tensor, sample: bool = False, seed: int = 0, chunk: int = 64) -> torch.Tensor:
    """Scaled latents (what the UNet sees) of ``pixels``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(pixels), chunk):
        dist = vae.encode(pixels[i:i + chunk]).latent_dist
        out.append((dist.sample(gen) if sample else dist.mean) * vae.config.scaling_factor)
    return torch.cat(out)


@torch.no_grad()
def full_decode(vae, latents: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The VAE's own decode of scaled latents, clamped to [-1, 1] like the final image."""
    out = [vae.decode(latents[i:i + chunk] / vae.config.scaling_factor).sample.clamp(-1, 1)
           for i in range(0, len(latents), chunk)]
    return torch.cat(out)


def live_x0_latents(prompts: Sequence[str], steps: int, seed: int, samplers=("euler_a", "ddim"),
                    model_dir: Path = None) -> torch.Tensor:
    """The x0 predictions the engine previews during real generations of ``prompts`` (one per step).

    Early ones are soft, off-domain mixes no encoder produces: the previews an artist sees first.
    Painted at the model's native size, as an artist's "model default" would be.
    """
    from impasto.backend.engine import Engine
    from impasto.backend.engine.hooks import JobHooks
    from impasto.protocol.messages import Generate

    model = "starter"
    saved = os.environ.get("IMPASTO_STARTER_DIR")
    if model_dir is not None:  # the model being trained for, loaded as the engine loads the starter
        os.environ["IMPASTO_STARTER_DIR"] = str(model_dir)
    try:
        eng = Engine()
        loaded = eng.model(model)
    finally:
        if saved is None:
            os.environ.pop("IMPASTO_STARTER_DIR", None)
        else:
            os.environ["IMPASTO_STARTER_DIR"] = saved
    side = loaded.entry.native_size or 64
    seen = []
    real = loaded.previewer

    def capture(latents, *a, **k):
        seen.append(latents[:1].detach().float().cpu().clone())
        return None  # nothing is sent anywhere: only the latents are wanted

    loaded.previewer = capture
    try:
        for i, prompt in enumerate(prompts):
            eng.run(Generate(job=f"x{i}", model=model, prompt=prompt, width=side, height=side,
                             steps=steps, sampler=samplers[i % len(samplers)], cfg_scale=5.0, seed=seed + i),
                    JobHooks(want_preview=True))
    finally:
        loaded.previewer = real
    return torch.cat(seen)


def training_latents(vae, scenes: int, seed: int, generations: int = 48, model_dir: Path = None) -> torch.Tensor:
    pixels = domain_pixels(model_dir, scenes, seed)
    mean = encode(vae, pixels)
    g = torch.Generator().manual_seed(seed + 1)
    sampled = encode(vae, pixels, sample=True, seed=seed + 2)
    sigma = torch.rand(len(mean), 1, 1, 1, generator=g) * 0.6 * mean.std()
    noisy = mean + sigma * torch.randn(mean.shape, generator=g)
    t = torch.rand(len(mean), 1, 1, 1, generator=g)
    blend = t * mean + (1 - t) * mean[torch.randperm(len(mean), generator=g)]
    parts = [mean, sampled, noisy, blend]
    if generations:
        prompts = domain_prompts(model_dir, generations, seed + 4)
        # twice: the previews that matter most
        parts += [live_x0_latents(prompts, 20, seed + 5, model_dir=model_dir)] * 2
    return torch.cat(parts)


def _crop(latents: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor, side: int, g: torch.Generator):
    """The batch ``idx`` cut to one random ``side`` x ``side`` latent window (and its 8x picture window).

    Why: the decoder is a few convolutions (it sees about 4 latent pixels around each one), so
    windows teach it what whole pictures do at a fraction of the cost: a 128 px model's 16x16
    latents train in 8x8 windows at the 64 px starter's cost per step.
    """
    h, w = latents.shape[-2:]
    if side >= h and side >= w:
        return latents[idx], targets[idx]
    y = int(torch.randint(h - side + 1, (1,), generator=g))
    x = int(torch.randint(w - side + 1, (1,), generator=g))
    s = targets.shape[-1] // w
    return (latents[idx, :, y:y + side, x:x + side],
            targets[idx, :, y * s:(y + side) * s, x * s:(x + side) * s])


def edge_l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the pictures' horizontal and vertical differences: what keeps corners and straight edges.

    Why: plain L1 over whole pictures is dominated by flat areas; a decoder can be within two
    levels on average and still round every corner (the first starter decoder turned diamonds and
    rectangles into blobs that the strict shape judges rejected).
    """
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(out) - dx(target)).abs().mean() + (dy(out) - dy(target)).abs().mean()


def train(model_dir: Path, minutes: float = 8.0, scenes: int = 1500, max_steps: int = 3000, batch: int = 16,
          lr: float = 2e-3, seed: int = TRAIN_SEED, log=print, crop: int = 8,
          cache: Path = None, widths=None, low_blocks: int = 2, high_blocks=None, edge_weight: float = 0.0,
          generations: int = 48
          ) -> Tuple[TinyPreviewDecoder, dict]:
    torch.manual_seed(seed)
    vae = load_vae(model_dir)
    # one x2 upsampling per VAE level: the widths follow the VAE (8x: 64, 48, 32, 16; 4x: 64, 32, 16),
    # checked before the data stage's minutes
    factor = vae_scale_factor(vae.config)
    if widths and widths_factor(widths) != factor:
        raise ValueError(f"{len(widths)} widths make a {widths_factor(widths)}x decoder; this VAE is {factor}x "
                         f"(give {factor.bit_length()} widths)")
    t0 = time.perf_counter()
    key = {"vae_sha256": vae_fingerprint(model_dir), "scenes": scenes, "generations": generations, "seed": seed,
           "unet": _weights_fingerprint(Path(model_dir) / "unet")}
    pairs = torch.load(cache, weights_only=True) if cache and Path(cache).is_file() else None
    if pairs is not None and pairs.get("key") == json.dumps(key, sort_keys=True):
        latents, targets = pairs["latents"], pairs["targets"]
        log(f"{len(latents)} pairs from {cache}")
    else:
        latents = training_latents(vae, scenes, seed, generations, model_dir=model_dir)
        targets = full_decode(vae, latents)
        if cache:  # the data stage is most of the time: a rerun with other knobs skips it
            tmp = Path(str(cache) + ".tmp")
            torch.save({"key": json.dumps(key, sort_keys=True), "latents": latents, "targets": targets}, tmp)
            os.replace(tmp, cache)
    data_s = time.perf_counter() - t0
    log(f"{len(latents)} pairs in {data_s:.1f} s")
    train_t0 = time.perf_counter()
    model = TinyPreviewDecoder(latents.shape[1], widths or default_widths(factor), low_blocks, high_blocks)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max_steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed + 3)
    deadline = time.perf_counter() + minutes * 60
    step, loss_ema = 0, None
    model.train()
    while step < max_steps and time.perf_counter() < deadline:
        idx = torch.randint(len(latents), (batch,), generator=g)
        x, y = _crop(latents, targets, idx, crop, g)
        out = model(x)
        l1 = (out - y).abs().mean()
        loss = l1 + edge_weight * edge_l1(out, y) if edge_weight else l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_ema = l1.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * l1.item()
        if step % 200 == 0:
            log(f"step {step}: L1 {loss_ema * 127.5:.2f} levels (0-255)")
    model.eval()
    info = {"command": COMMAND, "vae_sha256": vae_fingerprint(model_dir), "seed": seed, "pairs": len(latents), "steps": step, "batch": batch, "lr": lr,
            "latent_window": crop, "native_size": int(targets.shape[-1]), "edge_weight": edge_weight,
            "widths": list(model.config["widths"]), "low_blocks": low_blocks,
            "high_blocks": list(model.config.get("high_blocks", [0] * (len(model.config["widths"]) - 1))),
            "params": model.param_count(), "final_train_l1_levels": round(loss_ema * 127.5, 2),
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
            "training_minutes": round((time.perf_counter() - train_t0) / 60, 2), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return model, info


def _weights_fingerprint(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(Path(folder).glob("*.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def vae_fingerprint(model_dir: Path) -> str:
    """sha256 (first 16 hex) of the VAE weights a decoder was trained to copy: a retrained VAE shows."""
    return _weights_fingerprint(Path(model_dir) / "vae")


def held_out_latents(vae, count: int = 48, seed: int = 4321, model_dir: Path = None) -> torch.Tensor:
    """Scaled latents of scenes the decoder never saw: held-out combinations and never-trained shapes."""
    return encode(vae, domain_pixels(model_dir or starter_path(), count, seed, held_out=True))


def preview_colour_error(previewer, vae, latents: torch.Tensor, full: torch.Tensor = None) -> float:
    """Mean absolute error (0-255) of the preview images an artist sees vs the full VAE decode.

    Each preview is the previewer's real output (the RGBA image sent to clients), resized to the
    decode's size; the reference is the decode quantised to 8 bits like the final picture.
    """
    from PIL import Image

    full = full_decode(vae, latents) if full is None else full
    ref = ((full + 1) * 127.5).round().clamp(0, 255).permute(0, 2, 3, 1).numpy()
    errs = []
    for i in range(len(latents)):
        img = previewer(latents[i:i + 1]).convert("RGB").resize(ref.shape[2:0:-1], Image.BILINEAR)
        errs.append(np.abs(np.asarray(img, np.float64) - ref[i]).mean())
    return float(np.mean(errs))


@torch.no_grad()
def shape_agreement(decode, vae, count: int = 48, seed: int = 4321) -> dict:
    """How often the strict shape judges accept a fast decode where they accept the VAE's (scenes domain).

    Held-out scenes of the 128 px starter's domain (one object with size and place, and two
    objects; triples never trained), encoded by the VAE (its mode) and decoded twice: by the
    VAE and by ``decode`` (scaled latents -> [-1, 1] pixels).  Colour error alone hides rounded
    corners; the judges (family, colour, place, size, count) do not.
    """
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter.scenes_eval import judge_scene, prompt_scenes

    scenes = prompt_scenes("one", count // 2, seed=seed) + prompt_scenes("two", count - count // 2, seed=seed + 1)
    pixels = _to_tensor(np.stack([np.asarray(SC.render(sc, 128)) for sc in scenes]))
    latents = encode(vae, pixels)
    full = full_decode(vae, latents)
    fast = torch.cat([decode(latents[i:i + 16]) for i in range(0, len(latents), 16)])
    as_img = lambda t: ((t.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()  # noqa: E731
    vae_ok = [judge_scene(as_img(full[i]), sc)["all"] for i, sc in enumerate(scenes)]
    fast_ok = [judge_scene(as_img(fast[i]), sc)["all"] for i, sc in enumerate(scenes)]
    return {"scenes": len(scenes), "vae_all_right": int(sum(vae_ok)), "fast_all_right": int(sum(fast_ok)),
            "fast_right_where_vae_right": int(sum(a and b for a, b in zip(vae_ok, fast_ok)))}


def picture_check(model, model_dir: Path) -> dict:
    """``shapes_kept`` and ``for_pictures`` for impasto.json (the scenes domain only: its judges)."""
    dom, _ = model_domain(model_dir)
    if dom != "scenes":
        return {"for_pictures": False, "for_pictures_why": "no shape judges for this domain: previews only"}
    model.eval()
    agree = shape_agreement(model, load_vae(model_dir))
    share = agree["fast_right_where_vae_right"] / max(1, agree["vae_all_right"])
    return {"shapes_kept": agree, "for_pictures": share >= FOR_PICTURES_SHARE,
            "for_pictures_why": f"the strict judges accept {agree['fast_right_where_vae_right']} of the "
                                f"{agree['vae_all_right']} held-out scenes they accept from the VAE's decode "
                                f"({100 * share:.0f} %; >= {100 * FOR_PICTURES_SHARE:.0f} % paints final pictures)"}


def install_net(save, model, info: dict, model_dir: Path, file_name: str, key: str) -> Path:
    """Write a model's own small net into its folder (``save(model, path, metadata)``) and name it in
    its impasto.json under ``key`` with its provenance (both atomic)."""
    model_dir = Path(model_dir)
    path = model_dir / file_name
    save(model, path, {"training": info})
    cfg = read_card(model_dir, required=card_path(model_dir).exists())   # a broken card is refused, not replaced
    cfg[key] = {"file": file_name, **info}
    write_card(model_dir, cfg)
    return path


@torch.no_grad()
def held_out_error(model, model_dir: Path, count: int = 24) -> float:
    """Mean absolute error (0-255) of ``model``'s decode of held-out scenes against the VAE's decode."""
    vae = load_vae(model_dir)
    latents = held_out_latents(vae, count=count, model_dir=model_dir)
    model.eval()
    return round(float((model(latents).clamp(-1, 1) - full_decode(vae, latents)).abs().mean()) * 127.5, 2)


def install(model: TinyPreviewDecoder, info: dict, model_dir: Path) -> Path:
    """Write the decoder into the model folder and reference it from its impasto.json (both atomic)."""
    return install_net(save_decoder, model, info, model_dir, DECODER_FILE, "preview_decoder")


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped starter)")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock cap on the training loop")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--scenes", type=int, default=600, help="rendered training scenes (128 px: ~1.4 s each under load)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the training pairs in this file; a rerun for the same weights reuses them")
    ap.add_argument("--widths", type=int, nargs="+", default=None,
                    help="channels at latent resolution and after each x2 upsampling, one per VAE level "
                         "(default: 64 48 32 16 for an 8x VAE, 64 32 16 for a 4x one)")
    ap.add_argument("--low-blocks", type=int, default=2, help="convolutions at latent resolution")
    ap.add_argument("--high-blocks", type=int, nargs="+", default=None,
                    help="residual blocks after each x2 upsampling, one count per upsampling (default: none)")
    ap.add_argument("--edge-weight", type=float, default=EDGE_WEIGHT, help="weight of the edge (difference) L1")
    ap.add_argument("--crop", type=int, default=8,
                    help="train on random CROP x CROP latent windows (8: the 64 px starter's whole latent)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model or starter_path()
    model, info = train(model_dir, args.minutes, args.scenes, args.steps, batch=args.batch, lr=args.lr, crop=args.crop,
                        cache=args.cache, widths=args.widths, low_blocks=args.low_blocks,
                        high_blocks=args.high_blocks, edge_weight=args.edge_weight)
    info["command"] = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    info["held_out_l1_levels"] = held_out_error(model, model_dir)
    if info["held_out_l1_levels"] > MAX_HELD_OUT_L1:
        # a run that diverged (it happens at a high learning rate) must not replace a working decoder
        print(f"not installed: held-out error {info['held_out_l1_levels']} levels (0-255) > {MAX_HELD_OUT_L1}; "
              f"the run did not converge (try a lower --lr): {info}", file=sys.stderr)
        return 1
    info.update(picture_check(model, model_dir))    # the shape judges' minutes only for a decoder that is kept
    path = install(model, info, model_dir)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB): {info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
