"""Prompt-to-Prompt edits (backend/engine/p2p.py) on the tiny SD1.5 / SDXL models and the shipped starter.

* the token alignment: kept tokens map one to one, a swapped word of another
  token count shares the old word's attention, an added word keeps its own;
* the processors are the job's only: after a finished, a failed and a
  cancelled edit the UNet has its own processor objects back and the next
  plain job paints the same bits as before the edit;
* with nothing injected (both fractions 0) the edit processors compute what
  diffusers' own do: the edit is the plain picture of the new prompt;
* SD1.5 and SDXL, plain and weighted prompts of different chunk counts;
* on the starter: swapping the colour word keeps the object's mask where a
  plain regeneration with the same seed does not (the benchmark,
  ``bench/p2p_edit.py``, measures the full held-out set).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.backend.engine import Cancelled, Engine, EngineError, JobHooks
from impasto.backend.engine import p2p
from impasto.backend.engine.device import DeviceChoice
from impasto.backend.engine.images import from_wire
from impasto.protocol.messages import Generate, PromptEdit, ProtocolError

torch.set_num_threads(1)
CPU = DeviceChoice(torch.device("cpu"), torch.float32)
SRC = "a red circle on a blue background"
DST = "a green circle on a blue background"


@pytest.fixture(scope="module")
def sd_engine(models_dir):
    e = Engine(models_dir=models_dir, device=CPU)
    e.model("tiny")
    return e


@pytest.fixture(scope="module")
def xl_engine(tmp_path_factory):
    from impasto.backend.tooling.tiny_model import build_tiny_sdxl

    root = tmp_path_factory.mktemp("p2p-xl")
    build_tiny_sdxl(root / "xl")
    e = Engine(models_dir=root, device=CPU)
    e.model("xl")
    return e


def job(model="tiny", prompt=DST, seed=5, **p2p_fields):
    return Generate(job="p", model=model, prompt=prompt, seed=seed, steps=4, width=64, height=64,
                    sampler="ddim", cfg_scale=5.0, p2p=PromptEdit(**{"source_prompt": SRC, **p2p_fields}))


def pixels(result) -> np.ndarray:
    return np.asarray(from_wire(result.images[0]))[..., :3].astype(int)


def unet_of(engine, name):
    return engine.model(name).txt2img.unet


# --------------------------------------------------------------------------- alignment

def test_alignment_of_a_swap_an_uneven_swap_and_an_added_word():
    same = p2p.align([1, 2, 3, 9, 9], [1, 2, 3, 9, 9])
    assert torch.equal(same.mapper, torch.eye(5)) and same.alpha.eq(1).all() and same.kept == 5

    swap = p2p.align([1, 2, 3, 9, 9], [1, 7, 3, 9, 9])           # one token for one
    assert swap.mapper[1, 1] == 1 and swap.swapped == 1 and swap.kept == 4
    assert swap.mapper[:, 1].sum() == 1 and swap.alpha[1] == 1

    uneven = p2p.align([1, 2, 3, 9, 9, 9], [1, 7, 8, 3, 9, 9])   # one token becomes two (a padding token goes)
    assert torch.allclose(uneven.mapper[1, 1:3], torch.tensor([0.5, 0.5]))
    assert float(uneven.mapper[1].sum()) == pytest.approx(1.0)   # the old word's attention is shared, not doubled
    assert uneven.mapper[2, 3] == 1                              # "3" after the swap still finds its own map
    assert uneven.alpha[:4].eq(1).all()

    added = p2p.align([1, 3, 9, 9], [1, 5, 3, 9])                # a new word keeps its own map
    assert added.new == 1 and added.alpha[1] == 0 and added.mapper[:, 1].sum() == 0
    assert added.mapper[1, 2] == 1

    with pytest.raises(ValueError):
        p2p.align([1, 2], [1, 2, 3])


def test_word_positions_and_the_reweighting_plan(sd_engine):
    pipe = sd_engine.model("tiny").txt2img
    tmap = p2p.plan_edit(pipe, SRC, "a purple circle on a blue background", "purple", 3.0, 1)
    ids = p2p.token_ids(pipe.tokenizer, "a purple circle on a blue background", 1)
    where = p2p.word_positions(pipe.tokenizer, ids, "purple")
    assert len(where) == 6                       # the tiny vocabulary spells "purple" letter by letter
    assert tmap.equalizer[where].eq(3.0).all() and int((tmap.equalizer != 1).sum()) == 6
    assert tmap.swapped == 6                     # "red" (one token) -> six tokens sharing its map
    src_ids = p2p.token_ids(pipe.tokenizer, SRC, 1)
    red = src_ids.index(pipe.tokenizer.convert_tokens_to_ids("red</w>"))
    assert float(tmap.mapper[red].sum()) == pytest.approx(1.0) and tmap.mapper[red, where].gt(0).all()
    with pytest.raises(EngineError) as err:
        p2p.plan_edit(pipe, SRC, DST, "dog", 2.0, 1)
    assert err.value.field == "p2p.reweight_word"


# --------------------------------------------------------------------------- processors are the job's only

def test_an_edit_leaves_no_processor_behind_and_the_next_job_paints_the_same_bits(sd_engine):
    plain = Generate(job="q", model="tiny", prompt=DST, seed=9, steps=4, width=64, height=64, sampler="ddim")
    before = pixels(sd_engine.run(plain, JobHooks()))
    unet = unet_of(sd_engine, "tiny")
    own = dict(unet.attn_processors)
    res = sd_engine.run(job(cross_replace=1.0, self_replace=0.5), JobHooks())
    assert res.info["p2p"]["cross_steps"] == 4 and res.info["p2p"]["self_steps"] == 2
    after = dict(unet.attn_processors)
    assert after.keys() == own.keys() and all(after[k] is own[k] for k in own)
    assert not unet._forward_pre_hooks
    assert np.array_equal(pixels(sd_engine.run(plain, JobHooks())), before)


def test_a_cancelled_or_failing_edit_also_restores_the_processors(sd_engine):
    unet = unet_of(sd_engine, "tiny")
    own = dict(unet.attn_processors)

    hooks = JobHooks()
    hooks.cancelled = lambda: hooks.steps_done >= 2
    with pytest.raises(Cancelled):
        sd_engine.run(job(), hooks)
    assert all(unet.attn_processors[k] is own[k] for k in own) and not unet._forward_pre_hooks

    def boom(*a, **k):
        raise RuntimeError("host went away")

    with pytest.raises(RuntimeError):
        sd_engine.run(job(), JobHooks(progress=boom))
    assert all(unet.attn_processors[k] is own[k] for k in own) and not unet._forward_pre_hooks


def test_with_nothing_injected_the_edit_is_the_plain_picture_of_the_new_prompt(sd_engine):
    """Fractions 0, whole picture: the edit processors compute what diffusers' own do (batched, so within
    float noise)."""
    plain = pixels(sd_engine.run(Generate(job="q", model="tiny", prompt=DST, seed=5, steps=4, width=64, height=64,
                                          sampler="ddim", cfg_scale=5.0), JobHooks()))
    free = pixels(sd_engine.run(job(cross_replace=0.0, self_replace=0.0, local=False), JobHooks()))
    assert np.abs(plain - free).max() <= 2
    full = pixels(sd_engine.run(job(cross_replace=1.0, self_replace=1.0, local=False), JobHooks()))
    assert np.abs(plain - full).mean() > 0.5       # injection changes the picture (0.98 measured; free: 0.0x)


def test_local_blend_keeps_the_original_outside_the_changed_words_maps(sd_engine, monkeypatch):
    """local (the default): after the first 20 % of the steps the edit's latents outside the mask of the
    changed words' maps are the original's, exactly; inside they are the edit's own."""
    from impasto.backend.engine import p2p

    seen = []
    real = p2p.LocalBlend.__call__

    def spy(self, steps_done, latents):
        out = real(self, steps_done, latents)
        if out is not None:
            seen.append((steps_done, latents.clone(), out.clone(), self.mask().clone()))
        return out

    monkeypatch.setattr(p2p.LocalBlend, "__call__", spy)
    res = sd_engine.run(job(cross_replace=0.0, self_replace=0.0), JobHooks())
    info = res.info["p2p"]
    assert info["local"] and info["blend_steps"] == 4 - round(4 * p2p.LocalBlend.START) == len(seen)
    assert 0.0 < info["blend_area"] < 1.0                                # a mask, not the whole picture
    for _, before, after, mask in seen:
        edit, original = after[:1], after[1:]
        assert torch.equal(original, before[1:])                         # the original paints on untouched
        assert torch.equal(edit * (1 - mask), original * (1 - mask))     # outside: the original's, exactly
        assert torch.equal(edit * mask, before[:1] * mask)               # inside: the edit's own
    whole = sd_engine.run(job(cross_replace=0.0, self_replace=0.0, local=False), JobHooks())
    assert not whole.info["p2p"]["local"] and "blend_steps" not in whole.info["p2p"]
    assert pixels(whole).tolist() != pixels(res).tolist()
    # an edit that changes no word (only a re-weighting) has nothing to blend by
    same = sd_engine.run(job(prompt=SRC, reweight_word="red", reweight=2.0), JobHooks())
    assert not same.info["p2p"]["local"]


