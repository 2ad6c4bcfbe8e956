"""The fast autoencoder for live jobs: the model's trained preview decoder (or TAESD) instead of the VAE."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impasto.backend.engine import Engine, JobHooks  # noqa: E402
from impasto.backend.engine.images import to_wire  # noqa: E402
from impasto.protocol import codec  # noqa: E402
from impasto.protocol.messages import ErrorCode, Generate, ProtocolError, validate_job  # noqa: E402

PROMPT = "a big red circle at the top on a blue background"


def _canvas(side: int = 128, seed: int = 3):
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (side, side), (30, 60, 200, 255))
    ImageDraw.Draw(img).ellipse((side // 4, side // 8, 3 * side // 4, side // 2), fill=(220, 30, 30, 255))
    return to_wire(img)


def _pixels(out) -> np.ndarray:
    img = out.images[0]
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4)[..., :3].astype(np.float32)


@pytest.fixture(scope="module")
def starter_engine():
    torch.set_num_threads(1)
    return Engine(models_dir=Path(tempfile.mkdtemp()))   # an empty models folder: the shipped starter


def _job(job: str, **kw) -> Generate:
    fields = dict(job=job, model="starter", prompt=PROMPT, init_image=_canvas(), strength=0.5, steps=4,
                  sampler="lcm", cfg_scale=1.0, seed=5, live=True)
    fields.update(kw)
    return Generate(**fields)


@pytest.mark.parametrize("value", ["yes", 1, 0, [True], {"a": 1}])
def test_fast_vae_is_true_false_or_unset_on_the_wire(value):
    frames = codec.encode(_job("w"))
    header = json.loads(frames[0])
    header["fast_vae"] = value
    frames[0] = json.dumps(header).encode()
    with pytest.raises(ProtocolError) as err:
        codec.decode(frames)
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "fast_vae"
    for ok in (None, True, False):
        back = codec.decode(codec.encode(_job("w", fast_vae=ok)))
        assert back.fast_vae is ok
        validate_job(back)


def test_live_jobs_on_the_starter_encode_fast_and_decode_with_its_vae(starter_engine):
    """The starter's preview decoder rounds corners (impasto.json preview_decoder.for_pictures is false):
    a live job's final picture is the VAE's decode of latents its fast encoder made."""
    fast = starter_engine.run(_job("f1"), JobHooks())
    full = starter_engine.run(_job("f2", fast_vae=False), JobHooks())
    assert fast.info["vae"].startswith("fast: the model's trained fast encoder; decoded by the VAE")
    assert "vae" not in full.info
    a, b = _pixels(fast), _pixels(full)
    assert a.shape == b.shape == (128, 128, 3)
    err = float(np.abs(a - b).mean())
    assert 0.0 < err < 6.0, err                  # another encoder, the same VAE decode: close, not the same bits
    plain = starter_engine.run(_job("f3", live=False), JobHooks())
    assert plain.images[0].data == full.images[0].data and "vae" not in plain.info
    asked = starter_engine.run(_job("f4", live=False, fast_vae=True), JobHooks())
    assert asked.images[0].data == fast.images[0].data


@pytest.fixture(scope="module")
def decoder_for_pictures(tmp_path_factory):
    """The starter as a folder whose impasto.json lets its trained decoder paint final pictures."""
    import shutil

    from impasto.backend.engine.models import starter_dir

    root = tmp_path_factory.mktemp("for_pictures")
    folder = root / "starter-copy"
    shutil.copytree(starter_dir(), folder)
    cfg = json.loads((folder / "impasto.json").read_text())
    cfg["preview_decoder"]["for_pictures"] = True
    (folder / "impasto.json").write_text(json.dumps(cfg))
    torch.set_num_threads(1)
    return Engine(models_dir=root)


def test_a_decoder_checked_for_pictures_decodes_live_jobs_within_a_few_levels(decoder_for_pictures):
    eng = decoder_for_pictures
    fast = eng.run(_job("p1", model="starter-copy"), JobHooks())
    full = eng.run(_job("p2", model="starter-copy", fast_vae=False), JobHooks())
    assert fast.info["vae"].startswith("fast: the model's trained preview decoder and fast encoder")
    err = float(np.abs(_pixels(fast) - _pixels(full)).mean())
    assert 0.0 < err < 6.0, err


def test_a_live_edit_inside_a_selection_decodes_fast_and_keeps_the_outside(starter_engine):
    from impasto.backend.engine.images import mask_to_wire
    from PIL import Image

    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (40, 40, 88, 88))
    out = starter_engine.run(_job("e1", mask=mask_to_wire(mask), mask_blur=0, padding=8), JobHooks())
    assert out.info["vae"].startswith("fast:")
    (patch,) = out.patches
    assert patch.image.width < 128                       # only the region was diffused and sent back


def test_a_model_without_a_fast_decoder_decodes_with_its_vae_and_says_so_when_asked(tmp_path, monkeypatch):
    from impasto.backend.tiny_model import build_tiny_model

    monkeypatch.setenv("IMPASTO_BF16_DECODE", "off")   # the float32 VAE, as for any job (bfloat16: below)
    torch.set_num_threads(1)
    build_tiny_model(tmp_path / "tiny")
    eng = Engine(tmp_path)
    assert eng.model("tiny").previewer.kind == "linear"
    base = dict(model="tiny", prompt="a red circle", init_image=_canvas(32), strength=0.5, steps=2, sampler="euler",
                cfg_scale=5.0, seed=2)
    quiet = JobHooks()
    live = eng.run(Generate(job="t1", live=True, **base), quiet)
    assert "vae" not in live.info and not quiet.warnings        # live by default: nothing to say, the VAE decodes
    hooks = JobHooks()
    asked = eng.run(Generate(job="t2", fast_vae=True, **base), hooks)
    assert "vae" not in asked.info
    assert len([w for w in hooks.warnings if "no fast decoder" in w]) == 1
    assert asked.images[0].data == live.images[0].data == eng.run(Generate(job="t3", **base), JobHooks()).images[0].data


def test_taesd_encodes_and_decodes_a_fast_job(tmp_path):
    from impasto.backend.tiny_model import build_tiny_model
    from diffusers import AutoencoderTiny

    torch.set_num_threads(1)
    build_tiny_model(tmp_path / "tiny")
    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(
        str(tmp_path / "taesd"))
    eng = Engine(tmp_path)
    loaded = eng.model("tiny")
    assert loaded.previewer.kind == "taesd"
    calls = []
    module = loaded.previewer.module
    enc, dec = module.encode, module.decode
    module.encode = lambda *a, **k: calls.append("encode") or enc(*a, **k)
    module.decode = lambda *a, **k: calls.append("decode") or dec(*a, **k)
    base = dict(model="tiny", prompt="a red circle", init_image=_canvas(32), strength=0.5, steps=2, sampler="euler",
                cfg_scale=5.0, seed=2)
    out = eng.run(Generate(job="t1", live=True, **base), JobHooks())
    assert out.info["vae"] == "fast: TAESD" and calls == ["encode", "decode"]
    calls.clear()
    full = eng.run(Generate(job="t2", **base), JobHooks())
    assert calls == [] and full.images[0].data != out.images[0].data


# --------------------------------------------------------------------------- the starter's trained fast encoder


def test_the_starter_ships_a_fast_encoder_trained_on_its_own_vae(starter_engine):
    from impasto.backend.engine.models import starter_dir
    from impasto.backend.tooling import train_preview as tp

    spec = json.loads((starter_dir() / "impasto.json").read_text())["fast_encoder"]
    assert (starter_dir() / spec["file"]).is_file()
    assert spec["vae_sha256"] == tp.vae_fingerprint(starter_dir())     # trained on the VAE it ships with
    assert starter_engine.model("starter").fast_encoder is not None
    out = starter_engine.run(_job("s1"), JobHooks())
    assert out.info["vae"].startswith("fast: the model's trained fast encoder")


def test_the_fast_encoders_latents_round_trip_close_to_the_vaes_on_held_out_stroked_scenes():
    from impasto.backend.engine.models import starter_dir
    from impasto.backend.engine.preview_net import load_encoder
    from impasto.backend.tooling import train_fast_encoder as tf
    from impasto.backend.tooling import train_preview as tp

    torch.set_num_threads(1)
    vae = tp.load_vae(starter_dir())
    spec = json.loads((starter_dir() / "impasto.json").read_text())["fast_encoder"]
    check = tf.held_out_check(load_encoder(starter_dir() / spec["file"]), vae, starter_dir(), count=16)
    # its round trip (fast encode, VAE decode) within a few levels of the VAE's own, on scenes and strokes
    # it never saw; the VAE's own round trip is the floor
    assert check["round_trip_vs_vae_levels"] < 3.0, check
    assert check["fast_round_trip_vs_picture_levels"] < check["vae_round_trip_vs_picture_levels"] + 2.0, check


def test_train_fast_encoder_writes_a_loadable_encoder_and_names_it_in_impasto_json(tmp_path):
    import shutil

    from impasto.backend.engine.fast_vae import FAST_ENCODER_FILE, load_encoder
    from impasto.backend.engine.models import starter_dir
    from impasto.backend.engine.pipelines import model_fingerprint
    from impasto.backend.engine.models import ModelEntry
    from impasto.backend.tooling import train_fast_encoder as tf

    torch.set_num_threads(1)
    folder = tmp_path / "starter"
    shutil.copytree(starter_dir(), folder, ignore=shutil.ignore_patterns(FAST_ENCODER_FILE))
    cfg = json.loads((folder / "impasto.json").read_text())
    cfg.pop("fast_encoder", None)
    (folder / "impasto.json").write_text(json.dumps(cfg))
    assert load_encoder(folder, 4, torch.device("cpu")) is None
    losses = []
    model, info = tf.train(folder, minutes=2, pool=48, max_steps=40, batch=8, lr=2e-3, crop=64,
                           log=losses.append)
    assert info["steps"] == 40 and info["held_out"]["pictures"] == 64
    entry = ModelEntry(name="s", path=str(folder), format="diffusers", arch="sd15")
    before = model_fingerprint(entry)
    path = tf.install(model, info, folder)
    assert path.name == FAST_ENCODER_FILE and json.loads((folder / "impasto.json").read_text())["fast_encoder"][
        "file"] == FAST_ENCODER_FILE
    assert model_fingerprint(entry) == before            # concepts of the model are not orphaned
    enc = load_encoder(folder, 4, torch.device("cpu"))
    assert enc(torch.zeros(1, 3, 128, 128)).shape == (1, 4, 16, 16)
    assert load_encoder(folder, 8, torch.device("cpu")) is None          # another latent width: ignored
    (folder / FAST_ENCODER_FILE).write_bytes(b"not a safetensors file")
    assert load_encoder(folder, 4, torch.device("cpu")) is None          # broken: the VAE encodes, nothing fails


# ---------------------------------------------------------------- the VAE in bfloat16 for fast jobs (vae_bf16.py)

def _tiny_engine(tmp_path):
    from impasto.backend.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    build_tiny_model(tmp_path / "tiny")
    return Engine(tmp_path)


def test_a_fast_job_decoded_in_bfloat16_stays_near_float32_and_other_jobs_are_untouched(tmp_path, monkeypatch):
    from impasto.backend.engine import vae_bf16

    eng = _tiny_engine(tmp_path)
    base = dict(model="tiny", prompt="a red circle", init_image=_canvas(64), strength=0.6, steps=3, sampler="euler",
                cfg_scale=5.0, seed=2)
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "off")
    fp32 = eng.run(Generate(job="a", live=True, **base), JobHooks())
    plain_before = eng.run(Generate(job="b", **base), JobHooks())
    assert "vae" not in fp32.info
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "on")
    bf16 = eng.run(Generate(job="c", live=True, **base), JobHooks())
    assert "bfloat16" in bf16.info["vae"]
    decided = vae_bf16.decision(eng.model("tiny"))
    assert decided.use and decided.levels <= vae_bf16.MAX_LEVELS
    diff = np.abs(_pixels(bf16) - _pixels(fp32))
    assert 0 < diff.mean() <= 2.0 and diff.max() <= 24        # another precision, the same picture
    plain_after = eng.run(Generate(job="d", **base), JobHooks())
    assert plain_after.images[0].data == plain_before.images[0].data   # only fast jobs change precision


def test_bfloat16_is_kept_only_when_measured_faster_and_as_good(tmp_path, monkeypatch):
    from impasto.backend.engine import vae_bf16

    eng = _tiny_engine(tmp_path)
    loaded = eng.model("tiny")
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "auto")
    got = vae_bf16.for_model(loaded)
    d = vae_bf16.decision(loaded)
    assert d.fp32_ms > 0 and d.bf16_ms > 0 and d.levels <= vae_bf16.MAX_LEVELS
    assert (got is not None) == d.use == (d.bf16_ms <= (1 - vae_bf16.MIN_GAIN) * d.fp32_ms)
    assert vae_bf16.for_model(loaded) is got                           # decided once per loaded model
    monkeypatch.setattr(vae_bf16, "MAX_LEVELS", -1.0)                  # a picture too far from float32's
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "on")
    assert vae_bf16.for_model(loaded) is None
    assert not vae_bf16.decision(loaded).use and "levels from float32" in vae_bf16.decision(loaded).why
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "off")
    assert vae_bf16.for_model(loaded) is None


def test_the_starters_live_picture_in_bfloat16_is_within_a_level_of_float32(starter_engine, monkeypatch):
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "off")
    fp32 = starter_engine.run(_job("s1", live=True), JobHooks())
    monkeypatch.setenv("IMPASTO_BF16_DECODE", "on")
    bf16 = starter_engine.run(_job("s2", live=True), JobHooks())
    assert "bfloat16" in bf16.info["vae"] and "fast encoder" in bf16.info["vae"]
    assert np.abs(_pixels(bf16) - _pixels(fp32)).mean() <= 1.0


def test_small_latents_decode_through_a_recording_of_the_bfloat16_decoder(tmp_path, monkeypatch):
    """Traced where overhead is the cost (small latents), the same pixels as the module; big ones and the off
    setting stay eager; a failed recording decodes eagerly."""
    from impasto.backend.engine import vae_bf16

    vae = _tiny_engine(tmp_path).model("tiny").base.vae
    monkeypatch.delenv("IMPASTO_LIVE_COMPILE", raising=False)
    dec = vae_bf16.Bf16Decoder(vae)
    small = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = dec.decode(small)
    key = (1, 4, 16, 16)
    assert dec.traced[key] is not None and isinstance(dec.traced[key], torch.jit.ScriptModule)
    with torch.inference_mode():
        want = dec.module(small.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()
    assert out.dtype == torch.float32 and torch.equal(out, want)
    big = torch.randn(1, 4, 40, 40)
    assert dec.decode(big).shape[-1] == 40 * 8 and dec.traced[(1, 4, 40, 40)] is None
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "0")
    off = vae_bf16.Bf16Decoder(vae)
    off.decode(small)
    assert off.traced[key] is None

    def no_torchscript(*a, **k):
        raise RuntimeError("TorchScript is gone")

    monkeypatch.delenv("IMPASTO_LIVE_COMPILE")
    monkeypatch.setattr(torch.jit, "trace", no_torchscript)
    failed = vae_bf16.Bf16Decoder(vae)
    assert torch.equal(failed.decode(small), want) and failed.traced[key] is None
