"""Tiny Stable-Diffusion-architecture models built in code, for tests and benchmarks (tooling).

Random weights, a few MB, written with ``save_pretrained`` as a diffusers
folder: it loads through exactly the ``from_pretrained`` path a real SD1.5
(:func:`build_tiny_model`) or SDXL (:func:`build_tiny_sdxl`) folder takes, so
tests exercise the real pipelines without any download.
The tokenizer is CLIP's BPE with a letter-level vocabulary written locally:
every word tokenizes (trigger words included), none maps to the unknown token.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

WORDS = ("a", "on", "the", "background", "shape", "red", "green", "blue", "yellow", "cyan", "magenta", "white",
         "black", "circle", "square", "triangle", "star", "photo", "of", "painting", "cat", "dog")


def write_tokenizer(folder: Path, words=WORDS) -> None:
    """A CLIP BPE tokenizer whose vocab holds letters, digits and a few whole words."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,!?'-_:;()")
    vocab = {}
    for s in symbols:
        vocab.setdefault(s, len(vocab))
    for s in symbols:
        vocab.setdefault(s + "</w>", len(vocab))
    merges = []
    for w in words:  # merges building each word left to right into one token
        cur = w[0]
        for j, ch in enumerate(w[1:], 1):
            nxt = ch + ("</w>" if j == len(w) - 1 else "")
            merges.append(f"{cur} {nxt}")
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
        if len(w) == 1:
            vocab.setdefault(w + "</w>", len(vocab))
    seen, unique = set(), []
    for m in merges:
        if m not in seen:
            seen.add(m)
            unique.append(m)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(unique) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
        "do_lower_case": True,
    }), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}), encoding="utf-8")


def build_tiny_model(path: Path, seed: int = 0, inpaint: bool = False, sample_size: int = 32) -> Path:
    """Write a tiny SD1.5-architecture diffusers folder to ``path`` and return it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size // 4, in_channels=9 if inpaint else 4, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=sample_size * 2,
    )
    tok_dir = path.parent / (path.name + "-tok")
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, hidden_size=32,
        intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
        pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer), max_position_embeddings=77,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(path), safe_serialization=True)
    import shutil

    shutil.rmtree(tok_dir, ignore_errors=True)
    return path


def build_tiny_sdxl(path: Path, seed: int = 0, inpaint: bool = False, sample_size: int = 64) -> Path:
    """Write a tiny SDXL-architecture diffusers folder: two text encoders (the second with a projection),
    a UNet with SDXL's ``text_time`` added embedding (pooled text + size conditioning), SDXL's block
    layout (no attention at the first level, several transformer layers deeper), linear projections."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    # the encoders' widths must differ (as SDXL's 768 / 1280 do): diffusers' single-file loader tells its
    # two text encoders apart by width
    hidden_1, hidden_2, time_dim = 32, 48, 8
    unet = UNet2DConditionModel(
        sample_size=sample_size // 8, in_channels=9 if inpaint else 4, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
        cross_attention_dim=hidden_1 + hidden_2, norm_num_groups=32,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=hidden_2 + 6 * time_dim,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=sample_size, scaling_factor=0.13025, force_upcast=True,
    )
    tok_dir = path.parent / (path.name + "-tok")
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(tok_dir))

    def text_config(hidden, **extra):
        return CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, hidden_size=hidden,
            intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
            pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer), max_position_embeddings=77,
            hidden_act="gelu", **extra)

    text_encoder = CLIPTextModel(text_config(hidden_1))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(hidden_2, projection_dim=hidden_2))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.save_pretrained(str(path), safe_serialization=True)
    import shutil

    shutil.rmtree(tok_dir, ignore_errors=True)
    return path


