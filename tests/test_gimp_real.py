"""The real-GIMP tier: the installed plug-in inside GIMP 3.0 (Debian trixie root folder).

GIMP runs in a chroot (``$IMPASTO_GIMP_ROOT``, default
``/var/cache/impasto-gimp-root``, built by ``.ci/gimp.sh``) whose Python has
no pyzmq, numpy or Pillow.  The plug-in is installed with ``impasto
install-gimp --profile`` into a HOME inside it; ``tests/gimp/drive_plugin.py``
runs in ``gimp-console-3.0``'s Python, paints an image, selects a feathered
ellipse and calls the plug-in's procedures non-interactively against the
session's daemon (outside the chroot: loopback is shared).  The assertions
below read what the driver dumped.

A second session runs the interactive side under Xvfb (inside the root
folder): the procedure dialogs and the progress window, driven from the test
with X events (``xdotool`` inside the root folder: OK on each dialog, Cancel
on a progress window) - the shipped plug-in has no test switch.

Skipped only when the root folder does not exist (``.ci/gimp.sh`` builds it,
so CI always runs this tier).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from impasto.backend import cli_install
from impasto.plugin_gimp import geometry, jobs
from impasto.plugin_gimp.geometry import Rect
from impasto.protocol import Client
from impasto.protocol.messages import Generate, Progress

ROOT = Path(os.environ.get("IMPASTO_GIMP_ROOT", "/var/cache/impasto-gimp-root"))
DRIVER = Path(__file__).resolve().parent / "gimp" / "drive_plugin.py"
UI_DRIVER = Path(__file__).resolve().parent / "gimp" / "drive_ui.py"
GRAB = Path(__file__).resolve().parent / "gimp" / "grab_window.py"

pytestmark = pytest.mark.skipif(
    not ROOT.is_dir(),
    reason=f"REAL-GIMP TIER NOT RUN: no GIMP 3 root folder at {ROOT} - build it with `.ci/gimp.sh --build` "
           f"(IMPASTO_GIMP_ROOT sets another place)")

IMAGE = (203, 151)
PAINT = (17, 13, 170, 120)          # the source layer: x, y, w, h (offset inside the canvas)
ELLIPSE = (70, 45, 64, 48)
FEATHER = 6.0
INPAINT = dict(prompt="a red fox in the snow", model="tiny", steps=3, seed=1234, mask_blur=0, grow=0, padding=16,
               fill="blur")
REFINE_SELECTION = dict(prompt="a red fox", model="tiny", steps=4, seed=77, strength=0.6, mask_blur=4, grow=2,
                        padding=16, batch_size=2)
REFINE_LAYER = dict(prompt="a red fox", model="tiny", steps=4, seed=5, strength=0.5)
GENERATE = dict(prompt="a red fox", model="tiny", steps=2, seed=9, width=0, height=0)
GENERATE_NEW_IMAGE = dict(GENERATE, width=96, height=64)


def _in_root(*argv: str) -> list:
    cmd = ["chroot", str(ROOT), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", *argv]
    if os.geteuid() != 0:   # an unprivileged user may still chroot inside its own user namespace
        cmd = ["unshare", "--map-root-user"] + cmd
    return cmd


def _gimp_command(inner_dir: str, *env: str) -> list:
    return _in_root(f"HOME={inner_dir}/home", f"IMPASTO_GIMP_TEST_DIR={inner_dir}", *env, "sh", "-c",
                    f"cd / && exec gimp-console-3.0 -i -d -f --batch-interpreter python-fu-eval -b - --quit "
                    f"< {inner_dir}/drive.py")


def _session(daemon, driver: Path, params: dict, *env: str, inner_env=lambda inner: ()):
    """Install the plug-in into a fresh HOME inside the root folder and run ``driver`` in GIMP."""
    if not (ROOT / "usr" / "bin" / "gimp-console-3.0").exists():
        pytest.fail(f"{ROOT} exists but holds no gimp-console-3.0: rebuild it (rm -rf it; .ci/gimp.sh --build)")
    name = f"impasto-test-{uuid.uuid4().hex[:10]}"
    base = ROOT / name
    base.mkdir()
    try:
        cli_install.install_gimp(base / "home" / ".config" / "GIMP" / "3.0")
        # the daemon's secret where the plug-in looks for it: IMPASTO_HOME (~/.impasto) inside the root
        from impasto.protocol import credentials

        credentials.write_private(base / "home" / ".impasto" / credentials.SECRET_NAME,
                                  credentials.read_secret() + b"\n")
        shutil.copy(driver, base / "drive.py")
        (base / "params.json").write_text(json.dumps(dict(params, endpoint=daemon.endpoint)))
        t0 = time.monotonic()
        proc = subprocess.run(_gimp_command("/" + name, *env, *inner_env("/" + name)), capture_output=True,
                              text=True, timeout=300)
    except BaseException:
        _cleanup(base)
        raise
    return base, proc.stdout + proc.stderr, time.monotonic() - t0


def _cleanup(base: Path) -> None:
    if not os.environ.get("IMPASTO_KEEP_GIMP_TEST"):
        shutil.rmtree(base, ignore_errors=True)


class GimpRun:
    """What one GIMP session left behind: the report and the pixel dumps."""

    def __init__(self, out: Path, log: str, seconds: float):
        self.out, self.log, self.seconds = out, log, seconds
        path = out / "result.json"
        if not path.is_file():
            raise AssertionError(f"the GIMP driver wrote no report; GIMP said:\n{log[-4000:]}")
        self.report = json.loads(path.read_text())

    def raw(self, name: str, width: int, height: int, channels: int) -> np.ndarray:
        data = (self.out / name).read_bytes()
        shape = (height, width, channels) if channels > 1 else (height, width)
        return np.frombuffer(data, np.uint8).reshape(shape)

    def step(self, index: int) -> dict:
        return self.report["steps"][index]

    def context(self) -> str:
        return f"driver errors: {self.report.get('errors')}\nGIMP log tail:\n{self.log[-3000:]}"


@pytest.fixture(scope="module")
def gimp(daemon):
    params = dict(image=IMAGE, paint=PAINT, ellipse=ELLIPSE, feather=FEATHER, inpaint=INPAINT,
                  refine_selection=REFINE_SELECTION, refine_layer=REFINE_LAYER, generate=GENERATE,
                  generate_new_image=GENERATE_NEW_IMAGE)
    base, log, seconds = _session(daemon, DRIVER, params)
    try:
        run = GimpRun(base / "out", log, seconds)
        print(f"\nGIMP session: {seconds:.1f} s; procedure runs: "
              + ", ".join(f"{s['procedure']} {s.get('seconds', 0):.1f} s" for s in run.report["steps"]))
        yield run
    finally:
        _cleanup(base)


class Xvfb:
    """An X server inside the root folder, on a display number nobody uses there."""

    def __init__(self):
        sockets = ROOT / "tmp" / ".X11-unix"
        self.number = next(n for n in range(57, 157) if not (sockets / f"X{n}").exists()
                           and not (ROOT / "tmp" / f".X{n}-lock").exists())
        # -noreset: the server would reset whenever its last client (GIMP, a plug-in, xdotool) left, and
        # refuse the next one while it does
        self.proc = subprocess.Popen(_in_root("Xvfb", f":{self.number}", "-screen", "0", "1280x1024x24",
                                              "-nolisten", "tcp", "-noreset"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (sockets / f"X{self.number}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Xvfb did not start in {ROOT}: {self.proc.stderr.read()[-2000:]!r}")
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class XDriver(threading.Thread):
    """Presses the plug-in's buttons with X events, as an artist would (``xdotool`` inside the root folder).

    For each expected window (its exact title) it waits until the window is mapped, records its size,
    focuses it and types the button's mnemonic until the window goes: Alt+O (``_OK``) on a procedure
    dialog, Alt+C (``_Cancel``) on the progress window.  Before the last dialog's OK it occupies the daemon
    with a long job, so the plug-in's job waits in the queue and the Cancel always lands before it could
    finish.  (Each plug-in run is a new X client, so window ids repeat: windows are told apart by title.)
    """

    def __init__(self, display: int, endpoint: str, steps, timeout: float = 120, shot: Path = None):
        super().__init__(name="impasto-x-driver", daemon=True)
        self.display, self.endpoint, self.steps, self.timeout = display, endpoint, steps, timeout
        self.shot = shot              # where the Generate dialog's picture goes (its step says when)
        self.seen: list = []
        self.errors: list = []

    def xdo(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(_in_root(f"DISPLAY=:{self.display}", "xdotool", *args), capture_output=True,
                              text=True, timeout=30)

    def title(self, window: str) -> str:
        got = self.xdo("getwindowname", window)
        return got.stdout.strip() if got.returncode == 0 else ""

    def wait_window(self, title: str) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for window in self.xdo("search", "--onlyvisible", "--name", "^Impasto").stdout.split():
                if self.title(window) == title:
                    return window
            time.sleep(0.2)
        raise AssertionError(f"no window {title!r} within {self.timeout:g} s (seen: {self.seen})")

    def grab(self, window: str) -> None:
        """Save ``window`` as the artist sees it, once the daemon's models are in its info label."""
        time.sleep(2.0)                                 # the label is filled from a worker thread
        self.xdo("windowraise", window)                 # no window manager: GIMP's own small window may overlap
        time.sleep(0.5)
        name = f"impasto-grab-{uuid.uuid4().hex[:10]}"
        shutil.copy(GRAB, ROOT / "tmp" / f"{name}.py")
        try:
            got = subprocess.run(_in_root(f"DISPLAY=:{self.display}", "python3", f"/tmp/{name}.py", window,
                                          f"/tmp/{name}.png"), capture_output=True, text=True, timeout=60)
            if got.returncode != 0:
                raise AssertionError(f"grabbing the window failed: {got.stderr[-2000:]}")
            shutil.copy(ROOT / "tmp" / f"{name}.png", self.shot)
        finally:
            for ext in (".py", ".png"):
                (ROOT / "tmp" / f"{name}{ext}").unlink(missing_ok=True)

    def press(self, window: str, title: str, keys: str, gone_within: float = 20) -> None:
        """Focus ``window`` and type ``keys`` until it closes (a dialog still drawing may miss the first)."""
        deadline = time.monotonic() + gone_within
        while time.monotonic() < deadline:
            self.xdo("windowfocus", "--sync", window, "key", "--clearmodifiers", keys)
            for _ in range(10):
                time.sleep(0.2)
                if self.title(window) != title:
                    return
        raise AssertionError(f"{title!r} did not close after {keys}")

    def run(self) -> None:
        blocker = None
        client = Client(self.endpoint)
        try:
            for title, keys, occupy, *shot in self.steps:
                window = self.wait_window(title)
                geo = self.xdo("getwindowgeometry", window).stdout
                size = [int(v) for v in geo.split("Geometry:")[1].split()[0].split("x")] if "Geometry:" in geo \
                    else [0, 0]
                self.seen.append({"title": title, "size": size})
                if shot and self.shot is not None:
                    self.grab(window)
                if occupy:
                    running = threading.Event()
                    blocker = client.submit(
                        Generate(prompt="a long job", model="tiny", steps=200, width=256, height=256, batch_size=4,
                                 seed=1, priority="back"),
                        on_event=lambda ev: running.set() if isinstance(ev, Progress) else None)
                    if not running.wait(60) or blocker.done:
                        raise AssertionError("the blocking job never started")
                self.press(window, title, keys)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))
        finally:
            if blocker is not None:
                blocker.cancel()
            client.close()


