"""Runs Generate / Refine / Inpaint jobs for the window: plan, submit, progress, stage.

Everything here runs on the UI thread: the :class:`~.connection.DaemonLink`
delivers each job event through a queued Qt signal.  Live previews are drawn
in place on the canvas; results become staged candidates; errors become one
sentence in the panel with the offending field outlined, never a dead UI.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from PySide6.QtCore import QObject, Signal

from impasto.protocol import Job, errors, notices
from impasto.protocol.messages import Accepted, Cancelled, Error, ErrorCode, Progress, ProtocolError, Result

from . import job_plans, qt_images
from .canvas_view import CanvasView
from .connection import DaemonLink
from .document import Document
from .generation_panel import GenerationPanel
from .staging import StagingArea

TITLES = {"generate": "Generate", "refine": "Refine", "inpaint": "Inpaint"}
#: the canvas's places for the client core's error sentences
CANVAS = errors.HostWords(
    install="pip install -e . in the environment that runs the daemon",
    models="pick another model in the Model list", start="press Start in the status bar, or run `impasto serve`",
    concepts="remove it from the concepts list or train it first",
)
LOST = (ErrorCode.UNAVAILABLE, ErrorCode.DAEMON_RESTARTED, ErrorCode.CLIENT_CLOSED)


class GenerationController(QObject):
    finished = Signal(str, str)   # job id, outcome: result | error | cancelled
    produced = Signal(object)     # the staged candidates of one result (the Results dock records them)

    def __init__(self, link: DaemonLink, panel: GenerationPanel, view: CanvasView, staging: StagingArea,
                 document: Callable[[], Document], parent: Optional[QObject] = None):
        super().__init__(parent)
        self.link, self.panel, self.view, self.staging = link, panel, view, staging
        self.document = document
        self.jobs: Dict[str, Tuple[Job, job_plans.JobPlan]] = {}
        self.heard: Dict[str, notices.Heard] = {}     # each job's warnings shown so far (sent live)
        self.last_error: Optional[Error] = None
        panel.run_requested.connect(self.run)
        panel.cancel_requested.connect(self.cancel_all)

    # ------------------------------------------------------------------ starting

    def plan(self, mode: str) -> job_plans.JobPlan:
        if mode not in job_plans.MODES:
            raise ValueError(mode)
        return job_plans.plan(self.document(), self.panel.settings(), mode, self.panel.recommendation())

    def run(self, mode: str) -> Optional[str]:
        """Plan and submit a job; the job id, or None when it could not be sent (the panel says why)."""
        if not self.link.connected:
            self.panel.show_status(f"Cannot {TITLES[mode].lower()}: {self.link.message}", error=True)
            return None
        try:
            plan = self.plan(mode)
        except job_plans.PlanError as exc:
            self.panel.show_status(str(exc), error=True)
            self.panel.highlight(exc.field)
            return None
        holder: Dict[str, str] = {}
        try:
            job = self.link.submit(plan.request, lambda ev: self._on_event(holder["id"], ev))
        except ProtocolError as exc:
            self.panel.show_status(f"Cannot {TITLES[mode].lower()}: {errors.describe_exception(exc, host=CANVAS)}",
                                   error=True)
            return None
        holder["id"] = job.id
        self.jobs[job.id] = (job, plan)
        self.panel.set_running(True)
        self.panel.show_status(f"{TITLES[mode]}: sent to the daemon…")
        return job.id

    def cancel_all(self) -> None:
        for job, _plan in list(self.jobs.values()):
            try:
                job.cancel()
            except ProtocolError:
                pass
        if self.jobs:
            self.panel.show_status("Cancelling…")

    def forget_all(self) -> None:
        """The document is being replaced: cancel our jobs and drop what they would deliver."""
        self.cancel_all()
        self.jobs.clear()
        self.heard.clear()
        self.view.set_preview(None)
        self.panel.set_running(False)

    # ------------------------------------------------------------------ events (UI thread)

    def _on_event(self, job_id: str, ev) -> None:
        entry = self.jobs.get(job_id)
        if entry is None:
            return  # a job we forgot (document replaced)
        _job, plan = entry
        heard = self.heard.setdefault(job_id, notices.Heard())
        if isinstance(ev, Accepted):
            if ev.position > 0:
                self.panel.show_status(f"{TITLES[plan.mode]}: {notices.waiting_words(ev.position)} in the daemon's "
                                       f"queue…")
        elif isinstance(ev, Progress):
            fresh = heard.fresh(ev.warnings)
            if not notices.only_warnings(ev):
                self.panel.show_progress(ev.step, ev.total, ev.stage, ev.loss)
            if ev.step <= 1 or fresh:
                self.panel.show_status(f"{TITLES[plan.mode]}: working — the picture forms on the canvas; "
                                       f"Cancel stops it." + ("  Warning: " + "; ".join(heard.shown)
                                                               if heard.shown else ""))
            if ev.preview is not None:
                doc = self.document()
                rect = job_plans.preview_rect(plan, ev.preview.width, ev.preview.height, doc.rect())
                self.view.set_preview(plan.preview_image(qt_images.from_wire(ev.preview), rect), rect)
        elif isinstance(ev, Result):
            self._finish(job_id)
            candidates = job_plans.candidates_from_result(plan, ev)
            self.staging.add(candidates)
            self.produced.emit(candidates)
            secs = ev.timings.get("total")
            msg = (f"{TITLES[plan.mode]}: {len(candidates)} result(s) staged"
                   + (f" in {secs:.1f} s" if secs else "") + " — Accept keeps one as a layer.")
            if ev.warnings:
                msg += " Warning: " + "; ".join(ev.warnings)
            self.panel.show_status(msg)
            self.finished.emit(job_id, "result")
        elif isinstance(ev, Error):
            self._finish(job_id)
            self.last_error = ev
            text = f"{TITLES[plan.mode]} failed. {errors.describe_error(ev.code, ev.message, ev.field, host=CANVAS)}"
            if ev.code in LOST:
                self.link.check()
                text += " Your picture is safe; try again when the daemon is back."
            self.panel.show_status(text, error=True)
            self.panel.highlight(ev.field)
            self.finished.emit(job_id, "error")
        elif isinstance(ev, Cancelled):
            self._finish(job_id)
            self.panel.show_status(f"{TITLES[plan.mode]} cancelled.")
            self.finished.emit(job_id, "cancelled")

    def _finish(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        self.heard.pop(job_id, None)
        self.view.set_preview(None)
        if not self.jobs:
            self.panel.set_running(False)
