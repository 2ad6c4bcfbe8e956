"""Issue 13: only the artist's own programs drive the daemon, no request touches a file outside
Impasto's home, and no client can starve or sink it.  One test (at least) per defect found.

Everything runs against real ``impasto serve`` processes over real sockets: pyzmq, the
pure-Python ZMTP transport, and raw TCP where a hostile peer would use it.

Over 500 lines on purpose: one test (at least) per defect of issue 13, sharing one set
of hostile-peer helpers (raw sockets, wrong secrets, killed clients).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from conftest import DaemonProcess, free_port, plain_auth
from impasto.protocol import Client, JobCancelled, JobFailed, codec, credentials
from impasto.protocol.messages import (
    PROTOCOL_VERSION, Accepted, Blob, Cancel, Cancelled, ConceptAction, Error, ErrorCode, Generate, Image, Progress,
    Result, Shutdown, StatusRequest,
)
from impasto.protocol.zmtp import ZmtpDealer

FAST = dict(model="tiny", width=32, height=32, steps=2, sampler="ddim", prompt="a red circle")
SLOW = dict(model="tiny", width=256, height=256, steps=200, sampler="euler", prompt="a blue square")


def raw_dealer(endpoint, identity=None, auth=True):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity:
        sock.setsockopt(zmq.IDENTITY, identity)
    if auth:
        plain_auth(sock)
    sock.connect(endpoint)
    return sock


def recv(sock, timeout=30.0):
    if not sock.poll(int(timeout * 1000)):
        return None
    return codec.decode(sock.recv_multipart())


def ask(sock, frames, timeout=30.0):
    sock.send_multipart(frames)
    return recv(sock, timeout)


def header(**fields):
    return json.dumps({"v": PROTOCOL_VERSION, **fields}).encode()


def wait_for(job, kinds, timeout=60):
    for ev in job.events(timeout=timeout):
        if isinstance(ev, kinds):
            return ev
    raise AssertionError(f"{job.id} ended without {kinds}")


# --------------------------------------------------------------------------- 1. authentication


def test_a_peer_without_the_secret_gets_no_reply_and_runs_nothing(fresh_daemon):
    d = fresh_daemon()
    before = sorted(p.relative_to(d.home) for p in d.home.rglob("*") if p.name != "daemon-test.log")
    shutdown = codec.encode(Shutdown(ref="s"))
    job = codec.encode(Generate(job="intruder", **FAST))
    # raw pyzmq: no credential at all (NULL), and PLAIN with a wrong password
    for sock in (raw_dealer(d.endpoint, auth=False), _wrong_password(d.endpoint)):
        for frames in (job, shutdown):
            try:  # once libzmq has seen the refusal it has no pipe left: a blocking send would wait forever
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass
        assert not sock.poll(1500), "an unauthenticated peer got a reply"
        sock.close(0)
    # the pure-Python transport: NULL mechanism, and PLAIN with a wrong secret
    with ZmtpDealer(d.endpoint, b"zmtp-null", reconnect_interval=0.05) as z:
        z.send_multipart(job)
        z.send_multipart(shutdown)
        assert z.recv_multipart(timeout=1.5) is None
    with Client(d.endpoint, transport="zmtp", secret=b"0" * 64) as c:
        assert not c.ping(1.5)
        c.submit(Generate(job="intruder2", **FAST))
        with pytest.raises(TimeoutError):
            c.shutdown(timeout=1.0)
    # nothing ran, nothing was written, the daemon still serves its artist
    time.sleep(0.5)
    assert d.alive()
    with Client(d.endpoint) as c:
        st = c.status(10)
        assert not st.busy and st.queue == 0
    after = sorted(p.relative_to(d.home) for p in d.home.rglob("*") if p.name != "daemon-test.log")
    assert after == before
    assert "refused a" in d.log()  # the ZAP handler said no


def _wrong_password(endpoint):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username = credentials.PLAIN_USER
    sock.plain_password = b"f" * 64
    sock.connect(endpoint)
    return sock


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_the_secret_is_created_owner_only_and_clients_find_it_through_impasto_home(models_dir, tmp_path,
                                                                                     transport):
    """A client made before the daemon exists (a launcher) authenticates once the daemon has created it."""
    home = tmp_path / "home"
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    with Client(ep, transport=transport, home=home) as c:  # no daemon, no secret yet: no crash
        assert not c.ping(0.3)
        env = dict(os.environ, IMPASTO_HOME=str(home), IMPASTO_SECRET_FILE="", OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", ep,
                                 "--models-dir", str(models_dir), "--no-preload"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not c.ping(0.5):
                assert time.monotonic() < deadline and proc.poll() is None, "the client never got in"
            secret = home / "daemon.secret"
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert len(secret.read_text().strip()) == 64
            with Client(ep, transport=transport) as other:  # the session's secret is not this home's
                assert not other.ping(1.0)
        finally:
            proc.terminate()
            proc.wait(30)


# --------------------------------------------------------------------------- 2. remote use


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:{port}", "tcp://*:{port}"])
def test_a_non_loopback_bind_without_curve_is_refused_and_says_how(models_dir, tmp_path, endpoint):
    ep = endpoint.format(port=free_port())
    proc = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", ep,
                           "--models-dir", str(models_dir)], env=dict(os.environ, IMPASTO_HOME=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--curve" in proc.stderr and "impasto curve allow" in proc.stderr and "SSH tunnel" in proc.stderr


def _cli(home, *argv, env_extra=None):
    env = dict(os.environ, IMPASTO_HOME=str(home), **(env_extra or {}))
    out = subprocess.run([sys.executable, "-m", "impasto.backend.cli", *argv], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_curve_keys_that_start_with_a_dash_are_keys_not_options(tmp_path):
    """One Z85 key in 85 starts with "-" (the CI once drew one): allow and trust take it as the key."""
    import zmq

    from impasto.backend.cli_security import keys_as_positionals

    while True:
        public, _ = zmq.curve_keypair()
        if public.startswith(b"-"):
            break
    key = public.decode()
    home = tmp_path / "home"
    _cli(home, "curve", "allow", "dash", key)
    from impasto.backend.daemon.auth import allowed_client_keys

    assert public in allowed_client_keys(home)
    assert "trusting daemon key " + key in _cli(home, "curve", "trust", key)
    assert keys_as_positionals(["curve", "allow", "a", key]) == ["curve", "allow", "a", "--", key]
    assert keys_as_positionals(["generate", "-x" * 20]) == ["generate", "-x" * 20]   # only after curve
    assert keys_as_positionals(["curve", "show"]) == ["curve", "show"]


def test_curve_lets_in_allowed_client_keys_only(models_dir, tmp_path, monkeypatch):
    server, alice, mallory = tmp_path / "server", tmp_path / "alice", tmp_path / "mallory"
    server_key = _cli(server, "curve", "show").split("server public key")[1].split()[0]
    alice_key = _cli(alice, "curve", "client-key").strip()
    _cli(mallory, "curve", "client-key")
    _cli(server, "curve", "allow", "alice", alice_key)
    for home in (alice, mallory):
        _cli(home, "curve", "trust", server_key)
    assert stat.S_IMODE((server / "curve" / "server.key_secret").stat().st_mode) == 0o600
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint",
                             f"tcp://0.0.0.0:{port}", "--curve", "--models-dir", str(models_dir), "--no-preload"],
                            env=dict(os.environ, IMPASTO_HOME=str(server), OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ep = f"tcp://127.0.0.1:{port}"
        monkeypatch.setenv("IMPASTO_SECURITY", "curve")  # loopback here stands in for the network
        with Client(ep, transport="pyzmq", home=alice) as c:
            deadline = time.monotonic() + 60
            while not c.ping(0.5):
                assert time.monotonic() < deadline and proc.poll() is None
            assert c.status(5).version
        with Client(ep, transport="pyzmq", home=mallory) as c:  # a key the box never allowed
            assert not c.ping(1.5)
        monkeypatch.delenv("IMPASTO_SECURITY")
        with Client(ep, transport="pyzmq") as c:  # PLAIN with the right local secret: wrong mechanism
            assert not c.ping(1.5)
    finally:
        proc.terminate()
        proc.wait(30)
    assert credentials.client_mechanism("tcp://10.0.0.5:7877") == "curve"
    assert credentials.client_mechanism("tcp://127.0.0.1:7877") == "plain"


def test_the_pure_python_transport_refuses_a_non_loopback_endpoint():
    """GIMP's bundled Python has no pyzmq: it must refuse to send in clear (docs: SSH tunnel)."""
    with pytest.raises(credentials.CredentialError) as err:
        Client("tcp://192.0.2.7:7877", transport="zmtp")
    assert "SSH tunnel" in err.value.message and err.value.code == ErrorCode.UNAUTHORIZED


