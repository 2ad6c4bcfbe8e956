"""The DEALER side of the wire: pyzmq when it imports, pure-Python ZMTP otherwise.

Both transports offer the same four calls, so :mod:`.client` never cares
which one it got:

* ``send_multipart(frames)`` - thread-safe, queues while disconnected;
* ``recv_multipart(timeout)`` - from one reader thread, ``None`` on timeout;
* ``connected`` and ``close()``.

pyzmq sockets are not thread-safe, so :class:`PyzmqDealer` lets only the
reader thread touch the socket: other threads queue outgoing messages and wake
the reader through a socket pair that sits in the same poll set.
"""
from __future__ import annotations

import collections
import os
import socket
import threading
import time
from typing import List, Optional

from . import credentials

DEFAULT_PORT = 7860 + 17
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"


def default_endpoint() -> str:
    return os.environ.get("IMPASTO_ENDPOINT") or DEFAULT_ENDPOINT


def pyzmq_available() -> bool:
    try:
        import zmq  # noqa: F401
    except Exception:  # ImportError, or a broken binary wheel inside a host application
        return False
    return True


class PyzmqDealer:
    """A libzmq DEALER driven from a single reader thread."""

    def __init__(self, endpoint: str, identity: Optional[bytes] = None, *, home=None,
                 secret: Optional[bytes] = None):
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._endpoint = endpoint
        self._identity = identity
        self._home = home
        self._secret_override = secret
        self._mechanism = credentials.client_mechanism(endpoint)
        self._curve = credentials.client_curve_keys(home) if self._mechanism == "curve" else None
        self._outbox: collections.deque = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = zmq.Poller()
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, zmq.POLLIN)
        self._closed = False
        self._lock = threading.Lock()
        self._connected = False
        self._sock = None
        self._monitor = None
        self._secret: Optional[bytes] = None
        self._next_check = 0.0
        self._open_socket()

    # A socket is opened only once the credentials exist: the daemon creates its secret on first
    # start, which may come after this client was made (a launcher pings while the daemon starts).
    # Until then messages wait in the outbox; a refused handshake re-reads the secret.

    def _open_socket(self) -> None:
        zmq = self._zmq
        if self._curve is None:
            secret = self._secret_override or credentials.read_secret(self._home)
            if secret is None:
                return
        sock = self._ctx.socket(zmq.DEALER)
        if self._identity:
            sock.setsockopt(zmq.IDENTITY, self._identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self._curve is not None:
            public, secret_key, server = self._curve
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret_key, server
        else:
            sock.plain_username = credentials.PLAIN_USER
            sock.plain_password = secret
            self._secret = secret
        sock.connect(self._endpoint)
        self._sock = sock
        self._poller.register(sock, zmq.POLLIN)
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        self._poller.register(self._monitor, zmq.POLLIN)

    def _close_socket(self, linger: Optional[int] = 0) -> None:
        """Close the socket and its monitor; ``linger=None`` keeps the socket's own LINGER option."""
        if self._sock is None:
            return
        for s in (self._sock, self._monitor):
            try:
                self._poller.unregister(s)
            except KeyError:
                pass
        try:
            self._sock.disable_monitor()
        except Exception:
            pass
        self._monitor.close(0)
        self._sock.close(linger)
        self._sock = self._monitor = None
        self._connected = False

    def _recheck_credentials(self) -> None:
        """No socket yet, or the daemon refused us: (re)open once the secret exists or changed."""
        now = time.monotonic()
        if now < self._next_check or self._curve is not None:
            return
        self._next_check = now + 0.1
        secret = self._secret_override or credentials.read_secret(self._home)
        if secret is None or (self._sock is not None and secret == self._secret):
            return
        self._close_socket()
        self._open_socket()

    @property
    def connected(self) -> bool:
        return self._connected

    def send_multipart(self, frames: List[bytes]) -> None:
        with self._lock:
            if self._closed:
                raise OSError("transport is closed")
            self._outbox.append(list(frames))
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the reader is already due to wake

    def recv_multipart(self, timeout: Optional[float] = None) -> Optional[List[bytes]]:
        zmq = self._zmq
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                return None
            if self._sock is None or self._auth_failed:
                self._recheck_credentials()
            self._flush()
            if deadline is None:
                wait_ms = None
            else:
                wait_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            if self._sock is None or self._auth_failed:
                wait_ms = 100 if wait_ms is None else min(wait_ms, 100)
            try:
                events = dict(self._poller.poll(wait_ms))
            except zmq.ZMQError:
                return None
            if self._sock is not None and self._sock in events:
                return self._sock.recv_multipart(copy=True)
            if self._wake_fd in events:  # raw sockets come back from zmq's poller as file descriptors
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if self._monitor is not None and self._monitor in events:
                self._read_monitor()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    _auth_failed = False

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        zmq = self._zmq
        while True:
            try:
                evt = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if evt["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
                self._auth_failed = False
            elif evt["event"] in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                self._connected = False
                self._auth_failed = True
            elif evt["event"] == zmq.EVENT_DISCONNECTED:
                self._connected = False

    def _flush(self) -> None:
        if self._sock is None:
            return  # no credentials yet: messages wait in the outbox
        while True:
            with self._lock:
                if not self._outbox:
                    return
                frames = self._outbox.popleft()
            self._sock.send_multipart(frames, copy=len(frames[-1]) < 65536)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _dispose(self) -> None:
        """Release the socket; called by the reader thread after it stops.

        Messages queued before close() (a last cancel, say) still go out:
        they are flushed and given a short linger, like libzmq's own.
        """
        if self._sock is not None:
            try:
                self._flush()
                self._sock.setsockopt(self._zmq.LINGER, 1000)
            except Exception:
                pass
            self._close_socket(linger=None)
        self._wake_r.close()
        self._wake_w.close()


def open_dealer(endpoint: str, identity: Optional[bytes] = None, transport: str = "auto", *,
                home=None, secret: Optional[bytes] = None):
    """Pick a transport: ``"pyzmq"``, ``"zmtp"`` (pure Python) or ``"auto"``.

    Both authenticate: PLAIN with the daemon's secret from ``home`` (default
    IMPASTO_HOME) on loopback, CURVE (pyzmq only) elsewhere.
    """
    if transport not in ("auto", "pyzmq", "zmtp"):
        raise ValueError(f"unknown transport {transport!r}")
    if transport == "pyzmq" or (transport == "auto" and pyzmq_available()):
        return PyzmqDealer(endpoint, identity, home=home, secret=secret)
    from .zmtp import ZmtpDealer

    if not credentials.is_loopback(endpoint):
        raise credentials.CredentialError(
            f"{endpoint} is not a loopback address and this Python has no pyzmq, so the connection could "
            "only go in clear: reach a remote daemon through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT "
            "gpu-box) and use tcp://127.0.0.1:PORT; see docs/security.md")

    def plain_credentials():
        secret_now = secret or credentials.read_secret(home)
        return None if secret_now is None else (credentials.PLAIN_USER, secret_now)

    return ZmtpDealer(endpoint, identity, plain=plain_credentials)
