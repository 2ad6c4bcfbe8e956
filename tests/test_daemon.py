"""The real daemon in a subprocess, driven through the real client library."""
import json
import time

import numpy as np
import pytest
import zmq

from conftest import plain_auth
from impasto.protocol import Client, JobCancelled, JobFailed, codec
from impasto.protocol.messages import (
    PROTOCOL_VERSION, Accepted, Cancelled, Error, ErrorCode, Generate, Hello, Image, Progress, ProtocolError, Result,
)

FAST = dict(model="tiny", width=64, height=64, steps=3, sampler="ddim", prompt="a red circle")
# A job slow enough to cancel while it runs (each step is a real UNet call).
SLOW = dict(model="tiny", width=256, height=256, steps=200, sampler="euler", prompt="a blue square")


def pixels(img: Image) -> np.ndarray:
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4)


def test_round_trip_txt2img(client):
    job = client.submit(Generate(seed=11, **FAST))
    events = list(job.events(timeout=120))
    assert isinstance(events[0], Accepted)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2, 3] and all(p.total == 3 for p in progress)
    result = events[-1]
    assert isinstance(result, Result)
    assert result.seeds == [11] and result.steps_run == 3
    img = result.images[0]
    assert (img.width, img.height) == (64, 64)
    assert pixels(img)[..., :3].std() > 0  # a real decoded picture, not a blank
    assert {"denoise", "decode", "total"} <= set(result.timings)


def test_same_request_is_bit_identical(client):
    a = client.submit(Generate(seed=5, sampler="euler_a", **{k: v for k, v in FAST.items() if k != "sampler"}))
    b = client.submit(Generate(seed=5, sampler="euler_a", **{k: v for k, v in FAST.items() if k != "sampler"}))
    c = client.submit(Generate(seed=6, sampler="euler_a", **{k: v for k, v in FAST.items() if k != "sampler"}))
    ra, rb, rc = a.wait(120), b.wait(120), c.wait(120)
    assert ra.images[0].data == rb.images[0].data
    assert ra.images[0].data != rc.images[0].data


def test_batch_uses_seed_plus_i(client):
    res = client.submit(Generate(seed=100, batch_size=3, **FAST)).wait(120)
    assert res.seeds == [100, 101, 102]
    assert len(res.images) == 3
    assert len({img.data for img in res.images}) == 3
    single = client.submit(Generate(seed=101, **FAST)).wait(120)
    # image i is seeded by seed+i alone: the same composition as a single job with that seed
    diff = np.abs(pixels(single.images[0]).astype(int) - pixels(res.images[1]).astype(int))
    assert diff.max() <= 2


def test_result_comes_back_at_asked_size(client):
    res = client.submit(Generate(seed=1, **{**FAST, "width": 67, "height": 45})).wait(120)
    assert (res.images[0].width, res.images[0].height) == (67, 45)


def test_preview_events_are_small_images(client):
    job = client.submit(Generate(seed=2, preview=True, **FAST))
    res = job.wait(120)
    assert res.images
    previews = [e.preview for e in list(job._queue.queue) if isinstance(e, Progress)]
    assert previews and all(p is not None for p in previews)
    assert all(max(p.width, p.height) <= 256 for p in previews)


# A step of ~0.5 s (tiny model, 384 px, the daemon's one thread; measured 2026-12-01): the client has
# half a second to send its cancel before the next step ends.
CANCELLABLE = {**SLOW, "width": 384, "height": 384}


def test_cancel_running_job_stops_at_the_step_in_flight(client):
    """The daemon checks the cancel at every step end, before reporting the step: the step running
    when the cancel lands is the last one, and it sends no progress event.

    The client cancels on seeing step k.  Step k+1 is then running; at most its event can still
    arrive, if it was already on the wire when the cancel was sent; k+2 never does.  The cancelled
    event reports the steps that actually ran: the last reported step plus the unreported one in flight.
    """
    job = client.submit(Generate(seed=3, **CANCELLABLE))
    seen_at_cancel = None
    last_step = 0
    for ev in job.events(timeout=120):
        if isinstance(ev, Progress):
            last_step = ev.step
            if seen_at_cancel is None and ev.step >= 2:
                seen_at_cancel = ev.step
                job.cancel()
    assert isinstance(job.outcome, Cancelled)
    assert seen_at_cancel is not None and last_step <= seen_at_cancel + 1, (seen_at_cancel, last_step)
    assert job.outcome.steps == last_step + 1, (job.outcome.steps, last_step)
    with pytest.raises(JobCancelled):
        job.wait(1)


