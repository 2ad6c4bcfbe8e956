"""Sharing the CPU: a daemon's job time while another program keeps the cores busy, per thread setting.

Why this exists: a daemon the CLI or a plug-in starts runs in a session of its
own (``launcher.spawn_daemon``: ``start_new_session``), and on Linux each
session is a scheduling group that gets a fair share of the CPU whatever its
processes' nice values.  torch's OpenMP threads wait for each other at the end
of every operation by spinning first; when the other program holds a core, a
thread spins through its time slice waiting for a partner that is not running,
once per operation.  A small model makes thousands of short operations per
step, so a job slows by one or two orders of magnitude - not by the factor of
two a fair share would explain.

What it measures, in one run: daemons started the way the launcher starts them
(their own session), each setting in turn - torch's own thread count, one
thread (``serve --threads 1``), and, for reference, OpenMP's passive waiting
(``OMP_WAIT_POLICY=PASSIVE``) and a short spin (``GOMP_SPINCOUNT``) - with the
machine idle and then busy (a CPU-bound program in another session: float32
matrix products on as many threads as the machine has cores, at nice 10, as a
training run or a busy host application would be).  Per setting and state:
the median time of ``--runs`` txt2img jobs of the starter (128 px, DDIM 20
steps, CFG 3) and of a few-step job (Euler, 4 steps, CFG 1), submit to result
through the real daemon.  Ratios are against torch's own thread count on the
idle machine, same run.

Usage: python bench/cpu_sharing.py [--runs 12] [--busy-runs 3] [--publish cpu_sharing]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result  # bench/ is on sys.path when a benchmark runs as a script

SETTINGS = [("torch's choice", {}, []), ("--threads 1", {}, ["--threads", "1"]),
            ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}, []),
            ("GOMP_SPINCOUNT=3000", {"GOMP_SPINCOUNT": "3000"}, [])]

HOG = """
import torch, time
torch.set_num_threads({threads})
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a) * 0.5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(home: Path, env_extra: dict, args: list):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "IMPASTO_THREADS")}
    env.update(env_extra, IMPASTO_HOME=str(home))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", endpoint, *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, endpoint


def time_jobs(endpoint: str, runs: int):
    from impasto.protocol import launcher
    from impasto.protocol.messages import Generate

    client = launcher.connect(endpoint, None, timeout=180)
    threads = None

    def job(steps, sampler, cfg, seed):
        nonlocal threads
        t0 = time.perf_counter()
        r = client.submit(Generate(prompt="a red circle on a blue background", model="starter", width=128,
                                   height=128, steps=steps, cfg_scale=cfg, seed=seed, sampler=sampler)).wait(600)
        threads = r.info.get("torch_threads")
        return (time.perf_counter() - t0) * 1000

    try:
        job(20, "ddim", 3.0, 0), job(4, "euler", 1.0, 0)           # warm: the model, the first calls
        full = [job(20, "ddim", 3.0, i) for i in range(runs)]
        few = [job(4, "euler", 1.0, i) for i in range(runs)]
    finally:
        client.close()
    return statistics.median(full), statistics.median(few), threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12, help="jobs per kind, idle machine")
    ap.add_argument("--busy-runs", type=int, default=3, help="jobs per kind, busy machine (slow settings are slow)")
    ap.add_argument("--publish", default="", help="write bench/results/<name>.json")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    rows, figures = [], {"cores": cores, "runs": args.runs, "busy_runs": args.busy_runs, "cases": []}
    with tempfile.TemporaryDirectory(prefix="impasto-cpu-sharing-") as tmp:
        os.environ["IMPASTO_HOME"] = str(Path(tmp) / "home")
        results = {}
        for state in ("idle", "busy"):
            hog = None
            if state == "busy":
                hog = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", HOG.format(threads=cores)],
                                       start_new_session=True)
                time.sleep(3)
            try:
                for name, env_extra, extra_args in SETTINGS:
                    proc, endpoint = start_daemon(Path(tmp) / "home", env_extra, extra_args)
                    try:
                        full, few, threads = time_jobs(endpoint, args.runs if state == "idle" else args.busy_runs)
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait(30)
                    results[(state, name)] = (full, few)
                    figures["cases"].append({"state": state, "setting": name, "torch_threads": threads,
                                             "ddim20_ms": round(full, 1), "euler4_ms": round(few, 1)})
                    print(figures["cases"][-1], flush=True)
            finally:
                if hog is not None:
                    os.killpg(hog.pid, signal.SIGKILL)
                    hog.wait(10)
        base_full, base_few = results[("idle", SETTINGS[0][0])]
        for case in figures["cases"]:
            rows.append([case["state"], case["setting"], case["torch_threads"], f"{case['ddim20_ms']:.0f}",
                         f"{case['ddim20_ms'] / base_full:.2f}x", f"{case['euler4_ms']:.0f}",
                         f"{case['euler4_ms'] / base_few:.2f}x"])
    if args.publish:
        write_result(args.publish, figures, seeds=list(range(max(args.runs, args.busy_runs))),
                     baseline="torch's own thread count on the idle machine, same run",
                     settings={"runs": args.runs, "busy_runs": args.busy_runs, "model": "starter", "size": 128},
                     tables={"main": {
                         "caption": f"The starter through a real daemon started in its own session, as the launcher "
                                    f"starts it ({cores} cores); busy: a CPU-bound program in another session on "
                                    f"{cores} threads at nice 10. Median of {args.runs} jobs (busy: "
                                    f"{args.busy_runs}), submit to result.",
                         "columns": ["machine", "daemon setting", "torch threads", "DDIM 20, CFG 3: ms",
                                     "vs idle default", "Euler 4, CFG 1: ms", "vs idle default"],
                         "rows": rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