UI_STEPS = [
    ("Impasto: Settings", "alt+o", False),
    ("Impasto: Generate", "alt+o", False, "shot"),     # its picture: IMPASTO_GIMP_UI_SCREENSHOT keeps it
    ("Impasto: Inpaint Selection", "alt+o", False),
    ("Impasto: Refine", "alt+o", True),           # the daemon is busy with a long job when OK is pressed
    ("Impasto: refine", "alt+c", False),          # the progress window of that Refine: its Cancel button
    ("Impasto: Save Result", "alt+o", False),     # the generated layer, to the file the driver set
]


@pytest.fixture(scope="module")
def gimp_ui(daemon, tmp_path_factory):
    if not (ROOT / "usr" / "bin" / "Xvfb").exists():
        pytest.fail(f"{ROOT} has no Xvfb for the dialogs: run .ci/gimp.sh --build (it adds it)")
    if not (ROOT / "usr" / "bin" / "xdotool").exists():
        pytest.fail(f"{ROOT} has no xdotool to press the dialogs' buttons: run .ci/gimp.sh --build (it adds it)")
    x = Xvfb()
    base = None
    keep = os.environ.get("IMPASTO_GIMP_UI_SCREENSHOT")   # e.g. docs/gimp-generate.png, painted by the starter
    shot = Path(keep) if keep else tmp_path_factory.mktemp("gimp-shot") / "generate.png"
    driver = XDriver(x.number, daemon.endpoint, UI_STEPS, shot=shot)
    try:
        job = dict(prompt="a red fox", model="tiny", steps=2, seed=3)
        if keep:   # the docs' picture shows what an artist would type, on the model an install has
            job = dict(prompt="a big red circle in the center and a small yellow triangle at the top left "
                              "on a blue background", model="starter", steps=0, seed=3)
        driver.start()
        base, log, seconds = _session(daemon, UI_DRIVER, dict(ui_job=job), f"DISPLAY=:{x.number}")
        driver.join(30)
        print(f"\nGIMP UI session: {seconds:.1f} s")
        path = base / "out" / "ui.json"
        if not path.is_file():
            raise AssertionError(f"the UI driver wrote no report; GIMP said:\n{log[-4000:]}")
        yield json.loads(path.read_text()), driver, log, shot
    finally:
        x.stop()
        if base is not None:
            _cleanup(base)


