"""Concepts over the real daemon and the real CLI: train, queue, cancel, kill and resume, library actions."""
from __future__ import annotations

import os
import signal

import pytest
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from conftest import DaemonProcess
from impasto.protocol import Client, JobCancelled, ProtocolError
from impasto.protocol.concept_files import export_concept, import_concept
from impasto.protocol.messages import Blob
from impasto.protocol.messages import Accepted, ErrorCode, Generate, Image as WireImage, Progress, Result, Train


# One torch thread in the daemons: on a shared 2-core machine two threads fight other
# processes for the cores and a tiny training runs 30x slower (measured: 99 s vs 3.6 s).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cdaemon(models_dir, tmp_path_factory):
    """This module's own daemon (its library is not shared with other test files)."""
    d = DaemonProcess(models_dir, tmp_path_factory.mktemp("concepts-daemon"), env_extra=ONE_THREAD).start()
    yield d
    d.stop()


@pytest.fixture
def client(cdaemon):
    with Client(cdaemon.endpoint) as c:
        yield c


def wire_pictures(n=4):
    out = []
    for i in range(n):
        im = Image.new("RGBA", (32 + 4 * i, 32), (0, 128, 255, 255))
        ImageDraw.Draw(im).ellipse([4, 4, 24 + i, 26], fill=(255, 200, 0, 255))
        out.append(WireImage(width=im.width, height=im.height, data=im.tobytes()))
    return out


def train(name, **kw):
    base = dict(name=name, images=wire_pictures(), trigger="zwx", class_noun="shape", steps=4, resolution=32,
                class_images=2, sample_every=0, checkpoint_every=0, model="tiny", preview=False)
    base.update(kw)
    return Train(**base)


def generate(client, concepts=(), seed=4):
    r = client.submit(Generate(prompt="a zwx shape", seed=seed, steps=3, width=32, height=32, sampler="ddim",
                               model="tiny", concepts=list(concepts))).wait(120)
    return r.images[0].data, r.warnings


def test_train_over_the_daemon_reports_every_step_and_the_concept_is_usable(client):
    job = client.submit(train("d-star", steps=6, sample_every=3, preview=True))
    events = list(job.events(timeout=180))
    assert isinstance(events[0], Accepted) and isinstance(events[-1], Result)
    steps = [e for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6] and all(e.total == 6 for e in steps)
    assert all(isinstance(e.loss, float) and e.loss > 0 for e in steps)
    assert [e.preview is not None for e in steps] == [False, False, True, False, False, False]
    assert steps[2].preview.width == 32
    result = events[-1]
    assert result.steps_run == 6 and len(result.images) == 2 and "train" in result.timings
    listed = {c["name"]: c for c in client.concepts().concepts}
    assert listed["d-star"]["trigger"] == "zwx" and listed["d-star"]["base_model"] == "tiny"
    plain, _ = generate(client)
    styled, warnings = generate(client, [("d-star", 1.0)])
    assert warnings == []
    assert generate(client, [("d-star", 0.0)])[0] == plain
    assert styled != plain


def test_a_second_training_is_queued_and_a_running_one_cancels(client):
    first = client.submit(train("d-long", steps=2000, prior_preservation=False))
    second = client.submit(train("d-after", steps=2, prior_preservation=False))
    for ev in first.events(timeout=120):
        if isinstance(ev, Progress) and ev.stage == "train":
            break
    assert first.position == 0 and second.position == 1  # queued behind it, not refused
    first.cancel()
    with pytest.raises(JobCancelled):
        first.wait(60)
    assert second.wait(120).steps_run == 2
    names = [c["name"] for c in client.concepts().concepts]
    assert "d-after" in names and "d-long" not in names


