"""Single-file checkpoints in the original LDM (CompVis) layout: loading offline, and writing them.

Two families: SD1.5 (shipped configs in ``assets/sd15_config``) and SDXL
(``assets/sdxl_config``: SDXL base / inpainting configs, both text encoders;
its two CLIP tokenizers share the SD1.5 copy's vocabulary and merges).  SDXL
files keep the first text encoder under ``conditioner.embedders.0.transformer.``
(HF CLIP layout) and the second under ``conditioner.embedders.1.model.``
(OpenCLIP layout: fused q/k/v ``in_proj``, ``resblocks``, a transposed
``text_projection``); the UNet's added embedding is ``label_emb``.

Artists mostly own SD1.5 models as one ``NAME.safetensors`` with the original
key names (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``).  diffusers' ``from_single_file`` converts
those keys itself but needs the diffusers-format *component configs* (UNet,
VAE, CLIP text encoder, scheduler, tokenizer); left to itself it fetches them
from a model hub.  Impasto never goes online, so the configs ship in the
package (``backend/assets/sd15_config``) and every single-file load is pointed
at them.

Layout of the shipped folder: ``base/`` and ``inpaint/`` hold each variant's
``model_index.json`` and component configs; CLIP's tokenizer (1.4 MB) is kept
once in ``tokenizer/`` and joined in when a load assembles its config folder.

**Sidecar configs.** A checkpoint whose architecture is not stock SD1.5 (a
test's tiny model, a fine-tune with another scheduler) may carry its own
configs in a folder beside it: ``NAME.config/`` next to ``NAME.safetensors``,
holding any of ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/`` in diffusers' format (and optionally ``impasto.json``, read by
the registry like a diffusers folder's).  Each component folder present there
replaces the shipped one; the others come from the shipped SD1.5 configs.  The
sidecar must not contain a ``model_index.json`` (that would make the models
folder list it as a model of its own); the pipeline classes are taken from the
component configs.

**Writing.** diffusers can read LDM checkpoints but not write them;
:func:`write_single_file` does the reverse of its ``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint`` and ``convert_ldm_clip_checkpoint`` so tests can
turn a tiny diffusers model into a real-layout single file (and so a trained
model can be exported the way other tools expect it).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Tuple

SD15_CONFIG_DIR = Path(__file__).resolve().parent.parent / "assets" / "sd15_config"
SDXL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "assets" / "sdxl_config"
SIDECAR_SUFFIX = ".config"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_COMPONENTS = COMPONENTS + ("text_encoder_2", "tokenizer_2")

SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."


# --------------------------------------------------------------------------- configs


def sidecar_dir(checkpoint: Path) -> Optional[Path]:
    """``NAME.config/`` beside ``NAME.safetensors`` when it exists, else None."""
    path = Path(checkpoint)
    folder = path.with_name(path.stem + SIDECAR_SUFFIX)
    return folder if folder.is_dir() else None


def is_sdxl(arch: str) -> bool:
    return arch.startswith("sdxl")


def shipped_config_dir(arch: str) -> Path:
    """The shipped config variant for ``arch`` (``sd15``, ``sd15-inpaint``, ``sdxl``, ``sdxl-inpaint``)."""
    root = SDXL_CONFIG_DIR if is_sdxl(arch) else SD15_CONFIG_DIR
    return root / ("inpaint" if arch.endswith("inpaint") else "base")


def _shipped_tokenizer(name: str, target: Path) -> None:
    """CLIP's tokenizer (vocab + merges shared by SD1.5 and both SDXL tokenizers), with
    ``tokenizer_2``'s own two configs for SDXL's OpenCLIP tokenizer."""
    shutil.copytree(SD15_CONFIG_DIR / "tokenizer", target)
    if name == "tokenizer_2":
        for f in (SDXL_CONFIG_DIR / "tokenizer_2").iterdir():
            shutil.copy2(f, target / f.name)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _component_class(name: str, folder: Path) -> Tuple[str, str]:
    """(library, class) of a component from its own config, as model_index.json lists it."""
    if name in ("unet", "vae"):
        library, cls = "diffusers", _read_json(folder / "config.json").get("_class_name")
    elif name == "scheduler":
        library, cls = "diffusers", _read_json(folder / "scheduler_config.json").get("_class_name")
    elif name in ("text_encoder", "text_encoder_2"):
        library, cls = "transformers", (_read_json(folder / "config.json").get("architectures") or [None])[0]
    else:
        library, cls = "transformers", _read_json(folder / "tokenizer_config.json").get("tokenizer_class")
    if not isinstance(cls, str) or not hasattr(importlib.import_module(library), cls):
        raise ValueError(f"{folder}: names no {library} class for the {name} ({cls!r})")
    return library, cls


@contextlib.contextmanager
def config_folder(arch: str, checkpoint: Path) -> Iterator[Path]:
    """A complete diffusers config folder for loading ``checkpoint`` (temporary, local only).

    Shipped configs for ``arch`` (SD1.5 or SDXL), the shipped CLIP
    tokenizer(s), then each component folder of the checkpoint's sidecar (if
    any) in place of the shipped one.
    """
    sidecar = sidecar_dir(checkpoint)
    with tempfile.TemporaryDirectory(prefix="impasto-config-") as tmp:
        root = Path(tmp) / "config"
        shutil.copytree(shipped_config_dir(arch), root)
        index = _read_json(root / "model_index.json")
        for name in SDXL_COMPONENTS if is_sdxl(arch) else COMPONENTS:
            override = sidecar / name if sidecar is not None else None
            if override is not None and override.is_dir():
                index[name] = list(_component_class(name, override))
                shutil.rmtree(root / name, ignore_errors=True)
                shutil.copytree(override, root / name)
            elif name in ("tokenizer", "tokenizer_2"):
                _shipped_tokenizer(name, root / name)
        (root / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
        yield root


def load_pipeline(cls, checkpoint: Path, arch: str, **kwargs):
    """``cls.from_single_file`` on ``checkpoint`` with local configs only: no hub, ever.

    Weights that do not fit the configs (a non-SD1.5 file without its sidecar,
    a truncated download) and broken sidecar configs become a typed
    :class:`EngineError` that says what to do, not a stack of diffusers internals.
    """
    import torch
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    from impasto.protocol.messages import ErrorCode

    from .errors import EngineError

    checkpoint = Path(checkpoint)
    name = checkpoint.stem
    try:
        with config_folder(arch, checkpoint) as cfg:
            try:
                return cls.from_single_file(str(checkpoint), config=str(cfg), local_files_only=True, **kwargs)
            except (ValueError, RuntimeError, KeyError, SingleFileComponentError) as exc:
                if isinstance(exc, torch.OutOfMemoryError):
                    raise
                detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                if sidecar_dir(checkpoint) is None:
                    family = "SDXL" if is_sdxl(arch) else "SD1.5"
                    hint = (f"its weights do not fit the {family} architecture ({detail}); a checkpoint of another "
                            f"architecture needs its diffusers configs in a {name}{SIDECAR_SUFFIX}/ folder beside "
                            f"the file")
                else:
                    hint = f"its weights do not fit the configs in {name}{SIDECAR_SUFFIX}/ ({detail})"
                raise EngineError(ErrorCode.UNKNOWN_MODEL, f"model: {name!r} can't be used: {hint}", "model") from exc
    except ValueError as exc:  # an unreadable or inconsistent sidecar config
        raise EngineError(ErrorCode.UNKNOWN_MODEL, f"model: {name!r} can't be used: {exc}", "model") from exc


# --------------------------------------------------------------------------- diffusers -> LDM keys

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_SIMPLE = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
                "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # SDXL
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_resnet(rest: str, key: str) -> str:
    head, _, tail = rest.partition(".")
    if head not in _UNET_RESNET:
        raise ValueError(f"no LDM name for UNet weight {key!r}")
    return f"{_UNET_RESNET[head]}.{tail}"


def unet_to_ldm(state_dict: Mapping[str, object], layers_per_block: int) -> Dict[str, object]:
    """diffusers ``UNet2DConditionModel`` keys -> LDM ``model.diffusion_model.*`` keys.

    The inverse of diffusers' ``convert_ldm_unet_checkpoint``: LDM numbers the
    encoder ``input_blocks`` 1.. (``layers_per_block`` layers, then the
    downsampler, per level), the middle ``0 resnet / 1 attention / 2 resnet``
    and the decoder ``output_blocks`` 0.. (``layers_per_block + 1`` per level,
    the upsampler after the last layer's attention).  Weights the SD layout has
    no place for raise ``ValueError`` rather than being dropped.
    """
    per_level = layers_per_block + 1
    up_has_attn = {int(m.group(1)) for k in state_dict if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: Dict[str, object] = {}
    for key, value in state_dict.items():
        new = None
        for src, dst in _UNET_SIMPLE.items():
            if key.startswith(src + "."):
                new = dst + key[len(src):]
        if new is None and (m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            level, kind, layer, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if layer >= layers_per_block:
                raise ValueError(f"{key!r}: more layers than layers_per_block={layers_per_block}")
            block = 1 + level * per_level + layer
            slot = f"0.{_unet_resnet(rest, key)}" if kind == "resnets" else f"1.{rest}"
            new = f"input_blocks.{block}.{slot}"
        elif new is None and (m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)):
            new = f"input_blocks.{1 + int(m.group(1)) * per_level + layers_per_block}.0.op.{m.group(2)}"
        elif new is None and (m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key)):
            new = f"middle_block.{2 * int(m.group(1))}.{_unet_resnet(m.group(2), key)}"
        elif new is None and (m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key)):
            new = f"middle_block.1.{m.group(1)}"
        elif new is None and (m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            level, kind, layer, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if layer > layers_per_block:
                raise ValueError(f"{key!r}: more layers than layers_per_block + 1")
            block = level * per_level + layer
            slot = f"0.{_unet_resnet(rest, key)}" if kind == "resnets" else f"1.{rest}"
            new = f"output_blocks.{block}.{slot}"
        elif new is None and (m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)):
            level = int(m.group(1))
            slot = 2 if level in up_has_attn else 1
            new = f"output_blocks.{level * per_level + layers_per_block}.{slot}.conv.{m.group(2)}"
        if new is None:
            raise ValueError(f"no LDM name for UNet weight {key!r}")
        out[UNET_PREFIX + new] = value
    return out


def vae_to_ldm(state_dict: Mapping[str, object]) -> Dict[str, object]:
    """diffusers ``AutoencoderKL`` keys -> LDM ``first_stage_model.*`` keys.

    The inverse of diffusers' ``convert_ldm_vae_checkpoint``: LDM numbers the
    decoder's levels from the full-resolution end (``up.0`` is the last one
    diffusers runs), calls shortcuts ``nin_shortcut`` and keeps the mid
    attention's projections as 1x1 convolutions.
    """
    n_up = 1 + max((int(m.group(1)) for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))),
                   default=-1)
    out: Dict[str, object] = {}
    for key, value in state_dict.items():
        new = None
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            new = f"{m.group(1)}.norm_out.{m.group(2)}"
        elif re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\..+|(quant_conv|post_quant_conv)\..+", key):
            new = key
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m.group(1)}.block.{m.group(2)}.{m.group(3).replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m.group(1)}.downsample.conv.{m.group(2)}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            level = n_up - 1 - int(m.group(1))
            new = f"decoder.up.{level}.block.{m.group(2)}.{m.group(3).replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{m.group(3).replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\."
                               r"(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", key):
            new = f"{m.group(1)}.mid.attn_1.{_VAE_ATTN[m.group(2)]}.{m.group(3)}"
            if m.group(2) != "group_norm" and m.group(3) == "weight" and value.ndim == 2:
                value = value[:, :, None, None]  # linear -> the 1x1 convolution LDM stores
        if new is None:
            raise ValueError(f"no LDM name for VAE weight {key!r}")
        out[VAE_PREFIX + new] = value
    return out


def text_encoder_to_ldm(state_dict: Mapping[str, object], prefix: str = TEXT_PREFIX) -> Dict[str, object]:
    """transformers ``CLIPTextModel`` keys -> ``cond_stage_model.transformer.text_model.*`` (or ``prefix``).

    SD1.5 (and SDXL's first encoder) store HF's CLIP text model verbatim under a
    prefix; transformers 5.6+ drops the model's own ``text_model.`` level,
    older versions keep it.
    """
    out: Dict[str, object] = {}
    for key, value in state_dict.items():
        bare = key[len("text_model."):] if key.startswith("text_model.") else key
        if bare == "embeddings.position_ids":
            continue  # a buffer, re-added by write_single_file like real checkpoints have it
        if not re.match(r"(embeddings|encoder|final_layer_norm)\.", bare):
            raise ValueError(f"no LDM name for text encoder weight {key!r}")
        out[prefix + bare] = value
    return out


_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}


def open_clip_to_ldm(state_dict: Mapping[str, object], prefix: str = SDXL_OPENCLIP_PREFIX) -> Dict[str, object]:
    """transformers ``CLIPTextModelWithProjection`` keys -> SDXL's OpenCLIP layout under ``prefix``.

    The inverse of diffusers' ``convert_open_clip_checkpoint``: per layer the
    q, k and v projections are stacked into one ``attn.in_proj_weight`` /
    ``in_proj_bias`` (q first), the layer norms and MLP renamed, the position
    embedding becomes the bare ``positional_embedding`` tensor and
    ``text_projection`` is stored transposed (OpenCLIP multiplies ``x @ P``).
    """
    import torch

    sd = {(k[len("text_model."):] if k.startswith("text_model.") else k): v for k, v in state_dict.items()}
    out: Dict[str, object] = {}
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    used = set()
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            parts = [src + f"self_attn.{p}_proj.{kind}" for p in ("q", "k", "v")]
            out[prefix + dst + f"attn.in_proj_{kind}"] = torch.cat([sd[p] for p in parts], dim=0)
            used.update(parts)
            for a, b in _OPENCLIP_LAYER.items():
                out[prefix + dst + f"{b}.{kind}"] = sd[src + f"{a}.{kind}"]
                used.add(src + f"{a}.{kind}")
    simple = {"embeddings.token_embedding.weight": "token_embedding.weight",
              "embeddings.position_embedding.weight": "positional_embedding",
              "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    for a, b in simple.items():
        out[prefix + b] = sd[a]
        used.add(a)
    out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    used.update({"text_projection.weight", "embeddings.position_ids"})
    left = sorted(set(sd) - used)
    if left:
        raise ValueError(f"no OpenCLIP name for text encoder weights {left[:3]}")
    return out


def schedule_buffers(scheduler_config: Mapping[str, object]) -> Dict[str, object]:
    """The DDPM schedule tensors CompVis' LatentDiffusion saves beside the weights."""
    import torch

    n = int(scheduler_config.get("num_train_timesteps", 1000))
    start, end = float(scheduler_config.get("beta_start", 0.00085)), float(scheduler_config.get("beta_end", 0.012))
    if scheduler_config.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return {k: v.float() for k, v in {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
    }.items()}


def pipeline_to_ldm(unet, vae, text_encoder, scheduler_config: Optional[Mapping[str, object]] = None,
                    dtype=None, text_encoder_2=None) -> Dict[str, object]:
    """One LDM-layout state dict from loaded diffusers / transformers components.

    With ``text_encoder_2`` (SDXL) the encoders go under ``conditioner.embedders``.
    """
    import torch

    state = {}
    state.update(unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block)))
    state.update(vae_to_ldm(vae.state_dict()))
    first_prefix = TEXT_PREFIX if text_encoder_2 is None else SDXL_TEXT_PREFIX
    state.update(text_encoder_to_ldm(text_encoder.state_dict(), first_prefix))
    if text_encoder_2 is not None:
        state.update(open_clip_to_ldm(text_encoder_2.state_dict()))
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    positions = int(text_encoder.config.max_position_embeddings)
    state[first_prefix + "embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    if scheduler_config is not None:
        state.update(schedule_buffers(scheduler_config))
    return {k: v.detach().contiguous() for k, v in state.items()}


def write_single_file(model_dir: Path, out: Path, *, sidecar: bool = True, dtype=None) -> Path:
    """Write the diffusers folder ``model_dir`` as an LDM-layout ``out`` (``.safetensors``).

    With ``sidecar`` the folder's component configs are copied to
    ``out``'s ``NAME.config/`` so a non-SD1.5 architecture (the tiny test
    model) loads back exactly; a stock SD1.5 model needs none.  Both are
    written atomically (temporary name, then rename).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    model_dir, out = Path(model_dir), Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: a single-file checkpoint must end in .safetensors")
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder", local_files_only=True)
    text_encoder_2 = None
    if (model_dir / "text_encoder_2").is_dir():  # SDXL
        text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(model_dir / "text_encoder_2",
                                                                     local_files_only=True)
    scheduler_config = _read_json(model_dir / "scheduler" / "scheduler_config.json")
    state = pipeline_to_ldm(unet, vae, text_encoder, scheduler_config, dtype=dtype, text_encoder_2=text_encoder_2)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out)

    if sidecar:
        target = out.with_name(out.stem + SIDECAR_SUFFIX)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
        for name in SDXL_COMPONENTS:
            if (model_dir / name).is_dir():
                shutil.copytree(model_dir / name, staging / name,
                                ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt"))
        if (model_dir / "impasto.json").is_file():
            shutil.copy2(model_dir / "impasto.json", staging / "impasto.json")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return out
