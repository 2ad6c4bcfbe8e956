"""Live mode for the canvas: every stroke repaints the picture, shown as a live layer to keep or discard.

The job and "newest wins" are the client core's (:mod:`impasto.protocol.live`);
this module is only the canvas glue:

* **Strokes.**  A finished stroke, an undo or any other edit of the document
  moves its undo stack; that is the stroke event the session debounces (a
  Qt timer calls :meth:`LiveSession.tick`).  Keeping the live picture is an
  edit too, but one the controller makes itself, so it starts no job.
* **The job.**  The canvas's own "Refine" plan (:func:`.job_plans.plan`) at the
  live settings: the whole picture, or inside a selection only the
  selection's window ("only masked") - the same pixels a Refine would read.
* **The live layer.**  Each new picture replaces the last one over the canvas
  (the staging overlay; nothing touches the artist's layers).  *Keep* copies
  it into a real layer (one undo step, :class:`.history.AddLayerCommand`);
  *Discard* drops it.  Switching live mode off cancels the pending job.

Events arrive on the UI thread (the :class:`~.connection.DaemonLink` hops), so
nothing here locks.
"""
from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from impasto.protocol import errors
from impasto.protocol.live import DEBOUNCE_S, LiveSession, LiveUpdate, live_job
from impasto.protocol.messages import Error

from . import job_plans
from .document import Document
from .history import AddLayerCommand
from .layers import Layer
from .staging import Candidate

TICK_MS = 10


class LiveController(QObject):
    changed = Signal()               # live mode switched, or a new live picture (or none) is shown
    status = Signal(str, bool)       # a sentence for the status bar, is-error

    def __init__(self, link, panel, view, document: Callable[[], Document], parent: Optional[QObject] = None,
                 debounce: float = DEBOUNCE_S):
        super().__init__(parent)
        self.link, self.panel, self.view, self.document = link, panel, view, document
        self.debounce = debounce
        self.session: Optional[LiveSession] = None
        self.candidate: Optional[Candidate] = None
        self._doc: Optional[Document] = None
        self._own_edit = False
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    @property
    def enabled(self) -> bool:
        return self.session is not None

    # ------------------------------------------------------------------ on / off

    def set_enabled(self, on: bool) -> None:
        if on == self.enabled:
            return
        if on:
            if not self.link.connected:
                self.status.emit(f"Live painting needs the daemon: {self.link.message}", True)
                self.changed.emit()
                return
            self.session = LiveSession(self.link, self._read_plan, self._on_result, self._on_error,
                                       debounce=self.debounce, seed=self.panel.settings().seed)
            self._watch(self.document())
            self._timer.start()
            self.session.repaint_now()          # the first picture without waiting for a stroke
            self.panel.show_live(True)          # "model default" now reads the live job's sampler, steps, CFG
            self.status.emit("Live painting on: every stroke repaints the picture.", False)
        else:
            self._timer.stop()
            self.session.close()
            self.session = None
            self._watch(None)
            self.panel.show_live(False)
            self.status.emit("Live painting off.", False)
        self.changed.emit()

    def _watch(self, doc: Optional[Document]) -> None:
        if self._doc is not None:
            try:
                self._doc.undo.indexChanged.disconnect(self._on_edit)
            except (RuntimeError, TypeError):
                pass
        self._doc = doc
        if doc is not None:
            doc.undo.indexChanged.connect(self._on_edit)

    def _on_edit(self, *_args) -> None:
        if self.session is not None and not self._own_edit:
            self.session.stroke()

    def _tick(self) -> None:
        if self.session is None:
            return
        doc = self.document()
        if doc is not self._doc:                 # a new or opened picture: its strokes now count
            self._watch(doc)
            self.discard()
            self.session.stroke()
        try:
            self.session.tick()
        except job_plans.PlanError as exc:
            self.status.emit(f"Live painting: {exc}", True)

    # ------------------------------------------------------------------ the job (client core)

    def _read_plan(self, session: LiveSession):
        s, rec = live_job(self.panel.settings(), session.seed, self.panel.recommendation())
        plan = job_plans.plan(self.document(), s, "refine", rec)
        plan.request.live = True
        return plan

    def _on_result(self, update: LiveUpdate) -> None:
        if self.session is None:
            return
        cands = job_plans.candidates_from_result(update.plan, update.result)
        if not cands:
            return
        self.candidate = cands[0]
        self.view.set_candidate(self.candidate.image, self.candidate.rect)
        self.status.emit(f"Live: {update.stroke_to_result_s * 1000:.0f} ms after the stroke - Keep makes it a "
                         f"layer.", False)
        self.changed.emit()

    def _on_error(self, ev: Error) -> None:
        self.status.emit("Live painting: " + errors.describe_error(ev.code, ev.message, ev.field), True)

    # ------------------------------------------------------------------ keep / discard

    def keep(self) -> Optional[Layer]:
        """The live picture becomes a real layer on top (one undo step); live mode goes on."""
        cand, doc = self.candidate, self.document()
        if cand is None or doc is None:
            return None
        layer = cand.to_layer(doc)
        layer.name = "Live: " + layer.name.split(": ", 1)[-1]
        self._own_edit = True
        try:
            doc.undo.push(AddLayerCommand(doc, layer, None, f"Keep live picture “{layer.name}”"))
        finally:
            self._own_edit = False
        self.discard()
        return layer

    def discard(self) -> None:
        if self.candidate is not None:
            self.candidate = None
            self.view.set_candidate(None)
            self.changed.emit()
