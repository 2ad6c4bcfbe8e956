"""One GPU, one script, no downloads: Impasto's speed against raw diffusers on full-size SD1.5 and SDXL.

Full-size SD1.5 and SDXL architectures with *random* weights are built from
the configs the package ships (``backend/assets/sd15_config``, ``sdxl_config``)
- speed does not depend on what the weights learned - and measured in one run:

* it/s at 512x512 (SD1.5) and 1024x1024 (SDXL), batch 1, CFG on, 30 steps:
  the raw diffusers pipeline in-process vs Impasto end to end through a real
  daemon, on its default path and on its fast path (``IMPASTO_FAST=1``:
  channels_last + ``torch.compile``, compiled once during the warm-up);
  it/s is (steps - 1) / (time from the first step's end to the last's), from
  the pipeline's step callback (raw) or the client's progress events (daemon);
* first-preview latency (submit -> the first progress event carrying a preview);
* cancel latency in steps (the cancel is sent on step k's progress; the
  ``cancelled`` event says how many steps ran);
* an inpaint edit on a 4096x4096 canvas (SD1.5, a 1200x900 mask): seconds;
* LoRA training s/step at 512x512 (SD1.5, rank 4, batch 1, UNet only, no
  prior preservation) vs the inner loop of diffusers' ``train_dreambooth_lora``
  recipe written out here (VAE encode + text encode + UNet forward/backward +
  AdamW every step, fp16 autocast with loss scaling, as the recipe runs);
* peak VRAM of each (``torch.cuda.max_memory_allocated``; the daemon reports
  its own per job).

Writes ``--json`` and a markdown table (``--md``).  ``--dry-run`` runs the same
code on the CPU with tiny SD1.5 / SDXL models built in code, 64 px, 4 steps,
a 256 px canvas (under a minute; ``tests/test_bench_gpu.py`` runs it so the
script cannot rot); its figures are marked as a dry run and are never GPU
figures.

The GPU machine has torch but may lack diffusers, transformers, peft,
accelerate, safetensors and pyzmq: download their wheels here once
(``pip download diffusers transformers peft accelerate safetensors pyzmq
huggingface_hub tokenizers -d bench/wheels --only-binary :all:``), carry
``bench/wheels`` and run ``pip install --no-index bench/wheels/*.whl && python
bench/gpu.py``.  The package needs no install: the script finds it from its
own folder.

Usage: python bench/gpu.py [--dry-run] [--json FILE] [--md FILE] [--skip-compile]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
PROMPT = "a red circle on a blue background, oil painting"


def ensure_importable() -> None:
    """``impasto.*`` importable here and in the daemons, installed or not (a shim of symlinks)."""
    try:
        import impasto.backend  # noqa: F401
        return
    except ImportError:
        pass
    shim = Path(tempfile.mkdtemp(prefix="impasto-shim-"))
    (shim / "impasto").mkdir()
    (shim / "impasto" / "__init__.py").write_text("")
    for name in ("backend", "protocol", "plugin_krita", "plugin_gimp", "desktop"):
        (shim / "impasto" / name).symlink_to(REPO / name)
    sys.path.insert(0, str(shim))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim)] + [p for p in [os.environ.get("PYTHONPATH")] if p])


# --------------------------------------------------------------------------- settings


def settings(dry: bool) -> dict:
    if dry:
        return {"device": "cpu", "steps": 4, "sizes": {"sd15": 64, "sdxl": 64}, "canvas": 256,
                "mask": (64, 48), "train_steps": 3, "train_size": 64, "cancel_after": 2}
    return {"device": "cuda", "steps": 30, "sizes": {"sd15": 512, "sdxl": 1024}, "canvas": 4096,
            "mask": (1200, 900), "train_steps": 20, "train_size": 512, "cancel_after": 5}


# --------------------------------------------------------------------------- models


def build_models(root: Path, dry: bool, device: str) -> dict:
    """{family: model folder}: tiny models (dry run) or full-size random weights from the shipped configs."""
    import torch

    if dry:
        from impasto.backend.tooling.tiny_model import build_tiny_model, build_tiny_sdxl

        return {"sd15": build_tiny_model(root / "sd15", sample_size=64), "sdxl": build_tiny_sdxl(root / "sdxl")}
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from impasto.backend.engine import single_file as sf

    out = {}
    for family, cfg_root in (("sd15", sf.SD15_CONFIG_DIR), ("sdxl", sf.SDXL_CONFIG_DIR)):
        folder = cfg_root / "base"
        torch.manual_seed(0)
        with torch.device(device):   # random init on the GPU: seconds, not minutes
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder", local_files_only=True))
            parts = dict(unet=unet.half(), vae=vae.half(), text_encoder=te.half())
            if family == "sdxl":
                parts["text_encoder_2"] = CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(folder / "text_encoder_2", local_files_only=True)).half()
        with sf.config_folder(family, folder / "none.safetensors") as cfg:
            parts["tokenizer"] = CLIPTokenizer.from_pretrained(cfg / "tokenizer")
            if family == "sdxl":
                parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(cfg / "tokenizer_2")
                parts["scheduler"] = EulerDiscreteScheduler.from_pretrained(cfg / "scheduler")
                pipe = StableDiffusionXLPipeline(**parts, add_watermarker=False)
            else:
                parts["scheduler"] = PNDMScheduler.from_pretrained(cfg / "scheduler")
                pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                               requires_safety_checker=False)
        pipe.save_pretrained(str(root / family), safe_serialization=True)
        out[family] = root / family
        del pipe, parts
        torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- daemons


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A real ``impasto serve`` subprocess (started now, waited for later: two start in parallel)."""

    def __init__(self, models: Path, home: Path, device: str, fast: bool, compile_: bool):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        home.mkdir(parents=True, exist_ok=True)
        # the daemon's secret lives in its own home, where wait() reads it (not in the caller's IMPASTO_HOME or
        # IMPASTO_SECRET_FILE: run as a script outside the tests, the client once looked in ~/.impasto and never
        # got in - "daemon did not answer")
        from impasto.protocol.credentials import secret_path

        self.home = home
        env = dict(os.environ, IMPASTO_HOME=str(home), IMPASTO_SECRET_FILE=str(secret_path(home)),
                   IMPASTO_DEVICE=device, IMPASTO_FAST="1" if fast else "0",
                   IMPASTO_COMPILE="1" if (fast and compile_) else "0", IMPASTO_OFFLOAD="none",
                   PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        self.log = home / "daemon.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint",
                                      self.endpoint, "--models-dir", str(models), "--no-preload"],
                                     env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 180):
        from impasto.protocol import Client

        client = Client(self.endpoint, home=str(self.home))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited:\n{self.log.read_text()[-3000:]}")
            if client.ping(timeout=1.0):
                client.hello(timeout=timeout)
                return client
        raise SystemExit(f"daemon did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- measurements


def rate(marks) -> float:
    """Steps per second between the first and the last step's end."""
    return (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 and marks[-1] > marks[0] else 0.0


def raw_pipeline(model: Path, family: str, size: int, steps: int, device: str) -> dict:
    """The diffusers pipeline in-process, same scheduler ("euler"), CFG 7, batch 1."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from impasto.backend.engine.samplers import make_scheduler

    dtype = torch.float16 if device == "cuda" else torch.float32
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    extra = {"add_watermarker": False} if family == "sdxl" else {"safety_checker": None,
                                                                  "requires_safety_checker": False}
    pipe = cls.from_pretrained(str(model), torch_dtype=dtype, local_files_only=True, **extra).to(device)
    pipe.set_progress_bar_config(disable=True)

    def once(n):
        marks = []
        pipe.scheduler = make_scheduler("euler", dict(pipe.scheduler.config))

        def cb(p, i, t, kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
            return {}

        t0 = time.perf_counter()
        pipe(PROMPT, num_inference_steps=n, guidance_scale=7.0, width=size, height=size,
             generator=torch.Generator("cpu").manual_seed(SEED), callback_on_step_end=cb).images[0].convert("RGBA")
        return marks, time.perf_counter() - t0

    once(min(steps, 3))                      # warm-up: kernels chosen, caches filled
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    marks, total = once(steps)
    peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"its": round(rate(marks), 4), "total_s": round(total, 4), "peak_vram_bytes": peak}


def through_daemon(client, family: str, size: int, steps: int, cancel_after: int) -> dict:
    from impasto.protocol.messages import Cancelled, Generate, Progress, Result

    req = dict(prompt=PROMPT, steps=steps, cfg_scale=7.0, width=size, height=size, sampler="euler", model=family,
               seed=SEED)
    client.submit(Generate(**{**req, "steps": min(steps, 3)})).wait(1800)   # load + warm-up (+ compile)
    client.submit(Generate(**req)).wait(1800)                               # compile of the full length, if any
    marks, result = [], None
    t0 = time.perf_counter()
    for ev in client.submit(Generate(**req)).events(timeout=1800):
        if isinstance(ev, Progress):
            marks.append(time.perf_counter())
        elif isinstance(ev, Result):
            result = ev
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_preview = None
    for ev in client.submit(Generate(**req, preview=True)).events(timeout=1800):
        if isinstance(ev, Progress) and ev.preview is not None and first_preview is None:
            first_preview = (time.perf_counter() - t0, ev.step)
    job = client.submit(Generate(**{**req, "steps": max(steps, 3 * cancel_after)}))
    sent, ran = None, None
    for ev in job.events(timeout=1800):
        if isinstance(ev, Progress) and sent is None and ev.step >= cancel_after:
            sent = ev.step
            job.cancel()
        elif isinstance(ev, Cancelled):
            ran = ev.steps
    return {"its": round(rate(marks), 4), "total_s": round(total, 4),
            "peak_vram_bytes": result.info.get("peak_vram_bytes"), "fast_path": result.info.get("fast_path"),
            "first_preview_s": round(first_preview[0], 4), "first_preview_step": first_preview[1],
            "cancel_extra_steps": (ran - sent) if ran is not None and sent is not None else None}


def edit_canvas(client, canvas: int, mask: tuple, steps: int) -> dict:
    from impasto.protocol.messages import Generate, Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:canvas, 0:canvas]
    pic = np.stack([x * 255 // canvas, y * 255 // canvas, (x + y) * 127 // canvas, np.full_like(x, 255)], -1)
    pic = (pic + rng.integers(0, 8, pic.shape)).clip(0, 255).astype(np.uint8)
    m = np.zeros((canvas, canvas), np.uint8)
    mw, mh = mask
    x0, y0 = canvas // 3, canvas // 3
    m[y0:y0 + mh, x0:x0 + mw] = 255
    req = Generate(prompt="a wooden boat", steps=steps, strength=0.75, sampler="euler", seed=SEED, model="sd15",
                   init_image=Image(canvas, canvas, pic.tobytes()), mask=Image(canvas, canvas, m.tobytes(), "gray8"))
    t0 = time.perf_counter()
    res = client.submit(req).wait(1800)
    return {"canvas": canvas, "mask": list(mask), "total_s": round(time.perf_counter() - t0, 4),
            "region": res.info.get("region"), "diffusion_size": res.info.get("diffusion_size"),
            "peak_vram_bytes": res.info.get("peak_vram_bytes")}


def training_impasto(client, size: int, steps: int) -> dict:
    from impasto.protocol.messages import Image, Train

    rng = np.random.default_rng(1)
    pics = []
    for _ in range(3):   # the fewest a concept takes
        pic = rng.integers(0, 255, (size, size, 4), dtype=np.uint8)
        pic[..., 3] = 255
        pics.append(Image(size, size, pic.tobytes()))
    req = Train(name="bench", images=pics, trigger="zwx", class_noun="", rank=4,
                steps=steps, learning_rate=1e-4, resolution=size, prior_preservation=False, class_images=0,
                model="sd15", sample_every=0, checkpoint_every=0, preview=False, train_text_encoder=False,
                trigger_embedding=False)
    res = client.submit(req).wait(3600)
    return {"s_per_step": res.info.get("step_median_s"), "steps": steps, "batch": res.info.get("batch"),
            "peak_vram_bytes": res.info.get("peak_vram_bytes")}


def training_recipe(model: Path, size: int, steps: int, device: str, batch: int) -> dict:
    """The inner loop of diffusers' train_dreambooth_lora recipe (its defaults: rank 4, AdamW 1e-4,
    fp16 mixed precision with loss scaling, VAE and text encoder run every step) at Impasto's batch."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=dtype).to(device)
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype).to(device)
    te = CLIPTextModel.from_pretrained(model / "text_encoder", torch_dtype=dtype).to(device)
    tok = CLIPTokenizer.from_pretrained(model / "tokenizer")
    sched = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    for m in (unet, vae, te):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    scaler = torch.amp.GradScaler("cuda") if cuda else None
    g = torch.Generator("cpu").manual_seed(SEED)
    pixels = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device, dtype)
    ids = tok(["a photo of zwx dog"] * batch, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids.to(device)
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 3):
        t0 = time.perf_counter()
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g).to(device, latents.dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g).to(device).long()
        noisy = sched.add_noise(latents, noise, t)
        hidden = te(ids)[0]
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            pred = unet(noisy, t, hidden).sample
        loss = F.mse_loss(pred.float(), noise.float())
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:   # three warm-up steps, as the Impasto side's median ignores its first
            times.append(time.perf_counter() - t0)
    peak = int(torch.cuda.max_memory_allocated()) if cuda else None
    del unet, vae, te, opt
    if cuda:
        torch.cuda.empty_cache()
    return {"s_per_step": round(statistics.median(times), 6), "steps": steps, "batch": batch, "peak_vram_bytes": peak}


