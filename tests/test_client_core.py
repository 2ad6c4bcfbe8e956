"""The client core in protocol/: the one region rule, settings, planner, error sentences and launcher.

Pure Python (no torch, no Qt): these run in the fast tier.
"""
from __future__ import annotations

import json
import random
import sys
import time

import pytest

from impasto.protocol import launcher, planner, region
from impasto.protocol.errors import CLI, PlanError, describe_error, describe_exception
from impasto.protocol.messages import ErrorCode, Generate
from impasto.protocol.settings import Settings


# --------------------------------------------------------------------------- the one region rule


def _feathered_box(sel, canvas, grow, blur):
    """The engine's feathered box for a hard rectangular selection: the selection grown by grow + blur."""
    return region.expand(sel, max(grow, 0) + blur, canvas)


def test_the_window_never_changes_the_region_the_engine_picks():
    """Sending the planner's window gives the engine exactly the region it picks on the whole canvas."""
    rng = random.Random(14)
    checked = 0
    for _ in range(4000):
        cw, ch = rng.randint(16, 5000), rng.randint(16, 5000)
        w, h = rng.randint(1, min(cw, 900)), rng.randint(1, min(ch, 900))
        if rng.random() < 0.3:  # thin strips, where the 2:1 widening matters
            h = min(ch, max(1, w // rng.randint(3, 12))) if rng.random() < 0.5 else h
        x, y = rng.randint(0, cw - w), rng.randint(0, ch - h)
        sel = (x, y, x + w, y + h)
        padding, grow, blur = rng.choice((0, 8, 32, 100)), rng.choice((-4, 0, 3, 16)), rng.choice((0, 4, 8, 30))
        native = rng.choice((64, 256, 512, 768, 1024))
        max_size = rng.choice((0, native, 2 * native))
        feathered = _feathered_box(sel, (cw, ch), grow, blur)
        whole = region.only_masked(feathered, (cw, ch), padding, native, max_size)
        wx0, wy0, wx1, wy1 = region.send_window(sel, (cw, ch), padding, grow, blur)
        assert 0 <= wx0 and 0 <= wy0 and wx1 <= cw and wy1 <= ch
        inner = region.only_masked((feathered[0] - wx0, feathered[1] - wy0, feathered[2] - wx0, feathered[3] - wy0),
                                   (wx1 - wx0, wy1 - wy0), padding, native, max_size)
        moved = (inner.box[0] + wx0, inner.box[1] + wy0, inner.box[2] + wx0, inner.box[3] + wy0)
        assert (moved, inner.size) == (whole.box, whole.size), (sel, (cw, ch), padding, grow, blur, native, max_size)
        checked += 1
    assert checked == 4000


def test_engine_region_module_uses_the_protocol_rule():
    import ast
    from pathlib import Path

    src = (Path(__file__).parents[1] / "backend" / "engine" / "region.py").read_text()
    names = {n.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef)}
    assert "only_masked" not in names and "impasto.protocol.region" in src  # no second copy of the rule


def test_region_rule_keeps_two_to_one_and_native_area():
    r = region.only_masked((1000, 1000, 1300, 1020), (4000, 3000), 16, 512)
    assert r.width <= 2.05 * r.height and r.size[0] % 8 == 0 and r.size[1] % 8 == 0
    assert abs(r.size[0] * r.size[1] - 512 * 512) < 0.1 * 512 * 512
    assert abs(r.width / r.height - r.size[0] / r.size[1]) < 0.02


def test_mask_box_and_crops():
    w, h = 7, 5
    m = bytearray(w * h)
    m[2 * w + 3] = 9
    m[3 * w + 5] = 255
    assert region.mask_box(bytes(m), w, h) == (3, 2, 6, 4)
    assert region.mask_box(bytes(w * h), w, h) is None
    assert region.crop_bytes(bytes(m), w, (3, 2, 6, 4)) == bytes([9, 0, 0, 0, 0, 255])
    full = bytearray(w * h * 4)
    region.paste_bytes(full, w, (1, 1, 3, 2), bytes(range(8)), 4)
    assert full[(w + 1) * 4:(w + 3) * 4] == bytes(range(8))


# --------------------------------------------------------------------------- settings


def test_settings_defaults_are_the_protocols():
    s, g = Settings(), Generate()
    for name in ("seed", "strength", "batch_size", "mask_blur", "grow", "padding",
                 "fill", "whole_picture", "model"):
        assert getattr(s, name) == getattr(g, name), name
    assert (s.mask_blur, s.strength, s.seed) == (4, 0.75, -1)  # A1111 / krita-ai-diffusion conventions


def test_settings_json_round_trip_and_older_forms():
    s = Settings(prompt="p", steps=9).set_concepts([("a", 0.5)])
    assert Settings.from_json(s.to_json()) == s
    canvas_era = Settings.from_dict({"concepts": [["cat", 0.7]], "mask_blur": 8, "sampler": "nope"})
    assert canvas_era.active_concepts() == [("cat", 0.7)] and canvas_era.mask_blur == 8
    assert canvas_era.sampler == ""          # an unknown sampler falls back to "unset": the model's
    assert Settings.from_dict({"strength": True, "steps": 2.5}) == Settings()
    assert Settings.from_json("[1]") == Settings()


# --------------------------------------------------------------------------- planner


def test_planner_decision_table():
    s = Settings(prompt="x")
    doc = (40, 30)
    rgba = bytes(40 * 30 * 4)
    mask = bytearray(40 * 30)
    mask[10 * 40 + 10] = 255
    assert planner.plan_job(doc, s, "generate").kind == "txt2img"
    assert planner.plan_job(doc, s, "refine", rgba=rgba).kind == "img2img"
    assert planner.plan_job(doc, s, "refine", rgba=rgba, mask=bytes(mask)).kind == "edit"
    assert planner.plan_job(doc, s, "inpaint", rgba=rgba, mask=bytes(mask)).kind == "edit"
    with pytest.raises(PlanError) as err:
        planner.plan_job(doc, s, "inpaint", rgba=rgba, mask=bytes(40 * 30))   # an empty selection
    assert err.value.field == "mask"
    with pytest.raises(PlanError) as err:
        planner.plan_job(doc, Settings(steps=500), "generate")
    assert err.value.field == "steps" and err.value.message.startswith("Steps: 500")
    with pytest.raises(PlanError):
        planner.plan_job(doc, s, "refine", rgba=bytes(10))
    plan = planner.plan_job(doc, s, "refine", (5, 5, 25, 20), bytes(20 * 15 * 4), bytes([255]) * 300)
    assert plan.selection == (5, 5, 25, 20) and planner.place(plan, 2, 3, 4, 4) == (7, 8, 11, 12)
    with pytest.raises(ValueError):
        planner.place(plan, 18, 0, 4, 4)


# --------------------------------------------------------------------------- error sentences


@pytest.mark.parametrize("code, needle", [
    (ErrorCode.DAEMON_RESTARTED, "restarted"), (ErrorCode.CLIENT_CLOSED, "closed"),
    (ErrorCode.UNAVAILABLE, "impasto serve"), (ErrorCode.UNKNOWN_MODEL, "impasto models"),
    (ErrorCode.INTERNAL, "keeps running"), (ErrorCode.DUPLICATE_JOB, "already running"),
])
def test_errors_are_told_apart_by_code_not_text(code, needle):
    # the same text under every code: only the code can choose the sentence
    text = describe_error(code, "something happened", "", "tcp://x", CLI)
    assert needle in text and text[0].isupper() and text.endswith(".")


def test_field_errors_use_artists_words():
    assert describe_error("bad_field", "cfg_scale: 40 is outside 0..30", "cfg_scale").startswith("CFG scale: 40")
    assert "mask blur" in describe_error("bad_field", "mask_blur: 999 is outside 0..256", "mask_blur").lower()
    assert describe_exception(PlanError("nothing selected", "mask")) == "Nothing selected."
    text = describe_error("unknown_concept", "concepts[1]: no concept named 'inky' in the library (known: ink)",
                          "concepts[1]", host=CLI)
    assert text.startswith("No concept named 'inky' in the library (known: ink).") and "concepts[" not in text


# --------------------------------------------------------------------------- the launcher


def test_serve_argv_adds_only_what_is_missing():
    assert launcher.serve_argv(["impasto"], "tcp://h:1") == ["impasto", "serve", "--endpoint", "tcp://h:1"]
    assert launcher.serve_argv(["i", "serve", "--endpoint", "e"], "x", "/m") == [
        "i", "serve", "--endpoint", "e", "--models-dir", "/m"]


def test_spawned_daemon_is_detached_logs_to_impasto_home_and_loses_host_pythonpath(tmp_path, monkeypatch):
    """A stand-in daemon (a real child process) reports what the launcher gave it."""
    home = tmp_path / "home"
    out = tmp_path / "seen.json"
    script = ("import json, os, sys; print('hello from the daemon');"
              f"json.dump({{'sid': os.getsid(0) == os.getpid(), 'pp': os.environ.get('PYTHONPATH'),"
              f" 'home': os.environ.get('IMPASTO_HOME')}}, open({str(out)!r}, 'w'))")
    monkeypatch.setenv("PYTHONPATH", "/krita/bundled/site-packages")
    # a different interpreter path (a symlink would resolve to ours): the host's PYTHONPATH must not leak
    other = tmp_path / "python-other"
    other.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    other.chmod(0o755)
    proc = launcher.spawn_daemon([str(other), "-c", script], {"IMPASTO_HOME": str(home)})
    assert proc.wait(30) == 0
    seen = json.loads(out.read_text())
    assert seen == {"sid": True, "pp": None, "home": str(home)}
    log = launcher.daemon_log_path({"IMPASTO_HOME": str(home)})
    assert log == home / "logs" / "daemon.log" and "hello from the daemon" in log.read_text()


def test_connect_without_a_daemon_says_how_to_start_one():
    from conftest import free_port

    t0 = time.monotonic()
    with pytest.raises(launcher.DaemonUnavailable) as err:
        launcher.connect(f"tcp://127.0.0.1:{free_port()}", None, ping_timeout=0.3, hint="run the thing")
    assert "run the thing" in err.value.message and time.monotonic() - t0 < 5
    assert describe_exception(err.value).startswith("No Impasto daemon answers")


def test_a_daemon_that_dies_at_start_is_reported_with_its_log(tmp_path, monkeypatch):
    from conftest import free_port

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path))
    cmd = [sys.executable, "-c", "import sys; print('model folder is broken'); sys.exit(4)"]
    with pytest.raises(launcher.DaemonUnavailable) as err:
        launcher.connect(f"tcp://127.0.0.1:{free_port()}", cmd, ping_timeout=0.3, timeout=30)
    assert "code 4" in err.value.message and "model folder is broken" in err.value.message


