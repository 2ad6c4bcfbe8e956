"""Pure-Python ZMTP 3.x DEALER (standard library only).

Krita's and GIMP's embedded Pythons on Windows cannot load pyzmq, so the shared
client library falls back to this module: a DEALER socket speaking the ZeroMQ
wire protocol (RFC 23/ZMTP 3.0 and 37/ZMTP 3.1) over TCP to the daemon's
libzmq ROUTER, with the NULL or the PLAIN security mechanism (RFC 24: HELLO,
WELCOME, INITIATE, READY) - the daemon only accepts PLAIN carrying its secret.

Design
------
* One background I/O thread per dealer owns the connection life cycle: it
  connects (with exponential backoff, never raising to the caller because the
  peer is down), performs the greeting / READY handshake, flushes messages
  queued while disconnected, then reads frames and hands complete multipart
  messages to :meth:`ZmtpDealer.recv_multipart` through an in-memory inbox.
* :meth:`ZmtpDealer.send_multipart` writes directly on the socket from the
  calling thread, under a lock, so a message is always written whole and
  contiguous on one connection.  Large frames are sent straight from the
  caller's buffer (``memoryview``); small frames are coalesced into a single
  ``send``.
* Large incoming frames are received with ``recv_into`` into one preallocated
  buffer of the declared size (bounded by ``max_frame_size``).
* Nothing polls: every wait is a blocking ``select``/``poll`` (through
  :mod:`selectors`) that also watches a wake-up socketpair, a condition
  variable, or an event.  :meth:`ZmtpDealer.close` wakes every one of them.

This file is copied verbatim into the Krita and GIMP plugins: it must only use
the standard library and stay compatible with Python 3.10.

Over 500 lines on purpose: a ZMTP peer is one state machine (greeting, handshake for
NULL and PLAIN, framing, heartbeats, reconnects) that reads best in one place; it is
standard library only, so nothing of pyzmq's can stand in for any part of it.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import selectors
import socket
import struct
import threading
import time

__all__ = ["ZmtpError", "ZmtpDealer"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Wire constants
# --------------------------------------------------------------------------

_FLAG_MORE = 0x01
_FLAG_LONG = 0x02
_FLAG_COMMAND = 0x04
_FLAG_RESERVED = 0xF8

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_VERSION_MAJOR = 3
_VERSION_MINOR = 1
_MECHANISM_NULL = b"NULL"
_MECHANISM_PLAIN = b"PLAIN"


def _greeting(mechanism: bytes) -> bytes:
    return (
        _SIGNATURE
        + bytes((_VERSION_MAJOR, _VERSION_MINOR))
        + mechanism.ljust(20, b"\x00")
        + b"\x00"  # as-server: we are always the client
        + b"\x00" * 31
    )


_GREETING = _greeting(_MECHANISM_NULL)
assert len(_GREETING) == 64

#: Socket types a DEALER may talk to (same table as libzmq / RFC 28).
_COMPATIBLE_PEERS = frozenset((b"ROUTER", b"DEALER", b"REP"))

_LONG_HEADER = struct.Struct(">BQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

#: Frames smaller than this are copied into one coalesced send buffer; larger
#: ones are sent straight from the caller's memory.
_COPY_THRESHOLD = 32 * 1024
#: Flush the coalescing buffer once it grows past this.
_BATCH_BYTES = 256 * 1024
#: Size of the receive buffer used for headers and small frames.  Bodies larger
#: than this are received directly into their own preallocated buffer.
_RBUF_SIZE = 256 * 1024
#: Handshake commands (READY / ERROR) bigger than this are rejected.
_MAX_HANDSHAKE_COMMAND = 64 * 1024
#: Poll period used only while a PING/PONG waits for the send lock.
_CTRL_RETRY = 0.05

_IN_PROGRESS = {
    0,
    errno.EINPROGRESS,
    errno.EWOULDBLOCK,
    errno.EAGAIN,
    errno.EALREADY,
    getattr(errno, "WSAEWOULDBLOCK", 10035),
    getattr(errno, "WSAEINPROGRESS", 10036),
    getattr(errno, "WSAEALREADY", 10037),
}

_ENDPOINT_RE = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d{1,5})$")


class ZmtpError(Exception):
    """Protocol or usage error of the pure-Python ZMTP dealer."""


class _Closed(Exception):
    """Internal: the dealer was closed while the I/O thread waited."""


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    if not isinstance(endpoint, str):
        raise TypeError("endpoint must be a str like 'tcp://127.0.0.1:5555'")
    m = _ENDPOINT_RE.match(endpoint.strip())
    if not m:
        raise ValueError(
            f"unsupported endpoint {endpoint!r}: expected 'tcp://HOST:PORT' (HOST may be [IPv6])"
        )
    host = m.group("v6") or m.group("host")
    port = int(m.group("port"))
    if host == "*" or not 0 < port < 65536:
        raise ValueError(f"cannot connect to endpoint {endpoint!r}")
    return host, port


def _as_views(frames) -> list[memoryview]:
    """Validate a multipart message and return flat byte views of its frames."""
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise TypeError("send_multipart() takes a list of frames, not a single buffer")
    views = []
    for frame in frames:
        if isinstance(frame, str):
            raise TypeError("frames must be bytes-like, not str (encode it first)")
        view = memoryview(frame)
        if not view.c_contiguous:
            raise ValueError("frames must be C-contiguous buffers")
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        views.append(view)
    if not views:
        raise ValueError("cannot send an empty multipart message (at least one frame)")
    return views


def _freeze(views: list[memoryview]) -> list[memoryview]:
    """Snapshot frames that the caller could still mutate (used when queueing)."""
    out = []
    for view in views:
        if isinstance(view.obj, bytes):
            out.append(view)
        else:
            out.append(memoryview(view.tobytes()))
    return out


def _send_fully(sock: socket.socket, data) -> tuple[bool, int]:
    """Write all of ``data``; return (ok, bytes handed to the kernel)."""
    with memoryview(data) as view:
        total = view.nbytes
        off = 0
        try:
            while off < total:
                off += sock.send(view[off:] if off else view)
        except OSError:
            return False, off
        return True, off


def _command(name: bytes, data: bytes = b"") -> bytes:
    body = bytes((len(name),)) + name + data
    if len(body) < 256:
        return bytes((_FLAG_COMMAND, len(body))) + body
    return _LONG_HEADER.pack(_FLAG_COMMAND | _FLAG_LONG, len(body)) + body


def _encode_properties(props: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for name, value in props:
        out.append(len(name))
        out += name
        out += _U32.pack(len(value))
        out += value
    return bytes(out)


def _parse_properties(data: bytes) -> dict[str, bytes]:
    props: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        nlen = data[pos]
        pos += 1
        if nlen == 0 or pos + nlen + 4 > end:
            raise ZmtpError("malformed metadata in READY command")
        name = data[pos:pos + nlen].decode("ascii", "replace")
        pos += nlen
        (vlen,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + vlen > end:
            raise ZmtpError("malformed metadata in READY command")
        props[name] = bytes(data[pos:pos + vlen])
        pos += vlen
    return props


def _split_command(body: bytes) -> tuple[bytes, bytes]:
    if not body or 1 + body[0] > len(body):
        raise ZmtpError("malformed command frame")
    nlen = body[0]
    return bytes(body[1:1 + nlen]), body[1 + nlen:]


# --------------------------------------------------------------------------
# Frame reader (runs on the I/O thread only)
# --------------------------------------------------------------------------


class _Reader:
    def __init__(self, dealer: "ZmtpDealer", sock: socket.socket):
        self._dealer = dealer
        self._sock = sock
        self._buf = bytearray(_RBUF_SIZE)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def release(self) -> None:
        self._view.release()

    def _fill(self, deadline: float | None) -> None:
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end > _RBUF_SIZE - 4096:
            n = self._end - self._start
            self._buf[:n] = self._view[self._start:self._end]
            self._start, self._end = 0, n
        self._dealer._wait_readable(self._sock, deadline)
        n = self._sock.recv_into(self._view[self._end:])
        if n == 0:
            raise ConnectionError("connection closed by peer")
        self._end += n
        self._dealer._last_rx = time.monotonic()

    def take(self, n: int, deadline: float | None = None) -> bytes:
        """Return exactly ``n`` bytes (``n`` <= receive-buffer size)."""
        while self._end - self._start < n:
            self._fill(deadline)
        start = self._start
        self._start = start + n
        return bytes(self._view[start:start + n])

    def take_body(self, n: int, deadline: float | None = None) -> bytes:
        if n <= _RBUF_SIZE:
            return self.take(n, deadline)
        # Large frame: receive straight into a buffer of the declared size.
        out = bytearray(n)
        with memoryview(out) as ov:
            have = self._end - self._start
            ov[:have] = self._view[self._start:self._end]
            self._start = self._end = 0
            sock = self._sock
            dealer = self._dealer
            while have < n:
                dealer._wait_readable(sock, deadline)
                got = sock.recv_into(ov[have:])
                if got == 0:
                    raise ConnectionError("connection closed by peer in the middle of a frame")
                have += got
                dealer._last_rx = time.monotonic()
        return bytes(out)

    def read_frame(self, max_size: int, deadline: float | None = None) -> tuple[int, bytes]:
        head = self.take(2, deadline)
        flags = head[0]
        if flags & _FLAG_RESERVED:
            raise ZmtpError(f"malformed frame header (flags 0x{flags:02x})")
        if flags & _FLAG_LONG:
            (size,) = _U64.unpack(head[1:] + self.take(7, deadline))
        else:
            size = head[1]
        if size > max_size:
            raise ZmtpError(f"peer declared a {size}-byte frame, over the {max_size}-byte limit")
        return flags, self.take_body(size, deadline)


# --------------------------------------------------------------------------
# The dealer
# --------------------------------------------------------------------------


class ZmtpDealer:
    """A ZeroMQ DEALER socket implemented in pure Python (ZMTP 3.1, NULL, TCP).

    Parameters beyond the libzmq-like basics:

    ``max_frame_size``
        Largest frame (bytes) accepted from the peer; a bigger declaration is a
        protocol error and drops the connection (then it reconnects).
    ``recv_hwm``
        Messages buffered for :meth:`recv_multipart` before the I/O thread
        stops reading the socket (libzmq's RCVHWM; the ROUTER then applies its
        own high-water mark, i.e. drops).
    ``heartbeat_interval`` / ``heartbeat_timeout``
        Optional ZMTP 3.1 heartbeats: send a PING every interval and drop the
        connection (then reconnect) when nothing at all was received for the
        timeout (default: three intervals).  Off by default, like libzmq.
        Incoming PINGs are always answered with PONG.
    ``plain``
        ``None`` for the NULL mechanism, else a callable returning
        ``(username, password)`` bytes - or None while there are no
        credentials yet (the attempt then fails and is retried with backoff).
        It is called on every connection attempt, so a secret created after
        this dealer (a freshly started daemon's) is picked up.
    """

    def __init__(
        self,
        endpoint: str,
        identity: bytes | None = None,
        *,
        reconnect_interval: float = 0.1,
        reconnect_interval_max: float = 2.0,
        connect_timeout: float = 5.0,
        max_queued: int = 1000,
        max_frame_size: int = 1 << 30,
        recv_hwm: int = 1000,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        plain=None,
    ):
        self._host, self._port = _parse_endpoint(endpoint)
        self._endpoint = endpoint
        if identity is not None:
            if isinstance(identity, (str, int)):
                raise TypeError("identity must be bytes")
            identity = bytes(identity)
            if not 1 <= len(identity) <= 255:
                raise ValueError("identity must be 1..255 bytes")
        self._identity = identity
        if reconnect_interval <= 0 or reconnect_interval_max < reconnect_interval:
            raise ValueError("need 0 < reconnect_interval <= reconnect_interval_max")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be > 0")
        if max_queued < 0 or recv_hwm < 1 or max_frame_size < 0:
            raise ValueError("max_queued >= 0, recv_hwm >= 1 and max_frame_size >= 0 required")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be > 0")
        self._reconnect_interval = float(reconnect_interval)
        self._reconnect_interval_max = float(reconnect_interval_max)
        self._connect_timeout = float(connect_timeout)
        self._max_queued = int(max_queued)
        self._max_frame_size = int(max_frame_size)
        self._recv_hwm = int(recv_hwm)
        self._hb_interval = heartbeat_interval
        if heartbeat_interval is not None and heartbeat_timeout is None:
            heartbeat_timeout = 3 * heartbeat_interval
        self._hb_timeout = heartbeat_timeout
        self._plain = plain

        # Send side: everything below is guarded by _send_lock.
        self._send_lock = threading.Lock()
        self._pending: collections.deque[list[memoryview]] = collections.deque()
        self._sock: socket.socket | None = None
        self._connected = False
        # PING/PONG frames waiting for the send lock (appended by the I/O thread,
        # drained by whoever holds the lock).
        self._ctrl: collections.deque[bytes] = collections.deque()

        # Receive side.
        self._inbox: collections.deque[list[bytes]] = collections.deque()
        self._inbox_cond = threading.Condition(threading.Lock())

        self._closed = False
        self._closed_event = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        self._last_rx = 0.0
        self._next_ping = 0.0
        self._selector: selectors.BaseSelector | None = None
        self._last_error: str | None = None
        self._peer_properties: dict[str, bytes] = {}
        self._handshakes = 0

        self._thread = threading.Thread(
            target=self._run, name=f"zmtp-dealer {endpoint}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while a handshaken connection to the peer is up."""
        return self._connected and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def identity(self) -> bytes | None:
        return self._identity

    @property
    def last_error(self) -> str | None:
        """Description of the last connection / protocol failure, if any."""
        return self._last_error

    @property
    def peer_properties(self) -> dict[str, bytes]:
        """Metadata of the peer's READY command for the current/last session."""
        return dict(self._peer_properties)

    def send_multipart(self, frames: list[bytes | bytearray | memoryview]) -> None:
        """Send one multipart message (thread-safe).

        While disconnected the message is queued (a snapshot of the frames is
        taken) and sent after the next handshake; :class:`ZmtpError` when the
        queue already holds ``max_queued`` messages or the dealer is closed.
        """
        views = _as_views(frames)
        with self._send_lock:
            if self._closed:
                raise ZmtpError("dealer is closed")
            if self._connected:
                sock = self._sock
                if self._write_messages(sock, (views,)) == 1:
                    if self._ctrl:
                        self._drain_ctrl_locked()
                    return
                # The connection broke under us: the peer never got this message
                # whole, so it is queued again (whole) for the next connection.
                if self._closed:
                    raise ZmtpError("dealer is closed")
                self._break_locked(sock, "connection lost while sending")
            if len(self._pending) >= self._max_queued:
                raise ZmtpError(
                    f"not connected to {self._endpoint} and {len(self._pending)} messages already queued"
                )
            self._pending.append(_freeze(views))

    def recv_multipart(self, timeout: float | None = None) -> list[bytes] | None:
        """Return the next incoming multipart message, or None on timeout / close."""
        cond = self._inbox_cond
        with cond:
            if not self._inbox and not self._closed:
                if timeout is None:
                    while not self._inbox and not self._closed:
                        cond.wait()
                else:
                    deadline = time.monotonic() + max(0.0, timeout)
                    while not self._inbox and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        cond.wait(remaining)
            if self._closed or not self._inbox:
                return None
            was_full = len(self._inbox) >= self._recv_hwm
            msg = self._inbox.popleft()
            if was_full:
                cond.notify_all()
            return msg

    def close(self) -> None:
        """Close the dealer (idempotent).  Queued and unread messages are dropped."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        try:
            self._wake_w.send(b"\x00")
        except OSError:
            pass
        with self._inbox_cond:
            self._inbox_cond.notify_all()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks a sender stuck in send()
            except OSError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        with self._send_lock:
            self._pending.clear()
        with self._inbox_cond:
            self._inbox.clear()

    def __enter__(self) -> "ZmtpDealer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._connected else "disconnected")
        return f"<ZmtpDealer {self._endpoint} {state}>"

    # ------------------------------------------------------------- send side

    def _write_messages(self, sock: socket.socket, messages) -> int:
        """Write messages on ``sock``; return how many were handed whole to the kernel.

        Caller holds ``_send_lock``.  Small frames are coalesced; big ones are
        sent from the caller's buffer without copying.
        """
        buf = bytearray()
        ends: list[int] = []  # end offsets in buf of complete messages
        done = 0
        for msg in messages:
            last = len(msg) - 1
            for i, view in enumerate(msg):
                size = view.nbytes
                flags = _FLAG_MORE if i < last else 0
                if size < 256:
                    buf.append(flags)
                    buf.append(size)
                else:
                    buf += _LONG_HEADER.pack(flags | _FLAG_LONG, size)
                if size < _COPY_THRESHOLD:
                    buf += view
                    continue
                ok, sent = _send_fully(sock, buf)
                if not ok:
                    return done + sum(1 for e in ends if e <= sent)
                done += len(ends)
                ends.clear()
                buf.clear()
                ok, _ = _send_fully(sock, view)
                if not ok:
                    return done
            ends.append(len(buf))
            if len(buf) >= _BATCH_BYTES:
                ok, sent = _send_fully(sock, buf)
                if not ok:
                    return done + sum(1 for e in ends if e <= sent)
                done += len(ends)
                ends.clear()
                buf.clear()
        if buf:
            ok, sent = _send_fully(sock, buf)
            if not ok:
                return done + sum(1 for e in ends if e <= sent)
        return done + len(ends)

    def _break_locked(self, sock: socket.socket | None, reason: str) -> None:
        """Mark the session dead (caller holds _send_lock); the I/O thread cleans up."""
        if self._connected:
            log.debug("zmtp %s: %s", self._endpoint, reason)
            self._last_error = reason
        self._connected = False
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # makes the I/O thread's recv return
            except OSError:
                pass

    def _drain_ctrl_locked(self) -> None:
        sock = self._sock
        while self._ctrl:
            data = self._ctrl.popleft()
            if sock is None or not self._connected:
                continue
            ok, _ = _send_fully(sock, data)
            if not ok:
                self._break_locked(sock, "connection lost while sending a heartbeat")
                self._ctrl.clear()

    def _queue_ctrl(self, data: bytes) -> None:
        """Send a PING/PONG without ever blocking the I/O thread on the send lock."""
        self._ctrl.append(data)
        self._try_drain_ctrl()

    def _try_drain_ctrl(self) -> None:
        if self._ctrl and self._send_lock.acquire(blocking=False):
            try:
                self._drain_ctrl_locked()
            finally:
                self._send_lock.release()

    # --------------------------------------------------------------- I/O thread

    def _run(self) -> None:
        delay = self._reconnect_interval
        try:
            while not self._closed:
                established_before = self._handshakes
                try:
                    sock = self._connect()
                    if sock is not None:
                        self._session(sock)
                except _Closed:
                    break
                except (OSError, ZmtpError, ValueError, struct.error) as exc:
                    self._note_error(exc)
                except Exception:  # never let the I/O thread die silently
                    log.exception("zmtp %s: unexpected error in the I/O thread", self._endpoint)
                    self._last_error = "internal error (see log)"
                if self._closed:
                    break
                if self._handshakes != established_before:
                    delay = self._reconnect_interval  # had a good session: start over
                if self._closed_event.wait(delay):
                    break
                delay = min(delay * 2, self._reconnect_interval_max)
        finally:
            with self._send_lock:
                self._connected = False
                self._sock = None
            for s in (self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass

    def _note_error(self, exc: BaseException) -> None:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
            msg = f"{type(exc).__name__}: {msg}"
        first = msg != self._last_error
        self._last_error = msg
        level = logging.WARNING if isinstance(exc, ZmtpError) and first else logging.DEBUG
        log.log(level, "zmtp %s: %s", self._endpoint, msg)

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + self._connect_timeout
        infos = socket.getaddrinfo(self._host, self._port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if self._closed:
            raise _Closed
        last_exc: OSError | None = None
        for family, stype, proto, _name, addr in infos:
            sock = socket.socket(family, stype, proto)
            try:
                sock.setblocking(False)
                rc = sock.connect_ex(addr)
                if rc not in _IN_PROGRESS:
                    raise ConnectionError(rc, f"connect to {addr[0]}:{addr[1]} failed: {os.strerror(rc)}")
                if rc != 0:
                    with selectors.DefaultSelector() as sel:
                        sel.register(sock, selectors.EVENT_WRITE)
                        sel.register(self._wake_r, selectors.EVENT_READ)
                        remaining = max(0.0, deadline - time.monotonic())
                        events = sel.select(remaining)
                    if self._closed:
                        raise _Closed
                    if not events:
                        raise TimeoutError(f"connect to {addr[0]}:{addr[1]} timed out")
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise ConnectionError(err, f"connect to {addr[0]}:{addr[1]} failed: {os.strerror(err)}")
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                return sock
            except _Closed:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last_exc = exc
        if last_exc is not None:
            raise last_exc
        raise ConnectionError(f"no address for {self._host}:{self._port}")

    def _wait_readable(self, sock: socket.socket, deadline: float | None) -> None:
        """Block until ``sock`` is readable; service heartbeats; raise on close/timeout."""
        sel = self._selector
        while True:
            now = time.monotonic()
            timeout = None
            if deadline is not None:
                timeout = deadline - now
                if timeout <= 0:
                    raise TimeoutError("ZMTP handshake timed out")
            if self._hb_interval is not None and self._connected:
                if now >= self._next_ping:
                    self._queue_ctrl(_command(b"PING", _U16.pack(0)))
                    self._next_ping = now + self._hb_interval
                if self._hb_timeout is not None and now - self._last_rx >= self._hb_timeout:
                    raise TimeoutError(f"heartbeat timeout: nothing received for {self._hb_timeout:g} s")
                t = self._next_ping - now
                if self._hb_timeout is not None:
                    t = min(t, self._last_rx + self._hb_timeout - now)
                timeout = t if timeout is None else min(timeout, t)
            if self._ctrl:
                self._try_drain_ctrl()
                if self._ctrl:
                    timeout = _CTRL_RETRY if timeout is None else min(timeout, _CTRL_RETRY)
            events = sel.select(None if timeout is None else max(0.0, timeout))
            if self._closed:
                raise _Closed
            for key, _mask in events:
                if key.fileobj is sock:
                    return

    def _session(self, sock: socket.socket) -> None:
        with self._send_lock:
            if self._closed:
                sock.close()
                raise _Closed
            self._sock = sock  # published so close() can shut it down
        self._selector = sel = selectors.DefaultSelector()
        reader = _Reader(self, sock)
        try:
            sel.register(sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            self._handshake(sock, reader)
            with self._send_lock:
                if self._closed:
                    raise _Closed
                queued = list(self._pending)
                sent = self._write_messages(sock, queued) if queued else 0
                for _ in range(sent):
                    self._pending.popleft()
                if sent != len(queued):
                    raise ConnectionError("connection lost while flushing queued messages")
                self._connected = True
                self._last_rx = time.monotonic()
                self._next_ping = self._last_rx + (self._hb_interval or 0.0)
            self._handshakes += 1
            log.debug("zmtp %s: connected (%d queued messages flushed)", self._endpoint, sent)
            self._read_loop(reader)
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            with self._send_lock:
                self._connected = False
                if self._sock is sock:
                    self._sock = None
                self._ctrl.clear()
            reader.release()
            sel.close()
            sock.close()

    def _handshake(self, sock: socket.socket, reader: _Reader) -> None:
        deadline = time.monotonic() + self._connect_timeout
        creds = None
        if self._plain is not None:
            creds = self._plain()
            if creds is None:
                raise ZmtpError("no credentials for the PLAIN mechanism yet (the daemon's secret is missing)")
            user, password = bytes(creds[0]), bytes(creds[1])
            if len(user) > 255 or len(password) > 255:
                raise ZmtpError("PLAIN username and password must be at most 255 bytes")
        mine = _MECHANISM_NULL if creds is None else _MECHANISM_PLAIN
        ok, _ = _send_fully(sock, _greeting(mine))
        if not ok:
            raise ConnectionError("connection lost while sending the greeting")
        sig = reader.take(10, deadline)
        if sig[0] != 0xFF or not sig[9] & 0x01:
            raise ZmtpError(f"peer is not a ZMTP peer (bad greeting signature {sig!r})")
        major = reader.take(1, deadline)[0]
        if major < 3:
            raise ZmtpError(f"peer speaks ZMTP {major}.x; only ZMTP 3.x is supported")
        rest = reader.take(53, deadline)
        mechanism = rest[1:21].rstrip(b"\x00")
        if mechanism != mine:
            raise ZmtpError(
                f"peer wants security mechanism {mechanism.decode('ascii', 'replace')!r}; "
                f"this side offers {mine.decode()!r}"
            )
        if creds is not None:
            # RFC 24 PLAIN: HELLO(username, password) -> WELCOME, then INITIATE(metadata) -> READY.
            hello = bytes((len(user),)) + user + bytes((len(password),)) + password
            ok, _ = _send_fully(sock, _command(b"HELLO", hello))
            if not ok:
                raise ConnectionError("connection lost while sending HELLO")
            name, _data = self._read_command(reader, deadline)
            if name != b"WELCOME":
                raise ZmtpError(f"expected WELCOME from peer, got {name!r}")
        props = [(b"Socket-Type", b"DEALER"), (b"Identity", self._identity or b"")]
        ready = b"INITIATE" if creds is not None else b"READY"
        ok, _ = _send_fully(sock, _command(ready, _encode_properties(props)))
        if not ok:
            raise ConnectionError(f"connection lost while sending {ready.decode()}")
        name, data = self._read_command(reader, deadline)
        if name != b"READY":
            raise ZmtpError(f"expected READY from peer, got {name!r}")
        peer_props = _parse_properties(data)
        stype = peer_props.get("Socket-Type")
        if stype not in _COMPATIBLE_PEERS:
            raise ZmtpError(f"peer socket type {stype!r} is not compatible with DEALER")
        self._peer_properties = peer_props

    def _read_command(self, reader: _Reader, deadline: float) -> tuple[bytes, bytes]:
        flags, body = reader.read_frame(min(self._max_frame_size, _MAX_HANDSHAKE_COMMAND), deadline)
        if not flags & _FLAG_COMMAND or flags & _FLAG_MORE:
            raise ZmtpError("peer sent a message before completing the handshake")
        name, data = _split_command(body)
        if name == b"ERROR":
            raise ZmtpError(f"peer rejected the handshake: {self._error_reason(data)}")
        return name, data

    @staticmethod
    def _error_reason(data: bytes) -> str:
        if data and 1 + data[0] <= len(data):
            return bytes(data[1:1 + data[0]]).decode("utf-8", "replace")
        return bytes(data).decode("utf-8", "replace")

    def _read_loop(self, reader: _Reader) -> None:
        max_size = self._max_frame_size
        parts: list[bytes] = []
        while True:
            flags, body = reader.read_frame(max_size)
            if flags & _FLAG_COMMAND:
                if parts or flags & _FLAG_MORE:
                    raise ZmtpError("command frame inside a multipart message")
                self._handle_command(body)
                continue
            parts.append(body)
            if flags & _FLAG_MORE:
                continue
            self._deliver(parts)
            parts = []

    def _handle_command(self, body: bytes) -> None:
        name, data = _split_command(body)
        if name == b"PING":
            # PING: TTL (2 bytes) + context (0..16 bytes); PONG echoes the context.
            self._queue_ctrl(_command(b"PONG", bytes(data[2:18])))
        elif name == b"PONG":
            pass
        elif name == b"ERROR":
            raise ZmtpError(f"peer sent ERROR: {self._error_reason(data)}")
        else:
            log.debug("zmtp %s: ignoring %r command", self._endpoint, name)

    def _deliver(self, parts: list[bytes]) -> None:
        cond = self._inbox_cond
        with cond:
            blocked = False
            while len(self._inbox) >= self._recv_hwm and not self._closed:
                blocked = True
                cond.wait()
            if self._closed:
                raise _Closed
            self._inbox.append(parts)
            cond.notify_all()
        if blocked:
            self._last_rx = time.monotonic()  # we stopped reading, not the peer
