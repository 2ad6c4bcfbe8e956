"""Live painting in the client core: debounced strokes become img2img jobs, and the newest wins.

Every front end with live mode (the canvas, Krita; GIMP's "repaint now")
uses this one module, so they agree on what a live job is and how stale ones
die:

* **The job.**  :func:`plan_live` is the planner's ``refine`` at the live
  model's settings (unset knobs: the model's - or a few-step LoRA's -
  recommendation; a model that ships its own few-step LoRA, like the
  starter, gets it switched on: :func:`live_job`), one picture, one seed kept for the whole session (a new
  random seed per stroke would make the picture flicker), previews off (the
  result *is* the preview), ``live`` set on the wire.  With a selection it is
  the planner's "only masked" edit: only the selection's window is read and
  sent, and only its region is diffused and painted back.
* **Debounce.**  :meth:`LiveSession.stroke` marks the canvas changed; a job
  starts once no stroke came for ``debounce`` seconds (:class:`Debounce`), so
  a scribble is one job, not fifty.
* **Newest wins.**  :meth:`LiveSession.submit` cancels the session's pending
  live job before sending the new one (the daemon also drops a client's older
  live jobs when a newer one arrives, so nothing queues even before the
  cancel lands).  A result that is not the newest job's is never painted.
  There is never a backlog: at most one live job of a session is pending.
  With ``policy="finish"`` a running job is left to finish and the newest
  plan waits (replacing any older waiting one) until it does: still no
  backlog, and an artist who never stops painting still sees a picture every
  job's time - under ``"cancel"`` strokes faster than a job starve the canvas
  until they pause (bench/live_latency.py measures both).

The host supplies ``read_plan()`` (reads its pixels on its UI thread and
calls :func:`plan_live`) and ``on_result(update)`` (called on the client's
reader thread: hop to the UI thread to paint).  :meth:`LiveSession.tick` is
what a host timer calls; :meth:`LiveSession.run_timer` drives it from a thread
for hosts without one (the CLI, benchmarks, tests).

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from .messages import Cancelled, Error, Result
from .planner import REFINE, JobPlan, plan_job, window_for
from .region import Box
from .settings import Recommendation, Settings

POLICIES = ("cancel", "finish")
# Stroke ends closer than this are one burst.  Hosts call stroke() on pen-up (the canvas: its undo
# stack moved; Krita: a poll saw new pixels), so this only merges the signals one edit sends within an
# event-loop turn (an undo of a macro, a document switch); a faster artist is newest-wins' job, not
# the debounce's.  Every millisecond here is a millisecond of stroke-to-picture: it was 30 ms.
DEBOUNCE_S = 0.01


class Debounce:
    """'Due once nothing happened for ``delay`` seconds' - pure logic, the caller passes the clock."""

    def __init__(self, delay: float = DEBOUNCE_S):
        self.delay = float(delay)
        self._last: Optional[float] = None

    def poke(self, now: float) -> None:
        self._last = now

    @property
    def pending(self) -> bool:
        return self._last is not None

    def remaining(self, now: float) -> Optional[float]:
        """Seconds until due (0: due now); None when nothing is pending."""
        if self._last is None:
            return None
        return max(0.0, self._last + self.delay - now)

    def take(self, now: float) -> bool:
        """True (and cleared) when due."""
        if self._last is not None and now - self._last >= self.delay:
            self._last = None
            return True
        return False


def live_settings(settings: Settings, seed: int) -> Settings:
    """The settings a live job runs with: one picture, the session's seed, no previews."""
    out = replace(settings, concepts=[dict(c) for c in settings.concepts])
    out.batch_size, out.seed, out.preview = 1, int(seed), False
    return out


def live_job(settings: Settings, seed: int,
             recommendation: Optional[Recommendation] = None) -> Tuple[Settings, Optional[Recommendation]]:
    """(settings, recommendation) of a live job: :func:`live_settings`, plus the model's own few-step LoRA.

    A model that ships one (the starter's LCM-LoRA: the listing's ``live`` block,
    :attr:`Recommendation.live_concept`) gets it switched on at weight 1 and its
    sampler / steps / CFG for the knobs left unset - live painting is fast with no
    setup.  Left alone when the artist listed that concept themselves (on, off or
    at another weight: their choice) or already switched on another few-step LoRA
    (``recommendation`` then comes from :meth:`Recommendation.with_concepts` and
    carries no ``live_concept``).
    """
    out = live_settings(settings, seed)
    rec = recommendation
    if rec is None or not rec.live_concept or rec.live is None:
        return out, rec
    if any(c.get("name") == rec.live_concept for c in out.concepts):
        return out, rec.with_concepts([], out.active_concepts())
    out.concepts.append({"name": rec.live_concept, "weight": 1.0, "enabled": True})
    return out, replace(rec.live)


