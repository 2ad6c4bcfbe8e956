"""A tiny convolutional preview decoder: latents -> RGB at the VAE's full scale.

Why: the linear latent->RGB map (:mod:`.preview`) is one colour per latent
pixel and compresses a VAE's saturated colours towards grey (the starter's
previews were ~58 levels off the real decode).  A full VAE decode is truthful
but costs several denoising steps.  This network sits in between, in the
spirit of TAESD: a few convolutions and three x2 upsamplings, trained to
reproduce one model's VAE decode (``impasto.backend.tooling.train_preview``),
a few hundred KB of weights shipped next to that model.

The widths taper as the resolution grows (64 channels at latent resolution,
16 at full resolution), so nearly all the capacity works where it is cheap:
a preview costs a few million multiply-adds per latent pixel column.

Input: the latents the UNet sees (already multiplied by the VAE's
``scaling_factor``); output: RGB in [-1, 1], 8x the latent size.
The architecture is described by a small dict stored in the safetensors
metadata, so a retrained decoder with other widths loads without code changes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import torch
from torch import nn

DEFAULT_WIDTHS = (64, 48, 32, 16)  # latent res, x2, x4, x8


class _Residual(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: depth at a resolution without the plain stack's dead starts."""

    def __init__(self, width: int):
        super().__init__()
        self.a = nn.Conv2d(width, width, 3, padding=1)
        self.b = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(torch.relu(self.a(x))))


class TinyPreviewDecoder(nn.Module):
    """Scaled latents (N, C, h, w) -> RGB in [-1, 1] (N, 3, 8h, 8w)."""

    def __init__(self, latent_channels: int = 4, widths: Sequence[int] = DEFAULT_WIDTHS, low_blocks: int = 2,
                 high_blocks: Sequence[int] = (0, 0, 0)):
        super().__init__()
        widths = [int(w) for w in widths]
        high = [int(b) for b in high_blocks]
        if len(widths) != 4:
            raise ValueError("a preview decoder has four widths: latent resolution and three x2 upsamplings")
        if len(high) != 3:
            raise ValueError("a preview decoder has three high_blocks counts: one per x2 upsampling")
        self.config = {"latent_channels": int(latent_channels), "widths": widths, "low_blocks": int(low_blocks)}
        if any(high):
            self.config["high_blocks"] = high
        layers = [nn.Conv2d(latent_channels, widths[0], 3, padding=1), nn.ReLU()]
        for _ in range(low_blocks):
            layers += [nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.ReLU()]
        for a, b, extra in zip(widths[:-1], widths[1:], high):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), nn.ReLU()]
            layers += [_Residual(b) for _ in range(extra)]   # more work at this resolution: edges and corners
        layers += [nn.Conv2d(widths[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(latents))

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _save_net(model: nn.Module, path: Path, meta_key: str, extra: Dict[str, object] = None) -> None:
    """Write a tiny net's weights as safetensors, atomically, with its architecture under ``meta_key``."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {meta_key: json.dumps(model.config)}
    for k, v in (extra or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous().float().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata=meta)
    tmp.chmod(0o644)  # a shipped asset: readable like the model's other files
    tmp.replace(path)


def _load_net(path: Path, meta_key: str, cls, what: str):
    """Read a net written by :func:`_save_net` as ``cls`` (ValueError when the file is not one)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta_key not in meta:
        raise ValueError(f"{path} is not an Impasto {what} (no {meta_key} metadata)")
    cfg = json.loads(meta[meta_key])
    extra = {"high_blocks": cfg["high_blocks"]} if "high_blocks" in cfg else {}
    model = cls(cfg["latent_channels"], cfg["widths"], cfg.get("low_blocks", 2), **extra)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def save_decoder(model: TinyPreviewDecoder, path: Path, extra: Dict[str, object] = None) -> None:
    """Write the weights as safetensors, atomically, with the architecture in the metadata."""
    _save_net(model, path, "impasto_preview_decoder", extra)


def load_decoder(path: Path) -> TinyPreviewDecoder:
    """Read a decoder written by :func:`save_decoder` (ValueError when the file is not one)."""
    return _load_net(path, "impasto_preview_decoder", TinyPreviewDecoder, "preview decoder")


def read_metadata(path: Path) -> Dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


DEFAULT_ENCODER_WIDTHS = (16, 32, 48, 64)  # full res, /2, /4, /8 (latent res)


class TinyFastEncoder(nn.Module):
    """RGB in [-1, 1] (N, 3, 8h, 8w) -> scaled latents (N, C, h, w): the decoder's mirror, for live jobs.

    Trained (``impasto.backend.tooling.train_fast_encoder``) to reproduce one model's VAE
    encoder (the mode of its latent distribution, times ``scaling_factor``), so a live job
    can skip the VAE's encoder the way the preview decoder lets it skip the VAE's decoder.
    Three stride-2 convolutions down to latent resolution, then ``low_blocks`` convolutions
    there: nearly all the work where the picture is 8x smaller.
    """

    def __init__(self, latent_channels: int = 4, widths: Sequence[int] = DEFAULT_ENCODER_WIDTHS, low_blocks: int = 2):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) != 4:
            raise ValueError("a fast encoder has four widths: full resolution and three /2 downsamplings")
        self.config = {"latent_channels": int(latent_channels), "widths": widths, "low_blocks": int(low_blocks)}
        layers = [nn.Conv2d(3, widths[0], 3, padding=1), nn.ReLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(low_blocks):
            layers += [nn.Conv2d(widths[-1], widths[-1], 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(widths[-1], latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_encoder(model: TinyFastEncoder, path: Path, extra: Dict[str, object] = None) -> None:
    """Write a fast encoder as safetensors, atomically, with the architecture in the metadata."""
    _save_net(model, path, "impasto_fast_encoder", extra)


def load_encoder(path: Path) -> TinyFastEncoder:
    """Read an encoder written by :func:`save_encoder` (ValueError when the file is not one)."""
    return _load_net(path, "impasto_fast_encoder", TinyFastEncoder, "fast encoder")
