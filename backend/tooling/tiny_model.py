"""A tiny Stable-Diffusion-architecture model built in code, for tests and benchmarks.

Random weights, a few MB, written with ``save_pretrained`` as a diffusers
folder: it loads through exactly the ``from_pretrained`` path a real SD1.5
folder takes, so tests exercise the real pipelines without any download.
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


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(build_tiny_model(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd")))
