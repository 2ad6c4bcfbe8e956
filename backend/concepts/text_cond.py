"""What the trainer feeds the UNet for a caption, per model family (SD1.5 or SDXL).

The trainer caches, indexes, mixes (``torch.where``) and concatenates token ids
and text embeddings as plain tensors; this module keeps that true for both
families so the training loop is one piece of code:

* **SD1.5**: ids ``(N, 77)``; the embedding is the text encoder's last hidden
  state ``(N, 77, D)``; the UNet takes it as ``encoder_hidden_states``.
* **SDXL**: ids ``(N, 2 x 77)`` - the two tokenizers' ids side by side; the
  embedding is SDXL's: both encoders' penultimate hidden states concatenated
  ``(N, 77, D1 + D2)``, plus one extra row carrying the second encoder's pooled
  projection (zero-padded to D1 + D2), so it travels with the hidden states
  through every tensor operation.  :meth:`TextConditioning.unet` unpacks it
  into ``encoder_hidden_states`` and ``added_cond_kwargs`` (pooled text +
  the size conditioning of a whole, uncropped picture at the training
  resolution), as diffusers' SDXL pipelines and training scripts do.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F


class TextConditioning:
    def __init__(self, loaded, resolution: int):
        base = loaded.base
        self.base = base
        self.device = loaded.choice.device
        self.sdxl = getattr(loaded, "family", "sd15") == "sdxl" and getattr(base, "text_encoder_2", None) is not None
        self.tokenizers = [base.tokenizer] + ([base.tokenizer_2] if self.sdxl else [])
        self.length = int(base.tokenizer.model_max_length)
        self.encoders: List[str] = ["text_encoder"] + (["text_encoder_2"] if self.sdxl else [])
        if self.sdxl:
            self.pooled_dim = int(base.text_encoder_2.config.projection_dim)
            self.time_ids = torch.tensor([resolution, resolution, 0, 0, resolution, resolution], dtype=torch.float32)

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        parts = [tok(list(texts), padding="max_length", max_length=self.length, truncation=True,
                     return_tensors="pt").input_ids for tok in self.tokenizers]
        return torch.cat(parts, dim=1).to(self.device)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> the (packed) embedding; runs the text encoder(s) with whatever adapters they hold."""
        if not self.sdxl:
            return self.base.text_encoder(ids)[0]
        n = self.length
        first = self.base.text_encoder(ids[:, :n], output_hidden_states=True)
        second = self.base.text_encoder_2(ids[:, n:], output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2].to(first.hidden_states[-2].dtype)], -1)
        pooled = second.text_embeds.to(hidden.dtype)
        row = F.pad(pooled, (0, hidden.shape[-1] - pooled.shape[-1]))[:, None]
        return torch.cat([hidden, row], dim=1)

    def unet(self, unet, noisy: torch.Tensor, timesteps: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction for ``noisy`` at ``timesteps`` under the packed embedding."""
        from .hotswap import unwrap

        unet = unwrap(unet)   # training runs eagerly, never through a compiled UNet's graph
        packed = packed.to(unet.dtype)
        if not self.sdxl:
            return unet(noisy.to(unet.dtype), timesteps, packed).sample
        hidden, pooled = packed[:, :-1], packed[:, -1, : self.pooled_dim]
        time_ids = self.time_ids.to(noisy.device, unet.dtype).expand(noisy.shape[0], -1)
        return unet(noisy.to(unet.dtype), timesteps, hidden,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
