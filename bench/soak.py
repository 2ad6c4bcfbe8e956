"""Soak: a real daemon under 100,000+ fuzzed messages, garbage connections and 8 busy clients.

Why: issue 13's robustness claims (typed answers, no hangs, bounded memory,
orphans cancelled, nothing lost or misrouted) only mean something at volume.
Three phases against one real ``impasto serve`` (the tiny SD model, CPU):

1. **fuzz** - ``--messages`` messages from the seeded generator in
   tests/fuzzing.py (structured mutations of every request type + random
   frames), each followed by a status barrier; counts hangs, ``internal``
   and every code; samples the daemon's RSS every ``--rss-every`` messages
   and fits a line (MB per 10,000 messages) after the first sample.
2. **garbage** - ``--garbage`` raw TCP connections that send random bytes
   without authenticating, plus an unauthenticated ``shutdown``: the daemon
   must still answer.
3. **clients** - ``--clients`` clients x ``--jobs`` mixed jobs (txt2img,
   img2img, edit, train, concept actions) with random cancels; ``--kill``
   of the clients are separate processes SIGKILLed mid-run.  Checks: every
   job of a surviving client ends (result, or cancelled when we cancelled it),
   no event reaches the wrong client, txt2img results are bit-identical to a
   solo run of the same request, and the killed clients' jobs are cancelled
   by the daemon's orphan timeout (read from its log).

Run: ``nice -n 10 python bench/soak.py`` (writes bench/results/soak.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzzing  # noqa: E402
from conftest import DaemonProcess  # noqa: E402  (also sets the session secret file)

from impasto.protocol import Client, JobCancelled, JobFailed  # noqa: E402
from impasto.protocol.messages import Generate, Image, Result, Train  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def slope(xs, ys) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# --------------------------------------------------------------------------- phase 1: fuzz


def phase_fuzz(d: DaemonProcess, messages: int, seed: int, every: int) -> dict:
    pid = d.proc.pid
    samples = [(0, rss_mb(pid))]
    totals = fuzzing.FuzzReport()
    done = 0
    t0 = time.monotonic()
    while done < messages:
        n = min(every, messages - done)
        r = fuzzing.run(d.endpoint, n, seed, start=done, alive=d.alive)
        done += n
        totals.sent += r.sent
        totals.replies += r.replies
        totals.accepted += r.accepted
        totals.hangs += r.hangs
        totals.unanswered += r.unanswered
        totals.internal += r.internal
        totals.undecodable += r.undecodable
        totals.hang_examples += r.hang_examples
        for k, v in r.codes.items():
            totals.codes[k] = totals.codes.get(k, 0) + v
        samples.append((done, rss_mb(pid)))
        print(f"  fuzz {done:>7}/{messages}  rss {samples[-1][1]:7.1f} MB  hangs {totals.hangs}  "
              f"internal {len(totals.internal)}", flush=True)
        if not d.alive():
            break
    totals.seconds = time.monotonic() - t0
    xs = [s[0] for s in samples[1:]]
    ys = [s[1] for s in samples[1:]]
    out = totals.as_dict()
    out.update({
        "seed": seed,
        "messages_per_second": round(totals.sent / totals.seconds, 1),
        "rss_mb_samples": [(x, round(y, 1)) for x, y in samples],
        "rss_mb_first_sample": round(ys[0], 1) if ys else None,
        "rss_mb_last_sample": round(ys[-1], 1) if ys else None,
        "rss_mb_median": round(statistics.median(ys), 1) if ys else None,
        "rss_slope_mb_per_10k_messages": round(slope(xs, ys) * 10000, 3),
        "daemon_alive": d.alive(),
    })
    return out


# --------------------------------------------------------------------------- phase 2: garbage


def phase_garbage(d: DaemonProcess, count: int, seed: int) -> dict:
    import zmq

    rng = random.Random(seed)
    host, port = "127.0.0.1", int(d.endpoint.rsplit(":", 1)[1])
    t0 = time.monotonic()
    for i in range(count):
        with socket.create_connection((host, port), timeout=5) as s:
            kind = i % 3
            if kind == 0:
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 512)))
            elif kind == 1:  # a ZMTP greeting with the NULL mechanism, then junk
                payload = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x01NULL" + b"\x00" * 48 + b"\x04\x05junk!"
            else:  # PLAIN greeting, then a HELLO with a wrong password
                payload = (b"\xff" + b"\x00" * 8 + b"\x7f\x03\x01PLAIN" + b"\x00" * 47
                           + b"\x04\x1c\x05HELLO\x07impasto" + b"\x10" + b"0" * 16)
            try:
                s.sendall(payload)
                s.settimeout(0.05)
                s.recv(64)
            except OSError:
                pass
    ctx = zmq.Context.instance()
    stranger = ctx.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.connect(d.endpoint)
    try:  # refused in the handshake: once libzmq knows, it has no pipe and a blocking send would hang
        stranger.send_multipart([b'{"v":2,"type":"shutdown"}'], zmq.NOBLOCK)
    except zmq.Again:
        pass
    stranger_answered = bool(stranger.poll(1500))
    stranger.close(0)
    with Client(d.endpoint) as c:
        still_serving = c.ping(10)
    return {"connections": count, "seconds": round(time.monotonic() - t0, 1),
            "unauthenticated_shutdown_answered": stranger_answered, "daemon_alive": d.alive(),
            "still_serving": still_serving}


# --------------------------------------------------------------------------- phase 3: clients


def _img(w: int, h: int, seed: int, fmt: str = "rgba8") -> Image:
    rng = random.Random(seed)
    return Image(w, h, bytes(rng.getrandbits(8) for _ in range(w * h * Image.CHANNELS[fmt])), fmt)


def make_job(rng: random.Random, client_no: int, i: int):
    kind = rng.choices(["txt2img", "img2img", "edit", "train"], weights=[5, 2, 2, 1])[0]
    common = dict(model="tiny", steps=2, sampler="ddim", prompt=f"a red circle {client_no}-{i % 3}",
                  seed=1000 + (i % 7))
    if kind == "txt2img":
        return kind, Generate(width=32, height=32, **common)
    if kind == "img2img":
        return kind, Generate(init_image=_img(32, 32, i), strength=0.6, **common)
    if kind == "edit":
        return kind, Generate(init_image=_img(32, 32, i), mask=_img(32, 32, i + 1, "gray8"), strength=0.8, **common)
    return kind, Train(name=f"soak-{client_no}-{i}", images=[_img(32, 32, i + k) for k in range(3)], trigger="zwx",
                       steps=2, model="tiny", prior_preservation=False, resolution=32, preview=False,
                       sample_every=0, checkpoint_every=0)


def run_client(endpoint: str, client_no: int, jobs: int, seed: int, refs: dict, out: dict) -> None:
    rng = random.Random(seed * 100 + client_no)
    stats = {"submitted": 0, "results": 0, "cancelled_by_us": 0, "cancel_outcomes": 0, "lost": 0,
             "misrouted": 0, "not_identical": 0, "failed": [], "concept_actions": 0}
    with Client(endpoint, name=f"soak-{client_no}") as c:
        pending = []
        for i in range(jobs):
            kind, req = make_job(rng, client_no, i)
            req.job = f"c{client_no}-j{i}"
            seen_jobs = set()

            def on_event(ev, mine=req.job, seen=seen_jobs):
                if getattr(ev, "job", mine) != mine:
                    stats["misrouted"] += 1

            job = c.submit(req, on_event=on_event)
            stats["submitted"] += 1
            cancel = rng.random() < 0.15
            if cancel:
                time.sleep(rng.random() * 0.05)
                job.cancel()
                stats["cancelled_by_us"] += 1
            pending.append((kind, req, job, cancel))
            if rng.random() < 0.2:  # a concept action between jobs
                try:
                    c.concepts(30)
                    stats["concept_actions"] += 1
                except Exception as exc:  # noqa: BLE001
                    stats["failed"].append(f"concepts: {exc}")
            if len(pending) >= 4:  # keep a few in flight
                _settle(pending.pop(0), stats, refs)
        while pending:
            _settle(pending.pop(0), stats, refs)
    out[client_no] = stats


def _settle(item, stats, refs) -> None:
    kind, req, job, cancelled = item
    try:
        res = job.wait(600)
    except JobCancelled:
        if cancelled:
            stats["cancel_outcomes"] += 1
        else:
            stats["lost"] += 1
        return
    except (JobFailed, TimeoutError) as exc:
        stats["lost"] += 1
        stats["failed"].append(f"{req.job}: {exc}")
        return
    if cancelled:
        stats["cancel_outcomes"] += 1  # it finished before the cancel arrived: also an outcome
    if not isinstance(res, Result) or res.job != req.job:
        stats["misrouted"] += 1
        return
    stats["results"] += 1
    if kind == "txt2img":
        key = (req.prompt, req.seed)
        ref = refs.get(key)
        if ref is not None and ref != res.images[0].data:
            stats["not_identical"] += 1


KILLED_CLIENT = r"""
import sys, time
from impasto.protocol import Client
from impasto.protocol.messages import Generate
ep, n, no = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Client(ep, name=f"doomed-{no}")
jobs = [c.submit(Generate(job=f"k{no}-{i}", model="tiny", steps=2, sampler="ddim", width=32, height=32,
                          prompt="doomed", seed=i)) for i in range(n)]