def test_the_gimp_plugin_refuses_a_non_loopback_endpoint_over_its_pure_python_transport():
    """The plug-in's own connect path, as GIMP's bundled Python (no pyzmq) runs it."""
    from impasto.plugin_gimp import daemon_link
    from impasto.plugin_gimp.settings import PluginSettings

    settings = PluginSettings(endpoint="tcp://192.0.2.7:7877", transport="zmtp", auto_start=False)
    with pytest.raises(credentials.CredentialError) as err:
        daemon_link.connect(settings, ping_timeout=0.2)
    assert "SSH tunnel" in err.value.message


# --------------------------------------------------------------------------- 3. no paths


def test_no_request_can_make_the_daemon_read_or_write_a_path_outside_its_home(daemon, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.safetensors"
    victim.write_bytes(b"precious")
    secret_file = Path(os.environ["IMPASTO_SECRET_FILE"])
    sock = raw_dealer(daemon.endpoint)
    try:
        # every field that ever carried a path, and every name field given one
        attempts = [
            header(type="concept_action", ref="1", action="export", name="p", path=str(victim)),
            header(type="concept_action", ref="2", action="export", name="p", path=str(outside)),
            header(type="concept_action", ref="3", action="import", name="p", path=str(victim)),
            header(type="concept_action", ref="4", action="import", name="p", path=str(outside / "missing")),
            header(type="concept_action", ref="5", action="import", name="p", path=str(secret_file)),
            header(type="concept_action", ref="6", action="export", name=str(outside / "victim")),
            header(type="concept_action", ref="7", action="export", name="../../outside/victim"),
            header(type="concept_action", ref="8", action="rename", name="x", new_name=str(outside / "n")),
            header(type="concept_action", ref="9", action="delete", name="../outside"),
            header(type="generate", job="j1", model=str(outside), prompt="x"),
            header(type="generate", job="j2", model="tiny", concepts=[["../outside/victim", 1.0]], prompt="x"),
            header(type="train", job="j3", name=str(outside / "c"), trigger="zwx"),
            header(type="models", ref="10", models_dir=str(outside)),
        ]
        replies = [ask(sock, [h]) for h in attempts]
        blob = Blob(victim.read_bytes())
        for i, filename in enumerate(["../victim.safetensors", str(victim), "a/b.safetensors", "x\x00y"]):
            replies.append(ask(sock, codec.encode(ConceptAction(ref=f"f{i}", action="import", name="p",
                                                                file=blob, filename=filename))))
    finally:
        sock.close(0)
    for r in replies:
        assert isinstance(r, Error) and r.code in (ErrorCode.BAD_FIELD, ErrorCode.BAD_MESSAGE), r
    # an existing and a missing file give the same answer: no oracle for what exists outside
    assert replies[2].message.replace(str(victim), "P") == replies[3].message.replace(str(outside / "missing"), "P")
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.safetensors"]
    assert not list(tmp_path.rglob("*.safetensors"))[1:]


def test_an_old_client_gets_version_mismatch(daemon):
    sock = raw_dealer(daemon.endpoint)
    try:
        for v in (1, True, "2", 2.0):
            r = ask(sock, [json.dumps({"v": v, "type": "concept_action", "ref": "old", "action": "export",
                                       "name": "x", "path": "/tmp/x"}).encode()])
            assert isinstance(r, Error) and r.code == ErrorCode.VERSION_MISMATCH and r.field == "v", (v, r)
    finally:
        sock.close(0)


# --------------------------------------------------------------------------- 4. bounded and fair


def _exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed during the handshake"
        data += chunk
    return data


def _command_name(s):
    flags, size = _exact(s, 2)
    assert flags & 0x04 and not flags & 0x02
    body = _exact(s, size)
    return body[1:1 + body[0]]


def _plain_handshake(port):
    """A raw TCP peer that authenticates (PLAIN, RFC 24) and then may misbehave at the frame level."""
    from impasto.protocol import zmtp

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(zmtp._greeting(b"PLAIN"))
    _exact(s, 64)
    user, pw = credentials.PLAIN_USER, credentials.read_secret()
    s.sendall(zmtp._command(b"HELLO", bytes((len(user),)) + user + bytes((len(pw),)) + pw))
    assert _command_name(s) == b"WELCOME"
    props = zmtp._encode_properties([(b"Socket-Type", b"DEALER"), (b"Identity", b"")])
    s.sendall(zmtp._command(b"INITIATE", props))
    assert _command_name(s) == b"READY"
    return s


def test_a_frame_declared_over_the_limit_drops_the_connection(daemon):
    port = int(daemon.endpoint.rsplit(":", 1)[1])
    s = _plain_handshake(port)
    try:
        try:
            s.sendall(struct.pack(">BQ", 0x02, 4 << 30) + b"\0" * (1 << 20))  # declares 4 GiB, sends 1 MiB
            s.settimeout(10)
            closed = s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):  # dropped while we were still sending
            closed = True
        assert closed, "the daemon kept a connection that declared a 4 GiB frame"
    finally:
        s.close()
    with Client(daemon.endpoint) as c:
        assert c.ping(5)


