"""The daemon's low-latency path for live painting: the ``live`` flag, cached prompt embeddings,
a resident model, newest-wins between one client's live jobs.
"""
from __future__ import annotations

import json

import pytest

from impasto.protocol import codec
from impasto.protocol.messages import ErrorCode, Generate, Image, ProtocolError, validate_job


def _picture(w: int = 32, h: int = 32, shade: int = 0) -> Image:
    data = bytearray()
    for y in range(h):
        for x in range(w):
            data += bytes(((x * 8 + shade) % 256, (y * 8) % 256, (shade * 3) % 256, 255))
    return Image(w, h, bytes(data), "rgba8")


def live_job(job: str = "l1", shade: int = 0, **kw) -> Generate:
    fields = dict(job=job, prompt="a red circle", model="tiny", seed=11, steps=4, sampler="euler", cfg_scale=7.0,
                  init_image=_picture(shade=shade), strength=0.5, priority="front", live=True)
    fields.update(kw)
    return Generate(**fields)


# --------------------------------------------------------------------------- the wire field


@pytest.mark.parametrize("value", ["yes", 1, 0, None, [True], {"a": 1}])
def test_live_must_be_a_real_boolean_on_the_wire(value):
    frames = codec.encode(live_job())
    header = json.loads(frames[0])
    header["live"] = value
    frames[0] = json.dumps(header).encode()
    with pytest.raises(ProtocolError) as err:
        codec.decode(frames)
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "live"


def test_live_jobs_repaint_one_picture():
    validate_job(live_job())
    with pytest.raises(ProtocolError) as err:
        validate_job(Generate(job="t", prompt="x", live=True))          # nothing to repaint
    assert err.value.field == "live" and "init_image" in err.value.message
    with pytest.raises(ProtocolError) as err:
        validate_job(live_job(batch_size=2))
    assert err.value.field == "live"
    back = codec.decode(codec.encode(live_job()))
    assert back.live is True and back.init_image.data == live_job().init_image.data


# --------------------------------------------------------------------------- the engine


def test_live_jobs_reuse_the_prompt_embeddings_and_paint_the_same_bits(engine):
    first = engine.run(live_job("e1"))
    assert first.info["prompt_cache"] == "miss"
    loads = first.info["model_loads"]
    second = engine.run(live_job("e2"))
    assert second.info["prompt_cache"] == "hit"
    plain = engine.run(live_job("e3", live=False))
    assert "prompt_cache" not in plain.info
    # the cached embeddings are what the pipeline computes from the strings: bit-identical pictures
    assert second.images[0].data == plain.images[0].data == first.images[0].data
    # a changed stroke (new pixels) with the same prompt still hits; a new prompt misses, then hits
    moved = engine.run(live_job("e4", shade=40))
    assert moved.info["prompt_cache"] == "hit" and moved.images[0].data != first.images[0].data
    other = engine.run(live_job("e5", prompt="a blue square"))
    assert other.info["prompt_cache"] == "miss"
    assert engine.run(live_job("e6", prompt="a blue square")).info["prompt_cache"] == "hit"
    # CFG off (few-step models) is another key: no negative embedding is encoded
    low = engine.run(live_job("e7", cfg_scale=1.0))
    assert low.info["prompt_cache"] == "miss"
    assert low.images[0].data == engine.run(live_job("e8", cfg_scale=1.0, live=False)).images[0].data
    # weighted prompts go through the same cache
    w1 = engine.run(live_job("e9", prompt="a (red:1.4) circle"))
    w2 = engine.run(live_job("e10", prompt="a (red:1.4) circle"))
    assert (w1.info["prompt_cache"], w2.info["prompt_cache"]) == ("miss", "hit")
    assert w1.images[0].data == w2.images[0].data == engine.run(
        live_job("e11", prompt="a (red:1.4) circle", live=False)).images[0].data
    # the model stayed resident through all of it
    assert engine.run(live_job("e12")).info["model_loads"] == loads


