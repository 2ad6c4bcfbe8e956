"""A tiny convolutional preview decoder: latents -> RGB at the VAE's full scale.

Why: the linear latent->RGB map (:mod:`.preview`) is one colour per latent
pixel and compresses a VAE's saturated colours towards grey (the starter's
previews were ~58 levels off the real decode).  A full VAE decode is truthful
but costs several denoising steps.  This network sits in between, in the
spirit of TAESD: a few convolutions and x2 upsamplings, trained to
reproduce one model's VAE decode (``impasto.backend.tooling.train_preview``),
a few hundred KB of weights shipped next to that model.

One x2 upsampling per level of the VAE: three for the usual 8x VAE, two for a
4x one (the starter trained on a finer latent grid).  The net's factor is read
from its widths, so the engine can refuse a net made for another VAE instead of
previewing at the wrong size.

The widths taper as the resolution grows (64 channels at latent resolution,
16 at full resolution), so nearly all the capacity works where it is cheap:
a preview costs a few million multiply-adds per latent pixel column.

Input: the latents the UNet sees (already multiplied by the VAE's
``scaling_factor``); output: RGB in [-1, 1], ``scale_factor`` x the latent size.
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


def _stages(factor: int) -> int:
    """How many x2 steps make ``factor`` (8 -> 3); ValueError for a factor that is not 2, 4, 8, 16..."""
    factor = int(factor)
    if factor < 2 or factor & (factor - 1):
        raise ValueError(f"a VAE's scale factor is a power of two of at least 2, not {factor}")
    return factor.bit_length() - 1


def _outer_widths(factor: int) -> tuple:
    """Widths from full resolution inward, one per x2 level: 16, 32, then 48 (8x: 16, 32, 48)."""
    stages = _stages(factor)
    return ((16, 32) + (48,) * max(1, stages - 2))[:stages]


def widths_factor(widths) -> int:
    """Pixels per latent cell of a net with these widths: one x2 step between each two (4 widths: 8x)."""
    return 2 ** (len(widths) - 1)


def default_widths(factor: int = 8) -> tuple:
    """The preview decoder's widths for a VAE of ``factor``: 64 at latent resolution (8x: 64, 48, 32, 16)."""
    return (64,) + tuple(reversed(_outer_widths(factor)))


class _Residual(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: depth at a resolution without the plain stack's dead starts."""

    def __init__(self, width: int):
        super().__init__()
        self.a = nn.Conv2d(width, width, 3, padding=1)
        self.b = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(torch.relu(self.a(x))))


class TinyPreviewDecoder(nn.Module):
    """Scaled latents (N, C, h, w) -> RGB in [-1, 1] (N, 3, f*h, f*w), f = 2 ** (len(widths) - 1)."""

    def __init__(self, latent_channels: int = 4, widths: Sequence[int] = DEFAULT_WIDTHS, low_blocks: int = 2,
                 high_blocks: Sequence[int] = None):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError("a preview decoder has a width at latent resolution and one per x2 upsampling")
        high = [0] * (len(widths) - 1) if high_blocks is None else [int(b) for b in high_blocks]
        if len(high) != len(widths) - 1:
            raise ValueError(f"a preview decoder with {len(widths)} widths has {len(widths) - 1} "
                             "high_blocks counts: one per x2 upsampling")
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

    @property
    def scale_factor(self) -> int:
        """Pixels per latent cell: the VAE this decoder was made for."""
        return widths_factor(self.config["widths"])

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


def default_encoder_widths(factor: int = 8) -> tuple:
    """The fast encoder's widths for a VAE of ``factor``: the decoder's mirrored (8x: 16, 32, 48, 64)."""
    return _outer_widths(factor) + (64,)


class TinyFastEncoder(nn.Module):
    """RGB in [-1, 1] (N, 3, f*h, f*w) -> scaled latents (N, C, h, w): the decoder's mirror, for live jobs.

    Trained (``impasto.backend.tooling.train_fast_encoder``) to reproduce one model's VAE
    encoder (the mode of its latent distribution, times ``scaling_factor``), so a live job
    can skip the VAE's encoder the way the preview decoder lets it skip the VAE's decoder.
    One stride-2 convolution per VAE level down to latent resolution (three for an 8x VAE),
    then ``low_blocks`` convolutions there: nearly all the work where the picture is smallest.
    """

    def __init__(self, latent_channels: int = 4, widths: Sequence[int] = DEFAULT_ENCODER_WIDTHS, low_blocks: int = 2):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError("a fast encoder has a width at full resolution and one per /2 downsampling")
        self.config = {"latent_channels": int(latent_channels), "widths": widths, "low_blocks": int(low_blocks)}
        layers = [nn.Conv2d(3, widths[0], 3, padding=1), nn.ReLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(low_blocks):
            layers += [nn.Conv2d(widths[-1], widths[-1], 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(widths[-1], latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    @property
    def scale_factor(self) -> int:
        """Pixels per latent cell: the VAE this encoder was made for."""
        return widths_factor(self.config["widths"])

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
