"""The GIMP plug-in's pure modules, without GIMP: geometry, pixels, requests, results, settings,
and the job flow / daemon link against the real daemon over the pure-Python ZMTP transport."""
from __future__ import annotations

import json
import queue
import sys
import threading
import time

import numpy as np
import pytest

from impasto.plugin_gimp import daemon_link, geometry, jobs, pixels, results, settings
from impasto.plugin_gimp.geometry import Rect
from impasto.plugin_gimp.job_runner import JobFlow, Outcome
from impasto.protocol.errors import PlanError
from impasto.protocol.messages import Image, Patch, Progress, ProtocolError, Result

# --------------------------------------------------------------------------- geometry


def test_selection_rect_reads_gimps_tuple():
    assert geometry.selection_rect((True, True, 10, 20, 40, 25)) == Rect(10, 20, 30, 5)
    # no selection: GIMP reports the whole image as bounds with non_empty False
    assert geometry.selection_rect((True, False, 0, 0, 640, 480)) is None
    assert geometry.selection_rect((False, True, 0, 0, 5, 5)) is None
    with pytest.raises(ValueError):
        geometry.selection_rect((True, 1, 2))


def test_rect_intersect_and_contains():
    a = Rect(0, 0, 10, 10)
    assert a.intersect(Rect(5, 5, 10, 10)) == Rect(5, 5, 5, 5)
    assert a.intersect(Rect(20, 20, 5, 5)).empty
    assert a.contains(Rect(2, 2, 8, 8)) and not a.contains(Rect(2, 2, 9, 8))


@pytest.mark.parametrize("sel, canvas", [
    (Rect(300, 200, 40, 30), Rect(0, 0, 4000, 3000)),      # small, in the middle of a big canvas
    (Rect(0, 0, 50, 20), Rect(0, 0, 517, 389)),            # touching the top-left corner
    (Rect(480, 350, 37, 39), Rect(0, 0, 517, 389)),        # touching the bottom-right corner
    (Rect(10, 100, 490, 12), Rect(0, 0, 517, 389)),        # a long thin strip
    (Rect(0, 0, 517, 389), Rect(0, 0, 517, 389)),          # everything selected
])
@pytest.mark.parametrize("padding, blur, grow", [(32, 4, 0), (0, 0, 0), (100, 16, 8), (8, 0, -6)])
def test_edit_window_holds_selection_feather_and_padding(sel, canvas, padding, blur, grow):
    f = jobs.JobFields(padding=padding, mask_blur=blur, grow=grow)
    ctx = jobs.edit_window(f, canvas, sel)
    assert canvas.contains(ctx)
    need = sel.grow(max(grow, 0) + blur + padding).intersect(canvas)
    assert ctx.contains(need), (ctx, need)
    # no side shorter than half the other (the region rule's 2:1) unless the canvas stops it
    assert 2 * ctx.height >= ctx.width or ctx.height == canvas.height
    assert 2 * ctx.width >= ctx.height or ctx.width == canvas.width


def test_edit_window_small_selection_costs_little():
    ctx = jobs.edit_window(jobs.JobFields(padding=32, mask_blur=4), Rect(0, 0, 6000, 4000), Rect(2000, 1500, 300, 200))
    assert ctx.width * ctx.height < 6000 * 4000 / 50


def test_edit_window_refuses_empty():
    with pytest.raises(ValueError):
        jobs.edit_window(jobs.JobFields(), Rect(0, 0, 10, 10), Rect(5, 5, 0, 3))


def test_place_patch_offsets_and_bounds():
    sent = Rect(100, 50, 64, 64)
    assert geometry.place_patch(sent, 10, 20, 30, 5) == Rect(110, 70, 30, 5)
    with pytest.raises(ValueError):
        geometry.place_patch(sent, 40, 0, 30, 5)   # sticks out of the sent picture
    with pytest.raises(ValueError):
        geometry.place_patch(sent, -1, 0, 3, 3)


def test_generate_size_defaults():
    assert geometry.generate_size((640, 480), 0, 0) == (640, 480)
    assert geometry.generate_size(None, 0, 0) == (512, 512)
    assert geometry.generate_size((640, 480), 256, 0) == (256, 480)


# --------------------------------------------------------------------------- pixels


def _rgba(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 4), dtype=np.uint8)


