"""A short seeded fuzz run in the default suite (bench/soak.py runs 100,000+ of the same messages).

Every message is a structured mutation of a real request (or random frames);
the daemon must answer each with a typed code - never ``internal`` - and keep
serving.  A failure names ``(seed, index)`` so it replays exactly.
"""
from __future__ import annotations

import os

import fuzzing

SEED = int(os.environ.get("IMPASTO_FUZZ_SEED", "1301"))
COUNT = int(os.environ.get("IMPASTO_FUZZ_COUNT", "1500"))


def test_fuzzed_messages_get_typed_answers_and_the_daemon_keeps_serving(fresh_daemon):
    d = fresh_daemon()
    report = fuzzing.run(d.endpoint, COUNT, SEED, alive=d.alive)
    summary = report.as_dict()
    assert report.sent == COUNT, summary
    assert report.hangs == 0, summary
    assert not report.internal, summary
    assert not report.undecodable, summary  # every answer is itself a valid message
    assert d.alive(), summary
    # the run exercised the typed paths, not just one of them
    assert {"bad_field", "bad_message", "version_mismatch"} <= set(report.codes), summary
    from impasto.protocol import Client

    with Client(d.endpoint) as c:
        st = c.status(10)
        assert st.jobs == []  # every accepted job was cancelled; nothing is left running


def test_the_generator_is_deterministic():
    import random

    def run(seed):
        rng = random.Random(seed)
        return [fuzzing.generate(rng, i).frames for i in range(200)]

    assert run(7) == run(7) and run(7) != run(8)
