"""Live painting in the client core (protocol/live.py): debounce, the live job, newest wins - the last
against a real daemon, counting jobs run against strokes."""
from __future__ import annotations

import threading
import time

import pytest

from impasto.protocol.live import Debounce, LiveSession, plan_live, window_for_live
from impasto.protocol.settings import Recommendation, Settings


def test_debounce_is_due_only_after_a_quiet_pause():
    d = Debounce(0.1)
    assert d.remaining(0.0) is None and not d.take(0.0)
    d.poke(1.0)
    d.poke(1.05)                  # a stroke within the pause restarts it
    assert not d.take(1.1)
    assert d.remaining(1.1) == pytest.approx(0.05)
    assert d.take(1.16) and not d.pending and not d.take(2.0)


def _canvas(w, h, shade=0):
    return bytes(((x + shade) % 256 for y in range(h) for x in range(w) for _ in range(4)))


def test_a_live_job_is_a_refine_at_the_live_settings():
    s = Settings(prompt="a red circle", seed=-1, batch_size=4, preview=True, strength=0.4)
    rec = Recommendation(sampler="lcm", steps=4, cfg_scale=1.0)
    plan = plan_live((64, 48), s, seed=77, rgba=_canvas(64, 48), recommendation=rec)
    r = plan.request
    assert plan.kind == "img2img" and r.live and not r.preview and r.batch_size == 1 and r.seed == 77
    assert (r.sampler, r.steps, r.cfg_scale, r.strength) == ("lcm", 4, 1.0, 0.4)
    assert s.batch_size == 4 and s.preview           # the artist's own settings are untouched


def test_a_live_job_inside_a_selection_reads_and_repaints_only_its_window():
    s = Settings(prompt="x", mask_blur=2, padding=8)
    doc, sel = (256, 256), (100, 100, 132, 120)
    window = window_for_live(doc, sel, s)
    x0, y0, x1, y1 = window
    assert 0 < x0 <= 100 and 0 < y0 <= 100 and x1 < 256 and y1 < 256
    w, h = x1 - x0, y1 - y0
    mask = bytearray(w * h)
    for y in range(sel[1] - y0, sel[3] - y0):
        for x in range(sel[0] - x0, sel[2] - x0):
            mask[y * w + x] = 255
    plan = plan_live(doc, s, 5, window=window, rgba=_canvas(w, h), mask=bytes(mask), selection=sel)
    assert plan.kind == "edit" and plan.request.live
    assert (plan.request.init_image.width, plan.request.init_image.height) == (w, h)


# --------------------------------------------------------------------------- a real daemon


def _session(client, reads, painted, debounce=0.05, steps=4, strength=0.6, policy="cancel"):
    s = Settings(prompt="a red circle", model="tiny", steps=steps, sampler="euler", cfg_scale=5.0, strength=strength)
    version = {"n": 0}

    def read_plan(session):
        version["n"] += 1
        reads.append(version["n"])
        return plan_live((32, 32), s, session.seed, rgba=_canvas(32, 32, shade=version["n"]))

    done = threading.Event()

    def on_result(update):
        painted.append(update)
        done.set()

    return LiveSession(client, read_plan, on_result, debounce=debounce, seed=9, policy=policy), done


def _settle(session, timeout=60.0):
    """Until no job runs or waits (or ``timeout``), then a moment for the last events."""
    deadline = time.monotonic() + timeout
    while (session.busy or session._waiting is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)


def test_a_burst_of_strokes_is_one_job(client):
    reads, painted = [], []
    session, done = _session(client, reads, painted, debounce=0.15)
    session.run_timer()
    try:
        for _ in range(30):                 # a scribble: 30 stroke events 5 ms apart
            session.stroke()
            time.sleep(0.005)
        assert done.wait(60)
        time.sleep(0.3)
    finally:
        session.close()
    assert session.stats.strokes == 30
    assert session.stats.submitted == len(reads) == 1 and len(painted) == 1
    assert painted[0].result.images[0].width == 32 and painted[0].stroke_to_result_s > 0