def test_cancel_queued_job_never_runs(client):
    running = client.submit(Generate(seed=4, **SLOW))
    queued = client.submit(Generate(seed=4, **FAST))
    for ev in running.events(timeout=60):
        if isinstance(ev, Progress):
            break
    queued.cancel()
    evs = list(queued.events(timeout=60))
    assert isinstance(evs[-1], Cancelled)
    assert not any(isinstance(e, Progress) for e in evs)
    running.cancel()
    with pytest.raises(JobCancelled):
        running.wait(120)


def test_two_clients_cancel_only_their_own(daemon):
    with Client(daemon.endpoint) as a, Client(daemon.endpoint) as b:
        ja = a.submit(Generate(job="same-id", seed=1, **SLOW))
        jb = b.submit(Generate(job="same-id", seed=1, **FAST))  # same id, other client: allowed
        for ev in ja.events(timeout=60):
            if isinstance(ev, Progress):
                break
        a.cancel("same-id")
        with pytest.raises(JobCancelled):
            ja.wait(120)
        assert isinstance(jb.wait(120), Result)
        # b cannot cancel a's jobs
        ja2 = a.submit(Generate(job="a-only", seed=2, **FAST))
        b.cancel("a-only")
        assert isinstance(ja2.wait(120), Result)


def test_priority_front_jumps_the_queue(client):
    blocker = client.submit(Generate(seed=1, **SLOW))
    for ev in blocker.events(timeout=60):
        if isinstance(ev, Progress):
            break
    order = []
    record = lambda name: (lambda e: isinstance(e, Result) and order.append(name))  # noqa: E731
    back1 = client.submit(Generate(seed=1, **FAST), on_event=record("back1"))
    back2 = client.submit(Generate(seed=2, **FAST), on_event=record("back2"))
    front = client.submit(Generate(seed=3, priority="front", **FAST), on_event=record("front"))
    deadline = time.monotonic() + 30
    while front.position is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (back1.position, back2.position, front.position) == (1, 2, 1)  # running job counts as ahead
    blocker.cancel()
    for j in (back1, back2, front):
        j.wait(120)
    assert order == ["front", "back1", "back2"]


def test_pure_python_client_matches_pyzmq(daemon):
    req = dict(seed=9, **FAST)
    with Client(daemon.endpoint, transport="pyzmq") as fast, Client(daemon.endpoint, transport="zmtp") as pure:
        assert pure.transport == "ZmtpDealer" and fast.transport == "PyzmqDealer"
        pure.hello()
        r1 = fast.submit(Generate(**req)).wait(120)
        r2 = pure.submit(Generate(**req)).wait(120)
    assert r1.images[0].data == r2.images[0].data


def test_status_and_models(client):
    st = client.status()
    assert st.device.startswith("cpu") and st.version
    models = client.models()
    assert any(m["name"] == "tiny" and m["arch"] == "sd15" for m in models.models)


def test_hello_version_mismatch_names_both(client):
    with pytest.raises(ProtocolError) as err:
        client._request(Hello(protocol=PROTOCOL_VERSION + 1), 10)
    assert err.value.code == ErrorCode.VERSION_MISMATCH
    assert str(PROTOCOL_VERSION) in err.value.message and str(PROTOCOL_VERSION + 1) in err.value.message


# --------------------------------------------------------------------------- bad input: one test per class