# --------------------------------------------------------------------------- issue 19: model defaults, parameters


def test_unset_knobs_resolve_against_the_models_recommendation():
    from impasto.protocol.settings import Recommendation

    starter = {"name": "starter", "native_size": 64,
               "recommended": {"steps": 20, "guidance_scale": 5.0, "scheduler": "DDIMScheduler"}}
    rec = Recommendation.for_model([{"name": "tiny", "native_size": 256}, starter], "", "starter")
    assert (rec.sampler, rec.steps, rec.cfg_scale, rec.native_size) == ("ddim", 20, 5.0, 64)
    assert rec.label() == "model default (DDIM, 20, 5.0)"
    s = Settings(prompt="x")
    assert s.unset() == ["sampler", "steps", "cfg_scale"]
    plan = planner.plan_job((64, 64), s, planner.GENERATE, recommendation=rec)
    assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == ("ddim", 20, 5.0)
    # what the artist set wins; a model with no recommendation gets the protocol's values
    s2 = Settings(prompt="x", steps=7, sampler="euler")
    plan = planner.plan_job((64, 64), s2, planner.GENERATE, recommendation=rec)
    assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == ("euler", 7, 5.0)
    g = Generate()
    plan = planner.plan_job((64, 64), s, planner.GENERATE)
    assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == (g.sampler, g.steps, g.cfg_scale)
    assert not Recommendation.for_model([{"name": "tiny"}], "tiny").from_model_file
    odd = Recommendation.from_model({"recommended": {"steps": "many", "scheduler": "NopeScheduler", "cfg_scale": -1}})
    assert (odd.steps, odd.sampler, odd.cfg_scale) == (g.steps, g.sampler, g.cfg_scale)


