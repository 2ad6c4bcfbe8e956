"""Few-step models and LoRAs get their own sampler, steps and CFG without the artist knowing them.

The preset table (backend/engine/fewstep_presets.json) is matched on what the
loader sees; the model / concept listing carries the result as
``recommended``; the client core's "model default" turns unset knobs into it;
the engine runs the job with that sampler.  Tiny random models of the real
shapes stand in for the downloads: a tiny SDXL single file named like
SDXL-Lightning, a tiny SD folder named like SD-Turbo, one whose scheduler is
LCM's, and a tiny LCM-LoRA-shaped LoRA imported into a real daemon.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from impasto.protocol.settings import Recommendation, Settings


# --------------------------------------------------------------------------- the table (no torch)


@pytest.mark.parametrize("names,kind,expected", [
    (["sdxl_lightning_4step"], "model", ("euler_trailing", 4, 1.0, "SDXL-Lightning")),
    (["sdxl_lightning_8step_lora"], "lora", ("euler_trailing", 8, 1.0, "SDXL-Lightning")),
    (["SDXL-Lightning-2-step"], "lora", ("euler_trailing", 2, 1.0, "SDXL-Lightning")),
    (["Hyper-SD15-8steps-lora"], "lora", ("ddim_trailing", 8, 1.0, "Hyper-SD")),
    (["Hyper-SDXL-12steps-CFG-lora"], "lora", ("ddim_trailing", 12, 5.0, "Hyper-SD with CFG")),
    (["Hyper-SDXL-1step-lora"], "lora", ("tcd", 1, 1.0, "Hyper-SD 1 step (TCD)")),
    (["lcm-lora-sdv1-5"], "lora", ("lcm", 4, 1.0, "LCM-LoRA")),
    (["my style", "pytorch_lora_weights", "LCM_LoRA_SDXL"], "lora", ("lcm", 4, 1.0, "LCM-LoRA")),
    (["TCD-SDXL-LoRA"], "lora", ("tcd", 4, 1.0, "TCD")),
    (["sd_xl_turbo_1.0_fp16"], "model", ("euler_a_trailing", 1, 1.0, "SDXL-Turbo")),
    (["sd-turbo"], "model", ("euler_a_trailing", 1, 1.0, "SD-Turbo")),
    (["dreamshaperXL_turboDpmppSDE"], "model", ("euler_a", 6, 2.0, "Turbo fine-tune")),
])
def test_presets_recognise_few_step_names(names, kind, expected):
    from impasto.backend.engine import fewstep

    got = fewstep.match(names, kind)
    assert got is not None, names
    assert (got["sampler"], got["steps"], got["cfg_scale"], got["preset"]) == expected
    assert got["matched"].startswith("name ")


@pytest.mark.parametrize("names,kind", [
    (["v1-5-pruned-emaonly"], "model"), (["starter"], "model"), (["juggernautXL_v9"], "model"),
    (["my-cat"], "lora"), (["sd_xl_base_1.0"], "model"),
    (["sd_xl_turbo"], "lora"),                                 # a turbo checkpoint's name never makes a LoRA few-step
])
def test_ordinary_names_get_no_preset(names, kind):
    from impasto.backend.engine import fewstep

    assert fewstep.match(names, kind) is None


def test_a_nonsense_step_count_falls_back_to_the_familys_default():
    from impasto.backend.engine import fewstep

    assert fewstep.match(["lightning-0-step"], "lora")["steps"] == 4
    assert fewstep.match(["sdxl_lightning_4step"], "lora")["steps"] == 4
    assert fewstep.match(["sdxl_lightning_2step"], "lora")["steps"] == 2


def test_scheduler_class_and_title_metadata_are_read():
    from impasto.backend.engine import fewstep

    assert fewstep.match(["dreamy"], "model", "LCMScheduler")["sampler"] == "lcm"
    assert fewstep.match(["dreamy"], "model", "TCDScheduler")["sampler"] == "tcd"
    assert fewstep.match(["dreamy"], "model", "EulerDiscreteScheduler") is None
    meta = {"ss_output_name": "Hyper-SD15-4steps-lora", "ss_base_model_version": "sd_v1"}
    got = fewstep.for_lora(["renamed-by-artist", "download (3)"], meta)
    assert got["steps"] == 4 and got["sampler"] == "ddim_trailing"


def test_client_core_takes_a_few_step_loras_recommendation_over_the_models():
    base = Recommendation.from_model({"name": "sd15", "native_size": 512,
                                      "recommended": {"scheduler": "DDIMScheduler", "steps": 25, "cfg_scale": 6.0}})
    listing = [{"name": "cat", "trigger": "zwx"},
               {"name": "lcm-lora-sdv1-5", "recommended": {"sampler": "lcm", "steps": 4, "cfg_scale": 1.0,
                                                           "preset": "LCM-LoRA"}}]
    on = base.with_concepts(listing, [("cat", 0.8), ("lcm-lora-sdv1-5", 1.0)])
    assert (on.sampler, on.steps, on.cfg_scale, on.preset) == ("lcm", 4, 1.0, "LCM-LoRA")
    assert on.native_size == 512
    assert on.label() == "model default (LCM, 4, 1.0, LCM-LoRA)"
    # weight 0 (or left out) keeps the model's own
    assert base.with_concepts(listing, [("lcm-lora-sdv1-5", 0.0)]) is base
    assert base.with_concepts(listing, [("cat", 1.0)]) is base
    # an artist's own choice still wins over the preset
    s = Settings(steps=6).resolved(on)
    assert (s.sampler, s.steps, s.cfg_scale) == ("lcm", 6, 1.0)


# --------------------------------------------------------------------------- models folder + engine (torch)


@pytest.fixture(scope="module")
def fewstep_models(tmp_path_factory):
    from impasto.backend.engine import single_file as sf
    from impasto.backend.tooling.tiny_model import build_tiny_model, build_tiny_sdxl

    root = tmp_path_factory.mktemp("fewstep-models")
    work = tmp_path_factory.mktemp("fewstep-work")
    build_tiny_model(root / "sd-turbo", seed=1)
    build_tiny_model(root / "dreamy", seed=2)
    cfg_path = root / "dreamy" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["_class_name"] = "LCMScheduler"             # an LCM-distilled checkpoint (LCM_Dreamshaper's layout)
    cfg_path.write_text(json.dumps(cfg))
    build_tiny_model(root / "lightning-but-told", seed=3)   # impasto.json always wins over a preset
    (root / "lightning-but-told" / "impasto.json").write_text(json.dumps(
        {"recommended": {"scheduler": "DDIMScheduler", "steps": 12, "guidance_scale": 3.0}}))
    build_tiny_sdxl(work / "xl", seed=4)
    sf.write_single_file(work / "xl", root / "sdxl_lightning_4step.safetensors")
    return root


def test_model_listing_carries_the_presets(fewstep_models):
    from impasto.backend.engine.models import ModelRegistry

    entries = {e.name: e.to_dict() for e in ModelRegistry(fewstep_models).scan()}
    light = entries["sdxl_lightning_4step"]
    assert light["format"] == "single_file" and light["family"] == "sdxl"
    rec = Recommendation.for_model(list(entries.values()), "sdxl_lightning_4step")
    assert (rec.sampler, rec.steps, rec.cfg_scale, rec.preset) == ("euler_trailing", 4, 1.0, "SDXL-Lightning")
    assert rec.label() == "model default (Euler trailing, 4, 1.0, SDXL-Lightning)"
    turbo = Recommendation.for_model(list(entries.values()), "sd-turbo")
    assert (turbo.sampler, turbo.steps) == ("euler_a_trailing", 1)
    dreamy = Recommendation.for_model(list(entries.values()), "dreamy")
    assert (dreamy.sampler, dreamy.steps, dreamy.cfg_scale) == ("lcm", 4, 1.0)
    assert entries["dreamy"]["recommended"]["matched"] == "scheduler LCMScheduler"
    told = Recommendation.for_model(list(entries.values()), "lightning-but-told")
    assert (told.sampler, told.steps, told.cfg_scale, told.preset) == ("ddim", 12, 3.0, "")


def test_trailing_samplers_start_at_the_last_timestep():
    """Why the presets name trailing samplers: leading spacing never starts a 1-4 step run at pure noise."""
    from impasto.backend.engine.samplers import make_scheduler

    cfg = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
           "steps_offset": 1, "timestep_spacing": "leading"}
    for trailing, plain in (("euler_trailing", "euler"), ("euler_a_trailing", "euler_a"), ("ddim_trailing", "ddim")):
        t, p = make_scheduler(trailing, cfg), make_scheduler(plain, cfg)
        t.set_timesteps(4)
        p.set_timesteps(4)
        assert int(t.timesteps[0]) == 999, trailing
        assert int(p.timesteps[0]) < 999, plain
    tcd = make_scheduler("tcd", cfg)
    tcd.set_timesteps(4)
    assert len(tcd.timesteps) == 4


LCM_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "original_inference_steps": 50, "timestep_spacing": "leading"}


def test_lcm_quadratic_places_its_steps_by_ddims_quadratic_rule():
    """``lcm_quadratic``: LCM's steps on its own 50-step grid, closer together where little noise is left
    (DDIM's quadratic selection), where plain ``lcm`` spaces them evenly; a caller's own list is kept."""
    from impasto.backend.engine.quadratic_lcm import quadratic_indices
    from impasto.backend.engine.samplers import make_scheduler

    lcm, quad = make_scheduler("lcm", LCM_CONFIG), make_scheduler("lcm_quadratic", LCM_CONFIG)
    lcm.set_timesteps(4)
    quad.set_timesteps(4)
    assert lcm.timesteps.tolist() == [999, 759, 499, 259]
    assert quad.timesteps.tolist() == [999, 579, 259, 79]
    grid = set(range(19, 1000, 20))
    for n in range(1, 51):
        quad.set_timesteps(n)
        ts = quad.timesteps.tolist()
        assert len(ts) == n and ts[0] == 999 and set(ts) <= grid, n
        assert all(a > b for a, b in zip(ts, ts[1:])), n
        idx = quadratic_indices(n, 50)
        assert idx[0] == 0 and idx == sorted(set(idx)) and idx[-1] <= 49
    for n in (2, 3, 4, 6, 8):    # the last step always nearer the clean picture than LCM's own
        lcm.set_timesteps(n)
        quad.set_timesteps(n)
        assert quad.timesteps[-1] < lcm.timesteps[-1], n
    quad.set_timesteps(timesteps=[999, 499])
    assert quad.timesteps.tolist() == [999, 499]
    with pytest.raises(ValueError):
        quadratic_indices(5, 4)


@pytest.mark.parametrize("strength", [0.2, 0.3, 0.5, 0.75, 1.0])
def test_lcm_quadratic_keeps_what_denoising_strength_means(strength):
    """img2img runs the last ``int(n * strength)`` of the ``n`` steps it asks for; the first of them is the
    noise the picture is pushed to.  lcm_quadratic starts there exactly as lcm does, and runs as many steps,
    spread quadratically below it."""
    from impasto.backend.engine.samplers import make_scheduler
    from impasto.backend.engine.strength import schedule

    for steps in (2, 4, 8):
        n, run = schedule(steps, strength, "lcm_quadratic")
        assert (n, run) == schedule(steps, strength, "lcm")
        lcm = make_scheduler("lcm", LCM_CONFIG, strength)
        quad = make_scheduler("lcm_quadratic", LCM_CONFIG, strength)
        lcm.set_timesteps(n)
        quad.set_timesteps(n)
        start = n - min(int(n * strength), n)                  # diffusers' get_timesteps
        a, b = lcm.timesteps[start:].tolist(), quad.timesteps[start:].tolist()
        assert len(b) == len(a) == run and b[0] == a[0], (steps, strength)
        assert all(x > y for x, y in zip(b, b[1:])) and b[-1] <= a[-1], (steps, strength)


def test_an_img2img_job_with_lcm_quadratic_calls_the_unet_at_its_steps(engine):
    """Through the engine and a real img2img pipeline: the UNet sees the quadratic steps, from the noise
    level the strength asks for."""
    from PIL import Image

    from impasto.backend.engine.images import to_wire
    from impasto.backend.engine.samplers import make_scheduler
    from impasto.backend.engine.strength import schedule
    from impasto.protocol.messages import Generate

    unet = engine.model("tiny").base.unet
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, args, kw: seen.append(int(args[1].flatten()[0])),
                                            with_kwargs=True)
    try:
        init = to_wire(Image.new("RGB", (64, 64), (200, 40, 40)).convert("RGBA"))
        res = engine.run(Generate(job="q", model="tiny", prompt="a red square", init_image=init, seed=1,
                                  strength=0.5, steps=4, sampler="lcm_quadratic", cfg_scale=1.0))
    finally:
        handle.remove()
    n, run = schedule(4, 0.5, "lcm_quadratic")
    expected = make_scheduler("lcm_quadratic", engine.model("tiny").scheduler_config, 0.5)
    expected.set_timesteps(n)
    assert res.steps_run == run == 4
    assert seen == expected.timesteps[n - run:].tolist()
    lcm = make_scheduler("lcm", engine.model("tiny").scheduler_config)
    lcm.set_timesteps(n)
    assert seen[0] == int(lcm.timesteps[n - run]) and seen != lcm.timesteps[n - run:].tolist()


def _resolved_request(models, name, **extra):
    from impasto.protocol.messages import Generate
    from impasto.protocol.planner import request_fields

    rec = Recommendation.for_model(models, name)
    fields = request_fields(Settings(prompt="a red circle", model=name, seed=5, preview=False), rec)
    return Generate(job="fs", width=64, height=64, **{**fields, **extra})


def test_engine_runs_few_step_models_at_their_presets(fewstep_models):
    from impasto.backend.engine import Engine
    from impasto.protocol.messages import Image

    engine = Engine(fewstep_models)
    models = [e.to_dict() for e in engine.models()]
    req = _resolved_request(models, "sdxl_lightning_4step")
    assert (req.sampler, req.steps, req.cfg_scale) == ("euler_trailing", 4, 1.0)
    res = engine.run(req)
    assert res.steps_run == 4 and len(set(res.images[0].data)) > 20
    # img2img on SD-Turbo at its one step: strength 0.5 still runs one step (the floor), not zero
    req = _resolved_request(models, "sd-turbo", init_image=Image(64, 64, bytes(range(256)) * 64, "rgba8"),
                            strength=0.5)
    assert (req.sampler, req.steps) == ("euler_a_trailing", 1)
    res = engine.run(req)
    assert res.steps_run == 1 and res.info["schedule_steps"] == 2
    req = _resolved_request(models, "dreamy")
    res = engine.run(req)
    assert req.sampler == "lcm" and res.steps_run == 4


# --------------------------------------------------------------------------- an LCM-LoRA through a real daemon


def test_an_imported_lcm_lora_brings_its_settings(client, tiny_model, tmp_path):
    """Import a LoRA of LCM-LoRA's shape under LCM-LoRA's own (uninformative) file name; the concept
    listing carries its preset and a job planned with it on runs LCM at 4 steps, CFG 1."""
    from impasto.backend.tooling.tiny_lora import write_lcm_lora
    from impasto.protocol.messages import Blob
    from impasto.protocol.planner import plan_job

    path = write_lcm_lora(tiny_model, tmp_path / "pytorch_lora_weights.safetensors")
    done = client.concept_action("import", "lcm-lora-tiny", file=Blob(path.read_bytes()),
                                 filename=path.name)
    assert done.info["concept"]["recommended"]["preset"] == "LCM-LoRA"
    assert done.info["concept"]["modules"] > 20          # every attention, ff, conv and time projection
    listing = client.concepts().concepts
    models = client.models()
    rec = Recommendation.for_model(models.models, "tiny", models.default)
    assert rec.sampler != "lcm"
    settings = Settings(prompt="a red circle", model="tiny", seed=3, preview=False).set_concepts(
        [("lcm-lora-tiny", 1.0)])
    rec = rec.with_concepts(listing, settings.active_concepts())
    plan = plan_job((32, 32), settings, "generate", recommendation=rec)
    assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == ("lcm", 4, 1.0)
    res = client.submit(plan.request).wait(timeout=120)
    assert res.steps_run == 4
    client.concept_action("delete", "lcm-lora-tiny")


# --------------------------------------------------------------------------- the starter's own LCM-LoRA (live painting)


LIVE_ENTRY = {"name": "starter", "native_size": 64,
              "recommended": {"scheduler": "DDIMScheduler", "steps": 20, "guidance_scale": 5.0},
              "live": {"concept": "starter-lcm-lora",
                       "recommended": {"sampler": "lcm", "steps": 4, "cfg_scale": 1.0, "preset": "LCM-LoRA"}}}


def test_live_job_switches_the_models_own_few_step_lora_on():
    """A model whose listing has a ``live`` block: a live job gets its LoRA at weight 1 and its settings for the
    knobs left unset; an artist's own choice (the concept listed at any weight, another few-step LoRA on,
    steps typed in) wins; a model without one is untouched."""
    from impasto.protocol.live import live_job, plan_live

    rec = Recommendation.from_model(LIVE_ENTRY)
    assert (rec.sampler, rec.steps, rec.live_concept) == ("ddim", 20, "starter-lcm-lora")
    settings = Settings(prompt="a red circle", model="starter", strength=0.5)
    rgba = bytes(64 * 64 * 4)
    plan = plan_live((64, 64), settings, 11, rgba=rgba, recommendation=rec)
    req = plan.request
    assert req.live and req.seed == 11 and req.preview is False
    assert (req.sampler, req.steps, req.cfg_scale) == ("lcm", 4, 1.0)
    assert list(req.concepts) == [("starter-lcm-lora", 1.0)]
    assert settings.concepts == []                                   # the artist's form is not changed
    # the artist listed it at weight 0: left off, the model's own 20 DDIM steps
    off = Settings(prompt="a red circle", model="starter").set_concepts([("starter-lcm-lora", 0.0)])
    req = plan_live((64, 64), off, 11, rgba=rgba, recommendation=rec).request
    assert (req.sampler, req.steps, list(req.concepts)) == ("ddim", 20, [("starter-lcm-lora", 0.0)])
    # ... at weight 0.5: their weight, the LoRA's settings
    half = Settings(prompt="a red circle", model="starter").set_concepts([("starter-lcm-lora", 0.5)])
    req = plan_live((64, 64), half, 11, rgba=rgba, recommendation=rec).request
    assert (req.sampler, req.steps, list(req.concepts)) == ("lcm", 4, [("starter-lcm-lora", 0.5)])
    # another few-step LoRA on: the panels pass rec.with_concepts(...), which wins; nothing is added
    mine = Settings(prompt="a red circle", model="starter").set_concepts([("my-hyper", 1.0)])
    listing = [{"name": "my-hyper", "recommended": {"sampler": "ddim_trailing", "steps": 8, "cfg_scale": 1.0,
                                                   "preset": "Hyper-SD"}}]
    req = plan_live((64, 64), mine, 11, rgba=rgba,
                    recommendation=rec.with_concepts(listing, mine.active_concepts())).request
    assert (req.sampler, req.steps, list(req.concepts)) == ("ddim_trailing", 8, [("my-hyper", 1.0)])
    # knobs the artist set stay theirs
    six = Settings(prompt="a red circle", model="starter", steps=6)
    req = live_job(six, 11, rec)
    assert req[0].steps == 6 and req[1].steps == 4 and req[0].concepts[-1]["name"] == "starter-lcm-lora"
    # named by hand in a normal job, the concept brings the same settings (CLI --concept, the panels' rows)
    assert rec.with_concepts([], [("starter-lcm-lora", 1.0)]).sampler == "lcm"
    # a model without a shipped LoRA: unchanged
    plain = Recommendation.from_model({k: v for k, v in LIVE_ENTRY.items() if k != "live"})
    req = plan_live((64, 64), settings, 11, rgba=rgba, recommendation=plain).request
    assert (req.sampler, req.steps, list(req.concepts)) == ("ddim", 20, [])


@pytest.fixture
def starter_with_lora(tiny_model, tmp_path):
    """A starter folder (the tiny model) with an LCM-LoRA-shaped file beside it, as backend/assets ships them."""
    import shutil

    from impasto.backend.tooling.tiny_lora import write_lcm_lora

    assets = tmp_path / "assets"
    shutil.copytree(tiny_model, assets / "starter")
    write_lcm_lora(tiny_model, assets / "starter-lcm-lora.safetensors", seed=4)
    return assets / "starter"


def test_the_model_listing_offers_the_lora_shipped_beside_a_model(starter_with_lora, tmp_path, monkeypatch):
    from impasto.backend.engine.models import ModelRegistry
    from impasto.backend.tooling.tiny_lora import write_lcm_lora

    monkeypatch.setenv("IMPASTO_STARTER_DIR", str(starter_with_lora))
    models = tmp_path / "models"
    models.mkdir()
    import shutil

    shutil.copytree(starter_with_lora, models / "mine")
    write_lcm_lora(starter_with_lora, models / "mine-lcm-lora.safetensors")
    (models / "other-lcm-lora.safetensors").write_bytes(b"not a model folder's")   # no folder 'other'
    entries = {e.name: e for e in ModelRegistry(models).scan()}
    live = entries["starter"].live
    assert live["concept"] == "starter-lcm-lora" and live["file"].endswith("assets/starter-lcm-lora.safetensors")
    assert {k: live["recommended"][k] for k in ("sampler", "steps", "cfg_scale", "preset")} == \
        {"sampler": "lcm_quadratic", "steps": 4, "cfg_scale": 1.0, "preset": "starter LCM-LoRA"}
    assert entries["mine"].live["concept"] == "mine-lcm-lora"
    # another model's LCM-LoRA: LCM's own preset (the quadratic steps were measured on the starter's only)
    assert entries["mine"].live["recommended"]["sampler"] == "lcm"
    assert "mine-lcm-lora" not in entries                       # a folder's own LoRA is not listed as a model
    assert entries["other-lcm-lora"].supported is False         # a stray file is still reported as before
    assert Recommendation.from_model(entries["starter"].to_dict()).live_concept == "starter-lcm-lora"
    # a damaged file is not offered (and nothing raises)
    (starter_with_lora.parent / "starter-lcm-lora.safetensors").write_bytes(b"\x00" * 5)
    assert {e.name: e for e in ModelRegistry(models).scan()}["starter"].live == {}
    (starter_with_lora.parent / "starter-lcm-lora.safetensors").unlink()
    assert {e.name: e for e in ModelRegistry(models).scan()}["starter"].live == {}


def test_live_painting_uses_the_starters_shipped_lcm_lora_with_no_setup(starter_with_lora, tmp_path):
    """A real daemon whose starter has its LCM-LoRA beside it: the live job the client core plans from the
    model listing alone runs the LoRA at LCM, 4 steps, CFG 1 - the picture of naming the concept by hand (the
    live job's LoRA folded into the weights: rounding aside), other bits than the starter alone - with an
    empty concept library."""
    from conftest import DaemonProcess

    from impasto.protocol import Client
    from impasto.protocol.live import plan_live
    from impasto.protocol.planner import plan_job

    empty = tmp_path / "models"
    empty.mkdir()
    d = DaemonProcess(empty, tmp_path / "home", env_extra={"IMPASTO_STARTER_DIR": str(starter_with_lora)}).start()
    try:
        with Client(d.endpoint) as client:
            models = client.models()
            rec = Recommendation.for_model(models.models, "starter", models.default)
            assert rec.live_concept == "starter-lcm-lora" and client.concepts().concepts == []
            rgba = bytes(range(256)) * 64
            settings = Settings(prompt="a red circle", model="starter", strength=0.6)
            plan = plan_live((64, 64), settings, 5, rgba=rgba, recommendation=rec)
            assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == ("lcm_quadratic", 4, 1.0)
            live = client.submit(plan.request).wait(timeout=120)
            assert live.images and not any("concept" in w for w in live.warnings), live.warnings
            # the same job with the concept named by hand (no live flag): the same bits
            by_hand = Settings(prompt="a red circle", model="starter", strength=0.6, seed=5,
                               preview=False).set_concepts([("starter-lcm-lora", 1.0)])
            req = plan_job((64, 64), by_hand, "refine", rgba=rgba,
                           recommendation=rec.with_concepts([], by_hand.active_concepts())).request
            assert (req.sampler, req.steps, req.cfg_scale) == ("lcm_quadratic", 4, 1.0)
            same = client.submit(req).wait(timeout=120)
            # live jobs run with the LoRA folded into the weights (adapters.fuse): float rounding aside
            a, b = np.frombuffer(same.images[0].data, np.uint8), np.frombuffer(live.images[0].data, np.uint8)
            assert np.abs(a.astype(int) - b).max() <= 2 and np.count_nonzero(a != b) < 0.01 * a.size
            # switched off by the artist (weight 0): the starter alone paints other bits
            off = Settings(prompt="a red circle", model="starter", strength=0.6, sampler="lcm", steps=4,
                           cfg_scale=1.0).set_concepts([("starter-lcm-lora", 0.0)])
            alone = client.submit(plan_live((64, 64), off, 5, rgba=rgba, recommendation=rec).request).wait(
                timeout=120)
            assert alone.images[0].data != live.images[0].data
            assert alone.info.get("model_loads") == live.info.get("model_loads")   # never reloaded
    finally:
        d.stop()


def test_the_canvas_live_mode_paints_with_the_starters_lcm_lora_by_itself(starter_with_lora, tmp_path, monkeypatch):
    """The offscreen canvas on a daemon whose starter ships its LCM-LoRA: the artist picks nothing but the
    starter and switches live painting on; the live jobs carry the LoRA at LCM, 4 steps, CFG 1 and paint."""
    pytest.importorskip("PySide6")
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from conftest import DaemonProcess

    from impasto.desktop import headless
    from impasto.desktop.connection import DaemonLink
    from impasto.desktop.document import Document
    from impasto.desktop.main_window import MainWindow

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "client"))
    headless.application()
    empty = tmp_path / "models"
    empty.mkdir()
    d = DaemonProcess(empty, tmp_path / "home", env_extra={"IMPASTO_STARTER_DIR": str(starter_with_lora)}).start()
    try:
        with headless.DialogRecorder({"ask_save_changes": "discard", "confirm": True}):
            link = DaemonLink(d.endpoint, poll_ms=250, autostart=False, ping_timeout=0.6)
            w = MainWindow(link, Document(64, 64))
            w.show()
            link.start()
            assert headless.pump(90, lambda: link.connected and w.panel.model.findData("starter") >= 0)
            w.panel.model.setCurrentIndex(w.panel.model.findData("starter"))
            w.panel.prompt.setPlainText("a red circle")
            w.panel.strength.setValue(0.6)
            w.panel.set_seed(5)
            assert w.panel.recommendation().live_concept == "starter-lcm-lora"
            own_label = (w.panel.sampler.itemText(0), w.panel.steps.specialValueText())
            plans = []
            read = w.live._read_plan
            w.live._read_plan = lambda session: plans.append(read(session)) or plans[-1]
            w.a_live.trigger()
            assert headless.pump(90, lambda: w.live.candidate is not None)
            req = plans[-1].request
            assert req.live and list(req.concepts) == [("starter-lcm-lora", 1.0)]
            assert (req.sampler, req.steps, req.cfg_scale) == ("lcm_quadratic", 4, 1.0)
            assert w.panel.settings().concepts == []          # the artist's form is untouched
            # the panel's "model default" reads what the live jobs use while live mode is on, and goes back
            assert "LCM quadratic, 4, 1.0" in w.panel.sampler.itemText(0) and w.panel.steps.specialValueText() == "model (4)"
            assert w.panel.cfg.specialValueText() == "model (1.0)"
            # ... and it is read whole in the docked panel at its default width, nothing scrolled sideways
            w.resize(1360, 860)
            headless.pump(0.3)
            from PySide6.QtWidgets import QScrollArea

            label, combo = w.panel.sampler.itemText(0), w.panel.sampler
            assert combo.width() >= combo.fontMetrics().horizontalAdvance(label) + 24, (combo.width(), label)
            scroll = w.panel.findChild(QScrollArea)
            assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width()
            assert not scroll.horizontalScrollBar().isVisible()
            w.live.set_enabled(False)
            assert (w.panel.sampler.itemText(0), w.panel.steps.specialValueText()) == own_label
            assert "LCM" not in own_label[0]
            w.close()
            headless.pump(0.05)
    finally:
        d.stop()


def test_the_shipped_lcm_lora_names_the_shipped_starter_so_using_it_warns_of_nothing():
    """Its header's base fingerprint is the shipped starter's (a retrained decoder, preview decoder or fast
    encoder leaves it valid; a new UNet, text encoder or VAE encoder would not - then the file is distilled
    or at least re-stamped again), so the concept check raises no "trained on another model" warning."""
    from impasto.backend.engine import bundled
    from impasto.backend.engine.concepts import concept_warnings
    from impasto.backend.engine.models import ModelRegistry
    from impasto.backend.engine.pipelines import model_fingerprint

    entry = {e.name: e for e in ModelRegistry(None).scan()}["starter"]
    info = bundled.concept_for(entry, "starter-lcm-lora")
    assert info is not None and info.meta["base_model"] == "starter"
    assert info.meta["base_fingerprint"] == model_fingerprint(entry)

    class Loaded:                      # what concept_warnings reads of a loaded model
        fingerprint = model_fingerprint(entry)

    Loaded.entry = entry
    assert concept_warnings(info, Loaded, "a red circle on a blue background") == []
