"""Starter-model domain and detector (fast; no trained weights needed)."""

import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from impasto.backend.starter import STARTER_DIR, starter_available
from impasto.backend.starter import domain as D
from impasto.backend.starter.detector import detect, judge


def test_palette_and_shapes():
    assert set(D.SHAPES) >= {"circle", "square", "triangle"}
    assert D.HELD_OUT_SHAPE == "star" and D.HELD_OUT_SHAPE not in D.SHAPES
    assert set(D.COLORS) >= {"red", "green", "blue", "yellow", "cyan", "magenta", "white", "black"}
    assert len(set(D.COLORS.values())) == len(D.COLORS)


def test_render_deterministic_and_seed_dependent():
    a = np.asarray(D.render("circle", "red", "blue", 64, 7))
    b = np.asarray(D.render("circle", "red", "blue", 64, 7))
    c = np.asarray(D.render("circle", "red", "blue", 64, 8))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # position / size vary with the seed


def test_render_rejects_same_colours():
    with pytest.raises(ValueError):
        D.render("circle", "red", "red", 64, 0)


def test_sample_batch_deterministic_and_no_star():
    i1, c1, k1 = D.sample_batch(200, 32, 3, as_array=True)
    i2, c2, k2 = D.sample_batch(200, 32, 3, as_array=True)
    assert np.array_equal(i1, i2) and c1 == c2 and k1 == k2
    assert not any("star" in c for c in c1)
    train = set(D.train_combos())
    assert all(k in train for k in k1)
    generic = sum(D.parse_caption(c)[0] == D.CLASS_NOUN for c in c1)
    assert 5 <= generic <= 40  # ~10% generic "shape" captions
    for c, k in zip(c1, k1):
        s, fg, bg = D.parse_caption(c)
        assert (fg, bg) == k[1:] and s in (k[0], D.CLASS_NOUN)


def test_caption_roundtrip():
    for s, fg, bg in itertools.islice(D.all_combos(D.ALL_SHAPES), 0, None, 7):
        assert D.parse_caption(D.caption(s, fg, bg)) == (s, fg, bg)
    assert D.parse_caption("A Red Shape on a blue background.") == ("shape", "red", "blue")
    with pytest.raises(ValueError):
        D.parse_caption("a photo of a cat")


def test_held_out_split():
    train, ev = D.train_combos(), D.eval_combos()
    allc = D.all_combos()
    assert set(train).isdisjoint(ev)
    assert set(train) | set(ev) == set(allc)
    assert 0.15 <= len(ev) / len(allc) <= 0.25
    assert all(s != "star" for s, _, _ in train + ev)
    # deterministic, and every attribute pair of a held-out combo is seen in training
    assert D.eval_combos() == ev
    for s, fg, bg in ev:
        assert any(t[0] == s and t[1] == fg for t in train)
        assert any(t[0] == s and t[2] == bg for t in train)
        assert any(t[1] == fg and t[2] == bg for t in train)


@pytest.mark.parametrize("size", [48, 64, 96, 160])
def test_detector_accuracy_on_generator_images(size):
    combos = D.all_combos(D.ALL_SHAPES)  # stars included
    rng = np.random.default_rng(size)
    n = 0
    errors = {"shape": 0, "fg": 0, "bg": 0}
    for c in combos[:: 3 if size > 64 else 1][:120]:
        s, fg, bg = c
        img = D.render(s, fg, bg, size, rng)
        d = detect(img)
        for k, v in zip(("shape", "fg", "bg"), c):
            errors[k] += d[k] != v
        n += 1
    for k, e in errors.items():
        assert 1 - e / n >= 0.98, (k, errors, n)


def test_detector_recognises_stars():
    for i, (s, fg, bg) in enumerate(D.star_combos()[::4]):
        assert detect(D.render(s, fg, bg, 64, i))["shape"] == "star"


def test_judge():
    img = D.render("triangle", "yellow", "black", 64, 1)
    assert judge(img, "a yellow triangle on a black background") == {"shape": True, "fg": True, "bg": True, "all": True}
    r = judge(img, "a yellow circle on a white background")
    assert r == {"shape": False, "fg": True, "bg": False, "all": False}
    assert judge(img, "a yellow shape on a black background")["all"]


