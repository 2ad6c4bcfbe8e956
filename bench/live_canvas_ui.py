"""Does live painting keep the canvas responsive?  The UI thread's longest stalls, live on vs off.

The canvas (offscreen ``MainWindow``, 512 x 512, the starter via a real
daemon) gets ``--strokes`` brush strokes, one every ``--gap`` ms, driven from
Qt timers so they go through the event loop like an artist's.  A 2 ms
``QTimer`` notes how late each of its ticks comes: a tick late by X ms is X ms
the UI thread was busy - the time an input event would wait.  The same
strokes run twice in one process: live painting off (the baseline: what the
strokes themselves cost) and on (the live job is read, planned and sent, and
its picture put over the canvas, all on the UI thread; the job itself runs
in the daemon).  The live run also times the controller's own UI-thread work
(reading the canvas and planning; showing the picture).

Usage: python bench/live_canvas_ui.py [--strokes 40] [--gap 150] [--threads 1]
Writes bench/results/live_canvas_ui.json (``--no-write`` to only print).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import results_io  # noqa: E402

SEED = 7


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def spin(seconds: float, until) -> bool:
    """Run Qt's own event loop (no sleeps between turns, unlike headless.pump) until ``until()`` or timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, deadline = QEventLoop(), time.monotonic() + seconds
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: loop.quit() if until() or time.monotonic() > deadline else None)
    check.start()
    if not until():
        loop.exec()
    check.stop()
    return until()


