"""The live UNet (``IMPASTO_LIVE_COMPILE``): traced (default) or compiled in the background, same pictures.

Tracing is the real TorchScript path.  For ``compile``, dynamo's ``eager`` backend stands in
for inductor here (the same tracing, guards and recompile stance, no C++ compiler and
seconds instead of a minute); bench/live_latency.py measures inductor on the starter.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impasto.backend.engine import Engine, JobHooks, live_unet  # noqa: E402
from impasto.backend.engine.images import to_wire  # noqa: E402
from impasto.protocol.messages import Generate  # noqa: E402


def _canvas(side):
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (side, side), (30, 60, 200, 255))
    ImageDraw.Draw(img).ellipse((side // 4, side // 8, 3 * side // 4, side // 2), fill=(220, 30, 30, 255))
    return to_wire(img)


def _pixels(res) -> np.ndarray:
    img = res.images[0]
    return np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 4).astype(np.float32)


@pytest.fixture()
def compiled_engine(tmp_path, monkeypatch):
    from impasto.backend.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "1")
    monkeypatch.setenv("IMPASTO_COMPILE_BACKEND", "eager")
    build_tiny_model(tmp_path / "tiny")
    return Engine(tmp_path)


def _live(side=64, **kw):
    fields = dict(job="l", model="tiny", prompt="a red circle", init_image=_canvas(side), strength=0.6, steps=3,
                  sampler="euler", cfg_scale=5.0, seed=4, live=True)
    fields.update(kw)
    return Generate(**fields)


def test_live_jobs_run_eagerly_while_compiling_then_compiled_with_the_same_picture(compiled_engine, monkeypatch):
    eng = compiled_engine
    first = eng.run(_live(), JobHooks())
    # the stroke did not wait for the compiler (a fast compile may already serve its last calls)
    assert first.info["live_unet"] == "compiling" or first.info["live_unet"].startswith("compiled for ")
    lu = eng.model("tiny")._live_unet
    lu.thread.join(timeout=300)
    assert lu.state == "ready" and lu.compile_seconds > 0
    fast = eng.run(_live(), JobHooks())
    assert fast.info["live_unet"] == "compiled"
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "0")
    eager = eng.run(_live(), JobHooks())
    assert "live_unet" not in eager.info
    assert np.abs(_pixels(fast) - _pixels(eager)).max() <= 1.0      # the same network, another runner
    assert np.abs(_pixels(first) - _pixels(eager)).max() <= 1.0     # eager, or compiled for its last calls
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "1")
    other = eng.run(_live(side=96), JobHooks())                     # other shapes: never a recompile in a stroke
    assert other.info["live_unet"].startswith("eager: compiled for other shapes")
    normal = eng.run(_live(live=False), JobHooks())                 # not a live job: never the compiled copy
    assert "live_unet" not in normal.info


def test_the_setting_and_a_failed_compile_leaves_live_jobs_eager(compiled_engine, monkeypatch):
    eng = compiled_engine
    monkeypatch.delenv("IMPASTO_LIVE_COMPILE")
    assert live_unet.mode() == "trace"
    for off in ("0", "off", "eager"):
        monkeypatch.setenv("IMPASTO_LIVE_COMPILE", off)
        assert live_unet.mode() is None
        assert "live_unet" not in eng.run(_live(), JobHooks()).info
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "1")
    monkeypatch.setenv("IMPASTO_COMPILE_BACKEND", "no-such-backend")
    first = eng.run(_live(), JobHooks())
    lu = eng.model("tiny")._live_unet
    lu.thread.join(timeout=300)
    assert lu.state == "failed" and "compiling failed" in lu.why
    again = eng.run(_live(), JobHooks())
    assert again.info["live_unet"].startswith("eager: compiling failed")
    assert np.array_equal(_pixels(first), _pixels(again))


def test_a_unet_too_big_for_a_copy_is_never_compiled(compiled_engine, monkeypatch):
    monkeypatch.setattr(live_unet, "MAX_PARAMS", 10)
    res = compiled_engine.run(_live(), JobHooks())
    assert "parameters: no compiled copy kept" in res.info["live_unet"]


# ---------------------------------------------------------------------------- traced (the default)


@pytest.fixture()
def traced_engine(tmp_path, monkeypatch):
    from impasto.backend.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    monkeypatch.delenv("IMPASTO_LIVE_COMPILE", raising=False)
    build_tiny_model(tmp_path / "tiny")
    return Engine(tmp_path)


def test_live_jobs_are_traced_by_default_with_the_same_picture(traced_engine, monkeypatch):
    eng = traced_engine
    first = eng.run(_live(), JobHooks())
    assert first.info["live_unet"] == "tracing" or first.info["live_unet"].startswith("traced for ")
    lu = eng.model("tiny")._live_unet
    assert lu.how == "trace"
    lu.thread.join(timeout=120)
    assert lu.state == "ready", lu.why
    fast = eng.run(_live(), JobHooks())
    assert fast.info["live_unet"] == "traced"
    monkeypatch.setenv("IMPASTO_LIVE_COMPILE", "off")
    eager = eng.run(_live(), JobHooks())
    assert "live_unet" not in eager.info
    assert np.abs(_pixels(fast) - _pixels(eager)).max() <= 1.0
    assert np.abs(_pixels(first) - _pixels(eager)).max() <= 1.0
    monkeypatch.delenv("IMPASTO_LIVE_COMPILE")
    other = eng.run(_live(side=96), JobHooks())          # a graph is only right for the shapes it saw
    assert other.info["live_unet"].startswith("eager: traced for other shapes")
    assert "live_unet" not in eng.run(_live(live=False), JobHooks()).info


def test_a_failed_trace_leaves_live_jobs_eager_with_the_same_picture(traced_engine, monkeypatch):
    def no_torchscript(*a, **k):
        raise RuntimeError("TorchScript is gone")

    monkeypatch.setattr(torch.jit, "trace", no_torchscript)
    eng = traced_engine
    first = eng.run(_live(), JobHooks())
    lu = eng.model("tiny")._live_unet
    lu.thread.join(timeout=120)
    assert lu.state == "failed" and "tracing failed" in lu.why and "TorchScript is gone" in lu.why
    again = eng.run(_live(), JobHooks())
    assert again.info["live_unet"].startswith("eager: tracing failed")
    assert np.array_equal(_pixels(first), _pixels(again))


def test_a_trace_that_baked_in_the_timestep_is_refused():
    """A graph records one path through Python branches: checked at a second timestep before use."""

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, sample, timestep, encoder_hidden_states, return_dict=True):
            scale = 2.0 if float(timestep) > 300 else 1.0      # a Python branch on the value
            return (sample * self.w * scale + encoder_hidden_states.mean(),)

    class Plain(Branchy):
        def forward(self, sample, timestep, encoder_hidden_states, return_dict=True):
            return (sample * self.w * timestep.float() + encoder_hidden_states.mean(),)

    call = ((torch.ones(1, 4, 2, 2), torch.tensor(500), torch.zeros(1, 3, 8)), {"return_dict": False})
    with pytest.raises(RuntimeError, match="differs"):
        live_unet._trace(Branchy(), call)
    plain = Plain()
    run = live_unet._trace(plain, call)
    out = run(torch.ones(1, 4, 2, 2), torch.tensor(7), torch.zeros(1, 3, 8), return_dict=False)
    assert isinstance(out, tuple) and torch.allclose(out[0], torch.full((1, 4, 2, 2), 7.0))
    with torch.no_grad():
        plain.w.fill_(2.0)           # the graph reads the module's weights: a weight sync needs no new trace
    out = run(torch.ones(1, 4, 2, 2), torch.tensor(7), torch.zeros(1, 3, 8), return_dict=False)
    assert torch.allclose(out[0], torch.full((1, 4, 2, 2), 14.0))