# --------------------------------------------------------------------------- report


def gib(b):
    return "-" if b is None else f"{b / 2**30:.2f} GiB"


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def markdown(report: dict) -> str:
    head = ("**DRY RUN on the CPU with tiny models: these are not GPU figures.**\n\n" if report["dry_run"] else
            f"GPU: {report['machine']['gpu']}\n\n")
    rows = ["| measure | " + " | ".join(f"{f} {report['sizes'][f]}px" for f in ("sd15", "sdxl")) + " |",
            "|---|---|---|"]

    def row(name, fn):
        rows.append(f"| {name} | " + " | ".join(str(fn(report["families"][f])) for f in ("sd15", "sdxl")) + " |")

    row("raw diffusers it/s", lambda r: r["raw"]["its"])
    row("Impasto default it/s (x raw)", lambda r: f"{r['default']['its']} ({r['default_vs_raw']}x)")
    row("Impasto fast it/s (x raw)", lambda r: f"{r['fast']['its']} ({r['fast_vs_raw']}x)")
    row("first preview (s, step)", lambda r: f"{r['default']['first_preview_s']} s, step {r['default']['first_preview_step']}")
    row("cancel: extra steps", lambda r: r["default"]["cancel_extra_steps"])
    row("peak VRAM raw / default / fast",
        lambda r: f"{gib(r['raw']['peak_vram_bytes'])} / {gib(r['default']['peak_vram_bytes'])} / "
                  f"{gib(r['fast']['peak_vram_bytes'])}")
    e, t = report["edit"], report["training"]
    lines = [head, "\n".join(rows), "",
             f"Inpaint edit on a {e['canvas']}px canvas ({e['mask'][0]}x{e['mask'][1]} mask, SD1.5): "
             f"{e['total_s']} s, peak VRAM {gib(e['peak_vram_bytes'])}.", "",
             f"LoRA training at {t['size']}px (SD1.5): Impasto {t['impasto']['s_per_step']} s/step vs the "
             f"train_dreambooth_lora loop {t['recipe']['s_per_step']} s/step, batch {t['impasto']['batch']} both "
             f"(recipe time / Impasto time = {t['recipe_over_impasto']}x), "
             f"peak VRAM {gib(t['impasto']['peak_vram_bytes'])} vs {gib(t['recipe']['peak_vram_bytes'])}.", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny models: checks the script, measures nothing")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--skip-compile", action="store_true", help="fast path without torch.compile")
    args = ap.parse_args(argv)
    ensure_importable()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    dry = args.dry_run
    cfg = settings(dry)
    device = cfg["device"]
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run to check the script on a CPU")
    work = Path(tempfile.mkdtemp(prefix="impasto-gpu-bench-"))
    started = time.perf_counter()
    stages = {}

    def stage(name):
        stages[name] = round(time.perf_counter() - started - sum(stages.values()), 1)
        print(f"[{time.perf_counter() - started:6.1f} s] {name}", file=sys.stderr, flush=True)
    # both daemons start (imports, engine) while the models are built
    daemons = {"default": Daemon(work / "models", work / "home-default", device, fast=False, compile_=False),
               "fast": Daemon(work / "models", work / "home-fast", device, fast=True,
                              compile_=not (dry or args.skip_compile))}
    try:
        models = build_models(work / "models", dry, device)
        stage("models built")
        clients = {k: d.wait() for k, d in daemons.items()}
        stage("daemons up")
        families = {}
        for family, model in models.items():
            size = cfg["sizes"][family]
            raw = raw_pipeline(model, family, size, cfg["steps"], device)
            default = through_daemon(clients["default"], family, size, cfg["steps"], cfg["cancel_after"])
            fast = through_daemon(clients["fast"], family, size, cfg["steps"], cfg["cancel_after"])
            families[family] = {"raw": raw, "default": default, "fast": fast,
                                "default_vs_raw": ratio(default["its"], raw["its"]),
                                "fast_vs_raw": ratio(fast["its"], raw["its"])}
            stage(f"{family}: raw, default, fast")
        clients["fast"].close()
        daemons["fast"].stop()
        edit = edit_canvas(clients["default"], cfg["canvas"], cfg["mask"], cfg["steps"])
        impasto_train = training_impasto(clients["default"], cfg["train_size"], cfg["train_steps"])
        clients["default"].close()
        daemons["default"].stop()
        stage("edit + Impasto training")
        recipe = training_recipe(models["sd15"], cfg["train_size"], cfg["train_steps"], device,
                                 impasto_train["batch"] or 1)
        stage("recipe training")
    finally:
        for d in daemons.values():
            d.stop()
    report = {
        "bench": "gpu", "dry_run": dry,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + list(argv if argv is not None else sys.argv[1:])),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": f"{platform.machine()} {os.cpu_count()} CPUs", "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                    "torch_threads": torch.get_num_threads()},
        "seed": SEED, "steps": cfg["steps"], "sizes": cfg["sizes"], "sampler": "euler", "cfg": 7.0, "batch": 1,
        "baseline": "the diffusers pipeline in-process (same model, scheduler, size, steps, CFG, seed); training: "
                    "the train_dreambooth_lora inner loop written out in this script",
        "fast_path": "IMPASTO_FAST=1 (channels_last" + ("" if dry or args.skip_compile else " + torch.compile") + ")",
        "families": families, "edit": edit,
        "training": {"size": cfg["train_size"], "impasto": impasto_train, "recipe": recipe,
                     "recipe_over_impasto": ratio(recipe["s_per_step"], impasto_train["s_per_step"])},
        "wall_s": round(time.perf_counter() - started, 1), "stages_s": stages,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    return report


if __name__ == "__main__":
    main()
