"""The one client every Impasto front end uses (CLI, Krita, GIMP, canvas).

A :class:`Client` owns one DEALER connection and one reader thread.  Jobs are
submitted with a client-chosen id and come back as a stream of events
(accepted, progress, result | error | cancelled) that a front end either
iterates (:meth:`Job.events`), waits on (:meth:`Job.wait`) or receives through
a callback - called on the reader thread, so GUI clients hop to their UI
thread from there (Qt signal, ``GLib.idle_add``).

The client also notices a daemon that stopped answering or restarted: while
jobs are pending it asks for the daemon's status every ``heartbeat`` seconds
(this is also the heartbeat by which the daemon knows the client is alive: a
client silent for the daemon's orphan timeout has its jobs cancelled); no
answer within ``dead_after`` seconds, or an answer that no longer lists a
pending job, ends that job with an ``unavailable`` error that the UI can show
as a sentence instead of hanging.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

from . import codec
from .messages import (
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    ConceptAction,
    Concepts,
    Done,
    Error,
    ErrorCode,
    Hello,
    ListConcepts,
    ListModels,
    Models,
    Progress,
    ProtocolError,
    Result,
    Shutdown,
    Status,
    StatusRequest,
    Welcome,
)
from .transport import default_endpoint, open_dealer

Event = Any  # Accepted | Progress | Result | Error | Cancelled
TERMINAL = (Result, Error, Cancelled)


class JobFailed(ProtocolError):
    """The daemon reported an error for a job (or stopped answering)."""


class JobCancelled(Exception):
    """The job was cancelled before it produced a result."""


class Job:
    """A submitted job: its events, and its outcome once it ends."""

    def __init__(self, client: "Client", request: Any, on_event: Optional[Callable[[Event], None]]):
        self.client = client
        self.request = request
        self.id: str = request.job
        self.on_event = on_event
        self.position: Optional[int] = None
        self.outcome: Optional[Event] = None
        self._queue: "queue.Queue[Event]" = queue.Queue()
        self._done = threading.Event()
        self._sent_at: Optional[float] = None  # when the request was handed to the transport

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _deliver(self, event: Event) -> None:
        if self.done:
            return
        if isinstance(event, Accepted):
            self.position = event.position
        if isinstance(event, TERMINAL):
            self.outcome = event
        self._queue.put(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a UI callback must never kill the reader thread
                import traceback

                traceback.print_exc()
        if isinstance(event, TERMINAL):
            self._done.set()

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Yield events until the terminal one (inclusive)."""
        while True:
            try:
                event = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"job {self.id}: no event for {timeout} s") from None
            yield event
            if isinstance(event, TERMINAL):
                return

    def wait(self, timeout: Optional[float] = None) -> Result:
        """Block until the job ends; the :class:`Result`, or raise."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} did not finish within {timeout} s")
        outcome = self.outcome
        if isinstance(outcome, Result):
            return outcome
        if isinstance(outcome, Cancelled):
            raise JobCancelled(f"job {self.id} was cancelled")
        assert isinstance(outcome, Error)
        raise JobFailed(outcome.code, outcome.message, outcome.field or None)

    def cancel(self) -> None:
        """Ask the daemon to cancel; a no-op once the job has ended (its client closed, the daemon gone)."""
        if self.done:
            return
        try:
            self.client.cancel(self.id)
        except ProtocolError:
            pass  # the client was closed: the job ends (or has ended) with an error event anyway


class Client:
    """A connection to one Impasto daemon."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        *,
        transport: Optional[str] = None,
        identity: Optional[bytes] = None,
        name: str = "impasto-client",
        heartbeat: float = 3.0,
        dead_after: float = 6.0,
        home: Optional[str] = None,
        secret: Optional[bytes] = None,
    ):
        self.endpoint = endpoint or default_endpoint()
        self.name = name
        self.identity = identity or f"{name[:24]}-{uuid.uuid4().hex}".encode()
        # Authentication is invisible to callers: the transport reads the daemon's secret from
        # ``home`` (default IMPASTO_HOME) on every connection attempt; see credentials.py.
        self._dealer = open_dealer(self.endpoint, self.identity, transport or env_transport(),
                                   home=home, secret=secret)
        self.transport = type(self._dealer).__name__
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self._jobs: Dict[str, Job] = {}
        self._waiters: Dict[str, "queue.Queue[Any]"] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._closed = False
        self._last_heard = time.monotonic()
        self._ping_ref: Optional[str] = None
        self._ping_sent = 0.0
        self._ping_first = 0.0  # when the oldest unanswered ping went out
        self._reader = threading.Thread(target=self._read_loop, name="impasto-client-reader", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ jobs

    def new_job_id(self) -> str:
        return f"{uuid.uuid4().hex[:12]}-{next(self._counter)}"

    def submit(self, request: Any, on_event: Optional[Callable[[Event], None]] = None) -> Job:
        """Send a job request (Generate or Train); returns its :class:`Job` at once."""
        if not request.job:
            request.job = self.new_job_id()
        job = Job(self, request, on_event)
        with self._lock:
            if request.job in self._jobs:
                raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job id {request.job!r} is already pending", "job")
            self._jobs[request.job] = job
        self._send(request)
        job._sent_at = time.monotonic()
        return job

    def cancel(self, job_id: str) -> None:
        self._send(Cancel(job=job_id))

    # ------------------------------------------------------------------ control

    def hello(self, timeout: float = 5.0) -> Welcome:
        """Check that the daemon answers and speaks our protocol version."""
        reply = self._request(Hello(protocol=PROTOCOL_VERSION, client=self.name), timeout)
        return reply

    def status(self, timeout: float = 5.0) -> Status:
        return self._request(StatusRequest(), timeout)

    def models(self, timeout: float = 10.0) -> Models:
        return self._request(ListModels(), timeout)

    def concepts(self, timeout: float = 10.0) -> Concepts:
        return self._request(ListConcepts(), timeout)

    def concept_action(self, action: str, name: str, timeout: float = 60.0, **fields: Any) -> Done:
        return self._request(ConceptAction(action=action, name=name, **fields), timeout)

    def shutdown(self, timeout: float = 5.0) -> Done:
        return self._request(Shutdown(), timeout)

    def ping(self, timeout: float = 1.0) -> bool:
        """True when a daemon answers within ``timeout`` seconds."""
        try:
            self.status(timeout)
            return True
        except (TimeoutError, ProtocolError):
            return False

    def _request(self, msg: Any, timeout: float) -> Any:
        ref = uuid.uuid4().hex
        msg.ref = ref
        box: "queue.Queue[Any]" = queue.Queue(1)
        with self._lock:
            self._waiters[ref] = box
        try:
            self._send(msg)
            try:
                reply = box.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(
                    f"the Impasto daemon at {self.endpoint} did not answer within {timeout:g} s"
                ) from None
        finally:
            with self._lock:
                self._waiters.pop(ref, None)
        if isinstance(reply, Error):
            raise ProtocolError(reply.code, reply.message, reply.field or None)
        return reply

    # ------------------------------------------------------------------ plumbing

    def _send(self, msg: Any) -> None:
        if self._closed:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the client is closed")
        self._dealer.send_multipart(codec.encode(msg))

    def _read_loop(self) -> None:
        try:
            while not self._closed:
                frames = self._dealer.recv_multipart(timeout=self.heartbeat / 2)
                if self._closed:
                    break
                self._check_alive()  # every turn: progress events must not starve the heartbeat
                if frames is None:
                    continue
                self._last_heard = time.monotonic()
                try:
                    msg = codec.decode(frames)
                except ProtocolError:
                    continue  # a message we cannot read is dropped; the job will time out or be pinged
                self._dispatch(msg)
        finally:
            dispose = getattr(self._dealer, "_dispose", None)
            if dispose is not None:
                dispose()

    def _dispatch(self, msg: Any) -> None:
        ref = getattr(msg, "ref", "")
        if ref and ref == self._ping_ref:
            self._ping_ref = None
            if isinstance(msg, Status):
                self._reap_lost(set(msg.jobs), self._ping_sent)
            return
        if ref:
            with self._lock:
                box = self._waiters.get(ref)
            if box is not None:
                box.put(msg)
            return
        job_id = getattr(msg, "job", "")
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and isinstance(msg, TERMINAL):
                del self._jobs[job_id]
        if job is not None:
            job._deliver(msg)
        elif isinstance(msg, Error) and not job_id:
            # An error that names no job and no request (e.g. an undecodable message): wake every
            # waiter so nobody hangs, they re-raise it.
            with self._lock:
                boxes = list(self._waiters.values())
            for box in boxes:
                box.put(msg)

    def _check_alive(self) -> None:
        with self._lock:
            pending = bool(self._jobs)
        now = time.monotonic()
        if not pending:
            self._ping_ref = None
            return
        if self._ping_ref is not None:
            if now - self._ping_first > self.dead_after:
                self._ping_ref = None
                self._fail_all(
                    f"the Impasto daemon at {self.endpoint} stopped answering (no reply for "
                    f"{self.dead_after:g} s); the job was lost"
                )
                return
            if now - self._ping_sent < 2 * self.heartbeat:
                return
            # unanswered for two beats: that ping may have died with a dropped connection (a daemon
            # killed and restarted); ask again, still counting silence from the first one
        else:
            if now - self._ping_sent < self.heartbeat:
                return
            self._ping_first = now
        self._ping_ref = uuid.uuid4().hex
        self._ping_sent = now
        try:
            self._dealer.send_multipart(codec.encode(StatusRequest(ref=self._ping_ref)))
        except Exception:
            pass

    def _reap_lost(self, alive: set, asked_at: float) -> None:
        """Jobs the daemon no longer knows (it restarted) end with an error instead of hanging.

        Only jobs sent before the status request count: one sent after it may not have reached
        the daemon when it answered (messages on one connection arrive in order).
        """
        with self._lock:
            lost = [j for jid, j in self._jobs.items()
                    if jid not in alive and j._sent_at is not None and j._sent_at < asked_at]
            for j in lost:
                del self._jobs[j.id]
        for j in lost:
            j._deliver(Error(code=ErrorCode.DAEMON_RESTARTED, job=j.id,
                             message="the Impasto daemon restarted while the job was running; the job was lost"))

    def _fail_all(self, message: str, code: str = ErrorCode.UNAVAILABLE) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for j in jobs:
            j._deliver(Error(code=code, job=j.id, message=message))

    @property
    def connected(self) -> bool:
        return bool(self._dealer.connected)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._dealer.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._fail_all("the client was closed", ErrorCode.CLIENT_CLOSED)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(endpoint: Optional[str] = None, **kwargs: Any) -> Client:
    return Client(endpoint, **kwargs)


def env_transport() -> str:
    """``IMPASTO_TRANSPORT=zmtp`` forces the pure-Python transport (for tests and hosts)."""
    return os.environ.get("IMPASTO_TRANSPORT", "auto")
