"""The docker's decisions without Krita: selection -> mask -> request -> where the layer goes."""
from __future__ import annotations

import pytest

from impasto.protocol.messages import Image, Patch, Result
from impasto.plugin_krita.impasto_krita import masks, planning
from impasto.plugin_krita.impasto_krita.pixels import RGBA8, PixelFormat, from_rgba8
from impasto.plugin_krita.impasto_krita.placement import PlacementError, plan_layers
from impasto.plugin_krita.impasto_krita.planning import CanvasSnapshot, PlanError, Settings

W, H = 40, 30


def canvas_rgba(w=W, h=H) -> bytes:
    return bytes((x * 6) % 256 if c == 0 else (y * 8) % 256 if c == 1 else 99 if c == 2 else 255
                 for y in range(h) for x in range(w) for c in range(4))


def rect_mask(x, y, w, h, value=255, cw=W, ch=H) -> bytes:
    m = bytearray(cw * ch)
    for yy in range(y, y + h):
        m[yy * cw + x:yy * cw + x + w] = bytes([value]) * w
    return bytes(m)


def snapshot_for(settings: Settings, selection=None, fmt=RGBA8, rgba=None) -> CanvasSnapshot:
    """What the docker reads from Krita: the window from read_plan, raw pixels in ``fmt``."""
    rgba = rgba or canvas_rgba()
    read = planning.read_plan(settings, W, H, selection)
    raw = from_rgba8(masks.crop(rgba, W, read.window, 4), fmt) if read.needs_pixels else None
    win_sel = masks.crop(selection, W, read.window, 1) if read.mask_info else None
    return CanvasSnapshot(W, H, read.window, raw, fmt, win_sel, read.mask_info)


# --------------------------------------------------------------------------- masks


def test_mask_bounds_and_softness():
    m = rect_mask(5, 7, 10, 4)
    info = masks.analyse(m, W, H)
    assert info.bounds == (5, 7, 10, 4)
    assert not info.soft
    assert info.coverage == pytest.approx(40 / (W * H))
    soft = bytearray(m)
    soft[7 * W + 5] = 128
    assert masks.analyse(bytes(soft), W, H).soft
    assert masks.analyse(bytes(W * H), W, H).empty


def test_a_selection_read_within_its_box_plans_what_the_whole_plane_plans():
    """KritaHost reads only the selection's bounding box: analysis, window and window mask must not change."""
    import random

    rng = random.Random(5)
    for case in range(60):
        full = bytearray(W * H)
        for _ in range(rng.randint(1, 3)):                    # a few soft or hard blobs
            x, y = rng.randrange(W - 4), rng.randrange(H - 4)
            w, h = rng.randint(1, W - x), rng.randint(1, H - y)
            value = rng.choice((255, 255, 128, 7))
            for yy in range(y, y + h):
                full[yy * W + x:yy * W + x + w] = bytes([value]) * w
        full = bytes(full)
        bx, by, bw, bh = masks.mask_bounds(full, W, H)
        # Krita's box is the exact bounds; a looser box (what a clipped or stale rect would give) must agree too
        lx, ly = max(0, bx - rng.randint(0, 3)), max(0, by - rng.randint(0, 3))
        lw, lh = min(W, bx + bw + rng.randint(0, 3)) - lx, min(H, by + bh + rng.randint(0, 3)) - ly
        for box in ((bx, by, bw, bh), (lx, ly, lw, lh)):
            sel = masks.BoxedMask(box, masks.crop(full, W, box, 1))
            assert masks.analyse_boxed(sel, W, H) == masks.analyse(full, W, H), case
            for settings in (Settings(strength=1.0, padding=rng.randint(0, 12)), Settings(strength=0.5)):
                read_full = planning.read_plan(settings, W, H, full)
                read_box = planning.read_plan(settings, W, H, sel)
                assert (read_box.window, read_box.mask_info) == (read_full.window, read_full.mask_info), case
            window = (rng.randrange(W), rng.randrange(H), 0, 0)
            window = (window[0], window[1], rng.randint(1, W - window[0]), rng.randint(1, H - window[1]))
            assert masks.crop_boxed(sel, window) == masks.crop(full, W, window, 1), (case, box, window)


