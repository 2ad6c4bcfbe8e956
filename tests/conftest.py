"""Shared fixtures (a tiny SD-architecture model, one engine, a real daemon subprocess) and the test tiers.

The model is built once per session in code (random weights, a few MB); the
daemon is the real ``impasto serve`` on a free loopback port with its own
IMPASTO_HOME, so tests never touch the user's data or each other's daemons.

Tiers (markers declared in pyproject.toml) are applied here, centrally, so a
new test file is sorted without marking it by hand - see "test tiers" below.
"""
from __future__ import annotations

import atexit
import os
import shutil
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
# The folder goes when this process ends (every run left one behind in the temp folder before).
if "IMPASTO_SECRET_FILE" not in os.environ:
    _secret_dir = tempfile.mkdtemp(prefix="impasto-secret-")
    os.environ["IMPASTO_SECRET_FILE"] = os.path.join(_secret_dir, "daemon.secret")
    atexit.register(shutil.rmtree, _secret_dir, True)


def pytest_configure(config):
    # Whether a fast job decodes in bfloat16 is decided by timing it on this machine (vae_bf16.py): a
    # test comparing pictures must not depend on the machine's noise, so tests pin it (off unless a
    # test of vae_bf16 says otherwise; tests/test_fast_vae.py covers on, off and the timed choice).
    # Here and not at import: benchmarks import this module for its DaemonProcess.
    os.environ.setdefault("IMPASTO_BF16_DECODE", "off")


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
    """A models folder holding the tiny model as ``tiny`` (and a random ControlNet for it, ``tiny-scribble``)."""
    pytest.importorskip("torch")
    from impasto.backend.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "tiny")
    from impasto.backend.tooling.tiny_model import build_tiny_controlnet  # control layers (issue 16)

    build_tiny_controlnet(root / "controlnet" / "tiny-scribble", root / "tiny", controls="scribble")
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


@pytest.fixture(scope="session")
def engine(models_dir):
    """One in-process engine for the session, with the tiny model loaded (one torch thread: see DaemonProcess)."""
    import torch

    from impasto.backend.engine import Engine

    torch.set_num_threads(1)
    e = Engine(models_dir)
    e.model("tiny")
    return e


# --------------------------------------------------------------------------- test tiers
#
# ``python -m pytest -m "not torch"`` is the fast tier: no model, no daemon, no torch needed.
# A test is marked by what it uses, so files added later are sorted the same way:
#   torch   - it uses a fixture that builds a model, an engine or a daemon, or its module imports
#             torch / diffusers / the engine, the concepts trainer or the starter's training code;
#   daemon  - it runs a real ``impasto serve`` (the daemon, fresh_daemon or client fixtures);
#   host    - it drives a real Krita or GIMP (slow; IMPASTO_REQUIRE_KRITA=1 makes a missing Krita fail);
#   qt      - it needs PySide6 / PyQt (the canvas, the Krita docker offscreen).
# A module whose top-level import needs a missing optional package (torch, PySide6, ...) is
# skipped with the reason instead of failing collection, so the fast tier passes on a machine
# without torch.

import re as _re  # noqa: E402

TORCH_FIXTURES = {"models_dir", "tiny_model", "engine", "daemon", "fresh_daemon", "client"}
DAEMON_FIXTURES = {"daemon", "fresh_daemon", "client"}
HOST_FIXTURES = {"gimp", "gimp_ui", "krita_env"}
HOST_MODULES = {"test_gimp_real", "test_krita_integration"}
OPTIONAL_PACKAGES = {"torch", "diffusers", "transformers", "peft", "safetensors", "accelerate", "PySide6", "PyQt5",
                     "PyQt6", "gi"}
_TORCH_IMPORT = _re.compile(
    r"^\s*(?:import|from)\s+(?:torch|diffusers|transformers|peft|impasto\.backend\.(?:engine|concepts|starter|"
    r"tiny_model|daemon))\b", _re.M)
_QT_IMPORT = _re.compile(r"^\s*(?:import|from)\s+(?:PySide6|PyQt5|PyQt6)\b|importorskip\([\"']PySide6", _re.M)
_module_text: dict = {}


def _source(path) -> str:
    key = str(path)
    if key not in _module_text:
        try:
            _module_text[key] = Path(key).read_text(encoding="utf-8")
        except OSError:
            _module_text[key] = ""
    return _module_text[key]


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        text = _source(item.fspath)
        module = Path(str(item.fspath)).stem
        if used & TORCH_FIXTURES or _TORCH_IMPORT.search(text):
            item.add_marker(pytest.mark.torch)
        if used & DAEMON_FIXTURES:
            item.add_marker(pytest.mark.daemon)
        if used & HOST_FIXTURES or module in HOST_MODULES:
            item.add_marker(pytest.mark.host)
        if _QT_IMPORT.search(text):
            item.add_marker(pytest.mark.qt)


class _OptionalImportModule(pytest.Module):
    """A test module that needs a package this machine lacks is skipped (with why), not a collection error."""

    def _getobj(self):
        try:
            return super()._getobj()
        except self.CollectError as exc:
            found = _re.search(r"No module named '([\w.]+)'", str(exc))
            if found and found.group(1).split(".")[0] in OPTIONAL_PACKAGES:
                pytest.skip(f"needs {found.group(1)}, not installed here", allow_module_level=True)
            raise


def _fast_tier(config) -> bool:
    """``-m "not torch"`` (alone or and-ed with more): every torch test would be deselected anyway."""
    return bool(_re.fullmatch(r"\s*not\s+torch\s*(and\s+.*)?", config.getoption("markexpr") or ""))


def pytest_ignore_collect(collection_path, config):
    """In the fast tier, modules whose imports alone are torch-marked are not even imported (torch costs ~10 s)."""
    if _fast_tier(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return bool(_TORCH_IMPORT.search(_source(collection_path))) or None
    return None


def pytest_pycollect_makemodule(module_path, parent):
    return _OptionalImportModule.from_parent(parent, path=module_path)
