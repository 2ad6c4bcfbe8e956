"""Starting the local daemon from Krita, detached so it outlives a Krita crash or restart.

The daemon holds the model in memory; keeping it running when Krita closes
means the next session starts painting in seconds instead of reloading.  Its
output goes to a log file whose tail is shown in the docker if it fails to
start.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional


def log_path(env_extra: Optional[Dict[str, str]] = None) -> Path:
    """``$IMPASTO_HOME/logs`` of the daemon being started (else a temp folder)."""
    base = (env_extra or {}).get("IMPASTO_HOME") or os.environ.get("IMPASTO_HOME")
    folder = Path(base) / "logs" if base else Path(tempfile.gettempdir()) / "impasto-krita"
    return folder / "daemon-from-krita.log"


def serve_argv(command: List[str], endpoint: str, models_dir: str = "") -> List[str]:
    argv = list(command) + ["serve", "--endpoint", endpoint]
    if models_dir:
        argv += ["--models-dir", models_dir]
    return argv


def spawn_detached(argv: List[str], log: Optional[Path] = None,
                   env_extra: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Run ``argv`` in its own session / process group with no console; output to ``log``."""
    log = log or log_path(env_extra)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")
    kwargs = dict(stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True)
    if os.name == "nt":
        flags = 0
        for name in ("DETACHED_PROCESS", "CREATE_NEW_PROCESS_GROUP", "CREATE_NO_WINDOW"):
            flags |= getattr(subprocess, name, 0)
        kwargs["creationflags"] = flags
    else:
        kwargs["start_new_session"] = True
    env = dict(os.environ)
    # Krita's own Python must not leak into the daemon's interpreter.
    for var in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(env_extra or {})
    try:
        return subprocess.Popen(argv, env=env, **kwargs)  # type: ignore[arg-type]
    finally:
        out.close()


def log_tail(log: Optional[Path] = None, lines: int = 6) -> str:
    try:
        text = (log or log_path()).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])

