"""Jobs as the daemon tracks them, and the priority queue the worker drains.

A job is keyed by (client identity, client-chosen job id): two clients may use
the same id, and a client can only ever address its own jobs.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

Key = Tuple[bytes, str]


@dataclass
class JobRecord:
    client: bytes
    request: Any
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    client_name: str = ""                # the Hello's client name, for the daemon log

    @property
    def key(self) -> Key:
        return (self.client, self.request.job)


def image_bytes(request: Any) -> int:
    """Bytes of pixels a queued request holds in memory (what the daemon-wide cap counts)."""
    total = 0
    for name in ("init_image", "mask"):
        img = getattr(request, name, None)
        if img is not None:
            total += len(img.data)
    for name in ("images", "images_high"):   # images_high: a slider's picture pairs
        for img in getattr(request, name, None) or ():
            total += len(img.data)
    for unit in getattr(request, "control", None) or ():   # control layers hold a picture each
        if getattr(unit, "image", None) is not None:
            total += len(unit.image.data)
    return total


class JobTable:
    """All pending jobs (queued + running) and the queue order, behind one lock.

    Fair: every client has its own queue and the worker takes jobs round robin
    between clients, so one client's 1000 queued jobs delay another client's by
    at most one job each.  ``front`` puts a job at the head of its own client's
    queue only.  Bounded: a per-client cap on queued jobs and a daemon-wide cap
    on the image bytes held by pending jobs, each refused with a typed
    ``queue_full`` error naming the cap.

    The I/O thread adds and cancels; the worker takes the next job.  A job
    leaves the table only when the I/O thread has sent its final event, so a
    status reply never misses a job whose result is still in flight.
    """

    def __init__(self, max_queued_per_client: int = 32, max_pending_bytes: int = 512 << 20) -> None:
        self._lock = threading.Condition()
        # client -> its queued jobs; dict order is the round-robin order (next client first)
        self._queues: Dict[bytes, Deque[JobRecord]] = collections.OrderedDict()
        self._all: Dict[Key, JobRecord] = {}
        self._bytes: Dict[Key, int] = {}
        self._running: Optional[JobRecord] = None
        self._stopped = False
        self.max_queued_per_client = max_queued_per_client
        self.max_pending_bytes = max_pending_bytes

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values())

    def add(self, rec: JobRecord, front: bool = False) -> int:
        """Queue ``rec``; returns how many jobs run before it (the running one included)."""
        from impasto.protocol.messages import ErrorCode, ProtocolError

        size = image_bytes(rec.request)
        with self._lock:
            own = self._queues.get(rec.client)
            if len(own or ()) >= self.max_queued_per_client:
                raise ProtocolError(
                    ErrorCode.QUEUE_FULL,
                    f"you already have {len(own or ())} jobs waiting, the cap per client (max_queued_jobs_per_client "
                    f"= {self.max_queued_per_client}): wait for some to finish", "max_queued_jobs_per_client")
            held = sum(self._bytes.values())
            if held + size > self.max_pending_bytes:
                raise ProtocolError(
                    ErrorCode.QUEUE_FULL,
                    f"the daemon already holds {held >> 20} MiB of images for pending jobs; this job's "
                    f"{size >> 20} MiB would pass the cap (max_queued_image_bytes = "
                    f"{self.max_pending_bytes >> 20} MiB): retry when the queue is shorter",
                    "max_queued_image_bytes")
            if own is None:
                own = self._queues[rec.client] = collections.deque()
            self._all[rec.key] = rec
            self._bytes[rec.key] = size
            if front:
                own.appendleft(rec)
            else:
                own.append(rec)
            mine = 0 if front else len(own) - 1
            position = mine
            before = True
            for client, q in self._queues.items():
                if client == rec.client:
                    before = False
                    continue
                position += min(len(q), mine + 1 if before else mine)
            if self._running is not None:
                position += 1
            self._lock.notify()
            return position

    def get(self, key: Key) -> Optional[JobRecord]:
        with self._lock:
            return self._all.get(key)

    def take_next(self) -> Optional[JobRecord]:
        """Block until a job is queued (worker thread); None once stopped.  Round robin between clients."""
        with self._lock:
            while not self._queues and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return None
            client = next(iter(self._queues))
            q = self._queues.pop(client)
            rec = q.popleft()
            if q:
                self._queues[client] = q  # to the back of the rotation
            rec.running = True
            self._running = rec
            return rec

    def _remove_queued(self, rec: JobRecord) -> None:
        q = self._queues.get(rec.client)
        if q is not None:
            try:
                q.remove(rec)
            except ValueError:
                pass
            if not q:
                del self._queues[rec.client]

    def unqueue(self, key: Key) -> Optional[JobRecord]:
        """Remove a still-queued job (cancel); None if it is running or unknown."""
        with self._lock:
            rec = self._all.get(key)
            if rec is None or rec.running:
                return None
            self._remove_queued(rec)
            return rec

    def cancel_client(self, client: bytes) -> Tuple[List[JobRecord], Optional[JobRecord]]:
        """A client is gone: (its queued jobs, now out of the queue; its running job, flagged)."""
        with self._lock:
            queued = list(self._queues.pop(client, ()))
            for rec in queued:
                rec.cancel.set()
            running = self._running if self._running is not None and self._running.client == client else None
            if running is not None:
                running.cancel.set()
            return queued, running

    def supersede_live(self, client: bytes) -> Tuple[List[JobRecord], Optional[JobRecord]]:
        """A new live job from ``client`` makes its older live jobs stale (newest wins, never a backlog).

        Returns (its queued live jobs, now out of the queue and flagged; its running live job, flagged
        to stop at the next step).  Other jobs of the client (a Generate it waits for) are untouched.
        """
        with self._lock:
            q = self._queues.get(client)
            stale = [r for r in (q or ()) if getattr(r.request, "live", False)]
            for rec in stale:
                self._remove_queued(rec)
                rec.cancel.set()
            running = self._running
            if running is None or running.client != client or not getattr(running.request, "live", False):
                running = None
            else:
                running.cancel.set()
            return stale, running

    def clients(self) -> List[bytes]:
        """Clients with pending (queued or running) jobs."""
        with self._lock:
            return list({k[0] for k in self._all})

    def worker_done(self, rec: JobRecord) -> None:
        with self._lock:
            if self._running is rec:
                self._running = None

    def forget(self, key: Key) -> None:
        """The job's final event is out: it is no longer pending, nor running.

        Clearing ``running`` here (not only when the worker returns) means a
        status request answered right after the final event never reports the
        finished job as still busy.
        """
        with self._lock:
            rec = self._all.pop(key, None)
            self._bytes.pop(key, None)
            if rec is not None and self._running is rec:
                self._running = None

    def stop(self) -> List[JobRecord]:
        """Stop handing out work; returns every pending job so they can be told."""
        with self._lock:
            self._stopped = True
            pending = list(self._all.values())
            for rec in pending:
                rec.cancel.set()
            self._queues.clear()
            self._lock.notify_all()
            return pending

    def snapshot(self, client: bytes) -> Dict[str, Any]:
        with self._lock:
            running = self._running
            return {
                "queue": sum(len(q) for q in self._queues.values()),
                "busy": running is not None,
                "running": running.request.job if running is not None and running.client == client else "",
                "jobs": [k[1] for k in self._all if k[0] == client],
            }
