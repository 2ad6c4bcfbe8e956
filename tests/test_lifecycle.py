"""Daemon lifecycle: clean shutdown, restart, a daemon killed mid-job."""
import signal
import subprocess
import sys
import time

import pytest

from impasto.protocol import Client, JobFailed
from impasto.protocol.messages import ErrorCode, Generate, Progress, Result

FAST = dict(model="tiny", width=64, height=64, steps=3, sampler="ddim", prompt="a red circle")
SLOW = dict(model="tiny", width=256, height=256, steps=200, sampler="euler", prompt="a blue square")


def wait_started(job, timeout=120):
    for ev in job.events(timeout=timeout):
        if isinstance(ev, Progress):
            return ev


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_and_tells_pending_jobs(fresh_daemon, sig):
    d = fresh_daemon()
    with Client(d.endpoint) as c:
        job = c.submit(Generate(seed=1, **SLOW))
        wait_started(job)
        d.proc.send_signal(sig)
        with pytest.raises(JobFailed) as err:
            job.wait(60)
        assert err.value.code == ErrorCode.UNAVAILABLE and "shutting down" in err.value.message
    assert d.proc.wait(60) == 0
    assert "daemon stopped" in d.log()


def test_impasto_stop_command(fresh_daemon):
    d = fresh_daemon()
    out = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "stop"], env=d.env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert d.proc.wait(60) == 0


def test_killed_daemon_mid_job_gives_readable_error_then_reconnects(fresh_daemon, tmp_path):
    d = fresh_daemon()
    for transport in ("pyzmq", "zmtp"):
        with Client(d.endpoint, transport=transport, heartbeat=1.0, dead_after=3.0) as c:
            job = c.submit(Generate(seed=1, **SLOW))
            wait_started(job)
            d.proc.kill()
            d.proc.wait(10)
            t0 = time.monotonic()
            with pytest.raises(JobFailed) as err:
                job.wait(30)
            assert err.value.code in (ErrorCode.UNAVAILABLE, ErrorCode.DAEMON_RESTARTED)
            assert time.monotonic() - t0 < 15
            # the daemon comes back on the same port: the same client carries on
            d.start()
            res = c.submit(Generate(seed=2, **FAST)).wait(120)
            assert isinstance(res, Result)


def test_restarted_daemon_reports_lost_job(fresh_daemon):
    """A daemon restarted faster than the heartbeat notices: the job is reported lost, not awaited forever."""
    d = fresh_daemon()
    with Client(d.endpoint, heartbeat=1.0, dead_after=60.0) as c:
        job = c.submit(Generate(seed=1, **SLOW))
        wait_started(job)
        d.proc.kill()
        d.proc.wait(10)
        d.start()
        with pytest.raises(JobFailed) as err:
            job.wait(60)
        assert err.value.code == ErrorCode.DAEMON_RESTARTED


def test_no_daemon_ping_is_false_and_quick():
    from conftest import free_port

    with Client(f"tcp://127.0.0.1:{free_port()}") as c:
        t0 = time.monotonic()
        assert c.ping(timeout=0.5) is False
        assert time.monotonic() - t0 < 2
