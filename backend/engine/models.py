"""What models are installed: a models folder scan plus the built-in starter.

Two layouts are recognised, the two artists have on disk:

* a diffusers folder (``model_index.json`` + component folders);
* a single-file checkpoint (``NAME.safetensors``, original LDM keys) of the
  SD1.5 or the SDXL family (SDXL base, its fine-tunes, SDXL inpaint).

Each entry says its *family* (``sd15`` or ``sdxl``: which pipelines, configs,
text encoders and LoRA keys it takes) and its ``arch`` (family plus
``-inpaint`` for a 9-channel inpainting UNet).

The architecture is read from configs / tensor shapes without loading weights,
so ``impasto models`` is instant even with many multi-GB files.
"""
from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

log = logging.getLogger("impasto.models")

from impasto.backend.launcher import default_models_dir, impasto_home  # noqa: F401 (re-exported)
from impasto.protocol.messages import check_name, ProtocolError

from . import bundled, fewstep
from .safetensors_header import safetensors_header
from .model_card import read_card
from .native import vae_scale_factor

STARTER_NAME = "starter"


@dataclass
class ModelEntry:
    name: str
    path: str
    format: str            # "diffusers" | "single_file"
    arch: str              # "sd15", "sd15-inpaint", "sd2", "sdxl", "sdxl-inpaint", "unknown"
    builtin: bool = False
    native_size: int = 512
    max_size: int = 0      # >0: generate at most this size and upscale (small starter models)
    description: str = ""
    supported: bool = True
    notes: List[str] = field(default_factory=list)
    # impasto.json "concept_training": the model's own concept-training defaults
    # (learning_rate, rank, steps, train_text_encoder, unet_layers) - used where a Train request leaves them
    # at 0 (the text-encoder choice: unset)
    concept_training: Dict[str, Any] = field(default_factory=dict)
    # impasto.json "slider_training" (learning_rate, rank, steps): a slider's own defaults, where they differ
    # from the concepts' (the starter's: docs/performance.md "Concept Sliders")
    slider_training: Dict[str, Any] = field(default_factory=dict)
    # impasto.json "recommended" (steps, guidance_scale, scheduler): what clients use for knobs left unset
    # (read by impasto.protocol.settings.Recommendation)
    recommended: Dict[str, Any] = field(default_factory=dict)
    # a few-step LoRA shipped beside a diffusers folder (``MODEL-lcm-lora.safetensors``): the model's live
    # mode uses it with no setup - {"concept", "recommended", "file"} (bundled.py)
    live: Dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """``sd15`` / ``sdxl`` / ``sd2`` / ``unknown``: the architecture without the inpaint suffix."""
        return family_of(self.arch)

    def to_dict(self) -> Dict[str, object]:
        out = asdict(self)
        out["family"] = self.family
        return out


def family_of(arch: str) -> str:
    return arch[: -len("-inpaint")] if arch.endswith("-inpaint") else arch


#: which UNet layers a LoRA concept trains (concepts.adapters.unet_targets): "attention" (diffusers'
#: script: the attention projections) or "locon" (LyCORIS' LoCon: also the resnet convolutions, the
#: transformer's projections and feed-forward)
UNET_LAYERS = ("attention", "locon")
#: each block's keys: a type (bool, or a positive int / float) or a tuple of the values allowed
TRAINING_KEYS = {
    "concept_training": {"learning_rate": float, "rank": int, "steps": int, "train_text_encoder": bool,
                         "unet_layers": UNET_LAYERS},
    "slider_training": {"learning_rate": float, "rank": int, "steps": int},
}


def training_defaults(extra: dict, path: Path, block: str = "concept_training") -> Dict[str, Any]:
    """The valid entries of one of impasto.json's training blocks (others are logged and left out)."""
    raw = extra.get(block) or {}
    out: Dict[str, Any] = {}
    if not isinstance(raw, dict):
        return out
    for key, kind in TRAINING_KEYS[block].items():
        value = raw.get(key)
        if kind is bool and isinstance(value, bool):
            out[key] = value
        elif isinstance(kind, tuple) and isinstance(value, str) and value in kind:
            out[key] = value
        elif kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            out[key] = kind(value)
        elif value is not None:
            log.warning("%s/impasto.json: %s.%s = %r ignored", path, block, key, value)
    return out


def _recommended(extra: dict) -> Dict[str, Any]:
    """impasto.json's ``recommended`` block, plain JSON values only (it travels in the model listing)."""
    raw = extra.get("recommended")
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, (str, int, float, bool))}


def starter_dir() -> Optional[Path]:
    """The shipped starter model's folder, or None while it is not installed."""
    override = os.environ.get("IMPASTO_STARTER_DIR")
    path = Path(override) if override else Path(__file__).resolve().parent.parent / "assets" / "starter"
    return path if (path / "model_index.json").is_file() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _vae_factor(folder: Path) -> int:
    """Pixels per latent cell of a diffusers folder's VAE (8 for every SD family; 4 for a finer-grid starter)."""
    cfg = _read_json(folder / "vae" / "config.json")
    levels = cfg.get("block_out_channels")
    return vae_scale_factor(cfg) if isinstance(levels, list) and levels else 8


