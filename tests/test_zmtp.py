"""Tests of the pure-Python ZMTP DEALER against a real libzmq ROUTER (pyzmq)
and against scripted raw-socket peers (malformed / hostile / heartbeat cases).

Over 500 lines on purpose: the scripted raw-socket peers (malformed, hostile,
heartbeat cases) are shared by every test here.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

zmq = pytest.importorskip("zmq")

from impasto.protocol.zmtp import ZmtpDealer, ZmtpError  # noqa: E402

FAST = dict(reconnect_interval=0.02, reconnect_interval_max=0.2, connect_timeout=2.0)


# ---------------------------------------------------------------- helpers


def wait_for(pred, timeout=5.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Router:
    """A libzmq ROUTER in a thread.  Records [identity, *frames] of every
    message and the peer metadata; echoes [identity, *frames] back unless
    ``echo`` is False."""

    def __init__(self, port: int | None = None, echo: bool = True, host: str = "127.0.0.1", **opts):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        for k, v in opts.items():
            self.sock.setsockopt(getattr(zmq, k), v)
        if host == "::1":
            self.sock.setsockopt(zmq.IPV6, 1)
        addr = f"tcp://[{host}]" if ":" in host else f"tcp://{host}"
        if port is None:
            self.port = self.sock.bind_to_random_port(addr)
        else:
            self.port = port
            self.sock.bind(f"{addr}:{port}")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.echo = echo
        self.received: list[list[bytes]] = []
        self.meta: list[dict] = []
        self.outbox: list[list[bytes]] = []
        self._out_lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop:
            with self._out_lock:
                out, self.outbox = self.outbox, []
            for msg in out:
                self.sock.send_multipart(msg)
            if not poller.poll(20):
                continue
            frames = self.sock.recv_multipart(copy=False)
            msg = [f.bytes for f in frames]
            self.meta.append({k: frames[-1].get(k) for k in ("Socket-Type", "Identity")})
            self.received.append(msg)
            if self.echo:
                self.sock.send_multipart(frames, copy=False)

    def send(self, msg):
        with self._out_lock:
            self.outbox.append(msg)

    def close(self):
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def router():
    r = Router()
    yield r
    r.close()


@pytest.fixture
def dealers():
    made = []

    def make(endpoint, identity=None, **kw):
        opts = dict(FAST)
        opts.update(kw)
        d = ZmtpDealer(endpoint, identity, **opts)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


# --- raw-socket scripted peers ------------------------------------------------

GREETING_ROUTER = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes((3, 1)) + b"NULL".ljust(20, b"\x00") + b"\x00" * 32


def recv_exact(conn, n):
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


def read_frame(conn):
    flags = recv_exact(conn, 1)[0]
    if flags & 0x02:
        (size,) = struct.unpack(">Q", recv_exact(conn, 8))
    else:
        size = recv_exact(conn, 1)[0]
    return flags, recv_exact(conn, size)


def command(name: bytes, data: bytes = b"") -> bytes:
    body = bytes((len(name),)) + name + data
    if len(body) < 256:
        return bytes((0x04, len(body))) + body
    return struct.pack(">BQ", 0x06, len(body)) + body


def ready(socket_type=b"ROUTER"):
    props = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return command(b"READY", props)


def parse_props(data: bytes) -> dict:
    props, pos = {}, 0
    while pos < len(data):
        n = data[pos]
        name = data[pos + 1:pos + 1 + n].decode()
        pos += 1 + n
        (vlen,) = struct.unpack(">I", data[pos:pos + 4])
        props[name] = data[pos + 4:pos + 4 + vlen]
        pos += 4 + vlen
    return props


def fake_handshake(conn, socket_type=b"ROUTER"):
    """Server side of a NULL handshake; returns the dealer's READY properties."""
    conn.sendall(GREETING_ROUTER)
    greeting = recv_exact(conn, 64)
    assert greeting[0] == 0xFF and greeting[9] == 0x7F and greeting[10] == 3
    assert greeting[12:32].rstrip(b"\x00") == b"NULL"
    flags, body = read_frame(conn)
    assert flags == 0x04 and body[1:1 + body[0]] == b"READY"
    conn.sendall(ready(socket_type))
    return parse_props(body[1 + body[0]:])


