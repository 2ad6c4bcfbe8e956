"""Live painting latency: from a stroke's end in the client to the new picture on the canvas.

What one "stroke" is here: the bench paints a short line of dots into its own
RGBA canvas (a numpy array, as a client's layer) and calls
``LiveSession.stroke()`` (pen up).  The session (the shared client core,
protocol/live.py) debounces, reads the canvas (``tobytes``), plans the live
job (:func:`plan_live`), sends it to a real daemon (``impasto serve``
subprocess, real pyzmq), and on the result the bench paints the returned
picture into a live-layer array.  The latency is *stroke end -> that paint
done*, so it includes the debounce, reading and sending the layer, the
daemon, the engine, and painting the result - everything the artist waits for
except the host's own screen refresh.

Two runs per canvas size (256 and 512 px):

* **isolated strokes** (``--strokes``, spaced ``--gap`` s apart, longer than a
  job): every stroke gets its own picture; median and p95 latency;
* **rapid strokes** (``--rapid`` strokes ``--rapid-gap`` s apart, faster than
  a job), under both policies of the client core (``cancel``: a stroke
  cancels the pending job; ``finish``: the running job finishes, the newest
  plan waits): jobs sent / painted (during the flurry and in all) / cancelled
  vs strokes, and the latency from the *last* stroke to the last picture.

Baseline, same run, same daemon, same threads: the same img2img request sent
*without* ``live`` and waited for (submit -> result, no debounce, no paint) -
the "54 ms / 59 ms" figure of the issue.  Reference, same run: the starter
alone at 4 DDIM steps, CFG 5 (its own sampler and guidance at the live step
count: what live painting ran before the few-step starter), submit -> result.

The model: the starter as the daemon finds it (``--starter DIR`` sets
``IMPASTO_STARTER_DIR``).  When its listing carries a ``live`` block (its
LCM-LoRA shipped beside it, ``backend/engine/bundled.py``) the live job is
whatever the client core plans from the listing alone - the LoRA on, LCM,
4 steps, CFG 1, strength 0.5; a starter without one (the old 64 px shapes
starter) runs at 4 steps of its own DDIM and CFG 5 as before.  The starter
paints at its native size (128 px for the scenes starter, 64 for the old
one) and upscales, so 256 and 512 differ only on the client and transfer side.

``--live-unet trace|compile|off`` (``IMPASTO_LIVE_COMPILE`` of the daemon; default ``trace``, the
daemon's own default; ``--live-compile`` = ``compile``): live jobs' UNet calls through a traced
or compiled copy, or the UNet itself (``backend/engine/live_unet.py``); the warm-up repaints
until the daemon reports its traced or compiled UNet in use, then everything is measured as
above (the baseline and references are not live jobs: they never use it).

Usage: python bench/live_latency.py [--strokes 60] [--rapid 60] [--threads 1] [--debounce 0.05]
       [--starter DIR] [--publish NAME] [--live-unet trace|compile|off]
Writes bench/results/live_latency.json (``--publish NAME``: NAME.json; ``--no-write`` to only print).
"""
from __future__ import annotations

import argparse
from collections import Counter
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import results_io  # noqa: E402  (import early: it notes the load average when the run starts)

import numpy as np  # noqa: E402

PROMPT = "a red circle on a blue background"
SEED = 4321
STEPS = 4
STRENGTH = 0.5


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Canvas:
    """A client's layer (RGBA8) plus the live layer results are painted into."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.pixels = np.zeros((size, size, 4), np.uint8)
        self.pixels[..., 2] = 200
        self.pixels[..., 3] = 255
        self.live = np.zeros_like(self.pixels)
        self.lock = threading.Lock()

    def stroke(self) -> None:
        """A short line of 8 px dots in a random colour (what a brush stroke leaves)."""
        s = self.size
        x, y = self.rng.integers(8, s - 8, 2)
        dx, dy = self.rng.integers(-6, 7, 2)
        colour = np.append(self.rng.integers(0, 256, 3), 255).astype(np.uint8)
        with self.lock:
            for i in range(10):
                cx, cy = int(np.clip(x + i * dx, 4, s - 5)), int(np.clip(y + i * dy, 4, s - 5))
                self.pixels[cy - 4:cy + 4, cx - 4:cx + 4] = colour

    def read(self) -> bytes:
        with self.lock:
            return self.pixels.tobytes()

    def paint(self, image) -> None:
        arr = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 4)
        with self.lock:
            self.live[:] = arr


def live_model(client):
    """(recommendation, settings, description) of the live job on the daemon's starter."""
    from impasto.protocol.settings import Recommendation, Settings

    models = client.models()
    rec = Recommendation.for_model(models.models, "starter", models.default)
    entry = next((m for m in models.models if m.get("name") == "starter"), {})
    native = entry.get("native_size")
    if rec.live_concept:      # the few-step starter: the client core's plan from the listing alone
        settings = Settings(prompt=PROMPT, model="starter", strength=STRENGTH, seed=SEED)
        what = (f"the starter ({native} px) with its shipped LCM-LoRA ({rec.live_concept}), switched on by the "
                f"client core: {rec.live.sampler}, {rec.live.steps} steps, CFG {rec.live.cfg_scale:g}, "
                f"strength {STRENGTH}")
    else:                     # no few-step LoRA: the starter's own sampler at few steps (the old stand-in)
        settings = Settings(prompt=PROMPT, model="starter", steps=STEPS, strength=STRENGTH, seed=SEED)
        what = (f"stand-in: the starter ({native} px, no few-step LoRA) at {STEPS} steps of its {rec.sampler}, "
                f"CFG {rec.cfg_scale:g}, strength {STRENGTH}")
    return rec, settings, what


