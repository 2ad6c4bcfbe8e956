"""Reach the local daemon: connect, or start one detached and wait until it answers.

Written once for every front end (the CLI, the canvas, Krita and GIMP each
had a copy: one logged, one threw the output away, one stripped PYTHONPATH).
The one behaviour:

* the daemon runs detached (its own session / process group, no console), so
  it keeps serving after the client that started it exits or crashes;
* its output goes to ``IMPASTO_HOME/logs/daemon.log`` (``IMPASTO_HOME`` from
  the extra environment the host recorded at install, else ours, else
  ``~/.impasto``), and the log's tail is in the error when it dies at start;
* it inherits our environment minus ``PYTHONHOME``/``PYTHONPATH`` - a host's
  own Python (Krita's, GIMP's) must not leak into the daemon's interpreter -
  except when the daemon runs on this very interpreter, whose path we share;
* :func:`connect` pings, spawns when allowed, waits (up to ``timeout``) and
  says hello, so the caller gets a :class:`~.client.Client` whose daemon
  speaks our protocol version, or a :class:`DaemonUnavailable` sentence.

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .client import Client
from .messages import ErrorCode, ProtocolError
from .transport import default_endpoint

START_HINT = "start it with `impasto serve`"


class DaemonUnavailable(ProtocolError):
    """No daemon answers, and none could be started (``message`` says what was tried)."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.UNAVAILABLE, message)


def impasto_home(env_extra: Optional[Dict[str, str]] = None) -> Path:
    """``IMPASTO_HOME`` (the host's recorded value first) or ``~/.impasto``: concepts, settings, logs."""
    value = (env_extra or {}).get("IMPASTO_HOME") or os.environ.get("IMPASTO_HOME")
    return Path(value).expanduser() if value else Path.home() / ".impasto"


def daemon_log_path(env_extra: Optional[Dict[str, str]] = None) -> Path:
    return impasto_home(env_extra) / "logs" / "daemon.log"


def own_command() -> List[str]:
    """The daemon command of this interpreter (the CLI and the canvas run where the daemon is installed)."""
    return [sys.executable, "-m", "impasto.backend.cli"]


def serve_argv(command: Sequence[str], endpoint: str, models_dir: str = "") -> List[str]:
    """``command`` (``impasto`` or ``python -m impasto.backend.cli``; may already end in ``serve``) + serve args."""
    argv = list(command)
    if "serve" not in argv:
        argv.append("serve")
    if "--endpoint" not in argv:
        argv += ["--endpoint", endpoint]
    if models_dir and "--models-dir" not in argv:
        argv += ["--models-dir", str(models_dir)]
    return argv


def spawn_daemon(argv: Sequence[str], env_extra: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start ``argv`` detached, output appended to :func:`daemon_log_path`; raises DaemonUnavailable."""
    log = daemon_log_path(env_extra)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not argv or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        for var in ("PYTHONPATH", "PYTHONHOME"):
            env.pop(var, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(env_extra or {})
    kwargs: dict = dict(stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, close_fds=True, env=env)
    if os.name == "nt":  # pragma: no cover - Windows
        flags = 0
        for name in ("DETACHED_PROCESS", "CREATE_NEW_PROCESS_GROUP", "CREATE_NO_WINDOW"):
            flags |= getattr(subprocess, name, 0)
        kwargs["creationflags"] = flags
    else:
        kwargs["start_new_session"] = True
    try:
        with open(log, "ab") as out:
            out.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            out.flush()
            return subprocess.Popen(list(argv), stdout=out, **kwargs)
    except OSError as exc:
        raise DaemonUnavailable(f"cannot start the Impasto daemon with {' '.join(argv)!r}: "
                                f"{exc.strerror or exc}") from None


def log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_until_answering(client: Client, proc: subprocess.Popen, timeout: float,
                         env_extra: Optional[Dict[str, str]] = None,
                         stop: Callable[[], bool] = lambda: False) -> None:
    """Ping until the started daemon answers; DaemonUnavailable (with its log's tail) when it dies or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop():
        if proc.poll() is not None:
            log = daemon_log_path(env_extra)
            tail = log_tail(log)
            raise DaemonUnavailable(f"the Impasto daemon exited at start (code {proc.returncode}); log: {log}"
                                    + (f"\n{tail}" if tail else ""))
        if client.ping(timeout=1.0):
            return
    raise DaemonUnavailable(f"the Impasto daemon did not answer within {timeout:g} s at {client.endpoint}; "
                            f"log: {daemon_log_path(env_extra)}")


def connect(endpoint: Optional[str] = None, command: Union[None, Sequence[str], Callable[[], Sequence[str]]] = None,
            *, models_dir: str = "",
            env_extra: Optional[Dict[str, str]] = None, timeout: float = 180.0, ping_timeout: float = 1.5,
            hello_timeout: float = 90.0, status: Callable[[str], None] = lambda text: None,
            name: str = "impasto-client", transport: Optional[str] = None, hint: str = START_HINT) -> Client:
    """A :class:`Client` whose daemon answers and speaks our protocol version.

    ``command`` None: never start a daemon (``hint`` says how the artist can); a
    callable is asked for the command only when a daemon must be started.
    The process this call started, if any, is ``client.spawned``.
    """
    endpoint = endpoint or default_endpoint()
    status(f"connecting to the Impasto daemon at {endpoint}")
    client = Client(endpoint, transport=transport, name=name)
    client.spawned = None  # type: ignore[attr-defined]
    try:
        if not client.ping(timeout=ping_timeout):
            if command is None:
                raise DaemonUnavailable(f"no Impasto daemon answers at {endpoint}: {hint}")
            argv = serve_argv(command() if callable(command) else command, endpoint, models_dir)
            status(f"starting the Impasto daemon (log: {daemon_log_path(env_extra)})")
            proc = client.spawned = spawn_daemon(argv, env_extra)  # type: ignore[attr-defined]
            wait_until_answering(client, proc, timeout, env_extra)
            status("the Impasto daemon is loading its model")
        try:
            client.hello(timeout=hello_timeout)
        except TimeoutError:
            raise DaemonUnavailable(f"the Impasto daemon at {endpoint} did not say hello within "
                                    f"{hello_timeout:g} s") from None
        return client
    except BaseException:
        client.close()
        raise


def models_dir_note(asked: str, daemon_dir: str) -> str:
    """A sentence when the daemon that answered uses another models folder than the artist asked for ("" if not).

    A models folder only reaches a daemon the client starts; one already
    running keeps its own, and saying nothing made ``--models-dir`` look ignored.
    """
    if not asked or not daemon_dir:
        return ""
    try:
        same = os.path.realpath(os.path.expanduser(asked)) == os.path.realpath(daemon_dir)
    except (OSError, ValueError):
        same = False
    if same:
        return ""
    return (f"the Impasto daemon already running uses the models folder {daemon_dir}, not {asked}: "
            f"stop it (impasto stop) to start one with yours")
