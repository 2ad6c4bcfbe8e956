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

    def __init__(self, endpoint: str, identity: Optional[bytes] = None):
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        if identity:
            self._sock.setsockopt(zmq.IDENTITY, identity)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self._sock.connect(endpoint)
        self._outbox: collections.deque = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, zmq.POLLIN)
        self._closed = False
        self._lock = threading.Lock()
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._connected = False

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
            self._flush()
            if deadline is None:
                wait_ms = None
            else:
                wait_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            try:
                events = dict(self._poller.poll(wait_ms))
            except zmq.ZMQError:
                return None
            if self._sock in events:
                return self._sock.recv_multipart(copy=True)
            if self._wake_fd in events:  # raw sockets come back from zmq's poller as file descriptors
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if self._monitor in events:
                self._read_monitor()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        zmq = self._zmq
        while True:
            try:
                evt = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if evt["event"] == zmq.EVENT_CONNECTED:
                self._connected = True
            elif evt["event"] == zmq.EVENT_DISCONNECTED:
                self._connected = False

    def _flush(self) -> None:
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
        try:
            self._flush()
            self._sock.setsockopt(self._zmq.LINGER, 1000)
        except Exception:
            pass
        try:
            self._sock.disable_monitor()
        except Exception:
            pass
        self._monitor.close(0)
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()


def open_dealer(endpoint: str, identity: Optional[bytes] = None, transport: str = "auto"):
    """Pick a transport: ``"pyzmq"``, ``"zmtp"`` (pure Python) or ``"auto"``."""
    if transport not in ("auto", "pyzmq", "zmtp"):
        raise ValueError(f"unknown transport {transport!r}")
    if transport == "pyzmq" or (transport == "auto" and pyzmq_available()):
        return PyzmqDealer(endpoint, identity)
    from .zmtp import ZmtpDealer

    return ZmtpDealer(endpoint, identity)