class FakePeer:
    """TCP server running ``script(conn, index)`` for each accepted connection."""

    def __init__(self, script):
        self.script = script
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.srv.settimeout(0.1)
        self.endpoint = f"tcp://127.0.0.1:{self.srv.getsockname()[1]}"
        self.accepted = 0
        self.errors: list[BaseException] = []
        self.results: list = []
        self._conns = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            self._conns.append(conn)
            index = self.accepted
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn, index), daemon=True).start()

    def _run(self, conn, index):
        try:
            self.results.append(self.script(conn, index))
        except (ConnectionError, OSError):
            pass
        except BaseException as exc:  # assertion failures in the script
            self.errors.append(exc)

    def close(self):
        self._stop = True
        self.thread.join(timeout=5)
        self.srv.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def fake_peer():
    made = []

    def make(script):
        p = FakePeer(script)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# ------------------------------------------------------- against real libzmq


def test_multipart_round_trip(router, dealers):
    d = dealers(router.endpoint, b"client-1")
    msg = [b"hello", b"", b"world" * 100, b"\x00\xff"]
    d.send_multipart(msg)
    assert d.recv_multipart(timeout=5) == msg
    assert d.connected
    assert d.peer_properties["Socket-Type"] == b"ROUTER"
    assert router.received == [[b"client-1"] + msg]


def test_identity_routing_and_metadata(router, dealers):
    d = dealers(router.endpoint, b"krita-42")
    d.send_multipart([b"ping"])
    assert d.recv_multipart(timeout=5) == [b"ping"]
    assert router.received[0][0] == b"krita-42"
    assert router.meta[0] == {"Socket-Type": "DEALER", "Identity": "krita-42"}
    # Unsolicited message routed by identity from the ROUTER side.
    router.send([b"krita-42", b"progress", b"50%"])
    assert d.recv_multipart(timeout=5) == [b"progress", b"50%"]


