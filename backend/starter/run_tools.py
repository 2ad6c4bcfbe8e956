"""What every starter training script shares: the device option, checkpoints written atomically,
a stop on Ctrl-C or SIGTERM taken between two steps, the warm-up + cosine schedule and the EMA.

``train.py`` (the starter), ``train_control.py`` (its control model), ``distill_fewstep.py`` (its
LCM-LoRA) and ``finetune_decoder.py`` (its decoder) are long CPU runs that are stopped and resumed
session after session; they save, stop and schedule the same way because they call these.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch


def log(msg: str):
    """A progress line with the wall-clock time: runs span sessions, their logs are read by the hour."""
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def set_seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_tensor(imgs_u8: np.ndarray) -> torch.Tensor:
    """uint8 pictures (n, h, w, 3) -> the VAE's input: float (n, 3, h, w) in [-1, 1]."""
    return torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


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


def load_checkpoint(ck: Path, model, opt):
    """Model and optimizer state from an :func:`atomic_save` checkpoint -> its dict, or None if there is none."""
    if not ck.exists():
        return None
    st = torch.load(ck, map_location="cpu", weights_only=False)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    return st


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


@contextlib.contextmanager
def stop_requests():
    """Ctrl-C and SIGTERM during a training loop (the starter's UNet stage, ``train_control``, ``distill_fewstep``), as
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
