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


class JobTable:
    """All pending jobs (queued + running) and the queue order, behind one lock.

    The I/O thread adds and cancels; the worker takes the next job.  A job
    leaves the table only when the I/O thread has sent its final event, so a
    status reply never misses a job whose result is still in flight.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queue: Deque[JobRecord] = collections.deque()
        self._all: Dict[Key, JobRecord] = {}
        self._running: Optional[JobRecord] = None
        self._stopped = False

    def add(self, rec: JobRecord, front: bool = False) -> int:
        """Queue ``rec``; returns how many jobs are ahead of it (the running one included)."""
        with self._lock:
            self._all[rec.key] = rec
            if front:
                self._queue.appendleft(rec)
                position = 0
            else:
                self._queue.append(rec)
                position = len(self._queue) - 1
            if self._running is not None:
                position += 1
            self._lock.notify()
            return position

    def get(self, key: Key) -> Optional[JobRecord]:
        with self._lock:
            return self._all.get(key)

    def take_next(self) -> Optional[JobRecord]:
        """Block until a job is queued (worker thread); None once stopped."""
        with self._lock:
            while not self._queue and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return None
            rec = self._queue.popleft()
            rec.running = True
            self._running = rec
            return rec

    def unqueue(self, key: Key) -> Optional[JobRecord]:
        """Remove a still-queued job (cancel); None if it is running or unknown."""
        with self._lock:
            rec = self._all.get(key)
            if rec is None or rec.running:
                return None
            self._queue.remove(rec)
            return rec

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
            if rec is not None and self._running is rec:
                self._running = None

    def stop(self) -> List[JobRecord]:
        """Stop handing out work; returns every pending job so they can be told."""
        with self._lock:
            self._stopped = True
            pending = list(self._all.values())
            for rec in pending:
                rec.cancel.set()
            self._queue.clear()
            self._lock.notify_all()
            return pending

    def snapshot(self, client: bytes) -> Dict[str, Any]:
        with self._lock:
            running = self._running
            return {
                "queue": len(self._queue),
                "busy": running is not None,
                "running": running.request.job if running is not None and running.client == client else "",
                "jobs": [k[1] for k in self._all if k[0] == client],
            }
