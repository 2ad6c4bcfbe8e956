"""The trigger word's own embedding: what the trigger *means* to the text encoder.

A DreamBooth trigger ("zwx") is a rare word the tokenizer spells with a few
tokens the model barely knows.  Besides the LoRA, a concept learns new input
embeddings for exactly those tokens (the "modifier token" of Custom Diffusion,
the pivotal tuning of kohya and diffusers' advanced script).  Unlike a
text-encoder LoRA, which changes how *every* prompt is read, these vectors only
act where the trigger is written: a prompt without it is encoded bit for bit
as by the base model, so "a red circle" keeps meaning what it meant.

The vectors live in the library as ``text_encoder.trigger_embedding`` (one row
per trigger token, absolute values like an A1111 embedding, so export can
bundle them into a kohya file).  In a model they are applied by one forward
hook on the text encoder's token-embedding table: at each place the trigger's
token ids occur, the hook adds ``weight * (vectors - table[ids])``.  With no
active concept the hook returns the table's output untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

KEY = "text_encoder.trigger_embedding"


def trigger_token_ids(tokenizer, trigger: str) -> List[int]:
    """The ids the tokenizer spells ``trigger`` with inside a prompt (no start/end tokens)."""
    if not trigger.strip():
        return []
    return list(tokenizer(trigger.strip(), add_special_tokens=False).input_ids)


def trigger_mask(input_ids: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """``[batch, length, len(ids)]`` float: 1 where token k of the trigger sits at that position.

    Only whole runs of the trigger's ids count, so a lone shared token is left alone.
    """
    b, length = input_ids.shape
    n = len(ids)
    sel = torch.zeros(b, length, n, dtype=torch.float32, device=input_ids.device)
    if n == 0 or length < n:
        return sel
    want = torch.as_tensor(list(ids), device=input_ids.device, dtype=input_ids.dtype)
    starts = (input_ids.unfold(1, n, 1) == want).all(-1).float()       # [b, length - n + 1]
    for k in range(n):
        sel[:, k:k + starts.shape[1], k] = torch.maximum(sel[:, k:k + starts.shape[1], k], starts)
    return sel


@dataclass
class Entry:
    ids: List[int]
    delta: torch.Tensor          # [n, hidden]: what the trigger's rows change by at weight 1


@dataclass
class TriggerEmbeddings:
    """The forward hook on one text encoder's token-embedding table, and what it adds."""

    table: torch.nn.Embedding
    entries: Dict[str, Entry] = field(default_factory=dict)     # adapter name -> entry
    active: Dict[str, float] = field(default_factory=dict)      # adapter name -> weight
    handle: Optional[object] = None

    def install(self) -> None:
        if self.handle is None:
            self.handle = self.table.register_forward_hook(self._hook)

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.entries.clear()
        self.active = {}

    def _hook(self, module, inputs, output):
        live = [(self.entries[a], w) for a, w in self.active.items() if a in self.entries and w != 0]
        if not live or not inputs or not torch.is_tensor(inputs[0]):
            return None
        input_ids = inputs[0]
        out = output
        for entry, w in live:
            sel = trigger_mask(input_ids, entry.ids)
            if not bool(sel.any()):
                continue
            add = torch.einsum("blk,kh->blh", sel, entry.delta.to(sel.device, torch.float32))
            out = out + (w * add).to(out.dtype)
        return out

    # ------------------------------------------------------------ library <-> delta

    def base_rows(self, ids: Sequence[int]) -> torch.Tensor:
        return self.table.weight.detach()[list(ids)].float()

    def delta_from_vectors(self, ids: Sequence[int], vectors: torch.Tensor) -> Optional[torch.Tensor]:
        """Library vectors -> the delta for this model, or None when they don't fit its tokenizer."""
        if len(ids) == 0 or vectors.dim() != 2 or vectors.shape[0] != len(ids) or \
                vectors.shape[1] != self.table.weight.shape[1]:
            return None
        return (vectors.float().to(self.table.weight.device) - self.base_rows(ids)).contiguous()


def for_text_encoder(text_encoder, current: Optional[TriggerEmbeddings]) -> TriggerEmbeddings:
    table = text_encoder.get_input_embeddings()
    if current is not None and current.table is table:
        return current
    if current is not None:
        current.remove()
    hook = TriggerEmbeddings(table)
    hook.install()
    return hook
