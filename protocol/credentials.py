"""The credentials that let only the artist's own programs drive the daemon.

Why: any local user (and, on a bound network address, anyone) can reach the
daemon's TCP port, and the daemon runs jobs, writes the concept library and
can be shut down.  So every connection authenticates with a ZeroMQ security
mechanism that the daemon enforces in its ZAP handler:

* **loopback (PLAIN)** - on first start the daemon creates a random secret in
  ``IMPASTO_HOME/daemon.secret`` (owner-only, 0600, created atomically; on
  Windows the file inherits the user profile's ACL).  Every client reads it
  from the same ``IMPASTO_HOME`` it takes the endpoint from and presents it as
  the PLAIN password.  A user who cannot read the artist's home cannot drive
  the daemon.  PLAIN sends the secret in clear, so it is only used where
  nobody can sniff: on loopback.
* **remote (CURVE)** - a daemon bound to anything but loopback requires
  CurveZMQ: the server keypair lives in ``IMPASTO_HOME/curve/``, client public
  keys allowed to connect in ``IMPASTO_HOME/curve/clients/*.key``.  A pyzmq
  client uses its own keypair (``IMPASTO_HOME/curve/client.key[_secret]``) and
  the server's public key (``IMPASTO_CURVE_SERVER_KEY`` or
  ``IMPASTO_HOME/curve/server.pub``).

Standard library only: this file is copied into Krita's and GIMP's Python.
Key *generation* for CURVE needs pyzmq and lives with the daemon/CLI.

``IMPASTO_SECRET_FILE`` overrides where the secret lives (both sides); the
test suite uses it so that many daemons with their own homes share one
secret with the test process.
"""
from __future__ import annotations

import ipaddress
import os
import re
import secrets as _secrets
from pathlib import Path
from typing import Optional, Tuple

from .messages import ErrorCode, ProtocolError

SECRET_NAME = "daemon.secret"
PLAIN_USER = b"impasto"
CURVE_DIR = "curve"
_SECRET_RE = re.compile(r"[0-9a-f]{64}")
_Z85_RE = re.compile(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


class CredentialError(ProtocolError):
    """A credential is missing or unusable; the message says what to do."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.UNAUTHORIZED, message)


def impasto_home(home: Optional[os.PathLike] = None) -> Path:
    """``home``, else ``$IMPASTO_HOME``, else ``~/.impasto`` (same rule as the launcher)."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("IMPASTO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".impasto"


def secret_path(home: Optional[os.PathLike] = None) -> Path:
    env = os.environ.get("IMPASTO_SECRET_FILE")
    if env and home is None:
        return Path(env).expanduser()
    return impasto_home(home) / SECRET_NAME


# --------------------------------------------------------------------------- the loopback secret


def read_secret(home: Optional[os.PathLike] = None) -> Optional[bytes]:
    """The daemon's secret as bytes, or None when there is none (yet) or it is unreadable.

    Clients call this on every connection attempt: a launcher may start the
    daemon (which creates the secret) after the client was made.
    """
    try:
        text = secret_path(home).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return text.encode("ascii") if _SECRET_RE.fullmatch(text) else None


def ensure_secret(home: Optional[os.PathLike] = None) -> bytes:
    """Daemon side: the secret, created on first start (atomically, owner-only).

    Creation writes a private temporary file and hard-links it into place, so
    two daemons starting together agree on one secret and no reader ever sees
    a half-written file.  An existing file readable by others is tightened to
    0600 (the daemon refuses to serve with a secret it cannot trust).
    """
    path = secret_path(home)
    existing = read_secret(home)
    if existing is not None:
        _tighten(path)
        return existing
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = _secrets.token_hex(32).encode("ascii")
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(6)}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(value + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(str(tmp), str(path))  # atomic, and fails if another daemon won the race
        except FileExistsError:
            pass
        except OSError:  # no hard links (some Windows/FAT setups): rename, still atomic
            if not path.exists():
                os.replace(str(tmp), str(path))
    finally:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
    value = read_secret(home)
    if value is None:
        raise CredentialError(f"could not create the daemon secret at {path}")
    _tighten(path)
    return value


def _tighten(path: Path) -> None:
    if os.name != "posix":
        return  # Windows: the file inherits the user profile's ACL
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(str(path), 0o600)
    except OSError:
        pass


# --------------------------------------------------------------------------- where security is needed


def endpoint_host(endpoint: str) -> str:
    m = re.match(r"^tcp://(?:\[([^\]]+)\]|([^:/\[\]]+)):\d+$", endpoint.strip())
    if not m:
        return ""
    return m.group(1) or m.group(2)


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.x.x.x:P``, ``tcp://[::1]:P`` and ``tcp://localhost:P``."""
    host = endpoint_host(endpoint)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_mechanism(endpoint: str) -> str:
    """``"plain"`` on loopback, ``"curve"`` elsewhere (``IMPASTO_SECURITY=curve`` forces CURVE)."""
    if os.environ.get("IMPASTO_SECURITY", "").lower() == "curve":
        return "curve"
    return "plain" if is_loopback(endpoint) else "curve"


# --------------------------------------------------------------------------- CURVE key files


def curve_dir(home: Optional[os.PathLike] = None) -> Path:
    return impasto_home(home) / CURVE_DIR


def read_key(path: Path) -> Optional[bytes]:
    """A Z85 key (40 characters) from a one-line file, or None."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return text.encode("ascii") if _Z85_RE.fullmatch(text) else None


def check_key(text: str) -> bytes:
    text = text.strip()
    if not _Z85_RE.fullmatch(text):
        raise CredentialError(f"{text!r} is not a CURVE public key (40 Z85 characters)")
    return text.encode("ascii")


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a small file atomically with ``mode`` (keys, the trusted server key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(6)}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise


def client_curve_keys(home: Optional[os.PathLike] = None) -> Tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a CURVE client; CredentialError saying how otherwise."""
    d = curve_dir(home)
    public, secret = read_key(d / "client.key"), read_key(d / "client.key_secret")
    server = None
    env = os.environ.get("IMPASTO_CURVE_SERVER_KEY", "")
    if env:
        server = check_key(env)
    else:
        server = read_key(d / "server.pub")
    if public is None or secret is None:
        raise CredentialError(
            "this machine has no CURVE client key: run `impasto curve client-key` here and give the "
            "printed public key to the GPU box (`impasto curve allow NAME KEY` there)")
    if server is None:
        raise CredentialError(
            "the daemon's CURVE public key is unknown: run `impasto curve show` on the GPU box and "
            "`impasto curve trust KEY` here (or set IMPASTO_CURVE_SERVER_KEY)")
    return public, secret, server