def test_no_identity_gets_generated_routing_id(router, dealers):
    d = dealers(router.endpoint)
    d.send_multipart([b"x"])
    assert d.recv_multipart(timeout=5) == [b"x"]
    ident = router.received[0][0]
    assert len(ident) == 5 and ident[0] == 0  # libzmq auto-generated routing id


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 256 * 1024, 256 * 1024 + 1, 3_000_001])
def test_frame_sizes(router, dealers, size):
    d = dealers(router.endpoint, b"sizes")
    payload = bytes(i & 0xFF for i in range(min(size, 1024))) * (size // 1024 + 1)
    payload = payload[:size]
    d.send_multipart([payload])
    d.send_multipart([b"a", payload, b""])
    assert d.recv_multipart(timeout=10) == [payload]
    assert d.recv_multipart(timeout=10) == [b"a", payload, b""]


def test_empty_frames(router, dealers):
    d = dealers(router.endpoint, b"empty")
    for msg in ([b""], [b"", b""], [b"", b"x", b""]):
        d.send_multipart(msg)
        assert d.recv_multipart(timeout=5) == msg


def test_frame_over_64_mib(router, dealers):
    size = 64 * 1024 * 1024 + 1
    payload = bytearray(size)
    payload[0], payload[size // 2], payload[-1] = 1, 2, 3
    d = dealers(router.endpoint, b"big")
    t0 = time.perf_counter()
    d.send_multipart([b"hdr", memoryview(payload)])
    reply = d.recv_multipart(timeout=30)
    elapsed = time.perf_counter() - t0
    assert reply is not None and reply[0] == b"hdr"
    assert len(reply[1]) == size and reply[1] == payload
    assert isinstance(reply[1], bytes)
    assert elapsed < 15


def test_many_messages_in_flight(router, dealers):
    d = dealers(router.endpoint, b"flood")
    assert wait_for(lambda: d.connected)
    n = 2000
    for i in range(n):
        d.send_multipart([b"seq", str(i).encode(), b"x" * (i % 50)])
    got = [d.recv_multipart(timeout=10) for _ in range(n)]
    assert got == [[b"seq", str(i).encode(), b"x" * (i % 50)] for i in range(n)]


def test_send_from_many_threads(router, dealers):
    d = dealers(router.endpoint, b"threads")
    nthreads, per = 4, 200

    def worker(t):
        for i in range(per):
            d.send_multipart([bytes((t,)), i.to_bytes(4, "big"), bytes((t,)) * (100 + 1000 * (i % 7))])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    last = {t: -1 for t in range(nthreads)}
    for _ in range(nthreads * per):
        msg = d.recv_multipart(timeout=10)
        t, i = msg[0][0], int.from_bytes(msg[1], "big")
        assert msg[2] == bytes((t,)) * (100 + 1000 * (i % 7))
        assert i == last[t] + 1  # per-thread order preserved, messages whole
        last[t] = i


def test_messages_queued_before_connect_are_flushed_in_order(dealers):
    port = free_port()
    d = dealers(f"tcp://127.0.0.1:{port}", b"early")
    buf = bytearray(b"mutable")
    d.send_multipart([buf])
    buf[:] = b"CHANGED"  # the queued message is a snapshot
    for i in range(10):
        d.send_multipart([str(i).encode()])
    r = Router(port=port)
    try:
        got = [d.recv_multipart(timeout=5) for _ in range(11)]
        assert got == [[b"mutable"]] + [[str(i).encode()] for i in range(10)]
    finally:
        r.close()


def test_peer_restart(dealers):
    r1 = Router()
    port = r1.port
    d = dealers(r1.endpoint, b"survivor")
    d.send_multipart([b"before"])
    assert d.recv_multipart(timeout=5) == [b"before"]
    r1.close()
    assert wait_for(lambda: not d.connected, 5)
    for i in range(5):
        d.send_multipart([b"while-down", str(i).encode()])
    time.sleep(0.3)  # a few failed reconnect attempts
    r2 = Router(port=port)
    try:
        got = [d.recv_multipart(timeout=5) for _ in range(5)]
        assert got == [[b"while-down", str(i).encode()] for i in range(5)]
        assert d.connected
        d.send_multipart([b"after"])
        assert d.recv_multipart(timeout=5) == [b"after"]
        assert all(m[0] == b"survivor" for m in r2.received)
    finally:
        r2.close()


def test_recv_timeout(router, dealers):
    d = dealers(router.endpoint, b"idle")
    assert wait_for(lambda: d.connected)
    for timeout in (0.0, 0.2, 0.5):
        t0 = time.monotonic()
        assert d.recv_multipart(timeout=timeout) is None
        elapsed = time.monotonic() - t0
        assert timeout - 0.01 <= elapsed < timeout + 0.25


def test_connect_to_dead_port_does_not_raise_or_spin(dealers):
    port = free_port()
    t0 = time.monotonic()
    d = dealers(f"tcp://127.0.0.1:{port}", b"lonely", max_queued=3)
    assert time.monotonic() - t0 < 0.5
    cpu0 = time.process_time()
    time.sleep(1.0)
    cpu = time.process_time() - cpu0
    assert not d.connected
    assert d.last_error and "refused" in d.last_error.lower()
    assert cpu < 0.3, f"reconnect loop burned {cpu:.2f} s CPU in 1 s"
    for i in range(3):
        d.send_multipart([b"q", bytes((i,))])
    with pytest.raises(ZmtpError):
        d.send_multipart([b"one too many"])
    t0 = time.monotonic()
    d.close()
    assert time.monotonic() - t0 < 1.0


def test_close_from_other_thread_unblocks_recv(router, dealers):
    d = dealers(router.endpoint, b"blocked")
    result = {}

    def reader():
        result["msg"] = d.recv_multipart()  # no timeout

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.2)
    assert th.is_alive()
    t0 = time.monotonic()
    d.close()
    th.join(timeout=2)
    assert not th.is_alive()
    assert result["msg"] is None
    assert time.monotonic() - t0 < 1.0
    d.close()  # idempotent
    with pytest.raises(ZmtpError):
        d.send_multipart([b"x"])
    assert d.recv_multipart(timeout=1) is None


def test_close_while_disconnected_unblocks_recv(dealers):
    d = dealers(f"tcp://127.0.0.1:{free_port()}")
    th = threading.Thread(target=d.recv_multipart)
    th.start()
    time.sleep(0.1)
    d.close()
    th.join(timeout=2)
    assert not th.is_alive()


def test_context_manager(router):
    with ZmtpDealer(router.endpoint, b"cm", **FAST) as d:
        d.send_multipart([b"x"])
        assert d.recv_multipart(timeout=5) == [b"x"]
    assert d.closed and not d.connected


def test_interop_with_pyzmq_dealer_simultaneously(router, dealers):
    ours = dealers(router.endpoint, b"pure")
    ctx = zmq.Context()
    theirs = ctx.socket(zmq.DEALER)
    theirs.setsockopt(zmq.LINGER, 0)
    theirs.setsockopt(zmq.IDENTITY, b"pyzmq")
    theirs.connect(router.endpoint)
    try:
        n = 300

        def pyzmq_side(out):
            for i in range(n):
                theirs.send_multipart([b"z", str(i).encode()])
            out.extend(theirs.recv_multipart() for _ in range(n))

        zout: list = []
        th = threading.Thread(target=pyzmq_side, args=(zout,))
        th.start()
        for i in range(n):
            ours.send_multipart([b"p", str(i).encode()])
        pout = [ours.recv_multipart(timeout=10) for _ in range(n)]
        th.join(timeout=10)
        assert pout == [[b"p", str(i).encode()] for i in range(n)]
        assert zout == [[b"z", str(i).encode()] for i in range(n)]
        idents = {m[0]: m[1] for m in router.received}
        assert idents == {b"pure": b"p", b"pyzmq": b"z"}
    finally:
        theirs.close()
        ctx.term()


def test_equivalent_to_pyzmq_dealer(dealers):
    messages = [
        [b"hello"],
        [b"", b""],
        [b"a" * 255, b"b" * 256, b"c" * 70000],
        [b"\x00" * 3, b"", b"x"],
        [bytes(range(256)) * 10],
    ]

    def run(send, recv):
        r = Router()
        try:
            for m in messages:
                send(r.endpoint, m)
            assert wait_for(lambda: len(r.received) == len(messages), 5)
            recv()
            return r.received, r.meta
        finally:
            r.close()

    # ours
    holder = {}

    def ours_send(endpoint, m):
        if "d" not in holder:
            holder["d"] = dealers(endpoint, b"same-id")
        holder["d"].send_multipart(m)

    ours_frames, ours_meta = run(ours_send, lambda: None)

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"same-id")
    connected = {}

    def theirs_send(endpoint, m):
        if not connected:
            sock.connect(endpoint)
            connected["y"] = True
        sock.send_multipart(m)

    try:
        theirs_frames, theirs_meta = run(theirs_send, lambda: None)
    finally:
        sock.close()
        ctx.term()
    assert ours_frames == theirs_frames
    assert ours_frames == [[b"same-id"] + m for m in messages]
    assert ours_meta == theirs_meta