def test_crop_matches_numpy():
    a = _rgba(37, 23)
    r = Rect(5, 3, 17, 11)
    got = pixels.crop(a.tobytes(), 37, 23, 4, r)
    assert got == a[3:14, 5:22].tobytes()
    assert pixels.crop(a.tobytes(), 37, 23, 4, Rect(0, 4, 37, 2)) == a[4:6].tobytes()
    with pytest.raises(ValueError):
        pixels.crop(a.tobytes(), 37, 23, 4, Rect(30, 0, 10, 2))
    with pytest.raises(ValueError):
        pixels.crop(a.tobytes()[:-1], 37, 23, 4, r)


def test_alpha_helpers():
    a = _rgba(9, 7, 1)
    assert pixels.alpha_of(a.tobytes()) == a[..., 3].tobytes()
    opaque = np.frombuffer(pixels.with_alpha(a.tobytes()), np.uint8).reshape(a.shape)
    assert (opaque[..., 3] == 255).all() and (opaque[..., :3] == a[..., :3]).all()
    m = _rgba(9, 7, 2)[..., 0]
    mixed = np.frombuffer(pixels.with_alpha(a.tobytes(), m.tobytes()), np.uint8).reshape(a.shape)
    assert (mixed[..., 3] == m).all()
    with pytest.raises(ValueError):
        pixels.with_alpha(a.tobytes(), b"\0" * 5)
    rgb = a[..., :3].tobytes()
    assert pixels.rgba_to_rgb(pixels.rgb_to_rgba(rgb)) == rgb


def test_mask_bbox_and_coverage_keep_soft_edges():
    m = np.zeros((40, 50), np.uint8)
    assert pixels.mask_bbox(m.tobytes(), 50, 40) is None
    m[10:20, 5:9] = 255
    m[25, 44] = 1            # a faint soft edge still counts
    assert pixels.mask_bbox(m.tobytes(), 50, 40) == Rect(5, 10, 40, 16)
    zero, soft, full = pixels.mask_coverage(m.tobytes())
    assert (zero, soft, full) == (2000 - 41, 1, 40)
    assert set(pixels.binarize(bytes([0, 127, 128, 255]))) == {0, 255}


def test_paste_places_rows():
    dst = bytearray(10 * 6)
    pixels.paste(dst, 10, b"\x07" * 6, 3, 4, 2, 1)
    a = np.frombuffer(bytes(dst), np.uint8).reshape(6, 10)
    assert a[2:4, 4:7].min() == 7 and a.sum() == 7 * 6
    with pytest.raises(ValueError):
        pixels.paste(dst, 10, b"\x07" * 6, 3, 8, 2, 1)


# --------------------------------------------------------------------------- requests


def test_parse_concepts():
    assert jobs.parse_concepts("mycat:0.8, watercolor\n style-2 : -0.5") == [
        ("mycat", 0.8), ("watercolor", 1.0), ("style-2", -0.5)]
    assert jobs.parse_concepts("  ") == []
    for bad in ("../evil:1", "a:b:c", "mycat:0.5, mycat:1"):
        with pytest.raises(PlanError) as info:
            jobs.parse_concepts(bad)
        assert info.value.field.startswith("concepts")
    assert jobs.format_concepts([("mycat", 0.8), ("w", 1.0)]) == "mycat:0.8, w"


def test_requests_are_typed_and_validated():
    f = jobs.JobFields(prompt=" a fox ", seed=3, steps=5, sampler="ddim", concepts="mycat:0.7", strength=0.4,
                       mask_blur=2, grow=-1, padding=10, fill="noise")
    t = jobs.txt2img_request(f, 320, 200)
    assert (t.kind, t.width, t.height, t.prompt, t.concepts) == ("txt2img", 320, 200, "a fox", [("mycat", 0.7)])
    assert t.preview is True and t.job
    img = Image(8, 4, bytes(8 * 4 * 4))
    i = jobs.img2img_request(f, img)
    assert i.kind == "img2img" and i.strength == 0.4 and i.mask is None
    e = jobs.edit_request(f, img, Image(8, 4, b"\xff" * 32, "gray8"))
    assert (e.kind, e.mask_blur, e.grow, e.padding, e.fill) == ("edit", 2, -1, 10, "noise")
    assert t.job != i.job != e.job


