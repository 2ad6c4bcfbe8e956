"""The starter's architecture as data: the VAE, text encoder and UNet configs, the UNet presets, the scheduler.

Every config here is a plain dict that diffusers' and transformers' constructors take as they are,
so what the shipped starter is made of reads in one place (its exported ``config.json`` files are
these dicts). ``train.py`` builds from them; a new preset is one entry of ``UNET_PRESETS``.
"""

from __future__ import annotations

from impasto.backend.engine.native import vae_scale_factor

from .tokenizer import PAD_LEN


SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 32, 32),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,
)

#: the same VAE with one level less: 4x downsampling (32 x 32 latents at 128 px, four times the
#: cells). Why: the starter's misses are outlines drawn a little off (a triangle's bowed side, a
#: chevron's curved arms) at the scale of one 8 x 8 latent cell, and three runs that changed only
#: the UNet (more steps, more width, more weight on the low-noise steps) tied; a finer latent grid
#: is the lever none of them touched (docs/performance.md, starter section, 2026-12-06).
VAE_CONFIG_4X = dict(VAE_CONFIG, down_block_types=("DownEncoderBlock2D",) * 3,
                     up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32))
VAE_CONFIGS = {8: VAE_CONFIG, 4: VAE_CONFIG_4X}


#: pixels per latent cell along a side of a VAE config (the engine's one derivation, by the name train.py uses)
latent_factor = vae_scale_factor


TEXT_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=PAD_LEN,
    hidden_act="quick_gelu",
    projection_dim=32,
)

TEXT_CONFIG_SCENES = dict(TEXT_CONFIG, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          max_position_embeddings=40, projection_dim=64)

UNET_PRESETS = {
    "s": dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=4),
    "m": dict(block_out_channels=(64, 128), layers_per_block=1, attention_head_dim=8),
    "m2": dict(block_out_channels=(48, 96), layers_per_block=2, attention_head_dim=8),
    # the richer 128 px starter: three levels on 16x16 latents, no attention at 16x16
    # (like SD1.5's plain deepest level, here the widest: 0.40 vs 0.93 s/step, batch 32, 1 thread, loaded)
    "l3": dict(block_out_channels=(32, 64, 128), layers_per_block=1, attention_head_dim=8,
               attention=(False, True, True)),
    # l3 with its 16x16 level twice as wide: that level draws the outline's edges, and l3 draws
    # straight edges wavy (docs/performance.md, "Where the family is lost"); 5.5 M parameters,
    # 1.26x l3's training step (batch 32, 2 threads), about 1.15x its call at batch 1
    "l3w": dict(block_out_channels=(64, 96, 128), layers_per_block=1, attention_head_dim=8,
                attention=(False, True, True)),
    # l3w wider again at its two outer levels (16x16: 96, 8x8: 128 channels), the capacity lever left once
    # more steps of l3w's recipe stopped paying (docs/performance.md, "A UNet-only fine-tune ..."): 7.4 M
    # parameters, about 1.5x l3w's training step (batch 32, 2 threads: 618 vs 403 ms, same process)
    "l3x": dict(block_out_channels=(96, 128, 128), layers_per_block=1, attention_head_dim=8,
                attention=(False, True, True)),
    # for 32 x 32 latents (``VAE_CONFIG_4X``): l3w under one more, narrow level at 32 x 32 (no attention),
    # so the 16 x 16 level and everything below are l3w's: 5.40 M parameters; 0.70 s a training step
    # (batch 32, 2 threads, 2026-12-06; l3w's was 0.40-0.42 s on 2026-12-05, another day of this machine)
    "l4w": dict(block_out_channels=(32, 64, 96, 128), layers_per_block=1, attention_head_dim=8,
                attention=(False, False, True, True)),
}


def unet_config(preset: str, latent_size: int, cross_dim: int = TEXT_CONFIG["hidden_size"]) -> dict:
    p = UNET_PRESETS[preset]
    att = p.get("attention", (True,) * len(p["block_out_channels"]))
    return dict(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in att),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(att)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=p["block_out_channels"],
        layers_per_block=p["layers_per_block"],
        cross_attention_dim=cross_dim,
        attention_head_dim=p["attention_head_dim"],
        norm_num_groups=16,
    )
