"""Single-file (LDM layout) checkpoints: they load offline and paint exactly like the diffusers folder.

The tiny model is written as an LDM-layout ``.safetensors`` by our own writer
(diffusers has none), loaded back through the engine's single-file path
(diffusers' own LDM converters + configs we ship or a ``NAME.config/``
sidecar), and must give bit-identical weights and pictures.  The shipped
full-size SD1.5 configs are checked on the meta device (no 4 GB allocation)
against the parameter counts of the real networks and against diffusers'
forward key conversion; the shipped CLIP tokenizer against known token ids
and a reference implementation of CLIP's BPE.

Over 500 lines on purpose: the single-file writer fixtures (LDM layout) are
shared by every test here; splitting would duplicate them.
"""
from __future__ import annotations

import json
import shutil
import socket
import struct
import types
from pathlib import Path

import pytest
import torch

from impasto.backend.engine import single_file as sf
from impasto.backend.engine.device import DeviceChoice
from impasto.backend.engine.engine import Engine
from impasto.backend.engine.errors import EngineError
from impasto.backend.engine.models import ModelRegistry, inspect_single_file
from impasto.backend.engine.pipelines import LoadedModel
from impasto.protocol.messages import Generate

torch.set_num_threads(1)

CPU = DeviceChoice(torch.device("cpu"), torch.float32)
TOKENIZER_DIR = sf.SD15_CONFIG_DIR / "tokenizer"


# --------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def sf_models(tiny_model, tmp_path_factory) -> Path:
    """A models folder: the tiny diffusers model ``tiny`` and its single-file twin ``tinysf``."""
    root = tmp_path_factory.mktemp("sf_models")
    shutil.copytree(tiny_model, root / "tiny")
    sf.write_single_file(root / "tiny", root / "tinysf.safetensors")
    return root


def gen(model: str, seed: int = 7, **kw) -> Generate:
    fields = dict(prompt="a red circle on a blue background", seed=seed, steps=3, width=64, height=64,
                  sampler="euler", job=f"j-{model}-{seed}", model=model)
    fields.update(kw)
    return Generate(**fields)


def pixels(engine: Engine, req: Generate) -> bytes:
    result = engine.run(req)
    assert result.info["model"] == req.model
    return result.images[0].data


def block_network(monkeypatch) -> None:
    """Any outgoing connection (a hub download) raises; so does a DNS lookup."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline load")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def write_header_only(path: Path, shapes: dict, dtype: str = "F16") -> Path:
    """A safetensors file whose tensor data is a sparse hole: full size on paper, no disk used, never read."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key, shape in shapes.items():
        n = 2
        for d in shape:
            n *= int(d)
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        fh.truncate(8 + len(blob) + offset)
    return path


