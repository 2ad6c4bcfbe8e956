"""Where does the starter lose a shape's family?  Three measurements to aim its next training at.

The strict judges find the starter's colours, places, sizes and counts right and its shape
family wrong in a third to a half of its pictures (docs/performance.md, "The 128 px scenes
starter"); every companion's target that misses (few-step, control, sliders, concepts) misses
through it.  Before a retrain (the in-project ``python -m impasto.backend.starter.train``), this
bench tells causes apart, on the *training* triples only (nothing held out is looked at):

* **memorised or short of capacity?**  The denoising loss (the training objective, epsilon MSE,
  no weighting) of the shipped UNet on scenes of its own training pool (regenerated: the pool's
  seed stream, ``--seed 1234`` + 2 as ``train.py`` draws it) against fresh scenes of the same
  triples, same noise and timesteps, by timestep band.  A model that memorised its pool has a
  clearly lower loss on it.
* **lost early or late in the schedule?**  The generator's own clean picture of a prompt,
  repainted by the starter (img2img, DDIM 20 steps, CFG 3, the same prompt) at denoising strength
  0.2 ... 0.8: the share whose family the strict judges still accept.  A family kept at low
  strength and lost at high strength is decided in the noisy steps, where the global shape forms.
* **confused or imprecise?**  Plain text-to-image pictures ("a red square on a blue background",
  DDIM 20, CFG 3) of every training family: what the strict judges say of each - the asked
  family, another family, or no family at all - and how well the asked family's own outline fits
  (its template IoU; the judge's floor is 0.90, 0.84 for thin families).  A model that draws the
  wrong family fits another family best; one that draws the right family with a wobbly outline
  fits its own family, under the floor.

    python bench/starter_shape_diagnosis.py [--model backend/assets/starter] [--n 32] [--pool 500]
        [--per-family 8]

Writes ``bench/results/starter_shape_diagnosis.json`` (``--no-write``: print only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results_io  # noqa: E402  (import first: records the load at start)

import numpy as np  # noqa: E402
import torch  # noqa: E402

BANDS = ((0, 100), (100, 300), (300, 600), (600, 1000))
STRENGTHS = (0.2, 0.4, 0.6, 0.8)
TRAIN_SEED = 1234          # train.py's default --seed; its scene pool is drawn from seed + 2


def _latents(vae, imgs: np.ndarray) -> torch.Tensor:
    """As ``train.py`` encoded its pool: the posterior mean, scaled."""
    from impasto.backend.starter.run_tools import to_tensor

    return vae.encode(to_tensor(imgs)).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def band_losses(pipe, imgs: np.ndarray, captions, seed: int) -> dict:
    """Mean epsilon MSE per timestep band, two noise draws per scene."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(seed)
    got = []
    for s in range(0, len(captions), 50):
        z = _latents(pipe.vae, imgs[s:s + 50])
        ids = pipe.tokenizer(captions[s:s + 50], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        enc = pipe.text_encoder(ids)[0]
        for _ in range(2):
            noise = torch.randn(z.shape, generator=g)
            t = torch.randint(0, sched.config.num_train_timesteps, (z.shape[0],), generator=g)
            pred = pipe.unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=enc).sample
            got += list(zip(t.tolist(), ((pred - noise) ** 2).mean(dim=(1, 2, 3)).tolist()))
    return {f"{lo}-{hi}": float(np.mean([v for t, v in got if lo <= t < hi])) for lo, hi in BANDS}


@torch.no_grad()
def family_verdicts(img2img, per_family: int, cfg: float) -> dict:
    """Per training family: the strict judges' verdicts on plain pictures of it, and its own fit.

    ``img2img``: the bench's pipeline; its components paint from noise here (no second load).
    """
    from diffusers import StableDiffusionPipeline

    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import judges as J
    from impasto.backend.starter import scenes as SC

    pipe = StableDiffusionPipeline(**img2img.components)
    pipe.set_progress_bar_config(disable=True)
    g = np.random.default_rng(17)
    triples = SC.train_triples()
    out = {}
    for fam in FAM.TRAIN_FAMILIES:
        mine = [t for t in triples if t[0] == fam]
        scenes = [SC.Scene(bg, [SC.make_object(fam, fg, None, None, g)])
                  for _, fg, bg in (mine[(5 * k) % len(mine)] for k in range(per_family))]
        gens = [torch.Generator().manual_seed(100 + k) for k in range(per_family)]
        pics = pipe([SC.caption(x) for x in scenes], negative_prompt=[""] * per_family, height=SC.NATIVE_SIZE,
                    width=SC.NATIVE_SIZE, num_inference_steps=20, guidance_scale=cfg, generator=gens).images
        said = {"right": 0, "another family": 0, "no family": 0, "no object": 0}
        fits = []
        for pic, sc in zip(pics, scenes):
            _, objs = J.find_objects(pic, min_fraction=0.002)
            objs = [o for o in objs if o.fg == sc.objects[0].fg]
            if not objs:
                said["no object"] += 1
                continue
            sc_fit = J.scores(max(objs, key=lambda o: o.radius).canon)
            fits.append(sc_fit[fam])
            label = J.verdict(sc_fit)
            said["right" if label == fam else "no family" if label == "none" else "another family"] += 1
        out[fam] = {**said, "own_fit_median": round(float(np.median(fits)), 3) if fits else None,
                    "floor": J.MIN_IOU_BY_FAMILY.get(fam, J.MIN_IOU)}
    return out


