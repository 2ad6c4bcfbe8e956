"""The docker's session against a real daemon, without Krita or Qt.

Connecting, the version handshake, a text-to-image job and an inpaint going
through the same plan -> submit -> events -> layers path the docker uses, a
cancel, and what the artist reads when the daemon is missing, killed mid-job,
auto-started or speaks another protocol version.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from impasto.plugin_krita.impasto_krita import masks, planning
from impasto.plugin_krita.impasto_krita.config import ConnectionConfig, MemoryStore, load_connection, save_connection
from impasto.plugin_krita.impasto_krita.pixels import RGBA8
from impasto.plugin_krita.impasto_krita.placement import plan_layers
from impasto.plugin_krita.impasto_krita.planning import CanvasSnapshot, Settings
from impasto.plugin_krita.impasto_krita.session import Session, SessionListener, is_local
from impasto.plugin_krita.impasto_krita.wording import describe_failure

from conftest import free_port


class Recorder(SessionListener):
    def __init__(self):
        self.events = []
        self.states = []
        self.ended = threading.Event()
        self.changed = threading.Condition()

    def _add(self, kind, *args):
        with self.changed:
            self.events.append((kind,) + args)
            self.changed.notify_all()

    def state_changed(self, state):
        with self.changed:
            self.states.append(state)
            self.changed.notify_all()

    def wait_state(self, statuses, timeout=60):
        deadline = time.monotonic() + timeout
        with self.changed:
            while time.monotonic() < deadline:
                if self.states and self.states[-1].status in statuses:
                    return self.states[-1]
                self.changed.wait(0.2)
        raise AssertionError(f"no state in {statuses}: {[(s.status, s.message) for s in self.states]}")

    def job_started(self, plan):
        self._add("started", plan)

    def job_queued(self, plan, position):
        self._add("queued", position)

    def job_progress(self, plan, progress):
        self._add("progress", progress)

    def job_finished(self, plan, result):
        self._add("finished", plan, result)
        self.ended.set()

    def job_cancelled(self, plan):
        self._add("cancelled", plan)
        self.ended.set()

    def job_failed(self, plan, message):
        self._add("failed", plan, message)
        self.ended.set()

    def last(self):
        return self.events[-1]

    def wait_event(self, kind, timeout=60):
        deadline = time.monotonic() + timeout
        with self.changed:
            while time.monotonic() < deadline:
                if any(e[0] == kind for e in self.events):
                    return
                self.changed.wait(0.2)
        raise AssertionError(f"no {kind} event: {[e[0] for e in self.events]}")


def make_session(endpoint, **cfg):
    rec = Recorder()
    session = Session(ConnectionConfig(endpoint=endpoint, auto_start=cfg.pop("auto_start", False), **cfg), rec,
                      post=lambda fn: fn())
    return session, rec


def ready_session(endpoint):
    session, rec = make_session(endpoint)
    assert session.connect()
    state = rec.wait_state({"ready", "failed", "offline"}, 120)
    assert state.ready, state.message
    return session, rec


def build_for(settings, w, h, selection=None, rgba=None):
    rgba = rgba or bytes([90, 140, 200, 255]) * (w * h)
    read = planning.read_plan(settings, w, h, selection)
    raw = masks.crop(rgba, w, read.window, 4) if read.needs_pixels else None
    from impasto.plugin_krita.impasto_krita.pixels import from_rgba8

    snap = CanvasSnapshot(w, h, read.window, from_rgba8(raw, RGBA8) if raw else None, RGBA8,
                          masks.crop(selection, w, read.window, 1) if read.mask_info else None, read.mask_info)
    return lambda: planning.plan_job(snap, settings)


@pytest.fixture
def session_on(daemon):
    made = []

    def make():
        s, rec = ready_session(daemon.endpoint)
        made.append(s)
        return s, rec

    yield make
    for s in made:
        s.close()


def test_connect_lists_the_models(session_on):
    session, rec = session_on()
    state = rec.states[-1]
    assert "tiny" in [m["name"] for m in state.models]
    assert state.message.startswith("Connected")
    assert state.transport in ("PyzmqDealer", "ZmtpDealer")


def test_text_to_image_job_with_live_preview(session_on):
    session, rec = session_on()
    s = Settings(prompt="a red square", model="tiny", steps=3, sampler="euler", seed=3,
                 preview=True)
    assert session.start_job(build_for(s, 40, 32))
    assert session.busy
    assert not session.start_job(build_for(s, 40, 32))  # one job at a time
    assert rec.ended.wait(180), rec.events
    kind, plan, result = rec.last()
    assert kind == "finished", rec.last()
    assert not session.busy
    progress = [e[1] for e in rec.events if e[0] == "progress"]
    assert progress and progress[-1].step == progress[-1].total
    assert any(p.preview is not None and p.preview.format == "rgba8" for p in progress)
    layers = plan_layers(plan, result)
    assert len(layers) == 1 and (layers[0].width, layers[0].height) == (40, 32)
    assert result.seeds == [3]


def test_inpaint_job_returns_a_patch_inside_the_selection(session_on):
    session, rec = session_on()
    w, h = 64, 48
    sel = bytearray(w * h)
    for y in range(20, 32):
        sel[y * w + 24:y * w + 40] = b"\xff" * 16
    s = Settings(prompt="a window", model="tiny", steps=3, sampler="euler", mask_blur=2, padding=8)
    assert session.start_job(build_for(s, w, h, bytes(sel)))
    assert rec.ended.wait(180), rec.events
    kind, plan, result = rec.last()
    assert kind == "finished", rec.last()
    assert plan.kind == "edit"
    layers = plan_layers(plan, result)
    layer = layers[0]
    assert 24 - 8 <= layer.x <= 24 and 20 - 8 <= layer.y <= 20
    assert layer.x + layer.width >= 40 and layer.y + layer.height >= 32
    assert layer.x + layer.width <= 40 + 8 and layer.y + layer.height <= 32 + 8
    # opaque in the middle of the selection, transparent at the patch's corner
    mid = ((26 - layer.y) * layer.width + (32 - layer.x)) * 4
    assert layer.rgba[mid + 3] == 255
    assert layer.rgba[3] < 255


def test_cancel_stops_a_running_job(session_on):
    session, rec = session_on()
    s = Settings(prompt="slow", model="tiny", steps=150, sampler="euler", preview=False)
    assert session.start_job(build_for(s, 32, 32))
    rec.wait_event("progress", 120)
    session.cancel()
    assert rec.ended.wait(120), rec.events
    assert rec.last()[0] == "cancelled", rec.last()
    assert not session.busy


def test_unknown_model_is_a_sentence_about_the_model_list(session_on):
    session, rec = session_on()
    s = Settings(prompt="x", model="no-such-model", steps=2)
    assert session.start_job(build_for(s, 16, 16))
    assert rec.ended.wait(60)
    kind, plan, message = rec.last()
    assert kind == "failed" and "Model list" in message and "Traceback" not in message


def test_no_daemon_is_reported_not_raised():
    session, rec = make_session(f"tcp://127.0.0.1:{free_port()}")
    try:
        session.connect()
        state = rec.wait_state({"offline", "failed"}, 30)
        assert state.status == "offline"
        assert "No Impasto daemon answers" in state.message and "impasto serve" in state.message
        s = Settings(prompt="x", steps=2)
        session.start_job(build_for(s, 16, 16))  # nobody to send it to: a sentence at once, not a hang
        assert rec.ended.wait(30)
        kind, _plan, message = rec.last()
        assert kind == "failed" and "No Impasto daemon answers" in message
    finally:
        session.close()


def test_daemon_killed_mid_job_ends_the_job_with_a_sentence(fresh_daemon):
    d = fresh_daemon()
    session, rec = ready_session(d.endpoint)
    try:
        s = Settings(prompt="long", model="tiny", steps=150, sampler="euler", preview=False)
        assert session.start_job(build_for(s, 32, 32))
        rec.wait_event("progress", 120)
        os.kill(d.proc.pid, signal.SIGKILL)
        assert rec.ended.wait(60), rec.events
        kind, _plan, message = rec.last()
        assert kind == "failed", rec.last()
        assert "stopped answering" in message and "job was lost" in message
        assert rec.states[-1].status == "offline"
        assert not session.busy
    finally:
        session.close()


def test_version_mismatch_says_to_reinstall(daemon, monkeypatch):
    from impasto.protocol import client as client_module

    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", 999)
    session, rec = make_session(daemon.endpoint)
    try:
        session.connect()
        state = rec.wait_state({"ready", "failed", "offline"}, 60)
        assert state.status == "failed"
        assert "protocol" in state.message and "impasto install-krita" in state.message
    finally:
        session.close()


def test_first_generate_starts_the_configured_daemon(models_dir, tmp_path):
    """Opening Krita only looks for a daemon; the first Generate starts it, then the job runs."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    session, rec = make_session(endpoint, auto_start=True,
                                daemon_command=[sys.executable, "-m", "impasto.backend.cli"],
                                models_dir=str(models_dir), daemon_env={"IMPASTO_HOME": str(tmp_path / "home")})
    try:
        session.connect(allow_start=False)
        state = rec.wait_state({"offline", "failed", "ready"}, 30)
        assert state.status == "offline" and "starts when you press Generate" in state.message
        assert session._started_proc is None
        s = Settings(prompt="x", model="tiny", steps=2, sampler="euler")
        assert session.start_job(build_for(s, 24, 24))
        assert rec.ended.wait(300), [(st.status, st.message) for st in rec.states]
        assert rec.last()[0] == "finished", rec.last()
        statuses = [st.status for st in rec.states]
        assert "starting" in statuses and statuses[-1] == "ready"
        assert "tiny" in [m["name"] for m in rec.states[-1].models]
        assert (tmp_path / "home" / "logs" / "daemon.log").exists()  # the one launcher's log
    finally:
        proc = session._started_proc
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        session.close()