def full_size_sd15(variant: str):
    """SD1.5's UNet, VAE and CLIP text encoder from the shipped configs, on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = sf.SD15_CONFIG_DIR / variant
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder", local_files_only=True))
    return unet, vae, text


# --------------------------------------------------------------------------- (1) tiny model, single file == folder


def test_single_file_paints_bit_identical_to_the_diffusers_folder(sf_models):
    engine = Engine(models_dir=sf_models, device=CPU)
    entries = {e.name: e for e in engine.models()}
    assert entries["tinysf"].format == "single_file" and entries["tinysf"].arch == "sd15"
    assert entries["tinysf"].supported, entries["tinysf"].notes
    assert entries["tinysf"].native_size == entries["tiny"].native_size  # read from the sidecar's unet config
    assert "tinysf.config" not in entries  # the sidecar is not a model of its own

    folder = pixels(engine, gen("tiny"))
    single = pixels(engine, gen("tinysf"))
    assert engine.loaded.entry.format == "single_file"
    assert engine.loaded.scheduler_config["_class_name"] == "DDIMScheduler"  # the sidecar's, not PNDM
    assert single == folder
    assert len(set(single)) > 50  # a real picture of noise, not a constant
    assert pixels(engine, gen("tinysf", seed=8)) != single  # and it depends on the seed


def test_single_file_weights_equal_the_folder_weights(sf_models):
    registry = ModelRegistry(sf_models)
    a = LoadedModel._load_base(registry.resolve("tiny"), CPU)
    b = LoadedModel._load_base(registry.resolve("tinysf"), CPU)
    for name in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert set(sa) == set(sb), name
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key}"
    assert b.tokenizer("a red circle").input_ids == a.tokenizer("a red circle").input_ids
    assert b.vae.config.scaling_factor == a.vae.config.scaling_factor


def test_written_file_has_the_real_ldm_layout(sf_models):
    from safetensors import safe_open

    with safe_open(str(sf_models / "tinysf.safetensors"), "pt") as fh:
        keys = set(fh.keys())
        position_ids = fh.get_tensor("cond_stage_model.transformer.text_model.embeddings.position_ids")
    assert {k.split(".")[0] for k in keys} == {"model", "first_stage_model", "cond_stage_model", "betas",
                                              "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                              "sqrt_one_minus_alphas_cumprod"}
    for key in ("model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.input_blocks.2.0.op.weight",
                "model.diffusion_model.middle_block.1.proj_in.weight", "model.diffusion_model.out.2.weight",
                "model.diffusion_model.output_blocks.1.1.conv.weight",
                "first_stage_model.decoder.up.0.block.0.norm1.weight", "first_stage_model.encoder.mid.attn_1.q.weight",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        assert key in keys, key
    assert position_ids.tolist() == [list(range(77))]
    assert not any(k.startswith(("unet.", "vae.", "text_encoder.")) for k in keys)


def test_inpainting_single_file_matches_its_folder(tmp_path):
    from impasto.backend.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "tinyinp", inpaint=True, seed=1)
    sf.write_single_file(tmp_path / "tinyinp", tmp_path / "tinyinpsf.safetensors")
    assert inspect_single_file(tmp_path / "tinyinpsf.safetensors").arch == "sd15-inpaint"
    engine = Engine(models_dir=tmp_path, device=CPU)
    folder = pixels(engine, gen("tinyinp"))
    single = pixels(engine, gen("tinyinpsf"))
    assert type(engine.loaded.base).__name__ == "StableDiffusionInpaintPipeline"
    assert single == folder


# --------------------------------------------------------------------------- (2) offline


def test_network_guard_really_blocks(monkeypatch):
    block_network(monkeypatch)
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))
    s = socket.socket()
    try:
        with pytest.raises(OSError, match="network access attempted"):
            s.connect(("127.0.0.1", 9))
    finally:
        s.close()


def test_single_file_with_shipped_tokenizer_and_scheduler_loads_offline(tiny_model, tmp_path, monkeypatch):
    """A sidecar holding only unet/vae/text_encoder: tokenizer and scheduler come from the shipped SD1.5 configs."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    torch.manual_seed(3)
    pipe.text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1))
    pipe.tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    pipe.save_pretrained(tmp_path / "clipped", safe_serialization=True)
    sf.write_single_file(tmp_path / "clipped", tmp_path / "clippedsf.safetensors")
    for name in ("tokenizer", "scheduler"):
        shutil.rmtree(tmp_path / "clippedsf.config" / name)

    block_network(monkeypatch)
    engine = Engine(models_dir=tmp_path, device=CPU)
    single = pixels(engine, gen("clippedsf", prompt="an astronaut riding a horse on mars"))
    assert engine.loaded.scheduler_config["_class_name"] == "PNDMScheduler"  # shipped SD1.5 config
    assert engine.loaded.base.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    folder = pixels(engine, gen("clipped", prompt="an astronaut riding a horse on mars"))
    assert single == folder  # the shipped scheduler config samples like the model's own (scaled_linear, offset 1)


def test_tiny_single_file_loads_and_paints_offline(sf_models, monkeypatch):
    block_network(monkeypatch)
    engine = Engine(models_dir=sf_models, device=CPU)
    assert len(set(pixels(engine, gen("tinysf", seed=11)))) > 50


def test_checkpoint_without_its_sidecar_fails_with_a_typed_error(sf_models, tmp_path, monkeypatch):
    """The tiny weights do not fit SD1.5's shapes: a clear error, and the engine keeps working."""
    shutil.copy2(sf_models / "tinysf.safetensors", tmp_path / "orphan.safetensors")
    shutil.copytree(sf_models / "tiny", tmp_path / "tiny")
    block_network(monkeypatch)
    engine = Engine(models_dir=tmp_path, device=CPU)
    with pytest.raises(EngineError) as err:
        engine.run(gen("orphan"))
    assert err.value.field == "model" and err.value.code == "unknown_model"
    assert "orphan" in err.value.message and "orphan.config/" in err.value.message
    assert len(pixels(engine, gen("tiny"))) == 64 * 64 * 4