def verdict_table(verdicts: dict, per_family: int, cfg: float) -> dict:
    tot = {k: sum(v[k] for v in verdicts.values()) for k in ("right", "another family", "no family", "no object")}
    rows = [[fam, str(v["right"]), str(v["another family"]), str(v["no family"]), str(v["no object"]),
             f"{v['own_fit_median']:.2f}" if v["own_fit_median"] is not None else "-", f"{v['floor']:.2f}"]
            for fam, v in verdicts.items()]
    rows.append(["all", *[str(tot[k]) for k in tot], "", ""])
    return {"caption": (f"Plain pictures of each training family ({per_family} each, training triples, DDIM 20, "
                        f"CFG {cfg:g}, seeds 100..): what the strict judges say, and the median template IoU of "
                        "the asked family's own outline against the judge's floor."),
            "columns": ["family", "right", "another family", "no family", "no object", "own fit (median)",
                        "judge's floor"],
            "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=HERE.parent / "backend" / "assets" / "starter")
    ap.add_argument("--n", type=int, default=32, help="prompts per kind for the repaint test")
    ap.add_argument("--pool", type=int, default=500, help="scenes per side of the loss comparison")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--per-family", type=int, default=8, help="plain pictures per training family (verdicts)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(args.model, safety_checker=None,
                                                          requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    # 1. the loss on the training pool's own scenes vs fresh scenes of the same triples
    t0 = time.perf_counter()
    rng = np.random.default_rng(TRAIN_SEED + 2)       # train.py's pool stream (chunks of 250)
    pool_imgs, pool_caps = [], []
    while len(pool_caps) < args.pool:
        imgs, caps, _, _ = SC.sample_batch(250, SC.NATIVE_SIZE, rng)
        pool_imgs.append(imgs)
        pool_caps += caps
    pool_imgs = np.concatenate(pool_imgs)[:args.pool]
    pool_caps = pool_caps[:args.pool]
    fresh_imgs, fresh_caps, _, _ = SC.sample_batch(args.pool, SC.NATIVE_SIZE, np.random.default_rng(98765))
    loss = {"training pool": band_losses(pipe, pool_imgs, pool_caps, 5),
            "fresh scenes": band_losses(pipe, fresh_imgs, fresh_caps, 5)}
    loss_s = time.perf_counter() - t0

    # 2. the family kept when the generator's clean picture is repainted at each strength
    t0 = time.perf_counter()
    kinds = {"one": "one object, size + place", "plain": "plain (bigger) object"}
    scenes = {k: E.prompt_scenes(k, args.n, 0, split="train") for k in kinds}
    kept = {k: {} for k in kinds}
    for strength in STRENGTHS:
        for k, ss in scenes.items():
            pics = []
            for s in range(0, len(ss), 16):
                part = ss[s:s + 16]
                gens = [torch.Generator().manual_seed(s + i) for i in range(len(part))]
                pics += pipe([SC.caption(x) for x in part], image=[SC.render(x) for x in part], strength=strength,
                             num_inference_steps=20, guidance_scale=args.cfg, negative_prompt=[""] * len(part),
                             generator=gens).images
            kept[k][str(strength)] = E.score(pics, ss)["family"]
    repaint_s = time.perf_counter() - t0

    # 3. what the judges say of plain pictures of each family, and the asked family's template fit
    t0 = time.perf_counter()
    verdicts = family_verdicts(pipe, args.per_family, args.cfg)
    verdict_s = time.perf_counter() - t0

    for fam, v in verdicts.items():
        print(fam, v)
    for side, v in loss.items():
        print(side, {b: round(x, 5) for b, x in v.items()})
    for k, v in kept.items():
        print(k, v)
    if args.no_write:
        return 0
    bands = [f"{lo}-{hi}" for lo, hi in BANDS]
    pool, fresh = loss["training pool"], loss["fresh scenes"]
    results_io.write_result(
        "starter_shape_diagnosis",
        {"loss_by_band": loss, "family_kept_by_strength": kept, "verdicts_by_family": verdicts,
         "seconds": {"loss": round(loss_s, 1), "repaint": round(repaint_s, 1), "verdicts": round(verdict_s, 1)}},
        seeds=[TRAIN_SEED + 2, 98765, 5, 0, 17, 100], threads=args.threads,
        baseline="loss: fresh scenes of the same training triples, same noise and timesteps; repaint: the "
                 "generator's own picture (the strict judges accept its family in 100 %)",
        settings={"model": str(args.model), "pool_scenes": args.pool, "prompts_per_kind": args.n, "cfg": args.cfg,
                  "sampler": "ddim", "steps": 20, "split": "train", "per_family": args.per_family},
        tables={
            "loss": {"caption": (f"Denoising loss (epsilon MSE, unweighted, 2 noise draws per scene) of the starter "
                                 f"on {args.pool} scenes regenerated from its training pool against {args.pool} fresh "
                                 "scenes of the same training triples, by timestep band."),
                     "columns": ["scenes", *[f"t {b}" for b in bands]],
                     "rows": [[side, *[f"{v[b]:.5f}" for b in bands]] for side, v in loss.items()]
                     + [["pool / fresh", *[f"{pool[b] / fresh[b]:.2f}" for b in bands]]]},
            "repaint": {"caption": (f"The generator's clean picture of {args.n} training-triple prompts per kind, "
                                    f"repainted by the starter (img2img, DDIM 20, CFG {args.cfg:g}, same prompt): the "
                                    "share whose shape family the strict judges still accept, by denoising "
                                    "strength."),
                        "columns": ["kind", *[f"strength {s:g}" for s in STRENGTHS]],
                        "rows": [[kinds[k], *[f"{100 * v[str(s)]:.0f} %" for s in STRENGTHS]]
                                 for k, v in kept.items()]},
            "verdicts": verdict_table(verdicts, args.per_family, args.cfg)},
        argv=sys.argv if argv is None else ["bench/starter_shape_diagnosis.py", *argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
