"""Shared fixtures: a tiny SD-architecture model and a real daemon subprocess.

The model is built once per session in code (random weights, a few MB); the
daemon is the real ``impasto serve`` on a free loopback port with its own
IMPASTO_HOME, so tests never touch the user's data or each other's daemons.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Daemons require the secret from IMPASTO_HOME (docs/security.md).  Every test daemon has its own
# home, so the session shares one secret file that all of them and every client here use.
os.environ.setdefault("IMPASTO_SECRET_FILE",
                      os.path.join(tempfile.mkdtemp(prefix="impasto-secret-"), "daemon.secret"))


def plain_auth(sock):
    """Give a raw pyzmq socket (before connect) the daemon's PLAIN credentials, as every client has."""
    from impasto.protocol import credentials

    sock.plain_username = credentials.PLAIN_USER
    sock.plain_password = credentials.read_secret()
    return sock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder holding the tiny model as ``tiny``."""
    from impasto.backend.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "tiny")
    return root


@pytest.fixture(scope="session")
def tiny_model(models_dir) -> Path:
    return models_dir / "tiny"


class DaemonProcess:
    """A real ``impasto serve`` subprocess; ``endpoint`` and ``env`` for clients."""

    def __init__(self, models_dir: Path, home: Path, extra_args=(), env_extra=None):
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.home = home
        self.models_dir = models_dir
        self.env = dict(os.environ, IMPASTO_HOME=str(home), IMPASTO_ENDPOINT=self.endpoint,
                        IMPASTO_MODELS_DIR=str(models_dir), PYTHONUNBUFFERED="1",
                        # one intra-op thread: on 2 shared cores torch's second thread mostly spins
                        # (a tiny training job measured 3.6 s with one thread, 99 s with two)
                        OMP_NUM_THREADS="1")
        self.env.update(env_extra or {})
        self.log_path = home / "daemon-test.log"
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self, timeout: float = 120) -> "DaemonProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", self.endpoint,
             "--models-dir", str(self.models_dir), *self.extra_args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        from impasto.protocol import Client

        with Client(self.endpoint) as c:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited: {self.log()}")
                if c.ping(timeout=1.0):
                    c.hello(timeout=timeout)  # waits for the engine to be up
                    return self
        raise RuntimeError(f"daemon did not answer: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def daemon(models_dir, tmp_path_factory):
    """One shared daemon for the session (tests must not stop it: use ``fresh_daemon``)."""
    d = DaemonProcess(models_dir, tmp_path_factory.mktemp("home")).start()
    yield d
    d.stop()


@pytest.fixture
def fresh_daemon(models_dir, tmp_path):
    """A daemon of the test's own, for tests that stop, kill or restart it."""
    made = []

    def make(**kwargs) -> DaemonProcess:
        d = DaemonProcess(models_dir, tmp_path / f"home{len(made)}", **kwargs).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def client(daemon):
    from impasto.protocol import Client

    with Client(daemon.endpoint) as c:
        yield c
