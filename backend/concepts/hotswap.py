"""Concepts on a ``torch.compile``d UNet without recompiling: one fixed LoRA slot, weights swapped in place.

A compiled UNet is specialised to its modules and their Python attributes;
injecting a peft adapter per concept, or switching adapters, changes both and
forces a recompile (tens of seconds on a GPU) at every concept change.  So
when the daemon compiles (``IMPASTO_COMPILE=1``) the UNet gets, *before* it
is compiled, one LoRA adapter of fixed rank (:data:`HOT`, rank
``IMPASTO_HOTSWAP_RANK``, 32 by default) on the layers concepts use
(:data:`HOT_TARGETS`), all zeros.  Switching concepts then only writes
tensors in place - the same idea as diffusers' LoRA hotswap:

* the active concepts' LoRA pairs for one layer are stacked along the rank
  (``A = [A1; A2]``, ``B = [w1 B1, w2 B2]``: the sum of the concepts at their
  weights is one LoRA of rank r1 + r2), padded with zeros to the slot's rank;
* no concept = all zeros: the slot adds exactly 0 to every layer, so the
  pictures are bit-identical to the compiled base model's.

A concept on layers outside the slot, or of more total rank than the slot,
falls back to an ordinary adapter (correct, recompiles once).  Text encoders
are not compiled and keep ordinary adapters.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Tuple

import torch

HOT = "impasto_hot"
HOT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]


def hot_rank() -> int:
    return max(1, int(os.environ.get("IMPASTO_HOTSWAP_RANK", "32") or 32))


def unwrap(model):
    """The module a ``torch.compile`` wrapper runs (adapters are put into it, by name)."""
    return getattr(model, "_orig_mod", model)


def prepare(unet, rank: int = 0) -> None:
    """Give ``unet`` (not yet compiled) the zeroed hot slot."""
    from peft import LoraConfig, inject_adapter_in_model

    rank = rank or hot_rank()
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=HOT_TARGETS, lora_dropout=0.0, bias="none",
                        init_lora_weights=False)
    flags = [p.requires_grad for p in unet.parameters()]
    inject_adapter_in_model(config, unet, adapter_name=HOT)
    unet.impasto_hot_rank = rank
    reset(unet)
    base = [p for n, p in unet.named_parameters() if "lora_" not in n]
    for p, f in zip(base, flags):
        p.requires_grad_(f)


def active(unet) -> bool:
    return getattr(unwrap(unet), "impasto_hot_rank", 0) > 0


def layers(unet) -> Dict[str, object]:
    """{module name: peft LoRA layer} of the hot slot."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in unwrap(unet).named_modules() if isinstance(m, BaseTunerLayer) and HOT in m.lora_A}


def _shape_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A LoRA half as the slot stores it (kohya keeps 1x1 convolutions 4-D, linear layers 2-D)."""
    return t.reshape(t.shape[0], *like.shape[1:]) if t.dim() != like.dim() else t


def fits(unet, modules: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Whether every pair lands on a slot layer with room for its rank."""
    hot = layers(unet)
    rank = getattr(unwrap(unet), "impasto_hot_rank", 0)
    for name, (a, b) in modules.items():
        layer = hot.get(name)
        if layer is None or a.shape[0] > rank:
            return False
        slot_a = layer.lora_A[HOT].weight
        if a.numel() // a.shape[0] != slot_a[0].numel() or b.shape[0] != layer.lora_B[HOT].weight.shape[0]:
            return False
    return True


@torch.no_grad()
def fill(unet, concepts: Iterable[Tuple[Dict[str, Tuple[torch.Tensor, torch.Tensor]], float]]) -> int:
    """Write the sum of ``(modules, weight)`` concepts into the slot (everything else zero); returns the rank used.

    Raises ``ValueError`` when the concepts' ranks add up to more than the slot holds on one layer.
    """
    rank = unwrap(unet).impasto_hot_rank
    stacks: Dict[str, List[Tuple[torch.Tensor, torch.Tensor]]] = {}
    for modules, weight in concepts:
        if weight == 0:
            continue
        for name, (a, b) in modules.items():
            stacks.setdefault(name, []).append((a, b * float(weight)))
    used = 0
    for name, layer in layers(unet).items():
        slot_a, slot_b = layer.lora_A[HOT].weight, layer.lora_B[HOT].weight
        slot_a.zero_()
        slot_b.zero_()
        pairs = stacks.get(name)
        if not pairs:
            continue
        a = torch.cat([_shape_like(x, slot_a) for x, _ in pairs])
        b = torch.cat([y.reshape(y.shape[0], -1) for _, y in pairs], dim=1)
        if a.shape[0] > rank:
            raise ValueError(f"{name}: the active concepts' ranks add up to {a.shape[0]} > {rank}")
        slot_a[: a.shape[0]].copy_(a)
        slot_b[:, : b.shape[1]].copy_(b.reshape(b.shape[0], b.shape[1], *slot_b.shape[2:]))
        used = max(used, a.shape[0])
    return used


def reset(unet) -> None:
    """Slot back to zeros and the only active adapter of its layers (after training or an unload)."""
    for layer in layers(unet).values():
        with torch.no_grad():
            layer.lora_A[HOT].weight.zero_()
            layer.lora_B[HOT].weight.zero_()
        if layer.disable_adapters:
            layer.enable_adapters(True)
        layer.set_adapter([HOT], inference_mode=True)
        for p in (layer.lora_A[HOT].weight, layer.lora_B[HOT].weight):
            p.requires_grad_(False)


def switch(unet, hot: Dict[str, Dict[str, Tuple[torch.Tensor, torch.Tensor]]], weights: Dict[str, float]) -> None:
    """Make the slot hold the concepts of ``weights`` (adapter name -> weight) that live in it (``hot``);
    adapters that did not fit the slot (ordinary peft adapters on slot layers) are switched beside it."""
    fill(unet, [(hot[n], w) for n, w in weights.items() if n in hot])
    for layer in layers(unet).values():
        fallback = [n for n in weights if n in layer.lora_A]
        if fallback or list(layer.active_adapters) != [HOT]:
            layer.set_adapter([HOT] + fallback, inference_mode=True)
        for name in fallback:
            layer.set_scale(name, float(weights[name]))


def remove_others(unet) -> None:
    """Every adapter but the slot out of the UNet (an unload, or after training); the slot zeroed."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = unwrap(unet)
    for layer in [m for m in model.modules() if isinstance(m, BaseTunerLayer)]:
        for name in [n for n in layer.lora_A if n != HOT]:
            layer.delete_adapter(name)
    cfg = getattr(model, "peft_config", None)
    if isinstance(cfg, dict):
        for name in [n for n in cfg if n != HOT]:
            cfg.pop(name)
    reset(model)
