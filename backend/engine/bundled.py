"""A model's own few-step LoRA, shipped beside it: live painting with no setup.

The starter ships ``starter-lcm-lora.safetensors`` beside its folder
(``backend/assets/``): an LCM-LoRA distilled from it
(``backend/starter/distill_fewstep.py``) that paints in 4 steps at CFG 1.  An
artist should not have to import it, name it or know its sampler, so:

* **the model listing** carries it as the model's ``live`` block:
  ``{"concept": "starter-lcm-lora", "recommended": {sampler, steps, cfg_scale,
  preset}, "file": ...}`` (the recommendation from the few-step presets,
  ``fewstep_presets.json``, matched on the file's names as for an imported
  LoRA);
* **the client core's live job** (``protocol/live.py``) switches that concept
  on at weight 1 and takes its settings for the knobs left unset, unless the
  artist listed the concept themselves (any weight, 0 included, is their
  choice) or already has another few-step LoRA on;
* **the engine** resolves the name for a job on that model
  (:func:`concept_for`) before the artist's library, so
  ``--concept starter-lcm-lora`` works in every client too.

The rule for any diffusers folder ``MODEL`` (the starter's is named
``starter``): ``MODEL-lcm-lora.safetensors`` in the same folder as it.  Only
the file's JSON header is read at scan time (``impasto models`` stays
instant); its weights load on first use like any concept's.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any, Dict, Optional

from . import fewstep
from .safetensors_header import safetensors_header

SUFFIX = "-lcm-lora.safetensors"


def file_for(folder: Path, name: str) -> Optional[Path]:
    """The few-step LoRA shipped beside the model folder ``folder`` listed as ``name``, or None."""
    path = Path(folder).parent / f"{name}{SUFFIX}"
    return path if path.is_file() else None


def _header_metadata(path: Path) -> Dict[str, Any]:
    header = safetensors_header(path)
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def live_block(folder: Path, name: str) -> Dict[str, Any]:
    """The model listing's ``live`` block for model ``name`` at ``folder`` ({} when none is shipped)."""
    path = file_for(folder, name)
    if path is None:
        return {}
    try:
        meta = _header_metadata(path)
    except (OSError, ValueError, struct.error):
        return {}      # a damaged file is not offered; using it by name reports why (lora_io)
    concept = path.name[: -len(".safetensors")]
    rec = fewstep.for_lora([concept], meta)
    if not rec:
        return {}
    return {"concept": concept, "recommended": rec, "file": str(path)}


class BundledConcept:
    """A shipped LoRA as the engine's concept path sees one (the fields ``adapters`` and ``concepts`` read)."""

    def __init__(self, name: str, path: Path, meta: Dict[str, Any]):
        self.name, self.path, self.meta = name, path, meta

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def trigger(self) -> str:
        return ""

    @property
    def weights_path(self) -> Path:
        return self.path


def concept_for(entry, name: str) -> Optional[BundledConcept]:
    """The model's own few-step LoRA when ``name`` is its concept name, else None (the library decides)."""
    live = getattr(entry, "live", None) or {}
    if not live or live.get("concept") != name:
        return None
    path = Path(live["file"])
    try:
        meta = _header_metadata(path)
        stat = path.stat()
    except (OSError, ValueError, struct.error):
        return None
    # the adapter cache's key: a new file (re-distilled) is a new concept
    ident = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    return BundledConcept(name, path, {
        "id": "bundled-" + ident, "method": "lora", "source": "bundled", "trigger": "",
        "base_model": meta.get("impasto_base_model", ""), "base_fingerprint": meta.get("impasto_base_fingerprint", ""),
        "base_arch": meta.get("impasto_base_arch", ""), "recommended": live.get("recommended", {})})


def load_weights(info: BundledConcept):
    """The shipped file's tensors in the library's layout (a damaged file: a typed error, not a crash)."""
    from impasto.protocol.messages import ErrorCode

    from .errors import EngineError

    from impasto.backend.concepts.lora_io import read_lora_file

    try:
        tensors, _hints = read_lora_file(info.weights_path)
    except Exception as exc:
        raise EngineError(ErrorCode.INTERNAL, f"the model's few-step LoRA {info.name!r} is unreadable: {exc}",
                          "concepts") from exc
    return tensors
