"""Mask-blended editing: masks, regions, fills, paste-back, the engine and the daemon.

The tiny model has random weights, so nothing here judges picture quality;
the tests check the contracts an artist relies on: pixels outside the mask
and its feather band never change, only the region around the mask is
diffused, fill modes differ as documented, the same request gives the same
bytes, bad input gets a typed error and the daemon keeps serving.

Over 500 lines on purpose: the editing contracts (masks, regions, fills,
paste-back) share the scene/mask helpers at the top; each test is short and
named for the one contract it holds.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.protocol import codec
from impasto.protocol.client import JobCancelled, JobFailed
from impasto.protocol.messages import Cancelled, Error, Generate, Image as WireImage, Progress, Result

torch.set_num_threads(1)


# --------------------------------------------------------------------------- helpers


def scene(w: int, h: int, seed: int = 0) -> Image.Image:
    """A busy RGB picture: gradients plus random blocks (the VAE round trip visibly changes it)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = (np.arange(w) * 255 // max(1, w - 1))[None, :]
    arr[..., 1] = (np.arange(h) * 255 // max(1, h - 1))[:, None]
    arr[..., 2] = 90
    for _ in range(12):
        x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
        arr[y:y + rng.integers(4, h // 3), x:x + rng.integers(4, w // 3)] = rng.integers(0, 256, 3)
    return Image.fromarray(arr, "RGB")


def soft_border_mask(w: int, h: int) -> np.ndarray:
    """A soft mask touching the left border: a 255 core with a 128 shoulder."""
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2 + 40, 0:110] = 128
    m[h // 4 + 20: h // 2 + 20, 0:70] = 255
    return m


def wire(img: Image.Image) -> WireImage:
    from impasto.backend.engine.images import to_wire

    return to_wire(img)


def wire_mask(m: np.ndarray) -> WireImage:
    return WireImage(width=m.shape[1], height=m.shape[0], data=m.tobytes(), format="gray8")


def rgba(img: WireImage) -> np.ndarray:
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4)


def far_from(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels farther than ``px`` (in x or y) from every non-zero mask pixel.

    Computed independently of the engine (an integral image), as a superset
    of the grow (disc) + feather (box) band.
    """
    h, w = mask.shape
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(mask > 0, axis=0), axis=1)
    y0 = np.clip(np.arange(h) - px, 0, h)
    y1 = np.clip(np.arange(h) + px + 1, 0, h)
    x0 = np.clip(np.arange(w) - px, 0, w)
    x1 = np.clip(np.arange(w) + px + 1, 0, w)
    count = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
    return count == 0


def edit_request(img, mask, **kw) -> Generate:
    fields = dict(job="e1", prompt="a red circle", steps=6, strength=0.7, seed=7, model="tiny", mask_blur=4)
    fields.update(kw)
    return Generate(init_image=wire(img), mask=wire_mask(mask), **fields)


# --------------------------------------------------------------------------- masks


def test_grow_is_a_disc_and_shrink_keeps_the_canvas_edge():
    from impasto.backend.engine.masks import grow_shrink

    dot = np.zeros((41, 41), np.uint8)
    dot[20, 20] = 255
    disc = grow_shrink(dot, 10) > 0
    yy, xx = np.mgrid[:41, :41]
    assert (disc == ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100)).all()

    rng = np.random.default_rng(1)
    soft = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    grown = grow_shrink(soft, 3)
    pad = np.pad(soft, 3, mode="edge")
    ref = np.zeros_like(soft)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            if dx * dx + dy * dy <= 9:
                ref = np.maximum(ref, pad[3 + dy: 33 + dy, 3 + dx: 43 + dx])
    assert (grown == ref).all(), "grey dilation with a radius-3 disc"

    left = np.zeros((30, 30), np.uint8)
    left[:, :15] = 255
    shrunk = grow_shrink(left, -4)
    assert shrunk[:, :11].min() == 255 and shrunk[:, 11:].max() == 0, "shrinks only away from the canvas edge"


def test_feather_band_is_bounded_and_full_masks_stay_full():
    from impasto.backend.engine.masks import bbox, feather

    m = np.zeros((100, 100), np.uint8)
    m[30:70, 30:70] = 255
    for blur in (1, 4, 9, 16):
        f = feather(m, blur)
        x0, y0, x1, y1 = bbox(f)
        assert x0 >= 30 - blur and x1 <= 70 + blur and y0 >= 30 - blur and y1 <= 70 + blur
        assert f[50, 50] == 255 and 0 < f[50, 30] < 255 and f[50, 30 - blur] < 128
    assert feather(np.full((20, 30), 255, np.uint8), 9).min() == 255


def test_empty_and_vanishing_masks_are_typed_errors():
    from impasto.backend.engine import EngineError
    from impasto.backend.engine.masks import prepare

    with pytest.raises(EngineError) as err:
        prepare(np.zeros((50, 60), np.uint8), 0, 4)
    assert err.value.field == "mask" and err.value.code == "bad_field" and "empty" in err.value.message
    small = np.zeros((50, 60), np.uint8)
    small[20:23, 20:23] = 255
    with pytest.raises(EngineError) as err:
        prepare(small, -3, 4)
    assert err.value.field == "grow"


# --------------------------------------------------------------------------- region


def test_only_masked_region_on_a_large_canvas():
    from impasto.backend.engine.region import MAX_ASPECT, only_masked

    r = only_masked((2000, 1400, 2300, 1600), (4000, 3000), padding=32, native=512)
    x0, y0, x1, y1 = r.box
    assert x0 <= 2000 - 32 and y0 <= 1400 - 32 and x1 >= 2300 + 32 and y1 >= 1600 + 32
    assert r.width < 500 and r.height < 400, "only the neighbourhood of the mask"
    dw, dh = r.size
    assert dw % 8 == 0 and dh % 8 == 0
    assert 0.85 < dw * dh / 512 ** 2 < 1.15, "the model's native area"
    assert abs(dw / dh - r.width / r.height) < 0.02, "no distortion"
    # a thin stroke is widened to a composable shape; max_size caps the diffusion size
    r = only_masked((100, 500, 1100, 510), (4000, 3000), padding=0, native=512, max_size=256)
    assert max(r.width, r.height) / min(r.width, r.height) <= MAX_ASPECT + 0.02
    assert max(r.size) <= 256
    # at the canvas edge the box shifts inwards instead of leaving the canvas
    r = only_masked((0, 0, 10, 200), (300, 300), padding=8, native=64)
    assert r.box[0] == 0 and r.box[2] <= 300 and r.box[3] <= 300


# --------------------------------------------------------------------------- fills


def test_fill_modes_behave_as_documented():
    from impasto.backend.engine.fill import apply_fill

    h, w = 64, 96
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[...] = (200, 40, 40)                     # red surroundings
    rgb[20:44, 30:66] = (20, 220, 20)            # a green object under the mask
    weight = np.zeros((h, w), np.float32)
    weight[16:48, 26:70] = 1.0
    hole = weight > 0

    original = apply_fill(rgb, weight, "original", 0)
    assert (original == rgb).all()

    blur = apply_fill(rgb, weight, "blur", 0)
    inside = blur[hole]
    assert np.abs(inside - (200, 40, 40)).max() < 2, "the hole takes the surroundings' colour"
    assert (blur[~hole] == rgb[~hole]).all(), "pixels outside the mask are untouched"

    neutral = apply_fill(rgb, weight, "neutral", 0)
    assert (neutral[hole] == 127.5).all()

    n1, n1b, n2 = (apply_fill(rgb, weight, "noise", s) for s in (1, 1, 2))
    assert (n1 == n1b).all() and not (n1 == n2).all(), "seeded noise"
    assert n1[hole].std() > 60, "uniform colour noise"
    assert (n1[~hole] == rgb[~hole]).all()

    half = apply_fill(rgb, weight * 0.5, "neutral", 0)
    assert np.allclose(half[30, 40], (np.array([20, 220, 20]) + 127.5) / 2), "soft masks fill partly"


# --------------------------------------------------------------------------- engine


def test_outside_mask_is_bit_identical_on_an_odd_size_with_a_soft_border_mask(engine, monkeypatch):
    """517x389, a soft mask touching the left border, whole-picture mode (the VAE round trip covers
    every pixel): the decoded picture differs far from the mask, the returned one does not."""
    import impasto.backend.engine.edit as edit_mod

    decoded = []
    real_decode = edit_mod.decode

    def spy(pipe, latents, timings, fast=None):
        out = real_decode(pipe, latents, timings, fast)
        decoded.extend(out)
        return out

    monkeypatch.setattr(edit_mod, "decode", spy)
    img = scene(517, 389)
    mask = soft_border_mask(517, 389)
    res = engine.run(edit_request(img, mask, whole_picture=True, grow=3, mask_blur=6, steps=4))
    out = rgba(res.images[0])
    src = np.asarray(img.convert("RGBA"))
    assert out.shape == src.shape
    outside = far_from(mask, 3 + 6)
    assert outside.sum() > 0.7 * outside.size
    assert (out[outside] == src[outside]).all(), "outside mask + grow + feather: bit-identical"
    assert (out[mask == 255] != src[mask == 255]).any(axis=-1).mean() > 0.5, "the masked area was repainted"

    roundtrip = np.asarray(decoded[0].resize((517, 389), Image.LANCZOS).convert("RGBA"))
    far_changes = np.abs(roundtrip[outside].astype(int) - src[outside]).max(axis=-1)
    assert (far_changes > 3).mean() > 0.5, "without paste-back the VAE round trip changes far-away pixels"
    assert res.info["diffusion_size"] == [520, 392] and res.info["region"] == [0, 0, 517, 389]


def test_region_only_processing_on_a_large_canvas(engine):
    w, h = 4000, 3000
    img = Image.new("RGB", (w, h), (30, 60, 90))
    mask = np.zeros((h, w), np.uint8)
    mask[1400:1600, 2000:2300] = 255
    res = engine.run(edit_request(img, mask, steps=4, padding=32))
    info = res.info
    rx, ry, rw, rh = info["region"]
    assert rx <= 2000 - 32 - 4 and ry <= 1400 - 32 - 4 and rx + rw >= 2300 + 36 and ry + rh >= 1600 + 36
    assert rw * rh < 0.02 * w * h, "only the mask's neighbourhood is diffused"
    dw, dh = info["diffusion_size"]
    assert dw * dh <= 2 * 64 * 64, "at the tiny model's native size (64 px), not the canvas size"
    assert info["latent_shape"] == [1, 4, dh // 8, dw // 8], "the latents actually diffused"
    out = rgba(res.images[0])
    assert out.shape == (h, w, 4)
    assert (out[:1300] == (30, 60, 90, 255)).all() and (out[:, :1900] == (30, 60, 90, 255)).all()
    p = res.patches[0]
    assert (p.x, p.y, p.image.width, p.image.height) == (1996, 1396, 308, 208)


def test_patches_are_the_changed_region_with_the_feathered_mask_as_alpha(engine):
    from impasto.backend.engine.masks import prepare

    img = scene(160, 120, seed=3)
    mask = np.zeros((120, 160), np.uint8)
    mask[40:80, 50:110] = 255
    mask[60:70, 30:50] = 100
    res = engine.run(edit_request(img, mask, grow=2, mask_blur=5))
    full, patch = rgba(res.images[0]), res.patches[0]
    prepared = prepare(mask, 2, 5)
    px, py, pw, ph = patch.x, patch.y, patch.image.width, patch.image.height
    assert (px, py, px + pw, py + ph) == prepared.feathered_bbox
    p = rgba(patch.image)
    assert (p[..., 3] == prepared.full()[py:py + ph, px:px + pw]).all(), "alpha = the feathered mask"
    under = full[py:py + ph, px:px + pw]
    src = np.asarray(img.convert("RGBA"))[py:py + ph, px:px + pw]
    a = p[..., 3]
    assert (under[a == 255] == p[a == 255]).all(), "opaque patch pixels are the result's pixels"
    assert (under[a == 0] == src[a == 0]).all()
    soft = (a > 0) & (a < 255)
    lo, hi = np.minimum(src, p)[soft][:, :3], np.maximum(src, p)[soft][:, :3]
    assert ((under[soft][:, :3] >= lo) & (under[soft][:, :3] <= hi)).all(), "soft pixels mix patch and picture"
    # a plugin inserting the patch as a layer gets the full result
    from impasto.backend.engine.paste import paste

    assert (paste(np.asarray(img.convert("RGBA")), p, px, py) == full).all()


def test_fill_modes_give_different_results_inside_and_the_same_outside(engine, monkeypatch):
    """Each fill changes what diffusion starts from inside the mask, and so the result there;
    nothing changes outside.  (The tiny model's random VAE maps very different latents to
    similar pixels, so the start latents carry the measurable difference.)"""
    import impasto.backend.engine.edit as edit_mod

    starts = {}
    real = edit_mod.denoise

    def spy(pipe, loaded, sampler, hooks, timings, **kw):
        starts[kw["prompt"][0]] = (kw["image"].clone(), np.asarray(kw["mask_image"])[::8, ::8] > 0)
        return real(pipe, loaded, sampler, hooks, timings, **kw)

    monkeypatch.setattr(edit_mod, "denoise", spy)
    img = scene(128, 96, seed=5)
    mask = np.zeros((96, 128), np.uint8)
    mask[30:70, 40:90] = 255
    outs = {}
    for fill in ("original", "blur", "neutral", "noise"):
        outs[fill] = rgba(engine.run(edit_request(img, mask, fill=fill, strength=0.6, prompt=fill)).images[0])
    inside, outside = mask == 255, far_from(mask, 4)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (outs[a][inside] != outs[b][inside]).any(), f"fill {a} and {b} give the same pixels"
            assert (outs[a][outside] == outs[b][outside]).all()
            (la, cells), (lb, _) = starts[a], starts[b]
            cells = torch.from_numpy(cells)
            gap = (la[:, :, cells] - lb[:, :, cells]).abs().mean() / la[:, :, cells].abs().mean()
            assert gap > 0.05, f"fill {a} and {b} start from nearly the same latents ({gap:.3f})"
            assert torch.equal(la[:, :, ~cells], lb[:, :, ~cells]), "outside the latent mask: the original"


def test_latents_outside_the_latent_mask_end_as_the_originals(engine, monkeypatch):
    """diffusers' 4-channel inpaint loop is Blended Latent Diffusion: check it on our inputs."""
    import impasto.backend.engine.edit as edit_mod

    seen = {}
    real = edit_mod.denoise

    def spy(pipe, loaded, sampler, hooks, timings, **kw):
        latents, steps = real(pipe, loaded, sampler, hooks, timings, **kw)
        seen.update(kw, out=latents)
        return latents, steps

    monkeypatch.setattr(edit_mod, "denoise", spy)
    img = scene(200, 160, seed=2)
    mask = np.zeros((160, 200), np.uint8)
    mask[60:100, 70:130] = 255
    engine.run(edit_request(img, mask, fill="neutral", batch_size=2))
    cells = torch.from_numpy(np.asarray(seen["mask_image"])[::8, ::8] > 0)
    assert 0 < int(cells.sum()) < cells.numel()
    start, out = seen["image"], seen["out"]
    keep = ~cells.expand_as(out[:, 0])
    for c in range(out.shape[1]):
        assert torch.equal(out[:, c][keep], start[:, c][keep])
    assert not torch.equal(out[:, :, cells], start[:, :, cells])


def test_same_request_same_bytes_and_batch_images_follow_their_seeds(engine):
    img = scene(120, 90, seed=4)
    mask = np.zeros((90, 120), np.uint8)
    mask[20:60, 30:80] = 255
    a = engine.run(edit_request(img, mask, fill="noise", seed=11, batch_size=2))
    b = engine.run(edit_request(img, mask, fill="noise", seed=11, batch_size=2))
    assert [i.data for i in a.images] == [i.data for i in b.images]
    assert [p.image.data for p in a.patches] == [p.image.data for p in b.patches]
    assert a.images[0].data != a.images[1].data
    single = engine.run(edit_request(img, mask, fill="noise", seed=12))
    assert single.images[0].data == a.images[1].data, "image i of a batch equals a single run with seed + i"


def test_all_white_mask_reworks_the_whole_picture(engine):
    img = scene(100, 80, seed=6)
    res = engine.run(edit_request(img, np.full((80, 100), 255, np.uint8), strength=0.8))
    out = rgba(res.images[0])
    assert out.shape == (80, 100, 4)
    assert (out[..., :3] != np.asarray(img)).any(axis=-1).mean() > 0.9
    p = res.patches[0]
    assert (p.x, p.y, p.image.width, p.image.height) == (0, 0, 100, 80)
    assert (rgba(p.image)[..., 3] == 255).all()


def test_low_strength_keeps_a_step_floor_and_zero_strength_changes_nothing(engine):
    img = scene(96, 64, seed=8)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:50, 20:70] = 255
    low = engine.run(edit_request(img, mask, steps=20, strength=0.05))
    assert low.steps_run >= 4 and low.info["schedule_steps"] == 80
    zero = engine.run(edit_request(img, mask, strength=0.0))
    assert zero.steps_run == 0 and zero.patches == [] and zero.warnings
    assert zero.images[0].data == wire(img.convert("RGBA")).data


def test_max_size_caps_what_a_small_model_diffuses(models_dir, tmp_path):
    from impasto.backend.engine import Engine

    shutil.copytree(models_dir / "tiny", tmp_path / "capped")
    (tmp_path / "capped" / "impasto.json").write_text(json.dumps({"native_size": 64, "max_size": 48}))
    e = Engine(tmp_path)
    img = scene(203, 150)
    mask = np.zeros((150, 203), np.uint8)
    mask[40:120, 20:180] = 255
    whole = e.run(edit_request(img, mask, model="capped", whole_picture=True, steps=3))
    assert whole.info["diffusion_size"] == [48, 32] and whole.info["region"] == [0, 0, 203, 150]
    region = e.run(edit_request(img, mask, model="capped", steps=3))
    assert max(region.info["diffusion_size"]) <= 48
    assert rgba(whole.images[0]).shape == (150, 203, 4)


@pytest.fixture(scope="module")
def inpaint_engine(tmp_path_factory):
    from impasto.backend.engine import Engine
    from impasto.backend.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("inpaint-models")
    build_tiny_model(root / "tiny9", inpaint=True)
    return Engine(root)


def test_nine_channel_inpainting_model_uses_its_native_path_with_paste_back(inpaint_engine, monkeypatch):
    import impasto.backend.engine.edit as edit_mod

    seen = {}
    real = edit_mod.denoise

    def spy(pipe, loaded, sampler, hooks, timings, **kw):
        seen["unet_in"] = pipe.unet.config.in_channels
        seen["masked"] = kw["masked_image_latents"]
        return real(pipe, loaded, sampler, hooks, timings, **kw)

    monkeypatch.setattr(edit_mod, "denoise", spy)
    img = scene(203, 150, seed=9)
    mask = soft_border_mask(203, 150)
    res = inpaint_engine.run(edit_request(img, mask, model="tiny9", grow=0, mask_blur=4))
    assert res.info["inpaint_unet"] is True and seen["unet_in"] == 9
    assert seen["masked"].abs().sum() > 0, "the UNet sees real masked-image latents"
    out, src = rgba(res.images[0]), np.asarray(img.convert("RGBA"))
    outside = far_from(mask, 4)
    assert (out[outside] == src[outside]).all()
    assert (out[mask == 255] != src[mask == 255]).any(axis=-1).mean() > 0.5


def test_engine_refuses_a_mask_of_another_size(engine):
    from impasto.backend.engine import EngineError
    from impasto.backend.engine.edit import edit_pictures

    req = Generate(job="x", model="tiny", steps=2)
    with pytest.raises(EngineError) as err:
        edit_pictures(engine.loaded, scene(64, 48), Image.new("L", (48, 64), 255), req, [1], _hooks())
    assert err.value.field == "mask"


def _hooks():
    from impasto.backend.engine import JobHooks

    return JobHooks()


def test_pil_pictures_and_masks_of_any_mode(engine):
    """The engine converts what files hold: palette, grey, 16-bit, RGBA with transparency."""
    from impasto.backend.engine import JobHooks
    from impasto.backend.engine.edit import edit_pictures

    base = scene(96, 72, seed=10)
    mask8 = np.zeros((72, 96), np.uint8)
    mask8[20:50, 30:70] = 255
    mask16 = Image.fromarray(mask8.astype(np.uint16) * 257)
    assert mask16.mode.startswith("I;16")
    grey = np.asarray(base.convert("L"))
    see_through = base.convert("RGBA")
    see_through.putalpha(Image.fromarray(np.tile(np.arange(96, dtype=np.uint8) * 2, (72, 1))))
    pictures = {
        "P": (base.convert("P"), np.asarray(base.convert("P").convert("RGBA"))),
        "L": (base.convert("L"), np.asarray(base.convert("L").convert("RGBA"))),
        "I;16": (Image.fromarray(grey.astype(np.uint16) * 257), np.asarray(base.convert("L").convert("RGBA"))),
        "RGBA": (see_through, np.asarray(see_through)),
        "RGB": (base, np.asarray(base.convert("RGBA"))),
    }
    req = Generate(job="x", prompt="cat", model="tiny", steps=3, strength=0.7, seed=1, mask_blur=2)
    outside = far_from(mask8, 2)
    for mode, (picture, expected) in pictures.items():
        out = edit_pictures(engine.loaded, picture, mask16, req, [1], JobHooks())
        assert out.images[0].shape == (72, 96, 4), mode
        assert (out.images[0][outside] == expected[outside]).all(), mode
        assert (out.images[0][23:47, 33:67, 3] == 255).all(), f"{mode}: repainted pixels are opaque"


# --------------------------------------------------------------------------- daemon


def test_daemon_bad_edits_get_typed_errors_and_it_keeps_serving(client, daemon):
    img = scene(64, 48)
    cases = [
        (Generate(prompt="x", model="tiny", steps=2, init_image=wire(img), mask=wire_mask(np.full((40, 64), 255,
                                                                                                 np.uint8))),
         "bad_field", "mask", "differs"),
        (edit_request(img, np.zeros((48, 64), np.uint8), job=""), "bad_field", "mask", "empty"),
        (edit_request(img, np.full((48, 64), 255, np.uint8), job="", strength=1.5), "bad_field", "strength", ""),
        (edit_request(img, np.full((48, 64), 255, np.uint8), job="", strength=-0.1), "bad_field", "strength", ""),
        (edit_request(img, np.full((48, 64), 255, np.uint8), job="", fill="smudge"), "bad_field", "fill", ""),
    ]
    for req, code, field, words in cases:
        with pytest.raises(JobFailed) as err:
            client.submit(req).wait(timeout=60)
        assert (err.value.code, err.value.field) == (code, field), err.value.message
        assert words in err.value.message
    ok = client.submit(edit_request(img, np.full((48, 64), 255, np.uint8), job="", steps=2)).wait(timeout=60)
    assert isinstance(ok, Result) and ok.images[0].width == 64
    assert daemon.alive()


def test_daemon_refuses_frames_whose_bytes_do_not_match_the_header(daemon, client):
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    from conftest import plain_auth

    plain_auth(sock).connect(daemon.endpoint)
    try:
        img = scene(32, 24)
        mask = np.full((24, 32), 255, np.uint8)

        def ask(frames):
            sock.send_multipart(frames)
            assert sock.poll(10000), "the daemon must answer"
            return codec.decode(sock.recv_multipart())

        frames = codec.encode(edit_request(img, mask, job="short-image"))
        frames[1] = frames[1][:-5]
        reply = ask(frames)
        assert isinstance(reply, Error) and reply.code == "bad_field" and reply.field == "init_image"
        assert reply.job == "short-image" and "bytes" in reply.message

        frames = codec.encode(edit_request(img, mask, job="long-mask"))
        frames[2] = frames[2] + b"\x00" * 3
        reply = ask(frames)
        assert isinstance(reply, Error) and reply.field == "mask" and reply.job == "long-mask"

        frames = codec.encode(edit_request(img, mask, job="missing-frame"))
        reply = ask(frames[:2])
        assert isinstance(reply, Error) and reply.code == "bad_message"
    finally:
        sock.close()
    assert client.ping(timeout=5) and daemon.alive()


def test_cancel_mid_edit_leaves_no_result_and_a_healthy_daemon(client, daemon):
    img = scene(96, 64)
    mask = np.full((64, 96), 255, np.uint8)
    job = client.submit(edit_request(img, mask, job="", steps=200, strength=1.0, whole_picture=True))
    events = []
    for ev in job.events(timeout=60):
        events.append(ev)
        if isinstance(ev, Progress) and ev.step == 1:
            job.cancel()
    assert isinstance(events[-1], Cancelled)
    assert not any(isinstance(e, Result) for e in events), "no partial result"
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps and max(steps) < 200
    with pytest.raises(JobCancelled):
        job.wait(timeout=1)
    status = client.status()
    assert not status.busy and status.queue == 0
    after = client.submit(edit_request(img, mask, job="", steps=1, strength=1.0)).wait(timeout=60)
    assert isinstance(after, Result) and after.steps_run == 1 and daemon.alive()


# --------------------------------------------------------------------------- CLI


def run_cli(daemon, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "impasto.backend.cli", *args], env=daemon.env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_edit_end_to_end(daemon, tmp_path):
    img = scene(141, 99, seed=12)
    img.convert("P").save(tmp_path / "in.png")                  # a palette file
    mask = np.zeros((99, 141), np.uint8)
    mask[30:70, 40:100] = 255
    Image.fromarray(mask.astype(np.uint16) * 257).save(tmp_path / "mask.png")  # a 16-bit mask
    out, patch = tmp_path / "out.png", tmp_path / "patch.png"
    proc = run_cli(daemon, "edit", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "a red circle",
                   "--model", "tiny", "--steps", "3", "--seed", "5", "--no-spawn", "-q", "--fill", "blur",
                   "--mask-blur", "3", "--grow", "2", "-o", str(out), "--patch", str(patch))
    assert proc.returncode == 0, proc.stderr
    src = np.asarray(Image.open(tmp_path / "in.png").convert("RGB"))
    res = np.asarray(Image.open(out).convert("RGB"))
    assert res.shape == src.shape
    outside = far_from(mask, 5)
    assert (res[outside] == src[outside]).all()
    assert (res[mask == 255] != src[mask == 255]).any(axis=-1).mean() > 0.5
    assert "seed 5" in proc.stdout and "patch at" in proc.stdout
    assert Image.open(patch).mode == "RGBA"

    Image.new("L", (141, 99), 0).save(tmp_path / "empty.png")
    empty = run_cli(daemon, "edit", str(tmp_path / "in.png"), str(tmp_path / "empty.png"), "x", "--model", "tiny",
                    "--no-spawn", "-q", "-o", str(tmp_path / "never.png"))
    assert empty.returncode == 1 and "mask is empty" in empty.stderr
    Image.new("L", (140, 99), 255).save(tmp_path / "small.png")
    small = run_cli(daemon, "edit", str(tmp_path / "in.png"), str(tmp_path / "small.png"), "x", "--model", "tiny",
                    "--no-spawn", "-q", "-o", str(tmp_path / "never.png"))
    assert small.returncode == 1 and "same size" in small.stderr
    assert not (tmp_path / "never.png").exists()