@pytest.fixture(scope="module")
def strict_daemon(models_dir, tmp_path_factory):
    """Small caps and a short orphan timeout, so the limits show in a few seconds."""
    d = DaemonProcess(models_dir, tmp_path_factory.mktemp("strict"),
                      env_extra={"IMPASTO_MAX_QUEUED_JOBS": "3", "IMPASTO_MAX_QUEUED_IMAGE_BYTES": "40000",
                                 "IMPASTO_ORPHAN_TIMEOUT": "2"}).start()
    yield d
    d.stop()


def _blocker(c):
    job = c.submit(Generate(**SLOW))
    wait_for(job, Progress)
    return job


def test_queue_caps_answer_with_a_typed_error_naming_the_cap(strict_daemon):
    with Client(strict_daemon.endpoint, heartbeat=0.5) as a, Client(strict_daemon.endpoint, heartbeat=0.5) as b:
        block = _blocker(a)
        queued = [a.submit(Generate(**FAST)) for _ in range(3)]
        for j in queued:
            assert isinstance(wait_for(j, (Accepted, Error)), Accepted)
        with pytest.raises(JobFailed) as err:
            a.submit(Generate(**FAST)).wait(30)
        assert err.value.code == ErrorCode.QUEUE_FULL and err.value.field == "max_queued_jobs_per_client"
        img = Image(64, 64, bytes(64 * 64 * 4))  # 16 KiB each; the cap is 40,000 bytes
        fits = [b.submit(Generate(init_image=img, **{**FAST, "width": 64, "height": 64})) for _ in range(2)]
        for j in fits:
            assert isinstance(wait_for(j, (Accepted, Error)), Accepted)
        with pytest.raises(JobFailed) as err:
            b.submit(Generate(init_image=img, **FAST)).wait(30)
        assert err.value.code == ErrorCode.QUEUE_FULL and err.value.field == "max_queued_image_bytes"
        assert "max_queued_image_bytes" in err.value.message
        for j in [block, *queued, *fits]:
            j.cancel()
        for j in [block, *queued, *fits]:
            with pytest.raises(JobCancelled):
                j.wait(60)


