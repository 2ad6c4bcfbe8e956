"""Control models (ControlNet, T2I-Adapter) in the models folder: found, described, loaded once.

Where they are looked for: the models folder itself and its ``controlnet/``
sub-folder (any case: A1111 and ComfyUI users keep them there).  Two layouts,
as for base models:

* a diffusers folder: ``config.json`` whose ``_class_name`` is
  ``ControlNetModel`` or ``T2IAdapter`` + the weights file;
* a single ``NAME.safetensors``: a ControlNet in the original layout
  (``control_model.*`` keys, as ``control_v11p_sd15_canny`` ships) or in
  diffusers' layout (``controlnet_cond_embedding.*`` keys, as the
  ``sd_control_collection`` files), or a T2I-Adapter in diffusers' layout
  (``adapter.*`` keys).  Its architecture comes from a ``NAME.config/config.json``
  sidecar when there is one, else from the family's UNet config shipped in
  ``assets/`` (SD1.5 / SDXL ControlNets share their UNet's encoder half).

Each entry says which base *family* it fits (read from the config or the
tensor shapes, never by loading weights) and what it *controls* (``impasto.json``
``"control"`` beside it, else a word of its name such as ``canny`` or
``scribble``, else ``any``).  :class:`ControlStore` keeps every control model a
job used resident on the device, so switching between them costs no reads.

Built in: control models shipped with Impasto for its own models live in
``assets/controlnet/`` (the starter's drawing model, issue 16) and are listed
with the models folder's (:func:`scan_all`; a models-folder model of the same
name wins).  A model whose ``impasto.json`` names a ``base_model`` is made for
that model only: it is offered automatically for it (first, when it is the one
such model that fits) and never for another; naming it still works, the layer
check guards the rest.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from impasto.protocol.messages import CONTROL_TYPES, ErrorCode, ProtocolError, check_name

from .errors import EngineError
from .model_card import read_card
from .models import _missing_bytes, _read_json, control_kind, is_control_file  # noqa: F401
from .safetensors_header import safetensors_header

log = logging.getLogger("impasto.control")

SUBFOLDERS = ("controlnet",)
SIDECAR = ".config"
CONTROLNET, ADAPTER = "controlnet", "t2i_adapter"
_CLASS_KINDS = {"ControlNetModel": CONTROLNET, "T2IAdapter": ADAPTER}
# words in a file name -> what the model controls (checked in this order)
_NAME_WORDS = (("softedge", "softedge"), ("soft_edge", "softedge"), ("hed", "softedge"), ("pidi", "softedge"),
               ("lineart", "lineart"), ("line_art", "lineart"), ("canny", "canny"), ("scribble", "scribble"),
               ("sketch", "scribble"), ("depth", "depth"), ("openpose", "pose"), ("pose", "pose"))


@dataclass
class ControlEntry:
    name: str
    path: str
    format: str                 # "diffusers" | "single_file"
    kind: str                   # "controlnet" | "t2i_adapter"
    family: str                 # "sd15" | "sdxl" | "sd2" | "unknown"
    controls: str = "any"       # a CONTROL_TYPES name, or "any"
    layout: str = "diffusers"   # single files: "ldm" (control_model.*) or "diffusers"
    description: str = ""
    supported: bool = True
    notes: List[str] = field(default_factory=list)
    base_model: str = ""        # impasto.json "base_model": made for that model only ("" any of its family)
    builtin: bool = False       # shipped in assets/controlnet/

    def made_for(self, model: str) -> bool:
        """Whether automatic choice may offer this model for the base model named ``model``."""
        return not self.base_model or self.base_model == model

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def fits(self, control_type: str) -> bool:
        """Whether this model was made for ``control_type`` (``raw`` and ``any`` fit everything)."""
        return self.controls == "any" or control_type == "raw" or self.controls == control_type


def _controls(name: str, extra: dict) -> str:
    said = extra.get("control")
    if isinstance(said, str) and (said in CONTROL_TYPES or said == "any"):
        return said
    low = name.lower()
    for word, kind in _NAME_WORDS:
        if re.search(rf"(?<![a-z]){word}(?![a-z])", low) or (len(word) > 4 and word in low):
            return kind
    return "any"


def _family_of_controlnet_config(cfg: dict) -> str:
    if cfg.get("addition_embed_type") == "text_time":
        return "sdxl"
    cross = cfg.get("cross_attention_dim")
    if isinstance(cross, list):
        cross = cross[0] if cross else None
    return "sd2" if cross == 1024 else "sd15"


def _family_of_adapter_config(cfg: dict) -> str:
    return "sdxl" if cfg.get("adapter_type") == "full_adapter_xl" else "sd15"


def inspect_folder(path: Path) -> Optional[ControlEntry]:
    cfg = _read_json(path / "config.json")
    kind = _CLASS_KINDS.get(cfg.get("_class_name", ""))
    if kind is None:
        return None
    extra = read_card(path)
    family = _family_of_controlnet_config(cfg) if kind == CONTROLNET else _family_of_adapter_config(cfg)
    entry = ControlEntry(name=path.name, path=str(path), format="diffusers", kind=kind,
                         family=str(extra.get("family") or family), controls=_controls(path.name, extra),
                         description=str(extra.get("description", "")), base_model=str(extra.get("base_model") or ""))
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        entry.supported = False
        entry.notes.append("the folder holds no weights file")
    return entry


def single_file_kind(header: dict) -> Optional[Tuple[str, str]]:
    """(kind, layout) of a safetensors header that is a control model, else None."""
    return control_kind(header)


def _shape(header: dict, key: str):
    info = header.get(key)
    return info.get("shape") if isinstance(info, dict) else None


def inspect_file(path: Path) -> Optional[ControlEntry]:
    try:
        header = safetensors_header(path)
    except (OSError, ValueError, Exception):  # unreadable: the base-model scan reports it
        return None
    if not isinstance(header, dict):
        return None
    found = single_file_kind(header)
    if found is None:
        return None
    kind, layout = found
    sidecar = sidecar_dir(path)
    extra = read_card(sidecar) if sidecar else {}
    keys = [k for k in header if k != "__metadata__"]
    if kind == ADAPTER:
        # FullAdapterXL's body has no downsampling in its second block: SDXL adapters' second block changes width
        cfg = _read_json(sidecar / "config.json") if sidecar else {}
        family = _family_of_adapter_config(cfg) if cfg else "sd15"
    elif layout == "ldm":
        to_k = _shape(header, "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        family = "sdxl" if any(k.startswith("control_model.label_emb.") for k in keys) else (
            "sd2" if isinstance(to_k, list) and to_k[-1] == 1024 else "sd15")
    else:
        family = "sdxl" if any(k.startswith("add_embedding.") for k in keys) else "sd15"
    entry = ControlEntry(name=path.stem, path=str(path), format="single_file", kind=kind, layout=layout,
                         family=str(extra.get("family") or family), controls=_controls(path.stem, extra),
                         description=str(extra.get("description", "")), base_model=str(extra.get("base_model") or ""))
    missing = _missing_bytes(path, header)
    if missing:
        entry.supported = False
        entry.notes.append(f"the file is incomplete ({missing} bytes missing): an interrupted download or copy?")
    elif kind == ADAPTER and sidecar is None:
        entry.supported = False
        entry.notes.append(f"a single-file T2I-Adapter needs its config: put config.json in {path.stem}.config/")
    elif entry.family not in ("sd15", "sdxl"):
        entry.supported = False
        entry.notes.append(f"{entry.family} control models are not supported as single files; use a diffusers folder")
    return entry


def sidecar_dir(path: Path) -> Optional[Path]:
    from .single_file import sidecar_dir as base_sidecar

    return base_sidecar(path)


def control_folders(models_dir: Path) -> List[Path]:
    """The models folder and its ``controlnet/`` sub-folder (any case), where control models live."""
    out = [models_dir]
    if models_dir.is_dir():
        for child in sorted(models_dir.iterdir()):
            if child.is_dir() and child.name.lower() in SUBFOLDERS:
                out.append(child)
    return out


def scan(models_dir: Path) -> List[ControlEntry]:
    """Every control model in the models folder (and its ``controlnet/`` sub-folder)."""
    found: List[ControlEntry] = []
    seen = set()
    for folder in control_folders(Path(models_dir)):
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            name = child.stem if child.is_file() else child.name
            try:
                check_name(name)
            except ProtocolError:
                continue
            entry = None
            if child.is_dir() and child.name.endswith(SIDECAR) and child.with_name(
                    child.name[: -len(SIDECAR)] + ".safetensors").is_file():
                continue  # a single file's config sidecar, not a model
            if child.is_dir() and (child / "config.json").is_file() and not (child / "model_index.json").exists():
                entry = inspect_folder(child)
            elif child.is_file() and child.suffix == ".safetensors":
                entry = inspect_file(child)
            if entry is not None and entry.name not in seen:
                seen.add(entry.name)
                found.append(entry)
    return found


def builtin_dir() -> Path:
    """Where Impasto's own control models are shipped (``backend/assets/controlnet``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "controlnet"