class _ReadingHost:
    """KritaHost's three reads over an in-memory RGBA8 canvas, counting what is read."""

    def __init__(self, rgba, size, selection=None):
        self.rgba, self.size, self.selection, self.pixel_reads = rgba, size, selection, []

    def canvas_size(self, doc):
        return self.size

    def read_selection(self, doc):
        if self.selection is None:
            return None
        box = masks.mask_bounds(self.selection, *self.size)
        return masks.BoxedMask(box, masks.crop(self.selection, self.size[0], box, 1))

    def read_pixels(self, doc, window):
        self.pixel_reads.append(window)
        fmt = PixelFormat.of("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")   # Krita's raw 8-bit layout
        return from_rgba8(masks.crop(self.rgba, self.size[0], window, 4), fmt), fmt, None


class _Doc:
    def colorModel(self):
        return "RGBA"

    def colorDepth(self):
        return "U8"

    def colorProfile(self):
        return "sRGB-elle-V2-srgbtrc.icc"


def test_generate_and_live_painting_read_the_canvas_through_one_path():
    """The docker's Generate and live mode read with ``read_canvas``: the planned window, pixels only when used."""
    cw, ch = 1200, 900
    rgba = canvas_rgba(cw, ch)
    host = _ReadingHost(rgba, (cw, ch))                          # no selection, 100 %: text to image
    snap = planning.read_canvas(host, _Doc(), Settings(strength=1.0))
    assert snap.window == (0, 0, cw, ch) and snap.mask_info is None and host.pixel_reads == []
    live = planning.read_canvas(host, _Doc(), Settings(strength=1.0), live=True)   # live always refines
    assert live.window == (0, 0, cw, ch) and live.rgba8() == rgba and host.pixel_reads == [(0, 0, cw, ch)]

    sel = rect_mask(500, 400, 60, 40, cw=cw, ch=ch)
    host = _ReadingHost(rgba, (cw, ch), sel)
    for settings in (Settings(strength=1.0, padding=4), Settings(strength=0.5, padding=4)):
        for is_live in (False, True):
            snap = planning.read_canvas(host, _Doc(), settings, live=is_live)
            plan = planning.read_plan(settings, cw, ch, sel, live=is_live)
            assert (snap.window, snap.mask_info) == (plan.window, plan.mask_info)
            x, y, w, h = snap.window                            # only the selection and its context
            assert w * h < cw * ch / 2 and x <= 500 and y <= 400 and x + w >= 560 and y + h >= 440
            assert snap.selection == masks.crop(sel, cw, snap.window, 1)
            assert snap.rgba8() == masks.crop(rgba, cw, snap.window, 4)
            assert host.pixel_reads[-1] == snap.window


def test_mask_bounds_single_pixel_at_the_edges():
    m = bytearray(W * H)
    m[0] = 1
    m[-1] = 1
    assert masks.mask_bounds(bytes(m), W, H) == (0, 0, W, H)
    with pytest.raises(ValueError):
        masks.mask_bounds(b"\x00" * 5, W, H)


def test_crop_takes_the_right_rows():
    img = canvas_rgba()
    part = masks.crop(img, W, (3, 2, 4, 2), 4)
    assert part == img[(2 * W + 3) * 4:(2 * W + 7) * 4] + img[(3 * W + 3) * 4:(3 * W + 7) * 4]


# --------------------------------------------------------------------------- the decision table


def test_no_selection_full_strength_is_text_to_image_at_canvas_size():
    s = Settings(prompt="  a fox ", strength=1, steps=12, seed=5, batch_size=2)
    plan = planning.plan_job(snapshot_for(s), s)
    r = plan.request
    assert plan.kind == r.kind == "txt2img"
    assert (r.width, r.height) == (W, H) and r.init_image is None and r.mask is None
    assert (r.prompt, r.steps, r.seed, r.batch_size) == ("a fox", 12, 5, 2)
    assert plan.window == (0, 0, W, H)
    assert not planning.read_plan(s, W, H, None).needs_pixels


def test_no_selection_partial_strength_refines_the_visible_canvas():
    s = Settings(strength=0.4, seed=-1)
    plan = planning.plan_job(snapshot_for(s), s)
    r = plan.request
    assert plan.kind == "img2img"
    assert r.strength == pytest.approx(0.4) and r.seed == -1
    assert (r.init_image.width, r.init_image.height) == (W, H)
    assert r.init_image.data == canvas_rgba()


