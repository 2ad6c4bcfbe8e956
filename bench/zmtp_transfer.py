"""Moving a big picture: the protocol's two transports as shipped, and PNG files as plug-ins use them.

What is measured, all in one run, interleaved round by round so machine noise hits every
path alike (medians):

1. **Request**: a 4096x4096 RGBA ``Generate`` (64 MiB init image) encoded with the protocol's
   codec, sent by the client transport, received by a pyzmq ROUTER in *another process* with
   ``copy=True`` and decoded (exactly what the daemon does on a submit), acknowledged with a
   tiny frame.
2. **Round trip**: one 64 MiB frame sent and echoed back (the ROUTER receives as the daemon
   does and sends back with ``copy=False``, as the daemon sends results).

each through

* ``pyzmq`` = :class:`impasto.protocol.transport.PyzmqDealer`, what clients use when pyzmq
  imports (it sends frames >= 64 KiB with ``copy=False``) -- **the baseline** of the ratios;
* ``zmtp`` = :class:`impasto.protocol.zmtp.ZmtpDealer`, the pure-Python fallback (Krita/GIMP
  on Windows), both obtained through :func:`impasto.protocol.transport.open_dealer`;
* ``pyzmq copy=True``: a plain ``zmq.DEALER`` with pyzmq's default ``copy=True``, which is
  *not* what ships; it is kept because the earlier version of this bench measured it (and so
  reported the pure-Python dealer 0.80-0.91x "pyzmq"'s time).

3. **PNG**: Pillow encode + decode of the same 4096x4096 image at compression levels 0, 1 and 6
   (6 is Pillow's default; 0-1 is what a plug-in that cares about speed would pick), the way a
   temp-file plug-in hands a picture over.

The image is painting-like: smooth gradients plus noise of 0-7 levels (seed 0), so PNG is
neither at its best (flat colour) nor its worst (pure noise).

    python bench/zmtp_transfer.py [--rounds 7] [--png-rounds 3] [--side 4096] [--no-json]

Writes ``bench/results/zmtp_transfer.json`` (see ``bench/results_io.py``); ``bench/report.py``
renders its tables into docs/performance.md.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

SEED = 0
PNG_LEVELS = (0, 1, 6)
BENCH_SECRET = b"bench-secret-not-a-real-one"


def _authenticating() -> bool:
    """Whether the shipped transports authenticate (PLAIN with the daemon's secret on loopback,
    docs/security.md): they then take ``secret=``, and the ROUTER must speak PLAIN too.  The
    handshake is paid once at connect, as with the daemon; every timed message is as shipped."""
    import inspect

    from impasto.protocol.transport import open_dealer

    return "secret" in inspect.signature(open_dealer).parameters


def painting(side: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:side, 0:side]
    arr = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side), np.full_like(x, 255)], -1)
    return (arr + rng.integers(0, 8, arr.shape)).clip(0, 255).astype(np.uint8)


def _zap_allow_all(ctx, stop_event) -> None:
    """A ZAP handler (as the daemon has one) that lets every PLAIN client in: the bench times
    messages, not who may send them.  Bound before the ROUTER binds."""
    import threading

    import zmq

    zap = ctx.socket(zmq.REP)
    zap.setsockopt(zmq.LINGER, 0)
    zap.bind("inproc://zeromq.zap.01")

    def serve():
        while not stop_event.is_set():
            if zap.poll(100):
                version, request_id = zap.recv_multipart()[:2]
                zap.send_multipart([version, request_id, b"200", b"OK", b"bench", b""])
        zap.close()

    threading.Thread(target=serve, daemon=True).start()


def _router(port_queue, stop_event, plain: bool) -> None:
    """The daemon's side: receive with copy=True and decode; answer requests with a tiny ack and
    echo frames back with copy=False (as the daemon sends results)."""
    import zmq

    from impasto.protocol import codec

    ctx = zmq.Context()
    if plain:
        _zap_allow_all(ctx, stop_event)
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    if plain:
        sock.setsockopt(zmq.ZAP_DOMAIN, b"bench")
        sock.plain_server = True
    port_queue.put(sock.bind_to_random_port("tcp://127.0.0.1"))
    while not stop_event.is_set():
        if not sock.poll(100):
            continue
        frames = sock.recv_multipart(copy=True)
        ident, body = frames[0], frames[1:]
        if body[0] == b"echo":
            sock.send_multipart([ident] + body, copy=False)
        else:
            codec.decode(body)
            sock.send_multipart([ident, b"ok"])
    sock.close()
    ctx.term()


class _PlainPyzmq:
    """pyzmq's DEALER with its default copy=True: what the old bench called "pyzmq"."""

    def __init__(self, endpoint, plain: bool):
        import zmq

        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if plain:
            self.sock.plain_username, self.sock.plain_password = b"bench", BENCH_SECRET
        self.sock.connect(endpoint)

    def send_multipart(self, frames):
        self.sock.send_multipart(frames)

    def recv_multipart(self, timeout=None):
        if not self.sock.poll(None if timeout is None else int(timeout * 1000)):
            return None
        return self.sock.recv_multipart()

    def close(self):
        self.sock.close(0)