def scan_all(models_dir: Path) -> List[ControlEntry]:
    """The models folder's control models, then the built-in ones whose names it does not use."""
    found = scan(models_dir)
    names = {e.name for e in found}
    folder = builtin_dir()
    if folder.is_dir():
        for entry in scan(folder):
            if entry.name not in names:
                entry.builtin = True
                found.append(entry)
    return found


# --------------------------------------------------------------------------- loading


def _unet_config(family: str) -> dict:
    from .single_file import shipped_config_dir

    return _read_json(shipped_config_dir(family) / "unet" / "config.json")


def controlnet_config_from_unet(unet_cfg: dict) -> dict:
    """A ``ControlNetModel`` config for a UNet config: the encoder half's settings, shared by name."""
    import inspect

    from diffusers import ControlNetModel

    params = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    return {k: v for k, v in unet_cfg.items() if k in params}


def _file_config(entry: ControlEntry) -> dict:
    sidecar = sidecar_dir(Path(entry.path))
    if sidecar is not None and (sidecar / "config.json").is_file():
        cfg = _read_json(sidecar / "config.json")
    else:
        cfg = controlnet_config_from_unet(_unet_config(entry.family))
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def load_module(entry: ControlEntry, device, dtype):
    """The control model of ``entry`` as a torch module on ``device`` (eval mode, no gradients)."""
    import torch
    from diffusers import ControlNetModel, T2IAdapter

    cls = ControlNetModel if entry.kind == CONTROLNET else T2IAdapter
    if entry.format == "diffusers":
        module = cls.from_pretrained(entry.path, torch_dtype=dtype, local_files_only=True)
    else:
        from safetensors.torch import load_file

        cfg = _file_config(entry)
        state = load_file(entry.path)
        if entry.layout == "ldm":
            from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

            converted = convert_controlnet_checkpoint(state, cfg)
            for ldm, ours in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
                for p in ("weight", "bias"):   # SDXL's added embedding: diffusers' converter leaves it out
                    if f"control_model.{ldm}.{p}" in state:
                        converted.setdefault(f"{ours}.{p}", state[f"control_model.{ldm}.{p}"])
            state = converted
        module = cls(**cfg)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise EngineError(ErrorCode.BAD_FIELD, f"control model {entry.name!r} does not match its config "
                              f"({len(missing)} weights missing, {len(unexpected)} unexpected): a sidecar "
                              f"{Path(entry.path).stem}.config/config.json must describe it", "control")
        if dtype != torch.float32:
            module = module.to(dtype=dtype)
    module.requires_grad_(False)
    return module.to(device).eval()


