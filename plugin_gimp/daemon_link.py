"""Reaching the daemon from GIMP: connect, and start it when the artist allowed it.

Everything here may block for seconds (a daemon loading its model), so the
interactive plug-in calls it from its worker thread; ``status`` callbacks let
the progress window say what is happening ("starting the Impasto daemon ...").
Failures become :class:`DaemonUnavailable` with a sentence an artist can act
on: which endpoint, what was tried, where to change it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, List, Optional

from ..protocol.client import Client
from ..protocol.messages import ErrorCode, ProtocolError
from .settings import PluginSettings, effective_endpoint

CLIENT_NAME = "impasto-gimp"


class DaemonUnavailable(ProtocolError):
    """No daemon answers, and none could be started."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.UNAVAILABLE, message)


def daemon_argv(settings: PluginSettings, endpoint: str, which: Callable[[str], Optional[str]] = shutil.which
                ) -> List[str]:
    """The command that starts a daemon listening on ``endpoint``.

    The artist's ``daemon_command`` wins (``--endpoint`` is appended unless
    it is already there); otherwise ``impasto serve`` from PATH.
    """
    if settings.daemon_command.strip():
        argv = shlex.split(settings.daemon_command, posix=os.name != "nt")
    else:
        exe = which("impasto")
        if not exe:
            raise DaemonUnavailable(
                "cannot start the Impasto daemon: `impasto` is not on GIMP's PATH. Set the daemon command in "
                "Filters > Impasto > Settings (e.g. /path/to/venv/bin/impasto serve), or start `impasto serve` "
                "yourself")
        argv = [exe, "serve"]
    if "--endpoint" not in argv:
        argv += ["--endpoint", endpoint]
    return argv


def spawn_daemon(argv: List[str]) -> subprocess.Popen:
    """Start the daemon detached from GIMP: it outlives the plug-in process and GIMP's session."""
    kwargs: dict = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        close_fds=True)
    if os.name == "nt":
        kwargs["creationflags"] = (getattr(subprocess, "DETACHED_PROCESS", 0x8)
                                   | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200))
    else:
        kwargs["start_new_session"] = True
    try:
        return subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        raise DaemonUnavailable(f"cannot start the Impasto daemon with {' '.join(argv)!r}: {exc}") from None


def connect(settings: PluginSettings, status: Callable[[str], None] = lambda text: None,
            ping_timeout: float = 1.5, argv_for: Callable[[PluginSettings, str], List[str]] = daemon_argv
            ) -> Client:
    """A :class:`Client` whose daemon answers and speaks our protocol version."""
    settings.validate()
    endpoint = effective_endpoint(settings)
    transport = settings.transport if settings.transport != "auto" else os.environ.get("IMPASTO_TRANSPORT", "auto")
    status(f"connecting to the Impasto daemon at {endpoint}")
    client = Client(endpoint, transport=transport, name=CLIENT_NAME)
    client.spawned = None   # the daemon process this call started, if any
    try:
        if client.ping(timeout=ping_timeout):
            _hello(client, settings.start_timeout)
            return client
        if not settings.auto_start:
            raise DaemonUnavailable(
                f"no Impasto daemon answers at {endpoint}. Start it with `impasto serve`, or turn on "
                f"auto-start in Filters > Impasto > Settings")
        argv = argv_for(settings, endpoint)
        status(f"starting the Impasto daemon ({' '.join(argv)})")
        proc = client.spawned = spawn_daemon(argv)
        deadline = time.monotonic() + settings.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DaemonUnavailable(
                    f"the Impasto daemon exited at start (code {proc.returncode}); run "
                    f"{' '.join(argv)!r} in a terminal to see why")
            if client.ping(timeout=1.0):
                status("the Impasto daemon is loading its model")
                _hello(client, max(1.0, deadline - time.monotonic()))
                return client
        raise DaemonUnavailable(f"the Impasto daemon did not answer within {settings.start_timeout:g} s at "
                                f"{endpoint}")
    except BaseException:
        client.close()
        raise


def _hello(client: Client, timeout: float) -> None:
    try:
        client.hello(timeout=timeout)
    except TimeoutError:
        raise DaemonUnavailable(f"the Impasto daemon at {client.endpoint} did not say hello within "
                                f"{timeout:g} s") from None


def python_info() -> str:
    """For the Settings dialog: which Python and transport GIMP gives the plug-in."""
    from ..protocol.transport import pyzmq_available

    return (f"Python {sys.version.split()[0]}, transport: "
            f"{'pyzmq' if pyzmq_available() else 'pure-Python ZMTP (no pyzmq here)'}")