def _layers(run, key):
    return run.report[key]


def test_plugin_loaded_in_gimp_3_without_compiled_dependencies(gimp):
    r = gimp.report
    assert r.get("done") and not r["errors"], gimp.context()
    assert r["gimp_version"].startswith("3.")
    assert r["gimp_python_has_pyzmq"] is False
    assert r["gimp_python_has_numpy"] is False and r["gimp_python_has_PIL"] is False
    assert "Traceback" not in gimp.log, gimp.log[-3000:]
    assert gimp.step(0)["procedure"] == "impasto-settings" and gimp.step(0)["status"] == "success"
    assert json.loads(r["settings_file"])["endpoint"].startswith("tcp://127.0.0.1:")
    from impasto.protocol.messages import FILL_MODES
    from impasto.protocol.settings import FILL_HINTS, FILL_LABELS
    # the dialog's fill menu: the client core's words, each mode with its help line
    assert r["fill_choices"] == {m: [FILL_LABELS[m], FILL_HINTS[m]] for m in FILL_MODES}, r["fill_choices"]


def test_inpaint_adds_a_layer_at_the_selection_with_the_selection_as_mask(gimp):
    step = gimp.step(1)
    assert step["procedure"] == "impasto-inpaint" and step["status"] == "success", (step, gimp.context())
    assert step["seed"] == INPAINT["seed"]
    before = _layers(gimp, "layers_before")
    after = _layers(gimp, "layers_after_inpaint")
    assert [l["name"] for l in after[1:]] == [l["name"] for l in before]      # directly above "paint"
    new = after[0]
    assert new["name"] == f"Impasto inpaint: {INPAINT['prompt']} (seed {INPAINT['seed']})"
    x, y, w, h = gimp.report["selection_bounds"]
    # no blur, no grow: the layer sits exactly on the selection's bounds
    assert (new["x"], new["y"], new["width"], new["height"]) == (x, y, w, h)
    assert new["has_mask"] and new["id"] == step["layer_id"]
    selection = gimp.raw("selection.gray", *IMAGE, 1)
    soft = selection[(selection > 0) & (selection < 255)]
    assert soft.size > 50, "the test selection should have a soft (feathered) edge"
    mask = gimp.raw("inpaint_mask.gray", w, h, 1)
    assert (mask == selection[y:y + h, x:x + w]).all(), "the layer mask must be the selection, soft edge kept"
    layer = gimp.raw("inpaint_layer.rgba", w, h, 4)
    assert (layer[..., 3] == 255).all()
    assert new["composite_space"] != before[0]["composite_space"]   # perceptual, like the daemon's blend


