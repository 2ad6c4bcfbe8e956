"""Seconds per concept-training step: Impasto's trainer vs diffusers' DreamBooth-LoRA recipe.

The baseline is the inner loop of diffusers' ``examples/dreambooth/train_dreambooth_lora.py``
(not installed here, so reimplemented faithfully, step for step):

* ``LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
  target_modules=["to_k", "to_q", "to_v", "to_out.0"])`` added to the UNet;
* a ``DreamBoothDataset`` that opens each picture file at every step
  (``Image.open`` + ``exif_transpose`` + RGB), resizes (bilinear), centre-crops,
  normalises to [-1, 1] and tokenizes its prompt; instance and class examples
  concatenated by its ``collate_fn`` (prior preservation);
* per step: ``vae.encode(pixels).latent_dist.sample() * scaling_factor``,
  ``randn_like`` noise, ``randint`` timesteps, ``add_noise``, the text encoder on
  the batch's token ids, the UNet, MSE (+ prior MSE), backward, gradient
  clipping at 1.0, AdamW (betas 0.9/0.999, weight decay 1e-2, eps 1e-8), constant
  learning rate, ``zero_grad``.

Impasto's trainer (:class:`impasto.backend.concepts.train.Trainer`) runs the same
model, pictures, class pictures, batch, rank and learning rate; it caches the
latent distributions and text embeddings before its loop.

**Settings = what an artist gets.** Rank, learning rate and the text-encoder LoRA are left
unset in the request and filled by ``with_model_defaults`` exactly as a real training job is
(the model's ``impasto.json`` recommendation, else diffusers' SD1.5 values); the baseline is
given the same resolved settings (``--train_text_encoder`` in diffusers' script when the
model's default trains the text encoder), so the two sides do the same work per step.
``--rank``/``--lr``/``--text-encoder`` override the defaults for both.  Both are timed per
step (``perf_counter`` around one whole step), after warm-up steps, interleaved
in rounds so machine noise hits both alike; medians are reported with their ratio.
Impasto's step is timed as trained by default (with neighbour distillation: half a batch
more rows from the base model's predictions, made once in the cache) and without it.

Usage: python bench/concept_train.py [--model DIR] [--steps 30] [--warmup 5] [--resolution 64]
       [--batch 4] [--rank R] [--lr LR] [--text-encoder on|off] [--threads 1] [--rounds 3]
       [--json out.json] [--result NAME]
Writes bench/results/concept_train_<model>.json (``--result`` to name it otherwise, ``--result ""``
for none); ``bench/report.py`` renders it into docs/performance.md.
With no --model: the starter model if installed, else the tiny test model (built in a temp folder);
``--model tiny``: the tiny test model.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script
from results_io import write_result


def make_pictures(folder: Path, n: int, size: int, seed: int = 0):
    """n instance pictures (PNG files, as an artist would have them)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        im = Image.new("RGB", (size + 16 * i, size), tuple(int(x) for x in rng.integers(0, 255, 3)))
        d = ImageDraw.Draw(im)
        c = size // 2
        pts = [(c + (c - 6) * np.cos(a) * (1 if k % 2 == 0 else 0.45), c + (c - 6) * np.sin(a) * (1 if k % 2 == 0
               else 0.45)) for k, a in enumerate(np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False))]
        d.polygon(pts, fill=tuple(int(x) for x in rng.integers(0, 255, 3)))
        p = folder / f"{i:02d}.png"
        im.save(p)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- the diffusers baseline