@pytest.mark.parametrize("change, field", [
    (dict(steps=-1), "steps"), (dict(cfg_scale=99.0), "cfg_scale"),
    (dict(sampler="plms"), "sampler"), (dict(strength=1.5), "strength"), (dict(fill="paint"), "fill"),
    (dict(batch_size=99), "batch_size"), (dict(model="../x"), "model"), (dict(padding=-1), "padding"),
])
def test_bad_fields_name_the_field(change, field):
    f = jobs.JobFields(prompt="x", **{k: v for k, v in change.items() if k != "prompt"})
    if "prompt" in change:
        f.prompt = change["prompt"]
    img = Image(8, 8, bytes(256))
    with pytest.raises(PlanError) as info:
        jobs.edit_request(f, img, Image(8, 8, b"\xff" * 64, "gray8"))
    assert info.value.field == field


def test_edit_request_refuses_mismatched_mask():
    with pytest.raises(PlanError) as info:
        jobs.edit_request(jobs.JobFields(prompt="x"), Image(8, 8, bytes(256)), Image(4, 8, bytes(32), "gray8"))
    assert info.value.field == "mask"


def test_fields_from_config_uses_dashed_names_and_keeps_defaults():
    values = {"prompt": "p", "negative-prompt": "n", "cfg-scale": 4.5, "mask-blur": 9, "whole-picture": True}

    def get(name):
        if name not in values:
            raise TypeError(f"no property {name}")
        return values[name]

    f = jobs.JobFields.from_config(get)
    assert (f.prompt, f.negative_prompt, f.cfg_scale, f.mask_blur, f.whole_picture) == ("p", "n", 4.5, 9, True)
    assert f.steps == 0 and f.strength == 0.75          # 0 steps: the model's recommendation


def test_layer_name_is_short_and_has_the_seed():
    name = jobs.layer_name("inpaint", "a very long prompt " * 10, 42)
    assert name.startswith("Impasto inpaint: a very long") and name.endswith("(seed 42)") and len(name) < 80


# --------------------------------------------------------------------------- results -> layers


def _wire(arr):
    h, w = arr.shape[:2]
    return Image(w, h, np.ascontiguousarray(arr).tobytes(), "rgba8")


def test_edit_layers_use_patch_pixels_and_alpha_as_mask():
    sent = Rect(200, 100, 64, 48)
    full = _rgba(64, 48, 3)
    patch = _rgba(20, 10, 4)
    res = Result(images=[_wire(full)], seeds=[9], patches=[Patch(x=30, y=5, image=_wire(patch))], steps_run=3)
    (plan,) = results.edit_layers(res, sent, bytes(64 * 48))
    assert plan.place == Rect(230, 105, 20, 10) and plan.seed == 9
    got = np.frombuffer(plan.rgba, np.uint8).reshape(10, 20, 4)
    assert (got[..., :3] == patch[..., :3]).all() and (got[..., 3] == 255).all()
    assert plan.mask == patch[..., 3].tobytes()


def test_edit_layers_without_patches_fall_back_to_the_sent_selection():
    sent = Rect(10, 10, 8, 4)
    full = _rgba(8, 4, 5)
    mask = bytes(range(32))
    (plan,) = results.edit_layers(Result(images=[_wire(full)], seeds=[1], steps_run=2), sent, mask)
    assert plan.place == sent and plan.mask == mask and plan.rgba == full.tobytes()
    # nothing was diffused (strength too low): nothing to add
    assert results.edit_layers(Result(images=[_wire(full)], seeds=[1], steps_run=0), sent, mask) == []


def test_edit_layers_refuse_wrong_sizes():
    res = Result(images=[_wire(_rgba(8, 8))], seeds=[1], steps_run=1)
    with pytest.raises(ValueError):
        results.edit_layers(res, Rect(0, 0, 9, 8), bytes(72))
    bad_patch = Result(images=[_wire(_rgba(8, 8))], seeds=[1], steps_run=1,
                       patches=[Patch(x=4, y=4, image=_wire(_rgba(6, 6)))])
    with pytest.raises(ValueError):
        results.edit_layers(bad_patch, Rect(0, 0, 8, 8), bytes(64))


