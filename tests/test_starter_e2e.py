"""The front door on the shipped starter model: content is judged strictly, not only array shapes.

A daemon with an empty models folder serves the built-in starter (the 128 px scenes model) as
its default.  Pictures are judged by ``scenes_eval.judge_scene``: the family by the strict
per-family detectors, the colours, the place cell, the size class and the object count.

* the README's command paints what it says;
* prompts built on (family, colour, background) triples held out of training: the first
  prompts of ``bench/starter_scenes_eval.py``'s own list (not picked), held to the rates that
  benchmark measured, per attribute, with the margin a handful of prompts needs;
* a masked edit paints the new object where the old one was and keeps every other pixel.

What a broken pipeline would fail: a prompt that does not reach the UNet (or the wrong text
encoder, tokenizer or scheduler) gives wrong colours, backgrounds and places; a broken VAE or a
wrong size gives no recognisable family; a broken paste-back changes pixels outside the mask.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import DaemonProcess
from impasto.backend.starter import scenes as SC
from impasto.backend.starter import scenes_eval as E
from impasto.protocol import Client
from impasto.protocol.messages import Generate, Image as WireImage


def native() -> int:
    from impasto.backend.engine.models import starter_dir

    return json.loads((starter_dir() / "impasto.json").read_text())["native_size"]


@pytest.fixture(scope="module")
def starter_daemon(tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-models")
    d = DaemonProcess(empty, tmp_path_factory.mktemp("starter-home")).start()
    yield d
    d.stop()


def paint(client, prompt: str, seed: int, side: int) -> Image.Image:
    res = client.submit(Generate(prompt=prompt, width=side, height=side, steps=20, sampler="ddim", cfg_scale=5.0,
                                 seed=seed)).wait(300)
    return Image.frombytes("RGBA", (side, side), res.images[0].data).convert("RGB")


def test_readme_command_paints_the_prompt(starter_daemon, tmp_path):
    # the README's command has no -o: the result goes to a numbered file in the outputs folder, printed
    # (the README's command draws a random seed; this prompt's circle is recognised by the strict judge at
    # seeds 1, 3, 4 and 5 of 0-5 (measured 2026-12-01), so seed 1 is a seed the starter gets right)
    prompt = "a red circle on a blue background"
    r = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "generate", prompt,
                        "--seed", "1", "--no-spawn", "-q"], env=starter_daemon.env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()[0]
    assert "/outputs/" in out and out.endswith("-1.png")
    img = Image.open(out)
    assert img.size == (native(), native())   # no --size: the starter's native size, not a soft upscale
    verdict = E.judge_scene(img.convert("RGB"), SC.parse_caption(prompt))
    assert verdict["all"], verdict            # a circle (strict judge), red, on blue, nothing else
    assert "Sampler: DDIM" in img.text["parameters"]       # the model's recommendation, unset on the command line


#: ``bench/starter_scenes_eval.py --n 48`` on the shipped starter (bench/results/starter_scenes_eval.json):
#: share of held-out prompts right per attribute.  A test of 8 prompts asserts at least the share a
#: binomial lower bound allows (the rate less ~2.5 standard errors), so it fails when the pipeline
#: breaks, not when one more prompt of eight goes wrong.
HELD_OUT_KINDS = ("one", "plain", "two")


def floor_for(rate: float, n: int) -> int:
    return max(0, int(np.floor(n * rate - 2.5 * np.sqrt(n * rate * (1 - rate)))))


def measured_rates():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "results" / "starter_scenes_eval.json"
    return json.loads(path.read_text())["kinds"]


@pytest.mark.parametrize("kind", HELD_OUT_KINDS)
def test_starter_follows_held_out_prompts_at_the_measured_rate(starter_daemon, kind):
    n = 8
    scenes = E.prompt_scenes(kind, n, seed=0)   # the benchmark's first prompts and seeds, as it makes them
    rates = measured_rates()[kind]["model"]
    with Client(starter_daemon.endpoint) as c:
        assert c.status().default_model == "starter"
        verdicts = [E.judge_scene(paint(c, SC.caption(s), i, native()), s) for i, s in enumerate(scenes)]
    got = {k: sum(v[k] for v in verdicts) for k in verdicts[0]}
    for k, rate in rates.items():
        assert got[k] >= floor_for(rate, n), (kind, k, got, rates)
    # colours and backgrounds: the benchmark measured them right (almost) always
    assert got["colour"] >= n - 1 and got["bg"] == n, (kind, got)


#: held-out prompts and seeds on which the shipped starter paints everything asked (found with
#: ``scenes_eval.judge_scene`` on the shipped weights); every attribute is checked
KNOWN_GOOD = [   # the first right of each kind among scenes_eval.prompt_scenes(kind, 16, seed=50), seed = its index
    # (picked again 2026-12-04 evening for the wide starter: the first prompt of each kind is right)
    ("a big cyan rectangle at the bottom left on a magenta background", 0),
    ("a cyan rectangle on a magenta background", 0),
    ("a big cyan rectangle at the bottom left and a small white trapezoid at the bottom right on a magenta "
     "background", 0),
]


@pytest.mark.parametrize("prompt,seed", KNOWN_GOOD)
def test_starter_paints_every_attribute_of_these_held_out_prompts(starter_daemon, prompt, seed):
    scene = SC.parse_caption(prompt)
    assert (scene.objects[0].family, scene.objects[0].fg, scene.bg) in SC.eval_triples()   # held out of training
    with Client(starter_daemon.endpoint) as c:
        verdict = E.judge_scene(paint(c, prompt, seed, native()), scene)
    assert verdict["all"], verdict


def test_masked_edit_follows_the_new_prompt_and_keeps_the_rest(starter_daemon):
    side = native()
    # a training object in the middle; the prompt names a held-out triple on the same background
    base = SC.render(SC.Scene("blue", [SC.Obj("square", "red", None, None, 0.5, 0.52, 0.2, 8.0)]), side).convert("RGBA")
    # a held-out triple; on the wide starter (2026-12-04) right at seeds 0, 1 and 3-7 of 0-7, not at 2
    prompt = "a black circle on a blue background"
    mask = np.zeros((side, side), np.uint8)
    m = side // 8
    mask[m:side - m, m:side - m] = 255
    req = Generate(prompt=prompt, steps=20, sampler="ddim", cfg_scale=5.0, seed=0,
                   init_image=WireImage(side, side, base.tobytes()),
                   mask=WireImage(side, side, mask.tobytes(), "gray8"),
                   strength=1.0, mask_blur=4, fill="neutral", whole_picture=True)
    with Client(starter_daemon.endpoint) as c:
        res = c.submit(req).wait(300)
    out = np.frombuffer(res.images[0].data, np.uint8).reshape(side, side, 4)
    src = np.asarray(base)
    keep = np.ones((side, side), bool)
    keep[m - 8:side - m + 8, m - 8:side - m + 8] = False  # mask + feather band
    assert (out[keep] == src[keep]).all()
    verdict = E.judge_scene(Image.fromarray(out[..., :3]), SC.parse_caption(prompt))
    assert verdict["family"] and verdict["colour"] and verdict["count"], verdict   # the red square is gone
