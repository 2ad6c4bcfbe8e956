"""Impasto starter model: procedural domain, detector, training and the shipped weights."""

from __future__ import annotations

from pathlib import Path

STARTER_DIR: Path = Path(__file__).resolve().parent.parent / "assets" / "starter"

_REQUIRED = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "scheduler/scheduler_config.json",
)


def starter_available() -> bool:
    """True when the shipped starter diffusers folder is complete (weights included)."""
    if not all((STARTER_DIR / p).is_file() for p in _REQUIRED):
        return False
    for sub in ("unet", "vae", "text_encoder"):
        if not any((STARTER_DIR / sub).glob("*.safetensors")):
            return False
    return True


__all__ = ["STARTER_DIR", "starter_available"]
