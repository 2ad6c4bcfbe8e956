"""The daemon's I/O loop: one ROUTER socket, any number of clients.

It decodes requests, answers control messages itself (status, models,
cancel...) and queues jobs for the worker; events from the worker arrive on an
inproc PULL socket and are routed to the client that owns the job.  Nothing a
client sends can stop this loop: every failure becomes a typed error event.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
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

from . import concept_handlers
from .jobs import JobRecord, JobTable
from .worker import Worker

log = logging.getLogger("impasto.daemon")

VERSION = "0.1.0"


class Daemon:
    def __init__(self, endpoint: str, engine_factory: Callable[[], Any], limits: Optional[Limits] = None,
                 preload: bool = True, models_dir: Optional[Path] = None):
        self.endpoint = endpoint
        self.limits = limits or Limits()
        self.ctx = zmq.Context()
        self.table = JobTable()
        self.models_dir = models_dir
        self.handlers = {}  # message type -> handler(identity, msg); extended by feature modules
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        events_ep = f"inproc://impasto-events-{id(self)}"
        self.events = self.ctx.socket(zmq.PULL)
        self.events.bind(events_ep)
        self.worker = Worker(self.ctx, self.table, engine_factory, preload=preload, events_endpoint=events_ep)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client takes its identity back
        self.router.bind(endpoint)
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
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    def serve_forever(self) -> None:
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        log.info("Impasto daemon listening on %s", self.endpoint)
        try:
            while not self._stop.is_set():
                try:
                    ready = dict(poller.poll())
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EINTR:
                        continue
                    raise
                if self.events in ready:
                    self._forward_events()
                if self.router in ready:
                    self._serve_requests()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for rec in self.table.stop():
            self._send(rec.client, Error(code=ErrorCode.UNAVAILABLE, job=rec.request.job,
                                         message="the Impasto daemon is shutting down; the job was stopped"))
        self.worker.join(timeout=30)
        self.router.close(linger=500)
        self.events.close(0)
        self.ctx.term()
        self._wake_r.close()
        self._wake_w.close()
        log.info("Impasto daemon stopped")

    # ------------------------------------------------------------------ I/O

    def _send(self, identity: bytes, msg: Any) -> None:
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
        self.worker.ready.wait(30)
        self._send(identity, Welcome(daemon=VERSION, device=self.worker.device, ref=msg.ref))

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
        from impasto.backend.engine.models import ModelRegistry

        registry = ModelRegistry(self.models_dir)
        entries = registry.scan()
        self._send(identity, Models(ref=msg.ref, models=[e.to_dict() for e in entries],
                                    default=registry.default_name(entries), models_dir=str(registry.models_dir)))

    def _on_job(self, identity: bytes, msg: Any) -> None:
        validate_job(msg, self.limits)
        rec = JobRecord(client=identity, request=msg, client_name=self._client_name(identity))
        if self.table.get(rec.key) is not None:
            raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job {msg.job!r} is already queued or running", "job")
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
    try:
        import json

        value = json.loads(body[0]).get(key, "")
        return value if isinstance(value, str) else ""
    except Exception:
        return ""


def _peek_type(body) -> str:
    return (_peek(body, "type") if body else "") or "message"


def _job_of(body) -> str:
    return _peek(body, "job") if body else ""


def _ref_of(body) -> str:
    return _peek(body, "ref") if body else ""
