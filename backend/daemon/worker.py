"""The one thread that owns the model: takes jobs, runs the engine, emits events.

Events go to the I/O loop through an inproc PUSH socket (zmq sockets belong to
one thread each; inproc is the thread-safe bridge between them).  Each event
travels as ``[client, job, final-flag, *message frames]``.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable, Optional

import zmq

from impasto.protocol import codec
from impasto.protocol.messages import Cancelled as CancelledEvent
from impasto.protocol.messages import Error, ErrorCode, Progress, ProtocolError

from .jobs import JobRecord, JobTable

log = logging.getLogger("impasto.daemon")

EVENTS_ENDPOINT = "inproc://impasto-events"


def cpu_threads(choice) -> str:
    """``", 2 threads"`` on a CPU (asked on the painting thread: torch's setting is per thread), else ""."""
    if getattr(choice.device, "type", "") != "cpu":
        return ""
    import torch  # loaded by the engine already

    n = torch.get_num_threads()
    return f", {n} thread{'' if n == 1 else 's'}"


class Worker(threading.Thread):
    def __init__(self, ctx: zmq.Context, table: JobTable, engine_factory: Callable[[], Any],
                 preload: bool = True, events_endpoint: str = EVENTS_ENDPOINT):
        super().__init__(name="impasto-worker", daemon=True)
        self.ctx = ctx
        self.table = table
        self.engine_factory = engine_factory
        self.engine = None
        self.preload = preload
        self.events_endpoint = events_endpoint
        self.ready = threading.Event()
        self._wanted = threading.Event()  # preload=False: the engine starts on the first hello or job
        if preload:
            self._wanted.set()
        self.device = ""
        self.init_error: Optional[str] = None

    # runs on the worker thread ------------------------------------------------------

    def run(self) -> None:
        self._push = self.ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 1000)
        self._push.connect(self.events_endpoint)
        try:
            while not self._wanted.wait(0.25):
                if self.table.stopped:
                    return
            self._start_engine()
            while True:
                rec = self.table.take_next()
                if rec is None:
                    break
                self._run_job(rec)
        finally:
            self._push.close()

    def want_engine(self) -> None:
        """A hello or a job arrived: start the engine now if it was deferred (``--no-preload``).

        Deferring keeps an idle ``--no-preload`` daemon free of torch: it starts in half a second
        and a signal finds no long import holding the interpreter lock.
        """
        self._wanted.set()

    def _start_engine(self) -> None:
        try:
            self.engine = self.engine_factory()
            self.device = self.engine.choice.describe() + cpu_threads(self.engine.choice)
        except Exception as exc:  # keep serving: every job will report why
            self.init_error = f"the engine failed to start: {exc}"
            log.exception("engine start failed")
        finally:
            self.ready.set()
        if self.engine is not None and self.preload:
            try:
                self.engine.model("")
            except Exception as exc:  # no model installed yet: jobs will say so
                log.info("no default model preloaded: %s", exc)

    def _emit(self, rec: JobRecord, msg: Any, final: bool = False) -> None:
        self._push.send_multipart([rec.client, rec.request.job.encode(), b"1" if final else b"0"]
                                  + codec.encode(msg), copy=False)

    def _run_job(self, rec: JobRecord) -> None:
        from impasto.backend.engine import Cancelled, JobHooks
        from impasto.backend.engine.images import to_wire

        req = rec.request
        job = req.job
        started = time.perf_counter()

        last = {"step": 0, "total": 0, "stage": ""}

        def progress(step, total, preview=None, loss=None, stage=""):
            last.update(step=step, total=total, stage=stage)
            self._emit(rec, Progress(job=job, step=step, total=total, loss=loss, stage=stage,
                                     preview=to_wire(preview) if preview is not None else None))

        def warning(text):
            # at once, in a progress event of its own (the step count unchanged): the result repeats it
            self._emit(rec, Progress(job=job, step=last["step"], total=last["total"], stage=last["stage"],
                                     warnings=[str(text)]))

        hooks = JobHooks(cancelled=rec.cancel.is_set, progress=progress, want_preview=bool(req.preview),
                         on_warning=warning)
        outcome = "failed"
        try:
            if rec.cancel.is_set():
                raise Cancelled()
            if self.engine is None:
                raise ProtocolError(ErrorCode.INTERNAL, self.init_error or "the engine is not available")
            result = self.engine.run(req, hooks)
            result.timings["queue_wait"] = round(started - rec.submitted + 0.0, 6)
            self._emit(rec, result, final=True)
            outcome = "done"
        except Cancelled as exc:
            outcome = "cancelled"
            self._emit(rec, CancelledEvent(job=job, steps=exc.steps), final=True)
        except ProtocolError as exc:
            outcome = f"error {exc.code}"
            self._emit(rec, Error(code=exc.code, message=exc.message, field=exc.field or "", job=job), final=True)
        except Exception as exc:  # the daemon never dies from a request
            log.error("job %s failed:\n%s", job, traceback.format_exc())
            self._emit(rec, Error(code=ErrorCode.INTERNAL, message=f"the job failed: {type(exc).__name__}: {exc}",
                                  job=job), final=True)
        finally:
            log.info("job %s client=%s kind=%s size=%s steps=%s seconds=%.2f outcome=%s", job,
                     rec.client_name or "unnamed", getattr(req, "kind", req.TYPE), _size_of(req),
                     getattr(req, "steps", "-"), time.perf_counter() - started, outcome)
            self.table.worker_done(rec)


def _size_of(req: Any) -> str:
    """``WxH`` of what a job works on (an init image's size wins, as in the engine)."""
    img = getattr(req, "init_image", None)
    if img is not None:
        return f"{img.width}x{img.height}"
    if hasattr(req, "width"):
        return f"{req.width}x{req.height}"
    return f"{getattr(req, 'resolution', 0) or '-'}"
