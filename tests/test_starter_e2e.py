"""The front door on the shipped starter model: content is judged, not only array shapes.

A daemon with an empty models folder serves the built-in starter as its
default; the README's command must paint what the prompt says.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import DaemonProcess
from impasto.backend.starter.detector import judge
from impasto.protocol import Client
from impasto.protocol.messages import Generate, Image as WireImage


@pytest.fixture(scope="module")
def starter_daemon(tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-models")
    d = DaemonProcess(empty, tmp_path_factory.mktemp("starter-home")).start()
    yield d
    d.stop()


def test_readme_command_paints_the_prompt(starter_daemon, tmp_path):
    # the README's command has no -o: the result goes to a numbered file in the outputs folder, printed
    r = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "generate", "a red circle on a blue background",
                        "--seed", "0", "--no-spawn", "-q"], env=starter_daemon.env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()[0]
    assert "/outputs/" in out and out.endswith("-0.png")
    img = Image.open(out)
    import json

    from impasto.backend.engine.models import starter_dir

    native = json.loads((starter_dir() / "impasto.json").read_text())["native_size"]
    assert img.size == (native, native)   # no --size: the starter's native size, not a soft upscale
    assert judge(img, "a red circle on a blue background")["all"]
    assert "Sampler: DDIM" in img.text["parameters"]       # the model's recommendation, unset on the command line


def test_starter_follows_prompts(starter_daemon):
    prompts = ["a yellow triangle on a black background", "a green square on a white background",
               "a magenta circle on a cyan background", "a white triangle on a red background"]
    with Client(starter_daemon.endpoint) as c:
        assert c.status().default_model == "starter"
        results = [c.submit(Generate(prompt=p, width=128, height=128, steps=20, sampler="ddim", cfg_scale=5.0,
                                     seed=1)).wait(300) for p in prompts]
    verdicts = []
    for p, res in zip(prompts, results):
        img = Image.frombytes("RGBA", (128, 128), res.images[0].data).convert("RGB")
        verdicts.append(judge(img, p)["all"])
    assert sum(verdicts) >= 3, verdicts  # the model card reports ~97 % in-distribution


def test_masked_edit_follows_the_new_prompt_and_keeps_the_rest(starter_daemon):
    from impasto.backend.starter.domain import render

    base = render("circle", "red", "blue", 128, 5).convert("RGBA")
    mask = np.zeros((128, 128), np.uint8)
    mask[16:112, 16:112] = 255
    req = Generate(prompt="a green square on a blue background", steps=20, sampler="ddim", cfg_scale=5.0, seed=2,
                   init_image=WireImage(128, 128, base.tobytes()), mask=WireImage(128, 128, mask.tobytes(), "gray8"),
                   strength=1.0, mask_blur=4, fill="neutral", whole_picture=True)
    with Client(starter_daemon.endpoint) as c:
        res = c.submit(req).wait(300)
    out = np.frombuffer(res.images[0].data, np.uint8).reshape(128, 128, 4)
    src = np.asarray(base)
    keep = np.ones((128, 128), bool)
    keep[16 - 8:112 + 8, 16 - 8:112 + 8] = False  # mask + feather band
    assert (out[keep] == src[keep]).all()
    verdict = judge(Image.fromarray(out[..., :3]), "a green square on a blue background")
    assert verdict["fg"] and verdict["shape"], verdict