def test_selection_becomes_the_mask_with_the_artists_knobs():
    s = Settings(strength=1, mask_blur=6, grow=2, padding=8, fill="blur",
                 concepts=[{"name": "mycat", "weight": 0.8, "enabled": True},
                           {"name": "off", "weight": 1.0, "enabled": False}])
    sel = rect_mask(10, 8, 6, 5)
    plan = planning.plan_job(snapshot_for(s, sel), s)
    r = plan.request
    assert plan.kind == r.kind == "edit"
    assert r.strength == 1.0
    assert (r.mask_blur, r.grow, r.padding, r.fill, r.whole_picture) == (6, 2, 8, "blur", False)
    assert r.concepts == [("mycat", 0.8)]
    assert r.mask.format == "gray8" and (r.mask.width, r.mask.height) == (r.init_image.width, r.init_image.height)
    # the mask inside the window is the selection inside the window
    wx, wy, ww, wh = plan.window
    assert r.mask.data == masks.crop(sel, W, plan.window, 1)
    assert plan.selection_bounds == (10, 8, 6, 5)


def test_soft_selection_values_reach_the_daemon_unchanged():
    s = Settings(whole_picture=True)
    sel = bytearray(rect_mask(4, 4, 12, 10))
    for i, v in enumerate((32, 96, 160, 224)):
        sel[4 * W + 4 + i] = v
    plan = planning.plan_job(snapshot_for(s, bytes(sel)), s)
    assert plan.window == (0, 0, W, H)  # whole picture: the whole canvas is sent
    assert plan.request.mask.data == bytes(sel)
    assert plan.mask_info.soft


def test_selection_with_partial_strength_refines_the_selection():
    s = Settings(strength=0.55)
    plan = planning.plan_job(snapshot_for(s, rect_mask(1, 1, 3, 3)), s)
    assert plan.kind == "edit" and plan.request.strength == pytest.approx(0.55)
    assert plan.label.startswith("Refine selection 55 %")


def test_empty_selection_counts_as_no_selection():
    s = Settings(strength=1)
    plan = planning.plan_job(snapshot_for(s, bytes(W * H)), s)
    assert plan.kind == "txt2img"


def test_only_masked_window_covers_the_daemons_context():
    s = Settings(padding=16, mask_blur=4, grow=3, strength=1)
    big_w, big_h = 4000, 3000
    sel = (1000, 1200, 300, 40)  # a thin strip: the daemon widens its crop to 2:1
    read = planning.read_plan(s, big_w, big_h, rect_mask(*sel, cw=big_w, ch=big_h))
    wx, wy, ww, wh = read.window
    margin = 16 + 4 + 3
    assert wx <= 1000 - margin and wy <= 1200 - margin
    assert wx + ww >= 1300 + margin and wy + wh >= 1240 + margin
    assert wh * 2 >= ww  # no thinner than the daemon's 2:1 crop
    assert ww * wh < big_w * big_h / 50  # and nowhere near the whole 12-megapixel canvas
    # clipped at the canvas edge
    x, y, w, h = planning.read_plan(s, 50, 40, rect_mask(0, 0, 5, 5, cw=50, ch=40)).window
    assert (x, y) == (0, 0) and w <= 50 and h == 40


def test_deep_documents_are_converted_for_the_request():
    s = Settings(strength=0.3)
    fmt = PixelFormat("RGBA", "U16", True)
    plan = planning.plan_job(snapshot_for(s, fmt=fmt), s)
    assert plan.request.init_image.data == canvas_rgba()  # exact: 8-bit art survives 16-bit linear


@pytest.mark.parametrize("change,field,words", [
    (dict(cfg_scale=45.0), "cfg_scale", "CFG scale"),
    (dict(steps=-1), "steps", "Steps"),
    (dict(batch_size=9), "batch_size", "Batch size"),
    (dict(sampler="plms"), "sampler", "Sampler"),
    (dict(seed=-2), "seed", "seed"),
])
def test_bad_values_are_typed_errors_in_artists_words(change, field, words):
    s = Settings(**change)
    with pytest.raises(PlanError) as err:
        planning.plan_job(snapshot_for(Settings()), s)
    assert words.lower() in err.value.message.lower()
    assert err.value.field == field


def test_canvas_over_the_daemons_cap_says_what_to_do():
    from impasto.protocol.messages import Limits

    s = Settings(strength=1)
    snap = CanvasSnapshot(5000, 5000, (0, 0, 5000, 5000))
    with pytest.raises(PlanError) as err:
        planning.plan_job(snap, s, Limits())
    assert "select a region" in err.value.message


def test_action_label_follows_selection_and_strength():
    assert planning.action_label(Settings(strength=1), False) == "Generate"
    assert planning.action_label(Settings(strength=0.7), False) == "Refine 70 %"
    assert planning.action_label(Settings(strength=1), True) == "Inpaint selection"
    assert planning.action_label(Settings(strength=0.2), True) == "Refine selection 20 %"