def test_inpaint_leaves_everything_outside_the_selection_untouched(gimp):
    W, H = IMAGE
    selection = gimp.raw("selection.gray", W, H, 1)
    before = gimp.raw("composite_before.rgba", W, H, 4)
    after = gimp.raw("composite_after_inpaint.rgba", W, H, 4)
    outside = selection == 0
    assert (after[outside] == before[outside]).all()
    inside = selection == 255
    changed = np.abs(after[inside].astype(int) - before[inside].astype(int)).max(axis=1) > 8
    assert changed.mean() > 0.5, "the inpainted area should have new pixels"
    assert (gimp.raw("selection_after.gray", W, H, 1) == selection).all()   # the selection is left alone


def test_the_artists_layers_and_masks_are_never_modified(gimp):
    _, _, pw, ph = PAINT
    W, H = IMAGE
    assert (gimp.out / "paint_before.rgba").read_bytes() == (gimp.out / "paint_after.rgba").read_bytes()
    assert (gimp.out / "paint_mask_before.gray").read_bytes() == (gimp.out / "paint_mask_after.gray").read_bytes()
    assert (gimp.out / "background_before.rgba").read_bytes() == (gimp.out / "background_after.rgba").read_bytes()
    final = _layers(gimp, "layers_after_generate")
    paint = next(l for l in final if l["name"] == "paint")
    assert (paint["x"], paint["y"], paint["width"], paint["height"]) == PAINT and paint["has_mask"]


