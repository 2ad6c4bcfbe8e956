"""The few-step distillation script's mechanics on the tiny model: it trains, resumes exactly, refuses a
mismatched resume, and writes an LCM-LoRA that imports as a concept and paints at the LCM preset."""
from __future__ import annotations

import pytest


def _args(model, tmp_path, steps, **extra):
    from impasto.backend.starter.distill_fewstep import parse_args

    argv = ["--model", str(model), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
            "--steps", str(steps), "--batch", "4", "--eval", "0", "--threads", "1", "--checkpoint-every", "2",
            "--log-every", "2", "--domain", "shapes"]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return parse_args(argv)


def test_distillation_resumes_bit_exactly_and_exports_an_lcm_lora(tiny_model, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from impasto.backend.concepts import lora_io
    from impasto.backend.engine import fewstep
    from impasto.backend.starter.distill_fewstep import OUT_NAME, train

    straight = tmp_path / "straight"
    card = train(_args(tiny_model, straight, 6))
    assert card["steps_done"] == 6
    # the card says what the daemon will pick for the file by its name (fewstep_presets.json)
    assert card["recommended"] == {"sampler": "lcm_quadratic", "steps": 4, "cfg_scale": 1.0}
    split = tmp_path / "split"
    assert train(_args(tiny_model, split, 4))["steps_done"] == 4
    again = train(_args(tiny_model, split, 6))            # the same command, more steps: resumes at 4
    assert again["steps_done"] == 6
    a, b = load_file(str(straight / "out" / OUT_NAME)), load_file(str(split / "out" / OUT_NAME))
    assert a.keys() == b.keys() and len(a) > 20
    assert all((a[k] == b[k]).all() for k in a), "4 + 2 steps must equal 6 steps"
    assert any(bool(a[k].abs().sum() > 0) for k in a if "lora_B" in k)   # B started at zero: it learned
    with pytest.raises(SystemExit):
        train(_args(tiny_model, split, 8, rank=8))        # another rank in the same work folder: refused
    # the file imports as a concept and is recognised as the starter's LCM-LoRA by its name
    tensors, hints = lora_io.read_lora_file(straight / "out" / OUT_NAME)
    assert hints["layout"] == "diffusers" and hints["base_arch"] == "sd15" and not hints["text_encoder"]
    preset = fewstep.for_lora([OUT_NAME.rsplit(".", 1)[0]] + hints["titles"])
    assert preset["preset"] == "starter LCM-LoRA"
    assert {k: preset[k] for k in ("sampler", "steps", "cfg_scale")} == card["recommended"]
    assert set(tensors) == set(a)
    # and it paints: a job with it at the LCM preset through the engine
    from impasto.backend.concepts.library import ConceptLibrary, new_meta
    from impasto.backend.engine import Engine
    from impasto.protocol.messages import Generate

    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    ConceptLibrary().save("tiny-lcm", tensors, new_meta(source="imported", rank=hints["rank"],
                                                         base_arch="sd15"))
    engine = Engine(tiny_model.parent)
    res = engine.run(Generate(job="d", prompt="a red circle", model="tiny", sampler="lcm", steps=4, cfg_scale=1.0,
                              width=32, height=32, seed=1, concepts=[("tiny-lcm", 1.0)]))
    plain = engine.run(Generate(job="e", prompt="a red circle", model="tiny", sampler="lcm", steps=4, cfg_scale=1.0,
                                width=32, height=32, seed=1))
    assert res.steps_run == 4 and res.images[0].data != plain.images[0].data


def test_eval_only_judges_the_scenes_domain_strictly_against_a_same_run_baseline(tiny_model, tmp_path):
    """``--eval-only`` reloads the exported LoRA and judges it on the scenes starter's held-out prompts: every run
    on the same prompts and seeds, pooled rates the prompt-weighted mean of the kinds, ratios over the baseline of
    the same run, and the judge is scenes_eval's (a judge that always says yes would put 'all' at 100 %)."""
    import json

    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E
    from impasto.backend.starter.distill_fewstep import CARD_NAME, main, train

    train(_args(tiny_model, tmp_path, 2))
    main(["--model", str(tiny_model), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "unused"),
          "--eval-only", "--domain", "scenes", "--eval", "2", "--eval-kinds", "one,plain", "--threads", "1"])
    card = json.loads((tmp_path / "out" / CARD_NAME).read_text())
    assert card["steps_done"] == 2 and not (tmp_path / "unused").exists()     # eval only: no training state
    ev = card["evaluation"]
    assert ev["kinds"] == ["one", "plain"] and ev["prompts_per_kind"] == 2
    assert ev["examples"]["plain"] == SC.caption(E.prompt_scenes("plain", 2, ev["seed"])[0])
    runs = ev["runs"]
    assert set(runs) == {"base_ddim_20_cfg5", "base_ddim_20_cfg3", "base_ddim_4_cfg5", "base_lcm_4_cfg1",
                         "lcm_lora_1_cfg1", "lcm_lora_2_cfg1", "lcm_lora_4_cfg1", "lcm_lora_2_quadratic",
                         "lcm_lora_4_quadratic"}
    assert runs["lcm_lora_4_quadratic"]["sampler"] == "lcm_quadratic"
    assert runs["base_ddim_20_cfg3"]["cfg"] == 3.0 and runs["base_ddim_20_cfg3"]["steps"] == 20
    base = runs["base_ddim_20_cfg5"]
    for run in runs.values():
        for attr, rate in run["pooled"].items():
            assert rate == pytest.approx(sum(run["kinds"][k][attr] for k in ev["kinds"]) / 2, abs=1e-4)
        want = None if not base["pooled"]["all"] else round(run["pooled"]["all"] / base["pooled"]["all"], 3)
        assert run["ratio_all"] == want
    assert ev["target"]["ratio_all"] == runs["lcm_lora_4_quadratic"]["ratio_all"]   # the preset's sampler
    # a random tiny model paints no held-out scene right: the strict judge says so
    assert all(run["pooled"]["all"] == 0.0 for run in runs.values())