def test_localhost_endpoint(router, dealers):
    d = dealers(f"tcp://localhost:{router.port}", b"lh")
    d.send_multipart([b"x"])
    assert d.recv_multipart(timeout=5) == [b"x"]


def test_ipv6_endpoint(dealers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    r = Router(host="::1")
    try:
        d = dealers(f"tcp://[::1]:{r.port}", b"v6")
        d.send_multipart([b"six"])
        assert d.recv_multipart(timeout=5) == [b"six"]
    finally:
        r.close()


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:5555", "ipc:///tmp/x", "tcp://127.0.0.1", "tcp://*:5555", "tcp://h:99999"]
)
def test_bad_endpoints(endpoint):
    with pytest.raises(ValueError):
        ZmtpDealer(endpoint)


def test_bad_arguments(router, dealers):
    with pytest.raises(ValueError):
        ZmtpDealer(router.endpoint, b"")
    with pytest.raises(ValueError):
        ZmtpDealer(router.endpoint, b"x" * 256)
    d = dealers(router.endpoint, b"args")
    with pytest.raises(ValueError):
        d.send_multipart([])
    with pytest.raises(TypeError):
        d.send_multipart(b"not a list")
    with pytest.raises(TypeError):
        d.send_multipart(["str frame"])
    with pytest.raises(ValueError):
        d.send_multipart([memoryview(b"abcdef")[::2]])
    with pytest.raises(TypeError):
        ZmtpDealer(router.endpoint, "str-identity")
    # Non-byte memoryviews are sent as their raw bytes.
    ints = memoryview(bytearray(struct.pack("<4i", 1, 2, 3, 4))).cast("i")
    d.send_multipart([ints])
    assert d.recv_multipart(timeout=5) == [struct.pack("<4i", 1, 2, 3, 4)]