def test_inpaint_composite_equals_the_daemons_result(gimp, daemon):
    """Re-send the request the plug-in must have built (same pixels, mask, crop, seed): GIMP's composite of
    the new layer over the original equals the daemon's paste-back result (to 8-bit rounding)."""
    W, H = IMAGE
    px, py, pw, ph = PAINT
    paint = gimp.raw("paint_before.rgba", pw, ph, 4)
    source = np.zeros((H, W, 4), np.uint8)                 # the layer read in image coordinates
    source[py:py + ph, px:px + pw] = paint
    selection = gimp.raw("selection.gray", W, H, 1)
    x, y, w, h = gimp.report["selection_bounds"]
    f = jobs.JobFields(**{k.replace("-", "_"): v for k, v in INPAINT.items()})
    f.strength = 1.0
    sent = jobs.edit_window(f, Rect(0, 0, W, H), Rect(x, y, w, h))
    from impasto.protocol.messages import Image

    req = jobs.edit_request(f, Image(sent.width, sent.height, source[sent.y:sent.bottom, sent.x:sent.right].tobytes()),
                            Image(sent.width, sent.height,
                                  selection[sent.y:sent.bottom, sent.x:sent.right].tobytes(), "gray8"),
                            canvas=Rect(0, 0, W, H), sent=sent)
    with Client(daemon.endpoint) as c:
        res = c.submit(req).wait(120)
    full = np.frombuffer(res.images[0].data, np.uint8).reshape(sent.height, sent.width, 4)
    patch = res.patches[0]
    assert (sent.x + patch.x, sent.y + patch.y, patch.image.width, patch.image.height) == (x, y, w, h)
    shown = gimp.raw("composite_after_inpaint.rgba", W, H, 4)[y:y + h, x:x + w, :3].astype(int)
    expected = full[patch.y:patch.y + h, patch.x:patch.x + w, :3].astype(int)
    assert np.abs(shown - expected).max() <= 1