def _dealer(kind: str, endpoint: str, plain: bool):
    from impasto.protocol.transport import open_dealer

    if kind == "pyzmq copy=True":
        return _PlainPyzmq(endpoint, plain)
    return open_dealer(endpoint, f"bench-{kind}".encode(), transport=kind, **({"secret": BENCH_SECRET} if plain else {}))


def _ready(d) -> None:
    d.send_multipart([b"echo", b"warm-up"])
    reply = d.recv_multipart(timeout=30)
    assert reply == [b"echo", b"warm-up"], reply


def time_request(d, msg) -> float:
    from impasto.protocol import codec

    t0 = time.perf_counter()
    d.send_multipart(codec.encode(msg))
    reply = d.recv_multipart(timeout=120)
    dt = time.perf_counter() - t0
    assert reply == [b"ok"], reply
    return dt


def time_echo(d, payload: bytes) -> float:
    t0 = time.perf_counter()
    d.send_multipart([b"echo", payload])
    reply = d.recv_multipart(timeout=120)
    dt = time.perf_counter() - t0
    assert reply is not None and len(reply[1]) == len(payload)
    return dt


def time_png(arr: np.ndarray, level: int):
    from PIL import Image

    img = Image.fromarray(arr, "RGBA")
    t0 = time.perf_counter()
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=level)
    t1 = time.perf_counter()
    back = Image.open(io.BytesIO(buf.getvalue()))
    back.load()
    t2 = time.perf_counter()
    assert back.size == img.size
    return t1 - t0, t2 - t1, len(buf.getvalue())