class DreamBoothDataset:
    """As in diffusers' script: files opened and transformed at every __getitem__."""

    def __init__(self, instance_paths, instance_prompt, class_paths, class_prompt, tokenizer, size):
        self.instance_paths, self.class_paths = list(instance_paths), list(class_paths)
        self.instance_prompt, self.class_prompt = instance_prompt, class_prompt
        self.tokenizer, self.size = tokenizer, size
        self._length = max(len(self.instance_paths), len(self.class_paths))

    def __len__(self):
        return self._length

    def _transform(self, path):
        img = ImageOps.exif_transpose(Image.open(path))
        if img.mode != "RGB":
            img = img.convert("RGB")
        w, h = img.size  # transforms.Resize(size, BILINEAR): shorter side to size
        s = self.size / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
        w, h = img.size  # transforms.CenterCrop(size)
        left, top = (w - self.size) // 2, (h - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(img, dtype=np.float32) / 255.0  # ToTensor + Normalize([0.5], [0.5])
        return torch.from_numpy((arr - 0.5) / 0.5).permute(2, 0, 1)

    def _tokenize(self, prompt):
        return self.tokenizer(prompt, truncation=True, padding="max_length",
                              max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids

    def __getitem__(self, index):
        return {
            "instance_images": self._transform(self.instance_paths[index % len(self.instance_paths)]),
            "instance_prompt_ids": self._tokenize(self.instance_prompt),
            "class_images": self._transform(self.class_paths[index % len(self.class_paths)]),
            "class_prompt_ids": self._tokenize(self.class_prompt),
        }


def collate_fn(examples):
    input_ids = [e["instance_prompt_ids"] for e in examples] + [e["class_prompt_ids"] for e in examples]
    pixel_values = [e["instance_images"] for e in examples] + [e["class_images"] for e in examples]
    pixel_values = torch.stack(pixel_values).to(memory_format=torch.contiguous_format).float()
    return {"input_ids": torch.cat(input_ids, dim=0), "pixel_values": pixel_values}


class DiffusersBaseline:
    def __init__(self, model_dir: Path, instance_paths, class_paths, prompt, class_prompt, size, batch, rank, lr,
                 device, seed=0, train_text_encoder=False):
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from transformers import CLIPTextModel, CLIPTokenizer

        torch.manual_seed(seed)
        self.device = device
        self.tokenizer = CLIPTokenizer.from_pretrained(str(model_dir), subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(str(model_dir), subfolder="text_encoder").to(device)
        self.vae = AutoencoderKL.from_pretrained(str(model_dir), subfolder="vae").to(device)
        self.unet = UNet2DConditionModel.from_pretrained(str(model_dir), subfolder="unet").to(device)
        self.noise_scheduler = DDPMScheduler.from_pretrained(str(model_dir), subfolder="scheduler")
        for m in (self.vae, self.text_encoder, self.unet):
            m.requires_grad_(False)
        self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, init_lora_weights="gaussian",
                                         target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        self.params = [p for p in self.unet.parameters() if p.requires_grad]
        self.train_text_encoder = train_text_encoder
        if train_text_encoder:  # the script's --train_text_encoder: a LoRA on the CLIP attention too
            # (the script calls transformers' add_adapter, which refuses the installed peft's version;
            # peft's own injection makes the same LoRA layers)
            from peft import inject_adapter_in_model

            inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                               target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
                                    self.text_encoder)
            self.params += [p for p in self.text_encoder.parameters() if p.requires_grad]
            self.text_encoder.train()
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        self.dataset = DreamBoothDataset(instance_paths, prompt, class_paths, class_prompt, self.tokenizer, size)
        self.batch = batch
        self.index = 0
        self.unet.train()

    def next_batch(self):  # DataLoader(shuffle=True, num_workers=0): random order
        idx = torch.randperm(len(self.dataset))[: self.batch].tolist()
        return collate_fn([self.dataset[i] for i in idx])

    def step(self) -> float:
        batch = self.next_batch()
        pixel_values = batch["pixel_values"].to(self.device)
        model_input = self.vae.encode(pixel_values).latent_dist.sample()
        model_input = model_input * self.vae.config.scaling_factor
        noise = torch.randn_like(model_input)
        bsz = model_input.shape[0]
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,),
                                  device=model_input.device).long()
        noisy = self.noise_scheduler.add_noise(model_input, noise, timesteps)
        encoder_hidden_states = self.text_encoder(batch["input_ids"].to(self.device), return_dict=False)[0]
        model_pred = self.unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        if self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(model_input, noise, timesteps)
        model_pred, model_pred_prior = torch.chunk(model_pred, 2, dim=0)
        target, target_prior = torch.chunk(target, 2, dim=0)
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        prior_loss = F.mse_loss(model_pred_prior.float(), target_prior.float(), reduction="mean")
        loss = loss + 1.0 * prior_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


# --------------------------------------------------------------------------- Impasto's trainer


