"""LoRA files of the ecosystem <-> the library's own format.

The library stores peft keys, the form diffusers' ``save_lora_weights`` writes::

    unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight   (rank, in)
    unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight   (out, rank)
    text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight

with ``lora_alpha == rank`` (a scale of exactly 1 at weight 1.0).

Artists download LoRAs in other key layouts; :func:`read_lora_file` accepts

* **kohya / A1111 / ComfyUI** (``lora_unet_<module_with_underscores>.lora_down.weight``,
  ``.lora_up.weight``, ``.alpha``; ``lora_te_`` for the text encoder; SDXL files
  ``lora_te1_`` / ``lora_te2_`` for its two text encoders and, as kohya's
  sd-scripts write them, the original (SGM) UNet names ``input_blocks_4_1_...``,
  which :func:`sgm_to_unet_module` maps onto diffusers' ``down_blocks.1.attentions.0...``);
* **peft / diffusers** (``.lora_A.weight`` / ``.lora_B.weight``, with or without
  the ``unet.`` / ``text_encoder.`` prefix, alpha from diffusers' adapter metadata);
* **older diffusers** (``.lora.down.weight``, ``.processor.to_q_lora.down.weight``,
  ``.lora_linear_layer.down.weight``, optional ``.alpha``).

A file's alpha becomes part of ``lora_B`` (``B * alpha / rank``), so imported
and trained concepts are applied identically.  :func:`kohya_state_dict` writes
the kohya layout back (alpha = rank), which A1111, ComfyUI and kohya's tools
load; export -> import is lossless (scale 1 folds to the same bits).

Kohya names are diffusers module paths with dots turned into underscores; the
reverse needs to know which underscores belong to a name (``to_q``,
``transformer_blocks``...).  :func:`kohya_to_module` rebuilds them from the
vocabulary of diffusers' UNet and CLIP module names (the tests check it against
every module of a full SD1.5 UNet and CLIP ViT-L text encoder).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from impasto.protocol.atomic import write_atomic
from impasto.protocol.messages import ErrorCode

from impasto.backend.engine.errors import EngineError

from .kohya_sdxl import sgm_to_unet_module, unet_module_to_sgm  # noqa: F401 (SDXL's UNet names, re-exported)
from .trigger_embedding import KEY

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
SDXL_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}

# Multi-word names of diffusers UNet2DConditionModel and transformers CLIPTextModel modules.
_COMPOUNDS = {
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "proj_in", "proj_out", "to_q", "to_k", "to_v",
    "to_out", "conv_shortcut", "time_emb_proj", "conv_in", "conv_out", "conv_norm_out", "time_embedding",
    "linear_1", "linear_2", "add_embedding", "class_embedding", "add_q_proj", "add_k_proj", "add_v_proj",
    "to_add_out", "norm_cross", "text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj",
    "final_layer_norm", "layer_norm1", "layer_norm2", "token_embedding", "position_embedding", "text_projection",
    # SDXL's original (SGM) UNet names, as kohya writes SDXL LoRAs
    "input_blocks", "output_blocks", "middle_block", "in_layers", "out_layers", "emb_layers", "skip_connection",
    "time_embed", "label_emb",
}
_MAX_COMPOUND = max(len(c.split("_")) for c in _COMPOUNDS)


class LoraFormatError(EngineError):
    """A LoRA file Impasto can't read (wrong layout, unsupported kind, damaged)."""

    def __init__(self, message: str, field: str = "path"):
        super().__init__(ErrorCode.BAD_FIELD, message, field)


# --------------------------------------------------------------------------- key names


def module_to_kohya(component: str, module: str, sdxl: bool = False) -> str:
    """A library module name -> its kohya stem (SDXL: ``lora_te1_``/``lora_te2_``, SGM UNet names)."""
    if not sdxl:
        return KOHYA_PREFIX[component] + module.replace(".", "_")
    if component == "unet":
        module = unet_module_to_sgm(module)
    return SDXL_KOHYA_PREFIX[component] + module.replace(".", "_")