def test_refine_of_a_selection_gives_one_masked_layer_per_picture(gimp):
    step = gimp.step(2)
    assert step["procedure"] == "impasto-refine" and step["status"] == "success", (step, gimp.context())
    layers = _layers(gimp, "layers_after_refine_selection")
    refined = [l for l in layers if l["name"].startswith("Impasto refine")]
    assert sorted(l["name"][-9:] for l in refined) == ["(seed 77)", "(seed 78)"]
    x, y, w, h = gimp.report["selection_bounds"]
    sel = Rect(x, y, w, h)
    reach = REFINE_SELECTION["grow"] + REFINE_SELECTION["mask_blur"]
    names = [l["name"] for l in layers]
    assert names.index(refined[0]["name"]) < names.index("paint")
    for l in refined:
        place = Rect(l["x"], l["y"], l["width"], l["height"])
        assert l["has_mask"] and place.contains(sel) and sel.grow(reach).contains(place), place
        mask = gimp.raw(f"refine_sel_{l['id']}.gray", l["width"], l["height"], 1)
        assert mask.max() == 255 and mask.min() == 0


def test_refine_of_the_whole_layer(gimp):
    step = gimp.step(3)
    assert step["status"] == "success" and step["has_mask"] is False, (step, gimp.context())
    layers = _layers(gimp, "layers_after_refine_layer")
    names = [l["name"] for l in layers]
    new = next(l for l in layers if l["id"] == step["layer_id"])
    assert (new["x"], new["y"], new["width"], new["height"]) == PAINT       # the layer's own extent
    assert names.index(new["name"]) == names.index("paint") - 1             # right above the source


def test_errors_are_sentences_and_add_nothing(gimp):
    no_selection, bad_concept = gimp.step(4), gimp.step(5)
    assert no_selection["status"] == "execution-error" and no_selection["layers_added"] == 0
    assert "nothing is selected" in no_selection["error"]
    assert bad_concept["status"] == "execution-error" and bad_concept["layers_added"] == 0
    assert "concepts" in bad_concept["error"] and "bad/name" in bad_concept["error"]


def test_generate_into_the_image_and_into_a_new_image(gimp):
    into, new = gimp.step(6), gimp.step(7)
    assert into["status"] == "success" and new["status"] == "success", gimp.context()
    top = _layers(gimp, "layers_after_generate")
    gen = [l for l in top if l["name"].startswith("Impasto generate")]
    assert len(gen) == 1 and (gen[0]["x"], gen[0]["y"], gen[0]["width"], gen[0]["height"]) == (0, 0, *IMAGE)
    assert new["new_image"]["width"] == 96 and new["new_image"]["height"] == 64
    assert new["new_image"]["layers"][0]["name"] == "Impasto generate: a red fox (seed 9)"


def test_generate_with_a_control_layer_chosen_in_the_dialog(gimp):
    steered, missing = gimp.step(8), gimp.step(9)
    assert steered["procedure"] == "impasto-generate" and steered["status"] == "success", (steered, gimp.context())
    assert steered["layer_name"].startswith("Impasto generate")
    plain = gimp.raw("generate_layer.rgba", *IMAGE, 4)              # same prompt, seed and size, no control
    guided = gimp.raw("control_generate_layer.rgba", *IMAGE, 4)
    assert (plain != guided).mean() > 0.05                           # the unit reached the daemon and steered
    assert missing["status"] != "success" and missing["layers_added"] == 0
    assert "control layer" in missing["error"].lower(), missing


