"""Concept Sliders on the wire and in the client core: the TrainSlider message, its checks, the slider rules
every front end shares (``protocol/sliders.py``) and the CLI's request building.  No torch."""
from __future__ import annotations

import argparse

import pytest
from PIL import Image

from impasto.protocol import codec, sliders
from impasto.protocol.errors import PlanError
from impasto.protocol.messages import (
    Generate, Image as WireImage, ProtocolError, TrainSlider, check_slider_weight, validate_job,
)


def img(w=16, h=16):
    return WireImage(w, h, bytes(w * h * 4))


def text_slider(**kw):
    base = dict(job="j1", name="bigger", mode="text", target="a shape", positive="a big shape",
                negative="a small shape")
    base.update(kw)
    return TrainSlider(**base)


def pair_slider(**kw):
    base = dict(job="j2", name="size", mode="images", images=[img(), img()], images_high=[img(), img(8, 8)])
    base.update(kw)
    return TrainSlider(**base)


def test_train_slider_round_trips_through_the_codec_with_its_picture_pairs():
    for msg in (text_slider(preserve=["on blue", "on red"], guidance=2.0), pair_slider(captions=["a", "b"])):
        frames = codec.encode(msg)
        back = codec.decode(frames)
        assert back == msg
    assert len(codec.encode(pair_slider())) == 1 + 4      # header + one frame a picture


@pytest.mark.parametrize("msg, field", [
    (text_slider(positive=" "), "positive"),
    (text_slider(target=""), "target"),
    (text_slider(negative="a big shape"), "negative"),
    (text_slider(mode="sideways"), "mode"),
    (text_slider(images=[img()]), "images"),
    (text_slider(guidance=-1.0), "guidance"),
    (text_slider(guidance=50.0), "guidance"),
    (text_slider(base_pictures=0), "base_pictures"),
    (text_slider(steps=6000), "steps"),
    (text_slider(name="../x"), "name"),
    (pair_slider(images=[img()], images_high=[img()]), "images"),
    (pair_slider(images_high=[img()]), "images_high"),
    (pair_slider(captions=["only one"]), "captions"),
    (pair_slider(images=[img(), WireImage(4, 4, b"123")]), "images[1]"),
])
def test_bad_slider_requests_are_typed_errors_naming_the_field(msg, field):
    with pytest.raises(ProtocolError) as ei:
        validate_job(msg)
    assert ei.value.code == "bad_field" and ei.value.field == field


def test_good_requests_pass_and_signed_concept_weights_are_valid_on_the_wire():
    validate_job(text_slider())
    validate_job(pair_slider())
    validate_job(Generate(job="g", prompt="a circle", concepts=[("size", -1.5), ("bigger", 3.0)]))
    back = codec.decode(codec.encode(Generate(job="g", concepts=[("size", -1.5)])))
    assert back.concepts == [("size", -1.5)] or back.concepts == [["size", -1.5]]
    assert check_slider_weight(-3.0) == -3.0 and check_slider_weight(2) == 2.0
    for bad in (3.01, -4, float("nan"), True):
        with pytest.raises(ProtocolError):
            check_slider_weight(bad)


def test_which_concepts_are_sliders_and_how_a_widget_shows_them():
    listing = [
        {"name": "mycat", "trigger": "sks"},
        {"name": "Smile", "slider": {"mode": "text", "negative": "a frowning   person", "positive": "a smiling person"}},
        {"name": "age", "slider": {"mode": "images", "pairs": 6}},
        {"name": "odd", "slider": "not a dict"},
        {"slider": {"mode": "text"}},                       # no name: nothing to show
    ]
    specs = sliders.slider_specs(listing)
    assert [s.name for s in specs] == ["age", "Smile"]
    assert (specs[1].low, specs[1].high, specs[1].mode) == ("a frowning person", "a smiling person", "text")
    assert (specs[0].low, specs[0].high) == ("less", "more") and (specs[0].minimum, specs[0].maximum) == (-3, 3)
    assert "a smiling person" in specs[1].tooltip and "0 leaves" in specs[1].tooltip
    assert sliders.describe(listing[1]) == "text slider: 'a frowning person' <-> 'a smiling person' (-3..+3)"
    hostile = sliders.spec({"name": "x", "slider": {"mode": "text", "negative": "y" * 500, "positive": 5}})
    assert len(hostile.low) == 80 and hostile.high == "more"


def test_positions_formatting_and_clamping():
    assert sliders.POSITIONS == (-60, 60)
    assert [sliders.to_position(w) for w in (-3, -1.5, 0, 0.05, 0.74, 3, 9)] == [-60, -30, 0, 1, 15, 60, 60]
    assert [sliders.from_position(p) for p in (-60, -30, 0, 7, 99)] == [-3.0, -1.5, 0.0, 0.35, 3.0]
    for p in range(-60, 61):
        assert sliders.to_position(sliders.from_position(p)) == p
    assert [sliders.format_weight(w) for w in (1.5, -0.75, 0, -0.001, 0.3)] == ["+1.50", "-0.75", "0.00", "0.00",
                                                                                 "+0.30"]


def test_split_and_merge_keep_plain_concepts_and_leave_sliders_at_zero_out():
    pairs = [("mycat", 0.8), ("size", -1.5), ("smile", 2.0)]
    plain, weights = sliders.split(pairs, ["size", "smile", "unused"])
    assert plain == [("mycat", 0.8)] and weights == {"size": -1.5, "smile": 2.0}
    assert sliders.merge(plain, dict(weights, smile=0.0)) == [("mycat", 0.8), ("size", -1.5)]
    assert sliders.merge([("size", 1.0)], {"size": -2.0}) == [("size", -2.0)]   # the slider's weight wins
    with pytest.raises(PlanError) as ei:
        sliders.merge([], {"size": 3.5})
    assert "size" in ei.value.message and ei.value.field == "concepts"


