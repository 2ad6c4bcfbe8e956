"""The canvas's link to the daemon: connection state, auto-start, and the thread hop.

The protocol :class:`~impasto.protocol.client.Client` calls back on its own
reader thread and its control requests block; a Qt UI may do neither.  So:

* job events are re-emitted through a Qt signal and reach their handler on
  the UI thread (queued connection);
* control requests (status, models, concepts, concept actions) run on a
  small thread pool, their answers come back the same way;
* a timer probes the daemon every few seconds, off the UI thread, and turns
  what it finds into one state and one sentence for the status bar.  When
  nothing answers and auto-start is on, it starts ``impasto serve`` detached
  and waits for it, saying so.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from impasto.protocol import Client, Job
from impasto.protocol.messages import ErrorCode, ProtocolError
from impasto.protocol.transport import default_endpoint

from impasto.protocol import launcher

CONNECTING, STARTING, CONNECTED, DOWN, INCOMPATIBLE = "connecting", "starting", "connected", "down", "incompatible"
START_TIMEOUT = 240.0     # a first start loads torch and the model: minutes on a slow machine
RESPAWN_AFTER = 30.0      # never start daemons in a loop


def spawn_daemon(endpoint: str, models_dir: Optional[str] = None):
    """``impasto serve`` of this interpreter, detached, through the one launcher."""
    return launcher.spawn_daemon(launcher.serve_argv(launcher.own_command(), endpoint, models_dir or ""))


class DaemonLink(QObject):
    state_changed = Signal(str, str)      # state, a sentence for the artist
    models_changed = Signal(object)       # protocol Models reply
    _deliver = Signal(object, object)     # (callback, argument): runs callback on the UI thread

    def __init__(self, endpoint: Optional[str] = None, autostart: bool = True, models_dir: Optional[str] = None,
                 poll_ms: int = 3000, ping_timeout: float = 2.0, spawn: Optional[Callable] = None,
                 client_options: Optional[dict] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.endpoint = endpoint or default_endpoint()
        self.autostart = autostart
        self.models_dir = models_dir
        self._spawn = spawn or spawn_daemon
        self.ping_timeout = ping_timeout
        self.client = Client(self.endpoint, name="impasto-canvas", **(client_options or {}))
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="impasto-canvas-net")
        self._deliver.connect(self._run_delivered)
        self.state, self.message = CONNECTING, f"Connecting to the Impasto daemon at {self.endpoint}…"
        self.device = ""
        self.models = None
        self._handshaken = False
        self._lost = False            # it answered once and then stopped
        self._probing = False
        self._proc = None
        self._spawned_at = float("-inf")
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.check)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._timer.start()
        self.check()

    def close(self) -> None:
        """Stop probing and close the connection; a daemon we started keeps running (it is shared)."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    # ------------------------------------------------------------------ jobs and requests

    def submit(self, request: Any, on_event: Callable[[Any], None]) -> Job:
        """Send a job; ``on_event`` receives its events on the UI thread (never before this returns)."""
        return self.client.submit(request, on_event=lambda ev: self._post(on_event, ev))

    def call(self, fn: Callable[[Client], Any], on_done: Optional[Callable[[Any], None]] = None,
             on_error: Optional[Callable[[BaseException], None]] = None) -> None:
        """Run ``fn(client)`` off the UI thread; its result or exception comes back on the UI thread."""
        if self._closed:
            return

        def work() -> None:
            try:
                value = fn(self.client)
            except BaseException as exc:  # noqa: BLE001 - handed to the UI, never lost
                if on_error is not None:
                    self._post(on_error, exc)
                return
            if on_done is not None:
                self._post(on_done, value)

        self._pool.submit(work)

    def _post(self, callback: Callable[[Any], None], value: Any) -> None:
        if not self._closed:
            self._deliver.emit(callback, value)

    def _run_delivered(self, callback: Callable[[Any], None], value: Any) -> None:
        if not self._closed:
            callback(value)

    # ------------------------------------------------------------------ health

    def check(self) -> None:
        """Probe the daemon (off the UI thread); at most one probe at a time."""
        if self._probing or self._closed:
            return
        self._probing = True
        handshake = not self._handshaken
        self.call(lambda client: self._probe(client, handshake), self._probe_done, self._probe_failed)

    def _probe(self, client: Client, handshake: bool) -> dict:
        if not client.ping(timeout=self.ping_timeout):
            return {"answered": False}
        out: dict = {"answered": True}
        if handshake:
            self._post(lambda _: self._set_state(CONNECTING, "The Impasto daemon answered; waiting for it to "
                                                             "finish loading…"), None)
            out["welcome"] = client.hello(timeout=90)
            try:
                out["models"] = client.models(timeout=15)
            except (TimeoutError, ProtocolError):
                out["models"] = None
        out["status"] = client.status(timeout=3)
        return out

    def _probe_failed(self, exc: BaseException) -> None:
        self._probing = False
        if isinstance(exc, ProtocolError) and exc.code == ErrorCode.VERSION_MISMATCH:
            self._set_state(INCOMPATIBLE, f"The Impasto daemon at {self.endpoint} speaks another protocol "
                                          f"version: {exc.message}")
            self._timer.stop()
            return
        self._probe_done({"answered": False})

    def _probe_done(self, found: dict) -> None:
        self._probing = False
        if found.get("answered"):
            if "welcome" in found:
                self._handshaken = True
                self.device = found["welcome"].device
                if found.get("models") is not None:
                    self.models = found["models"]
                    self.models_changed.emit(self.models)
            self._lost = False
            st = found["status"]
            model = st.model or st.default_model or "no model installed"
            note = launcher.models_dir_note(self.models_dir or "", getattr(self.models, "models_dir", "") or "")
            self._set_state(CONNECTED, f"Connected to the Impasto daemon ({st.device or self.device}) · model: "
                                       f"{model}" + (f" · {st.queue} waiting" if st.queue else "")
                            + (f" · ⚠ {note}" if note else ""))
            return
        was_connected = self._handshaken
        self._handshaken = False
        self._lost = self._lost or was_connected   # remembered until it answers again
        if self._proc is not None and self._proc.poll() is None:
            if time.monotonic() - self._spawned_at < START_TIMEOUT:
                self._set_state(STARTING, f"Starting the Impasto daemon… (the first start loads the model; "
                                          f"log: {launcher.daemon_log_path()})")
            else:  # alive but mute: never start a second one next to it
                self._set_state(DOWN, f"The Impasto daemon was started but does not answer at {self.endpoint}; "
                                      f"see {launcher.daemon_log_path()}")
            return
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._proc = None
            self._set_state(DOWN, f"The Impasto daemon could not start (exit code {code}); see "
                                  f"{launcher.daemon_log_path()}")
            return
        if self.autostart and time.monotonic() - self._spawned_at > RESPAWN_AFTER:
            self.start_daemon(reason="stopped answering" if self._lost else "")
            return
        if self._lost:
            self._set_state(DOWN, f"The Impasto daemon at {self.endpoint} stopped answering; any job it was "
                                  f"running is lost. It will be " + ("restarted." if self.autostart else
                                                          "used again as soon as it is back."))
        elif not self.autostart:
            self._set_state(DOWN, f"No Impasto daemon answers at {self.endpoint}. Start one with "
                                  f"`impasto serve`, or turn on “Start the daemon automatically”.")

    def start_daemon(self, reason: str = "") -> None:
        """Start ``impasto serve`` detached (also the status bar's Start button)."""
        self._spawned_at = time.monotonic()
        try:
            self._proc = self._spawn(self.endpoint, self.models_dir)
        except (OSError, ProtocolError) as exc:
            self._proc = None
            self._set_state(DOWN, f"The Impasto daemon could not be started: {getattr(exc, 'message', exc)}")
            return
        why = f"The daemon {reason}; restarting it" if reason else "Starting the Impasto daemon"
        self._set_state(STARTING, f"{why}… (log: {launcher.daemon_log_path()})")

    def _set_state(self, state: str, message: str) -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self.state_changed.emit(state, message)