def test_newest_wins_stale_jobs_are_cancelled_never_queued(client):
    """Strokes arrive faster than jobs finish: each new job cancels the stale one; only the newest's
    result is painted; the daemon never holds more than one live job of ours."""
    reads, painted = [], []
    session, done = _session(client, reads, painted, debounce=0.0, steps=40, strength=1.0)
    seen_queue = []
    jobs = []
    for i in range(8):
        session.stroke()
        jobs.append(session.tick(session.clock() + 1))
        seen_queue.append(len(client.status().jobs))
        time.sleep(0.02)
    last = jobs[-1].wait(timeout=120)
    for j in jobs:
        j._done.wait(60)
    time.sleep(0.2)
    st = session.stats
    assert st.strokes == 8 and st.submitted == 8
    assert max(seen_queue) <= 2, seen_queue          # the newest plus (for an instant) the one being cancelled
    assert st.painted == 1 and painted[-1].result.job == last.job == jobs[-1].id
    assert st.cancelled + st.stale_results == 7 and st.cancelled >= 5, st.as_dict()
    assert client.status().jobs == []
    # what was painted is the newest job's (the 8th read of the canvas)
    assert painted[-1].job_index == 8 and reads[-1] == 8


def test_slow_strokes_each_get_a_picture(client):
    reads, painted = [], []
    session, _done = _session(client, reads, painted, debounce=0.02, steps=2)
    session.run_timer()
    try:
        for i in range(4):
            session.stroke()
            deadline = time.monotonic() + 60
            while len(painted) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        session.close()
    assert session.stats.submitted == 4 and session.stats.painted == 4 and session.stats.cancelled == 0
    assert [u.job_index for u in painted] == [1, 2, 3, 4]
    # one seed for the whole session: the same canvas paints the same picture
    assert {u.plan.request.seed for u in painted} == {9}


def test_repaint_now_skips_the_debounce(client):
    reads, painted = [], []
    session, done = _session(client, reads, painted, debounce=10.0)
    job = session.repaint_now()
    assert job.wait(timeout=60).steps_run > 0 and done.wait(5)
    assert session.stats.submitted == 1 and len(painted) == 1
    session.close()


class _SlowSend:
    """The real client, with each submit held 80 ms before it leaves (a busy host, a slow link): the
    window in which a stroke on one thread and a finished job on another could both send."""

    def __init__(self, client):
        self.client = client

    def submit(self, request, on_event=None):
        time.sleep(0.08)
        return self.client.submit(request, on_event=on_event)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_finish_policy_sends_one_job_at_a_time_even_when_sends_are_slow(client):
    """A result that sends the waiting plan and a stroke that arrives meanwhile must not both send: the
    daemon would supersede (cancel) the first of two live jobs from one client."""
    session, _done = _session(_SlowSend(client), [], [], debounce=0.0, steps=6, strength=1.0, policy="finish")
    in_daemon = []
    end = time.monotonic() + 4.0
    while time.monotonic() < end:            # strokes every 5 ms for 4 s, from this thread
        session.stroke()
        session.tick(session.clock() + 1)
        in_daemon.append(len(client.status().jobs))
        time.sleep(0.005)
    _settle(session)
    st = session.stats
    assert st.submitted >= 3, st.as_dict()
    assert st.cancelled == 0 and st.stale_results == 0 and st.painted == st.submitted, st.as_dict()
    assert max(in_daemon) <= 1, in_daemon


def test_finish_policy_keeps_painting_while_strokes_never_stop(client):
    """policy="finish": the running job finishes, the newest plan waits (replacing older waiting ones):
    nothing is cancelled, nothing queues, and pictures keep coming during a long flurry."""
    reads, painted = [], []
    session, _done = _session(client, reads, painted, debounce=0.0, steps=20, strength=1.0, policy="finish")
    seen = []
    for i in range(12):
        session.stroke()
        session.tick(session.clock() + 1)
        seen.append(len(client.status().jobs))
        time.sleep(0.03)
    _settle(session)
    st = session.stats
    assert st.cancelled == 0 and st.stale_results == 0, st.as_dict()
    assert 2 <= st.submitted < 12 and st.deferred >= 1 and st.painted == st.submitted, st.as_dict()
    assert max(seen) <= 1, seen                       # one live job at a time in the daemon
    assert painted[-1].plan.request.init_image.data == _canvas(32, 32, shade=12)   # the newest read is painted
    with pytest.raises(ValueError):
        LiveSession(client, session.read_plan, painted.append, policy="latest")
