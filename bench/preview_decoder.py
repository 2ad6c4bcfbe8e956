"""Preview truthfulness and cost on the starter: linear map vs the trained preview decoder.

    OMP_NUM_THREADS=1 nice python bench/preview_decoder.py            # writes bench/results/preview_decoder.json
    python bench/report.py                                            # fills docs/performance.md

Issue 19 item 4's targets: colour error of a preview vs the full VAE decode of the same latents
(mean absolute, 0-255) <= 10 on the starter, at <= 5 ms per preview on CPU.

Both previewers get the same latents in the same run: the starter VAE's encodings of scenes the
decoder never trained on (held-out colour x shape combinations and shapes no starter stage saw).
The error is measured on what a client receives (the RGBA preview image, resized to the decode's
size) against the full decode quantised to 8 bits.  Time per preview is the whole previewer call
(network or matrix + the PIL image), median over every scene, one torch thread, CPU; the full
VAE decode of the same latents is timed too, as the cost a preview avoids.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402  (import first: records the load at start)

import torch  # noqa: E402

from impasto.backend.engine.models import starter_dir  # noqa: E402
from impasto.backend.engine.preview import LinearPreviewer, choose_previewer, fit_latent_rgb  # noqa: E402
from impasto.backend.tooling import train_preview as tp  # noqa: E402

SEED = 4321


def time_ms(fn, latents, repeats: int) -> list:
    out = []
    for _ in range(repeats):
        for i in range(len(latents)):
            x = latents[i:i + 1]
            t0 = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=8, help="real generations whose every x0 preview is judged")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--shape-scenes", type=int, default=48, help="held-out scenes judged for kept shapes")
    ap.add_argument("--no-result", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    path = starter_dir()
    vae = tp.load_vae(path)
    cpu = torch.device("cpu")
    latents = tp.held_out_latents(vae, args.scenes, SEED)
    full = tp.full_decode(vae, latents)
    linear = LinearPreviewer(fit_latent_rgb(vae, cpu, torch.float32))
    trained = choose_previewer(path, vae, cpu, torch.float32, "sd15")
    assert trained.kind == "trained", "the starter has no trained preview decoder: run tooling/train_preview"
    err = {"linear": tp.preview_colour_error(linear, vae, latents, full),
           "trained": tp.preview_colour_error(trained, vae, latents, full)}
    dom, side = tp.model_domain(path)
    x0 = tp.live_x0_latents(tp.domain_prompts(path, args.prompts, SEED, held_out=True), args.steps, SEED,
                            samplers=("euler_a",))
    # shapes kept: the strict judges on the decoders' pictures of held-out scenes vs on the VAE's
    shapes = {"trained": tp.shape_agreement(trained.pixels, vae, count=args.shape_scenes, seed=SEED),
              "linear": tp.shape_agreement(lambda x: torch.nn.functional.interpolate(
                  linear.pixels(x), scale_factor=8, mode="bilinear", align_corners=False),
                  vae, count=args.shape_scenes, seed=SEED)}
    err["x0_linear"] = tp.preview_colour_error(linear, vae, x0)
    err["x0_trained"] = tp.preview_colour_error(trained, vae, x0)
    with torch.no_grad():
        for prev in (linear, trained):  # warm up
            prev(latents[:1])
        ms = {"linear": time_ms(linear, latents, args.repeats), "trained": time_ms(trained, latents, args.repeats),
              "full_vae_decode": time_ms(lambda x: vae.decode(x / vae.config.scaling_factor), latents, args.repeats)}
    med = {k: statistics.median(v) for k, v in ms.items()}
    size_kb = (path / tp.DECODER_FILE).stat().st_size / 1024
    params = trained.module.param_count()
    lines = [f"{k:16s} colour error {err.get(k, float('nan')):6.2f}  median {med[k]:7.3f} ms" for k in med]
    lines.append(f"x0 previews ({len(x0)}): linear {err['x0_linear']:.2f}  trained {err['x0_trained']:.2f}")
    lines.append(f"shapes kept (strict judges): trained {shapes['trained']['fast_right_where_vae_right']}, "
                 f"linear {shapes['linear']['fast_right_where_vae_right']} of the VAE's "
                 f"{shapes['trained']['vae_all_right']} / {shapes['trained']['scenes']}")
    print("\n".join(lines))
    if args.no_result:
        return 0
    kept = lambda k: f"{shapes[k]['fast_right_where_vae_right']} of {shapes[k]['vae_all_right']}"  # noqa: E731
    rows = [
        ["linear map (fallback)", f"{err['linear']:.1f}", f"{err['x0_linear']:.1f}", kept("linear"),
         f"{med['linear']:.3f}", "-"],
        ["trained preview decoder", f"{err['trained']:.1f}", f"{err['x0_trained']:.1f}", kept("trained"),
         f"{med['trained']:.3f}", f"{params:,} params, {size_kb:.0f} KB"],
        ["full VAE decode (reference)", "0 (by definition)", "0 (by definition)",
         f"{shapes['trained']['vae_all_right']} of {shapes['trained']['scenes']} (all the judges accept)",
         f"{med['full_vae_decode']:.3f}", "-"],
    ]
    write_result(
        "preview_decoder",
        {"colour_error_0_255": {k: round(v, 2) for k, v in err.items()},
         "median_ms": {k: round(v, 3) for k, v in med.items()},
         "error_ratio_linear_over_trained": round(err["linear"] / err["trained"], 2),
         "shapes_kept": shapes, "decoder_params": params, "decoder_kb": round(size_kb, 1), "raw_ms": {k: [round(x, 3) for x in v]
                                                                               for k, v in ms.items()}},
        seeds=[SEED] + [SEED + i for i in range(args.prompts)], baseline="the linear latent->RGB map and the full VAE decode, same latents, same run",
        settings={"scenes": args.scenes, "repeats": args.repeats, "prompts": args.prompts, "steps": args.steps,
                  "x0_seeds": f"{SEED}..{SEED + args.prompts - 1}", "model": "starter", "device": "cpu",
                  "domain": dom, "native_size": side,
                  "latents": f"VAE encoder mean of held-out {dom} scenes (held-out combinations + never-trained "
                             f"shapes), {side} px"},
        tables={"main": {
            "caption": f"Starter model ({dom} domain), {args.scenes} held-out scenes ({side // 8}x{side // 8}x4 "
                       f"latents, {side} px decode), CPU, "
                       f"1 torch thread; live previews: the x0 prediction at every step of {args.prompts} "
                       f"generations of held-out prompts ({args.steps} steps, euler_a, CFG 5); "
                       "colour error = mean absolute difference of the preview image a client "
                       "receives vs the full VAE decode of the same latents (0-255); shapes kept = held-out scenes "
                       f"({args.shape_scenes}: one object with size and place, and two objects) whose decode the "
                       "strict judges accept (every attribute) among those whose VAE decode they accept; "
                       "time = median per preview "
                       f"over {args.scenes} x {args.repeats} calls. Target: error <= 10 at <= 5 ms.",
            "columns": ["previewer", "colour error, held-out scenes (0-255)",
                        f"colour error, x0 of {len(x0)} live previews (0-255)", "shapes kept (strict judges)",
                        "ms per preview (median)", "size"],
            "rows": rows}},
        argv=sys.argv if argv is None else [sys.argv[0], *argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
