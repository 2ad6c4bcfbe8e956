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
    assert PromptEdit().cross_replace == 0.8 and PromptEdit().self_replace == 0.4


def test_wrong_types_and_unknown_fields_are_typed_with_the_nested_field_name():
    header = json.loads(codec.encode(edit())[0])
    for bad, field in (({"cross_replace": "lots"}, "p2p.cross_replace"), ({"zzz": 1}, "p2p.zzz"),
                       ({"source_prompt": 5}, "p2p.source_prompt")):
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
