"""What the Krita docker costs Krita's UI thread on a 4K canvas (run inside real Krita).

Everything slow (pixel conversion, sending, waiting) runs on worker threads;
what must run on the UI thread is reading the document and adding the layer.
This measures exactly those calls of the plugin's :class:`KritaHost` on a
3840x2160 RGBA 8-bit document with a painted layer and an 600x500 selection:

* reading the selection (within its bounding box) and deciding the window
  (``read_selection`` + ``read_plan``),
* reading the inpaint's context window vs the whole canvas (the baseline: what
  a plugin sending the full canvas would read),
* adding a patch layer vs a full-canvas layer,
* live mode's check (read what a live job sends + hash it), with the selection and
  without, and the share of the UI thread it takes while the artist is not painting:
  at the 80 ms timer live mode used to run vs the idle interval it runs at now
  (``plugin_krita/impasto_krita/live.py``; pen-ups are read at once, not on a timer).

Run (medians of 5; Krita's first start on a fresh profile takes ~30 s more)::

    impasto install-krita --profile /tmp/kprof
    QT_QPA_PLATFORM=offscreen PYTHONPATH=/tmp/kprof/pykrita:bench \\
        kritarunner -s krita_ui_thread -f main
"""
from __future__ import annotations

import statistics
import time

W, H, REPEAT = 3840, 2160, 5


def median_ms(fn, repeat=REPEAT):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(*_args):
    import os

    os.environ["IMPASTO_KRITA_NO_REGISTER"] = "1"
    from krita import Krita, Selection

    from impasto_krita.plugin_krita.impasto_krita import planning
    from impasto_krita.plugin_krita.impasto_krita.krita_host import KritaHost, document_format, prepare_layer
    from impasto_krita.plugin_krita.impasto_krita.placement import LayerPlan

    app = Krita.instance()
    doc = app.createDocument(W, H, "bench", "RGBA", "U8", "", 72.0)
    layer = doc.createNode("paint", "paintlayer")
    layer.setPixelData(os.urandom(W * H * 4), 0, 0, W, H)
    doc.rootNode().addChildNode(layer, None)
    sel = Selection()
    sel.select(1500, 900, 600, 500, 255)
    doc.setSelection(sel)
    doc.waitForDone()
    doc.refreshProjection()
    host = KritaHost(app)
    settings = planning.Settings()

    def decide():
        mask = host.read_selection(doc)
        return planning.read_plan(settings, W, H, mask)

    plan = decide()
    window = plan.window
    rows = [
        ("read selection + decide the window", median_ms(decide)),
        (f"read the context window {window[2]}x{window[3]}", median_ms(lambda: host.read_pixels(doc, window))),
        ("baseline: read the whole 4K canvas", median_ms(lambda: host.read_pixels(doc, (0, 0, W, H)))),
    ]
    fmt = document_format(doc)
    patch = prepare_layer(fmt, LayerPlan("patch", 1480, 880, 640, 540, os.urandom(640 * 540 * 4)))
    full = prepare_layer(fmt, LayerPlan("full", 0, 0, W, H, os.urandom(W * H * 4)))

    def add(item):
        nodes = host.add_layers(doc, [item])
        doc.waitForDone()
        nodes[0].remove()

    rows.append(("add a 640x540 patch layer", median_ms(lambda: add(patch))))
    rows.append(("add a full 4K layer", median_ms(lambda: add(full))))
    live_rows = live_checks(host, doc, settings)
    # kritarunner exits without flushing Python's stdout: flush every line
    print(f"Krita {app.version()}, document {W}x{H} RGBA U8, median of {REPEAT}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    for name, ms in rows:
        print(f"  {name:<42} {ms:8.1f} ms", flush=True)
    print(f"  window read vs whole-canvas read: {rows[2][1] / max(rows[1][1], 1e-6):.0f}x less UI-thread time",
          flush=True)
    print(f"  live mode's event filter: +{filter_cost_us():.2f} us per mouse move event", flush=True)
    for name, ms, old_share, new_ms, new_share in live_rows:
        print(f"  live check, {name:<31} {ms:8.1f} ms; idle UI-thread share: every 80 ms (before) "
              f"{old_share:.0%}, every {new_ms} ms (now) {new_share:.0%}", flush=True)


def filter_cost_us(count=20000):
    """What live mode's application event filter adds to each mouse move Krita dispatches (median of 5)."""
    from impasto_krita.plugin_krita.impasto_krita.live import CanvasInput
    from impasto_krita.plugin_krita.impasto_krita.qt import QtCore, QtGui, QtWidgets

    app = QtWidgets.QApplication.instance()
    widget = QtWidgets.QWidget()
    filt = CanvasInput(lambda: None)
    E, B, M = QtCore.QEvent.Type, QtCore.Qt.MouseButton, QtCore.Qt.KeyboardModifier

    def moves():
        for _ in range(count):
            app.sendEvent(widget, QtGui.QMouseEvent(E.MouseMove, QtCore.QPointF(3, 3), B.NoButton, B.NoButton,
                                                    M.NoModifier))

    without, with_filter = [], []
    for _ in range(REPEAT):
        without.append(median_ms(moves, 1))
        app.installEventFilter(filt)
        with_filter.append(median_ms(moves, 1))
        app.removeEventFilter(filt)
    return (statistics.median(with_filter) - statistics.median(without)) / count * 1000


def live_checks(host, doc, settings):
    """Live mode's check (read what a live job sends + hash it), with and without the selection.

    The UI-thread share while the artist is not painting: the check's cost over its interval, for the
    80 ms timer live mode used to run and for the idle interval it runs now (pen-ups read at once).
    """
    from krita import Selection

    from impasto_krita.plugin_krita.impasto_krita.live import KritaLive
    from impasto_krita.plugin_krita.impasto_krita.qt import QtCore

    class Panel(QtCore.QObject):          # what KritaLive reads of the docker: the host and the form
        def __init__(self):
            super().__init__()
            self.host = host

        def read_form(self):
            return settings

    host.active_document = lambda: doc    # kritarunner has no view, so no "active" document
    live = KritaLive(Panel())
    out = []
    for name in ("600x500 selection", "whole canvas, no selection"):
        if name.startswith("whole"):
            doc.setSelection(Selection())
            doc.waitForDone()
        ms = median_ms(live.read_digest)
        live.read_s = ms / 1000
        interval = live.idle_interval_ms()
        out.append((name, ms, min(1.0, ms / 80), interval, ms / (interval + ms)))
    return out
