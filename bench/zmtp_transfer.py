"""Round-trip transfer benchmark: pure-Python ZMTP dealer vs pyzmq DEALER.

A pyzmq ROUTER echo server runs in a separate process (zero-copy echo) on
loopback; each client sends one frame of ``--size`` bytes and waits for it to
come back.  Prints the median (and min/max) of ``--runs`` round trips for each
client and the ratio pure-Python / pyzmq.

    python bench/zmtp_transfer.py            # 64 MiB frame, 7 runs
    python bench/zmtp_transfer.py --size-mib 100 --runs 9
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import zmq

from impasto.protocol.zmtp import ZmtpDealer


def _echo_server(port_queue, stop_event) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    port_queue.put(port)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not stop_event.is_set():
        if poller.poll(100):
            sock.send_multipart(sock.recv_multipart(copy=False), copy=False)
    sock.close()
    ctx.term()


def _bench_pure(endpoint: str, payload: bytes, runs: int) -> list[float]:
    times = []
    with ZmtpDealer(endpoint, b"bench-pure") as dealer:
        dealer.send_multipart([b"warmup"])
        assert dealer.recv_multipart(timeout=10) == [b"warmup"]
        for _ in range(runs):
            t0 = time.perf_counter()
            dealer.send_multipart([payload])
            reply = dealer.recv_multipart(timeout=60)
            times.append(time.perf_counter() - t0)
            assert reply is not None and len(reply[0]) == len(payload)
    return times


def _bench_pyzmq(endpoint: str, payload: bytes, runs: int) -> list[float]:
    times = []
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.IDENTITY, b"bench-pyzmq")
    dealer.connect(endpoint)
    dealer.send_multipart([b"warmup"])
    assert dealer.recv_multipart() == [b"warmup"]
    for _ in range(runs):
        t0 = time.perf_counter()
        dealer.send_multipart([payload])  # pyzmq defaults (copy=True), like typical client code
        reply = dealer.recv_multipart()
        times.append(time.perf_counter() - t0)
        assert len(reply[0]) == len(payload)
    dealer.close()
    ctx.term()
    return times


def _fmt(times: list[float]) -> str:
    return (
        f"median {statistics.median(times) * 1e3:8.1f} ms"
        f"  (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, n={len(times)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=float, default=64.0, help="frame size in MiB (default 64)")
    ap.add_argument("--runs", type=int, default=7, help="round trips per client (>= 5, default 7)")
    args = ap.parse_args()
    runs = max(5, args.runs)
    size = int(args.size_mib * 1024 * 1024)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)

    mpctx = mp.get_context("spawn")
    port_q = mpctx.Queue()
    stop = mpctx.Event()
    server = mpctx.Process(target=_echo_server, args=(port_q, stop), daemon=True)
    server.start()
    try:
        endpoint = f"tcp://127.0.0.1:{port_q.get(timeout=30)}"
        # Interleave the two clients so that machine noise hits both alike.
        pure: list[float] = []
        pyz: list[float] = []
        for _ in range(runs):
            pure += _bench_pure(endpoint, payload, 1)
            pyz += _bench_pyzmq(endpoint, payload, 1)
    finally:
        stop.set()
        server.join(timeout=5)
        if server.is_alive():
            server.terminate()

    mp_pure, mp_pyz = statistics.median(pure), statistics.median(pyz)
    print(f"frame size: {size} bytes ({size / 2**20:g} MiB), round trip through a pyzmq ROUTER echo on loopback")
    print(f"pure-Python ZmtpDealer : {_fmt(pure)}  -> {2 * size / mp_pure / 1e9:.2f} GB/s moved")
    print(f"pyzmq zmq.DEALER       : {_fmt(pyz)}  -> {2 * size / mp_pyz / 1e9:.2f} GB/s moved")
    print(f"ratio pure / pyzmq     : {mp_pure / mp_pyz:.2f}x")


if __name__ == "__main__":
    main()
