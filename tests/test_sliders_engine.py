"""Concept Sliders inside the engine (no daemon): text and image-pair training, signed weights, resume, kohya.

On the tiny random-weight model at 32 px: the machinery (objective, bits,
files, flags) is checked here; whether a slider moves a picture's attribute is
``bench/slider_proof.py``'s job on the starter model.
"""
from __future__ import annotations

import os

import pytest
import torch
from PIL import Image, ImageDraw

from impasto.backend.concepts import adapters, checkpoint
from impasto.backend.concepts.library import ConceptLibrary, new_meta
from impasto.backend.concepts.lora_io import read_lora_file, write_kohya_file
from impasto.backend.concepts import slider_train
from impasto.backend.engine import Cancelled, Engine, EngineError, JobHooks
from impasto.backend.engine.images import to_wire
from impasto.protocol.messages import ErrorCode, Generate, TrainSlider

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("sliders-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMPASTO_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def engine(home, tiny_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("slider-models")
    os.symlink(tiny_model, models / "tiny")
    return Engine(models)


def disc(radius: int, fg=(255, 255, 0)):
    im = Image.new("RGB", (32, 32), (0, 0, 255))
    ImageDraw.Draw(im).ellipse([16 - radius, 16 - radius, 16 + radius, 16 + radius], fill=fg)
    return to_wire(im)


def text_req(name, **kw):
    base = dict(job="s-" + name, name=name, mode="text", target="a shape", positive="a big shape",
                negative="a small shape", preserve=["on blue", "on red"], base_pictures=2, steps=4, resolution=32,
                sample_every=0, checkpoint_every=0, model="tiny", preview=False, learning_rate=1e-3, rank=2)
    base.update(kw)
    return TrainSlider(**base)


def pair_req(name, **kw):
    base = dict(job="p-" + name, name=name, mode="images", images=[disc(5), disc(6), disc(4)],
                images_high=[disc(12), disc(13), disc(11)], captions=["a circle"] * 3, steps=4, resolution=32,
                sample_every=0, checkpoint_every=0, model="tiny", preview=False, learning_rate=1e-3, rank=2)
    base.update(kw)
    return TrainSlider(**base)


def gen(engine, concepts=(), prompt="a circle", seed=3):
    r = engine.run(Generate(job="g", prompt=prompt, seed=seed, steps=3, width=32, height=32, sampler="ddim",
                            model="tiny", concepts=list(concepts)))
    return r.images[0].data


def live_base_tensors(loaded):
    return {f"{c}.{k.replace('.base_layer', '')}": v.detach().clone() for c in ("unet", "text_encoder")
            for k, v in getattr(loaded.base, c).state_dict().items() if "lora_" not in k}


def test_text_slider_trains_saves_a_slider_and_leaves_the_model_as_before(engine):
    loaded = engine.model("tiny")
    before = live_base_tensors(loaded)
    events = []

    def progress(step, total, preview=None, loss=None, stage=""):
        events.append((stage, step, total, loss, None if preview is None else preview.size))

    r = engine.run(text_req("sl-text", steps=4, sample_every=2, preview=True), JobHooks(progress=progress,
                                                                                          want_preview=True))
    train = [e for e in events if e[0] == "train"]
    assert [e[1] for e in train] == [1, 2, 3, 4] and all(isinstance(e[3], float) and e[3] > 0 for e in train)
    assert train[1][4] == (96, 32)        # the preview at step 2: one seed at -1, 0, +1 side by side
    assert any(e[0] == "class images" for e in events) and events[-1][0] == "saved"
    assert r.info["sample_weights"] == [-1.0, 0.0, 1.0] and len(r.images) == 3 and r.seeds == [0, 0, 0]
    concept = r.info["concept"]
    assert concept["slider"] == {"mode": "text", "range": [-3.0, 3.0], "target": "a shape",
                                 "positive": "a big shape", "negative": "a small shape", "guidance": 1.0,
                                 "preserve": ["on blue", "on red"]}
    assert concept["trigger"] == "" and len(concept["samples"]) == 3 and concept["rank"] == 2
    weights = ConceptLibrary().load_weights(ConceptLibrary().get("sl-text"))
    assert weights and all(k.startswith("unet.") for k in weights)
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
    # -1, 0 and +1 differ; 0 is the base model's picture (same seed, same sampler)
    a, b, c = (img.data for img in r.images)
    assert a != b and b != c and a != c
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert not any(isinstance(m, BaseTunerLayer) for m in loaded.base.unet.modules())
    after = live_base_tensors(loaded)
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert not loaded.base.unet.training


def test_signed_weights_range_and_zero(engine):
    engine.run(pair_req("sl-pairs"))
    base = gen(engine)
    assert gen(engine, [("sl-pairs", 0.0)]) == base                 # 0: the bare base model, bit for bit
    up, down = gen(engine, [("sl-pairs", 1.5)]), gen(engine, [("sl-pairs", -1.5)])
    assert up != base and down != base and up != down
    assert gen(engine, [("sl-pairs", -3.0)]) != down                # the ends of the range are allowed
    for bad in (3.5, -3.01):
        with pytest.raises(EngineError) as ei:
            gen(engine, [("sl-pairs", bad)])
        assert ei.value.code == ErrorCode.BAD_FIELD and ei.value.field == "concepts[0].weight"
    assert gen(engine) == base                                      # and the engine keeps working


def test_a_picture_slider_acts_for_its_share_of_the_steps(engine):
    """A picture-pair slider says ``end`` (slider_train.PICTURE_SLIDER_END): after that share of the
    steps the base model draws alone; the weights are whole again for the next job."""
    lib = ConceptLibrary()
    if lib.find("sl-pairs") is None:
        engine.run(pair_req("sl-pairs"))
    info = lib.get("sl-pairs")
    assert info.meta["slider"]["end"] == slider_train.PICTURE_SLIDER_END < 1.0
    tensors = lib.load_weights(info)
    whole = {k: v for k, v in info.meta["slider"].items() if k != "end"}
    lib.save("sl-whole", tensors, new_meta(slider=whole), replace=True)
    lib.save("sl-end1", tensors, new_meta(slider=dict(whole, end=1.0)), replace=True)
    lib.save("sl-first", tensors, new_meta(slider=dict(whole, end=0.01)), replace=True)   # one step of 3

    base = gen(engine)
    full = gen(engine, [("sl-whole", 1.5)])
    ended = gen(engine, [("sl-pairs", 1.5)])              # 3 steps, end 0.8: on for 2, off for 1
    first = gen(engine, [("sl-first", 1.5)])
    assert len({base, full, ended, first}) == 4
    assert gen(engine, [("sl-end1", 1.5)]) == full         # end 1: the whole schedule, bit for bit
    assert gen(engine, [("sl-whole", 1.5)]) == full        # the switched-off weights do not linger
    assert gen(engine, [("sl-pairs", 1.5)]) == ended       # and the same job paints the same bits
    loaded = engine.model("tiny")
    st = adapters.state_for(loaded)
    adapter = next(a for a in st.active)
    scales = {layer.scaling[adapter] for layer in adapters.tuner_layers(adapters.component(loaded, "unet"))
              if adapter in layer.scaling}
    assert scales == {0.0}                                 # after the job: off (whole again at the next)
    assert gen(engine) == base


@torch.no_grad()
def _objective(engine, name, req):
    """The slider loss of the library's concept ``name`` on fixed examples (LoRA at +1 and -1)."""
    loaded = engine.model("tiny")
    trainer = slider_train.SliderTrainer(engine, loaded, slider_train.with_model_defaults(req, loaded), JobHooks())
    adapters.unload_all(loaded)
    trainer.prepare()
    trainer.cache()
    lib = ConceptLibrary()
    tensors = lib.load_weights(lib.get(name))
    trainer.req.rank = tensors[next(k for k in tensors if k.endswith("lora_A.weight"))].shape[0]
    try:
        with torch.enable_grad():
            trainer.setup(None)
        adapters.load_training_state(loaded, "unet", tensors)
        trainer.gen = torch.Generator().manual_seed(99)
        trainer.optimise = lambda loss: float(loss)          # measure, don't step
        return sum(trainer.train_step() for _ in range(6))
    finally:
        adapters.unload_all(loaded)
        loaded.base.unet.eval()
        for p in loaded.base.unet.parameters():
            p.requires_grad_(False)


@pytest.mark.parametrize("make", [text_req, pair_req])
def test_training_lowers_the_slider_objective(engine, make):
    short = make(f"sl-obj-1-{make.__name__}", steps=1, learning_rate=1e-2, seed=1)
    long = make(f"sl-obj-60-{make.__name__}", steps=60, learning_rate=1e-2, seed=1)
    engine.run(short)
    engine.run(long)
    a, b = _objective(engine, long.name, long), _objective(engine, short.name, short)
    assert a < 0.9 * b


def test_resume_after_cancel_matches_an_uninterrupted_training(engine):
    kw = dict(steps=6, seed=5)
    engine.run(text_req("sl-straight", **kw))
    seen = {"step": 0}

    def progress(step, total, preview=None, loss=None, stage=""):
        if stage == "train":
            seen["step"] = step

    with pytest.raises(Cancelled):
        engine.run(text_req("sl-stopped", checkpoint_every=2, **kw),
                   JobHooks(cancelled=lambda: seen["step"] >= 4, progress=progress))
    ck = checkpoint.latest(checkpoint.training_dir("sl-stopped"))
    assert ck is not None and ck.step == 4 and ConceptLibrary().find("sl-stopped") is None
    with pytest.raises(EngineError) as ei:    # other prompts: refused, the checkpoint kept
        engine.run(text_req("sl-stopped", resume=True, positive="a huge shape", **kw))
    assert ei.value.field == "resume"
    r = engine.run(text_req("sl-stopped", resume=True, **kw))
    assert r.info["resumed_from"] == 4 and r.info["steps_this_run"] == 2 and r.steps_run == 6
    lib = ConceptLibrary()
    a, b = lib.load_weights(lib.get("sl-straight")), lib.load_weights(lib.get("sl-stopped"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_kohya_export_import_keeps_the_slider(engine, tmp_path):
    lib = ConceptLibrary()
    if lib.find("sl-pairs") is None:
        engine.run(pair_req("sl-pairs"))
    info = lib.get("sl-pairs")
    path = tmp_path / "sl-pairs.safetensors"
    write_kohya_file(path, info.name, lib.load_weights(info), info.meta)
    tensors, hints = read_lora_file(path)
    assert hints["layout"] == "kohya" and hints["slider"] == info.meta["slider"]
    assert hints["slider"]["mode"] == "images" and hints["slider"]["pairs"] == 3
    lib.save("sl-back", tensors, new_meta(slider=hints["slider"]), replace=True)
    assert gen(engine, [("sl-back", -1.2)]) == gen(engine, [("sl-pairs", -1.2)])
    with pytest.raises(EngineError):
        gen(engine, [("sl-back", 3.2)])                              # still a slider: still its range


def test_bad_slider_input_is_typed(engine):
    cases = [
        (dict(mode="text", positive=""), "positive"),
        (dict(mode="text", negative="a big shape"), "negative"),
        (dict(mode="sideways"), "mode"),
        (dict(guidance=-1.0), "guidance"),
    ]
    for kw, field in cases:
        with pytest.raises(Exception) as ei:
            engine.run(text_req("sl-bad", **kw))
        assert getattr(ei.value, "field", None) == field, (kw, ei.value)
    with pytest.raises(Exception) as ei:
        engine.run(pair_req("sl-bad", images_high=[disc(12)]))
    assert ei.value.field == "images_high"
    assert ConceptLibrary().find("sl-bad") is None


def test_a_downloaded_files_slider_header_is_kept_to_known_fields():
    import json

    from impasto.backend.concepts.lora_io import slider_from_header, slider_header

    meta = {"slider": {"mode": "text", "range": [-3.0, 3.0], "target": "a shape", "positive": "big",
                       "negative": "small", "guidance": 1.5, "preserve": ["on red"]}}
    assert slider_from_header(slider_header(meta)) == meta["slider"]
    hostile = {"impasto_slider": json.dumps({"mode": "text", "range": [-99, 99], "positive": "x" * 5000,
                                             "negative": ["not", "text"], "guidance": 1e9,
                                             "preserve": ["a"] * 1000 + [7], "extra": {"deep": [1] * 10}})}
    got = slider_from_header(hostile)
    assert got["range"] == [-3.0, 3.0] and len(got["positive"]) == 300 and got["negative"] == ""
    assert got["guidance"] == 1.0 and len(got["preserve"]) == 256 and "extra" not in got
    assert slider_from_header({"impasto_slider": "[1, 2]"}) is None
    assert slider_from_header({"impasto_slider": "{not json"}) is None
    assert slider_from_header({}) is None
    assert slider_from_header({"impasto_slider": '{"mode": "images", "pairs": true}'}) == {
        "mode": "images", "range": [-3.0, 3.0], "target": ""}
    pairs = {"slider": {"mode": "images", "range": [-3.0, 3.0], "target": "", "pairs": 8, "end": 0.8}}
    assert slider_from_header(slider_header(pairs)) == pairs["slider"]
    for bad in ("0", "1.5", "-0.2", "true", '"0.8"', "NaN", "Infinity"):
        got = slider_from_header({"impasto_slider": '{"mode": "images", "end": %s}' % bad})
        assert "end" not in got, bad