def test_auto_start_with_a_wrong_command_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path))
    session, rec = make_session(f"tcp://127.0.0.1:{free_port()}", auto_start=True,
                                daemon_command=[str(tmp_path / "no-such-impasto")])
    try:
        session.connect()
        state = rec.wait_state({"failed"}, 30)
        assert "Cannot start the Impasto daemon" in state.message and "daemon command" in state.message
    finally:
        session.close()


def test_remote_endpoints_are_never_auto_started():
    assert is_local("tcp://127.0.0.1:7877") and is_local("tcp://localhost:1") and is_local("ipc:///tmp/x")
    assert not is_local("tcp://192.168.1.20:7877")


def test_connection_settings_precedence(monkeypatch):
    monkeypatch.setenv("IMPASTO_ENDPOINT", "tcp://127.0.0.1:1111")
    store = MemoryStore()
    install = {"endpoint": "", "daemon_command": ["/opt/impasto/bin/python", "-m", "impasto.backend.cli"],
               "auto_start": True, "daemon_env": {"IMPASTO_HOME": "/data/impasto"}}
    cfg = load_connection(store, install)
    assert cfg.effective_endpoint == "tcp://127.0.0.1:1111"  # the environment fills an empty endpoint
    assert cfg.can_start and cfg.daemon_env == {"IMPASTO_HOME": "/data/impasto"}
    cfg.endpoint = "tcp://127.0.0.1:2222"
    cfg.auto_start = False
    save_connection(store, cfg)
    again = load_connection(store, install)
    assert again.effective_endpoint == "tcp://127.0.0.1:2222" and not again.can_start
    assert again.daemon_command == install["daemon_command"]


@pytest.mark.parametrize("code,message,needle", [
    ("unavailable", "the Impasto daemon at tcp://x stopped answering", "stopped answering"),
    ("daemon_restarted", "the Impasto daemon restarted while the job was running; the job was lost", "restarted"),
    ("version_mismatch", "client speaks protocol 1, this daemon speaks protocol 2: update the client",
     "impasto install-krita"),
    ("bad_field", "cfg_scale: 99 is outside 0..30", "CFG scale"),
    ("internal", "CUDA out of memory", "keeps running"),
])
def test_failures_read_as_sentences(code, message, needle):
    text = describe_failure(code, message, "cfg_scale" if code == "bad_field" else "", "tcp://x")
    assert needle in text and text[0].isupper()
