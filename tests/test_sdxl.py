"""The SDXL family, everywhere SD1.5 works: a tiny random SDXL-architecture model built in code.

Two text encoders of different widths (as SDXL's 768 / 1280), the UNet's
``text_time`` added embedding (pooled text + size conditioning), SDXL's block
layout; a 9-channel inpainting twin; both also written as LDM single files by
our own writer and loaded back with networking blocked.  Everything runs on
the CPU in seconds: the same code paths a real SDXL checkpoint takes.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.backend.engine import Cancelled, Engine, EngineError, JobHooks
from impasto.backend.engine import single_file as sf
from impasto.backend.engine.device import DeviceChoice
from impasto.backend.engine.images import mask_to_wire, to_wire
from impasto.backend.engine.models import ModelRegistry
from impasto.backend.engine.pipelines import LoadedModel
from impasto.backend.engine.samplers import SAMPLER_TABLE
from impasto.protocol.messages import ErrorCode, Generate

from test_single_file import block_network

torch.set_num_threads(1)
CPU = DeviceChoice(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def xl_models(tmp_path_factory):
    from impasto.backend.tooling.tiny_model import build_tiny_sdxl

    root = tmp_path_factory.mktemp("xl_models")
    build_tiny_sdxl(root / "xl")
    build_tiny_sdxl(root / "xlinpaint", inpaint=True, seed=1)
    sf.write_single_file(root / "xl", root / "xlsf.safetensors")
    sf.write_single_file(root / "xlinpaint", root / "xlinpaintsf.safetensors")
    return root


@pytest.fixture(scope="module")
def xl_engine(xl_models):
    return Engine(models_dir=xl_models, device=CPU)


def gen(model="xl", seed=7, **kw) -> Generate:
    fields = dict(prompt="a red circle on a blue background", seed=seed, steps=3, width=64, height=64,
                  sampler="euler", job=f"j-{model}-{seed}", model=model)
    fields.update(kw)
    return Generate(**fields)


def rgba(img) -> np.ndarray:
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4)


def picture(w=96, h=72, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("RGBA")


def test_models_say_their_family(xl_models):
    entries = {e.name: e for e in ModelRegistry(xl_models).scan()}
    assert {n: (entries[n].arch, entries[n].family, entries[n].supported) for n in
            ("xl", "xlinpaint", "xlsf", "xlinpaintsf")} == {
        "xl": ("sdxl", "sdxl", True), "xlinpaint": ("sdxl-inpaint", "sdxl", True),
        "xlsf": ("sdxl", "sdxl", True), "xlinpaintsf": ("sdxl-inpaint", "sdxl", True)}
    assert entries["xl"].to_dict()["family"] == "sdxl" and entries["xl"].native_size == 64
    if "starter" in entries:
        assert entries["starter"].to_dict()["family"] == "sd15"


def test_single_file_sdxl_loads_offline_with_identical_weights_and_pictures(xl_models, monkeypatch):
    block_network(monkeypatch)
    registry = ModelRegistry(xl_models)
    for folder, single in (("xl", "xlsf"), ("xlinpaint", "xlinpaintsf")):
        a = LoadedModel._load_base(registry.resolve(folder), CPU)
        b = LoadedModel._load_base(registry.resolve(single), CPU)
        assert type(a) is type(b)
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
            assert set(sa) == set(sb), name
            for key in sa:
                assert torch.equal(sa[key], sb[key]), f"{single}: {name}.{key}"
    engine = Engine(models_dir=xl_models, device=CPU)
    folder_px = engine.run(gen("xl")).images[0].data
    single_px = engine.run(gen("xlsf")).images[0].data
    assert folder_px == single_px and len(set(single_px)) > 50


def test_shipped_sdxl_configs_are_sdxl_base_and_inpaint():
    """Full-size SDXL from the shipped configs on the meta device: the published parameter counts,
    and our writer's keys are what diffusers recognises as an SDXL base / inpaint checkpoint."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    for variant, kind in (("base", "xl_base"), ("inpaint", "xl_inpaint")):
        folder = sf.SDXL_CONFIG_DIR / variant
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            t1 = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder", local_files_only=True))
            t2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2",
                                                                            local_files_only=True))
        counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, t1, t2)]
        assert counts == [2_567_463_684 + (5 * 320 * 9 if variant == "inpaint" else 0), 83_653_863, 123_060_480,
                          694_659_840], variant
        ldm = sf.pipeline_to_ldm(unet, vae, t1, text_encoder_2=t2)
        assert infer_diffusers_model_type(ldm) == kind
    with sf.config_folder("sdxl", sf.SDXL_CONFIG_DIR / "none.safetensors") as cfg:
        from transformers import CLIPTokenizer

        t1 = CLIPTokenizer.from_pretrained(cfg / "tokenizer")
        t2 = CLIPTokenizer.from_pretrained(cfg / "tokenizer_2")
        assert t1("a photo of a cat").input_ids == t2("a photo of a cat").input_ids == [49406, 320, 1125, 539,
                                                                                         320, 2368, 49407]
        assert t1.pad_token == "<|endoftext|>" and t2.pad_token == "!"