def test_libzmq_heartbeats_are_answered(dealers):
    # The ROUTER pings every 50 ms and drops peers that stay silent for 200 ms
    # unless they answer with PONG.
    r = Router(HEARTBEAT_IVL=50, HEARTBEAT_TIMEOUT=200)
    try:
        d = dealers(r.endpoint, b"hb")
        d.send_multipart([b"1"])
        assert d.recv_multipart(timeout=5) == [b"1"]
        sessions = d._handshakes
        time.sleep(1.0)
        assert d.connected and d._handshakes == sessions, d.last_error
        d.send_multipart([b"2"])
        assert d.recv_multipart(timeout=5) == [b"2"]
    finally:
        r.close()


# ------------------------------------------------- scripted / hostile peers


def test_ping_gets_pong_with_context(fake_peer, dealers):
    def script(conn, index):
        fake_handshake(conn)
        conn.sendall(command(b"PING", struct.pack(">H", 30) + b"ctx-123"))
        flags, body = read_frame(conn)
        conn.sendall(b"\x00\x02ok")
        return flags, body

    p = fake_peer(script)
    d = dealers(p.endpoint, b"pinged")
    assert d.recv_multipart(timeout=5) == [b"ok"]
    assert wait_for(lambda: p.results)
    assert p.results[0] == (0x04, b"\x04PONG" + b"ctx-123")
    assert not p.errors


def test_dealer_ready_and_long_small_frames(fake_peer, dealers):
    """Check our READY and that long-form headers with small sizes are accepted."""

    def script(conn, index):
        props = fake_handshake(conn)
        flags, body = read_frame(conn)
        # 8-byte size header declaring a 3-byte frame (legal), then MORE + short frame.
        conn.sendall(struct.pack(">BQ", 0x03, 3) + b"abc" + b"\x00\x01z")
        return props, flags, body

    p = fake_peer(script)
    d = dealers(p.endpoint, b"\x00binary-id")
    d.send_multipart([b"hi"])
    assert d.recv_multipart(timeout=5) == [b"abc", b"z"]
    assert wait_for(lambda: p.results)
    props, flags, body = p.results[0]
    assert props == {"Socket-Type": b"DEALER", "Identity": b"\x00binary-id"}
    assert (flags, body) == (0x00, b"hi")


def test_bogus_peer_sending_garbage(fake_peer, dealers):
    def script(conn, index):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        time.sleep(2)

    p = fake_peer(script)
    d = dealers(p.endpoint, b"victim", reconnect_interval=0.05, reconnect_interval_max=0.2)
    t0 = time.monotonic()
    assert d.recv_multipart(timeout=0.8) is None
    assert time.monotonic() - t0 < 1.5
    assert not d.connected
    assert "signature" in (d.last_error or "")
    assert p.accepted >= 2  # it keeps retrying (with backoff)
    t0 = time.monotonic()
    d.close()
    assert time.monotonic() - t0 < 1.0


def test_bogus_peer_oversized_frame(fake_peer, dealers):
    def script(conn, index):
        fake_handshake(conn)
        conn.sendall(struct.pack(">BQ", 0x02, 1 << 40))  # declares a 1 TiB frame
        time.sleep(2)

    p = fake_peer(script)
    d = dealers(p.endpoint, b"victim")
    assert d.recv_multipart(timeout=0.5) is None
    assert wait_for(lambda: "limit" in (d.last_error or ""), 3), d.last_error
    assert wait_for(lambda: p.accepted >= 2, 3)  # dropped the connection, reconnected

    # The limit is configurable.

    def small_script(conn, index):
        fake_handshake(conn)
        conn.sendall(struct.pack(">BQ", 0x02, 1001) + b"x" * 1001)
        time.sleep(2)

    p2 = fake_peer(small_script)
    d2 = dealers(p2.endpoint, b"victim2", max_frame_size=1000)
    assert d2.recv_multipart(timeout=0.5) is None
    assert "1001" in (d2.last_error or "")