def test_local_blend_mask_follows_the_maps():
    """The mask: each picture's accumulated map stretched min..max, above the threshold, dilated one pixel,
    the original's and the edit's joined."""
    from impasto.backend.engine.p2p import LocalBlend, align

    tmap = align([1, 5, 7, 2], [1, 6, 7, 2])                 # one word swapped at position 1
    assert tmap.changed_src == [1] and tmap.changed_tgt == [1]
    blend = LocalBlend(tmap, pairs=1, lat_h=8, lat_w=8, steps=10)
    probs = torch.full((1, 2, 16, 4), 0.25)                  # a 4x4 layer: flat everywhere...
    probs[0, :, 5, 1] = 1.0                                  # ...but the swapped word looks at one spot
    blend.collect(probs, torch.full((1, 2, 16, 4), 0.25))    # the original's word: flat, so no mask of its own
    m = blend.mask()[0, 0]
    assert m.shape == (8, 8) and 0 < m.mean() <= 0.5      # a region around the spot (half the map at 0.3), not all
    assert m[2:4, 2:4].all() and not m[7, 7] and not m[0, 7]
    assert blend(2, torch.zeros(2, 4, 8, 8)) is None          # not before 20 % of the steps
    lat = torch.stack([torch.ones(4, 8, 8), torch.zeros(4, 8, 8)])
    out = blend(3, lat)
    assert torch.equal(out[0], m.expand(4, 8, 8)) and torch.equal(out[1], lat[1])