def build_tiny_controlnet(path: Path, base: Path, seed: int = 0, controls: str = "", scale: float = 0.05) -> Path:
    """A random ControlNet for the tiny model in ``base`` (SD1.5 or SDXL shape), as a diffusers folder.

    ``ControlNetModel.from_unet`` copies the base UNet's encoder; its zero
    convolutions (and the condition embedding's last convolution) are then
    filled with small random values, so the random model visibly steers a
    picture (a zero-initialised one would change nothing).  ``controls`` is
    written to ``impasto.json`` (what the model controls).
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    path = Path(path)
    unet = UNet2DConditionModel.from_pretrained(str(Path(base) / "unet"))
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        zero = list(net.controlnet_down_blocks) + [net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
        for conv in zero:
            conv.weight.normal_(0.0, scale)
            conv.bias.normal_(0.0, scale)
    net.save_pretrained(str(path), safe_serialization=True)
    if controls:
        (path / "impasto.json").write_text(json.dumps({"control": controls}), encoding="utf-8")
    return path


def build_tiny_t2i_adapter(path: Path, base: Path, seed: int = 0, controls: str = "") -> Path:
    """A random T2I-Adapter whose features fit the model in ``base``, as a diffusers folder: ``full_adapter``
    for a UNet that starts with a cross-attention block (SD1.5), ``full_adapter_xl`` for one that starts
    without (SDXL, the scenes starter) - where diffusers adds the features (``control._check_fit``)."""
    from diffusers import T2IAdapter

    path = Path(path)
    cfg = json.loads((Path(base) / "unet" / "config.json").read_text(encoding="utf-8"))
    xl = not str(cfg["down_block_types"][0]).startswith("CrossAttn")
    torch.manual_seed(seed)
    adapter = T2IAdapter(in_channels=3, channels=list(cfg["block_out_channels"]), num_res_blocks=1,
                         downscale_factor=16 if xl else 8, adapter_type="full_adapter_xl" if xl else "full_adapter")
    adapter.save_pretrained(str(path), safe_serialization=True)
    if controls:   # the family too: an SDXL-layout adapter for an SD1.5-family model (the starter) says so
        family = "sdxl" if cfg.get("addition_embed_type") == "text_time" else "sd15"
        (path / "impasto.json").write_text(json.dumps({"control": controls, "family": family}), encoding="utf-8")
    return path


def build_tiny_depth_estimator(path: Path, seed: int = 0) -> Path:
    """A random transformers DPT depth estimator (a few hundred KB), as a models folder's ``annotators/depth``."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    path = Path(path)
    torch.manual_seed(seed)
    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37, image_size=64,
                    patch_size=16, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                    backbone_out_indices=[0, 1, 2, 3], head_in_index=-1)
    DPTForDepthEstimation(cfg).save_pretrained(str(path))
    DPTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(str(path))
    return path


def build_tiny_pose_estimator(path: Path, seed: int = 0) -> Path:
    """A random transformers ViTPose (17 COCO keypoints, ~100 KB), as a models folder's ``annotators/pose``."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessorPil

    path = Path(path)
    torch.manual_seed(seed)
    backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                     image_size=[64, 48], patch_size=[8, 8], out_indices=[2])
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True, num_labels=17)
                             ).save_pretrained(str(path))
    VitPoseImageProcessorPil(size={"height": 64, "width": 48}).save_pretrained(str(path))
    return path


def build_tiny_person_detector(path: Path, seed: int = 0) -> Path:
    """A random transformers DETR whose labels are ``person`` and ``cat``, as ``annotators/person``."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    path = Path(path)
    torch.manual_seed(seed)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], out_features=["stage4"])
    cfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=16,
                     encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=5,
                     id2label={0: "person", 1: "cat"}, label2id={"person": 0, "cat": 1})
    DetrForObjectDetection(cfg).save_pretrained(str(path))
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(str(path))
    return path


def controlnet_to_ldm(state_dict) -> dict:
    """diffusers ``ControlNetModel`` keys -> the original ``control_model.*`` single-file layout.

    The encoder half is named as the UNet's (:func:`..engine.single_file.unet_to_ldm`); the zero
    convolutions are ``zero_convs.i.0`` / ``middle_block_out.0`` and the condition embedding is
    ``input_hint_block`` (convolutions at even indices, SiLUs between, the last at 14).
    """
    import re

    from impasto.backend.engine.single_file import UNET_PREFIX, unet_to_ldm

    encoder, out = {}, {}
    for key, value in state_dict.items():
        if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", key):
            out[f"zero_convs.{m.group(1)}.0.{m.group(2)}"] = value
        elif key.startswith("controlnet_mid_block."):
            out["middle_block_out.0." + key.split(".", 1)[1]] = value
        elif key.startswith("controlnet_cond_embedding.conv_in."):
            out["input_hint_block.0." + key.rsplit(".", 1)[1]] = value
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)", key):
            out[f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{m.group(2)}"] = value
        elif key.startswith("controlnet_cond_embedding.conv_out."):
            out["input_hint_block.14." + key.rsplit(".", 1)[1]] = value
        else:
            encoder[key] = value
    layers = 1 + max(int(re.match(r"down_blocks\.\d+\.resnets\.(\d+)", k).group(1))
                     for k in encoder if re.match(r"down_blocks\.\d+\.resnets\.", k))
    for key, value in unet_to_ldm(encoder, layers).items():
        out[key[len(UNET_PREFIX):]] = value
    return {"control_model." + k: v for k, v in out.items()}


def write_control_single_file(folder: Path, out: Path, layout: str = "ldm", sidecar: bool = True) -> Path:
    """A control model folder as one ``.safetensors`` (``ldm``: ``control_model.*`` keys; ``diffusers``:
    the folder's own keys), with its ``config.json`` in a ``NAME.config/`` sidecar (a tiny model is no
    stock architecture)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder, out = Path(folder), Path(out)
    state = load_file(str(next(folder.glob("*.safetensors"))))
    if layout == "ldm":
        state = controlnet_to_ldm(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    if sidecar:
        side = out.with_name(out.stem + ".config")
        side.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "config.json", side / "config.json")
        if (folder / "impasto.json").is_file():
            shutil.copy(folder / "impasto.json", side / "impasto.json")
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(build_tiny_model(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd")))
