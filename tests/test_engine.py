"""The engine in-process: samplers, sizes, previews, no sockets involved."""
import numpy as np
import pytest
import torch

from impasto.backend.engine import Engine, JobHooks
from impasto.backend.engine.errors import Cancelled
from impasto.protocol.messages import SAMPLERS, Generate


def arr(img):
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4).astype(int)


REQ = dict(model="tiny", prompt="a red circle", width=64, height=64, steps=4, seed=3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_and_is_deterministic(engine, sampler):
    a = engine.run(Generate(job="a", sampler=sampler, **REQ))
    b = engine.run(Generate(job="b", sampler=sampler, **REQ))
    assert a.images[0].data == b.images[0].data
    assert a.steps_run == 4


def test_samplers_differ(engine):
    outs = {s: engine.run(Generate(job="s", sampler=s, **REQ)).images[0].data for s in ("euler", "ddim", "euler_a")}
    assert len(set(outs.values())) == 3


# What each artist's name means, written out here (not read from the engine's table), so that a name
# silently aliasing another (dpmpp_2m_karras running plain dpmpp_2m, euler_a running euler...) fails.
SAMPLER_MEANS = {
    "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    "lcm": ("LCMScheduler", {}),
    "euler_trailing": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing", "use_karras_sigmas": False}),
    "euler_a_trailing": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
    "tcd": ("TCDScheduler", {}),
    "lcm_quadratic": ("QuadraticLCMScheduler", {}),
}


def _scheduler_of_a_job(engine, monkeypatch, sampler):
    """The scheduler object a real job ran with (captured where the engine builds it)."""
    from impasto.backend.engine import denoise

    made = []
    real = denoise.make_scheduler

    def capture(name, config, strength=1.0):
        sched = real(name, config, strength)
        made.append(sched)
        return sched

    monkeypatch.setattr(denoise, "make_scheduler", capture)
    engine.run(Generate(job="k", sampler=sampler, **REQ))
    monkeypatch.setattr(denoise, "make_scheduler", real)
    assert len(made) == 1
    return made[0]


def test_every_sampler_name_is_listed_here():
    assert set(SAMPLER_MEANS) == set(SAMPLERS)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_name_runs_its_own_scheduler_and_settings(engine, monkeypatch, sampler):
    sched = _scheduler_of_a_job(engine, monkeypatch, sampler)
    cls, settings = SAMPLER_MEANS[sampler]
    assert type(sched).__name__ == cls, (sampler, type(sched).__name__)
    for key, value in settings.items():
        assert sched.config[key] == value, (sampler, key, sched.config[key])
    assert sched.num_inference_steps == REQ["steps"]  # the pipeline stepped this very object
    # the model's own noise schedule is kept (not the scheduler class's defaults)
    model_cfg = engine.loaded.scheduler_config
    for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type"):
        if key in model_cfg:
            assert sched.config[key] == model_cfg[key], (sampler, key)


def test_karras_sigmas_are_really_used(engine, monkeypatch):
    """Not just a config flag: the karras spacing puts the job's noise levels elsewhere."""
    plain = _scheduler_of_a_job(engine, monkeypatch, "dpmpp_2m")
    karras = _scheduler_of_a_job(engine, monkeypatch, "dpmpp_2m_karras")
    assert plain.sigmas.shape == karras.sigmas.shape
    assert not torch.allclose(plain.sigmas, karras.sigmas)
    assert plain.timesteps.tolist() != karras.timesteps.tolist()


def test_model_loaded_once_between_jobs(engine):
    engine.run(Generate(job="x", sampler="ddim", **REQ))
    loaded = engine.loaded
    unet = loaded.base.unet
    engine.run(Generate(job="y", sampler="euler", **REQ))
    assert engine.loaded is loaded and engine.loaded.base.unet is unet
    # derived pipelines share the very same modules (from_pipe, no weight copy)
    assert loaded.img2img.unet is unet and loaded.inpaint.vae is loaded.base.vae


def test_odd_sizes_round_to_multiple_of_8_and_come_back_exact(engine):
    res = engine.run(Generate(job="o", sampler="ddim", **{**REQ, "width": 61, "height": 37}))
    assert (res.images[0].width, res.images[0].height) == (61, 37)


def test_previews_are_small_images_every_step(engine):
    previews = []
    hooks = JobHooks(want_preview=True, progress=lambda s, t, p=None, l=None, st="": previews.append(p))
    engine.run(Generate(job="p", sampler="euler", **{**REQ, "steps": 5}), hooks)
    assert len(previews) == 5 and all(p is not None and max(p.size) <= 256 for p in previews)


def test_preview_tracks_the_final_image_on_a_trained_vae():
    """On the starter model (a trained VAE) the last x0 preview must look like the decoded picture.

    (The tiny test model's random VAE encodes no colour at all, so it cannot judge a preview.)
    """
    from impasto.backend.engine.models import starter_dir

    assert starter_dir() is not None, "the starter model ships with the package"
    eng = Engine()
    previews = []
    hooks = JobHooks(want_preview=True, progress=lambda s, t, p=None, l=None, st="": previews.append(p))
    side = eng.model("starter").entry.native_size   # the starter's own size: 128 px
    res = eng.run(Generate(job="p", model="starter", prompt="a red circle on a blue background", width=side,
                           height=side, steps=12, sampler="ddim", cfg_scale=5.0, seed=1), hooks)
    final = arr(res.images[0])[..., :3].astype(float)
    last = np.asarray(previews[-1].convert("RGB").resize((side, side))).astype(float)
    corr = np.corrcoef(final.ravel(), last.ravel())[0, 1]
    colour_err = np.abs(final.mean(axis=(0, 1)) - last.mean(axis=(0, 1))).max()
    pixel_err = np.abs(final - last).mean()
    # Measured 2026-12-01 on the 128 px scenes starter's trained preview decoder (seeds 1-3): corr 0.988-0.990,
    # mean-colour error 0.7-1.8 levels, per-pixel error 4.1-4.7 levels.  The linear map measured corr
    # 0.988-0.991 (the layout is right either way) but a mean-colour error of 54-62 and a per-pixel error of
    # 56-57 levels, so the colour bounds fail with it: issue 19's 10 levels per pixel, a mean colour within 4.
    assert corr > 0.98 and colour_err < 4 and pixel_err <= 10, (corr, colour_err, pixel_err)
    # ...and the colour points the right way: every channel in which the picture is far from grey
    # (blue up, green and red down for a red circle on blue) moves the preview the same way.
    dev_final = final.mean(axis=(0, 1)) - 128
    dev_preview = last.mean(axis=(0, 1)) - 128
    for f, p in zip(dev_final, dev_preview):
        if abs(f) > 48:
            assert np.sign(f) == np.sign(p) and abs(p) > 16, (dev_final, dev_preview)


def test_cancel_before_decode_skips_decode(engine):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3  # cancel after the last step's check: the final pre-decode check must catch it

    vae = engine.model("tiny").base.vae
    decoded = []
    handle = vae.decoder.register_forward_hook(lambda *a: decoded.append(1))
    try:
        with pytest.raises(Cancelled):
            engine.run(Generate(job="c", sampler="ddim", **{**REQ, "steps": 2}), JobHooks(cancelled=cancelled))
    finally:
        handle.remove()
    assert calls["n"] == 4 and decoded == []


def test_device_and_precision_overrides(monkeypatch):
    from impasto.backend.engine.device import pick_device

    monkeypatch.setenv("IMPASTO_DEVICE", "cuda")   # only chosen here, nothing runs on it
    monkeypatch.delenv("IMPASTO_PRECISION", raising=False)
    assert (pick_device().device.type, pick_device().dtype) == ("cuda", torch.float16)
    monkeypatch.setenv("IMPASTO_PRECISION", "fp32")
    assert pick_device().dtype == torch.float32
    monkeypatch.setenv("IMPASTO_DEVICE", "cpu")
    monkeypatch.setenv("IMPASTO_PRECISION", "fp16")
    assert pick_device().dtype == torch.float32     # a CPU always computes in fp32
