"""A seeded protocol fuzzer: structured mutations of every request type, plus random frames.

Why a module of its own: the default suite runs a short burst of it
(tests/test_fuzz.py) and ``bench/soak.py`` runs 100,000+ messages of the same
generator, so a failure either finds is reproducible from ``(seed, index)``.

Every message goes to a real daemon over an authenticated raw DEALER; the
daemon must answer each with a typed reply.  ``internal`` (an untyped crash
inside a handler), silence (a hang) or a dead daemon are the failures.
Requests that happen to be valid jobs are accepted and cancelled at once; a
valid ``shutdown`` is never sent (it would end the run, correctly).
"""
from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from impasto.protocol import codec
from impasto.protocol.messages import (
    PROTOCOL_VERSION, Blob, Cancel, ConceptAction, ControlUnit, Generate, Hello, Image, ListConcepts, ListModels,
    PromptEdit, ProtocolError, Shutdown, StatusRequest, Train, TrainSlider,
)

# --------------------------------------------------------------------------- seeds: one valid message per shape


def _img(w: int, h: int, fmt: str = "rgba8") -> Image:
    return Image(w, h, bytes(w * h * Image.CHANNELS[fmt]), fmt)


def base_messages(job: str) -> List[Any]:
    return [
        Hello(client="fuzz", ref="r1"),
        StatusRequest(ref="r2"),
        ListModels(ref="r3"),
        ListConcepts(ref="r4"),
        Cancel(job=job),
        Generate(job=job, prompt="a red circle", model="tiny", width=32, height=32, steps=1, sampler="ddim"),
        Generate(job=job, prompt="a red circle", model="tiny", steps=1, init_image=_img(16, 16), strength=0.5),
        Generate(job=job, prompt="x", model="tiny", steps=1, init_image=_img(16, 16), mask=_img(16, 16, "gray8")),
        Generate(job=job, prompt="x", model="tiny", steps=1, width=16, height=16,
                 control=[ControlUnit("scribble", _img(16, 16), "", 0.8, 0.1, 0.9), ControlUnit("raw", _img(8, 8))]),
        Generate(job=job, prompt="a blue circle", model="tiny", width=32, height=32, steps=1, seed=3,
                 p2p=PromptEdit(source_prompt="a red circle", reweight_word="blue", reweight=2.0)),
        Generate(job=job, prompt="x", model="tiny", steps=1, init_image=_img(16, 16), strength=0.5, live=True,
                 fast_vae=True),
        Train(job=job, name="fz-concept", images=[_img(16, 16)], trigger="zwx", steps=1, model="tiny"),
        TrainSlider(job=job, name="fz-slider", target="a shape", positive="a big shape", negative="a small shape",
                    preserve=["on blue"], steps=1, base_pictures=1, model="tiny"),
        TrainSlider(job=job, name="fz-pairs", mode="images", images=[_img(16, 16), _img(8, 8)],
                    images_high=[_img(16, 16), _img(8, 8)], captions=["a", "b"], steps=1, model="tiny"),
        ConceptAction(ref="r5", action="rename", name="fz-a", new_name="fz-b"),
        ConceptAction(ref="r6", action="delete", name="fz-a"),
        ConceptAction(ref="r7", action="export", name="fz-a"),
        ConceptAction(ref="r8", action="import", name="fz-i", file=Blob(b"\x08" + b"\x00" * 7 + b"{}"),
                      filename="x.safetensors"),
    ]


_NASTY_STRINGS = ["", " ", "p1\n", "p1 ", "\x00", "a\x00b", "../../etc/passwd", "/tmp/x", "C:\\x", "..",
                  "é" * 70, "x" * 70000, "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
                  "💥", "front", "back", "rgba8", "gray8", "euler_a", "import", "export"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice([0, 1, -1, 2, 2**31, 2**63, -(2**63) - 1, 10**30])
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0.0, -0.5, 1e308, -1e308, 3.5, 1e-9])
    if kind == 3:
        return rng.choice(_NASTY_STRINGS)
    if kind == 4:
        return None
    if kind == 5 and depth < 3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 6 and depth < 3:
        return {rng.choice(["a", "$frame", "width", "v", "type"]): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if kind == 7:
        return {"$frame": rng.randrange(-1, 4), "width": rng.choice([0, 1, 16, -4, 1 << 20]),
                "height": rng.choice([0, 1, 16]), "format": rng.choice(["rgba8", "gray8", ["x"], 5, "cmyk"])}
    if kind == 8:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 20)))
    return rng.randrange(-1000, 100000)


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@dataclass
class FuzzMessage:
    frames: List[bytes]
    label: str