def _arch_from_unet_config(cfg: dict) -> str:
    cross = cfg.get("cross_attention_dim")
    if isinstance(cross, list):
        cross = cross[0] if cross else None
    inpaint = cfg.get("in_channels") == 9
    if cfg.get("addition_embed_type") == "text_time":
        return "sdxl-inpaint" if inpaint else "sdxl"
    if cross == 1024:
        return "sd2-inpaint" if inpaint else "sd2"
    return "sd15-inpaint" if inpaint else "sd15"


def inspect_diffusers(path: Path) -> ModelEntry:
    index = _read_json(path / "model_index.json")
    unet = _read_json(path / "unet" / "config.json")
    arch = _arch_from_unet_config(unet) if unet else "unknown"
    extra = read_card(path)
    entry = ModelEntry(
        name=path.name, path=str(path), format="diffusers", arch=arch,
        native_size=int(extra.get("native_size") or unet.get("sample_size", 64) * _vae_factor(path)),
        max_size=int(extra.get("max_size", extra.get("native_size", 0)) or 0),
        description=str(extra.get("description", index.get("_class_name", ""))),
        **{block: training_defaults(extra, path, block) for block in TRAINING_KEYS},
        recommended=_recommended(extra),
    )
    if not entry.recommended:   # a few-step model (LCM, Turbo, Lightning...) recognised by name / scheduler
        entry.recommended = fewstep.for_diffusers_folder(
            path, _read_json(path / "scheduler" / "scheduler_config.json")) or {}
    return entry


_LORA_MARKERS = ("lora", "oft_", "dora_scale")
_EMBEDDING_KEYS = ("emb_params", "string_to_param", "clip_l", "clip_g")