def run_size(client, size: int, args) -> dict:
    from dataclasses import replace

    from impasto.protocol.live import LiveSession, plan_live

    rec, settings, what = live_model(client)
    canvas = Canvas(size, SEED + size)
    latencies, arrivals, sends, engine, unet_ran = [], [], [], [], []
    painted = threading.Event()

    def read_plan(session):
        return plan_live((size, size), settings, session.seed, rgba=canvas.read(), recommendation=rec)

    def on_result(update):
        canvas.paint(update.result.images[0])
        latencies.append(time.monotonic() - update.stroke_at)
        arrivals.append(update.stroke_to_result_s)
        sends.append(update.submitted_at - update.stroke_at)
        engine.append(update.result.timings.get("total", 0.0))
        unet_ran.append(update.result.info.get("live_unet", "eager (live UNet off)"))
        painted.set()

    # warm-up (model resident, prompt embeddings cached, first-call costs paid), then the baseline
    warm = LiveSession(client, read_plan, on_result, debounce=args.debounce, seed=SEED)
    for _ in range(3):
        warm.repaint_now().wait(timeout=120)
    if args.live_unet != "off":   # the daemon builds its live UNet in the background: measure once it is in use
        word = {"trace": "traced", "compile": "compiled"}[args.live_unet]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            res = warm.repaint_now().wait(timeout=120)
            if getattr(res, "info", {}).get("live_unet") == word:
                break
            time.sleep(1.0)
        else:
            raise SystemExit(f"the daemon's live UNet was never {word} (see its log)")
    time.sleep(0.1)
    warm.close()
    latencies.clear(), arrivals.clear(), sends.clear(), engine.clear(), unet_ran.clear()
    baseline = []
    # references (LoRA off): the starter alone at the live step count with its own sampler and CFG (what live
    # painting ran before the few-step starter); with its LoRA's sampler and CFG (the adapter's own cost)
    off = [(rec.live_concept, 0.0)] if rec.live_concept else []
    refs = {f"starter alone, {rec.sampler} {STEPS}, CFG {rec.cfg_scale:g}":
            replace(settings, steps=STEPS, sampler=rec.sampler, cfg_scale=rec.cfg_scale).set_concepts(off)}
    if rec.live is not None:
        refs[f"starter alone, {rec.live.sampler} {STEPS}, CFG {rec.live.cfg_scale:g}"] = replace(
            settings, steps=STEPS, sampler=rec.live.sampler, cfg_scale=rec.live.cfg_scale).set_concepts(off)
    reference = {k: [] for k in refs} if args.reference else {}
    for i in range(args.strokes):
        canvas.stroke()
        plan = plan_live((size, size), settings, SEED, rgba=canvas.read(), recommendation=rec)
        plan.request.live = False          # the same request, without live: sent and waited for
        if i == 0:
            job = {k: getattr(plan.request, k) for k in ("sampler", "steps", "cfg_scale", "strength")}
            job["concepts"] = [list(c) for c in plan.request.concepts]
        t0 = time.monotonic()
        client.submit(plan.request).wait(timeout=120)
        baseline.append(time.monotonic() - t0)
        for name, series in reference.items():
            ref = plan_live((size, size), refs[name], SEED, rgba=canvas.read(), recommendation=rec).request
            ref.live = False
            t0 = time.monotonic()
            client.submit(ref).wait(timeout=120)
            series.append(time.monotonic() - t0)

    # isolated strokes: each gets a picture
    session = LiveSession(client, read_plan, on_result, debounce=args.debounce, seed=SEED).run_timer()
    results_seen = []
    for i in range(args.strokes):
        painted.clear()
        canvas.stroke()
        session.stroke()
        painted.wait(30)
        results_seen.append(session.stats.painted)
        time.sleep(args.gap)
    time.sleep(0.3)
    iso = dict(session.stats.as_dict())
    iso_lat, iso_arr, iso_send, iso_eng = list(latencies), list(arrivals), list(sends), list(engine)
    iso_unet = dict(Counter(unet_ran[-len(iso_lat):]))   # which UNet painted each isolated stroke's picture
    session.close()

    # rapid strokes: newest wins, under each policy of the client core
    rapid = {}
    for policy in ("cancel", "finish"):
        latencies.clear(), arrivals.clear()
        session = LiveSession(client, read_plan, on_result, debounce=args.debounce, seed=SEED,
                              policy=policy).run_timer()
        queue_seen = []
        t0 = time.monotonic()
        for i in range(args.rapid):
            canvas.stroke()
            session.stroke()
            time.sleep(args.rapid_gap)
            if i % 10 == 0:
                queue_seen.append(len(client.status().jobs))
        painted_during = session.stats.painted
        flurry_s = time.monotonic() - t0
        deadline = time.monotonic() + 30
        while (session.busy or session.debounce.pending or session._waiting is not None) \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)
        rapid[policy] = {**session.stats.as_dict(), "gap_s": args.rapid_gap, "flurry_s": round(flurry_s, 3),
                         "painted_during_flurry": painted_during,
                         "last_stroke_to_paint_s": latencies[-1] if latencies else None,
                         "client_jobs_pending_seen_max": max(queue_seen) if queue_seen else 0}
        session.close()
    return {
        "size": size, "model": what, "live_job": job,
        "baseline_submit_to_result_s": {"median": statistics.median(baseline), "p95": pct(baseline, 0.95),
                                        "n": len(baseline)},
        "references_submit_to_result_s": {name: {"median": statistics.median(xs), "p95": pct(xs, 0.95),
                                                 "n": len(xs)} for name, xs in reference.items()},
        "isolated": {**iso, "stroke_to_paint_s": {"median": statistics.median(iso_lat), "p95": pct(iso_lat, 0.95),
                                                  "n": len(iso_lat)},
                     "stroke_to_result_arrival_s": {"median": statistics.median(iso_arr),
                                                    "p95": pct(iso_arr, 0.95)},
                     "stroke_to_job_sent_s": {"median": statistics.median(iso_send), "p95": pct(iso_send, 0.95)},
                     "engine_total_s": {"median": statistics.median(iso_eng), "p95": pct(iso_eng, 0.95)},
                     "live_unet": iso_unet,
                     "ratio_median_over_baseline": statistics.median(iso_lat) / statistics.median(baseline)},
        "rapid": rapid,
        "raw": {"baseline_s": [round(x, 5) for x in baseline], "isolated_s": [round(x, 5) for x in iso_lat],
                "references_s": {k: [round(x, 5) for x in xs] for k, xs in reference.items()}},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strokes", type=int, default=60, help="isolated strokes per size (>= 50 for the docs)")
    ap.add_argument("--gap", type=float, default=0.25, help="seconds between isolated strokes")
    ap.add_argument("--rapid", type=int, default=60)
    ap.add_argument("--rapid-gap", type=float, default=0.07,
                    help="seconds between rapid strokes (above the debounce, below a job: newest wins)")
    ap.add_argument("--debounce", type=float, default=None, help="default: protocol/live.py's DEBOUNCE_S")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--starter", default=None, help="the starter folder the daemon uses (IMPASTO_STARTER_DIR)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the starter-alone reference series")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--publish", default="live_latency", help="write bench/results/<name>.json")
    ap.add_argument("--live-unet", choices=("trace", "compile", "off"), default="trace",
                    help="the daemon's IMPASTO_LIVE_COMPILE; measured once its traced / compiled live UNet is in use")
    ap.add_argument("--live-compile", dest="live_unet", action="store_const", const="compile",
                    help="= --live-unet compile")
    args = ap.parse_args(argv)
    from impasto.protocol.live import DEBOUNCE_S

    args.debounce = DEBOUNCE_S if args.debounce is None else args.debounce
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from conftest import DaemonProcess
    from impasto.protocol import Client

    models = Path(tempfile.mkdtemp(prefix="impasto-live-models-"))
    home = Path(tempfile.mkdtemp(prefix="impasto-live-home-"))
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["IMPASTO_LIVE_COMPILE"] = {"trace": "trace", "compile": "1", "off": "0"}[args.live_unet]
    if args.starter:
        env["IMPASTO_STARTER_DIR"] = str(Path(args.starter).resolve())
    daemon = DaemonProcess(models, home, env_extra=env).start()
    cases = []
    try:
        with Client(daemon.endpoint) as client:
            for size in args.sizes:
                cases.append(run_size(client, size, args))
                c = cases[-1]
                print(f"{size}px: stroke->paint median {c['isolated']['stroke_to_paint_s']['median'] * 1000:.1f} ms "
                      f"p95 {c['isolated']['stroke_to_paint_s']['p95'] * 1000:.1f} ms "
                      f"(baseline submit->result {c['baseline_submit_to_result_s']['median'] * 1000:.1f} ms); "
                      f"rapid (cancel): {c['rapid']['cancel']['strokes']} strokes -> {c['rapid']['cancel']['submitted']} "
                      f"jobs sent, {c['rapid']['cancel']['painted']} painted, {c['rapid']['cancel']['cancelled']} "
                      f"cancelled; (finish): {c['rapid']['finish']['submitted']} sent, "
                      f"{c['rapid']['finish']['painted']} painted; isolated: stroke->sent "
                      f"{c['isolated']['stroke_to_job_sent_s']['median'] * 1000:.1f} ms, engine "
                      f"{c['isolated']['engine_total_s']['median'] * 1000:.1f} ms"
                      f"; UNet: {c['isolated']['live_unet']}"
                      + "".join(f"; {k}: {v['median'] * 1000:.1f} ms"
                                for k, v in c["references_submit_to_result_s"].items()), flush=True)
    finally:
        daemon.stop()
    rows, rrows = [], []
    for c in cases:
        iso, base, rap = c["isolated"], c["baseline_submit_to_result_s"], c["rapid"]
        refs = c["references_submit_to_result_s"]
        rows.append([f"{c['size']}²", iso["stroke_to_paint_s"]["n"],
                     f"{iso['stroke_to_paint_s']['median'] * 1000:.1f}", f"{iso['stroke_to_paint_s']['p95'] * 1000:.1f}",
                     f"{base['median'] * 1000:.1f}", f"{iso['ratio_median_over_baseline']:.2f}",
                     "; ".join(f"{k}: {v['median'] * 1000:.1f}" for k, v in refs.items()) or "–",
                     f"{iso['submitted']} / {iso['strokes']}"])
        for policy, r in rap.items():
            last = r["last_stroke_to_paint_s"]
            rrows.append([f"{c['size']}²", policy, r["strokes"], f"{r['gap_s'] * 1000:.0f}", r["submitted"],
                          r["painted_during_flurry"], r["painted"], r["cancelled"], r["stale_results"],
                          f"{last * 1000:.1f}" if last is not None else "–"])
    tables = {
        "isolated": {"caption": f"Stroke end → picture painted, strokes {args.gap * 1000:.0f} ms apart (each gets a "
                                f"picture); debounce {args.debounce * 1000:.0f} ms included. Model: "
                                f"{cases[0]['model'] if cases else '?'}. Baseline: the same request without `live`, "
                                f"submit → result; starter alone: LoRA off, the same request at {STEPS} steps of "
                                f"its own sampler and CFG (and of the LoRA's), submit → result.",
                     "columns": ["canvas", "strokes", "median ms", "p95 ms", "baseline median ms",
                                 "median / baseline", "starter alone, median ms", "jobs / strokes"], "rows": rows},
        "rapid": {"caption": "Strokes faster than jobs, under the client core's two policies: `cancel` (a new "
                             "stroke cancels the pending job: the default, newest wins at once) and `finish` (the "
                             "running job finishes, the newest plan waits for it). Jobs sent, pictures painted "
                             "during the flurry and in all, cancelled jobs, vs strokes.",
                  "columns": ["canvas", "policy", "strokes", "gap ms", "jobs sent", "painted during flurry",
                              "painted", "cancelled", "stale results dropped", "last stroke → picture ms"],
                  "rows": rrows},
    }
    if not args.no_write:
        path = results_io.write_result(
            args.publish, {"cases": cases, "debounce_s": args.debounce,
                             "model": cases[0]["model"] if cases else "", "starter_dir": args.starter or "shipped",
                             "steps": STEPS, "strength": STRENGTH},
            baseline="the same img2img request sent without `live` and waited for (submit -> result), same daemon, "
                     "same run, same threads",
            seeds=[SEED, SEED + 256, SEED + 512], threads=args.threads,
            settings={"prompt": PROMPT, "gap_s": args.gap, "rapid_gap_s": args.rapid_gap,
                      "live_unet": args.live_unet}, tables=tables,
            notes=["the canvas's own screen refresh and input handling are not part of this "
                   "figure (measured without a GUI)"],
            argv=sys.argv if argv is None else ["bench/live_latency.py", *argv])
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
