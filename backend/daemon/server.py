"""The daemon's I/O loop: one ROUTER socket, any number of clients.

It decodes requests, answers control messages itself (status, models,
cancel...) and queues jobs for the worker; events from the worker arrive on an
inproc PULL socket and are routed to the client that owns the job.  Nothing a
client sends can stop this loop: every failure becomes a typed error event.

Security (docs/security.md): the ROUTER requires PLAIN with the secret from
IMPASTO_HOME on loopback, CURVE with allowed client keys elsewhere (a
non-loopback bind without CURVE is refused); frames are capped at
``Limits.max_frame_bytes()`` (ZMQ_MAXMSGSIZE); there is no identity handover
(a second connection with a live identity is refused by libzmq); a client
silent for ``orphan_timeout`` seconds has its jobs cancelled; SIGTERM/SIGINT
wake the loop through ``signal.set_wakeup_fd`` and a short poll timeout.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import zmq

from impasto.protocol import codec
from impasto.protocol.messages import (
    JOB_REQUESTS,
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    Done,
    Error,
    ErrorCode,
    Hello,
    Limits,
    ListModels,
    Models,
    ProtocolError,
    Shutdown,
    Status,
    StatusRequest,
    Welcome,
    validate_job,
)

from impasto.protocol import credentials

from . import auth, concept_handlers
from .jobs import JobRecord, JobTable
from .worker import Worker

log = logging.getLogger("impasto.daemon")

VERSION = "0.2.0"

#: Seconds without a message from a client that has pending jobs before they are cancelled.
#: Clients ping every 3 s while they have jobs (protocol/client.py), so 10 s is three missed beats.
ORPHAN_TIMEOUT = 10.0
#: Longest the I/O loop sleeps in poll: the bound on noticing orphans and stray signals.
POLL_MS = 250
#: Longest error sentence sent (a message quoting a 64k-character value would itself be undecodable).
MAX_ERROR_TEXT = 2000
#: How long shutdown waits for the worker to leave a job (it stops within one step).
WORKER_GRACE = 0.6


class DaemonConfigError(Exception):
    """The daemon refuses to start as asked; the message says how to do it right."""


def check_bind(endpoint: str, security: str) -> None:
    """Only loopback (or ipc) may be served without CURVE: PLAIN would send the secret in clear."""
    if security == "curve" or endpoint.startswith("ipc://") or credentials.is_loopback(endpoint):
        return
    raise DaemonConfigError(
        f"refusing to serve {endpoint} without encryption: anyone on the network could drive the daemon. "
        "Serve it with CurveZMQ: `impasto serve --endpoint "
        f"{endpoint} --curve`, print the key clients need with `impasto curve show`, and allow each "
        "client's key with `impasto curve allow NAME KEY` (docs/security.md); or keep the daemon on "
        "tcp://127.0.0.1 and reach it through an SSH tunnel")


class Daemon:
    def __init__(self, endpoint: str, engine_factory: Callable[[], Any], limits: Optional[Limits] = None,
                 preload: bool = True, models_dir: Optional[Path] = None, security: str = "plain",
                 home: Optional[Path] = None, orphan_timeout: Optional[float] = None):
        check_bind(endpoint, security)
        self.endpoint = endpoint
        self.limits = limits or Limits()
        self.security = security
        self.home = home
        if orphan_timeout is None:
            try:
                orphan_timeout = float(os.environ.get("IMPASTO_ORPHAN_TIMEOUT") or ORPHAN_TIMEOUT)
            except ValueError:
                log.warning("IMPASTO_ORPHAN_TIMEOUT is not a number; using %s s", ORPHAN_TIMEOUT)
                orphan_timeout = ORPHAN_TIMEOUT
        self.orphan_timeout = max(1.0, float(orphan_timeout))
        for env, attr in (("IMPASTO_MAX_QUEUED_JOBS", "max_queued_jobs_per_client"),
                          ("IMPASTO_MAX_QUEUED_IMAGE_BYTES", "max_queued_image_bytes")):
            if os.environ.get(env, "").isdigit():  # operator settings (docs/security.md)
                setattr(self.limits, attr, int(os.environ[env]))
        self._hellos: list = []  # (identity, ref) waiting for the engine to be up
        self.ctx = zmq.Context()
        self.table = JobTable(self.limits.max_queued_jobs_per_client, self.limits.max_queued_image_bytes)
        self.models_dir = models_dir
        self.handlers = {}  # message type -> handler(identity, msg); extended by feature modules
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._last_seen: dict = {}  # client identity -> monotonic time of its last message
        self._next_reap = 0.0
        self.orphans_cancelled = 0
        from .housekeeping import clean_stale_temporaries

        clean_stale_temporaries(home)
        events_ep = f"inproc://impasto-events-{id(self)}"
        self.events = self.ctx.socket(zmq.PULL)
        self.events.bind(events_ep)
        self.worker = Worker(self.ctx, self.table, engine_factory, preload=preload, events_endpoint=events_ep)
        self.zap = auth.ZapHandler(self.ctx, security, home)
        self.zap.start()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 500)
        # No ROUTER_HANDOVER: a connection claiming a live client's identity is refused, so it can
        # neither read that client's events nor cancel its jobs.
        self.router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes())
        self.router.setsockopt(zmq.RCVHWM, 64)
        auth.secure_router(self.router, security, home)
        try:
            self.router.bind(endpoint)
        except zmq.ZMQError:
            self.zap.stop()
            self.zap.join(1)
            self.router.close(0)
            self.events.close(0)
            self.ctx.term()
            raise
        self._register_default_handlers()

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self, *_: Any) -> None:
        """Signal-safe: wakes the loop, which then shuts down cleanly."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the daemon within a second, idle or busy.

        A Python signal handler only runs when the main thread gets back to the
        interpreter, and the signal may land on any thread (libzmq's, the
        worker's) while the main thread sleeps in zmq_poll.  ``set_wakeup_fd``
        makes the C-level handler write to the loop's wake-up socket, which is
        in the poll set, so the loop wakes at once; the poll timeout bounds
        the wait even if that write were lost.
        """
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        try:
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:  # not the main thread: the poll timeout still bounds the wait
            log.debug("no signal wake-up fd: %s", exc)

    def serve_forever(self) -> None:
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        log.info("Impasto daemon listening on %s (%s)", self.endpoint, self.security)
        self._last_turn = time.monotonic()
        try:
            while not self._stop.is_set():
                self._note_stall()
                try:
                    ready = dict(poller.poll(POLL_MS))
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EINTR:
                        continue
                    raise
                if self._wake_r.fileno() in ready or self._wake_r in ready:
                    self._drain_wake()
                if self._stop.is_set():
                    break
                if self.events in ready:
                    self._forward_events()
                if self.router in ready:
                    self._serve_requests()
                if self._hellos and self.worker.ready.is_set():
                    self._answer_hellos()
                self._reap_orphans()
        finally:
            self._shutdown()

    def _note_stall(self) -> None:
        """A turn of this loop that took long (a big concept import) kept everyone's pings unread:
        that time does not count as silence, so nobody's jobs are reaped for the daemon's own delay."""
        now = time.monotonic()
        stall = now - self._last_turn - POLL_MS / 1000.0
        self._last_turn = now
        if stall > 1.0:
            for client in self._last_seen:
                self._last_seen[client] += stall

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _shutdown(self) -> None:
        busy = self.table.snapshot(b"")["busy"]
        for rec in self.table.stop():
            self._send(rec.client, Error(code=ErrorCode.UNAVAILABLE, job=rec.request.job,
                                         message="the Impasto daemon is shutting down; the job was stopped"))
        # The running job's cancel flag is set: it stops within one step.  A worker still inside
        # native code after the grace period (loading a model) is left behind: the caller exits.
        self.worker.join(timeout=WORKER_GRACE if busy else 0.05)
        self.zap.stop()
        self.router.close(linger=200)
        self.events.close(0)
        self.zap.join(0.5)
        if not self.worker.is_alive() and not self.zap.is_alive():
            self.ctx.term()
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
        self._wake_r.close()
        self._wake_w.close()
        log.info("Impasto daemon stopped")

    # ------------------------------------------------------------------ orphans

    def _reap_orphans(self) -> None:
        """Cancel the jobs of clients silent for longer than ``orphan_timeout`` (killed, hung, gone)."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + 0.25
        limit = self.orphan_timeout
        with_jobs = set(self.table.clients())
        for client in with_jobs:
            seen = self._last_seen.setdefault(client, now)
            if now - seen <= limit:
                continue
            queued, running = self.table.cancel_client(client)
            for rec in queued:
                self.table.forget(rec.key)
            self.orphans_cancelled += len(queued) + (running is not None)
            log.warning("client %r silent for %.1f s: cancelled %d queued job(s)%s", client[:40], now - seen,
                        len(queued), " and its running job" if running is not None else "")
            self._last_seen[client] = now  # the running job's `cancelled` arrives within one step
        for client in [c for c, t in self._last_seen.items() if c not in with_jobs and now - t > limit]:
            del self._last_seen[client]  # bounded: forget idle clients

    # ------------------------------------------------------------------ I/O

    def _send(self, identity: bytes, msg: Any) -> None:
        if isinstance(msg, Error) and len(msg.message) > MAX_ERROR_TEXT:  # it may quote a hostile value
            msg.message = msg.message[:MAX_ERROR_TEXT - 3] + "..."
        try:
            self.router.send_multipart([identity] + codec.encode(msg), copy=False)
        except zmq.ZMQError as exc:  # client gone: nothing to do
            log.debug("send to %r failed: %s", identity, exc)

    def _forward_events(self) -> None:
        while True:
            try:
                frames = self.events.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            client, job, final = frames[0].bytes, frames[1].bytes.decode(), frames[2].bytes
            try:
                self.router.send_multipart([client] + frames[3:], copy=False)
            except zmq.ZMQError:
                pass
            if final == b"1":
                self.table.forget((client, job))

    def _serve_requests(self) -> None:
        for _ in range(256):  # bounded burst, then let worker events through
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            identity, body = frames[0], frames[1:]
            self._last_seen[identity] = time.monotonic()
            try:
                msg = codec.decode(body)
                handler = self.handlers.get(msg.TYPE)
                if handler is None:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{msg.TYPE!r} is not a request the daemon accepts",
                                        "type")
                handler(identity, msg)
            except ProtocolError as exc:
                log.warning("refused %s from %s: [%s] %s (field %s)", _peek_type(body), self._client_name(identity),
                            exc.code, exc.message, exc.field or "-")
                self._send(identity, Error(code=exc.code, message=exc.message, field=exc.field or "",
                                           job=_job_of(body), ref=_ref_of(body)))
            except Exception as exc:  # never die from a request
                log.exception("request failed")
                self._send(identity, Error(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}",
                                           job=_job_of(body), ref=_ref_of(body)))

    # ------------------------------------------------------------------ handlers

    def _register_default_handlers(self) -> None:
        self.handlers.update({
            Hello.TYPE: self._on_hello,
            StatusRequest.TYPE: self._on_status,
            ListModels.TYPE: self._on_models,
            Cancel.TYPE: self._on_cancel,
            Shutdown.TYPE: self._on_shutdown,
        })
        for cls in JOB_REQUESTS:
            self.handlers[cls.TYPE] = self._on_job
        concept_handlers.register(self)

    def _on_hello(self, identity: bytes, msg: Hello) -> None:
        if msg.protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.VERSION_MISMATCH,
                f"client speaks protocol {msg.protocol}, this daemon speaks protocol {PROTOCOL_VERSION}: "
                f"update the {'client' if msg.protocol < PROTOCOL_VERSION else 'daemon'}",
                "protocol",
            )
        self._client_names()[identity] = (msg.client or "unnamed")[:64]
        # Answered once the engine is up, without blocking this loop (signals, other clients).
        if len(self._hellos) >= 1024:
            raise ProtocolError(ErrorCode.QUEUE_FULL, "too many clients are waiting for the engine to start", "hello")
        self._hellos.append((identity, msg.ref))
        self.worker.want_engine()
        if self.worker.ready.is_set():
            self._answer_hellos()

    def _answer_hellos(self) -> None:
        hellos, self._hellos = self._hellos, []
        for identity, ref in hellos:
            self._send(identity, Welcome(daemon=VERSION, device=self.worker.device, ref=ref))

    def _client_names(self) -> dict:
        names = self.__dict__.setdefault("_names", {})
        if len(names) > 1000:          # identities of long-gone clients
            names.clear()
        return names

    def _client_name(self, identity: bytes) -> str:
        return self._client_names().get(identity, "unnamed")

    def _on_status(self, identity: bytes, msg: StatusRequest) -> None:
        snap = self.table.snapshot(identity)
        engine = self.worker.engine
        loaded = engine.loaded.entry.name if engine is not None and engine.loaded is not None else ""
        default = ""
        if engine is not None:
            try:
                default = engine.registry.default_name()
            except Exception:
                default = ""
        self._send(identity, Status(ref=msg.ref, device=self.worker.device, model=loaded, default_model=default,
                                    version=VERSION, **snap))

    def _on_models(self, identity: bytes, msg: ListModels) -> None:
        from impasto.backend.engine.control_models import scan_all as scan_controls
        from impasto.backend.engine.models import ModelRegistry

        registry = ModelRegistry(self.models_dir)
        entries = registry.scan()
        self._send(identity, Models(ref=msg.ref, models=[e.to_dict() for e in entries],
                                    default=registry.default_name(entries), models_dir=str(registry.models_dir),
                                    controls=[e.to_dict() for e in scan_controls(registry.models_dir)]))

    def _on_job(self, identity: bytes, msg: Any) -> None:
        validate_job(msg, self.limits)
        self.worker.want_engine()
        rec = JobRecord(client=identity, request=msg, client_name=self._client_name(identity))
        if self.table.get(rec.key) is not None:
            raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job {msg.job!r} is already queued or running", "job")
        if getattr(msg, "live", False):   # newest wins: this client's older live jobs are stale
            stale, _running = self.table.supersede_live(identity)
            for old in stale:
                self.table.forget(old.key)
                self._send(identity, Cancelled(job=old.request.job))
        # accepted goes out before the worker can possibly emit progress
        position = self.table.add(rec, front=(msg.priority == "front"))
        self._send(identity, Accepted(job=msg.job, position=position))

    def _on_cancel(self, identity: bytes, msg: Cancel) -> None:
        key = (identity, msg.job)
        rec = self.table.unqueue(key)
        if rec is not None:  # still queued: it never runs
            rec.cancel.set()
            self.table.forget(key)
            self._send(identity, Cancelled(job=msg.job))
            return
        rec = self.table.get(key)
        if rec is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"job: no pending job {msg.job!r} of yours to cancel", "job")
        rec.cancel.set()  # running: the worker stops at the next step and sends `cancelled`

    def _on_shutdown(self, identity: bytes, msg: Shutdown) -> None:
        self._send(identity, Done(ref=msg.ref, info={"stopping": True}))
        self.request_stop()


def _peek(body, key: str) -> str:
    """``job``/``ref`` of an undecodable request, echoed in its error only when it is a sane string
    (a client matches the error to its request; a hostile value is not sent back)."""
    try:
        import json

        value = json.loads(body[0]).get(key, "")
    except Exception:
        return ""
    if not isinstance(value, str) or len(value) > 128 or any(ord(c) < 32 for c in value):
        return ""
    return value


def _peek_type(body) -> str:
    return (_peek(body, "type") if body else "") or "message"


def _job_of(body) -> str:
    return _peek(body, "job") if body else ""


def _ref_of(body) -> str:
    return _peek(body, "ref") if body else ""