def test_eval_only_on_the_shapes_domain_runs_every_sampler_through_the_engines_table(tiny_model, tmp_path):
    """The old shapes starter's judgement still runs: the LoRA and the base at LCM, the baseline at 20 DDIM
    steps, each with the scheduler an artist's job would get (``samplers.make_scheduler``)."""
    import json

    from impasto.backend.starter.distill_fewstep import CARD_NAME, main, train

    train(_args(tiny_model, tmp_path, 2))
    main(["--model", str(tiny_model), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "unused"),
          "--eval-only", "--domain", "shapes", "--eval", "2", "--threads", "1"])
    ev = json.loads((tmp_path / "out" / CARD_NAME).read_text())["evaluation"]
    runs = {k: v for k, v in ev.items() if isinstance(v, dict) and "all" in v}
    assert set(runs) == {"base_ddim_20_cfg5", "base_ddim_4_cfg5", "base_lcm_4_cfg1", "base_lcm_2_cfg1",
                         "lcm_lora_1_cfg1", "lcm_lora_2_cfg1", "lcm_lora_4_cfg1"}
    assert all(set(r) == {"shape", "fg", "bg", "all", "seconds_per_image"} for r in runs.values())
    assert ev["time_ratio_lcm4_over_base20"] == pytest.approx(
        runs["lcm_lora_4_cfg1"]["seconds_per_image"] / runs["base_ddim_20_cfg5"]["seconds_per_image"], abs=2e-3)


def test_the_text_cache_keeps_a_whole_batch_when_it_fills_up():
    """A full cache starts over with the whole batch encoded: clearing it after the lookup once lost the
    batch's already-cached captions (a KeyError ~800 steps into a real run)."""
    import torch

    from impasto.backend.starter.distill_fewstep import TextCache

    class Tok:
        model_max_length = 3

        def __call__(self, texts, **_):
            return type("T", (), {"input_ids": torch.tensor([[len(t), 0, 0] for t in texts])})()

    class Enc:
        def __init__(self):
            self.calls = 0

        def __call__(self, ids):
            self.calls += 1
            return (ids.float().unsqueeze(-1).expand(-1, -1, 2),)

    pipe = type("P", (), {"tokenizer": Tok(), "text_encoder": Enc()})()
    cache = TextCache(pipe, limit=3)
    assert cache(["a", "bb"]).shape == (2, 3, 2)
    out = cache(["a", "ccc", "dddd"])          # "a" cached, two new: 4 > 3, the cache starts over
    assert out[:, 0, 0].tolist() == [1.0, 3.0, 4.0]
    assert set(cache.cache) == {"a", "ccc", "dddd"}
    assert cache(["ccc"])[0, 0, 0] == 3.0 and pipe.text_encoder.calls == 2


def test_the_exported_lora_names_its_base_by_the_models_own_name(tiny_model, tmp_path):
    """Distilled from a copy in a scratch folder, the LoRA still names its base as the engine knows it (the
    model's impasto.json name), with the copy's weights' fingerprint."""
    import json
    import shutil

    from safetensors import safe_open

    from impasto.backend.engine.models import ModelEntry
    from impasto.backend.engine.pipelines import model_fingerprint
    from impasto.backend.starter.distill_fewstep import OUT_NAME, train

    copy = tmp_path / "scratch-copy"
    shutil.copytree(tiny_model, copy)
    (copy / "impasto.json").write_text(json.dumps({"name": "tiny"}))
    train(_args(copy, tmp_path / "run", 1))
    with safe_open(str(tmp_path / "run" / "out" / OUT_NAME), "pt") as f:
        meta = f.metadata()
    assert meta["impasto_base_model"] == "tiny"
    assert meta["impasto_base_fingerprint"] == model_fingerprint(
        ModelEntry(name="tiny", path=str(tiny_model), format="diffusers", arch="sd15"))


def test_init_starts_from_a_lora_file_and_is_part_of_the_runs_settings(tiny_model, tmp_path):
    """``--init FILE`` (distilling on from a finished LoRA, e.g. at another guidance range) starts from the file's
    weights - a run of no steps writes them back unchanged - and a resume with another start is refused."""
    from safetensors.torch import load_file

    from impasto.backend.starter.distill_fewstep import OUT_NAME, train

    first = tmp_path / "first"
    train(_args(tiny_model, first, 3))
    start = first / "out" / OUT_NAME
    same = tmp_path / "same"
    card = train(_args(tiny_model, same, 0, init=start))
    assert card["settings"]["init"] == str(start)
    a, b = load_file(str(start)), load_file(str(same / "out" / OUT_NAME))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    on = tmp_path / "on"
    train(_args(tiny_model, on, 2, init=start, w_min=2, w_max=4))
    fresh = tmp_path / "fresh"
    train(_args(tiny_model, fresh, 2, w_min=2, w_max=4))
    c, d = load_file(str(on / "out" / OUT_NAME)), load_file(str(fresh / "out" / OUT_NAME))
    assert any(not (c[k] == d[k]).all() for k in c), "a warm start must not paint like a fresh LoRA"
    assert any(not (c[k] == a[k]).all() for k in c), "two more steps from the file moved it"
    with pytest.raises(SystemExit):
        train(_args(tiny_model, on, 4, w_min=2, w_max=4))     # the same work folder without the start: refused
