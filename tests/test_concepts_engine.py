"""Concepts inside the engine (no daemon): training, resume, switching, weight 0, round trips.

Everything runs on the tiny random-weight model at 32 px: what is checked is
the machinery (bits, flags, files), not picture quality - that is
``bench/concept_proof.py``'s job on the starter model.
"""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from impasto.backend.concepts import adapters, checkpoint
from impasto.backend.concepts import library as lib_mod
from impasto.backend.concepts.library import ConceptLibrary, new_meta
from impasto.backend.concepts import trigger_embedding
from impasto.backend.concepts.lora_io import read_lora_file, read_safetensors, write_kohya_file
from impasto.backend.engine.concepts import activate
from impasto.backend.engine import Cancelled, Engine, EngineError, JobHooks
from impasto.backend.engine.images import to_wire
from impasto.protocol.messages import ErrorCode, Generate, ProtocolError, Train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("concepts-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMPASTO_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def engine(home, tiny_model, tmp_path_factory):
    from impasto.backend.tiny_model import build_tiny_model

    models = tmp_path_factory.mktemp("concept-models")
    os.symlink(tiny_model, models / "tiny")
    build_tiny_model(models / "tiny2", seed=1)  # same architecture, other weights
    build_tiny_model(models / "tiny-rec", seed=2)  # recommends its own concept-training values
    (models / "tiny-rec" / "impasto.json").write_text(json.dumps(
        {"concept_training": {"learning_rate": 2e-3, "rank": 2, "steps": 3, "train_text_encoder": True, "bogus": 1}}))
    build_tiny_model(models / "tiny-locon", seed=3)  # a model whose concepts train LoCon layers (the starter's way)
    (models / "tiny-locon" / "impasto.json").write_text(json.dumps(
        {"concept_training": {"unet_layers": "locon", "rank": 2, "steps": 2},
         "slider_training": {"rank": 3, "learning_rate": 5e-4, "bogus": 2}}))
    return Engine(models)


def pictures(n=4, sizes=None):
    out = []
    for i in range(n):
        w, h = sizes[i] if sizes else (32, 32)
        im = Image.new("RGB", (w, h), (0, 0, 255))
        ImageDraw.Draw(im).polygon([(w // 2, 2 + i), (w - 3, h - 3), (2, h - 3)], fill=(255, 255, 0))
        out.append(to_wire(im))
    return out


def train_req(name, **kw):
    base = dict(job="t-" + name.strip("./"), name=name, images=pictures(), trigger="zwx", class_noun="shape", steps=4,
                resolution=32, class_images=2, sample_every=0, checkpoint_every=0, model="tiny", preview=False)
    base.update(kw)
    return Train(**base)


def gen(engine, concepts=(), model="tiny", prompt="a zwx shape", seed=3):
    r = engine.run(Generate(job="g", prompt=prompt, seed=seed, steps=3, width=32, height=32, sampler="ddim",
                            model=model, concepts=list(concepts)))
    return r.images[0].data, r.warnings


def make_concept(engine, name, seed, rank=4, scale=0.5, trigger="zwx", embedding=False, **meta):
    loaded = engine.model("tiny")
    unet = loaded.base.unet
    g = torch.Generator().manual_seed(seed)
    t = {}
    if embedding:   # the trigger's own vectors: its base rows moved by a random step
        table = loaded.base.text_encoder.get_input_embeddings().weight.detach()
        ids = trigger_embedding.trigger_token_ids(loaded.base.tokenizer, trigger)
        t[trigger_embedding.KEY] = table[ids].float() + torch.randn(len(ids), table.shape[1], generator=g)
    for n, m in unet.named_modules():
        base = getattr(m, "base_layer", m)
        if n.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(base, torch.nn.Linear):
            t[f"unet.{n}.lora_A.weight"] = torch.randn(rank, base.in_features, generator=g) * scale
            t[f"unet.{n}.lora_B.weight"] = torch.randn(base.out_features, rank, generator=g) * scale
    return ConceptLibrary().save(name, t, new_meta(trigger=trigger, rank=rank, **meta), replace=True)


def base_snapshot(loaded):
    return {f"{c}.{k}": v.detach().clone() for c in ("unet", "text_encoder")
            for k, v in getattr(loaded.base, c).state_dict().items() if "lora_" not in k}


def live_base_tensors(loaded):
    return {f"{c}.{k.replace('.base_layer', '')}": v for c in ("unet", "text_encoder")
            for k, v in getattr(loaded.base, c).state_dict().items() if "lora_" not in k}


# --------------------------------------------------------------------------- using concepts


def test_weight_zero_is_bit_identical_and_switching_reloads_nothing(engine, monkeypatch):
    make_concept(engine, "c-one", seed=1)
    loaded = engine.model("tiny")
    before = base_snapshot(loaded)
    plain, _ = gen(engine)
    with_c, _ = gen(engine, [("c-one", 1.0)])
    assert with_c != plain
    loads = adapters.state_for(loaded).loads

    import diffusers

    def forbidden(*a, **k):
        raise AssertionError("a concept switch must not load model weights")

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", forbidden)
    monkeypatch.setattr(lib_mod.ConceptLibrary, "load_weights", forbidden)
    assert gen(engine, [("c-one", 0.0)])[0] == plain       # weight 0 == no concept, bit for bit
    assert gen(engine)[0] == plain
    assert gen(engine, [("c-one", 1.0)])[0] == with_c      # switching back gives the same bits again
    assert gen(engine, [("c-one", 0.5)])[0] not in (plain, with_c)
    assert engine.model("tiny") is loaded and adapters.state_for(loaded).loads == loads
    after = live_base_tensors(loaded)
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)  # base weights untouched


def test_live_jobs_run_on_fused_weights_and_the_next_job_gets_the_models_own_back(engine):
    """A live job folds its concepts into the base weights (no second path through each layer); any
    other job first gets the very tensors back: bit-identical pictures, nothing reloaded."""
    make_concept(engine, "c-live", seed=21)
    loaded = engine.model("tiny")
    before = {k: v.clone() for k, v in live_base_tensors(loaded).items()}
    own = {k: v.data_ptr() for k, v in live_base_tensors(loaded).items()}
    canvas = pictures(1)[0]

    def refine(concepts=(), live=False):
        r = engine.run(Generate(job="l", prompt="a zwx shape", seed=3, steps=4, sampler="ddim", model="tiny",
                                init_image=canvas, strength=0.75, concepts=list(concepts), live=live))
        return r.images[0].data

    plain = refine()
    unfused = refine([("c-live", 1.0)])
    assert unfused != plain
    loads = adapters.state_for(loaded).loads
    layers = adapters.tuner_layers(loaded.base.unet)
    probes = [torch.randn(2, 5, layer.get_base_layer().in_features, generator=torch.Generator().manual_seed(i))
              for i, layer in enumerate(layers)]
    with torch.no_grad():
        by_adapter = [layer(x) for layer, x in zip(layers, probes)]
    fused = refine([("c-live", 1.0)], live=True)
    st = adapters.state_for(loaded)
    assert st.fused == {next(iter(st.active)): 1.0} and len(st.fused_saved) == len(layers)
    assert all(layer.disable_adapters for layer in layers)                     # one path through each layer
    assert not adapters.tuner_layers(loaded.base.unet)                         # and no peft layer in the tree
    assert not any(torch.equal(v, before[k]) for k, v in live_base_tensors(loaded).items()
                   if k.endswith("to_q.weight") and k.startswith("unet."))      # folded in
    with torch.no_grad():                                                      # each layer computes the same
        for layer, x, want in zip(layers, probes, by_adapter):                 # (float rounding aside; a
            got = layer(x)                                                     # random tiny model then turns
            assert (got - want).abs().max() <= 1e-5 * want.abs().max(), layer  # that into other pixels)
    assert refine([("c-live", 1.0)], live=True) == fused and st.fused is not None   # the stream goes on, fused
    assert refine([("c-live", 0.5)], live=True) != fused                            # another weight: refolded
    assert refine([("c-live", 1.0)]) == unfused and st.fused is None            # a normal job: unfused, same bits
    assert adapters.tuner_layers(loaded.base.unet) == layers                   # the very peft layers, back in place
    refine([("c-live", 1.0)], live=True)
    assert refine() == plain                                                   # no concept: the base model's bits
    refine([("c-live", 1.0)], live=True)
    from impasto.backend.engine.concepts import base_weights

    base_weights(loaded)                                                       # what a training job gets
    after = live_base_tensors(loaded)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert {k: v.data_ptr() for k, v in after.items()} == own                 # the very tensors, not copies
    assert adapters.state_for(loaded).loads == loads                          # nothing reloaded


def test_the_compiled_live_unet_follows_the_folded_concept_and_its_weight(engine, monkeypatch):
    """IMPASTO_LIVE_COMPILE: the compiled copy gets the folded weights copied in when the concept's
    weight changes (no recompile), and paints what the eager UNet paints at each weight."""
    make_concept(engine, "c-compiled", seed=31)
    canvas = pictures(1)[0]

    def live(weight, compiled: bool):
        monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "1" if compiled else "0")
        r = engine.run(Generate(job="lc", prompt="a zwx shape", seed=5, steps=4, sampler="ddim", model="tiny",
                                init_image=canvas, strength=0.75, concepts=[("c-compiled", weight)], live=True))
        return r

    monkeypatch.setenv("IMPASTO_COMPILE_BACKEND", "eager")
    first = live(1.0, True).info["live_unet"]
    assert first == "compiling" or first.startswith("compiled for "), first
    lu = engine.model("tiny")._live_unet
    lu.thread.join(timeout=300)
    for weight in (1.0, 0.5, 1.0):
        fast = live(weight, True)
        assert fast.info["live_unet"] == "compiled", fast.info["live_unet"]
        slow = live(weight, False)
        a = np.frombuffer(fast.images[0].data, np.uint8).astype(int)
        b = np.frombuffer(slow.images[0].data, np.uint8).astype(int)
        assert np.abs(a - b).max() <= 1, weight
    assert lu.key == ((next(iter(adapters.state_for(engine.model("tiny")).fused)), 1.0),)
    unfolded = engine.run(Generate(job="n", prompt="a zwx shape", seed=5, steps=4, sampler="ddim", model="tiny",
                                   init_image=canvas, strength=0.75, concepts=[("c-compiled", 1.0)]))
    assert "live_unet" not in unfolded.info          # a normal job: the model's own UNet, adapters unfused


def test_several_concepts_at_once(engine):
    make_concept(engine, "c-a", seed=11)
    make_concept(engine, "c-b", seed=12)
    a, _ = gen(engine, [("c-a", 0.8)])
    b, _ = gen(engine, [("c-b", 0.8)])
    ab, _ = gen(engine, [("c-a", 0.8), ("c-b", 0.8)])
    assert len({a, b, ab}) == 3
    ba, _ = gen(engine, [("c-b", 0.8), ("c-a", 0.8)])
    diff = (torch.frombuffer(bytearray(ab), dtype=torch.uint8).int()
            - torch.frombuffer(bytearray(ba), dtype=torch.uint8).int()).abs().max()
    assert diff == 0  # one summation order per set of concepts: the order they are listed in changes nothing
    assert gen(engine, [("c-a", 0.8), ("c-b", 0.0)])[0] == a


def test_concept_errors_are_typed_and_the_engine_keeps_working(engine):
    plain, _ = gen(engine)
    with pytest.raises(EngineError) as ei:
        gen(engine, [("nope", 1.0)])
    assert ei.value.code == ErrorCode.UNKNOWN_CONCEPT and ei.value.field == "concepts[0]"
    make_concept(engine, "c-dup", seed=2)
    with pytest.raises(EngineError) as ei:
        gen(engine, [("c-dup", 1.0), ("c-dup", 0.5)])
    assert ei.value.field == "concepts[1]"
    # a LoRA made for another architecture: wrong shapes
    bad = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.ones(4, 999),
           "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.ones(32, 4)}
    ConceptLibrary().save("c-other-arch", bad, new_meta(), replace=True)
    with pytest.raises(EngineError) as ei:
        gen(engine, [("c-dup", 1.0), ("c-other-arch", 1.0)])
    assert ei.value.code == ErrorCode.BAD_FIELD and ei.value.field == "concepts[1]"
    assert "does not fit" in ei.value.message
    with pytest.raises(ProtocolError):
        gen(engine, [("../x", 1.0)])
    assert gen(engine)[0] == plain


def test_kohya_export_import_round_trip_gives_identical_pictures(engine, tmp_path):
    info = make_concept(engine, "c-kohya", seed=21, trigger="qqz", class_noun="mug", embedding=True)
    lib = ConceptLibrary()
    path = tmp_path / "c-kohya.safetensors"
    write_kohya_file(path, info.name, lib.load_weights(info), info.meta)
    raw, _ = read_safetensors(path)
    assert "bundle_emb.qqz.string_to_param.*" in raw      # A1111 / kohya's bundled embedding
    tensors, hints = read_lora_file(path)
    assert hints["layout"] == "kohya" and hints["trigger"] == "qqz" and hints["trigger_embedding"]
    assert torch.equal(tensors[trigger_embedding.KEY], lib.load_weights(info)[trigger_embedding.KEY])
    lib.save("c-kohya-back", tensors, new_meta(trigger=hints["trigger"]), replace=True)
    original, _ = gen(engine, [("c-kohya", 0.7)], prompt="a qqz mug")
    again, _ = gen(engine, [("c-kohya-back", 0.7)], prompt="a qqz mug")
    assert original == again
    assert original != gen(engine, [], prompt="a qqz mug")[0]


def test_trigger_embedding_acts_only_where_the_trigger_is_written(engine):
    """Prompts without the trigger are encoded bit for bit as by the base model; with it, not;
    with the concept at weight 0 or off, not even the trigger's prompt changes."""
    make_concept(engine, "c-emb", seed=5, trigger="qqz", embedding=True, scale=0.0)
    loaded = engine.model("tiny")
    tok, te = loaded.base.tokenizer, loaded.base.text_encoder

    def encode(prompt, concepts):
        activate(engine, loaded, concepts, JobHooks())
        ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
        with torch.no_grad():
            return te(ids)[0]

    plain, trig = "a red mug on a table", "a red qqz mug on a table"
    base_plain, base_trig = encode(plain, []), encode(trig, [])
    assert torch.equal(encode(plain, [("c-emb", 1.0)]), base_plain)
    on = encode(trig, [("c-emb", 1.0)])
    assert not torch.allclose(on, base_trig)
    half = encode(trig, [("c-emb", 0.5)])
    assert not torch.allclose(half, on) and not torch.allclose(half, base_trig)
    assert torch.equal(encode(trig, [("c-emb", 0.0)]), base_trig)
    assert torch.equal(encode(trig, []), base_trig)
    # the tokens before the trigger are untouched (CLIP reads left to right)
    n_before = len(tok("a red", add_special_tokens=False).input_ids) + 1
    assert torch.equal(on[:, :n_before], base_trig[:, :n_before])


def test_trigger_mask_matches_whole_runs_only():
    ids = torch.tensor([[49406, 7, 8, 9, 5, 7, 8, 49407], [49406, 7, 5, 8, 9, 7, 8, 9]])
    sel = trigger_embedding.trigger_mask(ids, [7, 8, 9])
    assert sel.shape == (2, 8, 3)
    assert sel[0, 1:4].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]] and sel[0, 4:].sum() == 0
    assert sel[1, :5].sum() == 0 and sel[1, 5:].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