def run(window, live: bool, strokes: int, gap_ms: int):
    from PySide6.QtCore import QPointF, QTimer
    from PySide6.QtGui import QColor

    from impasto.desktop import headless

    w = window
    late, last = [], [None]
    tick = QTimer()
    tick.setInterval(2)

    def on_tick():
        now = time.perf_counter()
        if last[0] is not None:
            late.append(max(0.0, now - last[0] - 0.002))
        last[0] = now

    tick.timeout.connect(on_tick)
    ui = {"read_plan": [], "show": []}
    if live:
        ctl = w.live
        real_read, real_show = ctl._read_plan, ctl._on_result

        def read_plan(session):
            t0 = time.perf_counter()
            try:
                return real_read(session)
            finally:
                ui["read_plan"].append(time.perf_counter() - t0)

        def show(update):
            t0 = time.perf_counter()
            real_show(update)
            ui["show"].append(time.perf_counter() - t0)

        ctl._read_plan, ctl._on_result = read_plan, show
        w.live.set_enabled(True)
        spin(60, lambda: w.live.candidate is not None)
    done = {"n": 0}

    def stroke(i):
        y = 40 + (i * 23) % 420
        pts = [w.view.to_widget(QPointF(x, y)) for x in (60, 200, 340, 460)]
        w.brush.color = QColor((i * 50) % 256, 200, 60)
        headless.drag(w.view, [(p.x(), p.y()) for p in pts])
        done["n"] += 1

    timers = []
    t_start = time.perf_counter()
    tick.start()
    for i in range(strokes):
        t = QTimer()
        t.setSingleShot(True)
        t.timeout.connect(lambda i=i: stroke(i))
        t.start(i * gap_ms)
        timers.append(t)
    spin(strokes * gap_ms / 1000 + 60, lambda: done["n"] == strokes)
    if live:
        spin(60, lambda: not w.live.session.busy and not w.live.session.debounce.pending)
    t_end = time.monotonic() + 0.3
    spin(1, lambda: time.monotonic() > t_end)
    tick.stop()
    wall = time.perf_counter() - t_start
    stats = w.live.session.stats.as_dict() if live else {}
    if live:
        w.live.set_enabled(False)
        w.live._read_plan, w.live._on_result = real_read, real_show
    return {"ticks": len(late), "late_ms": {"median": statistics.median(late) * 1000, "p99": pct(late, 0.99) * 1000,
                                            "max": max(late) * 1000},
            "ui_read_plan_ms": {"median": statistics.median(ui["read_plan"]) * 1000,
                                "max": max(ui["read_plan"]) * 1000} if ui["read_plan"] else None,
            "ui_show_ms": {"median": statistics.median(ui["show"]) * 1000,
                           "max": max(ui["show"]) * 1000} if ui["show"] else None,
            "strokes": done["n"], "wall_s": round(wall, 2), "live_stats": stats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strokes", type=int, default=40)
    ap.add_argument("--gap", type=int, default=150, help="ms between strokes")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--starter", default=None, help="the starter folder the daemon uses (IMPASTO_STARTER_DIR)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from conftest import DaemonProcess

    from impasto.desktop import headless
    from impasto.desktop.connection import DaemonLink
    from impasto.desktop.document import Document
    from impasto.desktop.main_window import MainWindow

    headless.application()
    home = Path(tempfile.mkdtemp(prefix="impasto-live-ui-"))
    os.environ["IMPASTO_HOME"] = str(home / "client")
    daemon = DaemonProcess(Path(tempfile.mkdtemp(prefix="impasto-live-ui-models-")), home / "daemon",
                           env_extra={"OMP_NUM_THREADS": str(args.threads),
                                      **({"IMPASTO_STARTER_DIR": str(Path(args.starter).resolve())}
                                         if args.starter else {})}).start()
    try:
        link = DaemonLink(daemon.endpoint, autostart=False, poll_ms=500)
        w = MainWindow(link, Document(args.size, args.size))
        w.resize(1360, 860)
        w.show()
        link.start()
        headless.pump(120, lambda: link.connected and w.panel.model.findData("starter") >= 0)
        w.view.fit()
        w.panel.model.setCurrentIndex(w.panel.model.findData("starter"))
        w.panel.prompt.setPlainText("a red circle on a blue background")
        w.panel.steps.setValue(4)        # sampler and CFG left at "model default": the live job's own
        w.panel.strength.setValue(0.5)
        w.panel.set_seed(SEED)
        w.select_tool("brush")
        w.size_spin.setValue(24)
        off = run(w, False, args.strokes, args.gap)
        on = run(w, True, args.strokes, args.gap)
        from impasto.protocol.live import live_job

        s, rec = live_job(w.panel.settings(), SEED, w.panel.recommendation())
        model = (f"the starter with its shipped LCM-LoRA ({rec.sampler}, {s.steps or rec.steps} steps, CFG "
                 f"{rec.cfg_scale:g})" if any(c["name"] == w.panel.recommendation().live_concept
                                            for c in s.concepts) else
                 f"the starter alone ({rec.sampler}, 4 steps, CFG {rec.cfg_scale:g})")
        w.live.set_enabled(False)
        link.close()
    finally:
        daemon.stop()
    for label, r in (("live off", off), ("live on", on)):
        print(f"{label}: UI late median {r['late_ms']['median']:.2f} ms, p99 {r['late_ms']['p99']:.1f} ms, "
              f"max {r['late_ms']['max']:.1f} ms over {r['ticks']} ticks; read+plan {r['ui_read_plan_ms']}, "
              f"show {r['ui_show_ms']}; {r['live_stats']}")
    rows = []
    for label, r in (("off (baseline)", off), ("on", on)):
        rp, sh = r["ui_read_plan_ms"], r["ui_show_ms"]
        rows.append([label, r["strokes"], r["ticks"], f"{r['late_ms']['median']:.2f}", f"{r['late_ms']['p99']:.1f}",
                     f"{r['late_ms']['max']:.1f}", f"{rp['median']:.1f} / {rp['max']:.1f}" if rp else "–",
                     f"{sh['median']:.1f} / {sh['max']:.1f}" if sh else "–",
                     f"{r['live_stats'].get('submitted', 0)} / {r['live_stats'].get('painted', 0)}" if r["live_stats"]
                     else "–"])
    table = {"caption": f"The canvas's UI thread while {args.strokes} brush strokes arrive {args.gap} ms apart on a "
                        f"{args.size}² canvas (offscreen, {model} through a real daemon): how late a "
                        "2 ms timer ticks (= how long an input event would wait), and the live controller's own "
                        "UI-thread work (median / max).",
             "columns": ["live painting", "strokes", "timer ticks", "late median ms", "late p99 ms", "late max ms",
                         "read + plan ms", "show picture ms", "jobs sent / painted"], "rows": rows}
    if not args.no_write:
        results_io.write_result("live_canvas_ui", {"off": off, "on": on, "size": args.size, "model": model,
                                                   "starter_dir": args.starter or "shipped"},
                                baseline="the same strokes with live painting off, same window, process and run",
                                seeds=[SEED], threads=args.threads, tables={"main": table},
                                notes=["offscreen Qt (no compositor, no screen refresh); strokes are driven by Qt "
                                       "timers through the event loop"],
                                argv=sys.argv if argv is None else ["bench/live_canvas_ui.py", *argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