def test_clients_take_turns_and_front_reorders_only_your_own_jobs(strict_daemon):
    order = []
    with Client(strict_daemon.endpoint, heartbeat=0.5) as a, Client(strict_daemon.endpoint, heartbeat=0.5) as b:
        block = _blocker(a)

        def note(ev):
            if isinstance(ev, Result):
                order.append(ev.job)

        jobs = [a.submit(Generate(job=f"a{i}", **FAST), on_event=note) for i in (1, 2, 3)]
        for j in jobs:  # two connections: make sure a's jobs are queued before b's arrive
            wait_for(j, Accepted)
        b1 = b.submit(Generate(job="b1", **FAST), on_event=note)
        b2 = b.submit(Generate(job="b2", priority="front", **FAST), on_event=note)
        # b1 waits behind one job of a's (plus the running one), not behind all three
        assert wait_for(b1, Accepted).position == 2
        block.cancel()
        for j in [*jobs, b1, b2]:
            j.wait(120)
    assert order == ["a1", "b2", "a2", "b1", "a3"], order


def test_a_second_connection_cannot_take_over_a_live_identity(strict_daemon):
    owner = raw_dealer(strict_daemon.endpoint, identity=b"artist-identity")
    thief = None
    try:
        assert isinstance(ask(owner, codec.encode(Generate(job="mine", **SLOW))), Accepted)
        thief = raw_dealer(strict_daemon.endpoint, identity=b"artist-identity")
        thief.send_multipart(codec.encode(Cancel(job="mine")))
        thief.send_multipart(codec.encode(StatusRequest(ref="t")))
        assert not thief.poll(1500), "the second connection got an answer"
        st = ask(owner, codec.encode(StatusRequest(ref="o")))
        while not isinstance(st, type(st)) or getattr(st, "ref", "") != "o":
            st = recv(owner)
        assert "mine" in st.jobs  # not cancelled by the thief
        owner.send_multipart(codec.encode(Cancel(job="mine")))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ev = recv(owner)
            if isinstance(ev, Cancelled):
                break
        else:
            raise AssertionError("the owner's cancel did not arrive")
    finally:
        owner.close(0)
        if thief is not None:
            thief.close(0)