def test_every_sampler_has_one_menu_label_shared_by_the_clients():
    """The canvas, Krita and GIMP show a sampler in the client core's words: every protocol sampler has a
    label, the few-step ones say what they are for, and no two samplers read the same."""
    from impasto.protocol.messages import SAMPLERS
    from impasto.protocol.settings import SAMPLER_HINTS, SAMPLER_LABELS_SHORT, sampler_label

    assert set(SAMPLER_LABELS_SHORT) == set(SAMPLERS) and set(SAMPLER_HINTS) <= set(SAMPLERS)
    labels = [sampler_label(name) for name in SAMPLERS]
    assert len(set(labels)) == len(labels)
    assert sampler_label("euler_trailing") == "Euler trailing (Lightning)"
    assert sampler_label("dpmpp_2m_karras") == "DPM++ 2M Karras"
    assert sampler_label("lcm_quadratic") == "LCM quadratic (few steps)"
    assert sampler_label("not_a_sampler") == "not_a_sampler"     # a newer daemon's name still shows


def test_every_fill_mode_has_one_label_and_hint_shared_by_the_clients():
    """Fill menus read one table too: every protocol fill mode has distinct words and a hint saying what it
    is for, and the neutral fill is described as what the engine paints (mid-grey, not an average colour)."""
    from impasto.protocol.messages import FILL_MODES
    from impasto.protocol.settings import FILL_HINTS, FILL_LABELS, fill_label

    assert set(FILL_LABELS) == set(FILL_MODES) == set(FILL_HINTS)
    labels = [fill_label(mode) for mode in FILL_MODES]
    assert len(set(labels)) == len(labels) and all(FILL_HINTS[m] for m in FILL_MODES)
    assert fill_label("neutral") == "Neutral grey" and "mid-grey" in FILL_HINTS["neutral"]
    assert fill_label("smudge") == "smudge"                       # a newer daemon's mode still shows