# --------------------------------------------------------------------------- the CLI builds the request


def _args(**kw):
    from impasto.backend import cli, cli_sliders

    cli._load_extras()
    parser = cli.build_parser()
    argv = ["slider", "train", kw.pop("name", "size")]
    for k, v in kw.items():
        if v is True:
            argv.append(f"--{k.replace('_', '-')}")
            continue
        for item in (v if isinstance(v, list) else [v]):
            argv += [f"--{k.replace('_', '-')}", str(item)]
    return parser.parse_args(argv), cli_sliders


def test_cli_builds_a_text_slider_with_the_paper_defaults_left_to_the_daemon():
    args, mod = _args(target="a circle", positive="a big circle", negative="a small circle",
                      preserve=["on blue", "on red"])
    req = mod.build_request(args)
    assert (req.mode, req.target, req.positive, req.negative, req.preserve) == (
        "text", "a circle", "a big circle", "a small circle", ["on blue", "on red"])
    assert (req.steps, req.rank, req.learning_rate, req.guidance) == (0, 0, 0.0, 0.0)   # the model's / paper's
    validate_job(req.__class__(**dict(vars(req), job="j")))
    args, mod = _args(target="a circle", positive="a big circle")
    with pytest.raises(mod.CliError, match="--negative"):
        mod.build_request(args)


def test_cli_pairs_pictures_by_name_and_reads_captions(tmp_path):
    for end, size in (("low", 10), ("high", 20)):
        (tmp_path / end).mkdir()
        for stem in ("b", "a", "c"):
            Image.new("RGB", (size + ord(stem) - 97, size), "red").save(tmp_path / end / f"{stem}.png")
    for stem in ("a", "b", "c"):
        (tmp_path / "low" / f"{stem}.txt").write_text(f"a red {stem}\n")
    args, mod = _args(pairs=str(tmp_path))
    req = mod.build_request(args)
    assert req.mode == "images" and len(req.images) == len(req.images_high) == 3
    assert [i.width for i in req.images] == [10, 11, 12] and [i.width for i in req.images_high] == [20, 21, 22]
    assert req.captions == ["a red a", "a red b", "a red c"]
    (tmp_path / "high" / "c.png").rename(tmp_path / "high" / "z.png")     # names differ: sorted order
    req = mod.build_request(_args(low=str(tmp_path / "low"), high=str(tmp_path / "high"))[0])
    assert [i.width for i in req.images_high] == [20, 21, 22]
    (tmp_path / "high" / "z.png").unlink()
    with pytest.raises(mod.CliError, match="give pairs"):
        mod.build_request(_args(pairs=str(tmp_path))[0])
    with pytest.raises(mod.CliError, match="not both"):
        mod.build_request(_args(pairs=str(tmp_path), low=str(tmp_path))[0])


def test_cli_concept_weight_takes_a_negative_slider_weight():
    from impasto.backend.cli import parse_concept

    assert parse_concept("size:-1.5") == ("size", -1.5)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_concept("size:big")


# --------------------------------------------------------------------------- GIMP: the sliders edit the concepts text


LISTING = [{"name": "mycat"}, {"name": "size", "slider": {"mode": "images"}},
           {"name": "warmth", "slider": {"mode": "text", "negative": "a magenta", "positive": "a yellow"}}]


def test_gimp_sliders_read_and_rewrite_the_concepts_field():
    from impasto.plugin_gimp import slider_fields as sf

    assert sf.slider_weights("mycat:0.8, size:-1.5", LISTING) == {"size": -1.5, "warmth": 0.0}
    assert sf.slider_weights("not : valid : text", LISTING) == {"size": 0.0, "warmth": 0.0}
    text = sf.with_slider("mycat:0.8", "warmth", -0.75)
    assert text == "mycat:0.8, warmth:-0.75"
    text = sf.with_slider("size:1.5, mycat:0.8", "size", 2.0)        # moved in place, order kept
    assert text == "size:2, mycat:0.8"
    assert sf.with_slider(text, "size", 0.0) == "mycat:0.8"            # 0: off, left out
    assert sf.with_slider("a:b:c", "size", 1.0) == "a:b:c"             # unreadable text is left for OK to report
    with pytest.raises(PlanError):
        sf.with_slider("mycat", "size", 3.5)
    from impasto.plugin_gimp.jobs import parse_concepts

    assert parse_concepts(sf.with_slider("mycat", "warmth", -1.25)) == [("mycat", 1.0), ("warmth", -1.25)]


def test_cli_resume_uses_the_options_the_training_started_with(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    args, mod = _args(name="warm", target="a red", positive="a yellow", negative="a magenta", preserve=["circle"],
                      steps=300, guidance=2.0)
    mod._remember(args)
    first = mod.build_request(args)
    again, _ = _args(name="warm", resume=True)
    mod._recall(again)
    second = mod.build_request(again)
    assert second.resume and (second.target, second.positive, second.negative, second.preserve, second.steps,
                              second.guidance) == (first.target, first.positive, first.negative, first.preserve,
                                                   300, 2.0)
    other, _ = _args(name="never", resume=True)
    with pytest.raises(mod.CliError, match="no saved settings"):
        mod._recall(other)
