"""img2img: denoising strength, the steps floor, pictures of any mode, the daemon and the CLI."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.protocol.client import JobFailed
from impasto.protocol.messages import Generate, Progress, Result

torch.set_num_threads(1)


def picture(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = (np.arange(w) * 255 // max(1, w - 1))[None, :]
    arr[..., 1] = (np.arange(h) * 255 // max(1, h - 1))[:, None]
    arr[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(arr, "RGB")


def request(img: Image.Image, **kw) -> Generate:
    from impasto.backend.engine.images import to_wire

    fields = dict(job="i1", prompt="a blue square", steps=8, strength=0.6, seed=3, model="tiny")
    fields.update(kw)
    return Generate(init_image=to_wire(img), **fields)


def rgba(img) -> np.ndarray:
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4)


def test_strength_schedule_has_a_floor():
    from impasto.backend.engine.strength import MIN_STEPS, schedule

    assert schedule(20, 0.75) == (20, 15)
    assert schedule(20, 1.0) == (20, 20)
    assert schedule(20, 0.3) == (20, 6)
    for s in (0.2, 0.1, 0.05, 0.02, 0.01, 0.3 / 4):
        n, run = schedule(20, s)
        assert run == MIN_STEPS and min(int(n * s), n) == run, s
    assert schedule(2, 0.1)[1] == 2, "never more steps than asked for"
    assert schedule(20, 0.0)[1] == 0 and schedule(20, 0.0004)[1] == 0
    assert schedule(20, 0.05, "lcm")[0] <= 50, "LCM schedules come from its 50 original steps"


def test_result_has_the_input_size_and_same_request_gives_same_bytes(engine):
    img = picture(131, 97)
    a = engine.run(request(img))
    b = engine.run(request(img))
    c = engine.run(request(img, seed=4))
    assert (a.images[0].width, a.images[0].height) == (131, 97)
    assert a.images[0].data == b.images[0].data and a.images[0].data != c.images[0].data
    assert a.info["diffusion_size"] == [128, 96] and a.info["latent_shape"] == [1, 4, 12, 16]
    assert a.steps_run == int(8 * 0.6) and a.seeds == [3]
    assert (rgba(a.images[0])[..., 3] == 255).all()
    assert not (rgba(a.images[0])[..., :3] == np.asarray(img)).all()


def test_low_strength_runs_at_least_the_floor_and_zero_changes_nothing(engine):
    img = picture(64, 48)
    low = engine.run(request(img, steps=20, strength=0.1))
    assert low.steps_run == 4 and low.info["schedule_steps"] == 40
    mid = engine.run(request(img, steps=20, strength=0.5))
    assert mid.steps_run == 10
    for s in (0.0, 0.0004):
        same = engine.run(request(img, strength=s))
        assert same.steps_run == 0 and any("unchanged" in w for w in same.warnings)
        assert (rgba(same.images[0])[..., :3] == np.asarray(img)).all()


def test_tiny_pictures_are_diffused_at_the_native_area_and_returned_at_their_size(engine):
    for w, h in ((1, 1), (20, 10)):
        res = engine.run(request(picture(w, h) if w > 1 else Image.new("RGB", (1, 1), (9, 9, 9)), steps=4))
        assert (res.images[0].width, res.images[0].height) == (w, h)
        dw, dh = res.info["diffusion_size"]
        assert 0.7 < dw * dh / 64 ** 2 < 1.3 and dw % 8 == 0 and dh % 8 == 0, "the tiny model's 64 px area"
        assert abs(dw / dh - w / h) < 0.2


def test_pictures_of_any_mode_are_converted(engine):
    from impasto.backend.engine.hooks import JobHooks
    from impasto.backend.engine.images import to_wire
    from impasto.backend.engine.img2img import img2img

    base = picture(70, 50, seed=2)
    grey = np.asarray(base.convert("L"))
    palette = base.convert("P")
    palette.info["transparency"] = 0
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    modes = {"RGB": base, "RGBA": base.convert("RGBA"), "L": base.convert("L"), "P": palette,
             "I;16": sixteen, "LA": base.convert("LA"), "1": base.convert("1"), "CMYK": base.convert("CMYK")}
    for name, img in modes.items():
        # through the wire: strength 0 shows exactly what the engine made of the picture
        same = engine.run(request(img, strength=0.0, job=f"m{len(name)}"))
        got = rgba(same.images[0])
        assert got.shape == (50, 70, 4), name
        if name == "I;16":
            assert (got[..., 0] == grey).all() and (got[..., 3] == 255).all(), "16-bit scaled, not clipped"
        if name == "P":
            assert (got[..., 3] == 0).any() and (got[..., 3] == 255).any(), "palette transparency kept"
        # and as a PIL picture handed straight to the engine
        out = img2img(engine.loaded, img, request(base, strength=0.5), [3], JobHooks())
        assert out.images[0].shape == (50, 70, 4) and out.images[0].dtype == np.uint8 and out.steps == 4, name
    assert to_wire(sixteen).data == to_wire(Image.fromarray(grey)).data


def test_daemon_img2img_with_previews_and_bad_strength(client, daemon):
    img = picture(96, 64)
    req = request(img, job="", steps=4, strength=1.0, preview=True)
    events = list(client.submit(req).events(timeout=60))
    result = events[-1]
    assert isinstance(result, Result) and (result.images[0].width, result.images[0].height) == (96, 64)
    previews = [e.preview for e in events if isinstance(e, Progress) and e.preview is not None]
    assert previews and previews[0].format == "rgba8"
    for bad in (1.5, -0.2):
        with pytest.raises(JobFailed) as err:
            client.submit(request(img, job="", strength=bad)).wait(timeout=60)
        assert err.value.code == "bad_field" and err.value.field == "strength"
    assert daemon.alive() and client.ping(timeout=5)


def run_cli(daemon, *args):
    return subprocess.run([sys.executable, "-m", "impasto.backend.cli", *args], env=daemon.env,
                          capture_output=True, text=True, timeout=120)


def test_cli_img2img_end_to_end(daemon, tmp_path):
    grey = np.asarray(picture(75, 53).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "in16.png")   # a 16-bit file
    out = tmp_path / "out.png"
    proc = run_cli(daemon, "img2img", str(tmp_path / "in16.png"), "a blue square", "--strength", "0.6",
                   "--steps", "4", "--seed", "9", "--model", "tiny", "--no-spawn", "-q", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (75, 53) and "seed 9" in proc.stdout
    bad = run_cli(daemon, "img2img", str(tmp_path / "in16.png"), "x", "--strength", "2", "--no-spawn")
    assert bad.returncode == 2 and "strength" in bad.stderr
    missing = run_cli(daemon, "img2img", str(tmp_path / "nope.png"), "x", "--no-spawn", "-o", str(out))
    assert missing.returncode == 1 and "no such file" in missing.stderr
