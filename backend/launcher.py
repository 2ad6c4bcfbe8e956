"""Where Impasto keeps user data, and how a client starts the local daemon.

Standard library only: the CLI and the desktop canvas import this without
pulling torch in (a client must open in a second, not after the engine loads).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional


def impasto_home() -> Path:
    """``$IMPASTO_HOME`` or ``~/.impasto``: concepts, settings, logs."""
    env = os.environ.get("IMPASTO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".impasto"


def default_models_dir() -> Path:
    """``$IMPASTO_MODELS_DIR`` or ``$IMPASTO_HOME/models``."""
    env = os.environ.get("IMPASTO_MODELS_DIR")
    return Path(env).expanduser() if env else impasto_home() / "models"


def daemon_log_path() -> Path:
    return impasto_home() / "logs" / "daemon.log"


def spawn_daemon(endpoint: str, models_dir: Optional[str] = None) -> subprocess.Popen:
    """Start ``impasto serve`` on ``endpoint`` detached, logging to IMPASTO_HOME/logs/daemon.log.

    Detached (its own session, no inherited terminal): the daemon keeps
    serving Krita and GIMP after the client that started it exits, and a crash
    of that client cannot take it down.
    """
    log_path = daemon_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", endpoint]
    if models_dir:
        cmd += ["--models-dir", str(models_dir)]
    kwargs = {}
    if os.name == "nt":  # pragma: no cover - Windows
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                close_fds=True, **kwargs)