def test_settings_json_is_tolerant():
    s = Settings(prompt="cat", steps=31, concepts=[{"name": "a", "weight": 0.5, "enabled": True}])
    assert Settings.from_json(s.to_json()) == s
    odd = Settings.from_json('{"steps": "many", "cfg_scale": 5, "prompt": 3, "bogus": 1, "random_seed": 0}')
    assert odd.steps == 0 and odd.cfg_scale == 5.0 and odd.prompt == "" and odd.seed == -1
    # the docker's older form (percent strength, "feather", "batch", a random flag) is read, not lost
    old = Settings.from_json('{"strength": 60, "feather": 8, "batch": 2, "random_seed": true, "seed": 7}')
    assert (old.strength, old.mask_blur, old.batch_size, old.seed) == (0.6, 8, 2, -1)
    assert planning.load_form(None).strength == 1.0  # a first run starts at the Generate end
    assert Settings.from_json("not json") == Settings()
    assert Settings.from_json('{"concepts": [1, 2]}').concepts == []


# --------------------------------------------------------------------------- placement


def fake_patch_result(plan, dx, dy, pw, ph, seeds=(11,)):
    patches, images = [], []
    for i, _ in enumerate(seeds):
        data = bytes([200, 10 * i, 0, 255]) * (pw * ph)
        patches.append(Patch(dx, dy, Image(pw, ph, data)))
        ww, wh = plan.window[2], plan.window[3]
        images.append(Image(ww, wh, bytes(ww * wh * 4)))
    return Result(images=images, seeds=list(seeds), patches=patches)


def test_patch_lands_at_the_window_offset_as_its_own_layer():
    s = Settings(prompt="a small red house", padding=4, mask_blur=2, strength=1)
    sel = rect_mask(20, 14, 8, 6)
    plan = planning.plan_job(snapshot_for(s, sel), s)
    wx, wy = plan.window[:2]
    # the daemon's patch is relative to the request's image (the window)
    result = fake_patch_result(plan, 20 - 2 - wx, 14 - 2 - wy, 12, 10)
    layers = plan_layers(plan, result)
    assert len(layers) == 1
    layer = layers[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (18, 12, 12, 10)
    assert layer.visible and layer.seed == 11
    assert layer.name == "Impasto Inpainted · a small red house · seed 11"
    assert layer.rgba == bytes([200, 0, 0, 255]) * 120


def test_batch_layers_first_visible_others_hidden():
    s = Settings(prompt="x" * 80, batch_size=3, strength=1)
    plan = planning.plan_job(snapshot_for(s), s)
    img = Image(W, H, bytes(W * H * 4))
    layers = plan_layers(plan, Result(images=[img, img, img], seeds=[4, 5, 6]))
    assert [l.visible for l in layers] == [True, False, False]
    assert [(l.x, l.y, l.width, l.height) for l in layers] == [(0, 0, W, H)] * 3
    assert layers[1].name.startswith("Impasto Generated 2/3 · ") and layers[1].name.endswith("· seed 5")
    assert "…" in layers[0].name  # long prompts are shortened


def test_edit_without_patches_falls_back_to_the_selection_box():
    s = Settings(whole_picture=True)
    sel = rect_mask(5, 6, 4, 3, value=128)
    plan = planning.plan_job(snapshot_for(s, sel), s)
    full = canvas_rgba()
    layers = plan_layers(plan, Result(images=[Image(W, H, full)], seeds=[1]))
    layer = layers[0]
    assert (layer.x, layer.y, layer.width, layer.height) == (5, 6, 4, 3)
    assert layer.rgba[3::4] == bytes([128]) * 12  # alpha = the (soft) selection
    assert layer.rgba[0:3] == full[(6 * W + 5) * 4:(6 * W + 5) * 4 + 3]


def test_results_that_do_not_fit_are_refused():
    s = Settings()
    plan = planning.plan_job(snapshot_for(s), s)
    with pytest.raises(PlacementError):
        plan_layers(plan, Result(images=[Image(8, 8, bytes(256))], seeds=[1]))
    with pytest.raises(PlacementError):
        plan_layers(plan, Result(images=[], seeds=[]))
    edit_s = Settings(padding=0, mask_blur=0)
    edit = planning.plan_job(snapshot_for(edit_s, rect_mask(2, 2, 3, 3)), edit_s)
    ww, wh = edit.window[2], edit.window[3]
    bad = Result(images=[Image(ww, wh, bytes(ww * wh * 4))], seeds=[1],
                 patches=[Patch(ww - 2, 0, Image(4, 4, bytes(64)))])
    with pytest.raises(PlacementError):
        plan_layers(edit, bad)
