"""The docker's link to the daemon and its running job, kept off Krita's UI thread.

Connecting (ping, starting the daemon, the version handshake, listing models
and concepts), converting canvas pixels and sending a job all happen on
short-lived worker threads; job events arrive on the protocol client's reader
thread.  Nothing here touches Qt or Krita: every callback reaches the UI
through ``post(fn)`` - a queued Qt signal in the docker, so ``fn`` runs on
Krita's UI thread; a plain call in tests.  A 4K canvas therefore never
freezes Krita while it is converted or sent, and a dead daemon shows up as a
sentence from :mod:`.wording`, not a hang.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlparse

from ...protocol import errors, launcher
from ...protocol.client import Client
from ...protocol.messages import Accepted, Cancelled, Error, Progress, ProtocolError, Result
from .config import ConnectionConfig
from .planning import JobPlan
from .wording import START_HINT, describe_exception, describe_failure

Post = Callable[[Callable[[], None]], None]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class ConnectionState:
    status: str = "offline"           # offline | connecting | starting | ready | failed
    message: str = ""
    device: str = ""
    daemon_version: str = ""
    transport: str = ""
    models: List[Dict[str, Any]] = field(default_factory=list)
    default_model: str = ""
    concepts: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class SessionListener:
    """What the docker implements; every method runs on the UI thread (through ``post``)."""

    def state_changed(self, state: ConnectionState) -> None: ...

    def job_started(self, plan: JobPlan) -> None: ...

    def job_queued(self, plan: JobPlan, position: int) -> None: ...

    def job_progress(self, plan: JobPlan, progress: Any) -> None: ...

    def job_finished(self, plan: JobPlan, result: Any) -> None: ...

    def job_cancelled(self, plan: Optional[JobPlan]) -> None: ...

    def job_failed(self, plan: Optional[JobPlan], message: str) -> None: ...


def is_local(endpoint: str) -> bool:
    try:
        host = urlparse(endpoint).hostname or ""
    except ValueError:
        return False
    return endpoint.startswith("ipc://") or host in LOCAL_HOSTS


class Session:
    def __init__(self, config: ConnectionConfig, listener: SessionListener, post: Post,
                 client_name: str = "impasto-krita"):
        self.config = config
        self.listener = listener
        self.post = post
        self.client_name = client_name
        self.state = ConnectionState()
        self._client: Optional[Any] = None
        self._lock = threading.Lock()
        self._connecting = False
        self._job: Optional[Any] = None
        self._plan: Optional[JobPlan] = None
        self._busy = False
        self._cancel_requested = False
        self._started_proc: Optional[Any] = None
        self._closed = False

    # ------------------------------------------------------------------ state

    @property
    def endpoint(self) -> str:
        return self.config.effective_endpoint

    @property
    def busy(self) -> bool:
        return self._busy

    def _set_state(self, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self.state, k, v)
            snapshot = ConnectionState(**{k: (list(v) if isinstance(v, list) else v)
                                          for k, v in vars(self.state).items()})
        self.post(lambda: self.listener.state_changed(snapshot))

    # ------------------------------------------------------------------ connecting

    def connect(self, allow_start: bool = True) -> bool:
        """Connect in the background; False when a connection attempt is already running."""
        with self._lock:
            if self._connecting or self._closed:
                return False
            self._connecting = True
        threading.Thread(target=self._connect_worker, args=(allow_start,), name="impasto-connect",
                         daemon=True).start()
        return True

    def reconfigure(self, config: ConnectionConfig) -> None:
        """New endpoint / command: drop the old client (the next connect makes a new one)."""
        old = None
        with self._lock:
            if config.effective_endpoint != self.config.effective_endpoint:
                old, self._client = self._client, None
            self.config = config
        if old is not None:
            threading.Thread(target=old.close, daemon=True).start()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = Client(self.endpoint, name=self.client_name)
            return self._client

    def _connect_worker(self, allow_start: bool) -> None:
        try:
            self._connect_now(allow_start)
        finally:
            with self._lock:
                self._connecting = False

    def _connect_now(self, allow_start: bool) -> bool:
        """Ping, maybe start the daemon, shake hands, list models: True when ready (any thread but the UI's)."""
        try:
            self._set_state(status="connecting", message=f"Connecting to {self.endpoint} …")
            client = self._get_client()
            if not client.ping(timeout=1.5):
                if not is_local(self.endpoint):
                    self._set_state(status="offline", message=(
                        f"No Impasto daemon answers at {self.endpoint}; it is on another machine, so start it "
                        "there with `impasto serve`."))
                    return False
                if not allow_start and self.config.can_start:
                    self._set_state(status="offline", message=(
                        "The Impasto daemon is not running yet: it starts when you press Generate (or ⟳)."))
                    return False
                if not self.config.can_start:
                    hint = START_HINT
                    if self.config.daemon_command and not self.config.auto_start:
                        hint = "start it with `impasto serve`, or tick “Start the daemon automatically”"
                    self._set_state(status="offline", message=f"No Impasto daemon answers at {self.endpoint}: {hint}.")
                    return False
                if not self._start_daemon(client):
                    return False
            welcome = client.hello(timeout=90)
            models = client.models(timeout=30)
            concepts: List[Dict[str, Any]] = []
            try:
                concepts = list(client.concepts(timeout=10).concepts)
            except (ProtocolError, TimeoutError):
                concepts = []  # a daemon without the concept library still paints
            usable = [m for m in models.models if m.get("supported", True)]
            device = getattr(welcome, "device", "")
            model_word = models.default or "no model installed"
            note = launcher.models_dir_note(self.config.models_dir or "", getattr(models, "models_dir", ""))
            self._set_state(status="ready", message=f"Connected · {device or 'daemon'} · default model: {model_word}"
                            + (f"\n⚠ {note}" if note else ""),
                            device=device, daemon_version=getattr(welcome, "daemon", ""),
                            transport=getattr(client, "transport", ""), models=usable,
                            default_model=models.default, concepts=concepts)
            return True
        except Exception as exc:  # a readable state, whatever happened
            self._set_state(status="failed", message=describe_exception(exc, self.endpoint))
            return False

    def _start_daemon(self, client: Any) -> bool:
        """Start the daemon detached through the client core's launcher and wait until it answers."""
        argv = launcher.serve_argv(self.config.daemon_command, self.endpoint, self.config.models_dir)
        self._set_state(status="starting", message="Starting the Impasto daemon … (loading the model can take a minute)")
        try:
            self._started_proc = launcher.spawn_daemon(argv, self.config.daemon_env)
            launcher.wait_until_answering(client, self._started_proc, self.config.start_timeout,
                                          self.config.daemon_env, stop=lambda: self._closed)
        except ProtocolError as exc:
            self._set_state(status="failed", message=errors.sentence(exc.message)
                            + " Check the daemon command under Connection.")
            return False
        return not self._closed

    def check_alive(self) -> None:
        """A cheap background ping: flips the status when the daemon went away or came back."""
        with self._lock:
            if self._connecting or self._busy or self._closed:
                return
            client = self._client

        def run() -> None:
            if client is None:
                return
            alive = client.ping(timeout=2.0)
            if alive and not self.state.ready:
                self.connect(allow_start=False)
            elif not alive and self.state.ready:
                self._set_state(status="offline", message=f"The Impasto daemon at {self.endpoint} stopped answering: {START_HINT}.")

        threading.Thread(target=run, name="impasto-ping", daemon=True).start()

    # ------------------------------------------------------------------ jobs

    def start_job(self, build: Callable[[], JobPlan]) -> bool:
        """Build the plan (pixel conversion) and submit it on a worker thread; False if a job runs."""
        with self._lock:
            if self._busy or self._closed:
                return False
            self._busy = True
            self._cancel_requested = False
            self._plan = None
        threading.Thread(target=self._submit_worker, args=(build,), name="impasto-submit", daemon=True).start()
        return True

    def _ensure_connected(self) -> bool:
        """Before a job: wait for a running connection attempt, else connect (starting the daemon if allowed)."""
        deadline = time.monotonic() + self.config.start_timeout + 120
        while True:
            with self._lock:
                if not self._connecting:
                    self._connecting = True
                    break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        try:
            return self.state.ready or self._connect_now(allow_start=True)
        finally:
            with self._lock:
                self._connecting = False

    def _submit_worker(self, build: Callable[[], JobPlan]) -> None:
        plan: Optional[JobPlan] = None
        try:
            plan = build()
            self._plan = plan
            if not self._ensure_connected():
                message = self.state.message or f"No Impasto daemon answers at {self.endpoint}."
                self._finish()
                self.post(lambda: self.listener.job_failed(plan, message))
                return
            if self._cancel_requested:
                self._finish()
                self.post(lambda: self.listener.job_cancelled(plan))
                return
            client = self._get_client()
            self.post(lambda: self.listener.job_started(plan))
            job = client.submit(plan.request, on_event=lambda ev: self._on_event(plan, ev))
            with self._lock:
                if not job.done:
                    self._job = job
            if self._cancel_requested:
                job.cancel()
        except Exception as exc:
            message = describe_exception(exc, self.endpoint)
            self._finish()
            self.post(lambda: self.listener.job_failed(plan, message))

    def _on_event(self, plan: JobPlan, ev: Any) -> None:
        """Runs on the client's reader thread: route to the UI."""
        if isinstance(ev, Progress):
            self.post(lambda: self.listener.job_progress(plan, ev))
        elif isinstance(ev, Accepted):
            self.post(lambda: self.listener.job_queued(plan, ev.position))
        elif isinstance(ev, Result):
            self._finish()
            self.post(lambda: self.listener.job_finished(plan, ev))
        elif isinstance(ev, Cancelled):
            self._finish()
            self.post(lambda: self.listener.job_cancelled(plan))
        elif isinstance(ev, Error):
            self._finish()
            message = describe_failure(ev.code, ev.message, ev.field, self.endpoint)
            if ev.code == "unavailable":
                self._set_state(status="offline", message=message)
            self.post(lambda: self.listener.job_failed(plan, message))

    def _finish(self) -> None:
        with self._lock:
            self._busy = False
            self._job = None

    def cancel(self) -> None:
        self._cancel_requested = True
        job = self._job
        if job is not None:
            job.cancel()  # a no-op when the client is closed: the job ends with an error event anyway

    def close(self) -> None:
        self._closed = True
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