class RawPeer:
    """A raw DEALER that can send what no well-behaved client would."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        plain_auth(self.sock).connect(endpoint)

    def ask(self, frames, timeout=30):
        self.sock.send_multipart(frames)
        if not self.sock.poll(timeout * 1000):
            raise TimeoutError("no reply")
        return codec.decode(self.sock.recv_multipart())

    def close(self):
        self.sock.close(0)


@pytest.fixture
def raw(daemon):
    peer = RawPeer(daemon.endpoint)
    yield peer
    peer.close()


def _header(**fields):
    return json.dumps({"v": PROTOCOL_VERSION, **fields}).encode()


def assert_error(reply, code, field=None):
    assert isinstance(reply, Error), reply
    assert reply.code == code, reply
    if field is not None:
        assert reply.field == field, reply
    assert reply.message


def test_bad_unknown_message_type(raw, client):
    assert_error(raw.ask([_header(type="make_coffee")]), ErrorCode.BAD_MESSAGE, "type")
    assert client.ping(5)


def test_bad_malformed_json(raw, client):
    assert_error(raw.ask([b"{\"v\": 1, \"type\": "]), ErrorCode.BAD_MESSAGE)
    assert client.ping(5)


def test_bad_wrong_frame_count(raw, client):
    assert_error(raw.ask([_header(type="status"), b"surplus frame"]), ErrorCode.BAD_MESSAGE)
    g = codec.encode(Generate(job="f1", prompt="x", init_image=Image(4, 4, b"\0" * 64), model="tiny"))
    assert_error(raw.ask(g[:1]), ErrorCode.BAD_MESSAGE)
    assert client.ping(5)


def test_bad_image_bytes_not_matching_size(raw, client):
    frames = codec.encode(Generate(job="b1", prompt="x", init_image=Image(4, 4, b"\0" * 64), model="tiny"))
    frames[1] = b"\0" * 63
    reply = raw.ask(frames)
    assert_error(reply, ErrorCode.BAD_FIELD, "init_image")
    assert reply.job == "b1"
    assert client.ping(5)


@pytest.mark.parametrize("fields, field", [
    ({"width": 0}, "width"), ({"height": -64}, "height"), ({"width": 20000}, "width"),
    ({"width": 4096, "height": 4097}, "width"),
])
def test_bad_dimensions(client, fields, field):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(**{**FAST, **fields})).wait(30)
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == field


def test_serve_threads_sets_the_painting_threads(fresh_daemon, tmp_path):
    """`serve --threads 1` (or $IMPASTO_THREADS, which a daemon a plug-in starts inherits) paints on one thread."""
    d = fresh_daemon(extra_args=["--threads", "1"])
    with Client(d.endpoint) as c:
        assert c.submit(Generate(**FAST)).wait(120).info["torch_threads"] == 1
        assert c.status().device.endswith("float32, 1 thread"), c.status().device   # what clients show
    d = fresh_daemon(env_extra={"IMPASTO_THREADS": "1"})
    with Client(d.endpoint) as c:
        assert c.submit(Generate(**FAST)).wait(120).info["torch_threads"] == 1
    import os
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "serve", "--threads", "0"],
                         env=dict(os.environ, IMPASTO_HOME=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "at least 1 thread" in bad.stderr and "Traceback" not in bad.stderr


def test_bad_dimension_cap_is_configurable(fresh_daemon):
    d = fresh_daemon(extra_args=["--max-pixels", str(96 * 96)])
    with Client(d.endpoint) as c:
        assert isinstance(c.submit(Generate(**FAST)).wait(120), Result)
        with pytest.raises(JobFailed) as err:
            c.submit(Generate(**{**FAST, "width": 128, "height": 128})).wait(30)
    assert err.value.field == "width" and "9216" in err.value.message


@pytest.mark.parametrize("steps", [0, 201])
def test_bad_steps(client, steps):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(**{**FAST, "steps": steps})).wait(30)
    assert err.value.field == "steps"


@pytest.mark.parametrize("cfg", [-0.5, 30.5])
def test_bad_cfg(client, cfg):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(cfg_scale=cfg, **FAST)).wait(30)
    assert err.value.field == "cfg_scale"


def test_bad_unknown_model(client):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(**{**FAST, "model": "sdxl-dreams"})).wait(60)
    assert err.value.code == ErrorCode.UNKNOWN_MODEL and "tiny" in err.value.message


def test_bad_unknown_sampler(client):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(**{**FAST, "sampler": "heun_turbo"})).wait(30)
    assert err.value.code == ErrorCode.UNKNOWN_SAMPLER and err.value.field == "sampler"


def test_bad_unknown_concept(client):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(concepts=[("never-trained", 0.8)], **FAST)).wait(60)
    assert err.value.code == ErrorCode.UNKNOWN_CONCEPT and err.value.field.startswith("concepts")


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..\\x"])
def test_bad_names_with_path_separators(client, name):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(**{**FAST, "model": name})).wait(30)
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "model"
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(concepts=[(name, 1.0)], **FAST)).wait(30)
    assert err.value.field == "concepts[0]"


def test_bad_batch_over_cap(client):
    with pytest.raises(JobFailed) as err:
        client.submit(Generate(batch_size=64, **FAST)).wait(30)
    assert err.value.field == "batch_size"


def test_bad_duplicate_job_id(client):
    a = client.submit(Generate(job="dup", seed=1, **SLOW))
    peer = RawPeer(client.endpoint)  # another identity may reuse the id; the same identity may not
    try:
        client._jobs.pop("dup")  # bypass the client's own duplicate guard to reach the daemon's
        b = client.submit(Generate(job="dup", seed=1, **FAST))
        ev = list(b.events(timeout=30))[-1]
        assert isinstance(ev, Error) and ev.code == ErrorCode.DUPLICATE_JOB
    finally:
        peer.close()
    # the original job still runs and is still ours to cancel
    client._jobs["dup"] = a
    a.cancel()
    with pytest.raises(JobCancelled):
        a.wait(120)


def test_daemon_survives_bad_input_and_keeps_serving(fresh_daemon):
    """Self-contained (its own daemon): a volley of bad requests, each answered with a typed error,
    a job cancelled mid-run, and then the very same process still serves a picture."""
    d = fresh_daemon()
    pid = d.proc.pid
    peer = RawPeer(d.endpoint)
    try:
        assert_error(peer.ask([_header(type="make_coffee")]), ErrorCode.BAD_MESSAGE, "type")
        assert_error(peer.ask([b"{\"v\": 1, \"type\": "]), ErrorCode.BAD_MESSAGE)
        assert_error(peer.ask([b"\xff\xfe not json at all"]), ErrorCode.BAD_MESSAGE)
        assert_error(peer.ask([_header(type="status"), b"surplus frame"]), ErrorCode.BAD_MESSAGE)
        frames = codec.encode(Generate(job="b1", prompt="x", init_image=Image(4, 4, b"\0" * 64), model="tiny"))
        frames[1] = b"\0" * 63
        assert_error(peer.ask(frames), ErrorCode.BAD_FIELD, "init_image")
    finally:
        peer.close()
    with Client(d.endpoint) as c:
        for fields, code in [({"width": 0}, ErrorCode.BAD_FIELD), ({"steps": 0}, ErrorCode.BAD_FIELD),
                             ({"sampler": "heun_turbo"}, ErrorCode.UNKNOWN_SAMPLER),
                             ({"model": "sdxl-dreams"}, ErrorCode.UNKNOWN_MODEL),
                             ({"model": "../../etc"}, ErrorCode.BAD_FIELD)]:
            with pytest.raises(JobFailed) as err:
                c.submit(Generate(**{**FAST, **fields})).wait(60)
            assert err.value.code == code, (fields, err.value.code)
        running = c.submit(Generate(seed=3, **SLOW))
        for ev in running.events(timeout=60):
            if isinstance(ev, Progress):
                running.cancel()
                break
        with pytest.raises(JobCancelled):
            running.wait(60)
        res = c.submit(Generate(seed=1, **FAST)).wait(120)
    assert isinstance(res, Result) and res.steps_run == FAST["steps"]
    assert pixels(res.images[0])[..., :3].std() > 0
    assert d.alive() and d.proc.pid == pid, d.log()