def test_broken_sidecar_fails_with_a_typed_error(sf_models, tmp_path):
    shutil.copy2(sf_models / "tinysf.safetensors", tmp_path / "odd.safetensors")
    shutil.copytree(sf_models / "tinysf.config", tmp_path / "odd.config")
    shutil.copytree(sf_models / "tiny", tmp_path / "tiny")
    (tmp_path / "odd.config" / "scheduler" / "scheduler_config.json").write_text('{"_class_name": "NoSuchScheduler"}')
    engine = Engine(models_dir=tmp_path, device=CPU)
    with pytest.raises(EngineError) as err:
        engine.run(gen("odd"))
    assert err.value.code == "unknown_model" and "NoSuchScheduler" in err.value.message
    (tmp_path / "odd.config" / "scheduler" / "scheduler_config.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable config"):
        engine.run(gen("odd"))
    assert len(pixels(engine, gen("tiny"))) == 64 * 64 * 4


def test_config_folder_overlays_sidecar_components(sf_models):
    checkpoint = sf_models / "tinysf.safetensors"
    with sf.config_folder("sd15", checkpoint) as cfg:
        index = json.loads((cfg / "model_index.json").read_text())
        assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
        assert json.loads((cfg / "unet" / "config.json").read_text())["block_out_channels"] == [32, 64]
        sidecar_tok = sf_models / "tinysf.config" / "tokenizer"
        assert sorted(p.name for p in (cfg / "tokenizer").iterdir()) == sorted(p.name for p in sidecar_tok.iterdir())
        assert (cfg / "tokenizer" / "tokenizer.json").read_bytes() == (sidecar_tok / "tokenizer.json").read_bytes()
    assert not cfg.exists()  # temporary
    bare = sf_models / "nosidecar.safetensors"
    with sf.config_folder("sd15-inpaint", bare) as cfg:
        index = json.loads((cfg / "model_index.json").read_text())
        assert index["_class_name"] == "StableDiffusionInpaintPipeline"
        assert json.loads((cfg / "unet" / "config.json").read_text())["in_channels"] == 9
        assert (cfg / "tokenizer" / "merges.txt").read_bytes() == (TOKENIZER_DIR / "merges.txt").read_bytes()


# --------------------------------------------------------------------------- (3) the shipped SD1.5 configs