def test_bogus_peer_bad_flags_and_wrong_type(fake_peer, dealers):
    def bad_flags(conn, index):
        fake_handshake(conn)
        conn.sendall(b"\xf0\x01x")
        time.sleep(2)

    def wrong_type(conn, index):
        fake_handshake(conn, socket_type=b"PUB")
        time.sleep(2)

    def error_cmd(conn, index):
        conn.sendall(GREETING_ROUTER)
        recv_exact(conn, 64)
        read_frame(conn)
        conn.sendall(command(b"ERROR", b"\x0bgo away now"))
        time.sleep(2)

    def curve(conn, index):
        conn.sendall(GREETING_ROUTER[:12] + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32)
        time.sleep(2)

    expectations = [  # (script, text of the error, fails during the handshake)
        (bad_flags, "flags", False),
        (wrong_type, "PUB", True),
        (error_cmd, "go away", True),
        (curve, "CURVE", True),
    ]
    for script, needle, in_handshake in expectations:
        p = fake_peer(script)
        d = dealers(p.endpoint, b"victim")
        assert wait_for(lambda: needle in (d.last_error or ""), 3), (needle, d.last_error)
        assert wait_for(lambda: p.accepted >= 2, 3)  # dropped it and retried
        if in_handshake:
            assert not d.connected and d._handshakes == 0
        d.close()


def test_silent_peer_handshake_times_out(fake_peer, dealers):
    def script(conn, index):
        time.sleep(3)  # accept, then say nothing

    p = fake_peer(script)
    d = dealers(p.endpoint, b"waiting", connect_timeout=0.3)
    assert wait_for(lambda: "timed out" in (d.last_error or ""), 3), d.last_error
    assert wait_for(lambda: p.accepted >= 2, 3)
    assert not d.connected


def test_our_heartbeat_detects_dead_peer(fake_peer, dealers):
    pings = []

    def script(conn, index):
        fake_handshake(conn)
        if index == 0:
            pings.append(read_frame(conn))  # read one PING, then go silent
            time.sleep(3)
        else:
            conn.sendall(b"\x00\x05again")
            time.sleep(3)

    p = fake_peer(script)
    d = dealers(p.endpoint, b"hb", heartbeat_interval=0.1, heartbeat_timeout=0.4)
    assert d.recv_multipart(timeout=5) == [b"again"]
    assert pings and pings[0][0] == 0x04 and pings[0][1].startswith(b"\x04PING")
    assert "heartbeat" in (d.last_error or "")


def test_broken_send_is_requeued_whole(fake_peer, dealers):
    """The peer drops the connection in the middle of a big message: the message
    is re-sent whole on the next connection, never half."""
    size = 24 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    received = []

    def script(conn, index):
        fake_handshake(conn)
        if index == 0:
            recv_exact(conn, 100_000)  # part of the big frame, then reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return None
        frames = []
        while True:
            flags, body = read_frame(conn)
            frames.append(body)
            if not flags & 0x01:
                break
        received.append(frames)
        conn.sendall(b"\x00\x04done")
        time.sleep(1)

    p = fake_peer(script)
    d = dealers(p.endpoint, b"big")
    assert wait_for(lambda: d.connected)
    d.send_multipart([b"head", payload])
    assert d.recv_multipart(timeout=10) == [b"done"]
    assert len(received) == 1 and p.accepted == 2
    frames = received[0]
    assert len(frames) == 2 and frames[0] == b"head" and len(frames[1]) == size and frames[1] == payload
    assert not p.errors


def test_close_unblocks_a_blocked_sender(fake_peer, dealers):
    """A peer that stops reading makes send_multipart block (like libzmq at HWM);
    close() from another thread must release it."""

    def script(conn, index):
        fake_handshake(conn)
        time.sleep(5)  # never read

    p = fake_peer(script)
    d = dealers(p.endpoint, b"stuck")
    assert wait_for(lambda: d.connected)
    chunk = bytes(8 * 1024 * 1024)
    outcome = {}

    def sender():
        try:
            for _ in range(64):  # far more than the socket buffers hold
                d.send_multipart([chunk])
            outcome["r"] = "all sent?!"
        except ZmtpError as exc:
            outcome["r"] = exc

    th = threading.Thread(target=sender)
    th.start()
    time.sleep(0.5)
    assert th.is_alive()  # blocked in send
    t0 = time.monotonic()
    d.close()
    th.join(timeout=3)
    assert not th.is_alive()
    assert time.monotonic() - t0 < 2.5
    assert isinstance(outcome["r"], ZmtpError)