def med_ms(xs) -> float:
    return round(statistics.median(xs) * 1000, 1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="rounds of (request + round trip) per transport")
    ap.add_argument("--png-rounds", type=int, default=3, help="PNG encode+decode runs per level")
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--no-json", action="store_true", help="print only; keep bench/results as it is")
    args = ap.parse_args(argv)

    from impasto.protocol.messages import Generate, Image as WireImage

    side = args.side
    arr = painting(side)
    raw = arr.tobytes()
    msg = Generate(job="t", prompt="x", init_image=WireImage(side, side, raw), model="m")
    kinds = ("pyzmq", "zmtp", "pyzmq copy=True")

    mpctx = mp.get_context("spawn")
    port_q, stop = mpctx.Queue(), mpctx.Event()
    plain = _authenticating()
    server = mpctx.Process(target=_router, args=(port_q, stop, plain), daemon=True)
    server.start()
    req = {k: [] for k in kinds}
    echo = {k: [] for k in kinds}
    png = {lv: {"encode": [], "decode": [], "bytes": None} for lv in PNG_LEVELS}
    try:
        endpoint = f"tcp://127.0.0.1:{port_q.get(timeout=60)}"
        dealers = {k: _dealer(k, endpoint, plain) for k in kinds}
        for d in dealers.values():
            _ready(d)
            time_echo(d, raw)  # one unmeasured big message each: buffers allocated, pages touched
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for k in order:
                req[k].append(time_request(dealers[k], msg))
            for k in order:
                echo[k].append(time_echo(dealers[k], raw))
            if r < args.png_rounds:
                for lv in PNG_LEVELS:
                    e, dcd, n = time_png(arr, lv)
                    png[lv]["encode"].append(e)
                    png[lv]["decode"].append(dcd)
                    png[lv]["bytes"] = n
        for d in dealers.values():
            d.close()
    finally:
        stop.set()
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    base_req, base_echo = statistics.median(req["pyzmq"]), statistics.median(echo["pyzmq"])
    figures = {
        "image": f"{side}x{side} RGBA, {len(raw)} bytes",
        "request_s": {k: v for k, v in req.items()},
        "round_trip_s": {k: v for k, v in echo.items()},
        "request_median_ms": {k: med_ms(v) for k, v in req.items()},
        "round_trip_median_ms": {k: med_ms(v) for k, v in echo.items()},
        "request_ratio_to_pyzmq": {k: round(statistics.median(v) / base_req, 3) for k, v in req.items()},
        "round_trip_ratio_to_pyzmq": {k: round(statistics.median(v) / base_echo, 3) for k, v in echo.items()},
        "png": {str(lv): {"encode_s": p["encode"], "decode_s": p["decode"], "bytes": p["bytes"],
                          "encode_decode_median_ms": med_ms([a + b for a, b in zip(p["encode"], p["decode"])])}
                for lv, p in png.items()},
    }
    names = {"pyzmq": "protocol over pyzmq (`PyzmqDealer`, copy=False >= 64 KiB) — **baseline**",
             "zmtp": "protocol over pure-Python ZMTP (`ZmtpDealer`)",
             "pyzmq copy=True": "plain `zmq.DEALER`, pyzmq's default copy=True (not shipped; the old bench's \"pyzmq\")"}
    rows = []
    for k in kinds:
        rows.append([names[k], f"{figures['request_median_ms'][k]:.0f} ms",
                     f"{figures['request_ratio_to_pyzmq'][k]:.2f}x",
                     f"{figures['round_trip_median_ms'][k]:.0f} ms",
                     f"{figures['round_trip_ratio_to_pyzmq'][k]:.2f}x"])
    png_rows = []
    for lv in PNG_LEVELS:
        p = figures["png"][str(lv)]
        png_rows.append([f"PNG level {lv}" + (" (Pillow's default)" if lv == 6 else ""),
                         f"{med_ms(png[lv]['encode']):.0f} ms", f"{med_ms(png[lv]['decode']):.0f} ms",
                         f"{p['encode_decode_median_ms']:.0f} ms", f"{p['bytes'] / 2 ** 20:.1f} MiB",
                         f"{p['encode_decode_median_ms'] / figures['request_median_ms']['pyzmq']:.1f}x"])
    tables = {
        "transports": {
            "caption": f"{side}x{side} RGBA ({len(raw) / 2 ** 20:.0f} MiB), loopback, ROUTER in another process, "
                       f"{args.rounds} interleaved rounds, medians; ratio = time / the shipped pyzmq transport's time.",
            "columns": ["client transport", "request (encode, send, daemon-side decode, ack)", "ratio",
                        "64 MiB round trip (echo)", "ratio"],
            "rows": rows,
        },
        "png": {
            "caption": f"The same image through a PNG file's bytes (Pillow, in memory, {args.png_rounds} runs per "
                       "level, medians); last column = encode + decode / the protocol request over pyzmq above.",
            "columns": ["hand-over", "encode", "decode", "encode + decode", "size", "vs protocol request"],
            "rows": png_rows,
        },
    }
    print(f"{side}x{side} RGBA, {args.rounds} rounds")
    for k in kinds:
        print(f"  {k:16s} request {figures['request_median_ms'][k]:8.1f} ms "
              f"({figures['request_ratio_to_pyzmq'][k]:.2f}x)  round trip {figures['round_trip_median_ms'][k]:8.1f} ms "
              f"({figures['round_trip_ratio_to_pyzmq'][k]:.2f}x)")
    for lv in PNG_LEVELS:
        p = figures["png"][str(lv)]
        print(f"  PNG level {lv}: encode+decode {p['encode_decode_median_ms']:.0f} ms, {p['bytes']} bytes")
    if not args.no_json:
        write_result("zmtp_transfer", figures, seeds=[SEED], threads=None,
                     baseline="the protocol's pyzmq transport (PyzmqDealer, copy=False for frames >= 64 KiB), "
                              "same run, interleaved",
                     settings={"side": side, "rounds": args.rounds, "png_rounds": args.png_rounds,
                               "png_levels": list(PNG_LEVELS), "server": "pyzmq ROUTER, separate process",
                               "authentication": "PLAIN (as shipped)" if plain else "none (as shipped)"},
                     tables=tables, argv=sys.argv if argv is None else [sys.argv[0], *argv])
    return figures


if __name__ == "__main__":
    main()