def test_tokenizer_words_and_letters(tmp_path):
    from impasto.backend.starter.tokenizer import write_tokenizer

    tok = write_tokenizer(tmp_path / "tok")
    assert (tmp_path / "tok" / "vocab.json").is_file() and (tmp_path / "tok" / "merges.txt").is_file()
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text())
    for c in "abcdefghijklmnopqrstuvwxyz":
        assert c in vocab and c + "</w>" in vocab
    assert "<|startoftext|>" in vocab and "<|endoftext|>" in vocab
    for w in D.DOMAIN_WORDS:
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    ids = tok("a zwx star", add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids[1:4] and len(ids) == 5


def test_starter_dir_helper():
    assert STARTER_DIR.name == "starter" and STARTER_DIR.parent.name == "assets"
    assert isinstance(starter_available(), bool)
    if starter_available():
        info = json.loads((STARTER_DIR / "impasto.json").read_text())
        assert info["name"] == "starter" and int(info["native_size"]) > 0


# --------------------------------------------------------------------------- the shipped model's shapes
#
# The shapes of the shipped model's pictures are judged by a geometry of this test's own (not the
# detector's rules, which the concept benchmarks tune), validated on the generator's own pictures below.

# Prototype roundness (area / pi R^2, R = farthest foreground pixel from the centroid) of the domain's
# filled shapes; a picture is called the nearest one, with the decision midway between.
ROUNDNESS = {"circle": 1.0, "square": 2 / math.pi, "triangle": 3 * math.sqrt(3) / (4 * math.pi)}

# 4 prompts per shape, trained combinations spread over the colour pairs
SHAPE_PROMPTS = [c for shape in D.SHAPES for c in [k for k in D.train_combos() if k[0] == shape][::9][:4]]


def shape_by_geometry(img, fg, bg):
    """circle / square / triangle from the pixels nearer the asked foreground than the asked background."""
    a = np.asarray(img.convert("RGB").resize((128, 128), Image.BILINEAR), dtype=np.float32)
    dfg = ((a - np.array(D.COLORS[fg], np.float32)) ** 2).sum(-1)
    dbg = ((a - np.array(D.COLORS[bg], np.float32)) ** 2).sum(-1)
    mask = dfg < dbg
    if mask.sum() < 30:
        return "none"
    ys, xs = np.nonzero(mask)
    r = math.sqrt(float(np.percentile((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2, 99.5))) + 0.5
    roundness = mask.sum() / (math.pi * r * r)
    return min(ROUNDNESS, key=lambda k: abs(ROUNDNESS[k] - roundness))


def test_shape_geometry_is_right_on_the_generators_pictures():
    rng = np.random.default_rng(5)
    combos = [c for c in D.all_combos() if c[0] in ROUNDNESS][::2]
    right = sum(shape_by_geometry(D.render(s, fg, bg, 64, rng), fg, bg) == s for s, fg, bg in combos)
    assert right / len(combos) >= 0.98, (right, len(combos))
    # and it can say no: a circle is not called a triangle because the prompt said so
    img = D.render("circle", "red", "blue", 64, 1)
    assert shape_by_geometry(img, "red", "blue") == "circle"
    assert shape_by_geometry(D.render("triangle", "red", "blue", 64, 1), "red", "blue") == "triangle"


def test_shipped_starter_model_loads_and_paints_shapes_and_colours():
    """The shipped folder loads like an SD1.5 folder and paints this domain's sentence pattern.

    The shipped starter is the 128 px scenes model; "a red circle on a blue background" is one of its
    plain captions.  12 prompts, 4 per shape, 20 steps, seeds 0-11; measured 2026-12-01: colours,
    backgrounds and a single object right in 12 of 12, the shape by this test's geometry in 9 (3 of
    4 per shape), by the strict judges in 6.  A model that gets the colours right but draws one
    shape, or blobs, fails the per-shape count."""
    import torch
    from diffusers import StableDiffusionPipeline

    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E

    assert starter_available(), f"starter model missing in {STARTER_DIR}"
    pipe = StableDiffusionPipeline.from_pretrained(str(STARTER_DIR), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    tok = pipe.tokenizer
    ids = tok("a zwx star", add_special_tokens=False).input_ids
    # "star" is held out for concepts: not a word of this tokenizer, but letters, never the unknown token
    assert tok.unk_token_id not in ids and len(tok("star", add_special_tokens=False).input_ids) > 1
    assert len(tok("a red pentagon", add_special_tokens=False).input_ids) == 3   # domain words are one token
    assert len(SHAPE_PROMPTS) == 12 and {c[0] for c in SHAPE_PROMPTS} == set(ROUNDNESS)
    prompts = [D.caption(*c) for c in SHAPE_PROMPTS]
    side = json.loads((STARTER_DIR / "impasto.json").read_text())["native_size"]
    gens = [torch.Generator("cpu").manual_seed(i) for i in range(len(prompts))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest on a busy machine
    try:
        imgs = pipe(prompts, height=side, width=side, num_inference_steps=20, guidance_scale=5.0,
                    generator=gens).images
    finally:
        torch.set_num_threads(threads)
    drawn, strict = [], 0
    for img, p, (shape, fg, bg) in zip(imgs, prompts, SHAPE_PROMPTS):
        assert img.size == (side, side)
        v = E.judge_scene(img, SC.parse_caption(p))
        assert v["colour"] and v["bg"] and v["count"], (p, v)
        strict += v["family"]
        drawn.append(shape_by_geometry(img, fg, bg))
    right = {s: sum(d == s for d, c in zip(drawn, SHAPE_PROMPTS) if c[0] == s) for s in ROUNDNESS}
    # one more miss than measured tolerated, and every shape at least 2 of its 4
    assert sum(right.values()) >= 8 and min(right.values()) >= 2, (right, list(zip(prompts, drawn)))
    assert strict >= 4, strict
