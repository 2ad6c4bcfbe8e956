"""Starting the local daemon the way ``impasto serve`` would, without importing torch here.

:func:`impasto.backend.cli.spawn_daemon` does the same, but finding the log
folder there imports the engine (and so torch) into the caller; the canvas
must open in a second, so it repeats the few lines instead.  The daemon is
started detached (its own session, no inherited terminal): it keeps serving
Krita and GIMP after the canvas closes, and a crash of the canvas cannot
take it down.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional


def impasto_home() -> Path:
    """Same rule as :func:`impasto.backend.engine.models.impasto_home`."""
    env = os.environ.get("IMPASTO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".impasto"


def daemon_log_path() -> Path:
    return impasto_home() / "logs" / "daemon.log"


def spawn_daemon(endpoint: str, models_dir: Optional[str] = None) -> subprocess.Popen:
    """Start ``impasto serve`` on ``endpoint`` detached, logging to IMPASTO_HOME/logs/daemon.log."""
    log_path = daemon_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", endpoint]
    if models_dir:
        cmd += ["--models-dir", str(models_dir)]
    with open(log_path, "ab") as log:
        kwargs = {}
        if os.name == "nt":  # pragma: no cover - Windows
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
        else:
            kwargs["start_new_session"] = True
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                close_fds=True, **kwargs)
