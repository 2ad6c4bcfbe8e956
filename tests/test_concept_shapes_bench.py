"""The new-shapes concept benchmark's helpers (bench/concept_shapes.py), no model needed.

Why: the benchmark's figures are only as good as its training pictures and prompts: the
pictures must be the family (its strict judge says so) in the starter domain's geometry,
the "other shapes" prompts must be ones the starter was trained on, the colour pairs of
the evaluation must never be the training ones, recipe research must stay on the tune
families, and runs split by family may only be merged when their baselines are the same.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import concept_shapes as CS  # noqa: E402
from impasto.backend.starter import families as FAM  # noqa: E402
from impasto.backend.starter import judges as J  # noqa: E402
from impasto.backend.starter import scenes as SC  # noqa: E402


def test_training_pictures_are_the_family_in_the_scenes_geometry():
    for i, fam in enumerate(FAM.HELD_OUT_FAMILIES):
        fg, bg = CS.TRAIN_PAIRS[i % len(CS.TRAIN_PAIRS)]
        img = CS.render_family(fam, fg, bg, SC.NATIVE_SIZE, 100 + i, "scenes")
        assert img.size == (SC.NATIVE_SIZE, SC.NATIVE_SIZE)
        bgd, objs = J.find_objects(img)
        assert bgd == bg and len(objs) == 1 and objs[0].fg == fg, (fam, bgd, [o.fg for o in objs])
        assert J.is_shape(img, fam), fam
        # a plain caption's size: circumradius within scenes.PLAIN_RADIUS of the side
        r = objs[0].radius / math.sqrt(FAM.unit_area(fam) / math.pi)
        assert SC.PLAIN_RADIUS[0] * 0.85 <= r <= SC.PLAIN_RADIUS[1] * 1.15, (fam, r)


def test_the_64px_domain_is_kept_for_the_old_starter():
    img = CS.render_family("plus", "red", "blue", 64, 3)
    assert img.size == (64, 64) and J.is_shape(img, "plus")
    assert img.size == CS.render_family("plus", "red", "blue", 64, 3, "shapes").size


def test_evaluation_pairs_never_train_pairs():
    pairs = CS.eval_pairs(0)
    assert len(pairs) == 51 and not set(pairs) & set(CS.TRAIN_PAIRS)
    assert all(fg != bg for fg, bg in pairs)
    assert CS.eval_pairs(24) == pairs[:24]


def test_other_shapes_are_the_starters_training_families():
    pairs = CS.eval_pairs(24)
    scenes = CS.other_prompts(pairs, "scenes")
    train = set(SC.train_triples())
    assert [(fg, bg) for _, fg, bg in scenes] == pairs
    assert all(t in train for t in scenes)  # never a held-out triple, never a held-out family
    assert len({f for f, _, _ in scenes}) >= 10
    assert {f for f, _, _ in CS.other_prompts(pairs, "shapes")} == {"circle", "square", "triangle"}


def test_domain_of_reads_the_models_card(tmp_path):
    (tmp_path / "impasto.json").write_text(json.dumps({"training": {"domain": "scenes"}}))
    assert CS.domain_of(tmp_path, 64) == "scenes"
    (tmp_path / "impasto.json").write_text(json.dumps({"training": {}}))
    assert CS.domain_of(tmp_path, 64) == "shapes" and CS.domain_of(tmp_path, 128) == "scenes"


def test_recipe_research_is_refused_on_report_families():
    with pytest.raises(SystemExit, match="tune families only"):
        CS.main(["--families", "heart", "--lr", "1e-3"])
    with pytest.raises(SystemExit, match="not a held-out family"):
        CS.main(["--families", "circle"])


def _report(fams, base):
    return {"fingerprint": "f", "native_size": 128, "domain": "scenes", "trigger": "zwx", "caption": CS.CAPTION,
            "train_pairs": CS.TRAIN_PAIRS, "eval_pairs": 2, "gen_seeds": [1000], "train_seed": 0, "gen_steps": 20,
            "cfg": 4.0, "other_prompts": ["a", "b"], "research_flags": None, "model_concept_training": {},
            "command": "c", "date": "d", "baseline_other_right": {"per_picture": base},
            "families": {f: {"with_trigger": {"k": 0, "n": 2}} for f in fams}}


def test_merge_joins_runs_with_the_same_baseline_only(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps(_report(["heart"], [True, False])))
    b.write_text(json.dumps(_report(["ring"], [True, False])))
    c.write_text(json.dumps(_report(["arrow"], [False, False])))
    out = CS.merge([a, b], tmp_path / "m.json")
    assert list(out["families"]) == ["heart", "ring"] and json.loads((tmp_path / "m.json").read_text()) == out
    with pytest.raises(SystemExit, match="baseline pictures"):
        CS.merge([a, c], tmp_path / "m2.json")
    with pytest.raises(SystemExit, match="in two of the runs"):
        CS.merge([a, a], tmp_path / "m3.json")