def generate(rng: random.Random, index: int) -> FuzzMessage:
    """One fuzzed message (deterministic for a given rng state)."""
    job = f"fz-{index}"
    roll = rng.random()
    if roll < 0.08:  # random frames
        n = rng.randrange(1, 4)
        return FuzzMessage([bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64))) for _ in range(n)],
                           "random frames")
    if roll < 0.11:  # header-level nastiness
        choice = rng.randrange(7)
        header = [
            _deep(rng.choice([40, 1000, 100000])),
            b'{"v": 2, "type": "status", "ref": ' + _deep(50) + b"}",
            b"[1, 2, 3]", b"null", b'"hello"', b"\xff\xfe\x00",
            json.dumps({"v": PROTOCOL_VERSION, "type": "generate", "prompt": "x" * (1 << 20)}).encode(),
        ][choice]
        return FuzzMessage([header], f"header {choice}")
    msg = copy.deepcopy(rng.choice(base_messages(job)))
    frames = codec.encode(msg)
    header = json.loads(frames[0])
    label = msg.TYPE
    units = header.get("control") if isinstance(header.get("control"), list) else []
    if units and rng.random() < 0.5:  # control units: mutate inside one (type, strength, range, image, model)
        unit = rng.choice(units)
        k = rng.choice(["type", "strength", "start", "end", "image", "model", "zzz"])
        unit[k] = rng.choice([_random_value(rng), rng.choice(_NASTY_STRINGS), float("nan"), -1, 2.5, 1.0,
                              "depth", "pose", "blur"])
        label += f" control.{k}=?"
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(9)
        keys = [k for k in header if k not in ("v", "type")]
        if op == 0 and keys:  # wrong-typed or hostile value
            k = rng.choice(keys)
            header[k] = _random_value(rng)
            label += f" {k}=?"
        elif op == 1 and keys:
            k = rng.choice(keys)
            del header[k]
            label += f" -{k}"
        elif op == 2:
            header[rng.choice(["path", "zzz", "$frame", "file_path"])] = _random_value(rng)
            label += " +unknown"
        elif op == 3:
            header["v"] = rng.choice([True, 1, 1.0, "2", 2.0, 3, None, [2], 0])
            label += " v"
        elif op == 4:
            header["type"] = rng.choice(["generate", "train", "cancel", "status", "concept_action", "hello",
                                         "welcome", "result", "error", "done", "", 5, None, "shutdown"])
            label += " type"
        elif op == 5 and len(frames) > 1:  # frame damage
            i = rng.randrange(1, len(frames))
            how = rng.randrange(3)
            if how == 0:
                frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)]
            elif how == 1:
                frames[i] = frames[i] + b"\x00" * rng.randrange(1, 9)
            else:
                del frames[i]
            label += " frames"
        elif op == 6:
            frames.append(bytes(rng.randrange(0, 16)))
            label += " +frame"
        elif op == 7 and keys:  # a boundary value where a number belongs
            k = rng.choice(keys)
            if isinstance(header[k], (int, float)) and not isinstance(header[k], bool):
                header[k] = rng.choice([-1, 0, 1, 8192, 8193, 201, 5001, 2**63, float("nan"), float("inf")])
                label += f" {k}=edge"
        elif op == 8 and keys:  # a string field gets a nasty string
            k = rng.choice(keys)
            if isinstance(header[k], str):
                header[k] = rng.choice(_NASTY_STRINGS)
                label += f" {k}=str"
    edit = header.get("p2p")
    if isinstance(edit, dict) and rng.random() < 0.7:   # nested fields: the prompt edit's own values
        k = rng.choice(sorted(edit) + ["zzz"])
        edit[k] = rng.choice([_random_value(rng), -1, 1.5, 11.0, float("nan"), "", "dog", "a red circle " * 9])
        label += f" p2p.{k}=?"
    try:
        raw = json.dumps(header).encode()
    except (ValueError, TypeError):
        raw = json.dumps(header, allow_nan=True, default=str).encode()
    frames[0] = raw
    if _is_valid_shutdown(frames):
        frames[0] = raw.replace(b'"shutdown"', b'"shutdown!"')
        label += " (shutdown defused)"
    return FuzzMessage(frames, label)


