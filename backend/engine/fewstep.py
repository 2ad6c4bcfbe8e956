"""Few-step models and LoRAs: the sampler, step count and CFG they need, recognised from what is on disk.

LCM-LoRA, Hyper-SD and SDXL-Lightning LoRAs, SD-Turbo / SDXL-Turbo and
SDXL-Lightning checkpoints only paint well with their own sampler, 1-8 steps
and CFG ~1; with the usual 20 steps of Euler a at CFG 7 they burn or blur.
An artist should not have to know that, so the loader recognises them and
the model listing (or the concept listing, for a LoRA) carries the settings
as the item's ``recommended`` block - what the client core's "model default"
turns unset knobs into (:class:`impasto.protocol.settings.Recommendation`).

Why a table (``fewstep_presets.json``) and not code: new few-step families
appear every few months; adding one is a line of data.  Matching uses only
what the loader sees without reading weights: file / folder / concept names,
a ``.safetensors`` header's title metadata and a diffusers folder's scheduler
class.  An ``impasto.json`` ``recommended`` block always wins over a preset.

Standard library only: the model scan (``impasto models``) must stay instant.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

PRESETS_FILE = Path(__file__).with_name("fewstep_presets.json")
# safetensors header metadata that names what a file is (kohya, modelspec, diffusers)
TITLE_KEYS = ("modelspec.title", "ss_output_name", "name", "title")


@functools.lru_cache(maxsize=1)
def presets() -> List[Dict[str, Any]]:
    """The preset table (read once; a broken table is a packaging bug and raises)."""
    data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    out = []
    for p in data["presets"]:
        q = dict(p)
        q["_names"] = [re.compile(rx, re.IGNORECASE) for rx in p.get("names", [])]
        out.append(q)
    return out


def titles(metadata: Optional[Dict[str, Any]]) -> List[str]:
    """The names a ``.safetensors`` header's metadata gives the file."""
    if not isinstance(metadata, dict):
        return []
    return [str(metadata[k]) for k in TITLE_KEYS if isinstance(metadata.get(k), str) and metadata[k]]


def match(names: Iterable[str], applies_to: str, scheduler: str = "") -> Optional[Dict[str, Any]]:
    """The ``recommended`` block of the first preset matching ``names`` / ``scheduler``, or None.

    ``applies_to`` is ``"model"`` or ``"lora"``.  The block holds ``sampler``,
    ``steps``, ``cfg_scale`` (the protocol's names), ``preset`` (its label) and
    ``matched`` (what it was recognised by), all plain JSON.
    """
    names = [n for n in names if n]
    for p in presets():
        if p.get("applies_to", "any") not in ("any", applies_to):
            continue
        found, why = None, ""
        for rx in p["_names"]:
            for n in names:
                m = rx.search(n)
                if m:
                    found, why = m, f"name {n!r}"
                    break
            if found:
                break
        if found is None and scheduler and scheduler in p.get("schedulers", []):
            why = f"scheduler {scheduler}"
        elif found is None:
            continue
        steps = p["steps"]
        if isinstance(steps, str) and steps.startswith("group:"):
            try:
                steps = int(found.group(int(steps[6:]))) if found is not None else 0
            except (IndexError, TypeError, ValueError):
                steps = 0
            if not 1 <= steps <= 50:
                continue     # "lightning-0-step" or a year in the name: not this preset
        return {"sampler": p["sampler"], "steps": int(steps), "cfg_scale": float(p["cfg_scale"]),
                "preset": p["preset"], "matched": why}
    return None


def for_diffusers_folder(path: Path, scheduler_config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A diffusers folder's preset: by its folder name, else by its scheduler class (an LCM model)."""
    return match([path.name], "model", str(scheduler_config.get("_class_name", "")))


def for_single_file(path: Path, metadata: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A checkpoint file's preset: by its file name or its header's title."""
    return match([path.stem] + titles(metadata), "model")


def for_lora(names: Iterable[str], metadata: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """A LoRA's preset (LCM-LoRA, Hyper-SD, Lightning, TCD) by its file / concept names and header titles."""
    return match(list(names) + titles(metadata), "lora")