def is_sdxl_lora(tensors: Dict[str, torch.Tensor], meta: Optional[Dict[str, Any]] = None) -> bool:
    """An SDXL concept: its recorded base architecture, else a second text encoder's weights."""
    arch = str((meta or {}).get("base_arch", ""))
    if arch:
        return arch.startswith("sdxl")
    return any(k.startswith("text_encoder_2.") for k in tensors)


def kohya_to_module(name: str) -> str:
    """``down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0`` ->
    ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0``."""
    parts = name.split("_")
    out: List[str] = []
    i = 0
    while i < len(parts):
        for n in range(min(_MAX_COMPOUND, len(parts) - i), 1, -1):
            cand = "_".join(parts[i:i + n])
            if cand in _COMPOUNDS:
                out.append(cand)
                i += n
                break
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


# --------------------------------------------------------------------------- reading files


def read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and header metadata of a ``.safetensors`` file; typed errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise LoraFormatError(f"path: {str(path)!r} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoraFormatError(f"path: {path.name} cannot be read: {exc.strerror or exc}") from exc
    return safetensors_from_bytes(data, path.name)


def safetensors_from_bytes(data: bytes, filename: str = "the file",
                           field: str = "path") -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and header metadata of ``.safetensors`` bytes (an import's file frame); typed errors otherwise."""
    header = None
    if len(data) >= 8:
        (length,) = struct.unpack("<Q", data[:8])
        if 0 < length < 100 * 1024 * 1024 and 8 + length <= len(data):
            try:
                header = json.loads(data[8:8 + length])
            except (ValueError, RecursionError):
                header = None
    if not isinstance(header, dict):
        hint = ""
        if Path(filename).suffix.lower() in (".pt", ".ckpt", ".bin", ".pth"):
            hint = " (pickle files can run code when loaded: ask for the .safetensors version of this LoRA)"
        raise LoraFormatError(f"{field}: {filename} is not a safetensors file{hint}", field)
    from safetensors.torch import load

    try:
        tensors = load(bytes(data))
    except Exception as exc:
        raise LoraFormatError(f"{field}: {filename} is damaged: {exc}", field) from exc
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        meta = {}
    return tensors, {str(k): str(v) for k, v in meta.items()}


def _split_kohya(tensors: Dict[str, torch.Tensor]) -> Dict[Tuple[str, str], Dict[str, torch.Tensor]]:
    groups: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        stem, _, kind = key.partition(".")
        for comp, prefix in list(SDXL_KOHYA_PREFIX.items())[1:] + list(KOHYA_PREFIX.items()):
            if stem.startswith(prefix):
                module = kohya_to_module(stem[len(prefix):])
                break
        else:
            raise LoraFormatError(f"path: unexpected key {key!r} in a kohya-style LoRA")
        if comp == "unet" and re.match(r"(input_blocks|output_blocks|middle_block|time_embed|label_emb|out)\.",
                                       module):
            try:
                module = sgm_to_unet_module(module)   # SDXL: kohya keeps the original UNet names
            except ValueError as exc:
                raise LoraFormatError(f"path: {exc}") from None
        names = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
        if kind not in names:
            raise LoraFormatError(f"path: unsupported tensor {key!r} (DoRA / LyCORIS extras are not supported)")
        groups.setdefault((comp, module), {})[names[kind]] = t
    return groups


_OLD_DIFFUSERS = [
    (re.compile(r"^(?P<m>.+)\.processor\.(?P<p>to_q|to_k|to_v)_lora\.(?P<k>down|up)\.weight$"), r"\g<m>.\g<p>"),
    (re.compile(r"^(?P<m>.+)\.processor\.to_out_lora\.(?P<k>down|up)\.weight$"), r"\g<m>.to_out.0"),
    (re.compile(r"^(?P<m>.+)\.lora_linear_layer\.(?P<k>down|up)\.weight$"), r"\g<m>"),
    (re.compile(r"^(?P<m>.+)\.lora\.(?P<k>down|up)\.weight$"), r"\g<m>"),
    (re.compile(r"^(?P<m>.+)\.lora_(?P<k>A|B)\.weight$"), r"\g<m>"),
]


def _component_of(module: str) -> Tuple[str, str]:
    for comp in COMPONENTS:
        if module.startswith(comp + "."):
            return comp, module[len(comp) + 1:]
    if module.startswith("text_model."):
        return "text_encoder", module
    return "unet", module


def _split_diffusers(tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> Dict[Tuple[str, str], Dict[str, Any]]:
    groups: Dict[Tuple[str, str], Dict[str, Any]] = {}
    alphas: Dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.endswith(".alpha"):
            alphas[key[: -len(".alpha")]] = t
            continue
        for rx, repl in _OLD_DIFFUSERS:
            m = rx.match(key)
            if m:
                kind = {"A": "down", "B": "up"}.get(m.group("k"), m.group("k"))
                comp, module = _component_of(rx.sub(repl, key))
                groups.setdefault((comp, module), {})[kind] = t
                break
        else:
            raise LoraFormatError(f"path: unsupported tensor {key!r} (not a LoRA layout Impasto knows)")
    # alpha: diffusers' adapter metadata (peft LoraConfig per component) or .alpha keys
    configs = {}
    raw = meta.get("lora_adapter_metadata")
    if raw:
        try:
            configs = json.loads(raw)
        except ValueError:
            configs = {}
    for (comp, module), g in groups.items():
        for stem in (f"{comp}.{module}", module):
            if stem in alphas:
                g["alpha"] = alphas[stem]
        cfg = configs.get(f"{comp}.lora_adapter_metadata") or configs.get(comp) or \
            (configs if "lora_alpha" in configs else None)
        if "alpha" not in g and isinstance(cfg, dict) and "lora_alpha" in cfg:
            alpha = cfg.get("alpha_pattern", {}).get(module, cfg["lora_alpha"])
            g["alpha"] = torch.tensor(float(alpha))
    return groups


def _fold(groups: Dict[Tuple[str, str], Dict[str, Any]], source: str) -> Dict[str, torch.Tensor]:
    """Checked (down, up, alpha) groups -> library tensors with the alpha folded into B."""
    out: Dict[str, torch.Tensor] = {}
    for (comp, module), g in sorted(groups.items()):
        if "down" not in g or "up" not in g:
            raise LoraFormatError(f"path: {source} LoRA is incomplete at {comp}.{module} (needs both halves)")
        down, up = g["down"], g["up"]
        if not (down.is_floating_point() and up.is_floating_point()):
            raise LoraFormatError(f"path: {comp}.{module} holds non-float tensors")
        rank = down.shape[0]
        if down.dim() not in (2, 4) or up.dim() != down.dim() or up.shape[1] != rank:
            raise LoraFormatError(f"path: {comp}.{module}: shapes {tuple(down.shape)} / {tuple(up.shape)} are not "
                                  "a low-rank pair")
        if not 1 <= rank <= 1024:
            raise LoraFormatError(f"path: {comp}.{module}: rank {rank} is out of range")
        scale = float(g["alpha"]) / rank if "alpha" in g else 1.0
        if scale != 1.0:
            up = (up.float() * scale).to(torch.float32)
        out[f"{comp}.{module}.lora_A.weight"] = down.contiguous()
        out[f"{comp}.{module}.lora_B.weight"] = up.contiguous()
    if not out:
        raise LoraFormatError("path: the file holds no LoRA weights")
    return out


BUNDLE_PREFIX = "bundle_emb."


def bundle_key(trigger: str) -> str:
    """kohya / A1111's key for a textual-inversion embedding bundled into a LoRA file."""
    return f"{BUNDLE_PREFIX}{trigger}.string_to_param.*"


def _take_trigger_embedding(tensors: Dict[str, torch.Tensor]) -> Tuple[Optional[torch.Tensor], str]:
    """Pop a bundled embedding (A1111 ``bundle_emb.NAME...``, or the library's own key) -> (vectors, NAME)."""
    vectors, name = tensors.pop(KEY, None), ""
    for key in sorted(k for k in tensors if k.startswith(BUNDLE_PREFIX)):
        t = tensors.pop(key)
        if vectors is None:
            name = key[len(BUNDLE_PREFIX):].split(".")[0]
            vectors = t
    if vectors is not None:
        if vectors.dim() == 1:
            vectors = vectors[None]
        if vectors.dim() != 2 or not vectors.is_floating_point():
            raise LoraFormatError("path: the bundled trigger embedding is not a [tokens, width] float tensor")
        vectors = vectors.float().contiguous()
    return vectors, name


def read_lora_file(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Any supported LoRA file -> (library tensors, hints for the concept's metadata)."""
    tensors, meta = read_safetensors(Path(path))
    return _lora_from(tensors, meta)


def read_lora_bytes(data: bytes, filename: str = "the file") -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The bytes of a LoRA file (a concept import's ``file`` frame) -> (library tensors, hints).

    The daemon never opens a path a request names: clients read the file and send its bytes.
    Errors name the ``file`` field.
    """
    tensors, meta = safetensors_from_bytes(data, filename, field="file")
    try:
        return _lora_from(tensors, meta)
    except LoraFormatError as exc:
        raise LoraFormatError(str(exc.message).replace("path: ", "file: ", 1), "file") from None


def _lora_from(tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Library tensors and metadata hints from a LoRA state dict.

    A bundled trigger embedding (kohya's and A1111's ``bundle_emb.<word>``) comes along as
    the concept's trigger embedding, its word as the trigger when none is recorded.
    """
    if not tensors:
        raise LoraFormatError("path: the file holds no tensors")
    vectors, bundled_word = _take_trigger_embedding(tensors)
    keys = list(tensors)
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        if any(("hada_" in k or "lokr_" in k) for k in keys):
            raise LoraFormatError("path: LyCORIS LoHa/LoKr files are not supported (plain LoRA only)")
        if any("dora_scale" in k for k in keys):
            raise LoraFormatError("path: DoRA LoRAs are not supported (plain LoRA only)")
        layout, groups = "kohya", _split_kohya(tensors)
    else:
        if any(k.endswith(("lora_magnitude_vector", "lora_magnitude_vector.weight")) for k in keys):
            raise LoraFormatError("path: DoRA LoRAs are not supported (plain LoRA only)")
        layout, groups = "diffusers", _split_diffusers(tensors, meta)
    base_version = meta.get("ss_base_model_version", "")
    sdxl = base_version.startswith("sdxl") or any(c == "text_encoder_2" for c, _ in groups) or any(
        k.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks", "lora_unet_output_blocks")) for k in keys)
    lib = _fold(groups, layout)
    ranks = sorted({t.shape[0] for k, t in lib.items() if k.endswith("lora_A.weight")})
    hints: Dict[str, Any] = {
        "layout": layout,
        "rank": ranks[-1],
        "text_encoder": any(k.startswith("text_encoder.") for k in lib),
        "modules": len(lib) // 2,
        "trigger": meta.get("impasto_trigger", ""),
        "class_noun": meta.get("impasto_class_noun", ""),
        "base_model": meta.get("impasto_base_model", meta.get("ss_sd_model_name", "")),
        "base_fingerprint": meta.get("impasto_base_fingerprint", ""),
        "base_arch": meta.get("impasto_base_arch", "sdxl" if sdxl else
                              {"sd_v1": "sd15", "sd_v2": "sd2"}.get(base_version, "")),
        "method": meta.get("impasto_method", "lora"),
        "steps": int(meta["impasto_steps"]) if meta.get("impasto_steps", "").isdigit() else 0,
    }
    if not hints["trigger"]:
        hints["trigger"] = bundled_word or _trigger_from_kohya_tags(meta)
    hints["trigger_embedding"] = vectors is not None
    hints["slider"] = slider_from_header(meta)
    hints["titles"] = fewstep_titles(meta)   # names the file gives itself (an LCM-LoRA's preset, fewstep.py)
    if vectors is not None:
        lib[KEY] = vectors
    return lib, hints


def fewstep_titles(meta: Dict[str, str]):
    from impasto.backend.engine.fewstep import titles

    return titles(meta)


def _trigger_from_kohya_tags(meta: Dict[str, str]) -> str:
    """kohya records caption tag counts; the most frequent one is usually the trigger."""
    try:
        freq = json.loads(meta.get("ss_tag_frequency", "") or "{}")
    except ValueError:
        return ""
    counts: Dict[str, int] = {}
    for tags in freq.values() if isinstance(freq, dict) else []:
        if isinstance(tags, dict):
            for tag, n in tags.items():
                if isinstance(n, int):
                    counts[tag.strip()] = counts.get(tag.strip(), 0) + n
    best = max(counts.items(), key=lambda kv: kv[1], default=("", 0))[0]
    return best if re.match(r"^[A-Za-z0-9_\-]{1,32}$", best) else ""


# --------------------------------------------------------------------------- writing kohya files


def kohya_state_dict(tensors: Dict[str, torch.Tensor], sdxl: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """Library tensors -> kohya keys (``lora_down``/``lora_up``/``alpha`` = rank).

    ``sdxl`` (None: a second text encoder's weights decide) writes kohya's SDXL
    names: ``lora_te1_`` / ``lora_te2_`` and the original UNet names."""
    if sdxl is None:
        sdxl = is_sdxl_lora(tensors)
    out: Dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        comp, _, rest = key.partition(".")
        module = rest[: -len(".lora_A.weight")]
        stem = module_to_kohya(comp, module, sdxl)
        up = tensors[f"{comp}.{module}.lora_B.weight"]
        out[f"{stem}.lora_down.weight"] = t.contiguous()
        out[f"{stem}.lora_up.weight"] = up.contiguous()
        out[f"{stem}.alpha"] = torch.tensor(float(t.shape[0]), dtype=torch.float32)
    return out


def kohya_metadata(name: str, meta: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> Dict[str, str]:
    """The ``ss_*`` header fields kohya's tools and A1111 read, plus Impasto's own."""
    ranks = sorted({t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")})
    rank = str(ranks[-1]) if ranks else "0"
    trigger = str(meta.get("trigger", ""))
    arch = str(meta.get("base_arch", "")) or ("sdxl" if is_sdxl_lora(tensors) else "")
    version = "sdxl_base_v1-0" if arch.startswith("sdxl") else {"sd2": "sd_v2"}.get(arch, "sd_v1")
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": rank,
        "ss_network_alpha": rank,
        "ss_base_model_version": version,
        "ss_v2": "True" if version == "sd_v2" else "False",
        "ss_output_name": name,
        "ss_sd_model_name": str(meta.get("base_model", "")),
        "ss_max_train_steps": str(meta.get("steps", 0)),
        "ss_tag_frequency": json.dumps({name: {trigger: 1}} if trigger else {}),
        "ss_training_comment": f"trigger word: {trigger}" if trigger else "",
        "modelspec.title": name,
        "modelspec.architecture": {"sd_v1": "stable-diffusion-v1/lora", "sd_v2": "stable-diffusion-v2/lora"}.get(
            version, "stable-diffusion-xl-v1-base/lora"),
        "impasto_trigger": trigger,
        "impasto_class_noun": str(meta.get("class_noun", "")),
        "impasto_base_model": str(meta.get("base_model", "")),
        "impasto_base_fingerprint": str(meta.get("base_fingerprint", "")),
        "impasto_base_arch": str(meta.get("base_arch", "")),
        "impasto_method": str(meta.get("method", "lora")),
        "impasto_steps": str(int(meta.get("steps", 0) or 0)),
        **slider_header(meta),
    }


def slider_header(meta: Dict[str, Any]) -> Dict[str, str]:
    """A Concept Slider's metadata as a header field, so an exported slider loads back as a slider."""
    slider = meta.get("slider")
    return {"impasto_slider": json.dumps(slider, sort_keys=True)} if isinstance(slider, dict) else {}


def slider_from_header(meta: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """The slider metadata a file's header carries (None: not a slider, or unreadable).

    A downloaded file is not trusted: only the known fields, of the known types and
    lengths, are kept (the library listing carries them to every client)."""
    from impasto.protocol.messages import SLIDER_MODES, SLIDER_WEIGHT_RANGE

    try:
        raw = json.loads(meta.get("impasto_slider", "") or "null")
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None

    def text(v) -> str:
        return v[:300] if isinstance(v, str) else ""

    out: Dict[str, Any] = {"mode": raw.get("mode") if raw.get("mode") in SLIDER_MODES else "images",
                           "range": list(SLIDER_WEIGHT_RANGE), "target": text(raw.get("target"))}
    if out["mode"] == "text":
        g = raw.get("guidance")
        good = isinstance(g, (int, float)) and not isinstance(g, bool) and 0 < g <= 20
        out.update(positive=text(raw.get("positive")), negative=text(raw.get("negative")),
                   guidance=float(g) if good else 1.0,
                   preserve=[text(p) for p in raw.get("preserve", [])[:256] if isinstance(p, str)]
                   if isinstance(raw.get("preserve"), list) else [])
    elif isinstance(raw.get("pairs"), int) and not isinstance(raw.get("pairs"), bool):
        out["pairs"] = max(0, min(int(raw["pairs"]), 100000))
    end = slider_end(raw)
    if end is not None:
        out["end"] = end
    return out


def slider_end(slider: Dict[str, Any]) -> Optional[float]:
    """A slider's ``end``, the share of the denoising steps it acts for (slider_train.PICTURE_SLIDER_END),
    when it has a valid one (0 < end <= 1); None: the whole schedule."""
    end = slider.get("end")
    if isinstance(end, (int, float)) and not isinstance(end, bool) and 0.0 < end <= 1.0:
        return float(end)
    return None


def kohya_file_bytes(name: str, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> bytes:
    """A concept as the bytes of a kohya-format ``.safetensors`` (an export's answer)."""
    from safetensors.torch import save

    sd = kohya_state_dict(tensors, is_sdxl_lora(tensors, meta))
    trigger = str(meta.get("trigger", ""))
    if KEY in tensors and trigger:
        sd[bundle_key(trigger)] = tensors[KEY].float().contiguous()   # A1111 loads it as the trigger's embedding
    return save(sd, metadata=kohya_metadata(name, meta, tensors))


def write_kohya_file(path: Path, name: str, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> int:
    """Write a kohya-format ``.safetensors`` atomically; returns its size in bytes."""
    path = Path(path)
    try:
        return write_atomic(path, kohya_file_bytes(name, tensors, meta))
    except OSError as exc:
        raise EngineError(ErrorCode.INTERNAL, f"path: could not write {path}: {exc.strerror or exc}", "path") from exc


def split_components(tensors: Dict[str, torch.Tensor]) -> Dict[str, Dict[str, Tuple[torch.Tensor, torch.Tensor]]]:
    """Library tensors -> {component: {module: (A, B)}}."""
    out: Dict[str, Dict[str, Tuple[torch.Tensor, torch.Tensor]]] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        comp, _, rest = key.partition(".")
        module = rest[: -len(".lora_A.weight")]
        b = tensors.get(f"{comp}.{module}.lora_B.weight")
        if comp not in COMPONENTS or b is None:
            raise EngineError(ErrorCode.INTERNAL, f"concept weights: unexpected key {key!r}", "concepts")
        out.setdefault(comp, {})[module] = (a, b)
    return out
