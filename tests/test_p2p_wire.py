"""The Prompt-to-Prompt request on the wire (no torch): codec round trip, typed refusals, the word rule.

The daemon's side of the same checks (a real daemon answering a fuzzed
``p2p`` with typed errors) is in ``tests/test_fuzz.py`` (its base messages
include a prompt edit and it mutates the edit's own fields) and
``tests/test_p2p.py``.
"""
from __future__ import annotations

import json

import pytest

from impasto.protocol import codec
from impasto.protocol.messages import (
    Generate, Image, PromptEdit, ProtocolError, p2p_max_changes, prompt_edit_changes, prompt_words, validate_job,
)

SRC = "a red circle on a blue background"


def edit(prompt="a green circle on a blue background", seed=4, **fields):
    return Generate(job="e", prompt=prompt, seed=seed, p2p=PromptEdit(**{"source_prompt": SRC, **fields}))


def refused(msg) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        validate_job(msg)
    return err.value


def test_round_trip_and_defaults():
    msg = edit(cross_replace=0.6, self_replace=0.2, reweight_word="green", reweight=2.5)
    validate_job(msg)
    back = codec.decode(codec.encode(msg))
    assert back.p2p == msg.p2p and back.kind == "txt2img"
    assert codec.decode(codec.encode(Generate(job="x", prompt="y"))).p2p is None
    assert PromptEdit().cross_replace == 1.0 and PromptEdit().self_replace is None and PromptEdit().local is True
    auto = edit()                                        # the layout unset: auto, on the wire as null
    validate_job(auto)
    assert codec.decode(codec.encode(auto)).p2p.self_replace is None
    whole = edit(local=False)
    assert codec.decode(codec.encode(whole)).p2p.local is False


def test_wrong_types_and_unknown_fields_are_typed_with_the_nested_field_name():
    header = json.loads(codec.encode(edit())[0])
    for bad, field in (({"cross_replace": "lots"}, "p2p.cross_replace"), ({"zzz": 1}, "p2p.zzz"),
                       ({"source_prompt": 5}, "p2p.source_prompt"), ({"local": "yes"}, "p2p.local"),
                       ({"local": 1}, "p2p.local")):
        h = dict(header, p2p=dict(header["p2p"], **bad))
        with pytest.raises(ProtocolError) as err:
            codec.decode([json.dumps(h).encode()])
        assert err.value.field == field
    with pytest.raises(ProtocolError) as err:
        codec.decode([json.dumps(dict(header, p2p="a red circle")).encode()])
    assert err.value.field == "p2p"


def test_typed_refusals():
    assert refused(edit(seed=-1)).field == "seed"                                     # the seed is missing
    assert refused(edit(source_prompt="  ")).field == "p2p.source_prompt"
    assert refused(edit(cross_replace=1.5)).field == "p2p.cross_replace"
    assert refused(edit(self_replace=-0.1)).field == "p2p.self_replace"
    assert refused(edit(cross_replace=float("nan"))).field == "p2p.cross_replace"
    assert refused(edit(reweight_word="green", reweight=11)).field == "p2p.reweight"
    assert refused(edit(reweight_word="dog", reweight=2)).field == "p2p.reweight_word"  # not in the new prompt
    assert refused(edit(reweight=2)).field == "p2p.reweight_word"                       # a factor and no word
    assert refused(edit(local="no")).field == "p2p.local"                               # true or false only
    assert refused(edit(prompt=SRC)).field == "prompt"                                  # nothing to edit
    err = refused(edit(prompt="three green dogs under a tall tree"))                   # too many words changed
    assert err.field == "prompt" and "changes" in err.message and "at most 3" in err.message
    img = Image(8, 8, bytes(8 * 8 * 4))
    msg = edit()
    msg.init_image = img
    assert refused(msg).field == "p2p"                                                  # only text to image


def test_accepted_edits():
    validate_job(edit())                                                              # a colour swap
    validate_job(edit(prompt=SRC, reweight_word="red", reweight=3))                   # re-weighting alone
    validate_job(edit(prompt="a (green:1.3) circle on a blue background"))            # weighting syntax is no word
    validate_job(edit(prompt="a big red circle on a blue background"))                # an added word
    validate_job(edit(prompt="a red circle on a blue background BREAK a cat"))        # BREAK is no word
    validate_job(edit(reweight_word="Blue Background", reweight=-1))


def test_the_word_rule():
    assert prompt_words("a (Red:1.3) [circle], BREAK x-ray") == ["a", "red", "circle", "x-ray"]
    assert prompt_edit_changes(SRC, "a green circle on a blue background") == (1, 1)
    assert prompt_edit_changes(SRC, "a big red circle on a blue background") == (1, 0)
    assert p2p_max_changes("a green circle on a blue background") == 3
    assert p2p_max_changes("cat") == 1
    validate_job(Generate(job="e", prompt="dog", seed=1, p2p=PromptEdit(source_prompt="cat")))  # one word for one


# --------------------------------------------------------------------------- the client core: protocol/prompt_edit.py

