"""Per-job overheads the engine removes: full garbage collections and diffusers' signature lookups."""
from __future__ import annotations

import gc
import inspect

import pytest

torch = pytest.importorskip("torch")

from impasto.backend.engine import Engine, JobHooks  # noqa: E402
from impasto.protocol.messages import Generate  # noqa: E402


def test_a_loaded_model_is_out_of_full_collections_and_handed_back_when_switched(tmp_path):
    from impasto.backend.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    build_tiny_model(tmp_path / "a")
    build_tiny_model(tmp_path / "b")
    gc.unfreeze()
    eng = Engine(tmp_path)
    loaded = eng.model("a")
    frozen = gc.get_freeze_count()
    assert frozen > 10_000                       # torch, diffusers and the model's objects
    assert not any(o is loaded.base.unet for o in gc.get_objects(2))   # no full pass walks the model
    # switching models unfreezes first: the old model's objects are collectable again
    # (a frozen object can still be freed by its reference count, so the count may drop by a few
    # between here and the switch: ask whether the old model's UNet is still frozen, not the count)
    seen = []
    real = gc.unfreeze
    unet = loaded.base.unet
    try:
        gc.unfreeze = lambda: (seen.append((gc.get_freeze_count(),
                                            not any(o is unet for o in gc.get_objects()))), real())[1]
        eng.model("b")
    finally:
        gc.unfreeze = real
    assert seen and seen[0][0] > frozen - 1_000 and seen[0][1]   # before the old model is closed (and in settle)
    assert gc.get_freeze_count() > 10_000        # the new model settled in turn
    out = eng.run(Generate(job="j", model="b", prompt="a red circle", width=64, height=64, steps=2, seed=1),
                  JobHooks())
    assert out.images
    gc.unfreeze()


def test_diffusers_attention_asks_a_cached_signature_with_the_same_answer():
    from diffusers.models import attention_processor

    from impasto.backend.engine import pipelines  # noqa: F401  (installs it)
    from impasto.backend.engine.speedups import cached_signature

    one, two = attention_processor.AttnProcessor2_0(), attention_processor.AttnProcessor2_0()
    assert attention_processor.inspect.signature is cached_signature
    assert cached_signature(one.__call__) == inspect.signature(one.__call__)
    assert cached_signature(one.__call__) is cached_signature(two.__call__)      # computed once per class
    assert "self" not in cached_signature(one.__call__).parameters               # a bound method's signature
    assert cached_signature(len) == inspect.signature(len)                       # not a method: not cached
    assert attention_processor.inspect.isclass(int)                              # the rest is the real module
