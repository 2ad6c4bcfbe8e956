"""Daemon overhead: what the protocol + queue + worker cost on top of diffusers.

Measures, in one run on the same machine:

1. end-to-end latency of a 256x256 text-to-image job through the daemon vs the
   same diffusers pipeline called in-process with identical settings (medians
   of N runs each, interleaved so machine noise hits both alike);
2. time to the first progress event and the first preview, in seconds and in
   denoising steps;
3. cancel latency in steps (cancel sent after step k: how many more steps ran);
4. a 4096x4096 RGBA image through the protocol (encode, ZeroMQ send over
   loopback, receive, decode) vs PNG encode + decode of the same image.

Usage: python bench/overhead.py [--runs 10] [--steps 20] [--model DIR] [--json out.json]
With no --model it builds the tiny test model in a temp folder.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def median(xs):
    return statistics.median(xs)


def bench_e2e(model_dir: Path, runs: int, steps: int, size: int):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from conftest import DaemonProcess
    from impasto.protocol import Client
    from impasto.protocol.messages import Generate, Progress

    home = Path(tempfile.mkdtemp(prefix="impasto-bench-"))
    daemon = DaemonProcess(model_dir.parent, home).start()
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    name = model_dir.name
    req = dict(prompt="a red circle on a blue background", steps=steps, cfg_scale=7.0, width=size, height=size,
               sampler="euler", model=name, seed=1234)

    def in_process():
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        t0 = time.perf_counter()
        img = pipe(req["prompt"], num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
                   generator=[torch.Generator("cpu").manual_seed(1234)]).images[0]
        img.convert("RGBA").tobytes()
        return time.perf_counter() - t0

    out = {"daemon": [], "inproc": [], "first_progress": [], "first_preview": [], "step_time": []}
    with Client(daemon.endpoint) as client:
        client.submit(Generate(**req)).wait(600)  # warm: model loaded, preview map fitted
        in_process()
        for i in range(runs):
            out["inproc"].append(in_process())
            t0 = time.perf_counter()
            res = client.submit(Generate(**req)).wait(600)
            out["daemon"].append(time.perf_counter() - t0)
            out["step_time"].append(res.timings["denoise"] / steps)
        # first progress / first preview
        for i in range(max(3, runs // 2)):
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
        # cancel latency in steps
        cancel_steps = []
        for i in range(max(3, runs // 2)):
            job = client.submit(Generate(**{**req, "steps": 200}))
            sent_at, last = None, 0
            for ev in job.events(timeout=600):
                if isinstance(ev, Progress):
                    last = ev.step
                    if sent_at is None and ev.step >= 3:
                        sent_at = ev.step
                        job.cancel()
            cancel_steps.append(last - sent_at)
        out["cancel_steps"] = cancel_steps
    daemon.stop()
    return out


def bench_transfer(runs: int, side: int = 4096):
    import zmq
    from PIL import Image as PILImage

    from impasto.protocol import codec
    from impasto.protocol.messages import Generate, Image
    from impasto.protocol.zmtp import ZmtpDealer

    rng = np.random.default_rng(0)
    # a painting-like image: smooth gradients + noise (PNG is neither best- nor worst-case on it)
    y, x = np.mgrid[0:side, 0:side]
    arr = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side), np.full_like(x, 255)], -1)
    arr = (arr + rng.integers(0, 8, arr.shape)).clip(0, 255).astype(np.uint8)
    raw = arr.tobytes()
    msg = Generate(job="t", prompt="x", init_image=Image(side, side, raw), model="m")

    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def sink():  # receive, decode, reply with a tiny ack
        while not stop.is_set():
            if router.poll(200):
                frames = router.recv_multipart(copy=True)
                codec.decode(frames[1:])
                router.send_multipart([frames[0], b"ok"])

    th = threading.Thread(target=sink, daemon=True)
    th.start()
    results = {}
    for transport in ("pyzmq", "zmtp"):
        if transport == "pyzmq":
            d = ctx.socket(zmq.DEALER)
            d.connect(f"tcp://127.0.0.1:{port}")
            send, recv = (lambda f: d.send_multipart(f, copy=False)), (lambda: d.recv_multipart())
        else:
            z = ZmtpDealer(f"tcp://127.0.0.1:{port}")
            send, recv = z.send_multipart, (lambda: z.recv_multipart(timeout=60))
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            send(codec.encode(msg))
            recv()
            times.append(time.perf_counter() - t0)
        results[transport] = times
        d.close(0) if transport == "pyzmq" else z.close()
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
    results["png"] = png
    results["png_bytes"] = len(buf.getvalue())
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model is None:
        from impasto.backend.tiny_model import build_tiny_model

        args.model = build_tiny_model(Path(tempfile.mkdtemp(prefix="impasto-bench-models-")) / "tiny")
    e2e = bench_e2e(args.model, args.runs, args.steps, args.size)
    tr = bench_transfer(max(5, args.runs // 2))
    d, i = median(e2e["daemon"]), median(e2e["inproc"])
    step = median(e2e["step_time"])
    fp = median(t for t, _ in e2e["first_progress"])
    fpv = median(t for t, _ in e2e["first_preview"])
    fpv_step = median(s for _, s in e2e["first_preview"])
    summary = {
        "model": str(args.model), "runs": args.runs, "steps": args.steps, "size": args.size,
        "daemon_median_s": d, "inprocess_median_s": i, "overhead_s": d - i, "overhead_pct": 100 * (d - i) / i,
        "step_median_s": step, "first_progress_s": fp, "first_progress_in_steps": fp / step,
        "first_preview_s": fpv, "first_preview_step": fpv_step, "cancel_extra_steps": e2e["cancel_steps"],
        "transfer_4096_pyzmq_s": median(tr["pyzmq"]), "transfer_4096_zmtp_s": median(tr["zmtp"]),
        "png_encode_decode_4096_s": median(tr["png"]), "png_bytes": tr["png_bytes"],
    }
    print(f"{args.size}x{args.size}, {args.steps} steps, {args.runs} runs each (medians)")
    print(f"  in-process diffusers   {i * 1000:9.1f} ms")
    print(f"  through the daemon     {d * 1000:9.1f} ms   overhead {1000 * (d - i):+.1f} ms ({summary['overhead_pct']:+.2f} %)")
    print(f"  one step               {step * 1000:9.1f} ms")
    print(f"  first progress event   {fp * 1000:9.1f} ms   (= {fp / step:.2f} steps incl. text encoding)")
    print(f"  first preview          {fpv * 1000:9.1f} ms   at step {fpv_step:g}")
    print(f"  cancel: extra steps after the cancel was sent: {e2e['cancel_steps']}")
    print(f"4096x4096 RGBA through the protocol (encode + send + decode):")
    print(f"  pyzmq {summary['transfer_4096_pyzmq_s'] * 1000:.1f} ms, pure-Python ZMTP "
          f"{summary['transfer_4096_zmtp_s'] * 1000:.1f} ms; PNG encode+decode "
          f"{summary['png_encode_decode_4096_s'] * 1000:.1f} ms "
          f"({summary['png_encode_decode_4096_s'] / summary['transfer_4096_pyzmq_s']:.1f}x slower than pyzmq)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