def test_injection_pulls_the_edit_towards_the_original(sd_engine):
    def pic(prompt, **p2p_fields):
        return pixels(sd_engine.run(job(prompt=prompt, seed=3, **p2p_fields), JobHooks()))

    original = pixels(sd_engine.run(Generate(job="o", model="tiny", prompt=SRC, seed=3, steps=4, width=64, height=64,
                                             sampler="ddim", cfg_scale=5.0), JobHooks()))
    free = pic(DST, cross_replace=0.0, self_replace=0.0)
    held = pic(DST, cross_replace=1.0, self_replace=1.0)
    assert np.abs(held - original).mean() < np.abs(free - original).mean()


@pytest.mark.parametrize("name", ["tiny", "xl"])
def test_sd15_and_sdxl_with_plain_weighted_and_long_prompts(name, sd_engine, xl_engine):
    engine = sd_engine if name == "tiny" else xl_engine
    long_tail = ", ".join(["a red circle on a blue background"] * 12)      # > 75 tokens: two chunks
    cases = [
        (SRC, DST, {}),
        (SRC, "a (green:1.4) circle on a blue background", {}),             # weighted edit: embeddings path
        (SRC + ", " + long_tail, DST + ", " + long_tail, {}),              # two chunks each
        (SRC, SRC, {"reweight_word": "red", "reweight": 2.0}),              # re-weighting alone
        (SRC, "a red circle on a blue background cat", {}),                 # an added word
    ]
    unet = unet_of(engine, name)
    own = dict(unet.attn_processors)
    for src, dst, extra in cases:
        res = engine.run(job(model=name, prompt=dst, source_prompt=src, **extra), JobHooks())
        img = pixels(res)
        assert img.shape == (64, 64, 3) and res.info["p2p"]["tokens_kept"] > 0
        assert res.seeds == [5]
    assert all(unet.attn_processors[k] is own[k] for k in own)


@pytest.mark.parametrize("name", ["tiny", "xl"])
def test_chunked_prompts_of_different_lengths_are_aligned(name, sd_engine, xl_engine):
    """Two-chunk prompts (BREAK), and a source one chunk longer than its edit: both padded to one key count."""
    engine = sd_engine if name == "tiny" else xl_engine
    tok = engine.model(name).txt2img.tokenizer
    green = len(tok("green", add_special_tokens=False).input_ids)   # the tiny vocabulary spells it out
    long_src = "a red circle on a blue background BREAK a red circle"
    for dst in ("a green circle on a blue background BREAK a red circle",
                "a green circle on a blue background a red circle"):     # one chunk: padded to two
        req = Generate(job="c", model=name, prompt=dst, seed=2, steps=3, width=64, height=64, sampler="euler",
                       batch_size=2, p2p=PromptEdit(source_prompt=long_src))
        res = engine.run(req, JobHooks())
        assert len(res.images) == 2 and res.seeds == [2, 3]
        info = res.info["p2p"]
        assert info["tokens_kept"] + info["tokens_swapped"] + info["tokens_new"] == 2 * tok.model_max_length
        if "BREAK" in dst:   # the same layout: only the colour word differs
            assert info["tokens_swapped"] == green and info["tokens_new"] == 0