# --------------------------------------------------------------------------- training


def test_training_learns_saves_and_leaves_the_model_exactly_as_before(engine, home):
    loaded = engine.model("tiny")
    make_concept(engine, "c-resident", seed=5)
    gen(engine, [("c-resident", 1.0)])  # a concept adapter is in the model while the training starts
    before = {k: v.clone() for k, v in live_base_tensors(loaded).items()}
    flags = {c: [p.requires_grad for n, p in getattr(loaded.base, c).named_parameters() if "lora_" not in n]
             for c in ("unet", "text_encoder")}
    events = []

    def progress(step, total, preview=None, loss=None, stage=""):
        events.append((stage, step, total, loss, preview is not None))

    hooks = JobHooks(progress=progress, want_preview=True)
    r = engine.run(train_req("c-trained", steps=6, sample_every=3, preview=True, train_text_encoder=True), hooks)
    train = [e for e in events if e[0] == "train"]
    assert [e[1] for e in train] == [1, 2, 3, 4, 5, 6] and all(e[2] == 6 for e in train)
    assert all(isinstance(e[3], float) and e[3] > 0 for e in train)
    assert [e[4] for e in train] == [False, False, True, False, False, False]  # a sample at step 3
    assert any(e[0] == "class images" for e in events)
    assert r.steps_run == 6 and len(r.images) == 2 and r.info["batch"] == 4
    concept = r.info["concept"]
    assert concept["trigger"] == "zwx" and concept["base_model"] == "tiny" and concept["text_encoder"]
    assert concept["base_fingerprint"] == loaded.fingerprint and len(concept["samples"]) == 2
    weights = ConceptLibrary().load_weights(ConceptLibrary().get("c-trained"))
    assert any(k.startswith("text_encoder.text_model.") for k in weights)
    assert any(".attn1.to_q." in k for k in weights) and any(".to_out.0." in k for k in weights)
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # it learned something
    # the resident model: same weights, no peft layers, same flags, same modes
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert not any(isinstance(m, BaseTunerLayer) for m in loaded.base.unet.modules())
    after = {f"{c}.{k}": v for c in ("unet", "text_encoder") for k, v in getattr(loaded.base, c).state_dict().items()}
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert flags == {c: [p.requires_grad for p in getattr(loaded.base, c).parameters()]
                     for c in ("unet", "text_encoder")}
    assert not loaded.base.unet.training and not loaded.base.text_encoder.training
    # prior-preservation pictures are cached per model: a second training of the class makes none
    # (2 class pictures + one for each neighbour prompt: "a zwx shape" -> "a circle", "a dog"...)
    cached = list((home / "cache" / "class_images" / loaded.fingerprint).rglob("*.png"))
    assert len(cached) > 2
    events.clear()
    engine.run(train_req("c-trained-2", steps=2), hooks)
    found = [(e[1], e[2]) for e in events if e[0] == "class images"]
    assert found == [(len(cached), len(cached))]  # all found at once, nothing generated
    # and the trained concept is usable at once, with the resident concept back as well
    assert gen(engine, [("c-trained", 1.0), ("c-resident", 1.0)])[1] == []