def test_refine_layers_keep_the_layers_transparency():
    region = Rect(17, 13, 6, 5)
    out = _rgba(6, 5, 8)
    out[..., 3] = 255
    source = _rgba(6, 5, 9)
    res = Result(images=[_wire(out), _wire(out)], seeds=[4, 5], steps_run=2)
    plans = results.refine_layers(res, region, source.tobytes())
    assert [p.seed for p in plans] == [4, 5] and all(p.place == region and p.mask is None for p in plans)
    assert pixels.alpha_of(plans[0].rgba) == source[..., 3].tobytes()
    opaque = source.copy()
    opaque[..., 3] = 255
    assert results.refine_layers(res, region, opaque.tobytes())[0].rgba == out.tobytes()
    assert results.refine_layers(res, region, None)[0].rgba == out.tobytes()


def test_generate_layers_at_origin():
    res = Result(images=[_wire(_rgba(5, 4))], seeds=[3])
    (plan,) = results.generate_layers(res)
    assert plan.place == Rect(0, 0, 5, 4) and plan.mask is None


# --------------------------------------------------------------------------- settings


def test_settings_round_trip_atomic(tmp_path):
    path = settings.settings_path(str(tmp_path / "profile"))
    s = settings.PluginSettings(endpoint="tcp://127.0.0.1:5555", auto_start=False, daemon_command="impasto serve",
                                transport="zmtp")
    settings.save(s, path)
    loaded, warnings = settings.load(path)
    assert loaded == s and warnings == []
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temp file left behind
    with pytest.raises(settings.SettingsError) as info:
        settings.save(settings.PluginSettings(endpoint="localhost:5555"), path)
    assert info.value.field == "endpoint"
    assert settings.load(path)[0] == s   # the bad save did not touch the file


def test_settings_bad_files_mean_defaults_with_warnings(tmp_path):
    path = tmp_path / "s.json"
    assert settings.load(path) == (settings.PluginSettings(), [])
    path.write_text("{not json")
    s, w = settings.load(path)
    assert s == settings.PluginSettings() and "unreadable" in w[0]
    path.write_text(json.dumps({"endpoint": "nope", "auto_start": "yes", "transport": "zmtp", "extra": 1}))
    s, w = settings.load(path)
    assert s.endpoint == "" and s.auto_start is True and s.transport == "zmtp" and len(w) == 2


def test_effective_endpoint_order():
    s = settings.PluginSettings()
    assert settings.effective_endpoint(s, {}) == "tcp://127.0.0.1:7877"
    assert settings.effective_endpoint(s, {"IMPASTO_ENDPOINT": "tcp://h:1"}) == "tcp://h:1"
    s.endpoint = "tcp://127.0.0.1:9"
    assert settings.effective_endpoint(s, {"IMPASTO_ENDPOINT": "tcp://h:1"}) == "tcp://127.0.0.1:9"


def test_daemon_argv():
    s = settings.PluginSettings()
    assert daemon_link.daemon_argv(s, "tcp://127.0.0.1:1", which=lambda n: "/opt/bin/impasto") == [
        "/opt/bin/impasto", "serve", "--endpoint", "tcp://127.0.0.1:1"]
    with pytest.raises(daemon_link.DaemonUnavailable) as info:
        daemon_link.daemon_argv(s, "tcp://127.0.0.1:1", which=lambda n: None)
    assert "Settings" in info.value.message
    s.daemon_command = "/v/bin/impasto serve --models-dir '/my models'"
    assert daemon_link.daemon_argv(s, "tcp://127.0.0.1:1") == [
        "/v/bin/impasto", "serve", "--models-dir", "/my models", "--endpoint", "tcp://127.0.0.1:1"]


# --------------------------------------------------------------------------- against the real daemon


