"""The daemon's ZAP handler: who may drive it (see protocol/credentials.py for why).

libzmq asks the ZAP handler (a REP socket on ``inproc://zeromq.zap.01`` in the
daemon's context) about every new connection once its security handshake has
run; a peer that is denied gets a handshake ERROR and never reaches the
ROUTER, so it can send nothing, run nothing and hears nothing.

* PLAIN (loopback): the password must equal the secret in IMPASTO_HOME
  (compared in constant time).
* CURVE (remote): the client's long-term public key must be one of
  ``IMPASTO_HOME/curve/clients/*.key`` (re-read on each connection, so
  ``impasto curve allow`` takes effect without a restart).
* Anything else (NULL, a wrong mechanism) is denied; libzmq already refuses a
  mechanism mismatch in the greeting.

The handler runs on its own thread and polls with a short timeout so that the
daemon can stop it promptly.
"""
from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Optional, Set

import zmq
import zmq.utils.z85

from impasto.protocol import credentials

log = logging.getLogger("impasto.daemon")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN = b"impasto"


def allowed_client_keys(home: Optional[Path] = None) -> Set[bytes]:
    """Z85 public keys of the clients a CURVE daemon lets in."""
    folder = credentials.curve_dir(home) / "clients"
    keys: Set[bytes] = set()
    if folder.is_dir():
        for f in sorted(folder.glob("*.key")):
            k = credentials.read_key(f)
            if k is not None:
                keys.add(k)
    return keys


def server_keypair(home: Optional[Path] = None, create: bool = True):
    """(public, secret) Z85 keys of the daemon, created in IMPASTO_HOME/curve on first use."""
    d = credentials.curve_dir(home)
    public, secret = credentials.read_key(d / "server.key"), credentials.read_key(d / "server.key_secret")
    if (public is None or secret is None) and create:
        public, secret = zmq.curve_keypair()
        credentials.write_private(d / "server.key_secret", secret + b"\n")
        credentials.write_private(d / "server.key", public + b"\n", mode=0o644)
    return public, secret


class ZapHandler(threading.Thread):
    """Answers libzmq's ZAP requests for one daemon context."""

    def __init__(self, ctx: zmq.Context, mechanism: str, home: Optional[Path] = None):
        super().__init__(name="impasto-zap", daemon=True)
        self.ctx = ctx
        self.mechanism = mechanism
        self.home = home
        self.secret = credentials.ensure_secret(home) if mechanism == "plain" else b""
        self.denied = 0
        self.allowed = 0
        self._halt = threading.Event()
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)  # bound before the ROUTER binds: no connection slips past

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                if not self.sock.poll(50):
                    continue
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                self.sock.send_multipart(self._answer(frames))
        except zmq.ZMQError as exc:  # context terminated under us
            log.debug("ZAP handler stopped: %s", exc)
        finally:
            self.sock.close(0)

    def _answer(self, frames) -> list:
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = frames[:6]
        creds = frames[6:]
        ok = False
        if version == b"1.0":
            if self.mechanism == "plain" and mechanism == b"PLAIN" and len(creds) == 2:
                ok = hmac.compare_digest(creds[0], credentials.PLAIN_USER) & hmac.compare_digest(creds[1],
                                                                                                  self.secret)
            elif self.mechanism == "curve" and mechanism == b"CURVE" and len(creds) == 1:
                ok = zmq.utils.z85.encode(creds[0]) in allowed_client_keys(self.home)
        if ok:
            self.allowed += 1
            return [b"1.0", request_id, b"200", b"OK", b"artist", b""]
        self.denied += 1
        log.warning("refused a %s connection from %s: no valid credential", mechanism.decode("ascii", "replace"),
                    address.decode("ascii", "replace"))
        return [b"1.0", request_id, b"400", b"no valid Impasto credential", b"", b""]


def secure_router(sock: zmq.Socket, mechanism: str, home: Optional[Path] = None) -> None:
    """Make ``sock`` (before it binds) require ``mechanism`` through the ZAP handler."""
    sock.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)
    if mechanism == "plain":
        sock.setsockopt(zmq.PLAIN_SERVER, 1)
    elif mechanism == "curve":
        public, secret = server_keypair(home)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    else:
        raise ValueError(f"unknown security mechanism {mechanism!r}")