@torch.no_grad()
def test_training_lowers_the_denoising_loss_on_its_pictures(engine):
    """Not just non-zero weights: with the concept on, the model predicts the noise of its
    pictures better than the base model does (same latents, noise and timesteps)."""
    import torch.nn.functional as F

    from impasto.backend.concepts import dataset
    from impasto.backend.engine import concepts as seam
    from impasto.backend.engine.images import from_wire

    engine.run(train_req("c-learn", steps=40, learning_rate=5e-3, prior_preservation=False))
    loaded = engine.model("tiny")
    base = loaded.base
    px = torch.stack([dataset.to_tensor(dataset.fit_square(from_wire(p).convert("RGB"), 32)) for p in pictures()])
    latents = base.vae.encode(px).latent_dist.mean * base.vae.config.scaling_factor
    g = torch.Generator().manual_seed(0)
    latents = latents.repeat(4, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(50, 950, (latents.shape[0],), generator=g)
    from diffusers import DDPMScheduler

    noisy = DDPMScheduler.from_config(loaded.scheduler_config).add_noise(latents, noise, t)
    ids = base.tokenizer(["a zwx shape"] * latents.shape[0], padding="max_length", max_length=77,
                         truncation=True, return_tensors="pt").input_ids
    emb = base.text_encoder(ids)[0]

    def loss(concepts):
        seam.activate(engine, loaded, concepts, JobHooks())
        return F.mse_loss(base.unet(noisy, t, emb).sample, noise).item()

    before, after = loss([]), loss([("c-learn", 1.0)])
    assert after < 0.9 * before, (before, after)
    assert loss([]) == before


@torch.no_grad()
def test_neighbour_distillation_keeps_other_prompts_where_the_base_model_had_them(engine, monkeypatch):
    """The same training with and without neighbour distillation: with it, the concept moves the
    model's prediction for the distilled neighbour prompts ("a circle" next to "a shape") less."""
    from diffusers import DDPMScheduler

    from impasto.backend.concepts import train as train_mod
    from impasto.backend.engine import concepts as seam

    loaded = engine.model("tiny")
    base = loaded.base
    settings = dict(steps=30, learning_rate=1e-2, rank=4, class_images=2)
    monkeypatch.setattr(train_mod, "NEIGHBOUR_DISTILL", 0.0)
    off = engine.run(train_req("c-nodistill", **settings))
    assert off.info["distilled_prompts"] == []
    monkeypatch.setattr(train_mod, "NEIGHBOUR_DISTILL", 4.0)
    on = engine.run(train_req("c-distill", **settings))
    near = on.info["distilled_prompts"]
    assert 0 < len(near) <= train_mod.NEIGHBOUR_DISTILL_KEEP
    assert all("zwx" not in p and "shape" not in p.split() for p in near)
    g = torch.Generator().manual_seed(3)
    n = len(near)
    latents = torch.randn((n, 4, 4, 4), generator=g)
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(50, 950, (n,), generator=g)
    noisy = DDPMScheduler.from_config(loaded.scheduler_config).add_noise(latents, noise, t)
    ids = base.tokenizer(near, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids

    def predict(concepts):
        seam.activate(engine, loaded, concepts, JobHooks())
        return base.unet(noisy, t, base.text_encoder(ids)[0]).sample

    ref = predict([])
    drift_off = (predict([("c-nodistill", 1.0)]) - ref).pow(2).mean().item()
    drift_on = (predict([("c-distill", 1.0)]) - ref).pow(2).mean().item()
    assert drift_off > 0
    assert drift_on < 0.7 * drift_off, (drift_on, drift_off)


def test_left_out_settings_come_from_the_model_then_the_sd15_values(engine):
    """rank / steps / learning rate 0 and an unset text-encoder choice = the model's impasto.json
    recommendation, else SD1.5's (text encoder off)."""
    kw = dict(prior_preservation=False, steps=0, rank=0, learning_rate=0.0)
    r = engine.run(train_req("c-rec", model="tiny-rec", **kw))
    c = r.info["concept"]
    assert (r.steps_run, c["rank"], c["learning_rate"], c["text_encoder"]) == (3, 2, 2e-3, True)
    r = engine.run(train_req("c-rec2", model="tiny-rec",   # given values win
                             **dict(kw, steps=2, rank=4, train_text_encoder=False)))
    c = r.info["concept"]
    assert (r.steps_run, c["rank"], c["learning_rate"], c["text_encoder"]) == (2, 4, 2e-3, False)
    entry = engine.model("tiny").entry
    assert entry.concept_training == {}
    r = engine.run(train_req("c-rec3", model="tiny", **dict(kw, steps=1)))
    c = r.info["concept"]
    assert (c["rank"], c["learning_rate"], c["text_encoder"]) == (8, 1e-4, False)
    assert engine.model("tiny-rec").entry.concept_training == {"learning_rate": 2e-3, "rank": 2, "steps": 3,
                                                                "train_text_encoder": True}


def test_a_model_that_asks_for_locon_layers_gets_convolutions_too_and_they_survive_kohya(engine, tmp_path):
    entry = engine.model("tiny-locon").entry
    assert entry.concept_training == {"unet_layers": "locon", "rank": 2, "steps": 2}
    assert entry.slider_training == {"rank": 3, "learning_rate": 5e-4}
    from impasto.backend.concepts.slider_train import with_model_defaults as slider_defaults
    from impasto.protocol.messages import TrainSlider

    slider = slider_defaults(TrainSlider(job="s", name="s"), engine.model("tiny-locon"))
    assert (slider.rank, slider.learning_rate) == (3, 5e-4)   # the slider's own block wins over concept_training
    engine.run(train_req("c-locon", model="tiny-locon", steps=0, rank=0, prior_preservation=False))
    lib = ConceptLibrary()
    info = lib.get("c-locon")
    weights = lib.load_weights(info)
    modules = {k.rsplit(".lora_", 1)[0] for k in weights if k.startswith("unet.") and ".lora_" in k}
    for suffix in ("attn1.to_q", "attn2.to_k", "proj_in", "ff.net.2", "conv1", "conv2"):
        assert any(m.endswith(suffix) for m in modules), suffix
    assert any(t.dim() == 4 for k, t in weights.items() if k.endswith("conv1.lora_A.weight"))   # 3x3 LoCon
    # the attention-only default elsewhere: the same request on a model without the key
    engine.run(train_req("c-attn", steps=1, prior_preservation=False))
    plain = {k.rsplit(".lora_", 1)[0] for k in lib.load_weights(lib.get("c-attn")) if k.startswith("unet.")}
    assert plain and all(m.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or m.endswith("to_out.0") for m in plain)
    # exported the way kohya / A1111 read LoCon, imported back: the same pictures
    path = tmp_path / "c-locon.safetensors"
    write_kohya_file(path, info.name, weights, info.meta)
    tensors, hints = read_lora_file(path)
    assert hints["layout"] == "kohya"
    lib.save("c-locon-back", tensors, new_meta(trigger=hints["trigger"]), replace=True)
    original, _ = gen(engine, [("c-locon", 1.0)], model="tiny-locon")
    assert original == gen(engine, [("c-locon-back", 1.0)], model="tiny-locon")[0]
    assert original != gen(engine, [], model="tiny-locon")[0]


def test_a_bad_unet_layers_value_is_left_out_with_a_warning(tmp_path, caplog):
    from impasto.backend.engine.models import training_defaults

    got = training_defaults({"concept_training": {"unet_layers": "everything", "rank": 4}}, tmp_path)
    assert got == {"rank": 4}
    assert training_defaults({"concept_training": {"unet_layers": 3}}, tmp_path) == {}
    assert "unet_layers" in caplog.text


def test_custom_diffusion_trains_cross_attention_kv_only(engine):
    r = engine.run(train_req("c-cd", method="custom_diffusion", steps=2, prior_preservation=False))
    keys = ConceptLibrary().load_weights(ConceptLibrary().get("c-cd"))
    modules = {k.rsplit(".lora_", 1)[0] for k in keys if ".lora_" in k}
    assert modules and all(m.endswith(("attn2.to_k", "attn2.to_v")) for m in modules)
    # Custom Diffusion's modifier token: the trigger's own embedding rows, nothing else of the text encoder
    assert set(keys) - {k for k in keys if ".lora_" in k} == {"text_encoder.trigger_embedding"}
    assert r.info["concept"]["method"] == "custom_diffusion"


def test_gradient_checkpointing_option_is_switched_off_afterwards(engine):
    r = engine.run(train_req("c-gc", steps=2, prior_preservation=False, gradient_checkpointing=True,
                             train_text_encoder=True))
    loaded = engine.model("tiny")
    assert r.steps_run == 2
    assert not loaded.base.unet.is_gradient_checkpointing
    assert not loaded.base.text_encoder.is_activation_checkpointing


def test_base_mismatch_is_a_warning_not_an_error(engine):
    engine.run(train_req("c-on-tiny", steps=2, prior_preservation=False))
    _, warnings = gen(engine, [("c-on-tiny", 1.0)], model="tiny2")
    assert len(warnings) == 1 and "trained on model 'tiny'" in warnings[0]
    _, warnings = gen(engine, [("c-on-tiny", 1.0)], model="tiny")
    assert warnings == []


def test_resume_after_cancel_matches_an_uninterrupted_training(engine, home):
    kw = dict(steps=8, class_images=2, train_text_encoder=True, seed=7)
    engine.run(train_req("c-straight", **kw))
    seen = {"step": 0}

    def progress(step, total, preview=None, loss=None, stage=""):
        if stage == "train":
            seen["step"] = step

    with pytest.raises(Cancelled):
        engine.run(train_req("c-stopped", checkpoint_every=2, **kw),
                   JobHooks(cancelled=lambda: seen["step"] >= 5, progress=progress))
    ck = checkpoint.latest(checkpoint.training_dir("c-stopped"))
    assert ck is not None and ck.step == 5  # the cancel itself saved a checkpoint
    assert ConceptLibrary().find("c-stopped") is None
    with pytest.raises(EngineError) as ei:  # other settings: refused, the checkpoint kept
        engine.run(train_req("c-stopped", resume=True, **dict(kw, train_text_encoder=False)))
    assert ei.value.field == "resume"
    r = engine.run(train_req("c-stopped", resume=True, **kw))
    assert r.info["resumed_from"] == 5 and r.info["steps_this_run"] == 3 and r.steps_run == 8
    lib = ConceptLibrary()
    a, b = lib.load_weights(lib.get("c-straight")), lib.load_weights(lib.get("c-stopped"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoint.latest(checkpoint.training_dir("c-stopped")) is None  # done: checkpoint removed
    with pytest.raises(EngineError) as ei:
        engine.run(train_req("c-stopped", resume=True, **kw))
    assert ei.value.code == ErrorCode.NOT_FOUND


def test_bad_training_input(engine):
    for kw, field in ((dict(images=pictures(2)), "images"), (dict(images=[]), "images"), (dict(trigger=""), "trigger"),
                      (dict(trigger="two words"), "trigger"), (dict(steps=-1), "steps"), (dict(steps=6000), "steps"),
                      (dict(rank=-2), "rank"), (dict(learning_rate=0.5), "learning_rate"),
                      (dict(name="../up"), "name"), (dict(method="dreambooth"), "method")):
        with pytest.raises(ProtocolError) as ei:
            engine.run(train_req(kw.pop("name", "c-bad"), **kw))
        assert ei.value.field == field, kw
    # mixed sizes are fine: squared to the training size, tiny ones with a warning
    hooks = JobHooks()
    r = engine.run(train_req("c-mixed", images=pictures(3, sizes=[(64, 40), (20, 90), (8, 8)]), steps=1,
                             prior_preservation=False), hooks)
    assert r.steps_run == 1 and any("images[2]" in w and "smaller" in w for w in r.warnings)


def test_disk_full_on_save_keeps_library_and_checkpoint(engine, monkeypatch):
    engine.run(train_req("c-full", steps=2, prior_preservation=False))
    old = ConceptLibrary().get("c-full")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lib_mod, "_write_file", full)
    with pytest.raises(EngineError) as ei:
        engine.run(train_req("c-full", steps=3, prior_preservation=False))
    assert "disk is full" in ei.value.message
    monkeypatch.undo()
    kept = ConceptLibrary().get("c-full")
    assert kept.id == old.id and kept.meta["steps"] == 2
    assert not [p for p in ConceptLibrary().root.iterdir() if p.name.startswith(".")]
    # the trained weights were not lost: resume saves them without training again
    r = engine.run(train_req("c-full", steps=3, prior_preservation=False, resume=True))
    assert r.info["steps_this_run"] == 0 and ConceptLibrary().get("c-full").meta["steps"] == 3