@pytest.mark.parametrize("variant,unet_params", [("base", 859_520_964), ("inpaint", 859_535_364)])
def test_shipped_configs_build_the_real_sd15_networks(variant, unet_params):
    """Parameter counts of runwayml SD1.5's UNet / VAE / CLIP ViT-L/14 text model, built on meta (no memory)."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )

    unet, vae, text = full_size_sd15(variant)
    assert next(unet.parameters()).device.type == "meta"
    assert sum(p.numel() for p in unet.parameters()) == unet_params
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in text.parameters()) == 123_060_480
    assert vae.config.scaling_factor == 0.18215 and unet.config.sample_size * 8 == vae.config.sample_size == 512

    # Our LDM writer is the exact inverse of diffusers' reader on the full architecture.
    ldm = sf.pipeline_to_ldm(unet, vae, text)
    assert infer_diffusers_model_type(ldm) == ("inpainting" if variant == "inpaint" else "v1")
    for model, back in ((unet, convert_ldm_unet_checkpoint(ldm, dict(unet.config))),
                        (vae, convert_ldm_vae_checkpoint(ldm, dict(vae.config)))):
        state = model.state_dict()
        assert set(back) == set(state)
        assert all(tuple(back[k].shape) == tuple(state[k].shape) for k in state)
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()}
    clip.pop("embeddings.position_ids")
    assert set(clip) == set(text.state_dict())

    # The names real SD1.5 files use (e.g. v1-5-pruned-emaonly.safetensors).
    for key, shape in {"model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
                       "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
                       "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
                       "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
                       "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072)}.items():
        assert tuple(ldm[key].shape) == shape, key


def test_shipped_configs_load_offline_as_diffusers_folders(monkeypatch):
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTextConfig

    block_network(monkeypatch)
    for arch, cls in (("sd15", StableDiffusionPipeline), ("sd15-inpaint", StableDiffusionInpaintPipeline)):
        with sf.config_folder(arch, Path("/nonexistent/model.safetensors")) as cfg:
            index = cls.load_config(cfg)
            assert index["_class_name"] == cls.__name__
            sched = PNDMScheduler.from_pretrained(cfg, subfolder="scheduler", local_files_only=True)
            assert (sched.config.beta_start, sched.config.beta_end, sched.config.beta_schedule,
                    sched.config.steps_offset) == (0.00085, 0.012, "scaled_linear", 1)
            text = CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder", local_files_only=True)
            assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.intermediate_size,
                    text.vocab_size, text.max_position_embeddings, text.hidden_act) == (
                        768, 12, 12, 3072, 49408, 77, "quick_gelu")


KNOWN_CLIP_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "hello world": [49406, 3306, 1002, 49407],
    "an astronaut riding a horse on mars": [49406, 550, 18376, 6765, 320, 4558, 525, 7496, 49407],
}


def _reference_tokenizer():
    import regex

    # The generator script is data-side (not a package module): run its source without caching bytecode there.
    source = sf.SD15_CONFIG_DIR / "make_tokenizer.py"
    maker = types.ModuleType("make_tokenizer")
    maker.__file__ = str(source)
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), maker.__dict__)
    merges = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(m.split()) for m in merges if m]
    ranks = {m: i for i, m in enumerate(merges)}
    encoder = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    byte_encoder = maker.bytes_to_unicode()
    pat = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
                        regex.IGNORECASE)

    def bpe(token: str) -> list:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            first, second = merges[rank]
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(text: str) -> list:
        text = " ".join(text.split()).lower()
        ids = [encoder["<|startoftext|>"]]
        for token in regex.findall(pat, text):
            token = "".join(byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(encoder[t] for t in bpe(token))
        return ids + [encoder["<|endoftext|>"]]

    return maker, encode


def test_shipped_tokenizer_is_clips():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True)
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49406, 49407, 49407)
    for text, ids in KNOWN_CLIP_IDS.items():
        assert tok(text).input_ids == ids, text
    padded = tok("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77 and padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {49407}

    maker, reference = _reference_tokenizer()
    for text in ["A Photo of a CAT!!", "(masterpiece:1.2), best quality, 4k, trending on artstation",
                 "don't stop   the music", "café crème brûlée", "日本の猫", "emoji 🎨 palette", "x1234y",
                 "impressionist oil painting of a lighthouse, thick impasto brush strokes"]:
        assert tok(text).input_ids == reference(text), text
    for text, ids in KNOWN_CLIP_IDS.items():
        assert reference(text) == ids


def test_shipped_vocab_is_derived_from_the_shipped_merges():
    """vocab.json = byte symbols, the same with </w>, joined merges, specials (make_tokenizer.py's rule)."""
    maker, _ = _reference_tokenizer()
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2" and lines[-1] == ""
    merges = lines[1:-1]
    assert len(merges) == 48894
    symbols = list(maker.bytes_to_unicode().values())
    expected = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]
    expected += ["<|startoftext|>", "<|endoftext|>"]
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == {tok: i for i, tok in enumerate(expected)}


def test_shipped_config_folder_is_small_and_complete():
    files = sorted(p.relative_to(sf.SD15_CONFIG_DIR).as_posix() for p in sf.SD15_CONFIG_DIR.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    for variant in ("base", "inpaint"):
        for name in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                     "scheduler/scheduler_config.json"):
            assert f"{variant}/{name}" in files
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert f"tokenizer/{name}" in files
    size = sum((sf.SD15_CONFIG_DIR / f).stat().st_size for f in files)
    assert size < 2_000_000, size


# --------------------------------------------------------------------------- (4) what a file is, from its header


def ldm_shapes(variant: str) -> dict:
    unet, vae, text = full_size_sd15(variant)
    return {k: tuple(v.shape) for k, v in sf.pipeline_to_ldm(unet, vae, text).items()}