def test_txt2img_at_native_size_and_in_aspect_buckets(xl_engine):
    near = xl_engine.run(gen(width=64, height=64))
    assert "native" not in near.info and near.info["diffusion_size"] == [64, 64] and near.info["family"] == "sdxl"
    assert xl_engine.run(gen(width=64, height=64)).images[0].data == near.images[0].data
    assert xl_engine.run(gen(width=64, height=64, seed=8)).images[0].data != near.images[0].data
    wide = xl_engine.run(gen(width=256, height=128))
    native = wide.info["native"]
    bw, bh = native["generated"]
    assert (wide.images[0].width, wide.images[0].height) == (256, 128)
    assert 0.7 * 64 * 64 <= bw * bh <= 1.4 * 64 * 64 and 1.5 < bw / bh < 2.2 and "downscaled" in native["how"]
    small = xl_engine.run(gen(width=24, height=32, steps=2))
    assert small.info["native"]["generated"][0] < small.info["native"]["generated"][1]
    assert "upscaled" in small.info["native"]["how"] and (small.images[0].width, small.images[0].height) == (24, 32)


def test_every_sampler_runs_on_sdxl_with_previews(xl_engine):
    outputs = set()
    for name, (cls, _) in SAMPLER_TABLE.items():
        previews = []
        hooks = JobHooks(want_preview=True, progress=lambda s, t, p=None, *a, **k: previews.append(p))
        res = xl_engine.run(gen(sampler=name, seed=3, job=f"s-{name}"), hooks)
        assert res.steps_run == 3 and isinstance(xl_engine.loaded.txt2img.scheduler, cls), name
        assert len(previews) == 3 and all(p is not None and p.size[0] > 0 for p in previews), name
        outputs.add(res.images[0].data)
    assert len(outputs) == len(SAMPLER_TABLE)


@pytest.mark.parametrize("model", ["xl", "xlinpaint"])
def test_img2img_and_edit_on_sdxl_outside_bit_identical(xl_engine, model):
    pic = picture()
    base = np.asarray(pic)
    res = xl_engine.run(gen(model, init_image=to_wire(pic), strength=0.6, steps=4))
    assert (res.images[0].width, res.images[0].height) == (96, 72) and res.steps_run > 0
    assert (rgba(res.images[0])[..., :3] != base[..., :3]).any()
    mask = np.zeros((72, 96), np.uint8)
    mask[20:50, 30:70] = 255
    res = xl_engine.run(gen(model, init_image=to_wire(pic), mask=mask_to_wire(Image.fromarray(mask)), strength=0.8,
                            steps=4, mask_blur=2))
    out = rgba(res.images[0])
    far = np.ones((72, 96), bool)
    far[16:54, 26:74] = False          # mask + blur + a margin
    assert (out[far] == base[far]).all(), "pixels outside the mask changed"
    assert (out[24:46, 34:66, :3] != base[24:46, 34:66, :3]).any() and res.info["inpaint_unet"] == (model != "xl")
    assert len(res.patches) == 1


def test_fp16_vae_is_upcast_only_where_it_overflows(xl_models):
    from diffusers import AutoencoderKL

    from impasto.backend.engine.gpu import FastPath, optimize

    half = DeviceChoice(torch.device("cpu"), torch.float16)
    for force, family_upcast, expect in ((True, True, torch.float32), (False, True, torch.float16),
                                         (True, False, torch.float16)):
        pipe = LoadedModel._load_base(ModelRegistry(xl_models).resolve("xl"), CPU)
        pipe.to(torch.float16)
        pipe.vae.register_to_config(force_upcast=force)
        optimize(pipe, half, FastPath(), upcast_vae=family_upcast)
        assert pipe.vae.dtype == expect and pipe.unet.dtype == torch.float16, (force, family_upcast)
    assert isinstance(pipe.vae, AutoencoderKL)


def test_out_of_memory_is_a_typed_error_naming_the_size_and_the_engine_lives_on(xl_engine, monkeypatch):
    from impasto.backend.engine import runners

    def exhausted(engine, loaded, req, hooks):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setitem(runners.JOB_RUNNERS, "txt2img", exhausted)
    with pytest.raises(EngineError) as err:
        xl_engine.run(gen(width=96, height=64))
    assert err.value.code == ErrorCode.OUT_OF_MEMORY and "96x64" in err.value.message
    monkeypatch.undo()
    assert xl_engine.run(gen()).steps_run == 3


