"""Resumable training state: ``IMPASTO_HOME/training/NAME/ckpt-<step>/``.

A checkpoint holds everything the next step needs - the adapter's weights, the
AdamW moments, the random generator's state, the step count, the settings it
was made with - so a training stopped by a cancel, a crash or a killed daemon
continues as if it had never stopped (the tests check the resumed weights
against an uninterrupted run).

Each checkpoint is written into a hidden temp folder and renamed into place;
``state.json`` is written last, so a folder without it is never read.  Older
checkpoints of the same training are removed once a newer one is complete.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from impasto.backend.engine.models import impasto_home

STATE = "state.json"
ADAPTER = "adapter.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.pt"


def training_dir(name: str) -> Path:
    return impasto_home() / "training" / name


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: Dict[str, Any]

    def adapter(self) -> Dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.path / ADAPTER))

    def optimizer(self) -> Dict[str, Any]:
        return torch.load(self.path / OPTIMIZER, map_location="cpu", weights_only=True)

    def rng(self) -> torch.Tensor:
        return torch.load(self.path / RNG, map_location="cpu", weights_only=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def save(folder: Path, step: int, adapter: Dict[str, torch.Tensor], optimizer: Dict[str, Any],
         rng_state: torch.Tensor, state: Dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in adapter.items()}, str(tmp / ADAPTER))
        torch.save(optimizer, tmp / OPTIMIZER)
        torch.save(rng_state, tmp / RNG)
        for f in (ADAPTER, OPTIMIZER, RNG):
            _fsync_file(tmp / f)
        with open(tmp / STATE, "w", encoding="utf-8") as fh:
            json.dump(dict(state, step=step), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        final = folder / f"ckpt-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in folder.iterdir():
        if old != final and (old.name.startswith("ckpt-") or old.name.startswith(".tmp-")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(folder: Path) -> Optional[Checkpoint]:
    """The newest complete checkpoint in ``folder``, or None."""
    if not folder.is_dir():
        return None
    best: Optional[Checkpoint] = None
    for p in folder.iterdir():
        if not p.name.startswith("ckpt-") or not (p / STATE).is_file():
            continue
        try:
            state = json.loads((p / STATE).read_text(encoding="utf-8"))
            step = int(state["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if best is None or step > best.step:
            best = Checkpoint(path=p, step=step, state=state)
    return best


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
