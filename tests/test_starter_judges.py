"""Strict shape judges: calibration on clean renders of every family and on shapeless blobs.

The old rule ("solidity < 0.8 is a star") said "star" to 8 of 12 blobs from a concept
that learned nothing; these tests fail on it (see test_concave_blobs_are_not_stars).
"""

import numpy as np
import pytest

from impasto.backend.starter import families as FAM
from impasto.backend.starter import judges as J
from impasto.backend.starter import domain as D
from impasto.backend.starter.detector import detect, shape_features


@pytest.fixture(scope="module")
def rates():
    return J.calibrate(n_per_family=9, n_blobs=60, seed=11)


def test_every_detector_says_yes_to_its_own_family(rates):
    for fam in FAM.FAMILIES:
        assert rates[fam][fam] == 1.0, (fam, rates[fam][fam])


def test_no_detector_says_yes_to_another_family(rates):
    for det in FAM.FAMILIES:
        wrong = {k: v for k, v in rates[det].items() if k not in (det, "blob") and v > 0}
        assert not wrong, (det, wrong)


def test_detectors_reject_shapeless_blobs(rates):
    per = {det: rates[det]["blob"] for det in FAM.FAMILIES}
    assert max(per.values()) <= 1 / 60, per       # at most one blob of 60 for any detector
    assert sum(per.values()) <= 2 / 60, per       # and at most two over all 19 detectors


def test_concave_blobs_are_not_stars():
    """Blobs the old solidity rule called stars are not stars for the strict judge."""
    g = np.random.default_rng(5)
    concave = []
    while len(concave) < 12:
        m = J.blob_mask(64, g, g.uniform(0.25, 0.35))
        if shape_features(m)["solidity"] < 0.80:  # the old rule's "star"
            concave.append(m)
    said_star = sum(detect(J._picture(m, "red", "blue"))["shape"] == "star" for m in concave)
    assert said_star == 0


def test_plus_judge_matches_the_issue_rule():
    """Clean crosses are plus; the domain's circles, squares, triangles and stars are not."""
    g = np.random.default_rng(2)
    for i in range(6):
        img = J._picture(FAM.mask("plus", 64, 32 + g.uniform(-6, 6), 32, g.uniform(14, 22), g.uniform(-15, 15)))
        assert J.is_shape(img, "plus")
    for s in D.ALL_SHAPES:
        for i in range(5):
            assert not J.is_shape(D.render(s, "red", "blue", 64, i), "plus")


def test_multi_object_scene_objects_found():
    from impasto.backend.starter import scenes as SC

    g = np.random.default_rng(3)
    ok = n = 0
    for _ in range(10):
        sc = SC.sample_scene(g, n_objects=3)
        bg, objs = J.find_objects(SC.render(sc))
        assert bg == sc.bg
        for o in sc.objects:  # each object found at its place, in its colour, as its family
            near = [f for f in objs if f.fg == o.fg and abs(f.cx - o.cx) < 0.05 and abs(f.cy - o.cy) < 0.05]
            n += 1
            ok += bool(near) and J.classify(near[0].canon) == o.family
    assert ok / n >= 0.95, (ok, n)


def test_judges_accept_the_shipped_vae_round_trips():
    """The best a starter can draw is its VAE's round trip of a clean picture: the judges must accept
    most of those at the plain size, or they would score decoder blur as a wrong shape.

    With the shipped 128 px starter's first decoder (16x16x4 latents, 25.7 dB) 204 of 228 were
    accepted (training families 132 of 144; every family at least 7 of 12).  Its decoder fine-tuned
    with the encoder frozen (33.8 dB, 2026-12-01) brings all 228 (12 plain-size objects, radius
    0.16-0.30 of the side, per family, held-out families included): the bounds below keep that
    sharpness, with a little room.  The smaller sizes that captions name ("small", "big": radius
    0.09-0.19) are measured by ``bench/starter_scenes_eval.py`` (generator pictures through the VAE)."""
    import torch
    from diffusers import AutoencoderKL
    from PIL import Image

    from impasto.backend.starter import STARTER_DIR
    from impasto.backend.starter import scenes as SC

    vae = AutoencoderKL.from_pretrained(str(STARTER_DIR / "vae")).eval()
    side = vae.config.sample_size
    g = np.random.default_rng(0)
    names = SC.COLOR_NAMES
    ok = {}
    for fam in FAM.FAMILIES:
        imgs = []
        for _ in range(12):
            fg, bg = g.choice(len(names), 2, replace=False)
            imgs.append(SC.render(SC.Scene(names[bg], [SC.make_object(fam, names[fg], None, None, g)]), side))
        x = torch.from_numpy(np.stack([np.asarray(i) for i in imgs])).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            r = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        outs = [Image.fromarray(a) for a in ((r + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()]
        ok[fam] = sum(J.is_shape(im, fam) for im in outs)
    assert min(ok.values()) >= 11, ok
    assert sum(ok.values()) >= 0.97 * 12 * len(ok), ok
    assert sum(ok[f] for f in FAM.TRAIN_FAMILIES) >= 0.97 * 12 * len(FAM.TRAIN_FAMILIES), ok
