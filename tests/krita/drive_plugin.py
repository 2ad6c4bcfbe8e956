"""Runs inside real Krita (``kritarunner -s drive_plugin -f main``): the plugin end to end.

The pytest side (tests/test_krita_integration.py) installs the plugin with
``impasto install-krita`` into a scratch Krita profile, starts a daemon with
the tiny model and runs this module with that profile's ``pykrita`` folder on
``PYTHONPATH``.  Settings arrive through environment variables:

* ``IMPASTO_ENDPOINT``        the daemon
* ``IMPASTO_DRIVER_OUT``      where to write the JSON report (checks + timings)
* ``IMPASTO_DRIVER_SHOT``     where to save the docker screenshot ("" = none)
* ``IMPASTO_DRIVER_SCENARIOS`` comma list: inpaint,soft,depth16,graybatch,cmyk,dead,docker

Every scenario drives the plugin's own code path - the docker panel's
``generate()`` reading a real Krita document, the session talking to the
daemon, the host adding layers - waiting synchronously by pumping Qt events.
Failures are collected, never raised: the report says what broke.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

REPORT = {"checks": [], "failures": [], "timings": {}, "info": {}}


def check(name, ok, detail=""):
    REPORT["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    if not ok:
        REPORT["failures"].append(f"{name}: {detail}")
    print(("PASS " if ok else "FAIL ") + name + (f" - {detail}" if detail and not ok else ""), flush=True)
    return bool(ok)


def pump(app, seconds=0.02):
    end = time.monotonic() + seconds
    while True:
        app.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.005)


def wait_for(app, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    app.processEvents()
    return predicate()


# --------------------------------------------------------------------------- helpers on documents


def paint_pattern(width, height):
    """Deterministic RGBA8 pattern: gradients plus a checker, fully opaque."""
    out = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            i = (y * width + x) * 4
            c = 40 if ((x // 8) + (y // 8)) % 2 else 0
            out[i] = (x * 255 // max(1, width - 1) + c) % 256
            out[i + 1] = (y * 255 // max(1, height - 1)) % 256
            out[i + 2] = (128 + c * 2) % 256
            out[i + 3] = 255
    return bytes(out)


def make_document(krita, name, width, height, model="RGBA", depth="U8", profile=""):
    from impasto_krita.plugin_krita.impasto_krita.pixels import PixelFormat, from_rgba8

    doc = krita.createDocument(width, height, name, model, depth, profile, 72.0)
    layer = doc.createNode("painting", "paintlayer")
    rgba = paint_pattern(width, height)
    fmt = PixelFormat.of(doc.colorModel(), doc.colorDepth(), doc.colorProfile())
    layer.setPixelData(from_rgba8(rgba, fmt), 0, 0, width, height)
    doc.rootNode().addChildNode(layer, None)
    doc.waitForDone()
    doc.refreshProjection()
    return doc, rgba


def select(doc, x, y, w, h, soft=False):
    from krita import Selection

    sel = Selection()
    if soft:
        # a feathered-looking selection: 255 in the middle, ramps on the left/right edges
        row = bytearray(w)
        ramp = max(1, w // 4)
        for i in range(w):
            edge = min(i + 1, w - i)
            row[i] = min(255, edge * 255 // ramp)
        sel.setPixelData(bytes(row) * h, x, y, w, h)
    else:
        sel.select(x, y, w, h, 255)
    doc.setSelection(sel)
    return sel


def layer_nodes(doc):
    return [n for n in doc.rootNode().childNodes() if n.type() == "paintlayer"]


def outside_unchanged(before, after, width, height, rect, channels):
    """Bytes outside ``rect`` (x, y, w, h) identical; returns (ok, first differing pixel)."""
    x0, y0, w, h = rect
    for y in range(height):
        row_b = before[y * width * channels:(y + 1) * width * channels]
        row_a = after[y * width * channels:(y + 1) * width * channels]
        if row_b == row_a:
            continue
        if not (y0 <= y < y0 + h):
            return False, (next(i for i in range(width) if row_b[i * channels:(i + 1) * channels]
                                != row_a[i * channels:(i + 1) * channels]), y)
        left = slice(0, x0 * channels)
        right = slice((x0 + w) * channels, None)
        if row_b[left] != row_a[left] or row_b[right] != row_a[right]:
            return False, ("row", y)
    return True, None


# --------------------------------------------------------------------------- the driver host


def make_panel(app_qt, krita, endpoint, autostart=False):
    from impasto_krita.plugin_krita.impasto_krita.config import MemoryStore
    from impasto_krita.plugin_krita.impasto_krita.krita_host import KritaHost
    from impasto_krita.plugin_krita.impasto_krita.panel import ImpastoPanel

    class DriverHost(KritaHost):
        """Krita without a view has no active document: the driver names it."""

        doc = None

        def active_document(self):
            return self.doc

        def is_open(self, doc):
            return doc is not None

    host = DriverHost(krita)
    store = MemoryStore()
    info = {"endpoint": endpoint, "auto_start": autostart, "daemon_command": []}
    panel = ImpastoPanel(host, store, install_info=info, autoconnect=True)
    panel.resize(340, 980)
    return panel, host


def set_form(panel, **values):
    from impasto_krita.plugin_krita.impasto_krita.panel import _select_data

    p = panel
    p.prompt_edit.setPlainText(values.get("prompt", "a small red house"))
    p.negative_edit.setText(values.get("negative", "blurry"))
    p.strength_slider.setValue(values.get("strength", 100))
    _select_data(p.sampler_combo, values.get("sampler", "euler"))
    p.steps_spin.setValue(values.get("steps", 4))
    p.cfg_spin.setValue(values.get("cfg", 5.0))
    p.random_seed_check.setChecked(False)
    p.seed_spin.setValue(values.get("seed", 7))
    p.batch_spin.setValue(values.get("batch", 1))
    p.feather_spin.setValue(values.get("feather", 3))
    p.grow_spin.setValue(0)
    p.padding_spin.setValue(values.get("padding", 16))
    p.preview_check.setChecked(True)
    _select_data(p.model_combo, values.get("model", "tiny"))


def run_job(app_qt, panel, timeout=180.0):
    """Press Generate and wait until the job ended (layers added, failed or cancelled)."""
    count = panel.outcome_count
    t0 = time.monotonic()
    if not panel.generate():
        return False, panel.last_message
    if not wait_for(app_qt, lambda: panel.outcome_count > count, timeout):
        return False, f"timed out after {timeout:.0f} s: {panel.last_message}"
    return panel.outcome == "layers", f"{panel.outcome}: {panel.last_message} ({time.monotonic() - t0:.1f} s)"


def screenshot_mid_job(panel, path):
    """Grab the docker the way an artist sees it mid-inpaint: progress, live preview, Cancel live."""
    original = panel.job_progress

    def progress(plan, ev):
        original(plan, ev)
        if ev.preview is not None and ev.step >= max(1, ev.total // 2) and not os.path.exists(path):
            panel.show()
            panel.repaint()
            panel.grab().save(path)

    panel.job_progress = progress
    return lambda: setattr(panel, "job_progress", original)


# --------------------------------------------------------------------------- scenarios


def scenario_inpaint(ctx, soft=False):
    krita, app_qt, panel, host = ctx["krita"], ctx["qt"], ctx["panel"], ctx["host"]
    from impasto_krita.plugin_krita.impasto_krita.pixels import RGBA8, to_rgba8

    tag = "soft" if soft else "inpaint"
    W, H = 96, 80
    doc, rgba = make_document(krita, f"{tag}-doc", W, H)
    host.doc = doc
    sx, sy, sw, sh = 24, 20, 32, 28
    select(doc, sx, sy, sw, sh, soft=soft)
    check(f"{tag}: selection read", host.read_selection(doc) is not None)
    before = bytes(doc.pixelData(0, 0, W, H))
    n_before = len(layer_nodes(doc))
    set_form(panel, steps=4, feather=3, padding=16)
    check(f"{tag}: button says inpaint", panel.generate_button.text().startswith("Inpaint selection"),
          panel.generate_button.text())
    shot = os.environ.get("IMPASTO_DRIVER_SHOT")
    restore = screenshot_mid_job(panel, shot) if shot and soft else (lambda: None)
    t0 = time.monotonic()
    ok, msg = run_job(app_qt, panel)
    restore()
    ctx["report"]["timings"][f"{tag}_job_s"] = round(time.monotonic() - t0, 3)
    if not check(f"{tag}: job produced a layer", ok, msg):
        return
    doc.waitForDone()
    doc.refreshProjection()
    nodes = layer_nodes(doc)
    check(f"{tag}: exactly one new paint layer", len(nodes) == n_before + 1, [n.name() for n in nodes])
    new = panel.last_layers[0]
    check(f"{tag}: layer named for the inpaint", new.name().startswith("Impasto Inpainted"), new.name())
    b = new.bounds()
    bx, by, bw, bh = b.x(), b.y(), b.width(), b.height()
    feather = 3
    slack = feather * 2 + 2
    inside = (bx >= sx - slack and by >= sy - slack and bx + bw <= sx + sw + slack and by + bh <= sy + sh + slack)
    check(f"{tag}: layer bounds hug the selection", inside and bw > 0 and bh > 0,
          f"layer {bx},{by} {bw}x{bh} vs selection {sx},{sy} {sw}x{sh}")
    # the patch sits at the selection's offset: its alpha covers the selection's centre fully
    cx, cy = sx + sw // 2, sy + sh // 2
    centre = bytes(new.pixelData(cx, cy, 1, 1))
    check(f"{tag}: patch opaque at the selection's centre", len(centre) == 4 and centre[3] == 255, centre.hex())
    corner = bytes(new.pixelData(0, 0, 1, 1))
    check(f"{tag}: layer transparent far outside", corner[3] == 0, corner.hex())
    after = bytes(doc.pixelData(0, 0, W, H))
    grown = (sx - slack, sy - slack, sw + 2 * slack, sh + 2 * slack)
    same, where = outside_unchanged(before, after, W, H, grown, 4)
    check(f"{tag}: pixels outside the selection untouched", same, where)
    changed = sum(1 for i in range(0, len(before), 4) if before[i:i + 4] != after[i:i + 4])
    check(f"{tag}: pixels inside the selection changed", changed > sw * sh // 4, f"{changed} px changed")
    # the original layer is not modified (non-destructive)
    orig = [n for n in nodes if n.name() == "painting"][0]
    orig_px = to_rgba8(bytes(orig.pixelData(0, 0, W, H)), RGBA8)
    check(f"{tag}: the painted layer itself is unchanged", orig_px == rgba)
    ctx["report"]["info"][f"{tag}_layer"] = {"name": new.name(), "bounds": [bx, by, bw, bh],
                                             "message": panel.last_message}


def scenario_depth16(ctx):
    krita, app_qt, panel, host = ctx["krita"], ctx["qt"], ctx["panel"], ctx["host"]
    from impasto_krita.plugin_krita.impasto_krita.krita_host import document_format
    from impasto_krita.plugin_krita.impasto_krita.pixels import to_rgba8

    W, H = 64, 64
    doc, rgba = make_document(krita, "u16-doc", W, H, "RGBA", "U16", "")
    host.doc = doc
    fmt = document_format(doc)
    check("u16: default U16 profile is linear and read as such", fmt.linear and fmt.depth == "U16",
          f"{doc.colorProfile()} -> {fmt}")
    back = to_rgba8(bytes(doc.pixelData(0, 0, W, H)), fmt)
    diff = max(abs(a - b) for a, b in zip(back, rgba))
    check("u16: Python conversion of Krita's 16-bit linear projection matches the 8-bit paint", diff <= 1,
          f"max diff {diff}")
    select(doc, 16, 16, 24, 20)
    before = bytes(doc.pixelData(0, 0, W, H))
    set_form(panel, steps=3, feather=2, padding=8)
    ok, msg = run_job(app_qt, panel)
    if not check("u16: inpaint on a 16-bit linear document", ok, msg):
        return
    doc.waitForDone()
    doc.refreshProjection()
    new = panel.last_layers[0]
    check("u16: the new layer is in the document's colour space", (new.colorModel(), new.colorDepth())
          == ("RGBA", "U16"), f"{new.colorModel()}/{new.colorDepth()}")
    after = bytes(doc.pixelData(0, 0, W, H))
    same, where = outside_unchanged(before, after, W, H, (16 - 6, 16 - 6, 24 + 12, 20 + 12), 8)
    check("u16: pixels outside the selection untouched (16-bit compare)", same, where)
    centre = bytes(new.pixelData(28, 26, 1, 1))
    check("u16: patch opaque at the centre", centre[6:8] == b"\xff\xff", centre.hex())


def scenario_graybatch(ctx):
    """Refine (img2img) a greyscale document, two variants: one layer each, first visible."""
    krita, app_qt, panel, host = ctx["krita"], ctx["qt"], ctx["panel"], ctx["host"]
    W, H = 48, 40
    doc, _ = make_document(krita, "gray-doc", W, H, "GRAYA", "U8", "")
    host.doc = doc
    set_form(panel, steps=3, strength=50, batch=2)
    check("gray: button says refine", panel.generate_button.text() == "Refine 50 %", panel.generate_button.text())
    ok, msg = run_job(app_qt, panel)
    set_form(panel, batch=1)
    if not check("gray: img2img batch of two on a greyscale document", ok, msg):
        return
    layers = panel.last_layers
    check("gray: one layer per variant", len(layers) == 2, [n.name() for n in layers])
    if len(layers) != 2:
        return
    check("gray: first visible, second hidden", layers[0].visible() and not layers[1].visible(),
          [(n.name(), n.visible()) for n in layers])
    stack = [n.name() for n in layer_nodes(doc)]
    check("gray: the visible variant is on top", stack[-1] == layers[0].name(), stack)
    b = layers[0].bounds()
    check("gray: full-canvas layers at the origin", (b.x(), b.y(), b.width(), b.height()) == (0, 0, W, H),
          (b.x(), b.y(), b.width(), b.height()))
    check("gray: layers stay greyscale", all(n.colorModel() == "GRAYA" for n in layers),
          [n.colorModel() for n in layers])
    check("gray: layers named for the refine", layers[1].name().startswith("Impasto Refined 2/2"), layers[1].name())


def scenario_cmyk(ctx):
    """A CMYK document: read through Krita's own colour management, result as an RGBA 8-bit layer."""
    krita, app_qt, panel, host = ctx["krita"], ctx["qt"], ctx["panel"], ctx["host"]
    from impasto_krita.plugin_krita.impasto_krita.krita_host import document_format

    W, H = 40, 32
    doc = krita.createDocument(W, H, "cmyk-doc", "CMYKA", "U8", "", 72.0)
    host.doc = doc
    check("cmyk: the plugin hands CMYK to Krita's conversion", not document_format(doc).supported,
          document_format(doc))
    raw, fmt, rgba = host.read_pixels(doc, (4, 4, 20, 10))
    check("cmyk: Krita renders the window as RGBA8", raw is None and rgba is not None and len(rgba) == 20 * 10 * 4,
          None if rgba is None else len(rgba))
    set_form(panel, steps=3, strength=60)
    ok, msg = run_job(app_qt, panel)
    if not check("cmyk: refine of a CMYK document", ok, msg):
        return
    new = panel.last_layers[0]
    check("cmyk: result layer is RGBA 8-bit sRGB", (new.colorModel(), new.colorDepth()) == ("RGBA", "U8"),
          f"{new.colorModel()}/{new.colorDepth()}")
    b = new.bounds()
    check("cmyk: full-canvas layer", (b.width(), b.height()) == (W, H), (b.width(), b.height()))


