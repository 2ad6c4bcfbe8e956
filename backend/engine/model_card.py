"""A model folder's ``impasto.json``: what Impasto knows of a model beyond diffusers' own configs.

The card says a model's native size, its recommended sampler / steps / CFG, how it was trained,
and where its companions' settings live (a control model's base, a preview decoder, the concept
and slider recipes).  Many readers need it - the model scan, the control store, the CLI's help,
the training and benchmark tools - so they all read it here, the same way: a folder without a
card, or with one that does not parse or is not a JSON object, has an empty card (the model's
own configs then decide), never a crash.  A tool that must have a card (it is about to extend
one) asks for ``required=True`` and gets a ``ValueError`` naming the file.

Writes are atomic (``protocol.atomic``): a training run stopped mid-write never leaves half a
card next to good weights.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

from impasto.protocol.atomic import write_atomic

CARD = "impasto.json"


def card_path(folder: os.PathLike) -> Path:
    return Path(folder) / CARD


def read_card(folder: os.PathLike, required: bool = False) -> Dict[str, Any]:
    """The folder's card ({} when it has none or it is unreadable, unless ``required``)."""
    path = card_path(folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if required:
            raise ValueError(f"{path}: no readable model card ({exc})") from None
        return {}
    if not isinstance(data, dict):
        if required:
            raise ValueError(f"{path}: the model card is not a JSON object")
        return {}
    return data


def card_block(folder: os.PathLike, key: str) -> Dict[str, Any]:
    """One block of the card, e.g. ``training`` or ``preview_decoder`` ({} when absent or not an object)."""
    block = read_card(folder).get(key)
    return block if isinstance(block, dict) else {}


def native_size(folder: os.PathLike, default: int = 64) -> int:
    """The model's native picture size as its card says (``default`` when it says nothing usable)."""
    try:
        size = int(read_card(folder).get("native_size", default))
    except (TypeError, ValueError):
        return default
    return size if size > 0 else default


def write_card(folder: os.PathLike, card: Dict[str, Any]) -> Path:
    """Write ``card`` as the folder's ``impasto.json`` (atomically, indented, UTF-8); returns its path."""
    path = card_path(folder)
    write_atomic(path, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return path