def _is_valid_shutdown(frames: List[bytes]) -> bool:
    try:
        return isinstance(codec.decode(frames), Shutdown)
    except ProtocolError:
        return False
    except Exception:
        return False


# --------------------------------------------------------------------------- the driver


@dataclass
class FuzzReport:
    sent: int = 0
    replies: int = 0
    accepted: int = 0
    hangs: int = 0
    unanswered: int = 0  # no answer before the barrier (a cancel of a running job answers later)
    codes: Dict[str, int] = field(default_factory=dict)
    internal: List[Tuple[int, str, str]] = field(default_factory=list)
    undecodable: List[Tuple[int, str, str]] = field(default_factory=list)
    hang_examples: List[Tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {"sent": self.sent, "replies": self.replies, "accepted_then_cancelled": self.accepted,
                "hangs": self.hangs, "unanswered": self.unanswered, "internal": len(self.internal), "codes": dict(sorted(self.codes.items())),
                "internal_examples": self.internal[:5], "undecodable_replies": len(self.undecodable),
                "undecodable_examples": self.undecodable[:5], "hang_examples": self.hang_examples[:5],
                "seconds": round(self.seconds, 1)}


def run(endpoint: str, count: int, seed: int, start: int = 0, reply_timeout: float = 10.0,
        alive=None) -> FuzzReport:
    """Send ``count`` fuzzed messages (indices ``start..``) and check each gets a typed answer."""
    import zmq

    from impasto.protocol import credentials

    rng = random.Random(seed)
    for _ in range(start):
        generate(rng, -1)  # skip ahead deterministically
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username = credentials.PLAIN_USER
    sock.plain_password = credentials.read_secret()
    sock.connect(endpoint)
    report = FuzzReport()
    t0 = time.monotonic()

    def take(frames_in) -> Optional[Any]:
        report.replies += 1
        try:
            msg = codec.decode(frames_in)
        except ProtocolError as exc:
            report.codes["<undecodable reply>"] = report.codes.get("<undecodable reply>", 0) + 1
            report.undecodable.append((idx, fm.label, exc.message[:160]))
            return None
        if msg.TYPE == "error":
            report.codes[msg.code] = report.codes.get(msg.code, 0) + 1
            if msg.code == "internal":
                report.internal.append((idx, fm.label, msg.message[:200]))
        elif msg.TYPE == "accepted":
            report.accepted += 1
            sock.send_multipart(codec.encode(Cancel(job=msg.job)))
        return msg

    try:
        for idx in range(start, start + count):
            fm = generate(rng, idx)
            barrier = f"bar-{idx}"
            try:
                sock.send_multipart(fm.frames)
                # a status request after each message: its answer proves the daemon is still serving
                sock.send_multipart(codec.encode(StatusRequest(ref=barrier)))
            except zmq.ZMQError as exc:
                report.hang_examples.append((idx, f"send failed: {exc}"))
                report.hangs += 1
                continue
            report.sent += 1
            answered = False
            while True:
                if not sock.poll(int(reply_timeout * 1000)):
                    report.hangs += 1
                    report.hang_examples.append((idx, fm.label))
                    break
                msg = take(sock.recv_multipart())
                if msg is not None and msg.TYPE == "status_reply" and msg.ref == barrier:
                    report.replies -= 1  # the barrier's own answer
                    break
                answered = True
            if not answered:
                report.unanswered += 1
            if alive is not None and report.hangs and not alive():
                break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sock.poll(200):
            take(sock.recv_multipart())
    finally:
        sock.close(0)
        report.seconds = time.monotonic() - t0
    return report