def test_cancel_reports_the_steps_that_ran(xl_engine):
    state = {"cancel": False}

    def progress(step, total, *a, **k):
        if step == 2:
            state["cancel"] = True      # lands while step 3 is in flight; it runs, then the job stops

    hooks = JobHooks(cancelled=lambda: state["cancel"], progress=progress)
    with pytest.raises(Cancelled) as err:
        xl_engine.run(gen(steps=8), hooks)
    assert err.value.steps == 3


def test_sdxl_through_the_daemon_and_the_cli(xl_models, tmp_path):
    from conftest import DaemonProcess
    from impasto.protocol import Client
    from impasto.protocol.messages import Progress, Result

    daemon = DaemonProcess(xl_models, tmp_path / "home", extra_args=["--no-preload"]).start()
    try:
        with Client(daemon.endpoint) as client:
            events = list(client.submit(gen("xlsf", preview=True, job="")).events(timeout=120))
            assert isinstance(events[-1], Result) and events[-1].info["family"] == "sdxl"
            assert any(isinstance(e, Progress) and e.preview is not None for e in events)
        out = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "models", "--no-spawn"],
                             env=daemon.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = {line[2:].split()[0]: line[2:].split()[1:3] for line in out.stdout.splitlines()[1:] if line.strip()}
        assert rows["xlsf"] == ["sdxl", "sdxl"] and rows["xlinpaint"] == ["sdxl", "sdxl-inpaint"]
        png = tmp_path / "xl.png"
        out = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "generate", "a red circle", "--model", "xl",
                              "--size", "64x64", "--steps", "2", "--seed", "5", "-o", str(png), "--no-spawn", "-q"],
                             env=daemon.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert Image.open(png).size == (64, 64)
        # an edit through the CLI: outside the mask bit-identical
        src, mask_png, edited = tmp_path / "src.png", tmp_path / "mask.png", tmp_path / "edited.png"
        picture(96, 72, seed=9).save(src)
        mask = np.zeros((72, 96), np.uint8)
        mask[20:50, 30:70] = 255
        Image.fromarray(mask).save(mask_png)
        out = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "edit", str(src), str(mask_png),
                              "a cat", "--model", "xl", "--steps", "3", "--seed", "5", "--mask-blur", "2",
                              "-o", str(edited), "--no-spawn", "-q"],
                             env=daemon.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        before, after = np.asarray(Image.open(src).convert("RGBA")), np.asarray(Image.open(edited).convert("RGBA"))
        far = np.ones((72, 96), bool)
        far[16:54, 26:74] = False
        assert (after[far] == before[far]).all() and (after[24:46, 34:66] != before[24:46, 34:66]).any()
    finally:
        daemon.stop()


def test_large_pictures_tile_the_vae(xl_engine, monkeypatch):
    from impasto.backend.engine import gpu

    monkeypatch.setattr(gpu, "TILE_ABOVE_PIXELS", 64 * 64)    # "large" for the tiny model
    pic = picture(80, 64, seed=4)                              # near the native area: diffused as it is
    res = xl_engine.run(gen(init_image=to_wire(pic), strength=0.5, steps=4))
    assert res.info["diffusion_size"] == [80, 64] and res.info.get("vae_tiled") is True
    assert (res.images[0].width, res.images[0].height) == (80, 64) and xl_engine.loaded.img2img.vae.use_tiling
    small = xl_engine.run(gen(width=64, height=64))
    assert "vae_tiled" not in small.info and not xl_engine.loaded.txt2img.vae.use_tiling


def test_sdxl_inpainting_model_paints_from_scratch_too(xl_engine):
    res = xl_engine.run(gen("xlinpaint", width=64, height=64))
    assert res.steps_run == 3 and res.info["family"] == "sdxl" and len(set(res.images[0].data)) > 50
    assert xl_engine.run(gen("xlinpaint", width=64, height=64)).images[0].data == res.images[0].data


def test_sdxl_img2img_of_a_large_picture_runs_at_the_native_area(xl_engine):
    pic = picture(256, 128, seed=6)
    res = xl_engine.run(gen(init_image=to_wire(pic), strength=0.5, steps=4))
    native = res.info["native"]
    bw, bh = native["generated"]
    assert res.info["diffusion_size"] == [bw, bh] and bw * bh <= 1.4 * 64 * 64 and bw > bh
    assert native["asked"] == [256, 128] and "256x128" in native["how"]
    assert (res.images[0].width, res.images[0].height) == (256, 128)