def scenario_dead(ctx):
    """A daemon that is not there: a sentence in the docker, no traceback, no hang."""
    app_qt, krita = ctx["qt"], ctx["krita"]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    panel, host = make_panel(app_qt, krita, f"tcp://127.0.0.1:{port}")
    try:
        wait_for(app_qt, lambda: panel.state.status not in ("connecting", "starting"), 30)
        text = panel.status_label.text()
        check("dead: docker says no daemon answers", panel.state.status == "offline" and "No Impasto daemon" in text,
              f"{panel.state.status}: {text}")
        check("dead: no traceback text", "Traceback" not in text and "Error(" not in text, text)
    finally:
        panel.shutdown()


def scenario_docker(ctx):
    """Krita's own DockWidget wrapper builds, and the panel is screenshotted for docs."""
    app_qt, panel = ctx["qt"], ctx["panel"]
    try:
        from impasto_krita.plugin_krita.impasto_krita.plugin import ImpastoDocker

        docker = ImpastoDocker()
        ok = docker.panel is not None
        check("docker: Krita DockWidget builds the panel", ok)
        if docker.panel is not None:
            docker.panel.shutdown()
        docker.deleteLater()
    except Exception as exc:
        check("docker: Krita DockWidget builds the panel", False, repr(exc))
    shot = os.environ.get("IMPASTO_DRIVER_SHOT")
    if shot:
        if not os.path.exists(shot):  # not taken mid-job (no soft scenario): take it now
            panel.show()
            pump(app_qt, 0.2)
            panel.grab().save(shot)
        check("docker: screenshot saved", os.path.exists(shot) and os.path.getsize(shot) > 1000, shot)


