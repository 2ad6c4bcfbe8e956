"""Starter training respects the held-out split (issue 21 item 7).

Every picture the VAE stage and the latent cache draw is recorded (by wrapping the
renderers) and checked against the split: the old VAE stage drew stars
(``all_combos(ALL_SHAPES)``), so ``test_vae_stage_never_draws_held_out_shapes``
fails on it.
"""

import argparse

import numpy as np
import pytest
import torch

from impasto.backend.starter import domain as D
from impasto.backend.starter import families as FAM
from impasto.backend.starter import scenes as SC
from impasto.backend.starter import latent_cache as LC
from impasto.backend.starter import train_vae as TV
from impasto.backend.starter.architecture import VAE_CONFIG


@pytest.fixture
def drawn(monkeypatch):
    seen = []
    orig_geom, orig_draw = D.render_geometry, FAM.draw

    def geom(shape, fg, bg, size, g):
        seen.append((shape, fg, bg))
        return orig_geom(shape, fg, bg, size, g)

    def draw(d, family, *a, **k):
        seen.append((family,))
        return orig_draw(d, family, *a, **k)

    monkeypatch.setattr(D, "render_geometry", geom)
    monkeypatch.setattr(FAM, "draw", draw)
    return seen


def _args(domain, size):
    return argparse.Namespace(domain=domain, size=size, vae_lr=1e-3, vae_batch=4, vae_max_steps=2, seed=1,
                              pool=250 if domain == "scenes" else 500)


@pytest.mark.parametrize("domain,size", [("shapes", 64), ("scenes", 128)])
def test_vae_stage_never_draws_held_out_shapes(domain, size, drawn, tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**{**VAE_CONFIG, "sample_size": size})
    TV.analytic_vae_init(vae)
    TV.train_vae(vae, tmp_path, _args(domain, size), torch.device("cpu"), deadline=float("inf"))
    TV.vae_psnr(vae, torch.device("cpu"), n=8, size=size, domain=domain)
    _check(domain, drawn)


@pytest.mark.parametrize("domain,size", [("shapes", 64), ("scenes", 128)])
def test_latent_cache_never_draws_held_out_shapes(domain, size, drawn, tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**{**VAE_CONFIG, "sample_size": size})
    TV.analytic_vae_init(vae)
    cache = LC.build_latent_cache(vae, tmp_path, _args(domain, size), torch.device("cpu"))
    _check(domain, drawn)
    if domain == "scenes":
        words = " ".join(cache["captions"] + cache["generic"]).split()
        assert not set(words) & set(FAM.HELD_OUT_FAMILIES)


def _check(domain, drawn):
    assert drawn
    if domain == "shapes":
        train = set(D.train_combos())
        assert all(c in train for c in drawn), [c for c in drawn if c not in train][:5]
    else:
        assert {c[0] for c in drawn} <= set(FAM.TRAIN_FAMILIES)


def test_scene_split_is_fixed_and_respected():
    train, ev = SC.train_triples(), SC.eval_triples()
    assert set(train).isdisjoint(ev) and 0.15 <= len(ev) / (len(train) + len(ev)) <= 0.25
    assert {t[0] for t in train + ev} == set(FAM.TRAIN_FAMILIES)
    g = np.random.default_rng(0)
    _, caps, _, scenes = SC.sample_batch(300, 32, g)
    for sc in scenes:
        SC.check_scene(sc)  # raises on a held-out family or triple
    assert not any(w in FAM.HELD_OUT_FAMILIES for c in caps for w in c.split())
    bad = SC.Scene(ev[0][2], [SC.make_object(ev[0][0], ev[0][1], None, None, g)])
    with pytest.raises(ValueError):
        SC.check_scene(bad)
    with pytest.raises(ValueError):
        SC.check_scene(SC.Scene("blue", [SC.make_object("heart", "red", None, None, g)]), training=False)
    with pytest.raises(ValueError):
        FAM.check_split(FAM.TRAIN_FAMILIES + ("star",))


def test_benchmark_families_split_before_tuning():
    assert set(FAM.TUNE_FAMILIES) <= set(FAM.HELD_OUT_FAMILIES)
    assert set(FAM.REPORT_FAMILIES) == set(FAM.HELD_OUT_FAMILIES) - set(FAM.TUNE_FAMILIES)
    assert len(FAM.HELD_OUT_FAMILIES) >= 6 and len(FAM.REPORT_FAMILIES) >= 5
