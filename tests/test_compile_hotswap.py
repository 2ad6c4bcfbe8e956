"""A compiled UNet switches concepts without recompiling (the hot LoRA slot), and paints what the eager model does.

``torch.compile`` runs with the ``eager`` backend here: TorchDynamo still
captures the graph and installs its guards - which is what a concept switch
could invalidate - but no kernels are generated, so the test takes seconds on
a CPU.  ``torch._dynamo.config.error_on_recompile`` turns any recompile after
the warm-up into an error.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.backend.engine import Engine
from impasto.backend.engine.device import DeviceChoice
from impasto.protocol.messages import Generate

CPU = DeviceChoice(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def engines(tiny_model, tmp_path_factory):
    home = tmp_path_factory.mktemp("hot-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMPASTO_HOME", str(home))
    models = tiny_model.parent
    plain = Engine(models, device=CPU)
    mp.setenv("IMPASTO_COMPILE", "1")
    mp.setenv("IMPASTO_COMPILE_BACKEND", "eager")
    compiled = Engine(models, device=CPU)
    compiled.model("tiny")
    mp.delenv("IMPASTO_COMPILE")
    yield plain, compiled
    mp.undo()


def concept(engine, name, seed):
    """A random LoRA on the UNet's attention projections (+ the text encoder), saved in the library."""
    from impasto.backend.concepts.library import ConceptLibrary, new_meta

    loaded = engine.model("tiny")
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for comp in ("unet", "text_encoder"):
        model = getattr(loaded.base, comp)
        model = getattr(model, "_orig_mod", model)
        for mod_name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and mod_name.endswith(("to_q", "to_v", "q_proj")):
                if "lora" in mod_name:
                    continue
                key = mod_name if comp == "unet" or mod_name.startswith("text_model.") else "text_model." + mod_name
                tensors[f"{comp}.{key}.lora_A.weight"] = torch.randn(4, mod.in_features, generator=g) * 0.3
                tensors[f"{comp}.{key}.lora_B.weight"] = torch.randn(mod.out_features, 4, generator=g) * 0.3
    ConceptLibrary().save(name, tensors, new_meta(trigger="zwx", base_arch="sd15", base_model="tiny", rank=4))


def picture(engine, concepts=()):
    res = engine.run(Generate(job="h", prompt="a zwx shape", seed=5, steps=3, width=32, height=32, sampler="ddim",
                              model="tiny", concepts=list(concepts)))
    return np.frombuffer(res.images[0].data, np.uint8).reshape(32, 32, 4).astype(int)


def test_compiled_unet_swaps_concepts_without_recompiling_and_matches_eager(engines):
    import torch._dynamo

    plain, compiled = engines
    assert "compile" in compiled.loaded.fast.describe()
    assert type(compiled.loaded.base.unet).__name__ == "OptimizedModule"
    concept(plain, "hot-a", 1)
    concept(plain, "hot-b", 2)
    base = picture(compiled)
    a = picture(compiled, [("hot-a", 0.8)])      # warm-up: the graph with the slot in use
    torch._dynamo.config.error_on_recompile = True
    try:
        b = picture(compiled, [("hot-b", 0.8)])
        ab = picture(compiled, [("hot-a", 0.8), ("hot-b", 0.5)])
        none = picture(compiled)
        a_again = picture(compiled, [("hot-a", 0.8)])
    finally:
        torch._dynamo.config.error_on_recompile = False
    assert (none == base).all(), "no concept: the slot adds exactly zero"
    assert (a_again == a).all() and (a != base).any() and (b != a).any() and (ab != a).any()
    # the same concepts on the eager model with ordinary peft adapters paint the same picture
    assert np.abs(picture(plain, [("hot-a", 0.8)]) - a).max() <= 2
    assert np.abs(picture(plain, [("hot-a", 0.8), ("hot-b", 0.5)]) - ab).max() <= 2
    assert np.abs(picture(plain) - base).max() <= 2


def test_training_on_a_compiled_model_leaves_the_slot_and_the_base_as_they_were(engines):
    from PIL import Image, ImageDraw

    from impasto.backend.concepts import hotswap
    from impasto.backend.engine.images import to_wire
    from impasto.protocol.messages import Train

    _, compiled = engines
    base = picture(compiled)
    pics = []
    for i in range(3):
        im = Image.new("RGB", (32, 32), (0, 0, 255))
        ImageDraw.Draw(im).ellipse((4 + i, 4, 26, 26), fill=(255, 255, 0))
        pics.append(to_wire(im))
    res = compiled.run(Train(job="t-hot", name="hot-trained", images=pics, trigger="zwx", class_noun="", steps=2,
                             resolution=32, prior_preservation=False, class_images=0, sample_every=0,
                             checkpoint_every=0, model="tiny", preview=False, train_text_encoder=False,
                             trigger_embedding=False, learning_rate=1e-3, rank=4))
    assert res.steps_run == 2
    unet = compiled.loaded.base.unet
    assert hotswap.active(unet) and all(list(l.active_adapters) == [hotswap.HOT] for l in hotswap.layers(unet).values())
    assert all(float(l.lora_B[hotswap.HOT].weight.abs().sum()) == 0 for l in hotswap.layers(unet).values())
    assert (picture(compiled) == base).all()
    assert (picture(compiled, [("hot-trained", 1.0)]) != base).any()
