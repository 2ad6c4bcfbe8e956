"""Concept Sliders over the real daemon and the real CLI: a train_slider job with progress, the listing,
signed weights on the wire, a typed error out of range, export/import keeping the slider, `impasto slider`."""
from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from conftest import DaemonProcess
from impasto.protocol import Client, JobFailed
from impasto.protocol.concept_files import export_concept, import_concept
from impasto.protocol import sliders
from impasto.protocol.messages import Accepted, Generate, Image as WireImage, Progress, Result, TrainSlider

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sdaemon(models_dir, tmp_path_factory):
    d = DaemonProcess(models_dir, tmp_path_factory.mktemp("sliders-daemon"), env_extra=ONE_THREAD).start()
    yield d
    d.stop()


@pytest.fixture
def client(sdaemon):
    with Client(sdaemon.endpoint) as c:
        yield c


def disc(r):
    im = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    ImageDraw.Draw(im).ellipse([16 - r, 16 - r, 16 + r, 16 + r], fill=(255, 255, 0, 255))
    return im


def wire(im):
    return WireImage(width=im.width, height=im.height, data=im.tobytes())


def generate(client, concepts=()):
    return client.submit(Generate(prompt="a circle", seed=4, steps=3, width=32, height=32, sampler="ddim",
                                  model="tiny", concepts=list(concepts))).wait(120)


def test_a_slider_trains_over_the_daemon_and_is_used_with_signed_weights(client, tmp_path):
    job = client.submit(TrainSlider(name="d-size", mode="images", images=[wire(disc(5)), wire(disc(6))],
                                    images_high=[wire(disc(12)), wire(disc(13))], captions=["a circle"] * 2,
                                    steps=4, resolution=32, sample_every=2, checkpoint_every=0, model="tiny",
                                    rank=2, learning_rate=1e-3, preview=True))
    events = list(job.events(timeout=180))
    assert isinstance(events[0], Accepted) and isinstance(events[-1], Result)
    steps = [e for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert [e.step for e in steps] == [1, 2, 3, 4] and all(isinstance(e.loss, float) for e in steps)
    assert steps[1].preview is not None and (steps[1].preview.width, steps[1].preview.height) == (96, 32)
    result = events[-1]
    assert len(result.images) == 3 and result.info["sample_weights"] == [-1.0, 0.0, 1.0]
    listed = {c["name"]: c for c in client.concepts().concepts}
    assert sliders.is_slider(listed["d-size"]) and listed["d-size"]["slider"]["pairs"] == 2
    base = generate(client).images[0].data
    assert generate(client, [("d-size", 0.0)]).images[0].data == base
    assert generate(client, [("d-size", -2.5)]).images[0].data != base
    with pytest.raises(JobFailed) as ei:
        generate(client, [("d-size", 3.5)])
    assert ei.value.code == "bad_field" and ei.value.field == "concepts[0].weight"
    # kohya export -> import: still a slider, same pictures
    path = export_concept(client, "d-size", tmp_path)
    done = import_concept(client, path, "d-size-back")
    assert done.info["concept"]["slider"] == listed["d-size"]["slider"]
    assert generate(client, [("d-size-back", -1.5)]).images[0].data == \
        generate(client, [("d-size", -1.5)]).images[0].data


def test_cli_slider_train_and_list(sdaemon, tmp_path, capsys, monkeypatch):
    from impasto.backend import cli

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    ep = ["--endpoint", sdaemon.endpoint]

    def run(*args):
        code = cli.main(ep + list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run("slider", "train", "d-warm", "--target", "a circle", "--positive", "a red circle",
                         "--negative", "a blue circle", "--preserve", "on white", "--base-pictures", "2",
                         "--steps", "3", "--rank", "2", "--resolution", "32", "--model", "tiny", "--no-spawn", "-q")
    assert code == 0, err
    assert "slider 'd-warm' saved (text): 3 steps" in out and "--concept d-warm:-1.5" in out
    assert "sample at -1.00" in out and "sample at +1.00" in out
    code, out, _ = run("slider", "list", "--no-spawn")
    assert code == 0 and any(line.startswith("d-warm ") and line.endswith(
        "text slider: 'a blue circle' <-> 'a red circle' (-3..+3)") for line in out.splitlines()), out
    code, _, err = run("generate", "a circle", "-o", str(tmp_path / "g.png"), "--model", "tiny", "--size", "32x32",
                       "--steps", "2", "--concept", "d-warm:-1.5", "--no-spawn", "-q")
    assert code == 0, err
    code, _, err = run("generate", "a circle", "-o", str(tmp_path / "h.png"), "--model", "tiny", "--size", "32x32",
                       "--steps", "2", "--concept", "d-warm:-3.5", "--no-spawn", "-q")
    assert code != 0 and "d-warm" in err and "-3..+3" in err
    code, _, err = run("slider", "train", "d-none", "--target", "a circle", "--no-spawn")
    assert code == 1 and "--positive" in err
