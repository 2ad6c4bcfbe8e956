"""Reaching the daemon from GIMP: GIMP's settings on the client core's one launcher.

Everything here may block for seconds (a daemon loading its model), so the
interactive plug-in calls it from its worker thread; ``status`` callbacks let
the progress window say what is happening ("starting the Impasto daemon ...").
Connecting, starting detached (log in ``IMPASTO_HOME/logs/daemon.log``) and
waiting are :mod:`impasto.protocol.launcher`'s; this module only says which
command starts the daemon and where the artist changes it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Callable, List, Optional

from ..protocol import launcher
from ..protocol.client import Client
from ..protocol.launcher import DaemonUnavailable  # noqa: F401 (the plug-in's callers catch it from here)
from .settings import PluginSettings, effective_endpoint

CLIENT_NAME = "impasto-gimp"


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


def connect(settings: PluginSettings, status: Callable[[str], None] = lambda text: None,
            ping_timeout: float = 1.5, argv_for: Callable[[PluginSettings, str], List[str]] = daemon_argv
            ) -> Client:
    """A :class:`Client` whose daemon answers and speaks our protocol version."""
    settings.validate()
    endpoint = effective_endpoint(settings)
    transport = settings.transport if settings.transport != "auto" else os.environ.get("IMPASTO_TRANSPORT", "auto")
    command = (lambda: argv_for(settings, endpoint)) if settings.auto_start else None
    return launcher.connect(endpoint, command, timeout=settings.start_timeout, ping_timeout=ping_timeout,
                            hello_timeout=settings.start_timeout, status=status, name=CLIENT_NAME,
                            transport=transport, hint="start it with `impasto serve`, or turn on auto-start in "
                                                      "Filters > Impasto > Settings")


def asked_models_dir(settings: PluginSettings) -> str:
    """The models folder the artist's daemon command names (``--models-dir X``), "" when it names none.

    It only reaches a daemon the plug-in starts; :func:`launcher.models_dir_note` tells the artist when
    the daemon that answered uses another one.
    """
    try:
        argv = shlex.split(settings.daemon_command or "", posix=os.name != "nt")
    except ValueError:
        return ""
    for i, arg in enumerate(argv):
        if arg == "--models-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--models-dir="):
            return arg.split("=", 1)[1]
    return ""


def models_note(settings: PluginSettings, models_reply) -> str:
    """A sentence when the running daemon uses another models folder than the daemon command names ("" if not)."""
    return launcher.models_dir_note(asked_models_dir(settings), getattr(models_reply, "models_dir", "") or "")


def python_info() -> str:
    """For the Settings dialog: which Python and transport GIMP gives the plug-in."""
    from ..protocol.transport import pyzmq_available

    return (f"Python {sys.version.split()[0]}, transport: "
            f"{'pyzmq' if pyzmq_available() else 'pure-Python ZMTP (no pyzmq here)'}")