class ControlStore:
    """Control models resident on the device: loaded on first use, kept, switched per job without reads.

    Keyed by path and modification time, so a file replaced on disk is read
    again; ``loads`` counts real loads (the benchmark and tests check that a
    switch back costs none).
    """

    def __init__(self, models_dir: Path):
        self.models_dir = Path(models_dir)
        self.resident: Dict[str, Tuple[int, object]] = {}
        self.loads = 0
        self.load_seconds: Dict[str, float] = {}

    def entries(self) -> List[ControlEntry]:
        return scan_all(self.models_dir)

    def module(self, entry: ControlEntry, choice):
        try:
            stamp = os.stat(entry.path).st_mtime_ns
        except OSError:
            stamp = -1
        held = self.resident.get(entry.path)
        if held is not None and held[0] == stamp:
            return held[1]
        t0 = time.perf_counter()
        try:
            module = load_module(entry, choice.device, choice.dtype)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(ErrorCode.INTERNAL, f"control model {entry.name!r} failed to load: {exc}",
                              "control") from exc
        self.resident[entry.path] = (stamp, module)
        self.loads += 1
        self.load_seconds[entry.name] = time.perf_counter() - t0
        log.info("control model %s (%s, %s) loaded in %.2f s", entry.name, entry.kind, entry.family,
                 self.load_seconds[entry.name])
        return module

    def clear(self) -> None:
        self.resident.clear()
