"""SDXL's UNet module names as kohya's sd-scripts write them, and back.

kohya names SD1.5 LoRA layers after diffusers' modules (``down_blocks_1_...``)
but SDXL LoRA layers after the original (SGM / LDM) UNet
(``input_blocks_4_1_transformer_blocks_0_attn1_to_q``), because sd-scripts
runs SDXL on its own copy of that network.  A1111 and ComfyUI read both.  The
mapping follows SDXL's fixed layout: three levels of two layers, each level but
the last ending in a down/upsampler, attention in the decoder's first two
levels.  Pure functions on names (no torch): checked against every Linear /
Conv of a full-size SDXL UNet in ``tests/test_sdxl_concepts.py``.
"""
from __future__ import annotations

import re
from typing import Dict


# SDXL's UNet: 3 levels of 2 layers (+ a down/upsampler); diffusers' decoder levels 0 and 1 have attention.
_SDXL_LAYERS, _SDXL_UP_ATTN = 2, (0, 1)
_RESNET_SGM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_SGM_RESNET = {v: k for k, v in _RESNET_SGM.items()}
_SIMPLE_SGM = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet_part(rest: str, table: Dict[str, str], name: str) -> str:
    for src, dst in table.items():
        if rest == src or rest.startswith(src + "."):
            return dst + rest[len(src):]
    raise ValueError(f"no SDXL UNet module for {name!r}")


def unet_module_to_sgm(module: str) -> str:
    """diffusers SDXL UNet module -> the original (SGM) name kohya's SDXL LoRAs use."""
    per = _SDXL_LAYERS + 1
    if module in _SIMPLE_SGM:
        return _SIMPLE_SGM[module]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module):
        block = 1 + int(m.group(1)) * per + int(m.group(3))
        rest = m.group(4)
        return (f"input_blocks.{block}.0.{_resnet_part(rest, _RESNET_SGM, module)}" if m.group(2) == "resnets"
                else f"input_blocks.{block}.1.{rest}")
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", module):
        return f"input_blocks.{1 + int(m.group(1)) * per + _SDXL_LAYERS}.0.op"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", module):
        return f"middle_block.{2 * int(m.group(1))}.{_resnet_part(m.group(2), _RESNET_SGM, module)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", module):
        return f"middle_block.1.{m.group(1)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module):
        block = int(m.group(1)) * per + int(m.group(3))
        rest = m.group(4)
        return (f"output_blocks.{block}.0.{_resnet_part(rest, _RESNET_SGM, module)}" if m.group(2) == "resnets"
                else f"output_blocks.{block}.1.{rest}")
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", module):
        level = int(m.group(1))
        return f"output_blocks.{level * per + _SDXL_LAYERS}.{2 if level in _SDXL_UP_ATTN else 1}.conv"
    raise ValueError(f"no SDXL UNet name for module {module!r}")


def sgm_to_unet_module(name: str) -> str:
    """The inverse of :func:`unet_module_to_sgm` (kohya SDXL LoRA -> diffusers module)."""
    per = _SDXL_LAYERS + 1
    for src, dst in _SIMPLE_SGM.items():
        if name == dst:
            return src
    if m := re.fullmatch(r"input_blocks\.(\d+)\.(0|1)\.(.+)", name):
        block, slot, rest = int(m.group(1)) - 1, m.group(2), m.group(3)
        level, layer = divmod(block, per)
        if layer == _SDXL_LAYERS:
            if rest == "op":
                return f"down_blocks.{level}.downsamplers.0.conv"
        elif slot == "0":
            return f"down_blocks.{level}.resnets.{layer}.{_resnet_part(rest, _SGM_RESNET, name)}"
        else:
            return f"down_blocks.{level}.attentions.{layer}.{rest}"
    if m := re.fullmatch(r"middle_block\.(0|1|2)\.(.+)", name):
        slot, rest = int(m.group(1)), m.group(2)
        if slot == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{slot // 2}.{_resnet_part(rest, _SGM_RESNET, name)}"
    if m := re.fullmatch(r"output_blocks\.(\d+)\.(0|1|2)\.(.+)", name):
        level, layer = divmod(int(m.group(1)), per)
        slot, rest = m.group(2), m.group(3)
        if rest == "conv" and slot in ("1", "2") and layer == _SDXL_LAYERS:
            return f"up_blocks.{level}.upsamplers.0.conv"
        if slot == "0":
            return f"up_blocks.{level}.resnets.{layer}.{_resnet_part(rest, _SGM_RESNET, name)}"
        return f"up_blocks.{level}.attentions.{layer}.{rest}"
    raise ValueError(f"no SDXL UNet module for the kohya name {name!r}")