def test_interactive_dialogs_and_progress_window(gimp_ui):
    """Settings, Generate and Inpaint run INTERACTIVE through GIMP's procedure dialogs (OK pressed with X
    events), the progress window fed through GLib.idle_add from the worker thread, then the layers; a
    Refine's progress window is cancelled with its own Cancel button."""
    report, driver, log, shot = gimp_ui
    assert not driver.errors and not driver.is_alive(), (driver.errors, driver.seen, log[-3000:])
    assert report.get("done") and not report["errors"], (report, log[-3000:])
    assert [(s["procedure"], s["status"]) for s in report["steps"]] == [
        ("impasto-settings", "success"), ("impasto-settings", "success"), ("impasto-generate", "success"),
        ("impasto-inpaint", "success"), ("impasto-refine", "cancel"), ("impasto-save-result", "success")], (
        report["steps"], driver.seen, log[-3000:])
    # every window the artist would see was on screen, at a usable size, before its button was pressed
    assert [s["title"] for s in driver.seen] == [step[0] for step in UI_STEPS]
    assert all(w >= 200 and h >= 100 for w, h in (s["size"] for s in driver.seen)), driver.seen
    # the interactive Settings dialog showed the saved endpoint and saved it back on OK
    assert json.loads(report["settings_file"])["endpoint"].startswith("tcp://127.0.0.1:")
    names = [n for n, *_ in report["layers"]]
    assert names[0].startswith("Impasto generate") and names[1].startswith("Impasto inpaint") and names[2] == "paint"
    assert report["layers"][1][3] is True                        # the inpaint layer has its mask
    assert report["layers_after_cancel"] == names                  # the cancelled Refine added nothing
    assert report["ui_saved"] == {"png": True, "parameters": True, "seed": True}   # Save Result's dialog, OK
    # the Generate dialog as an artist saw it: a PNG of the window's size, not a blank screen
    from PIL import Image

    picture = Image.open(shot)
    assert picture.format == "PNG", shot
    assert list(picture.size) == driver.seen[1]["size"], (picture.size, driver.seen)
    grey = np.asarray(picture.convert("L"))
    assert grey.std() > 10 and len(np.unique(grey)) > 16, "the dialog's picture is blank"

def test_save_result_writes_the_picture_with_its_a1111_parameters(gimp, daemon, tmp_path):
    """Issue 19: GIMP's "Save Result" writes a PNG carrying the result's A1111 ``parameters`` (GIMP's own PNG
    export writes only a Comment), of the picture the result layer makes; `impasto generate --from` re-runs it."""
    import subprocess
    import sys

    from PIL import Image as PILImage

    from impasto.protocol.parameters import parse_parameters

    inpaint = gimp.report.get("save_inpaint", {})
    assert inpaint.get("status") == "success", (inpaint, gimp.context())
    saved = PILImage.open(gimp.out / "saved_inpaint.png")
    W, H = IMAGE
    assert saved.size == (W, H)
    shown = gimp.raw("composite_after_inpaint.rgba", W, H, 4)[..., :3]
    assert (np.asarray(saved.convert("RGB")) == shown).all()          # the inpainted picture as it was shown
    params = parse_parameters(saved.text["parameters"])
    assert params.settings.prompt == INPAINT["prompt"] and params.settings.seed == INPAINT["seed"]
    assert params.settings.steps == INPAINT["steps"] and params.settings.model == "tiny"
    assert params.denoising == 1.0 and params.size == (W, H)

    gen = gimp.report.get("save_generate", {})
    assert gen.get("status") == "success", (gen, gimp.context())
    png = gimp.out / "saved_generate.png"
    params = parse_parameters(PILImage.open(png).text["parameters"])
    assert (params.settings.prompt, params.settings.seed, params.settings.steps) == ("a red fox", 9, 2)
    assert params.size == (W, H) and params.denoising is None
    again = tmp_path / "again.png"
    r = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "generate", "--from", str(png), "-o", str(again),
                        "--no-spawn", "-q"], env=daemon.env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (np.asarray(PILImage.open(again).convert("RGB")) == np.asarray(PILImage.open(png).convert("RGB"))).all()

    assert "Seed: 9," in gimp.report.get("xcf_parameters", "") and "a red fox" in gimp.report["xcf_parameters"]

    refused = gimp.report.get("save_refused", {})
    assert refused.get("status") == "execution-error" and "not an Impasto result" in refused.get("error", "")
    assert gimp.report.get("save_refused_wrote") is False
