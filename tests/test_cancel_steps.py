"""A cancel reports the steps that actually ran (issue 21 item 3).

The cancel check runs at each step's end *before* that step's progress event,
so the step in flight when the cancel lands sends no progress event: counting
events under-reports by one.  The ``cancelled`` event's ``steps`` says how many
ran; for a job cancelled after step k's progress it is k + 1.
"""
from __future__ import annotations

from impasto.protocol.messages import Cancelled, Generate, Progress


def test_cancelled_event_carries_the_steps_run(client):
    job = client.submit(Generate(prompt="a red circle", steps=200, width=64, height=64, sampler="euler", seed=3,
                                 model="tiny"))
    last, sent, final = 0, False, None
    for ev in job.events(timeout=120):
        if isinstance(ev, Progress):
            last = ev.step
            if not sent and ev.step >= 2:
                job.cancel()
                sent = True
        elif isinstance(ev, Cancelled):
            final = ev
    assert final is not None and final.steps is not None
    assert final.steps == last + 1 and final.steps < 200


def test_a_queued_job_cancelled_before_it_ran_reports_no_steps(client):
    blocker = client.submit(Generate(prompt="x", steps=200, width=64, height=64, seed=1, model="tiny"))
    queued = client.submit(Generate(prompt="y", steps=4, width=64, height=64, seed=1, model="tiny"))
    queued.cancel()
    events = list(queued.events(timeout=60))
    blocker.cancel()
    list(blocker.events(timeout=120))
    assert isinstance(events[-1], Cancelled) and events[-1].steps is None