# --------------------------------------------------------------------------- 5. orphans


KILLED = r"""
import sys, time
from impasto.protocol import Client
from impasto.protocol.messages import Generate
c = Client(sys.argv[1])
jobs = [c.submit(Generate(job=f"orphan-{i}", model="tiny", width=256, height=256, steps=200, sampler="euler",
                          prompt="x")) for i in range(3)]  # the strict daemon queues 3 a client
for ev in jobs[0].events(timeout=120):
    if type(ev).__name__ == "Progress":
        break
print("running", flush=True)
time.sleep(3600)
"""


def test_a_killed_clients_running_and_queued_jobs_are_cancelled(strict_daemon):
    d = strict_daemon
    proc = subprocess.Popen([sys.executable, "-c", KILLED, d.endpoint], env=d.env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        with Client(d.endpoint, heartbeat=0.5) as c:
            res = c.submit(Generate(**{**FAST, "steps": 4})).wait(60)
        waited = time.monotonic() - killed
        # 3 orphans of 200 steps would take a minute; the 2 s orphan timeout plus one step and the job
        assert waited < 15, waited
        assert res.steps_run == 4
        assert "silent for" in d.log() and "cancelled 2 queued job(s) and its running job" in d.log()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_live_client_keeps_its_long_job(strict_daemon):
    """The client's heartbeat keeps its job alive well past the orphan timeout."""
    with Client(strict_daemon.endpoint, heartbeat=0.5) as c:
        t0 = time.monotonic()
        res = c.submit(Generate(**{**SLOW, "width": 512, "height": 512, "steps": 30})).wait(300)
        assert time.monotonic() - t0 > 2 * 2.0, "the job must outlast the orphan timeout to prove anything"
        assert isinstance(res, Result) and res.steps_run == 30


# --------------------------------------------------------------------------- 6. signals


TRIALS = 50


def test_sigterm_and_sigint_right_after_a_reply_stop_the_daemon_within_a_second(models_dir, tmp_path):
    late = []
    for trial in range(TRIALS):
        ep = f"tcp://127.0.0.1:{free_port()}"
        proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "serve", "--endpoint", ep,
                                 "--models-dir", str(models_dir), "--no-preload"],
                                env=dict(os.environ, IMPASTO_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with Client(ep) as c:
                deadline = time.monotonic() + 60
                while not c.ping(0.5):
                    assert time.monotonic() < deadline and proc.poll() is None
                c.status(5)  # a reply, then at once:
                sig = signal.SIGTERM if trial % 2 == 0 else signal.SIGINT
                proc.send_signal(sig)
                t0 = time.monotonic()
                try:
                    rc = proc.wait(10)
                except subprocess.TimeoutExpired:
                    rc = None
                took = time.monotonic() - t0
            if rc != 0 or took > 1.0:
                late.append((trial, sig.name, rc, round(took, 3)))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not late, f"{len(late)} of {TRIALS} trials did not stop within 1 s: {late}"


def test_a_busy_daemon_stops_within_a_second_and_tells_the_job(fresh_daemon):
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = fresh_daemon()
        with Client(d.endpoint) as c:
            job = c.submit(Generate(**SLOW))
            wait_for(job, Progress)  # a reply, then at once:
            d.proc.send_signal(sig)
            t0 = time.monotonic()
            assert d.proc.wait(10) == 0
            assert time.monotonic() - t0 < 1.0
            with pytest.raises(JobFailed) as err:
                job.wait(10)
            assert err.value.code == ErrorCode.UNAVAILABLE and "shutting down" in err.value.message


# --------------------------------------------------------------------------- 7. typed errors


def test_malformed_input_gets_typed_codes_never_internal(daemon):
    img = {"$frame": 1, "width": 1, "height": 1}
    cases = [
        ([b"[" * 100000 + b"]" * 100000], ErrorCode.BAD_MESSAGE, None),
        ([header(type="status", ref="r", x=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])],
         ErrorCode.BAD_MESSAGE, None),
        ([header(type="generate", job="f1", prompt="x", init_image={**img, "format": ["rgba8"]}), b"\0" * 4],
         ErrorCode.BAD_FIELD, "init_image"),
        ([header(type="generate", job="f2", prompt="a\x00b")], ErrorCode.BAD_FIELD, "prompt"),
        ([header(type="generate", job="f3", prompt="x" * 70000)], ErrorCode.BAD_FIELD, "prompt"),
        ([header(type="concept_action", ref="r", action="delete", name="y" * 5000)], ErrorCode.BAD_FIELD, "name"),
        ([header(type="generate", job="f4\n", prompt="x")], ErrorCode.BAD_FIELD, "job"),
        ([header(type="generate", job="f5 ", prompt="x")], ErrorCode.BAD_FIELD, "job"),
        ([header(type="train", job="f6", name="p1\n", trigger="zwx")], ErrorCode.BAD_FIELD, "name"),
        ([header(type="train", job="f7", name="p1 ", trigger="zwx")], ErrorCode.BAD_FIELD, "name"),
        ([header(type="concept_action", ref="r", action="rename", name="p1", new_name="p1\n")],
         ErrorCode.BAD_FIELD, "new_name"),
        ([header(type="generate", job="f8", steps=True, prompt="x")], ErrorCode.BAD_FIELD, "steps"),
        ([header(type="generate", job="f9", cfg_scale="7", prompt="x")], ErrorCode.BAD_FIELD, "cfg_scale"),
    ]
    sock = raw_dealer(daemon.endpoint)
    try:
        for frames, code, field in cases:
            r = ask(sock, frames)
            assert isinstance(r, Error) and r.code == code, (frames[0][:80], r)
            if field is not None:
                assert r.field == field, (frames[0][:80], r)
    finally:
        sock.close(0)


