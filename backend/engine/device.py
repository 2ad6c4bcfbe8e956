"""Where the model runs: CUDA fp16 if present, else Apple MPS, else CPU fp32."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    def describe(self) -> str:
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return f"{name} {str(self.dtype).replace('torch.', '')}"


def pick_device(override: str | None = None) -> DeviceChoice:
    """``IMPASTO_DEVICE=cpu|cuda|mps`` forces a device (tests force nothing);
    ``IMPASTO_PRECISION=fp32`` keeps a GPU in full precision (cards whose fp16
    gives black pictures, or to compare with a CPU bit for bit in spirit);
    ``bf16`` picks bfloat16 where the card has it."""
    wanted = override or os.environ.get("IMPASTO_DEVICE", "")
    precision = os.environ.get("IMPASTO_PRECISION", "").lower()
    half = torch.float32 if precision in ("fp32", "float32", "full") else torch.float16
    if precision in ("bf16", "bfloat16") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        half = torch.bfloat16  # inference default stays fp16 (diffusers' own); training prefers bf16 (gpu.py)
    if wanted == "cuda" or (not wanted and torch.cuda.is_available()):
        return DeviceChoice(torch.device("cuda"), half)
    mps = getattr(torch.backends, "mps", None)
    if wanted == "mps" or (not wanted and mps is not None and mps.is_available()):
        return DeviceChoice(torch.device("mps"), half)
    return DeviceChoice(torch.device("cpu"), torch.float32)