def window_for_live(document: Tuple[int, int], selection: Optional[Box], settings: Settings) -> Box:
    """What a live job reads: the whole canvas, or the selection's "only masked" window."""
    return window_for(document, selection, settings, REFINE)


def plan_live(document: Tuple[int, int], settings: Settings, seed: int, window: Optional[Box] = None,
              rgba: Optional[bytes] = None, mask: Optional[bytes] = None, selection: Optional[Box] = None,
              recommendation: Optional[Recommendation] = None) -> JobPlan:
    """One live job (the planner's refine, at the live settings (:func:`live_job`), ``live`` on the wire)."""
    settings, recommendation = live_job(settings, seed, recommendation)
    plan = plan_job(document, settings, REFINE, window=window, rgba=rgba, mask=mask,
                    selection=selection, recommendation=recommendation)
    plan.request.live = True
    plan.label = "Live: " + plan.label
    return plan


@dataclass
class LiveUpdate:
    """A live result to paint: the plan it answers, the result, and how long the artist waited."""

    plan: JobPlan
    result: Result
    stroke_to_result_s: float           # the last stroke the job saw -> its result arrived
    job_index: int                      # the session's n-th submitted job
    stroke_at: float = 0.0              # when that stroke ended (the session's clock): hosts time their paint
    submitted_at: float = 0.0           # when the job was sent (the session's clock)


@dataclass
class LiveStats:
    strokes: int = 0
    submitted: int = 0
    painted: int = 0                    # results handed to on_result (the newest job's)
    cancelled: int = 0                  # stale jobs the daemon reported cancelled
    stale_results: int = 0              # stale jobs that finished anyway (never painted)
    errors: int = 0
    deferred: int = 0                   # "finish": plans that waited for the running job (the newest is sent)
    latencies: List[float] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"strokes": self.strokes, "submitted": self.submitted, "painted": self.painted,
                "cancelled": self.cancelled, "stale_results": self.stale_results, "errors": self.errors,
                "deferred": self.deferred}


class _Sending:
    """The running-job slot while a job is on its way to the daemon (its reply not back yet)."""

    done = False

    def cancel(self) -> None:   # the send that holds the slot cancels it itself if live mode went off
        pass


_SENDING = _Sending()


