"""Concepts on the SDXL family: LoRA on the UNet and both text encoders, kohya SDXL files both ways.

A tiny random SDXL-architecture model (two text encoders) trains a concept
through the engine and through a real daemon; the concept exports as a kohya
SDXL file (``lora_te1_`` / ``lora_te2_``, the original UNet names kohya's
sd-scripts write) and imports back bit for bit; the key mapping is checked
against every Linear / Conv of a full-size SDXL UNet (meta device).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from impasto.backend.concepts import lora_io
from impasto.backend.concepts.library import ConceptLibrary, new_meta
from impasto.backend.engine import Engine, EngineError
from impasto.backend.engine.device import DeviceChoice
from impasto.backend.engine.images import to_wire
from impasto.protocol.messages import Generate, Result, Train

torch.set_num_threads(1)
CPU = DeviceChoice(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def xl_home(tmp_path_factory):
    from impasto.backend.tooling.tiny_model import build_tiny_model, build_tiny_sdxl

    root = tmp_path_factory.mktemp("xl_concepts")
    build_tiny_sdxl(root / "models" / "xl")
    build_tiny_model(root / "models" / "sd")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMPASTO_HOME", str(root / "home"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def xl_engine(xl_home):
    return Engine(models_dir=xl_home / "models", device=CPU)


def pictures(n=4, side=64):
    out = []
    for i in range(n):
        im = Image.new("RGB", (side, side), (0, 0, 255))
        ImageDraw.Draw(im).polygon([(side // 2, 2 + i), (side - 3, side - 3), (2, side - 3)], fill=(255, 255, 0))
        out.append(to_wire(im))
    return out


def train_req(name, **kw):
    fields = dict(job="t-" + name, name=name, images=pictures(), trigger="zwx", class_noun="shape", steps=3,
                  resolution=64, class_images=2, sample_every=0, checkpoint_every=0, model="xl", preview=False,
                  train_text_encoder=True, learning_rate=1e-3, rank=4)
    fields.update(kw)
    return Train(**fields)


def gen(engine, concepts=(), seed=3, model="xl"):
    return engine.run(Generate(job="g", prompt="a zwx shape", seed=seed, steps=3, width=64, height=64,
                               sampler="ddim", model=model, concepts=list(concepts)))


@pytest.fixture(scope="module")
def trained(xl_engine):
    res = xl_engine.run(train_req("xlc"))
    return res


def test_training_puts_lora_on_the_unet_and_both_text_encoders(xl_engine, trained):
    assert trained.steps_run == 3 and trained.info["concept"]["base_arch"] == "sdxl"
    lib = ConceptLibrary()
    tensors = lib.load_weights(lib.get("xlc"))
    assert {k.split(".")[0] for k in tensors} == {"unet", "text_encoder", "text_encoder_2"}
    plain = gen(xl_engine).images[0].data
    with_concept = gen(xl_engine, [("xlc", 1.0)]).images[0].data
    assert with_concept != plain
    assert gen(xl_engine, [("xlc", 0.0)]).images[0].data == plain   # weight 0: the bare base model, bit for bit
    assert gen(xl_engine).images[0].data == plain                    # and off again afterwards


def test_kohya_sdxl_export_then_import_is_lossless_and_paints_the_same(xl_engine, trained, tmp_path):
    lib = ConceptLibrary()
    info = lib.get("xlc")
    tensors = lib.load_weights(info)
    out = tmp_path / "xlc.safetensors"
    lora_io.write_kohya_file(out, "xlc", tensors, info.meta)
    raw, header = lora_io.read_safetensors(out)
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] for k in raw}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    unet_stems = {k.split(".")[0] for k in raw if k.startswith("lora_unet_")}
    assert unet_stems and all(s.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_",
                                             "lora_unet_output_blocks_")) for s in unet_stems)
    assert header["ss_base_model_version"] == "sdxl_base_v1-0"
    assert header["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    back, hints = lora_io.read_lora_file(out)
    assert hints["base_arch"] == "sdxl" and hints["text_encoder"] and hints["layout"] == "kohya"
    assert set(back) == set(tensors)
    for key in tensors:
        assert torch.equal(back[key], tensors[key]), key
    meta = new_meta(trigger=hints["trigger"], class_noun=hints["class_noun"], method=hints["method"],
                    rank=hints["rank"], steps=hints["steps"], base_model=hints["base_model"],
                    base_fingerprint=hints["base_fingerprint"], base_arch=hints["base_arch"],
                    text_encoder=hints["text_encoder"], trigger_embedding=hints["trigger_embedding"],
                    source="imported")
    lib.save("xlc-imported", back, meta)
    assert gen(xl_engine, [("xlc-imported", 0.8)]).images[0].data == gen(xl_engine, [("xlc", 0.8)]).images[0].data


def test_a_kohya_file_written_without_our_metadata_is_recognised_as_sdxl(tmp_path):
    """A third-party SDXL LoRA: kohya keys only, no impasto_* fields."""
    from safetensors.torch import save_file

    mod = "input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    te = "text_model_encoder_layers_0_self_attn_q_proj"
    sd = {f"lora_unet_{mod}.lora_down.weight": torch.ones(2, 2048), f"lora_unet_{mod}.lora_up.weight": torch.ones(640, 2),
          f"lora_unet_{mod}.alpha": torch.tensor(1.0),
          f"lora_te1_{te}.lora_down.weight": torch.ones(2, 768), f"lora_te1_{te}.lora_up.weight": torch.ones(768, 2),
          f"lora_te2_{te}.lora_down.weight": torch.ones(2, 1280), f"lora_te2_{te}.lora_up.weight": torch.ones(1280, 2)}
    path = tmp_path / "third.safetensors"
    save_file(sd, str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    lib, hints = lora_io.read_lora_file(path)
    assert hints["base_arch"] == "sdxl"
    assert set(lib) == {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight",
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight",
        "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
        "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"}
    # alpha 1 at rank 2 folds into B as a 0.5 scale
    assert torch.equal(lib["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight"],
                       torch.full((640, 2), 0.5))


def test_sdxl_unet_names_map_both_ways_over_a_full_size_unet():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from impasto.backend.engine import single_file as sf

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(sf.SDXL_CONFIG_DIR / "base" / "unet"))
    ldm = set(sf.unet_to_ldm(unet.state_dict(), 2))   # the checkpoint's own names, written like diffusers reads them
    checked = 0
    for name, mod in unet.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            stem = lora_io.module_to_kohya("unet", name, sdxl=True)
            sgm = lora_io.unet_module_to_sgm(name)
            assert sf.UNET_PREFIX + sgm + ".weight" in ldm, name
            assert lora_io.sgm_to_unet_module(lora_io.kohya_to_module(stem[len("lora_unet_"):])) == name
            checked += 1
    assert checked > 700


def test_an_sd15_concept_on_an_sdxl_model_is_a_typed_error(xl_engine):
    sd_loaded = xl_engine.model("sd")
    from impasto.backend.concepts import adapters

    tensors = {}
    for comp in ("unet",):
        model = getattr(sd_loaded.base, comp)
        for name, mod in model.named_modules():
            if name.endswith("attn2.to_k"):
                tensors[f"unet.{name}.lora_A.weight"] = torch.zeros(2, mod.in_features)
                tensors[f"unet.{name}.lora_B.weight"] = torch.zeros(mod.out_features, 2)
    assert tensors
    ConceptLibrary().save("sd-only", tensors, new_meta(trigger="zwx", base_arch="sd15", base_model="sd", rank=2))
    with pytest.raises(EngineError) as err:
        gen(xl_engine, [("sd-only", 1.0)])
    assert err.value.field == "concepts[0]" and "another architecture" in err.value.message
    assert adapters.state_for(xl_engine.model("xl")).resident.get("sd-only") is None


def test_sdxl_training_through_the_daemon(xl_home, tmp_path):
    from conftest import DaemonProcess
    from impasto.protocol import Client
    from impasto.protocol.messages import Progress

    daemon = DaemonProcess(xl_home / "models", tmp_path / "home", extra_args=["--no-preload"]).start()
    try:
        with Client(daemon.endpoint) as client:
            events = list(client.submit(train_req("viadaemon", job="")).events(timeout=300))
            result = events[-1]
            assert isinstance(result, Result), events[-1]
            assert result.info["concept"]["base_arch"] == "sdxl" and result.info["concept"]["text_encoder"]
            assert any(isinstance(e, Progress) and e.stage == "train" for e in events)
            res = client.submit(Generate(prompt="a zwx shape", seed=3, steps=3, width=64, height=64, sampler="ddim",
                                         model="xl", concepts=[("viadaemon", 1.0)])).wait(120)
            assert res.info["family"] == "sdxl" and len(np.frombuffer(res.images[0].data, np.uint8)) == 64 * 64 * 4
        # export as a kohya SDXL file and import it back through the CLI
        lora = tmp_path / "viadaemon.safetensors"
        cli = [sys.executable, "-m", "impasto.backend.cli", "concept"]
        out = subprocess.run(cli + ["export", "viadaemon", "-o", str(lora), "--no-spawn"], env=daemon.env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        raw, header = lora_io.read_safetensors(lora)
        assert {k.split("_")[1] for k in raw} == {"unet", "te1", "te2"}
        assert header["ss_base_model_version"] == "sdxl_base_v1-0"
        out = subprocess.run(cli + ["import", str(lora), "--name", "viadaemon-back", "--no-spawn"], env=daemon.env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        with Client(daemon.endpoint) as client:
            pics = [client.submit(Generate(prompt="a zwx shape", seed=3, steps=3, width=64, height=64,
                                           sampler="ddim", model="xl", concepts=[(name, 1.0)])).wait(120)
                    for name in ("viadaemon", "viadaemon-back")]
        assert pics[0].images[0].data == pics[1].images[0].data
    finally:
        daemon.stop()