def test_an_inpainting_model_and_a_missing_seed_are_typed_errors(sd_engine, tmp_path):
    with pytest.raises(ProtocolError) as err:
        sd_engine.run(job(seed=-1), JobHooks())
    assert err.value.field == "seed"
    from impasto.backend.tooling.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "inp", inpaint=True)
    e = Engine(models_dir=tmp_path, device=CPU)
    with pytest.raises(EngineError) as err:
        e.run(job(model="inp"), JobHooks())
    assert err.value.field == "p2p"


# --------------------------------------------------------------------------- the starter

def test_starter_colour_swap_keeps_the_shape_where_a_plain_regeneration_does_not(tmp_path):
    """Six held-out prompts: the edit keeps the original's object mask (IoU >= 0.8) and takes the new colour."""
    from impasto.backend.engine.models import starter_dir
    from impasto.backend.starter import judges as J
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E

    assert starter_dir() is not None, "the starter model is not installed"
    engine = Engine(models_dir=tmp_path, device=CPU)
    side = engine.model("starter").entry.native_size

    def paint(prompt, seed, edit=None):
        res = engine.run(Generate(job="s", model="starter", prompt=prompt, width=side, height=side, steps=20,
                                  sampler="ddim", cfg_scale=5.0, seed=seed, p2p=edit), JobHooks())
        return pixels(res).astype(np.uint8)

    def objects(img, bg):   # every pixel not of the background's palette colour
        return J._labels(img.astype(np.float32)) != SC.COLOR_NAMES.index(bg)

    def iou(a, b):
        return (a & b).sum() / max(1, (a | b).sum())

    kept_edit = kept_plain = right = 0
    for i, scene in enumerate(E.prompt_scenes("plain", 6, seed=0)):   # held-out (family, colour, background)
        o = scene.objects[0]
        new = [c for c in SC.COLOR_NAMES if c not in (o.fg, scene.bg)][i % 6]
        src, dst = SC.caption(scene), SC.caption(scene).replace(f"a {o.fg} ", f"a {new} ", 1)
        mask = objects(paint(src, 100 + i), scene.bg)
        edited = paint(dst, 100 + i, PromptEdit(source_prompt=src))
        kept_edit += iou(mask, objects(edited, scene.bg)) >= 0.8
        kept_plain += iou(mask, objects(paint(dst, 100 + i), scene.bg)) >= 0.8
        verdict = E.judge_scene(edited, SC.parse_caption(dst))
        right += verdict["colour"] and verdict["bg"] and verdict["count"]
    assert kept_edit >= 5 and right >= 5, (kept_edit, right)
    assert kept_edit > kept_plain, (kept_edit, kept_plain)


# --------------------------------------------------------------------------- through the daemon

def test_the_daemon_paints_an_edit_and_answers_bad_ones_with_typed_errors(client):
    from impasto.protocol.messages import ErrorCode

    res = client.submit(Generate(prompt=DST, width=64, height=64, steps=3, sampler="euler", seed=3,
                                 p2p=PromptEdit(source_prompt=SRC, cross_replace=0.7))).wait(300)
    assert len(res.images) == 1 and res.seeds == [3] and res.info["p2p"]["cross_steps"] == 2
    for bad, field in ((dict(seed=-1), "seed"), (dict(prompt="three green dogs under a tall tree"), "prompt")):
        fields = dict(prompt=DST, width=64, height=64, steps=3, seed=3, p2p=PromptEdit(source_prompt=SRC))
        fields.update(bad)
        with pytest.raises(Exception) as err:
            client.submit(Generate(**fields)).wait(300)
        assert getattr(err.value, "code", None) == ErrorCode.BAD_FIELD and err.value.field == field
    assert client.status() is not None   # the daemon lives on


