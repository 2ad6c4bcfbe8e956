"""The one reader of a ``.safetensors`` file's JSON header in the engine (standard library only).

The model scan, the shipped few-step LoRA's metadata (``bundled``), control models and the model
fingerprint read headers without loading tensors; a module of its own so that ``bundled``, which
``models`` imports, reads them without importing ``models`` back.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Tuple

MAX_HEADER = 100 * 1024 * 1024


def safetensors_layout(path: Path) -> Tuple[dict, int]:
    """A ``.safetensors`` file's JSON header and the file offset its tensor data starts at (the header's
    ``data_offsets`` count from there).  Raises OSError, ValueError or struct.error on a damaged file."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > MAX_HEADER:
            raise ValueError("header too large")
        return json.loads(fh.read(length)), 8 + length


def safetensors_header(path: Path) -> dict:
    """Only the JSON header (tensor names, shapes, dtypes and ``__metadata__``); errors as above."""
    return safetensors_layout(path)[0]