SCENARIOS = {
    "inpaint": lambda ctx: scenario_inpaint(ctx, soft=False),
    "soft": lambda ctx: scenario_inpaint(ctx, soft=True),
    "depth16": scenario_depth16,
    "graybatch": scenario_graybatch,
    "cmyk": scenario_cmyk,
    "dead": scenario_dead,
    "docker": scenario_docker,
}


def main(*_args):
    t_start = time.monotonic()
    out = os.environ.get("IMPASTO_DRIVER_OUT", "krita-driver.json")
    try:
        _run()
    except Exception:
        check("driver ran to the end", False, traceback.format_exc())
    REPORT["timings"]["driver_s"] = round(time.monotonic() - t_start, 3)
    REPORT["ok"] = not REPORT["failures"]
    with open(out + ".tmp", "w") as f:
        json.dump(REPORT, f, indent=2)
    os.replace(out + ".tmp", out)
    print(f"driver: {len(REPORT['checks'])} checks, {len(REPORT['failures'])} failed", flush=True)


def _run():
    from krita import Krita

    from impasto_krita.plugin_krita.impasto_krita.qt import QtWidgets

    krita = Krita.instance()
    app_qt = QtWidgets.QApplication.instance()
    import impasto_krita
    from impasto_krita.plugin_krita.impasto_krita import qt, session

    copy = sys.modules[session.Client.__module__].__file__
    REPORT["info"].update(krita=krita.version(), python=sys.version.split()[0], qt=qt.QT_VERSION,
                          binding=qt.BINDING, protocol_copy=copy)
    # the installed root's own protocol/ (the plugin imports it relatively), never another Impasto
    check("plugin uses its vendored protocol copy",
          copy.startswith(os.path.join(os.path.dirname(impasto_krita.__file__), "protocol")), copy)
    heavy = [m for m in ("numpy", "PIL", "torch") if m in sys.modules]
    check("plugin imports no numpy / PIL / torch", not heavy, heavy)

    endpoint = os.environ["IMPASTO_ENDPOINT"]
    panel, host = make_panel(app_qt, krita, endpoint)
    ctx = {"krita": krita, "qt": app_qt, "panel": panel, "host": host, "report": REPORT}
    t0 = time.monotonic()
    ready = wait_for(app_qt, lambda: panel.state.status not in ("connecting", "starting"), 120)
    REPORT["timings"]["connect_s"] = round(time.monotonic() - t0, 3)
    REPORT["info"]["transport"] = panel.state.transport
    want = os.environ.get("IMPASTO_TRANSPORT", "")
    if want == "zmtp":
        check("the pure-Python ZMTP transport is in use", panel.state.transport == "ZmtpDealer", panel.state.transport)
    if not check("docker connects to the daemon", ready and panel.state.ready, panel.status_label.text()):
        return
    check("model list holds the tiny model", panel.model_combo.findData("tiny") >= 0,
          [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())])
    names = [s.strip() for s in os.environ.get("IMPASTO_DRIVER_SCENARIOS", ",".join(SCENARIOS)).split(",") if s.strip()]
    for name in names:
        t0 = time.monotonic()
        try:
            SCENARIOS[name](ctx)
        except Exception:
            check(f"{name}: ran without an exception", False, traceback.format_exc())
        REPORT["timings"][f"scenario_{name}_s"] = round(time.monotonic() - t0, 3)
    panel.shutdown()