def _free_endpoint():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_connect_without_daemon_and_without_auto_start_says_what_to_do():
    s = settings.PluginSettings(endpoint=_free_endpoint(), auto_start=False, transport="zmtp")
    t0 = time.monotonic()
    with pytest.raises(daemon_link.DaemonUnavailable) as info:
        daemon_link.connect(s, ping_timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert "impasto serve" in info.value.message and s.endpoint in info.value.message


def test_auto_start_reports_a_daemon_that_dies_at_start():
    s = settings.PluginSettings(endpoint=_free_endpoint(), auto_start=True, transport="zmtp",
                                daemon_command=f"{sys.executable} -c \"raise SystemExit(3)\"", start_timeout=30)
    statuses = []
    with pytest.raises(daemon_link.DaemonUnavailable) as info:
        daemon_link.connect(s, status=statuses.append, ping_timeout=0.3)
    assert "exited at start (code 3)" in info.value.message
    assert any("starting" in t for t in statuses)


def test_auto_start_starts_a_real_daemon(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))   # the spawned daemon's own data
    endpoint = _free_endpoint()
    s = settings.PluginSettings(endpoint=endpoint, auto_start=True, transport="zmtp", start_timeout=180,
                                daemon_command=f"{sys.executable} -m impasto.backend.cli serve --models-dir {models_dir}")
    statuses = []
    client = daemon_link.connect(s, status=statuses.append, ping_timeout=0.5)
    proc = client.spawned
    try:
        assert proc is not None and proc.poll() is None
        assert client.transport == "ZmtpDealer"
        assert client.status().default_model == "starter"  # the built-in starter is every daemon's default
        assert any(m["name"] == "tiny" for m in client.models().models)
        assert any("starting the Impasto daemon" in t for t in statuses)
        client.shutdown(timeout=10)
        proc.wait(60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _flow_settings(daemon):
    return settings.PluginSettings(endpoint=daemon.endpoint, auto_start=False, transport="zmtp")


class UiThread:
    """A stand-in for GLib's main loop: callbacks posted from other threads run here, in order."""

    def __init__(self):
        self.q = queue.Queue()
        self.thread_ids = set()

    def post(self, fn, *args):
        self.q.put((fn, args))

    def run_until(self, done, timeout=120):
        deadline = time.monotonic() + timeout
        while not done():
            fn, args = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            self.thread_ids.add(threading.get_ident())
            fn(*args)


def test_job_flow_hops_every_callback_to_the_ui_thread(daemon):
    ui = UiThread()
    seen = {"status": [], "progress": [], "done": [], "threads": set()}

    def record(kind):
        def cb(x):
            seen["threads"].add(threading.get_ident())
            seen[kind].append(x)
        return cb

    req = jobs.txt2img_request(jobs.JobFields(prompt="a red fox", model="tiny", steps=3, seed=4), 64, 64)
    flow = JobFlow(lambda status: daemon_link.connect(_flow_settings(daemon), status), req,
                   record("status"), record("progress"), record("done"), post=ui.post).start()
    ui.run_until(lambda: seen["done"])
    flow.thread.join(10)
    (outcome,) = seen["done"]
    assert outcome.ok and outcome.result.seeds == [4] and outcome.result.images[0].width == 64
    assert [p.step for p in seen["progress"]] == [1, 2, 3]
    assert all(isinstance(p, Progress) for p in seen["progress"])
    assert any(p.preview is not None for p in seen["progress"])     # live previews for the window
    assert seen["threads"] == {threading.get_ident()}               # all on the "UI" thread
    assert any("connecting" in s for s in seen["status"])


def test_job_flow_cancel(daemon):
    ui = UiThread()
    done, progress = [], []

    def on_progress(ev):
        progress.append(ev)
        if len(progress) == 2:
            flow.cancel()

    req = jobs.txt2img_request(jobs.JobFields(prompt="slow", model="tiny", steps=200, seed=1), 96, 96)
    flow = JobFlow(lambda status: daemon_link.connect(_flow_settings(daemon), status), req,
                   lambda s: None, on_progress, done.append, post=ui.post).start()
    t0 = time.monotonic()
    ui.run_until(lambda: done, timeout=180)
    assert done[0].cancelled and not done[0].ok
    assert len(progress) < 200
    print(f"cancel flow took {time.monotonic() - t0:.1f} s, {len(progress)} steps")


def test_job_flow_blocking_reports_daemon_errors_as_sentences(daemon):
    req = jobs.txt2img_request(jobs.JobFields(prompt="x", model="no-such-model", steps=2), 64, 64)
    outcome = JobFlow(lambda status: daemon_link.connect(_flow_settings(daemon), status), req,
                      lambda s: None, lambda p: None, lambda o: None).run_blocking(timeout=60)
    assert isinstance(outcome, Outcome) and not outcome.ok
    assert outcome.code == "unknown_model" and "no-such-model" in outcome.error


def test_job_flow_blocking_unreachable_daemon():
    s = settings.PluginSettings(endpoint=_free_endpoint(), auto_start=False, transport="zmtp")
    req = jobs.txt2img_request(jobs.JobFields(prompt="x"), 64, 64)
    outcome = JobFlow(lambda status: daemon_link.connect(s, status, ping_timeout=0.3), req,
                      lambda t: None, lambda p: None, lambda o: None).run_blocking(timeout=10)
    assert outcome.code == "unavailable" and s.endpoint in outcome.error


def test_edit_round_trip_places_patches_inside_the_sent_region(daemon):
    """Plug-in maths end to end without GIMP: crop a context, edit it, plan layers, composite them."""
    rng = np.random.default_rng(0)
    canvas_w, canvas_h = 301, 203
    canvas = rng.integers(0, 256, (canvas_h, canvas_w, 4), dtype=np.uint8)
    canvas[..., 3] = 255
    sel = Rect(150, 90, 40, 30)
    selection = np.zeros((canvas_h, canvas_w), np.uint8)
    selection[sel.y:sel.bottom, sel.x:sel.right] = 255
    selection[sel.y, sel.x:sel.right] = 100   # a soft top edge
    f = jobs.JobFields(prompt="a red fox", model="tiny", steps=3, seed=12, mask_blur=2, padding=8, strength=1.0)
    sent = jobs.edit_window(f, Rect(0, 0, canvas_w, canvas_h), sel)
    crop = canvas[sent.y:sent.bottom, sent.x:sent.right]
    mask = selection[sent.y:sent.bottom, sent.x:sent.right]
    req = jobs.edit_request(f, Image(sent.width, sent.height, crop.tobytes()),
                            Image(sent.width, sent.height, mask.tobytes(), "gray8"),
                            canvas=Rect(0, 0, canvas_w, canvas_h), sent=sent)
    outcome = JobFlow(lambda status: daemon_link.connect(_flow_settings(daemon), status), req,
                      lambda s: None, lambda p: None, lambda o: None).run_blocking(timeout=120)
    assert outcome.ok, outcome.error
    (plan,) = results.edit_layers(outcome.result, sent, mask.tobytes())
    # the layer covers the selection plus at most its feather band, and lies inside the sent region
    assert sent.contains(plan.place) and plan.place.contains(sel)
    assert sel.grow(f.mask_blur + 1).contains(plan.place)
    layer_mask = np.frombuffer(plan.mask, np.uint8).reshape(plan.place.height, plan.place.width)
    inner = sel.grow(-f.mask_blur - 1).translate(-plan.place.x, -plan.place.y)
    assert (layer_mask[inner.y:inner.bottom, inner.x:inner.right] == 255).all()
    # GIMP-style composite of the planned layer over the canvas == the daemon's full result there
    full = np.frombuffer(outcome.result.images[0].data, np.uint8).reshape(sent.height, sent.width, 4)
    p = plan.place
    layer = np.frombuffer(plan.rgba, np.uint8).reshape(p.height, p.width, 4).astype(float)
    a = layer_mask[..., None] / 255.0
    shown = np.rint(layer[..., :3] * a + canvas[p.y:p.bottom, p.x:p.right, :3] * (1 - a))
    local = p.translate(-sent.x, -sent.y)
    assert np.abs(shown - full[local.y:local.bottom, local.x:local.right, :3]).max() <= 1


def test_model_default_fields_use_the_models_recommendation():
    from impasto.protocol.settings import Recommendation

    f = jobs.JobFields(prompt="a red circle")
    assert (f.steps, f.cfg_scale, f.sampler) == (0, 0.0, jobs.MODEL_DEFAULT)
    f.recommendation = Recommendation(sampler="ddim", steps=20, cfg_scale=5.0)
    req = jobs.txt2img_request(f, 64, 64)
    assert (req.sampler, req.steps, req.cfg_scale) == ("ddim", 20, 5.0)
    f2 = jobs.JobFields(prompt="x", steps=7, sampler="euler", recommendation=f.recommendation)
    req = jobs.txt2img_request(f2, 64, 64)
    assert (req.sampler, req.steps, req.cfg_scale) == ("euler", 7, 5.0)
