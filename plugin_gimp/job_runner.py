"""Following one job from request to outcome, on or off GIMP's main thread.

GIMP's API (and GTK) may only be used from the plug-in's main thread, but a
job means seconds to minutes of network waiting.  :class:`JobFlow` therefore
connects, submits and listens on a worker thread (the protocol client's
reader thread delivers events) and hands every callback to ``post`` - in the
interactive plug-in ``GLib.idle_add``, so callbacks run on the main loop; in
non-interactive runs (scripts, batch mode) :meth:`JobFlow.run_blocking`
does the same on the calling thread, where waiting is acceptable.

Callbacks are ``on_status(text)``, ``on_progress(Progress)``,
``on_warning(text)`` (each daemon warning once, the moment it is sent; by
default it goes to ``on_status``) and, exactly once, ``on_done(Outcome)``,
whose ``warnings`` are the result's warnings not already sent live.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, List, Optional

from ..protocol import errors, notices
from ..protocol.client import Client, JobCancelled
from ..protocol.messages import Accepted, Cancelled, Error, ErrorCode, Progress, ProtocolError, Result

Post = Callable[..., Any]


@dataclass
class Outcome:
    """How a job ended: a result, an error sentence, or a cancel."""

    result: Optional[Result] = None
    error: str = ""
    code: str = ""
    field: str = ""
    cancelled: bool = False
    warnings: List[str] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None


GIMP = errors.HostWords(
    install="install the plug-in again with `impasto install-gimp` from the same Impasto installation",
    models="pick another model (Filters > Impasto shows the installed ones in each dialog)",
    start="start it with `impasto serve`, or turn on auto-start in Filters > Impasto > Settings",
    concepts="remove it from Concepts or train it first",
)


def describe_error(exc: BaseException) -> Outcome:
    """An exception from connecting / submitting as an :class:`Outcome` an artist can read."""
    if isinstance(exc, JobCancelled):
        return Outcome(cancelled=True)
    code = exc.code if isinstance(exc, ProtocolError) else (
        ErrorCode.UNAVAILABLE if isinstance(exc, TimeoutError) else ErrorCode.INTERNAL)
    return Outcome(error=errors.describe_exception(exc, host=GIMP), code=code,
                   field=getattr(exc, "field", "") or "")


def _event_outcome(event: Any, heard: Optional[notices.Heard] = None) -> Outcome:
    if isinstance(event, Result):
        return Outcome(result=event, warnings=(heard or notices.Heard()).fresh(event.warnings))
    if isinstance(event, Cancelled):
        return Outcome(cancelled=True)
    assert isinstance(event, Error)
    return Outcome(error=errors.describe_error(event.code, event.message, event.field, host=GIMP), code=event.code,
                   field=event.field)


class JobFlow:
    """Connect, submit and follow one request; every callback goes through ``post``."""

    def __init__(self, connect: Callable[[Callable[[str], None]], Client], request: Any,
                 on_status: Callable[[str], None], on_progress: Callable[[Progress], None],
                 on_done: Callable[[Outcome], None], post: Optional[Post] = None,
                 close_client: bool = True, on_warning: Optional[Callable[[str], None]] = None):
        self._connect = connect
        self.request = request
        self._on_status = on_status
        self._on_progress = on_progress
        self._on_warning = on_warning or (lambda text: on_status(f"Warning: {text}"))
        self.heard = notices.Heard()
        self._on_done = on_done
        self._post = post or (lambda fn, *args: fn(*args))
        self._close_client = close_client
        self._lock = threading.Lock()
        self._cancel_requested = False
        self._finished = False
        self.client: Optional[Client] = None
        self.job = None
        self.thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ public

    def start(self) -> "JobFlow":
        """Run on a worker thread; returns at once."""
        self.thread = threading.Thread(target=self._work, name="impasto-gimp-job", daemon=True)
        self.thread.start()
        return self

    def run_blocking(self, timeout: Optional[float] = None) -> Outcome:
        """Run on the calling thread (non-interactive mode); callbacks run here too."""
        box: List[Outcome] = []
        done = self._on_done
        self._on_done = box.append
        self._post = lambda fn, *args: fn(*args)
        try:
            client = self._open()
            if client is None:
                return box[0]
            job = self._submit(client, None)
            if job is None:
                return box[0]
            try:
                for event in job.events(timeout=timeout):
                    if isinstance(event, Progress):
                        self._progress(event)
                    elif isinstance(event, Accepted) and event.position:
                        self._on_status(notices.waiting_words(event.position) + " in the daemon's queue")
                    elif not isinstance(event, Accepted):
                        self._finish(_event_outcome(event, self.heard))
            except TimeoutError as exc:
                job.cancel()
                self._finish(describe_error(exc))
            return box[0]
        finally:
            self._on_done = done
            self._release()

    def cancel(self) -> None:
        """Ask the daemon to cancel; the outcome arrives through ``on_done`` as cancelled."""
        with self._lock:
            self._cancel_requested = True
            job = self.job
        if job is not None:
            job.cancel()

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------------ worker side

    def _work(self) -> None:
        client = self._open()
        if client is None:
            return
        self._submit(client, self._event)

    def _open(self) -> Optional[Client]:
        try:
            client = self._connect(lambda text: self._post(self._on_status, text))
        except BaseException as exc:  # noqa: BLE001 - reported to the artist, never raised into GIMP
            self._finish(describe_error(exc))
            return None
        self.client = client
        return client

    def _submit(self, client: Client, on_event):
        with self._lock:
            if self._cancel_requested:
                self._finish(Outcome(cancelled=True))
                self._release()
                return None
        try:
            job = client.submit(self.request, on_event=on_event)
        except BaseException as exc:  # noqa: BLE001
            self._finish(describe_error(exc))
            self._release()
            return None
        with self._lock:
            self.job = job
            cancel_now = self._cancel_requested
        if cancel_now:
            job.cancel()
        return job

    def _event(self, event: Any) -> None:
        """Called on the client's reader thread."""
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Accepted):
            if event.position:
                self._post(self._on_status, notices.waiting_words(event.position) + " in the daemon's queue")
        else:
            self._finish(_event_outcome(event, self.heard))
            # Closing joins the reader thread, which is this one: do it from a helper thread.
            threading.Thread(target=self._release, name="impasto-gimp-close", daemon=True).start()

    def _progress(self, event: Progress) -> None:
        """Warnings to ``on_warning`` (once each), steps to ``on_progress`` (a warnings-only event has none)."""
        for text in self.heard.fresh(event.warnings):
            self._post(self._on_warning, text)
        if not notices.only_warnings(event):
            self._post(self._on_progress, event)

    def _finish(self, outcome: Outcome) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._post(self._on_done, outcome)

    def _release(self) -> None:
        client, self.client = self.client, None
        if client is not None and self._close_client:
            client.close()