def test_library_actions_over_the_protocol(client, tmp_path):
    client.submit(train("d-lib", steps=2, prior_preservation=False)).wait(120)
    out = tmp_path / "d-lib.safetensors"
    # export answers with the file's bytes; the client writes them (the daemon opens no path of ours)
    assert export_concept(client, "d-lib", tmp_path) == out
    done = client.concept_action("export", "d-lib")
    assert out.stat().st_size == len(done.file.data) == done.info["bytes"]  # (header key order may vary)
    assert "path" not in done.info
    keys = set(load_file(str(out)))   # the UNet LoRA + the trigger's embedding bundled as A1111 reads it
    assert all(k.startswith("lora_unet_") for k in keys - {"bundle_emb.zwx.string_to_param.*"})
    assert "bundle_emb.zwx.string_to_param.*" in keys
    done = import_concept(client, out, "d-lib-copy")
    assert done.info["layout"] == "kohya" and done.info["concept"]["trigger"] == "zwx"
    assert generate(client, [("d-lib", 0.9)])[0] == generate(client, [("d-lib-copy", 0.9)])[0]
    client.concept_action("rename", "d-lib-copy", new_name="d-lib-renamed")
    client.concept_action("delete", "d-lib-renamed")
    names = [c["name"] for c in client.concepts().concepts]
    assert "d-lib" in names and "d-lib-copy" not in names and "d-lib-renamed" not in names
    bad = [
        (dict(action="explode", name="d-lib"), ErrorCode.BAD_FIELD, "action"),
        (dict(action="rename", name="d-lib", new_name="../x"), ErrorCode.BAD_FIELD, "new_name"),
        (dict(action="delete", name="d-nothing"), ErrorCode.UNKNOWN_CONCEPT, "name"),
        (dict(action="import", name="d-lib", file=Blob(out.read_bytes())), ErrorCode.BAD_FIELD, "name"),
        (dict(action="import", name="d-x"), ErrorCode.BAD_FIELD, "file"),
        (dict(action="import", name="d-x", file=Blob(b"not a lora")), ErrorCode.BAD_FIELD, "file"),
        (dict(action="import", name="d-x", file=Blob(out.read_bytes()), filename="../x.safetensors"),
         ErrorCode.BAD_FIELD, "filename"),
        (dict(action="export", name="d-lib", file=Blob(b"x")), ErrorCode.BAD_FIELD, "file"),
    ]
    for fields, code, field in bad:
        with pytest.raises(ProtocolError) as ei:
            client.concept_action(fields.pop("action"), fields.pop("name"), **fields)
        assert (ei.value.code, ei.value.field) == (code, field), fields
    assert client.ping(5)


def test_a_killed_daemon_resumes_training_from_its_checkpoint(models_dir, tmp_path):
    home = tmp_path / "home"
    d = DaemonProcess(models_dir, home, env_extra=ONE_THREAD).start()
    try:
        with Client(d.endpoint) as c:
            job = c.submit(train("d-crash", steps=400, checkpoint_every=5, prior_preservation=False))
            for ev in job.events(timeout=120):
                if isinstance(ev, Progress) and ev.stage == "train" and ev.step >= 12:
                    break
            os.kill(d.proc.pid, signal.SIGKILL)  # no goodbye, no final checkpoint
            d.proc.wait(10)
    finally:
        d.stop()
    assert any(p.name.startswith("ckpt-") for p in (home / "training" / "d-crash").iterdir())
    d2 = DaemonProcess(models_dir, home, env_extra=ONE_THREAD).start()
    try:
        with Client(d2.endpoint) as c:
            r = c.submit(train("d-crash", steps=14, checkpoint_every=5, prior_preservation=False,
                               resume=True)).wait(120)
            assert r.info["resumed_from"] >= 10 and r.info["resumed_from"] % 5 == 0
            assert r.steps_run == 14 and r.info["steps_this_run"] == 14 - r.info["resumed_from"]
            assert [x["name"] for x in c.concepts().concepts] == ["d-crash"]
    finally:
        d2.stop()


def test_cli_concept_commands(cdaemon, tmp_path, capsys, monkeypatch):
    from impasto.backend import cli

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))   # the CLI keeps a training's settings there

    pics = tmp_path / "pics"
    pics.mkdir()
    for i, w in enumerate(wire_pictures(3)):
        Image.frombytes("RGBA", (w.width, w.height), w.data).save(pics / f"p{i}.png")
        (pics / f"p{i}.txt").write_text(f"a zwx shape number {i}\n")
    ep = ["--endpoint", cdaemon.endpoint]

    def run(*args):
        code = cli.main(ep + list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run("concept", "train", "d-cli", "--images", str(pics), "--trigger", "zwx", "--class", "shape",
                         "--steps", "3", "--resolution", "32", "--no-prior", "--model", "tiny", "--no-spawn", "-q")
    assert code == 0, err
    assert "'d-cli' saved" in out and "--concept d-cli:0.8" in out
    code, out, _ = run("concept", "list", "--no-spawn")
    assert code == 0 and any(line.startswith("d-cli ") and "zwx" in line for line in out.splitlines())
    lora = tmp_path / "d-cli.safetensors"
    assert run("concept", "export", "d-cli", "-o", str(lora), "--no-spawn")[0] == 0 and lora.is_file()
    code, out, _ = run("concept", "import", str(lora), "--name", "d-cli-2", "--trigger", "zwx", "--no-spawn")
    assert code == 0 and "kohya" in out
    assert run("concept", "rename", "d-cli-2", "d-cli-3", "--no-spawn")[0] == 0
    assert run("concept", "delete", "d-cli-3", "--no-spawn")[0] == 0
    code, _, err = run("concept", "delete", "d-cli-3", "--no-spawn")
    assert code == 1 and "no concept named 'd-cli-3'" in err
    (pics / "broken.png").write_bytes(b"not a png")
    code, _, err = run("concept", "train", "d-cli-x", "--images", str(pics), "--trigger", "zwx", "--no-spawn")
    assert code == 1 and "broken.png" in err
    code, _, err = run("generate", "a zwx shape", "-o", str(tmp_path / "g.png"), "--model", "tiny", "--size",
                       "32x32", "--steps", "2", "--concept", "d-cli:0.8", "--no-spawn", "-q")
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == (32, 32)