def test_a1111_parameters_round_trip_with_loras_quotes_and_unicode():
    from impasto.protocol.parameters import format_parameters, parse_parameters, png_text, png_with_text

    s = Settings(prompt="a red circle, on blue: calm\nsecond line", negative_prompt="blurry, dark", sampler="euler_a",
                 steps=25, cfg_scale=7.5, model="my model, v2").set_concepts([("mycat", 0.8), ("style", 1.0)])
    text = format_parameters(s, 1234, (512, 768), s.model, denoising=0.6)
    assert text.splitlines()[0] == "a red circle, on blue: calm"
    assert text.splitlines()[1] == "second line <lora:mycat:0.8> <lora:style:1>"
    assert text.splitlines()[-1] == ('Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x768, '
                                     'Model: "my model, v2", Denoising strength: 0.6')
    p = parse_parameters(text)
    assert p.settings.prompt == s.prompt and p.settings.negative_prompt == s.negative_prompt
    assert p.settings.active_concepts() == [("mycat", 0.8), ("style", 1.0)]
    assert (p.settings.sampler, p.settings.steps, p.settings.cfg_scale, p.settings.seed) == ("euler_a", 25, 7.5, 1234)
    assert (p.size, p.settings.model, p.denoising) == ((512, 768), "my model, v2", 0.6)
    # A1111 >= 1.9 writes the Karras schedule apart; extra keys are kept, not fatal
    newer = parse_parameters("cat\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 5, "
                             "Size: 64x64, Model hash: abc123, Version: v1.9.0")
    assert newer.settings.sampler == "dpmpp_2m_karras" and newer.values["Model hash"] == "abc123"
    assert parse_parameters("just a prompt").settings.prompt == "just a prompt"
    # the stdlib PNG writer (the plug-ins') and reader agree with Pillow's
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (3, 2), (10, 20, 30)).save(buf, format="PNG")
    unicode_text = text + " ✓ café"
    png = png_with_text(buf.getvalue(), unicode_text)
    assert png_text(png) == unicode_text
    img = PILImage.open(io.BytesIO(png))
    assert img.text["parameters"] == unicode_text and img.getpixel((1, 1)) == (10, 20, 30)
    assert png_text(png_with_text(png, "replaced")) == "replaced"     # one chunk, replaced


def test_result_history_adds_deletes_persists_and_survives_a_bad_index(tmp_path):
    from impasto.protocol.history import ResultHistory, history_key

    h = ResultHistory(tmp_path / "h", limit=3)
    s = Settings(prompt="a red circle", sampler="ddim", steps=20, cfg_scale=5.0, model="starter")
    first = h.add(s, 7, "generate", (64, 64), b"\x89PNG fake thumb")
    for seed in (8, 9, 10):
        h.add(s, seed, "inpaint", (64, 64), b"thumb")
    assert [e.seed for e in h.entries] == [10, 9, 8]                   # newest first, limit 3
    assert not (tmp_path / "h" / first.thumbnail).exists()              # the oldest's thumbnail went with it
    again = ResultHistory(tmp_path / "h")
    assert [e.seed for e in again.entries] == [10, 9, 8]
    top = again.entries[0]
    assert top.to_settings().seed == 10 and top.to_settings().sampler == "ddim"
    assert top.label() == "a red circle · seed 10"
    assert "Denoising strength: 0.75" in top.parameters() and "Seed: 10" in top.parameters()
    # "use settings": an inpaint result brings its strength back; a text-to-image one keeps the form's
    current = Settings(strength=0.3, mask_blur=9, seed=-1)
    assert top.reuse(current).strength == 0.75 and top.reuse(current).seed == 10
    txt = again.entries[-1]
    txt.mode = "generate"
    assert (txt.reuse(current).strength, txt.reuse(current).mask_blur, txt.reuse(current).seed) == (0.3, 9, 8)
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    kept = again.add(s, 77, "generate", (4, 4), b"t", picture_png=buf.getvalue())
    out = again.export(kept.id, tmp_path / "saved.png")
    assert "Seed: 77," in PILImage.open(out).text["parameters"] and PILImage.open(out).getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ValueError):
        again.export(top.id, tmp_path / "none.png")                     # no picture kept for that one
    again.delete(kept.id)
    assert again.delete(top.id) and not again.delete(top.id)
    assert [e.seed for e in ResultHistory(tmp_path / "h").entries] == [9, 8]
    (tmp_path / "h" / "index.json").write_text("{not json")
    assert len(ResultHistory(tmp_path / "h")) == 0                     # a broken index: empty, not a crash
    assert history_key("/a/b/pic.impasto") != history_key("/c/pic.impasto")
    assert history_key("", "s1") == "session-s1"