def test_live_edit_inside_a_selection_uses_the_cache_and_keeps_to_the_region(engine):
    mask = bytearray(32 * 32)
    for y in range(8, 16):
        for x in range(8, 16):
            mask[y * 32 + x] = 255
    req = live_job("m1", mask=Image(32, 32, bytes(mask), "gray8"), mask_blur=0, padding=4)
    a = engine.run(req)
    b = engine.run(live_job("m2", mask=Image(32, 32, bytes(mask), "gray8"), mask_blur=0, padding=4))
    assert b.info["prompt_cache"] == "hit" and a.images[0].data == b.images[0].data
    (patch,) = b.patches
    assert patch.x <= 8 and patch.y <= 8 and patch.x + patch.image.width >= 16
    assert patch.image.width * patch.image.height < 32 * 32          # only the region comes back


# --------------------------------------------------------------------------- newest wins in the daemon


def test_a_new_live_job_supersedes_the_clients_older_live_jobs(client):
    """Five live jobs sent back to back (strokes faster than jobs): the stale ones end cancelled,
    the newest paints; a normal job queued between them is untouched; nothing piles up."""
    normal = client.submit(live_job("", live=False, steps=2))
    jobs = [client.submit(live_job("", shade=i * 10)) for i in range(5)]
    last = jobs[-1].wait(timeout=120)
    assert last.steps_run > 0
    outcomes = []
    for j in jobs[:-1]:
        j._done.wait(60)
        outcomes.append(type(j.outcome).__name__)
    assert set(outcomes) <= {"Cancelled", "Result"}
    assert outcomes.count("Cancelled") >= 3, outcomes   # at most the one already running may finish
    assert normal.wait(timeout=120).steps_run > 0
    assert client.status().jobs == []


def test_live_jobs_of_another_client_are_not_touched(daemon):
    from impasto.protocol import Client

    with Client(daemon.endpoint) as a, Client(daemon.endpoint) as b:
        ja = a.submit(live_job("", steps=8))
        jb = b.submit(live_job("", shade=30))
        assert ja.wait(timeout=120).steps_run > 0 and jb.wait(timeout=120).steps_run > 0


def test_sdxl_live_jobs_cache_both_encoders_and_paint_the_same_bits(tmp_path):
    from impasto.backend.engine import Engine
    from impasto.backend.tooling.tiny_model import build_tiny_sdxl

    build_tiny_sdxl(tmp_path / "xl")
    xl = Engine(tmp_path)
    for cfg, negative in ((7.0, ""), (7.0, "blue"), (1.0, "")):
        kw = dict(model="xl", cfg_scale=cfg, negative_prompt=negative)
        a, b = xl.run(live_job("x1", **kw)), xl.run(live_job("x2", **kw))
        assert (a.info["prompt_cache"], b.info["prompt_cache"]) == ("miss", "hit")
        assert a.images[0].data == b.images[0].data == xl.run(live_job("x3", live=False, **kw)).images[0].data


def test_the_cache_key_follows_the_active_concepts(engine, tiny_model, tmp_path, monkeypatch):
    """A concept can change the text encoder (a text-encoder LoRA, a trigger embedding): embeddings cached
    with one set of concepts are never reused for another."""
    from impasto.backend.concepts.library import ConceptLibrary, new_meta
    from impasto.backend.tooling.tiny_lora import write_lcm_lora
    from impasto.backend.concepts import lora_io

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    path = write_lcm_lora(tiny_model, tmp_path / "l.safetensors")
    tensors, hints = lora_io.read_lora_file(path)
    ConceptLibrary().save("cache-key", tensors, new_meta(source="imported", rank=hints["rank"], base_arch="sd15"))
    plain = engine.run(live_job("k1", prompt="a green star"))
    assert plain.info["prompt_cache"] == "miss"
    on = engine.run(live_job("k2", prompt="a green star", concepts=[("cache-key", 1.0)]))
    assert on.info["prompt_cache"] == "miss"                    # another adapter set: another key
    assert engine.run(live_job("k3", prompt="a green star", concepts=[("cache-key", 1.0)])).info["prompt_cache"] == "hit"
    half = engine.run(live_job("k4", prompt="a green star", concepts=[("cache-key", 0.5)]))
    assert half.info["prompt_cache"] == "miss"                  # another weight: another key
    back = engine.run(live_job("k5", prompt="a green star"))
    assert back.info["prompt_cache"] == "hit" and back.images[0].data == plain.images[0].data
