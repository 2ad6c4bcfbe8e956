"""Live painting in Krita's docker: the canvas is repainted as the artist paints.

Krita's scripting API has no "stroke finished" signal, so a timer reads the
part of the canvas a live job would send (the whole canvas, or the
selection's "only masked" window) every :data:`POLL_MS`; when the bytes
differ from the last read, that is a stroke for the client core's
:class:`~...protocol.live.LiveSession`, which debounces it, plans the job
(:func:`~...protocol.live.plan_live`) and keeps the newest job only.

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
from typing import Any, Optional

from ...protocol.live import DEBOUNCE_S, LiveSession, LiveUpdate, live_settings, plan_live, window_for_live
from . import planning
from .krita_host import document_format, prepare_layer
from .masks import analyse, crop
from .placement import plan_layers
from .planning import CanvasSnapshot, JobPlan
from .qt import QtCore, rgba_qimage

POLL_MS = 80


class KritaLive(QtCore.QObject):
    """Live mode for one docker panel (``panel``: :class:`~.panel.ImpastoPanel`)."""

    def __init__(self, panel: Any, poll_ms: int = POLL_MS, debounce: float = DEBOUNCE_S):
        super().__init__(panel)
        self.panel = panel
        self.debounce = debounce
        self.session: Optional[LiveSession] = None
        self.last: Optional[LiveUpdate] = None      # the live picture shown (what Keep adds)
        self.kept = 0
        self._snapshot: Optional[CanvasSnapshot] = None
        self._doc: Any = None
        self._digest = b""
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)

    @property
    def enabled(self) -> bool:
        return self.session is not None

    def set_enabled(self, on: bool) -> bool:
        """Switch live mode; False (with a message in the docker) when it cannot start."""
        if on == self.enabled:
            return True
        if not on:
            self._timer.stop()
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
        self._timer.start()
        self._poll()                                  # the first picture without waiting for a stroke
        self.panel.show_recommendation()              # "model default" reads what the live jobs use
        self.panel.show_message("Live painting on: every stroke repaints the picture.")
        return True

    # ------------------------------------------------------------------ reading the canvas (UI thread)

    def _read(self) -> Optional[CanvasSnapshot]:
        host = self.panel.host
        doc = host.active_document()
        if doc is None:
            return None
        width, height = host.canvas_size(doc)
        selection = host.read_selection(doc)
        info = analyse(selection, width, height) if selection is not None else None
        if info is not None and info.empty:
            info = None
        settings = self._settings()
        box = planning._box(info.bounds) if info is not None else None
        window = planning._rect(window_for_live((width, height), box, settings))
        raw, fmt, rgba = host.read_pixels(doc, window)
        window_sel = crop(selection, width, window, 1) if info is not None else None
        self._doc = doc
        return CanvasSnapshot(width, height, window, raw, fmt, window_sel, info, "", rgba)

    def _settings(self):
        return self.panel.read_form()

    def _poll(self) -> None:
        if self.session is None:
            return
        try:
            snap = self._read()
        except Exception as exc:  # a document closing under us: say so, keep live mode
            self.panel.show_message(f"Live painting: {exc}", error=True)
            return
        if snap is not None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((snap.window, snap.canvas_width, snap.canvas_height)).encode())
            h.update(snap.pixels if snap.pixels is not None else (snap.rgba or b""))
            h.update(snap.selection or b"")
            digest = h.digest()
            if digest != self._digest:
                self._digest, self._snapshot = digest, snap
                self.session.stroke()
        try:
            self.session.tick()
        except Exception as exc:
            self.panel.show_message(f"Live painting: {exc}", error=True)

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
        self._digest = b""           # the kept layer changed the canvas: repaint from it
        return nodes

    def discard(self) -> None:
        self.last = None
        self.panel.preview.clear()

    # ------------------------------------------------------------------ the docker's row

    def row(self) -> Any:
        """The docker's live row: a Live toggle, Keep and Discard (built here, one line of wiring in the panel)."""
        from .qt import QtWidgets

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
        self.live_button.toggled.connect(lambda on: self.live_button.setChecked(self.set_enabled(on) and on))
        self.keep_button.clicked.connect(self.keep)
        self.discard_button.clicked.connect(self.discard)
        lay.addWidget(self.live_button, 1)
        lay.addWidget(self.keep_button)
        lay.addWidget(self.discard_button)
        return box