def test_an_edit_plan_from_a_request_and_from_parameters():
    from impasto.protocol import prompt_edit as pe
    from impasto.protocol.errors import PlanError
    from impasto.protocol.parameters import format_parameters, parse_parameters
    from impasto.protocol.settings import Settings

    sent = Generate(job="a", prompt=SRC, negative_prompt="blur", seed=-1, steps=12, cfg_scale=4.0, width=96,
                    height=64, sampler="ddim", model="starter", concepts=[("mycat", 0.7)], batch_size=3)
    original = pe.original_from_request(sent, seed=1234 + 2)         # the third picture of the batch
    plan = pe.plan_prompt_edit(original, "a green circle on a blue background", 0.6, 0.3)
    req = plan.request
    assert (req.seed, req.width, req.height, req.batch_size) == (1236, 96, 64, 1)
    assert (req.steps, req.cfg_scale, req.sampler, req.model, req.negative_prompt) == (12, 4.0, "ddim", "starter",
                                                                                      "blur")
    assert req.concepts == [("mycat", 0.7)] and req.priority == "front" and req.init_image is None
    assert req.p2p == PromptEdit(SRC, 0.6, 0.3, "", 1.0) and plan.label.startswith("Edit prompt")

    # saved with its parameters, read back: the same original, and an edit of it goes back to the first one
    text = format_parameters(Settings.from_request(req), req.seed, (96, 64), "starter",
                             extra=pe.parameters_extra(req))
    back = pe.original_from_parameters(text)
    assert back.settings.prompt == SRC and back.settings.seed == 1236 and back.size == (96, 64) and back.note
    assert parse_parameters(text).values[pe.KEY_CROSS] == "0.6"
    assert parse_parameters(text).values[pe.KEY_LOCAL] == "yes"
    whole = pe.plan_prompt_edit(original, "a green circle on a blue background", local=False).request
    assert whole.p2p.local is False and pe.parameters_extra(whole)[pe.KEY_LOCAL] == "no"
    again = pe.original_from_request(req, seed=1236)
    assert again.settings.prompt == SRC and again.note

    with pytest.raises(PlanError) as err:                                # a picture without a seed
        pe.original_from_parameters(text.replace("Seed: 1236, ", ""))
    assert err.value.field == "seed"
    with pytest.raises(PlanError) as err:                                # an img2img picture
        pe.original_from_parameters(text + ", Denoising strength: 0.5")
    assert "text-to-image" in err.value.message
    with pytest.raises(PlanError) as err:                                # refusals in an artist's words
        pe.plan_prompt_edit(original, "a green circle on a blue background", cross_replace=2)
    assert err.value.message.startswith("Word-map injection") and err.value.field == "p2p.cross_replace"
    with pytest.raises(PlanError) as err:
        pe.plan_prompt_edit(original, "three green dogs under a tall tree")
    assert err.value.field == "prompt" and "at most 3" in err.value.message
    assert pe.parse_reweight("blue background:2.5") == ("blue background", 2.5)
    with pytest.raises(PlanError):
        pe.parse_reweight("blue")
    assert pe.parameters_extra(Generate(job="x", prompt="y")) == {}


def test_an_original_from_a_staged_result_and_from_an_edit_of_it():
    from impasto.protocol import prompt_edit as pe
    from impasto.protocol.settings import Settings

    s = Settings(prompt=SRC, steps=7, cfg_scale=5.0, sampler="ddim", seed=-1, batch_size=4)
    original = pe.original_from_settings(s, 77, (64, 64))
    assert original.settings.seed == 77 and original.settings.batch_size == 1 and s.seed == -1  # a copy
    edited = pe.original_from_settings(Settings(prompt="a green circle on a blue background"), 77, (64, 64),
                                       {"p2p": {"source_prompt": SRC}})
    assert edited.settings.prompt == SRC and "edit of" in edited.note
    plan = pe.plan_prompt_edit(edited, "a yellow circle on a blue background")
    assert plan.request.p2p.source_prompt == SRC and plan.request.seed == 77


def test_an_unset_layout_is_held_every_step_for_a_colour_change_and_0_4_otherwise():
    from impasto.protocol.prompt_edit import (
        LAYOUT_DEFAULT, LAYOUT_HELD, auto_layout, changed_words, layout_of, parameters_extra,
    )

    assert (LAYOUT_DEFAULT, LAYOUT_HELD) == (0.4, 1.0)
    assert changed_words(SRC, "a green circle on a blue background") == (["red"], ["green"])
    for new in ("a green circle on a blue background", "a (green:1.3) circle on a blue background",
                "a dark green circle on a blue background", "a Crimson circle on a blue background",
                "a dark circle on a blue background"):                   # red -> dark: still a colour change
        assert auto_layout(SRC, new) == LAYOUT_HELD, new
    for new in ("a red square on a blue background",            # a new noun: the outline must be free to change
                "a green square on a blue background",          # colour and noun
                "a red circle on a blue background with a dog",  # a new object
                "a big circle on a blue background",            # a colour swapped for a size
                SRC):                                           # nothing changed (a re-weighting)
        assert auto_layout(SRC, new) == LAYOUT_DEFAULT, new
    assert layout_of(PromptEdit(SRC), "a green circle on a blue background") == 1.0
    assert layout_of(PromptEdit(SRC, self_replace=0.25), "a green circle on a blue background") == 0.25
    # a saved edit records the layout it ran with, not "auto"
    assert parameters_extra(edit())["P2P self replace"] == "1"
    assert parameters_extra(edit(prompt="a red square on a blue background"))["P2P self replace"] == "0.4"


@pytest.mark.parametrize("value", ["auto", True, [0.5], {"a": 1}])
def test_a_layout_that_is_not_a_number_or_null_is_a_typed_error(value):
    header = json.loads(codec.encode(edit())[0])
    h = dict(header, p2p=dict(header["p2p"], self_replace=value))
    with pytest.raises(ProtocolError) as err:
        validate_job(codec.decode([json.dumps(h).encode()]))
    assert err.value.field == "p2p.self_replace"