class ImpastoTrainer:
    def __init__(self, engine, model_name, instance_paths, class_paths, trigger, class_noun, size, batch, rank=0, lr=0.0,
                 text_encoder=None):
        """rank 0 / lr 0 / text_encoder None: the model's defaults, filled in as a real job's are."""
        from impasto.backend.concepts import train as T
        from impasto.backend.engine import JobHooks
        from impasto.backend.engine.images import to_wire
        from impasto.protocol.messages import Train

        loaded = engine.model(model_name)
        pics = [to_wire(Image.open(p)) for p in instance_paths]
        req = Train(job="bench", name="bench", images=pics, trigger=trigger, class_noun=class_noun, steps=10 ** 4 - 1,
                    rank=rank, learning_rate=lr, train_text_encoder=text_encoder, resolution=size,
                    prior_preservation=True, class_images=len(class_paths), sample_every=0, checkpoint_every=0,
                    preview=False)
        self.requested = {"rank": rank or None, "learning_rate": lr or None, "train_text_encoder": text_encoder}
        self.req = req = T.with_model_defaults(req, loaded)  # what run_train does first
        self.recommended = dict(getattr(loaded.entry, "concept_training", None) or {})
        self.loaded = loaded
        self.trainer = t = T.Trainer(engine, loaded, req, JobHooks())
        T.adapters.unload_all(loaded)
        self.snapshot = T._ModelSnapshot(loaded)
        # the same class pictures as the baseline (already made), skipping their generation
        t.pictures = T.dataset.prepare_images(pics, t.resolution, t.warnings)
        t.captions = T.dataset.instance_captions([], len(pics), t.trigger, t.class_noun, t.warnings)
        t.digest, t.batch, t.resumed_from = "bench", batch, 0
        t.class_pictures = [T.dataset.fit_square(Image.open(p).convert("RGB"), t.resolution) for p in class_paths]
        t.class_captions = [f"a {class_noun}"] * len(class_paths)
        t.distill_prompts = t.distill_candidates([f"a {class_noun}"])  # neighbour distillation, as prepare()
        t0 = time.perf_counter()
        t.cache()
        self.cache_seconds = time.perf_counter() - t0
        t.setup(None)

    def step(self) -> float:
        return self.trainer.train_step()

    def step_without_distillation(self) -> float:
        """The same trainer with neighbour distillation off for one step (without its extra rows)."""
        t = self.trainer
        keep, t.distill_prompts = t.distill_prompts, []
        try:
            return t.train_step()
        finally:
            t.distill_prompts = keep

    def close(self):
        from impasto.backend.concepts import adapters

        adapters.unload_all(self.loaded)
        self.snapshot.restore()


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="diffusers model folder")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per trainer per round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--class-images", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=0, help="0 (default): the model's recommendation")
    ap.add_argument("--lr", type=float, default=0.0, help="0 (default): the model's recommendation")
    ap.add_argument("--text-encoder", choices=("on", "off"), default=None,
                    help="text-encoder LoRA; default: the model's recommendation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--result", default=None, help="name of the kept result file (default concept_train_<model>)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tiny_dir = None
    if args.model is not None and str(args.model) == "tiny":  # the tiny test model, built for the run
        import tempfile

        from impasto.backend.tiny_model import build_tiny_model

        tiny_dir = Path(tempfile.mkdtemp(prefix="impasto-bench-tiny-"))
        args.model = build_tiny_model(tiny_dir / "tiny")
    work, engine, model = temp_engine("impasto-bench-train-", args.model)
    loaded = engine.model(model.name)
    device = loaded.choice.device

    inst = make_pictures(work / "instance", args.images, args.resolution)
    # class pictures from the base model, shared by both trainers
    from impasto.backend.concepts import class_images
    from impasto.backend.engine import JobHooks

    cls_imgs = class_images.ensure(loaded, [("a shape", args.class_images)], args.resolution, JobHooks())
    cls_dir = work / "class"
    cls_dir.mkdir()
    cls_paths = []
    for i, im in enumerate(cls_imgs):
        p = cls_dir / f"{i:03d}.png"
        im.save(p)
        cls_paths.append(p)

    te = None if args.text_encoder is None else args.text_encoder == "on"
    ours = ImpastoTrainer(engine, model.name, inst, cls_paths, "zwx", "shape", args.resolution, args.batch,
                          args.rank, args.lr, te)
    rank, lr, te = ours.req.rank, ours.req.learning_rate, bool(ours.req.train_text_encoder)
    base = DiffusersBaseline(model, inst, cls_paths, "a zwx shape", "a shape", args.resolution, args.batch,
                             rank, lr, device, train_text_encoder=te)
    distilled = len(ours.trainer.distill_prompts)
    timed(ours.step, args.warmup)
    timed(base.step, args.warmup)
    t_ours, t_base, t_plain = [], [], []
    for _ in range(args.rounds):
        t_base += timed(base.step, args.steps)
        t_ours += timed(ours.step, args.steps)
        if distilled:
            t_plain += timed(ours.step_without_distillation, args.steps)
    ours.close()
    m_ours, m_base = statistics.median(t_ours), statistics.median(t_base)
    m_plain = statistics.median(t_plain) if t_plain else m_ours
    report = {
        "model": model.name, "device": loaded.choice.describe(), "threads": args.threads,
        "resolution": args.resolution, "batch": f"{args.batch} instance + {args.batch} class", "rank": rank,
        "learning_rate": lr, "text_encoder_lora": te, "trigger_embedding": bool(ours.req.trigger_embedding),
        "settings_source": ("the model's impasto.json recommendation" if ours.recommended
                            else "diffusers' SD1.5 values: the model recommends none"),
        "requested_overrides": ours.requested,
        "steps_timed_each": len(t_ours),
        "impasto_s_per_step_median": round(m_ours, 5), "diffusers_recipe_s_per_step_median": round(m_base, 5),
        "speedup": round(m_base / m_ours, 3),
        "neighbour_distillation_prompts": distilled,
        "impasto_without_distillation_s_per_step_median": round(m_plain, 5),
        "speedup_without_distillation": round(m_base / m_plain, 3),
        "impasto_cache_seconds_once": round(ours.cache_seconds, 4),
        "impasto_p10_p90": [round(float(np.percentile(t_ours, q)), 5) for q in (10, 90)],
        "diffusers_p10_p90": [round(float(np.percentile(t_base, q)), 5) for q in (10, 90)],
        "torch": torch.__version__,
        "impasto_s": [round(x, 5) for x in t_ours], "diffusers_s": [round(x, 5) for x in t_base],
        "impasto_without_distillation_s": [round(x, 5) for x in t_plain],
    }
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_s")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    name = f"concept_train_{model.name}" if args.result is None else args.result
    if name:
        write_result(name, report, seeds=[0], threads=args.threads, argv=sys.argv if argv is None else [sys.argv[0], *argv],
                     baseline="diffusers' train_dreambooth_lora.py inner loop (reimplemented step for step), same "
                              "model, pictures, batch, rank, learning rate and text-encoder choice, interleaved in "
                              "the same run",
                     settings={"resolution": args.resolution, "images": args.images, "class_images": args.class_images,
                               "batch": args.batch, "rank": rank, "learning_rate": lr, "text_encoder_lora": te,
                               "warmup": args.warmup, "rounds": args.rounds, "steps_per_round": args.steps},
                     tables={"main": {"columns": [
                         "model (CPU)", "settings (the model's defaults)", "Impasto s/step (median)",
                         "without distillation", "diffusers recipe s/step (median)", "speed-up, default / without",
                         "one-off cache"], "rows": [[
                             f"{model.name}", f"rank {rank}, lr {lr:g}, text-encoder LoRA {'on' if te else 'off'}, "
                             f"trigger embedding {'on' if report['trigger_embedding'] else 'off'} "
                             f"({report['settings_source']})",
                             f"{m_ours:.4f}", f"{m_plain:.4f}", f"{m_base:.4f}",
                             f"**{m_base / m_ours:.2f}x** / {m_base / m_plain:.2f}x",
                             f"{ours.cache_seconds:.2f} s"]]}})
    shutil.rmtree(work, ignore_errors=True)  # models are symlinked, nothing of the caller's is inside
    if tiny_dir is not None:
        shutil.rmtree(tiny_dir, ignore_errors=True)
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