def test_inspect_tells_checkpoints_apart_from_headers_alone(tmp_path):
    sd15 = ldm_shapes("base")
    inpaint = ldm_shapes("inpaint")
    sdxl = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
            "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
            "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,),
            "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3)}
    sd2 = dict(sd15)
    sd2["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (320, 1024)
    kohya = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320, 1, 1),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (320, 4, 1, 1),
             "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": ()}
    peft = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora_A.weight": (4, 320),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora_B.weight": (320, 4)}
    unet_only = {k: v for k, v in sd15.items() if k.startswith("model.diffusion_model.")}
    cases = {
        "sd15": (sd15, "sd15", True, ""),
        "inpaint": (inpaint, "sd15-inpaint", True, ""),
        "sdxl": (sdxl, "sdxl", True, ""),
        "sdxlrefiner": ({k.replace("embedders.1.", "embedders.0."): v for k, v in sdxl.items()
                         if not k.startswith("conditioner.embedders.0.")}, "sdxl", False, "refiner"),
        "sd2": (sd2, "sd2", False, "SD2"),
        "kohya": (kohya, "unknown", False, "LoRA"),
        "peft": (peft, "unknown", False, "LoRA"),
        "loha": ({"lora_unet_mid_block_attentions_0_proj_in.hada_w1_a": (4, 1280)}, "unknown", False, "LyCORIS"),
        "embedding": ({"emb_params": (4, 768)}, "unknown", False, "embedding"),
        "vae": ({k[len("first_stage_model."):]: v for k, v in sd15.items() if k.startswith("first_stage_model.")},
                "unknown", False, "VAE"),
        "unetonly": (unet_only, "sd15", False, "text encoder or VAE"),
        "other": ({"fc.weight": (10, 10)}, "unknown", False, "not a Stable Diffusion"),
    }
    for name, (shapes, arch, supported, note) in cases.items():
        entry = inspect_single_file(write_header_only(tmp_path / f"{name}.safetensors", shapes))
        assert (entry.arch, entry.supported) == (arch, supported), (name, entry)
        assert entry.format == "single_file" and entry.name == name
        if note:
            assert note in " ".join(entry.notes), (name, entry.notes)
    # A real fp16 SD1.5 file's size; the header is all that is read.
    assert 2_100_000_000 < (tmp_path / "sd15.safetensors").stat().st_size < 2_200_000_000
    cut = tmp_path / "cut.safetensors"
    with open(tmp_path / "sd15.safetensors", "rb") as src, open(cut, "wb") as dst:
        (length,) = struct.unpack("<Q", src.read(8))
        dst.write(struct.pack("<Q", length) + src.read(length))
        dst.truncate(1_000_000_000)  # an interrupted download
    incomplete = inspect_single_file(cut)
    assert not incomplete.supported and "incomplete" in incomplete.notes[0]
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 12)
    broken = inspect_single_file(tmp_path / "broken.safetensors")
    assert not broken.supported and "unreadable" in broken.notes[0]


def test_registry_lists_single_files_with_what_they_are(tmp_path):
    write_header_only(tmp_path / "dreamy.safetensors", ldm_shapes("base"))
    write_header_only(tmp_path / "mystyle.safetensors",
                      {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)})
    entries = {e.name: e for e in ModelRegistry(tmp_path).scan()}
    assert entries["dreamy"].supported and entries["dreamy"].arch == "sd15" and entries["dreamy"].native_size == 512
    assert not entries["mystyle"].supported
    with pytest.raises(EngineError) as err:
        ModelRegistry(tmp_path).resolve("mystyle")
    assert "LoRA" in str(err.value)


# --------------------------------------------------------------------------- the writer refuses what it cannot map


def test_writer_refuses_weights_the_sd_layout_has_no_place_for():
    with pytest.raises(ValueError, match="encoder_hid_proj"):
        sf.unet_to_ldm({"encoder_hid_proj.weight": torch.zeros(1)}, layers_per_block=2)
    # SDXL's added embedding has its LDM place (label_emb), as diffusers reads it back
    assert list(sf.unet_to_ldm({"add_embedding.linear_2.bias": torch.zeros(1)}, layers_per_block=2)) == [
        "model.diffusion_model.label_emb.0.2.bias"]
    with pytest.raises(ValueError, match="more layers"):
        sf.unet_to_ldm({"down_blocks.0.resnets.2.conv1.weight": torch.zeros(1)}, layers_per_block=2)
    with pytest.raises(ValueError, match="VAE"):
        sf.vae_to_ldm({"encoder.something.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="text encoder"):
        sf.text_encoder_to_ldm({"text_projection.weight": torch.zeros(1)})
