"""The GPU specifics are small and explicit (``engine/gpu.py``): their choices, checked without a GPU.

What runs on CUDA (channels_last, compile, autocast, 8-bit Adam, offload) is
decided by these functions from the device and the daemon's environment; the
CPU path calls the same functions (``test_sdxl.py`` runs them end to end).
"""
from __future__ import annotations

import torch

from impasto.backend.engine.device import DeviceChoice
from impasto.backend.engine.gpu import FastPath, adam_class, grad_scaler, training_autocast

CPU = DeviceChoice(torch.device("cpu"), torch.float32)
CUDA16 = DeviceChoice(torch.device("cuda"), torch.float16)   # only described here, nothing runs on it


def test_fast_path_settings_from_the_daemon_environment(monkeypatch):
    for var in ("IMPASTO_FAST", "IMPASTO_COMPILE", "IMPASTO_CHANNELS_LAST", "IMPASTO_OFFLOAD"):
        monkeypatch.delenv(var, raising=False)
    default = FastPath.for_device(CPU)
    assert (default.sdpa, default.channels_last, default.compile, default.offload) == (True, False, False, "none")
    assert default.describe() == "sdpa"
    monkeypatch.setenv("IMPASTO_FAST", "1")
    assert FastPath.for_device(CPU).describe() == "sdpa+channels_last+compile"
    monkeypatch.setenv("IMPASTO_COMPILE", "0")
    assert FastPath.for_device(CPU).describe() == "sdpa+channels_last"
    monkeypatch.setenv("IMPASTO_OFFLOAD", "model")
    assert FastPath.for_device(CPU).offload == "none"          # offload is a CUDA thing
    assert FastPath.for_device(CUDA16).offload == "model"


def test_training_precision_choices(monkeypatch):
    monkeypatch.setenv("IMPASTO_ADAM8BIT", "1")
    assert adam_class(CPU) is torch.optim.AdamW                 # 8-bit Adam: CUDA only
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        assert adam_class(CUDA16) is torch.optim.AdamW          # asked for, not installed: plain AdamW
    assert grad_scaler(CPU) is None
    with training_autocast(CPU):
        x = torch.ones(2, 2) @ torch.ones(2, 2)
    assert x.dtype == torch.float32                             # no autocast on the CPU