def inspect_single_file(path: Path) -> ModelEntry:
    """What a ``.safetensors`` file is, from its JSON header alone (no tensor data is read).

    SD1.5 and SDXL checkpoints (and their 9-channel inpainting variants) in the
    original LDM layout are usable; SD2, LoRAs, textual-inversion embeddings
    and bare VAEs get a note saying what they are.  A ``NAME.config/`` sidecar (see
    :mod:`.single_file`) may set the native size from its ``unet/config.json``
    and ``impasto.json`` like a diffusers folder's.
    """
    entry = ModelEntry(name=path.stem, path=str(path), format="single_file", arch="unknown")
    try:
        header = safetensors_header(path)
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, struct.error) as exc:
        entry.supported = False
        entry.notes.append(f"unreadable safetensors file: {exc}")
        return entry
    keys = [k for k in header if k != "__metadata__"]
    missing = _missing_bytes(path, header)
    if missing:
        entry.supported = False
        entry.notes.append(f"the file is incomplete ({missing} bytes missing): an interrupted download or copy?")
        return entry

    def shape(key):
        info = header.get(key)
        return info.get("shape") if isinstance(info, dict) else None

    first = shape("model.diffusion_model.input_blocks.0.0.weight")
    if any(k.startswith("conditioner.embedders") for k in keys) and isinstance(first, list) and len(first) == 4:
        entry.arch, entry.native_size = "sdxl" + ("-inpaint" if first[1] == 9 else ""), 1024
        if not any(k.startswith("conditioner.embedders.1.") for k in keys) or not any(
                k.startswith("first_stage_model.") for k in keys):
            entry.supported = False
            entry.notes.append("the checkpoint lacks its text encoders or VAE weights (a UNet-only file, or the "
                               "SDXL refiner)")
        else:
            _apply_sidecar(entry, path)
    elif isinstance(first, list) and len(first) == 4:
        to_k = shape("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        base = "sd2" if isinstance(to_k, list) and to_k and to_k[-1] == 1024 else "sd15"
        entry.arch = base + ("-inpaint" if first[1] == 9 else "")
        if base == "sd2":
            entry.supported = False
            entry.notes.append("single-file SD2 checkpoints are not supported; use a diffusers folder")
        elif not any(k.startswith("cond_stage_model.transformer.") for k in keys) or not any(
                k.startswith("first_stage_model.") for k in keys):
            entry.supported = False
            entry.notes.append("the checkpoint lacks its text encoder or VAE weights (a UNet-only file)")
        else:
            _apply_sidecar(entry, path)
    elif any(("hada_w" in k or "lokr_w" in k) for k in keys):
        entry.supported = False
        entry.notes.append("this is a LyCORIS (LoHa/LoKr) network, not a model")
    elif any(m in k.lower() for k in keys for m in _LORA_MARKERS):
        entry.supported = False
        entry.notes.append("this is a LoRA, not a model: import it with `impasto concept import`")
    elif keys and all(k.split(".")[0] in _EMBEDDING_KEYS for k in keys):
        entry.supported = False
        entry.notes.append("this is a textual-inversion embedding, not a model")
    elif any(k.endswith("decoder.conv_in.weight") for k in keys):
        entry.supported = False
        entry.notes.append("this is a VAE on its own, not a full model")
    else:
        entry.supported = False
        entry.notes.append("not a Stable Diffusion checkpoint")
    if entry.supported and not entry.recommended:   # SD-Turbo, SDXL-Lightning... by file name or title
        entry.recommended = fewstep.for_single_file(path, header.get("__metadata__")) or {}
    return entry


def _missing_bytes(path: Path, header: dict) -> int:
    """How many bytes the header promises beyond the end of the file (0 = complete); a stat, no data read."""
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
        end = max((int(v["data_offsets"][1]) for v in header.values() if isinstance(v, dict) and "data_offsets" in v),
                  default=0)
        return max(0, 8 + length + end - path.stat().st_size)
    except (OSError, struct.error, TypeError, ValueError, IndexError, KeyError):
        return 0  # odd offsets: let the loader report what is wrong


def _apply_sidecar(entry: ModelEntry, path: Path) -> None:
    """Native size / description from a ``NAME.config/`` sidecar, as a diffusers folder gives them."""
    from .single_file import sidecar_dir

    sidecar = sidecar_dir(path)
    if sidecar is None:
        return
    unet = _read_json(sidecar / "unet" / "config.json")
    extra = read_card(sidecar)
    sample = unet.get("sample_size")
    try:
        from_unet = sample * _vae_factor(sidecar) if isinstance(sample, int) else entry.native_size
        entry.native_size = int(extra.get("native_size") or from_unet)
        entry.max_size = int(extra.get("max_size", extra.get("native_size", 0)) or 0)
    except (TypeError, ValueError):
        entry.notes.append(f"{sidecar.name}/impasto.json: native_size / max_size must be whole numbers; ignored")
    if extra.get("description"):
        entry.description = str(extra["description"])
    for block in TRAINING_KEYS:
        setattr(entry, block, training_defaults(extra, sidecar, block))
    entry.recommended = _recommended(extra)


def control_kind(header: dict):
    """(kind, layout) when a safetensors header is a control model's (ControlNet / T2I-Adapter), else None."""
    keys = [k for k in header if k != "__metadata__"]
    if any(k.startswith("control_model.") for k in keys):
        return "controlnet", "ldm"
    if any(k.startswith("controlnet_cond_embedding.") for k in keys) and any(
            k.startswith("controlnet_down_blocks.") for k in keys):
        return "controlnet", "diffusers"
    if any(k.startswith("adapter.conv_in.") for k in keys) and any(k.startswith("adapter.body.") for k in keys):
        return "t2i_adapter", "diffusers"
    return None


def is_control_file(path: Path) -> bool:
    """Whether a ``.safetensors`` file is a control model (the base-model scan leaves it to control_models)."""
    try:
        header = safetensors_header(path)
    except Exception:
        return False
    return isinstance(header, dict) and control_kind(header) is not None


class ModelRegistry:
    """Scans the models folder on demand (cheap) and resolves names."""

    def __init__(self, models_dir: Optional[Path] = None):
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()

    def scan(self) -> List[ModelEntry]:
        found: List[ModelEntry] = []
        starter = starter_dir()
        if starter is not None:
            entry = inspect_diffusers(starter)
            entry.name, entry.builtin = STARTER_NAME, True
            entry.live = bundled.live_block(starter, entry.name)
            found.append(entry)
        if self.models_dir.is_dir():
            children = sorted(self.models_dir.iterdir())
            folders = {c.name for c in children if c.is_dir()}
            for child in children:
                try:
                    check_name(child.stem if child.is_file() else child.name)
                except ProtocolError:
                    continue  # a name we could not address safely over the wire
                if child.is_dir() and (child / "model_index.json").is_file():
                    entry = inspect_diffusers(child)
                    entry.live = bundled.live_block(child, entry.name)
                    found.append(entry)
                elif child.name.endswith(bundled.SUFFIX) and child.name[: -len(bundled.SUFFIX)] in folders:
                    continue  # a folder's own few-step LoRA: listed as that model's live block
                elif child.is_file() and child.suffix == ".safetensors":
                    if not is_control_file(child):  # control models are listed on their own (control_models.py)
                        found.append(inspect_single_file(child))
        return found

    def default_name(self, entries: Optional[List[ModelEntry]] = None) -> str:
        """The embedded starter when present, else the first supported model."""
        entries = entries if entries is not None else self.scan()
        usable = [e for e in entries if e.supported]
        for e in usable:
            if e.name == STARTER_NAME:
                return e.name
        return usable[0].name if usable else ""

    def resolve(self, name: str) -> ModelEntry:
        from impasto.protocol.messages import ErrorCode

        from .errors import EngineError, unknown_model

        entries = self.scan()
        if not name:
            name = self.default_name(entries)
            if not name:
                raise EngineError(
                    ErrorCode.NO_MODEL,
                    f"no model is installed: put a diffusers folder or an SD1.5 / SDXL .safetensors file in "
                    f"{self.models_dir} (or set IMPASTO_MODELS_DIR)",
                    "model",
                )
        for e in entries:
            if e.name == name:
                if not e.supported:
                    raise EngineError(ErrorCode.UNKNOWN_MODEL, f"model: {name!r} can't be used: {'; '.join(e.notes)}",
                                      "model")
                return e
        raise unknown_model(name, [e.name for e in entries if e.supported])
