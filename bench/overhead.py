"""Daemon overhead: what the protocol + queue + worker cost on top of diffusers, like for like.

Measures, in one run on the same machine, for each case (the starter at its
native 64 px, the tiny test model at two sizes):

1. end-to-end latency of a text-to-image job through a real daemon
   (``impasto serve`` subprocess, a real pyzmq client) vs the same diffusers
   pipeline called in-process with identical settings (same model, size,
   steps, sampler, CFG, seed; decode to RGBA included on both sides);
   medians of N runs each, interleaved so machine noise hits both alike;
2. time to the first progress event and the first preview;
3. cancel latency in steps: the cancel is sent on seeing step k's progress;
   the ``cancelled`` event reports the steps that actually ran (``steps``),
   so the extra steps are ``steps - k`` (counting progress events would miss
   the step in flight, which sends none).

**Threads.** The daemon and the baseline run with the *same* torch intra-op
thread count (``--threads``, default 1): the daemon through
``OMP_NUM_THREADS``, the baseline through ``torch.set_num_threads``; the daemon
reports its count in each result (``info.torch_threads``) and the run stops if
they differ.  An earlier version compared a 1-thread daemon with a
default-threads baseline and published the thread count as "overhead".

Usage: python bench/overhead.py [--runs 10] [--steps 20] [--threads 1] [--json bench/results/overhead.json]
Optional: --transfer adds the 4096x4096 protocol transfer (bench/zmtp_transfer.py is the transport benchmark).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SEED = 1234
PROMPT = "a red circle on a blue background"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median(xs):
    return statistics.median(xs)


def bench_case(daemon, model_dir: Path, name: str, size: int, runs: int, steps: int, threads: int) -> dict:
    """One (model, size) case: daemon vs in-process medians, first progress/preview, cancel steps."""
    import torch
    from diffusers import StableDiffusionPipeline

    from impasto.backend.engine.samplers import make_scheduler
    from impasto.protocol import Client
    from impasto.protocol.messages import Cancelled, Generate, Progress

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    req = dict(prompt=PROMPT, steps=steps, cfg_scale=7.0, width=size, height=size, sampler="euler", model=name,
               seed=SEED)

    def in_process():
        pipe.scheduler = make_scheduler("euler", dict(pipe.scheduler.config))  # the daemon's own scheduler
        t0 = time.perf_counter()
        with torch.inference_mode():
            img = pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
                       generator=[torch.Generator("cpu").manual_seed(SEED)]).images[0]
        img.convert("RGBA").tobytes()
        return time.perf_counter() - t0

    out = {"daemon": [], "inproc": [], "first_progress": [], "first_preview": [], "step_time": [], "engine": [],
           "queue_wait": []}
    with Client(daemon.endpoint) as client:
        warm = client.submit(Generate(**req)).wait(600)  # warm: model loaded, preview map fitted
        if warm.info.get("torch_threads") != threads or torch.get_num_threads() != threads:
            raise SystemExit(f"thread counts differ: daemon {warm.info.get('torch_threads')}, "
                             f"baseline {torch.get_num_threads()}, asked {threads}")
        in_process()
        for _ in range(runs):
            out["inproc"].append(in_process())
            t0 = time.perf_counter()
            res = client.submit(Generate(**req)).wait(600)
            out["daemon"].append(time.perf_counter() - t0)
            out["step_time"].append(res.timings["denoise"] / steps)
            out["engine"].append(res.timings["total"])          # inside the daemon: Engine.run alone
            out["queue_wait"].append(res.timings.get("queue_wait", 0.0))
        for _ in range(max(3, runs // 2)):
            marks = {}
            t0 = time.perf_counter()

            def on_event(ev, marks=marks, t0=t0):
                if isinstance(ev, Progress):
                    marks.setdefault("progress", (time.perf_counter() - t0, ev.step))
                    if ev.preview is not None:
                        marks.setdefault("preview", (time.perf_counter() - t0, ev.step))

            client.submit(Generate(preview=True, **req), on_event=on_event).wait(600)
            out["first_progress"].append(marks["progress"])
            out["first_preview"].append(marks["preview"])
        cancel = []
        for _ in range(max(3, runs // 2)):
            job = client.submit(Generate(**{**req, "steps": 200}))
            sent_at, ran = None, None
            for ev in job.events(timeout=600):
                if isinstance(ev, Progress) and sent_at is None and ev.step >= 3:
                    sent_at = ev.step
                    job.cancel()
                elif isinstance(ev, Cancelled):
                    ran = ev.steps
            if ran is None:
                raise SystemExit("the daemon's cancelled event carries no steps: an old daemon?")
            cancel.append(ran - sent_at)
    d, i = median(out["daemon"]), median(out["inproc"])
    step = median(out["step_time"])
    return {
        "model": name, "size": size, "steps": steps, "runs": runs,
        "daemon_median_s": round(d, 6), "inprocess_median_s": round(i, 6),
        "overhead_s": round(d - i, 6), "ratio_daemon_over_inprocess": round(d / i, 4),
        # each daemon run is paired with the in-process run just before it: the median of the pairs'
        # ratios is robust to the machine slowing down or speeding up during the run
        "paired_ratio_median": round(median(a / b for a, b in zip(out["daemon"], out["inproc"])), 4),
        "daemon_min_s": round(min(out["daemon"]), 6), "inprocess_min_s": round(min(out["inproc"]), 6),
        "step_median_s": round(step, 6),
        # where the daemon's time goes: Engine.run itself, and the rest (protocol, queue, events, threads)
        "engine_run_median_s": round(median(out["engine"]), 6),
        "outside_engine_median_s": round(median(a - b for a, b in zip(out["daemon"], out["engine"])), 6),
        "queue_wait_median_s": round(median(out["queue_wait"]), 6),
        "first_progress_s": round(median(t for t, _ in out["first_progress"]), 6),
        "first_preview_s": round(median(t for t, _ in out["first_preview"]), 6),
        "first_preview_step": median(s for _, s in out["first_preview"]),
        "cancel_extra_steps": cancel,
        "raw": {"daemon_s": [round(x, 6) for x in out["daemon"]], "inprocess_s": [round(x, 6) for x in out["inproc"]]},
    }


def bench_transfer(runs: int, side: int = 4096) -> dict:
    import zmq
    from PIL import Image as PILImage

    from impasto.protocol import codec
    from impasto.protocol.messages import Generate, Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side]
    arr = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side), np.full_like(x, 255)], -1)
    arr = (arr + rng.integers(0, 8, arr.shape)).clip(0, 255).astype(np.uint8)
    msg = Generate(job="t", prompt="x", init_image=Image(side, side, arr.tobytes()), model="m")
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def sink():
        while not stop.is_set():
            if router.poll(200):
                frames = router.recv_multipart(copy=True)
                codec.decode(frames[1:])
                router.send_multipart([frames[0], b"ok"])

    th = threading.Thread(target=sink, daemon=True)
    th.start()
    d = ctx.socket(zmq.DEALER)
    d.connect(f"tcp://127.0.0.1:{port}")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        d.send_multipart(codec.encode(msg), copy=False)
        d.recv_multipart()
        times.append(time.perf_counter() - t0)
    d.close(0)
    stop.set()
    th.join()
    router.close(0)
    png = []
    img = PILImage.fromarray(arr, "RGBA")
    for _ in range(max(3, runs // 2)):
        t0 = time.perf_counter()
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        PILImage.open(io.BytesIO(buf.getvalue())).load()
        png.append(time.perf_counter() - t0)
    return {"transfer_4096_pyzmq_s": round(median(times), 6), "png_level6_encode_decode_4096_s": round(median(png), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, daemon and baseline alike")
    ap.add_argument("--sizes", type=int, nargs=2, default=(128, 256), help="the tiny model's two sizes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--transfer", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from conftest import DaemonProcess
    from impasto.backend.engine.models import starter_dir
    from impasto.backend.tooling.tiny_model import build_tiny_model

    load_before = os.getloadavg()
    models = Path(tempfile.mkdtemp(prefix="impasto-bench-models-"))
    tiny = build_tiny_model(models / "tiny")
    home = Path(tempfile.mkdtemp(prefix="impasto-bench-"))
    daemon = DaemonProcess(models, home, env_extra={"OMP_NUM_THREADS": str(args.threads),
                                                    "MKL_NUM_THREADS": str(args.threads)}).start()
    cases = []
    try:
        starter = starter_dir()
        if starter is not None:
            cases.append(bench_case(daemon, starter, "starter", 64, args.runs, args.steps, args.threads))
        for size in args.sizes:
            cases.append(bench_case(daemon, tiny, "tiny", size, args.runs, args.steps, args.threads))
    finally:
        daemon.stop()
    summary = {
        "bench": "overhead",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs ({cpu_model()})",
        "torch": torch.__version__, "torch_threads": args.threads, "seed": SEED, "sampler": "euler", "cfg": 7.0,
        "baseline": "the same diffusers StableDiffusionPipeline called in-process, same settings and threads",
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "cases": cases,
    }
    if args.transfer:
        summary["transfer"] = bench_transfer(max(5, args.runs // 2))
    print(f"{args.steps} steps, {args.runs} runs each, {args.threads} torch thread(s) on both sides (medians)")
    for c in cases:
        print(f"  {c['model']:8s} {c['size']:4d}px  in-process {c['inprocess_median_s'] * 1000:8.1f} ms   daemon "
              f"{c['daemon_median_s'] * 1000:8.1f} ms   ratio {c['ratio_daemon_over_inprocess']:.3f} "
              f"(paired {c['paired_ratio_median']:.3f})   "
              f"engine {c['engine_run_median_s'] * 1000:.1f} ms + outside {c['outside_engine_median_s'] * 1000:.1f} ms   "
              f"first preview {c['first_preview_s'] * 1000:.0f} ms (step {c['first_preview_step']:g})   "
              f"cancel extra steps {c['cancel_extra_steps']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
