"""Seamless inpaints: the colour match (Generate.colour_match, default on).

The module's own contract on a synthetic edit (a tinted, graded surround
and a "generated" region that drifted in colour), then the engine's edit path
on the tiny model: outside pixels bit-identical with the match on, the seam
step smaller with it than without (same request, same seed), and off exactly
the unmatched path.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from impasto.backend.engine import colour_match as cm
from impasto.backend.engine import masks
from impasto.backend.engine.paste import make_patch, paste
from impasto.protocol.messages import Generate, Image as WireImage, ProtocolError, validate_job
from impasto.protocol.settings import Settings

H, W = 96, 128


def graded(tint=(0, 0, 0)) -> np.ndarray:
    """An opaque RGBA picture: a diagonal gradient plus a tint."""
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.zeros((H, W, 4), np.uint8)
    out[..., 0] = np.clip(40 + xx + tint[0], 0, 255)
    out[..., 1] = np.clip(60 + yy + tint[1], 0, 255)
    out[..., 2] = np.clip(150 + (xx + yy) // 4 + tint[2], 0, 255)
    out[..., 3] = 255
    return out


def disc_mask(r=25) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.where((yy - H // 2) ** 2 + (xx - W // 2) ** 2 < r * r, 255, 0).astype(np.uint8)


def drifted(orig: np.ndarray, shift, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(orig[..., :3].astype(np.float64) + shift + rng.normal(0, 6, orig[..., :3].shape),
                   0, 255).astype(np.uint8)


def test_match_removes_a_colour_drift_at_the_seam_and_touches_only_the_mask():
    orig = graded()
    feathered = masks.feather(disc_mask(), 6)
    gen = drifted(orig, (30, -20, 15))
    out, info = cm.match(gen, orig, feathered)
    assert info["applied"] and info["ring_px"] > 500
    # the drift is measured and undone (within the noise)
    assert np.allclose(info["seam_shift"], (-30, 20, -15), atol=3), info
    assert np.array_equal(out[feathered == 0], gen[feathered == 0]), "only pixels inside the feathered mask change"
    unmatched = paste(orig, make_patch(gen, feathered), 0, 0)
    matched = paste(orig, make_patch(out, feathered), 0, 0)
    assert np.array_equal(matched[feathered == 0], orig[feathered == 0])
    floor = cm.seam_difference(orig, feathered)
    before, after = cm.seam_difference(unmatched, feathered), cm.seam_difference(matched, feathered)
    assert before > floor + 10, (before, floor)
    assert after < floor + 3, (after, floor, before)


def test_a_gradient_error_gets_a_gradient_correction():
    """Generated colours that are right on the left and too dark on the right: the field follows."""
    orig = graded(tint=(20, 10, -30))
    feathered = masks.feather(disc_mask(30), 4)
    ramp = np.linspace(0, -40, W)[None, :, None]
    gen = drifted(orig, ramp, seed=1)
    out, info = cm.match(gen, orig, feathered)
    field = out.astype(np.float64) - gen.astype(np.float64)
    band = (feathered > 0) & (feathered < 255)     # the seam, where the correction is at full strength
    xx = np.mgrid[0:H, 0:W][1]
    left = field[band & (xx < W // 2 - 15)].mean()
    right = field[band & (xx > W // 2 + 15)].mean()
    assert right - left > 20, (left, right)       # more correction where the error was larger
    before = cm.seam_difference(paste(orig, make_patch(gen, feathered), 0, 0), feathered)
    after = cm.seam_difference(paste(orig, make_patch(out, feathered), 0, 0), feathered)
    assert after < 0.5 * before, (before, after)


def test_new_content_crossing_the_seam_stays_new_content():
    """A white stroke of new content crossing the seam is dimmed at most a little, never undone.

    Near the seam any colour difference looks like drift, so the stroke pulls the
    field locally; the robust clipping bounds how far, and the stroke stays white.
    """
    orig = graded()
    feathered = masks.feather(disc_mask(), 6)
    gen = drifted(orig, (0, 0, 0), seed=2)
    stroke = np.zeros((H, W), bool)
    stroke[: H // 2, W // 2 - 3: W // 2 + 3] = True
    gen[stroke] = 255
    out, info = cm.match(gen, orig, feathered)
    assert max(abs(v) for v in info["seam_shift"]) < 8, info
    assert out[stroke & (feathered > 0)].min() >= 200, "the stroke was painted over"


def test_the_correction_fades_into_the_mask_so_new_content_keeps_its_colours():
    """A big mask repainted in another colour: the seam is matched, the middle is left as painted."""
    yy, xx = np.mgrid[0:H, 0:W]
    orig = graded()
    feathered = masks.feather(disc_mask(44), 4)
    gen = drifted(orig, (25, 0, -25), seed=3)
    middle = (yy - H // 2) ** 2 + (xx - W // 2) ** 2 < 12 ** 2
    gen[middle] = (250, 240, 20)                    # new yellow content in the middle
    out, info = cm.match(gen, orig, feathered)
    assert np.allclose(info["seam_shift"], (-25, 0, 25), atol=4), info
    assert np.array_equal(out[middle], gen[middle]), "the middle of the mask was recoloured"
    assert info["fade_px"] < 44 - 12


def test_no_ring_no_correction():
    """A mask covering everything (or a transparent surround) leaves nothing to compare: said, not guessed."""
    orig = graded()
    full = np.full((H, W), 255, np.uint8)
    gen = drifted(orig, (30, 0, 0))
    out, info = cm.match(gen, orig, full)
    assert not info["applied"] and "too few" in info["reason"] and out is gen
    clear = orig.copy()
    clear[..., 3] = 0
    _, info = cm.match(gen, clear, masks.feather(disc_mask(), 4))
    assert not info["applied"]


def test_protocol_field_default_on_validated_and_shared_by_settings():
    assert Generate().colour_match is True and Settings().colour_match is True
    img = WireImage(8, 8, bytes(8 * 8 * 4))
    req = Generate(job="j", init_image=img, mask=WireImage(8, 8, bytes(64), "gray8"), colour_match="yes")
    with pytest.raises(ProtocolError) as err:
        validate_job(req)
    assert err.value.field == "colour_match"
    assert Settings.from_dict({"colour_match": False}).colour_match is False
    assert Settings.from_dict({"colour_match": "no"}).colour_match is True   # wrong type keeps the default


def test_cli_flag_turns_it_off():
    from impasto.backend import cli, cli_edit  # noqa: F401  (cli_edit registers the edit command)

    argv = ["edit", "in.png", "mask.png", "a cat"]
    assert cli.settings_from_args(cli.build_parser().parse_args(argv)).colour_match is True
    args = cli.build_parser().parse_args(argv + ["--no-colour-match"])
    assert cli.settings_from_args(args).colour_match is False
    # and the one planner puts it on the wire for an edit (every client plans through it)
    from impasto.protocol import codec, planner

    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    for on in (True, False):
        s = Settings(prompt="a cat", colour_match=on)
        req = planner.plan_job((16, 16), s, planner.INPAINT, rgba=bytes(16 * 16 * 4), mask=mask.tobytes()).request
        req.job = "j"
        assert req.kind == "edit" and codec.decode(codec.encode(req)).colour_match is on


# --------------------------------------------------------------------------- the engine's edit path


def _edit(engine, colour_match: bool):
    from tests.test_edit import edit_request

    img = Image.fromarray(graded(tint=(40, -10, -40))[..., :3], "RGB")
    mask = disc_mask(22)
    req = edit_request(img, mask, colour_match=colour_match, mask_blur=6, strength=0.9, seed=11, steps=4)
    return img, mask, engine.run(req)


def _rgba(wire_img) -> np.ndarray:
    return np.frombuffer(wire_img.data, np.uint8).reshape(wire_img.height, wire_img.width, 4)


def test_engine_match_on_keeps_outside_bit_identical_and_shrinks_the_seam(engine):
    img, mask, on = _edit(engine, True)
    _, _, off = _edit(engine, False)
    original = np.asarray(img.convert("RGBA"))
    feathered = masks.prepare(mask, 0, 6).full()
    got_on, got_off = _rgba(on.images[0]), _rgba(off.images[0])
    assert np.array_equal(got_on[feathered == 0], original[feathered == 0]), "outside changed with the match on"
    assert np.array_equal(got_off[feathered == 0], original[feathered == 0])
    assert on.info["colour_match"]["applied"] is True and off.info["colour_match"] == {"applied": False,
                                                                                       "reason": "off"}
    seam_on, seam_off = cm.seam_difference(got_on, feathered), cm.seam_difference(got_off, feathered)
    # fails with the match off (the two would be equal): the tiny model's random VAE drifts colours a lot
    assert seam_on < 0.7 * seam_off, (seam_on, seam_off, on.info["colour_match"])


def test_engine_match_off_is_exactly_the_unmatched_path(engine, monkeypatch):
    """Off never calls the module; on with a do-nothing match gives the same bytes as off."""
    from impasto.backend.engine import edit

    _, _, off = _edit(engine, False)
    monkeypatch.setattr(edit.colour_match, "match", lambda gen, orig, f: (gen, {"applied": False, "ring_px": 0,
                                                                                  "reason": "test"}))
    _, _, identity = _edit(engine, True)
    assert [i.data for i in identity.images] == [i.data for i in off.images]
    assert [p.image.data for p in identity.patches] == [p.image.data for p in off.patches]

    def refuse(*a):
        raise AssertionError("called with colour_match off")

    monkeypatch.setattr(edit.colour_match, "match", refuse)
    _edit(engine, False)
