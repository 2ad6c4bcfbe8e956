"""A tiny random LoRA shaped like LCM-LoRA, for tests of few-step LoRAs (tooling).

LCM-LoRA (latent-consistency/lcm-lora-sdv1-5 / -sdxl) adapts the UNet only -
every attention projection, feed-forward, ``proj_in`` / ``proj_out``, the
time-embedding projections and the ResNet / resampler convolutions - in the
diffusers (peft) key layout ``unet.<module>.lora_A.weight`` with no text
encoder part, and ships as ``pytorch_lora_weights.safetensors``: a name that
says nothing, which is why the few-step presets also look at the concept's
name.  This writes the same layout for any (tiny) UNet, random and small, so
tests exercise the import -> preset -> job path without a download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch

# what LCM-LoRA's adapter config targets (its adapter_config.json target_modules)
LCM_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
               "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")


def lcm_lora_tensors(unet, rank: int = 4, seed: int = 0, scale: float = 0.02) -> Dict[str, torch.Tensor]:
    """Random LoRA pairs (peft keys, ``unet.`` prefix) on every LCM-LoRA target of ``unet``."""
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, torch.Tensor] = {}
    for name, mod in unet.named_modules():
        if not name.endswith(LCM_TARGETS) or not any(name == t or name.endswith("." + t) for t in LCM_TARGETS):
            continue
        if isinstance(mod, torch.nn.Linear):
            a = torch.randn(rank, mod.in_features, generator=g) * scale
            b = torch.randn(mod.out_features, rank, generator=g) * scale
        elif isinstance(mod, torch.nn.Conv2d):
            a = torch.randn(rank, mod.in_channels, *mod.kernel_size, generator=g) * scale
            b = torch.randn(mod.out_channels, rank, 1, 1, generator=g) * scale
        else:
            continue
        out[f"unet.{name}.lora_A.weight"] = a.contiguous()
        out[f"unet.{name}.lora_B.weight"] = b.contiguous()
    return out


def write_lcm_lora(model_dir: Path, out: Path, rank: int = 4, seed: int = 0,
                   metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write an LCM-LoRA-shaped file for the diffusers folder ``model_dir``'s UNet to ``out``."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(Path(model_dir), subfolder="unet", local_files_only=True)
    tensors = lcm_lora_tensors(unet, rank, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=dict(metadata or {}))
    return out