class LiveSession:
    """Live mode for one document on one client (see the module doc)."""

    def __init__(self, client: Any, read_plan: Callable[["LiveSession"], Optional[JobPlan]],
                 on_result: Callable[[LiveUpdate], None], on_error: Optional[Callable[[Error], None]] = None,
                 debounce: float = DEBOUNCE_S, seed: int = -1, clock: Callable[[], float] = time.monotonic,
                 policy: str = "cancel"):
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
        self.policy = policy
        self._waiting: Optional[JobPlan] = None   # "finish": the newest plan, sent when the running job ends
        self.client = client
        self.read_plan = read_plan
        self.on_result = on_result
        self.on_error = on_error
        self.debounce = Debounce(debounce)
        self.seed = seed if seed >= 0 else random.randrange(2**32)   # one seed for the session: no flicker
        self.clock = clock
        self.stats = LiveStats()
        self._lock = threading.Lock()
        self._pending = None             # the newest job (client.Job), while it runs
        self._index = 0
        self._last_stroke: Optional[float] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._close_cancels = False      # close(cancel=True): a job still on its way is cancelled on arrival

    # ------------------------------------------------------------------ strokes

    def stroke(self, now: Optional[float] = None) -> None:
        """The artist finished a stroke (or changed the canvas): a job follows after the debounce."""
        now = self.clock() if now is None else now
        with self._lock:
            self.stats.strokes += 1
            self._last_stroke = now
            self.debounce.poke(now)
        self._wake.set()

    def tick(self, now: Optional[float] = None) -> Optional[Any]:
        """Call from the host's timer: submits a job when the debounce is due; returns it (or None)."""
        now = self.clock() if now is None else now
        with self._lock:
            due = self.debounce.take(now)
        if not due:
            return None
        plan = self.read_plan(self)
        return self.submit(plan) if plan is not None else None

    def repaint_now(self) -> Optional[Any]:
        """A job now, no debounce (GIMP's "repaint now", a toggle switched on)."""
        with self._lock:
            self.stats.strokes += 1
            self._last_stroke = self.clock()
            self.debounce.take(float("inf"))
        plan = self.read_plan(self)
        return self.submit(plan) if plan is not None else None

    # ------------------------------------------------------------------ newest wins

    def submit(self, plan: JobPlan) -> Any:
        """Send ``plan`` as the newest live job, cancelling the stale one (``"finish"``: None while one runs,
        the plan waits for it)."""
        plan.request.live = True
        plan.request.job = ""
        with self._lock:
            if self.policy == "finish" and self._pending is not None and not self._pending.done:
                self._waiting = plan
                self.stats.deferred += 1
                return None
            stale, index = self._reserve()
        return self._send(plan, index, stale)

    def _reserve(self) -> Tuple[Any, int]:
        """Under the lock: the slot of the running job is taken at once (by a placeholder until the
        daemon's reply names the job), so a stroke on the host's thread and a result on the client's
        thread can never both send: two live jobs would have the daemon supersede the first."""
        stale, self._pending = self._pending, _SENDING
        self._index += 1
        return stale, self._index

    def _send(self, plan: JobPlan, index: int, stale: Any) -> Any:
        with self._lock:
            stroke_at = self._last_stroke if self._last_stroke is not None else self.clock()
        if stale is not None and not stale.done:
            stale.cancel()
        sent_at = self.clock()
        try:
            job = self.client.submit(plan.request,
                                     on_event=lambda ev: self._on_event(ev, plan, index, stroke_at, sent_at))
        except BaseException:
            with self._lock:
                if self._index == index and self._pending is _SENDING:
                    self._pending = None
            raise
        with self._lock:
            if self._index == index and self._pending is _SENDING:
                self._pending = job      # not when its result came first (then nothing is pending)
            closed = self._stop.is_set() and self._index != index and self._close_cancels
            self.stats.submitted += 1
        if closed and not job.done:      # live mode went off while this one was on its way
            job.cancel()
        return job

    def _on_event(self, event: Any, plan: JobPlan, index: int, stroke_at: float, sent_at: float) -> None:
        if not isinstance(event, (Result, Error, Cancelled)):
            return
        waiting = None
        with self._lock:
            newest = index == self._index
            if newest:
                waiting, self._waiting = self._waiting, None
                if waiting is not None and not self._stop.is_set():   # "finish": the newest plan goes now
                    stale, next_index = self._reserve()
                else:
                    waiting, self._pending = None, None
        if waiting is not None:
            self._send(waiting, next_index, None)
        with self._lock:
            if isinstance(event, Cancelled):
                self.stats.cancelled += 1
                return
            if isinstance(event, Error):
                self.stats.errors += 1
            elif not newest:
                self.stats.stale_results += 1
                return
            else:
                latency = self.clock() - stroke_at
                self.stats.painted += 1
                self.stats.latencies.append(latency)
        if isinstance(event, Error):
            if newest and self.on_error is not None:
                self.on_error(event)
            return
        self.on_result(LiveUpdate(plan, event, latency, index, stroke_at, sent_at))

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._pending is not None

    # ------------------------------------------------------------------ a timer thread (no host timer)

    def run_timer(self) -> "LiveSession":
        """Drive :meth:`tick` from a thread (hosts without a UI timer); :meth:`close` stops it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._timer_loop, name="impasto-live", daemon=True)
            self._thread.start()
        return self

    def _timer_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                wait = self.debounce.remaining(self.clock())
            if wait is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            if wait > 0:
                self._stop.wait(wait)
                continue
            try:
                self.tick()
            except Exception:   # a failed read or plan must not end live mode: the host's on_error says why
                import traceback

                traceback.print_exc()

    def close(self, cancel: bool = True) -> None:
        """Live mode off: stop the timer and (by default) cancel the pending job."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            pending, self._pending, self._waiting = self._pending, None, None
            self._index += 1           # whatever still arrives is stale
            self._close_cancels = cancel
        if cancel and pending is not None:
            pending.cancel()
