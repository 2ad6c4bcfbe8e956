"""Live painting in Krita's docker: the canvas is repainted as the artist paints.

Krita's scripting API has no "stroke finished" signal.  What stands in for it:

* **Pen-up on the canvas.**  :class:`CanvasInput`, an application event filter,
  sees the mouse, tablet and touch releases (and key releases: an undo, a fill
  shortcut) whose target is one of Krita's canvas widgets.  Each one starts a
  *settle* check: as soon as Krita's image has no stroke running
  (``Document.tryBarrierLock``, polled every :data:`SETTLE_MS`, never a
  blocking wait) the live window is read and hashed; new bytes are a stroke
  for the client core's :class:`~...protocol.live.LiveSession`, which
  debounces it, plans the job (:func:`~...protocol.live.plan_live`) and keeps
  the newest job only.
* **An idle check** for the edits no pen-up announces (a script, a filter
  finishing late, a click in the Layers docker): the same read, every
  :data:`IDLE_MS` at least and never more often than keeps its cost under
  :data:`IDLE_SHARE` of the UI thread (a 4K canvas read and hashed takes tens
  of milliseconds: docs/krita.md).

Nothing is read while a pen is down on the canvas or a stroke is still being
applied: a read then would wait for the stroke on the UI thread (the stutter
under the cursor that live modes are known for) or see half a stroke.  The
timer this replaced read and hashed every 80 ms, pen down or not.

Where the live picture shows: in the docker's preview, not as a layer on the
canvas - a layer would be read back into the next live job (the projection
is all Krita lets a script read), repainting the repaint.  **Keep** adds it
as a real layer the way Generate adds its results (one undoable add, placed
where the job's window or selection was); **Discard** drops it.  Switching
live mode off cancels the pending job.

Pixel reads stay on the UI thread (Krita's API wants it); the comparison is
a hash of bytes already read.  Standard library + Krita + PyQt only.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Callable, Optional, Tuple

from ...protocol.live import DEBOUNCE_S, LiveSession, LiveUpdate, live_settings, plan_live
from . import planning
from .krita_host import document_format, prepare_layer
from .placement import plan_layers
from .planning import CanvasSnapshot, JobPlan
from .qt import QtCore, QtWidgets, rgba_qimage

SETTLE_MS = 30        # after a pen-up: how often to ask whether Krita finished applying the stroke
SETTLE_MAX_S = 5.0    # ... and how long at most before reading anyway
IDLE_MS = 500         # the idle check's shortest interval
IDLE_SHARE = 0.05     # ... stretched so that it never takes more than this share of the UI thread
PEN_STUCK_S = 60.0    # a press whose release never came (focus stolen mid-stroke) stops holding reads back


def is_canvas_widget(obj: Any) -> bool:
    """True for Krita's canvas widget (``KisOpenGLCanvas2``, ``KisQPainterCanvas``) or a child of one.

    Krita's canvas classes are not wrapped for Python, so the test is the Qt
    class name, which every ``QObject`` reports.  The canvas controller around
    it (``KisCanvasController``: the scroll bars) is not the canvas: a release
    there ends no stroke.
    """
    depth = 0
    while obj is not None and depth < 3:
        try:
            name = obj.metaObject().className()
            if "Canvas" in name and "Controller" not in name:
                return True
            obj = obj.parent()
        except Exception:
            return False
        depth += 1
    return False


class CanvasInput(QtCore.QObject):
    """Application event filter: calls ``on_pen_up()`` after a release on the canvas; tracks pen down.

    Never consumes an event.  Installed only while live mode is on.
    """

    def __init__(self, on_pen_up: Callable[[], None], parent: Any = None):
        super().__init__(parent)
        self.on_pen_up = on_pen_up
        self._down_at: Optional[float] = None
        E = QtCore.QEvent.Type
        self._press = {E.MouseButtonPress, E.TabletPress, E.TouchBegin}
        self._release = {E.MouseButtonRelease, E.TabletRelease, E.TouchEnd, E.KeyRelease}

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in self._press or kind in self._release:
            if is_canvas_widget(obj):
                if kind in self._press:
                    self._down_at = time.monotonic()
                elif not (kind == QtCore.QEvent.Type.KeyRelease and event.isAutoRepeat()):
                    if kind != QtCore.QEvent.Type.KeyRelease:
                        self._down_at = None
                    self.on_pen_up()
        return False

    @property
    def pen_down(self) -> bool:
        """A pen (mouse button, stylus, finger) is down on the canvas."""
        return self._down_at is not None and time.monotonic() - self._down_at < PEN_STUCK_S

    def reset(self) -> None:
        self._down_at = None


class KritaLive(QtCore.QObject):
    """Live mode for one docker panel (``panel``: :class:`~.panel.ImpastoPanel`)."""

    def __init__(self, panel: Any, debounce: float = DEBOUNCE_S, idle_ms: int = IDLE_MS):
        super().__init__(panel)
        self.panel = panel
        self.debounce = debounce
        self.idle_ms = idle_ms
        self.session: Optional[LiveSession] = None
        self.last: Optional[LiveUpdate] = None      # the live picture shown (what Keep adds)
        self.kept = 0
        self.reads = 0                              # canvas reads (tests and the benchmark count them)
        self.read_s = 0.0                           # the last read's cost (read + hash), seconds
        self._snapshot: Optional[CanvasSnapshot] = None
        self._doc: Any = None
        self._digest = b""
        self._settle_since: Optional[float] = None
        self.input = CanvasInput(self._pen_up, self)
        self._idle = self._single_shot(self._idle_check)
        self._settle = self._single_shot(self._settle_check)
        self._debounced = self._single_shot(self._tick)

    def _single_shot(self, slot: Callable[[], None]) -> Any:
        timer = QtCore.QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    @property
    def enabled(self) -> bool:
        return self.session is not None

    def set_enabled(self, on: bool) -> bool:
        """Switch live mode; False (with a message in the docker) when it cannot start."""
        if on == self.enabled:
            return True
        if not on:
            self._stop_watching()
            self.session.close()
            self.session = None
            self.panel.show_recommendation()          # "model default" reads the model's own again
            self.panel.show_message("Live painting off.")
            return True
        client = self.panel.session._get_client() if self.panel.state.ready else None
        if client is None:
            self.panel.show_message("Live painting needs the daemon: connect first.", error=True)
            return False
        seed = self.panel.read_form().seed
        self.session = LiveSession(client, self._read_plan, self._on_result_thread, self._on_error_thread,
                                   debounce=self.debounce, seed=seed)
        self._digest = b""
        QtWidgets.QApplication.instance().installEventFilter(self.input)
        self._check()                                 # the first picture without waiting for a stroke
        self._idle.start(self.idle_ms)
        self.panel.show_recommendation()              # "model default" reads what the live jobs use
        self.panel.show_message("Live painting on: every stroke repaints the picture.")
        return True

    # ------------------------------------------------------------------ reading the canvas (UI thread)

    def _read(self) -> Optional[CanvasSnapshot]:
        host = self.panel.host
        doc = host.active_document()
        if doc is None:
            return None
        snapshot = planning.read_canvas(host, doc, self._settings(), live=True)
        self._doc = doc
        return snapshot

    def _settings(self):
        return self.panel.read_form()

    # ------------------------------------------------------------------ when to read (UI thread)

    def _stop_watching(self) -> None:
        QtWidgets.QApplication.instance().removeEventFilter(self.input)
        self.input.reset()
        for timer in (self._idle, self._settle, self._debounced):
            timer.stop()
        self._settle_since = None

    def _pen_up(self) -> None:
        """A release on the canvas: read as soon as Krita has applied the stroke."""
        if self.session is not None and self._settle_since is None:
            self._settle_since = time.monotonic()
            self._settle.start(0)

    def _settle_check(self) -> None:
        if self.session is None:
            return
        waited = time.monotonic() - (self._settle_since or 0.0)
        if self.input.pen_down or (self._busy() and waited < SETTLE_MAX_S):
            if not self.input.pen_down:
                self._settle.start(SETTLE_MS)
            else:                                      # a new stroke began: its own pen-up reads
                self._settle_since = None
            return
        self._settle_since = None
        self._check()

    def _idle_check(self) -> None:
        if self.session is None:
            return
        if not self.input.pen_down and self._settle_since is None and not self._busy():
            self._check()
        self._idle.start(self.idle_interval_ms())

    def set_idle_ms(self, ms: int) -> None:
        """Change the idle check's shortest interval (restarts its timer when live mode is on)."""
        self.idle_ms = int(ms)
        if self.session is not None:
            self._idle.start(self.idle_interval_ms())

    def idle_interval_ms(self) -> int:
        """The idle check's interval: :data:`IDLE_MS`, or longer where a read is dear (big canvases)."""
        return max(self.idle_ms, int(self.read_s / IDLE_SHARE * 1000))

    def _busy(self) -> bool:
        """True while Krita is still applying a stroke (the non-blocking test; older Krita: never)."""
        try:
            doc = self.panel.host.active_document()
            try_lock = getattr(doc, "tryBarrierLock", None)
            if doc is None or try_lock is None:
                return False
            if try_lock():
                doc.unlock()
                return False
            return True
        except Exception:  # a document closing under us: the read that follows says so
            return False

    def read_digest(self) -> Tuple[Optional[CanvasSnapshot], bytes]:
        """What a live job would send, read now, and its hash (the UI-thread work of one check)."""
        snap = self._read()
        if snap is None:
            return None, b""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((snap.window, snap.canvas_width, snap.canvas_height)).encode())
        h.update(snap.pixels if snap.pixels is not None else (snap.rgba or b""))
        h.update(snap.selection or b"")
        return snap, h.digest()

    def _check(self) -> None:
        """Read what a live job would send; new bytes are a stroke."""
        if self.session is None:
            return
        t0 = time.perf_counter()
        try:
            snap, digest = self.read_digest()
        except Exception as exc:  # a document closing under us: say so, keep live mode
            self.panel.show_message(f"Live painting: {exc}", error=True)
            return
        if snap is None:
            return
        self.reads += 1
        self.read_s = time.perf_counter() - t0
        if digest != self._digest:
            self._digest, self._snapshot = digest, snap
            self.session.stroke()
            self._debounced.start(int(self.session.debounce.delay * 1000))

    def _tick(self) -> None:
        if self.session is None:
            return
        try:
            self.session.tick()
        except Exception as exc:
            self.panel.show_message(f"Live painting: {exc}", error=True)
            return
        left = self.session.debounce.remaining(self.session.clock())
        if left is not None:                           # not due yet (a stroke came meanwhile)
            self._debounced.start(int(left * 1000) + 1)

    def _read_plan(self, session: LiveSession) -> Optional[JobPlan]:
        snap = self._snapshot
        if snap is None:
            return None
        settings = live_settings(self._settings(), session.seed)
        wx, wy, w, h = snap.window
        has_sel = snap.mask_info is not None
        core = plan_live((snap.canvas_width, snap.canvas_height), settings, session.seed,
                         window=(wx, wy, wx + w, wy + h), rgba=snap.rgba8(),
                         mask=snap.selection if has_sel else None,
                         selection=planning._box(snap.mask_info.bounds) if has_sel else None,
                         recommendation=self.panel.recommendation())
        plan = JobPlan(core.kind, core.request, snap.window, snap.canvas_width, snap.canvas_height,
                       snap.mask_info if core.kind == "edit" else None,
                       snap.selection if core.kind == "edit" else None, core.label)
        plan.document = self._doc
        plan.document_format = document_format(self._doc)
        return plan

    # ------------------------------------------------------------------ results (reader thread -> UI)

    def _on_result_thread(self, update: LiveUpdate) -> None:
        self.panel.poster.post(lambda: self._show(update))

    def _on_error_thread(self, ev: Any) -> None:
        self.panel.poster.post(lambda: self.panel.show_message(f"Live painting: {ev.message}", error=True))

    def _show(self, update: LiveUpdate) -> None:
        if self.session is None:
            return
        self.last = update
        self._picture_buttons()
        img = update.result.images[0]
        self.panel.set_preview(rgba_qimage(img.data, img.width, img.height))
        self.panel.show_message(f"Live: {update.stroke_to_result_s * 1000:.0f} ms after the stroke · Keep adds it "
                                f"as a layer")

    # ------------------------------------------------------------------ keep / discard

    def keep(self) -> list:
        """The live picture as a real layer (one undoable add, where Generate would put it)."""
        update = self.last
        if update is None:
            return []
        plan = update.plan
        layers = plan_layers(plan, update.result)
        prepared = [prepare_layer(plan.document_format, layer) for layer in layers]
        for p in prepared:
            p.plan.name = "Live · " + p.plan.name
        nodes = self.panel.host.add_layers(plan.document, prepared)
        self.kept += len(nodes)
        self.last = None
        self._picture_buttons()
        self._digest = b""           # the kept layer changed the canvas: repaint from it
        if self.session is not None:
            self._pen_up()
        return nodes

    def discard(self) -> None:
        self.last = None
        self._picture_buttons()
        self.panel.preview.clear()

    def _picture_buttons(self) -> None:
        """Keep and Discard act only on a live picture: enabled while one is shown (the row may not be built)."""
        for name in ("keep_button", "discard_button"):
            button = getattr(self, name, None)
            if button is not None:
                button.setEnabled(self.last is not None)

    # ------------------------------------------------------------------ the docker's row

    def row(self) -> Any:
        """The docker's live row: a Live toggle, Keep and Discard (built here, one line of wiring in the panel)."""
        box = QtWidgets.QWidget()
        lay = QtWidgets.QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.live_button = QtWidgets.QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Repaint the canvas (or the selection) after every stroke, at the model's "
                                    "settings; the picture shows below")
        self.keep_button = QtWidgets.QPushButton("Keep")
        self.keep_button.setToolTip("Add the live picture as a layer (one undo step)")
        self.discard_button = QtWidgets.QPushButton("Discard")
        self.discard_button.setToolTip("Drop the live picture")
        self.live_button.toggled.connect(lambda on: self.live_button.setChecked(self.set_enabled(on) and on))
        self.keep_button.clicked.connect(self.keep)
        self.discard_button.clicked.connect(self.discard)
        lay.addWidget(self.live_button, 1)
        lay.addWidget(self.keep_button)
        lay.addWidget(self.discard_button)
        self._picture_buttons()
        return box
