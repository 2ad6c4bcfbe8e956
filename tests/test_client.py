"""Client library behaviour that needs no model."""
import time

import pytest

from conftest import free_port
from impasto.protocol import Client, ProtocolError
from impasto.protocol.messages import Generate


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_idle_client_does_not_spin(transport):
    """A client waiting on a dead endpoint blocks; it must not burn a core (it lives inside Krita/GIMP)."""
    with Client(f"tcp://127.0.0.1:{free_port()}", transport=transport) as c:
        c.ping(timeout=0.2)
        c.submit(Generate(prompt="x"))  # pending job: heartbeat pings run too
        t0 = time.process_time()
        time.sleep(2.0)
        assert time.process_time() - t0 < 0.2


def test_client_refuses_its_own_duplicate_job_ids():
    with Client(f"tcp://127.0.0.1:{free_port()}") as c:
        c.submit(Generate(job="one", prompt="x"))
        with pytest.raises(ProtocolError):
            c.submit(Generate(job="one", prompt="x"))


def test_job_ids_are_generated_and_unique():
    with Client(f"tcp://127.0.0.1:{free_port()}") as c:
        ids = {c.submit(Generate(prompt="x")).id for _ in range(50)}
    assert len(ids) == 50


def test_closing_the_client_ends_pending_jobs():
    c = Client(f"tcp://127.0.0.1:{free_port()}")
    job = c.submit(Generate(prompt="x"))
    c.close()
    assert job.done and job.outcome.code == "client_closed"