def test_a_compiled_unet_runs_the_edit_eagerly_and_gets_its_compiled_self_back(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMPASTO_COMPILE", "1")
    monkeypatch.setenv("IMPASTO_COMPILE_BACKEND", "eager")   # dynamo's capture and guards, no code generation
    engine = Engine(models_dir, device=CPU)
    pipe = engine.model("tiny").txt2img
    compiled = pipe.unet
    assert hasattr(compiled, "_orig_mod")
    plain = Generate(job="q", model="tiny", prompt=DST, seed=9, steps=3, width=32, height=32, sampler="ddim")
    before = pixels(engine.run(plain, JobHooks()))
    own = dict(compiled._orig_mod.attn_processors)
    res = engine.run(job(cross_replace=1.0), JobHooks())
    assert res.info["p2p"]["cross_steps"] == 4
    assert pipe.unet is compiled and all(compiled._orig_mod.attn_processors[k] is own[k] for k in own)
    assert np.array_equal(pixels(engine.run(plain, JobHooks())), before)


def test_an_absurdly_long_original_prompt_is_a_typed_error_naming_it(sd_engine):
    from impasto.protocol.messages import ErrorCode

    long_src = "a red circle BREAK " * 25
    with pytest.raises(EngineError) as err:   # 25 chunks: over the 20 read
        sd_engine.run(job(prompt=long_src.replace("red", "green", 1), source_prompt=long_src), JobHooks())
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "p2p.source_prompt"


def test_starter_reweighting_the_colour_word_grows_its_area(tmp_path):
    """Same prompt, "red" re-weighted by 0, 0.5, (plain), 2, 4: the red area grows with the factor, every seed."""
    from impasto.backend.engine.models import starter_dir

    assert starter_dir() is not None, "the starter model is not installed"
    engine = Engine(models_dir=tmp_path, device=CPU)
    side = engine.model("starter").entry.native_size

    def red_fraction(seed, factor):
        edit = PromptEdit(source_prompt=SRC, reweight_word="red", reweight=factor) if factor != 1 else None
        a = pixels(engine.run(Generate(job="r", model="starter", prompt=SRC, width=side, height=side, steps=20,
                                       sampler="ddim", cfg_scale=5.0, seed=seed, p2p=edit), JobHooks()))
        return float(((a[..., 0] > 128) & (a[..., 1] < 100) & (a[..., 2] < 100)).mean())

    for seed in range(3):
        reds = [red_fraction(seed, f) for f in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert all(b > a for a, b in zip(reds, reds[1:])), (seed, reds)
        # x4 vs plain: +0.022-0.031 of the picture measured on the wide 128 px scenes starter (seeds 0-2,
        # 2026-12-04; the object covers ~0.30-0.35 of it; the first 128 px starter: +0.011-0.016), a no-op
        # re-weighting gives exactly 0
        assert reds[-1] - reds[2] > 0.008, (seed, reds)


def test_an_edit_paints_at_the_size_its_original_was_painted(sd_engine):
    """One size rule with txt2img (``common.picture_size``): below a quarter of the native area both go native."""
    native = sd_engine.model("tiny").entry.native_size
    side = max(8, native // 4)
    plain_hooks, edit_hooks = JobHooks(), JobHooks()
    plain = sd_engine.run(Generate(job="s", model="tiny", prompt=SRC, seed=5, steps=2, width=side, height=side,
                                   sampler="ddim", cfg_scale=5.0), plain_hooks)
    edit = sd_engine.run(Generate(job="t", model="tiny", prompt=DST, seed=5, steps=2, width=side, height=side,
                                  sampler="ddim", cfg_scale=5.0, p2p=PromptEdit(source_prompt=SRC)), edit_hooks)
    assert plain.info["diffusion_size"] == edit.info["diffusion_size"] != [side, side]
    assert plain.info["native"] == edit.info["native"]
    assert [w for w in plain_hooks.warnings if w.startswith("size changed")] == \
        [w for w in edit_hooks.warnings if w.startswith("size changed")] != []
    assert (edit.images[0].width, edit.images[0].height) == (side, side)


def test_an_unset_layout_runs_held_for_a_colour_swap_and_at_0_4_for_a_noun_swap(sd_engine):
    auto = sd_engine.run(job(), JobHooks())
    assert auto.info["p2p"]["layout"] == 1.0 and auto.info["p2p"]["layout_auto"] is True
    assert auto.info["p2p"]["self_steps"] == 4
    held = sd_engine.run(job(self_replace=1.0), JobHooks())
    assert held.info["p2p"]["layout_auto"] is False
    assert held.images[0].data == auto.images[0].data
    noun = "a red square on a blue background"
    auto_noun = sd_engine.run(job(prompt=noun), JobHooks())
    assert auto_noun.info["p2p"]["layout"] == 0.4 and auto_noun.info["p2p"]["self_steps"] == 2
    assert auto_noun.images[0].data == sd_engine.run(job(prompt=noun, self_replace=0.4), JobHooks()).images[0].data
