"""The richer scenes domain: captions, determinism, and the scene judge's ceiling and failures."""

import copy

import numpy as np

from impasto.backend.starter import families as FAM
from impasto.backend.starter import scenes as SC
from impasto.backend.starter import scenes_eval as E


def test_captions_name_size_place_and_count():
    g = np.random.default_rng(4)
    sc = SC.sample_scene(g, n_objects=2)
    cap = SC.caption(sc)
    assert cap.endswith(f" on a {sc.bg} background") and " and " in cap
    for o in sc.objects:
        assert f"a {o.size} {o.fg} {o.family}" in cap and SC.place_of(o.cx, o.cy) == o.place
    assert "shape" in SC.caption(sc, generic=True) and not any(f in SC.caption(sc, generic=True)
                                                                for f in FAM.FAMILIES)
    plain = SC.sample_scene(g, n_objects=1, plain=True)
    assert SC.caption(plain) == f"a {plain.objects[0].fg} {plain.objects[0].family} on a {plain.bg} background"


def test_batches_deterministic():
    a = SC.sample_batch(6, 64, 9)
    b = SC.sample_batch(6, 64, 9)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], SC.sample_batch(6, 64, 10)[0])


def test_judge_ceiling_on_generator_pictures():
    for kind in ("one", "plain", "two"):
        scenes = E.prompt_scenes(kind, 16, seed=3)
        assert E.score([SC.render(s) for s in scenes], scenes)["all"] == 1.0, kind


def test_judge_catches_wrong_family_place_size_and_extra_object():
    sc = E.prompt_scenes("one", 1, seed=5)[0]
    img = SC.render(sc)
    o = sc.objects[0]
    wrong = copy.deepcopy(sc)
    wrong.objects[0].family = "circle" if o.family != "circle" else "square"
    assert not E.judge_scene(img, wrong)["family"]
    wrong = copy.deepcopy(sc)
    wrong.objects[0].place = [p for p in SC.PLACES if p != o.place][0]
    assert not E.judge_scene(img, wrong)["place"]
    wrong = copy.deepcopy(sc)
    wrong.objects[0].size = "big" if o.size == "small" else "small"
    assert not E.judge_scene(img, wrong)["size"]
    two = E.prompt_scenes("two", 1, seed=5)[0]
    one_of_two = SC.Scene(two.bg, two.objects[:1])
    res = E.judge_scene(SC.render(two), one_of_two)
    assert res["family"] and not res["count"] and not res["all"]


def test_parse_caption_is_the_inverse_of_caption():
    g = np.random.default_rng(11)
    for _ in range(200):
        sc = SC.sample_scene(g)
        for generic in (False, True):
            text = SC.caption(sc, generic=generic)
            assert SC.caption(SC.parse_caption(text)) == text
    sc = SC.parse_caption("a small red pentagon on the left and a big white oval at the top right on a blue background")
    assert sc.bg == "blue" and [(o.size, o.fg, o.family, o.place) for o in sc.objects] == [
        ("small", "red", "pentagon", "left"), ("big", "white", "oval", "top right")]
    for bad in ("a red pentagon", "a red pentagon on a teal background",
                "a red pentagon somewhere on a blue background",
                "three red dogs on a blue background"):
        try:
            SC.parse_caption(bad)
        except ValueError:
            continue
        raise AssertionError(f"parsed {bad!r}")


def test_a_generic_caption_accepts_any_recognised_family_but_not_a_blob():
    from impasto.backend.starter import judges as J

    sc = E.prompt_scenes("plain", 1, seed=2)[0]
    generic = SC.parse_caption(SC.caption(sc, generic=True))
    assert E.judge_scene(SC.render(sc), generic)["all"]
    blob = J._picture(J.blob_mask(128, np.random.default_rng(0), 0.3), fg=sc.objects[0].fg, bg=sc.bg)
    assert not E.judge_scene(blob, generic)["family"]