def test_stale_temporaries_from_a_crash_are_cleaned_at_start(fresh_daemon, tmp_path):
    home = tmp_path / "home0"  # fresh_daemon's first home
    leftovers = [home / "concepts" / ".tmp-p1-0badc0de", home / "training" / "p1" / ".tmp-1234abcd"]
    for p in leftovers:
        p.mkdir(parents=True)
        (p / "weights.safetensors").write_bytes(b"half")
    part = home / "cache" / "class_images" / ".img.png.abc123.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half")
    d = fresh_daemon()  # seconds after the "crash": the library's own one-minute rule would keep them
    assert d.home == home
    assert not any(p.exists() for p in [*leftovers, part])


def test_the_job_table_caps_are_typed_even_at_zero_and_rotation_is_fair():
    """The table alone (the daemon tests above use it through real sockets)."""
    from impasto.backend.daemon.jobs import JobRecord, JobTable
    from impasto.protocol.messages import ProtocolError

    table = JobTable(max_queued_per_client=0, max_pending_bytes=1 << 20)
    with pytest.raises(ProtocolError) as err:
        table.add(JobRecord(client=b"a", request=Generate(job="x")))
    assert err.value.code == ErrorCode.QUEUE_FULL and err.value.field == "max_queued_jobs_per_client"
    table = JobTable(max_queued_per_client=1000, max_pending_bytes=1 << 20)
    for i in range(1000):
        table.add(JobRecord(client=b"flood", request=Generate(job=f"f{i}")))
    assert table.add(JobRecord(client=b"other", request=Generate(job="o1"))) == 1  # not 1000
    assert [table.take_next().request.job for _ in range(4)] == ["f0", "o1", "f1", "f2"]