jobs[0].wait(600)
print("first done", flush=True)
time.sleep(3600)
"""


def phase_clients(d: DaemonProcess, clients: int, jobs: int, kill: int, seed: int) -> dict:
    # Solo references: each txt2img request the clients may send, run alone first.
    refs = {}
    with Client(d.endpoint) as c:
        keys = {(f"a red circle {n}-{k}", 1000 + s) for n in range(clients) for k in range(3) for s in range(7)}
        for prompt, s in sorted(keys):
            r = c.submit(Generate(model="tiny", steps=2, sampler="ddim", width=32, height=32, prompt=prompt,
                                  seed=s)).wait(120)
            refs[(prompt, s)] = r.images[0].data
    log_before = d.log_path.read_text(errors="replace")
    doomed = []
    for k in range(kill):
        p = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, d.endpoint, str(jobs), str(100 + k)],
                             env=d.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        doomed.append(p)
    survivors = clients - kill
    out: dict = {}
    threads = [threading.Thread(target=run_client, args=(d.endpoint, n, jobs, seed, refs, out))
               for n in range(survivors)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for p in doomed:  # killed mid-run: after its first result, with ~49 jobs still queued
        p.stdout.readline()
        p.send_signal(signal.SIGKILL)
        p.wait()
    killed_at = time.monotonic()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    with Client(d.endpoint) as c:
        deadline = time.monotonic() + 120
        st = c.status(10)
        while (st.queue or st.busy) and time.monotonic() < deadline:
            time.sleep(0.5)
            st = c.status(10)
    drained_after_kill = time.monotonic() - killed_at
    log = d.log_path.read_text(errors="replace")[len(log_before):]
    reaped = [int(m.group(1)) for m in re.finditer(r"silent for [0-9.]+ s: cancelled (\d+) queued job", log)]
    running_reaped = log.count("and its running job")
    agg = {k: sum(s[k] for s in out.values()) for k in ("submitted", "results", "cancelled_by_us",
                                                        "cancel_outcomes", "lost", "misrouted", "not_identical",
                                                        "concept_actions")}
    agg["failed_examples"] = [f for s in out.values() for f in s["failed"]][:5]
    return {"clients": clients, "killed_clients": kill, "jobs_per_client": jobs, "surviving_clients": survivors,
            **agg, "seconds": round(seconds, 1), "killed_client_jobs": kill * jobs,
            "orphans_cancelled_queued": sum(reaped), "orphan_reap_events": len(reaped),
            "orphans_cancelled_running": running_reaped,
            "queue_empty_at_end": not st.queue and not st.busy,
            "seconds_from_kill_to_empty_queue": round(drained_after_kill, 1),
            "solo_references": len(refs), "daemon_alive": d.alive()}


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rss-every", type=int, default=5_000)
    ap.add_argument("--garbage", type=int, default=2_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--kill", type=int, default=2, help="how many of the clients are SIGKILLed mid-run")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = ap.parse_args()

    from impasto.backend.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="impasto-soak-"))
    build_tiny_model(work / "models" / "tiny")
    d = DaemonProcess(work / "models", work / "home").start()
    result = {
        "bench": "soak",
        "command": "nice -n 10 python bench/soak.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "1 (daemon env)"),
        "model": "tiny SD-architecture model (backend/tiny_model.py), CPU",
        "seed": args.seed,
        "orphan_timeout_s": 10.0,
        "baseline": "memory: the daemon's RSS after the first --rss-every fuzz messages (rss_mb_first_sample), "
                    "same run; txt2img results: a solo run of each request before the clients start",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
    }
    try:
        print("phase 1: fuzz", flush=True)
        result["fuzz"] = phase_fuzz(d, args.messages, args.seed, args.rss_every)
        print(json.dumps({k: v for k, v in result["fuzz"].items() if k != "rss_mb_samples"}), flush=True)
        print("phase 2: garbage connections", flush=True)
        result["garbage"] = phase_garbage(d, args.garbage, args.seed)
        print(json.dumps(result["garbage"]), flush=True)
        print("phase 3: clients", flush=True)
        result["clients"] = phase_clients(d, args.clients, args.jobs, args.kill, args.seed)
        print(json.dumps(result["clients"]), flush=True)
        result["daemon_rss_mb_end"] = round(rss_mb(d.proc.pid), 1)
    finally:
        d.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    f, g, c = result["fuzz"], result["garbage"], result["clients"]
    ok = (f["hangs"] == 0 and f["internal"] == 0 and f["daemon_alive"] and g["still_serving"]
          and not g["unauthenticated_shutdown_answered"] and c["lost"] == 0 and c["misrouted"] == 0
          and c["not_identical"] == 0 and c["queue_empty_at_end"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
