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


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(build_tiny_model(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd")))
