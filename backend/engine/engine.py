"""The engine facade: one request in, one :class:`Result` out.

The daemon's worker thread owns an :class:`Engine`; so can a test or a script
(no sockets involved).  It keeps one model resident, switches the job's
concepts on, looks the job kind up in :data:`.runners.JOB_RUNNERS` and builds
the result from the runner's :class:`.runners.Output` - the same straight
path for every kind, txt2img included.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List, Optional

import torch

from impasto.protocol.messages import ErrorCode, Generate, Limits, Result, validate_job

from . import concepts
from .device import DeviceChoice, pick_device
from .errors import EngineError
from .gpu import oom_guard, peak_memory, reset_peak_memory
from .hooks import JobHooks
from .models import ModelEntry, ModelRegistry
from .pipelines import LoadedModel
from .runners import JOB_RUNNERS, build_result, runner_for  # noqa: F401 (JOB_RUNNERS re-exported: the seam)

log = logging.getLogger("impasto.engine")


class Engine:
    def __init__(self, models_dir: Optional[Path] = None, device: Optional[DeviceChoice] = None,
                 limits: Optional[Limits] = None):
        self.registry = ModelRegistry(models_dir)
        self.choice = device or pick_device()
        self.limits = limits or Limits()
        self.loaded: Optional[LoadedModel] = None

    # ------------------------------------------------------------------ models

    def model(self, name: str) -> LoadedModel:
        """The resident model for ``name`` ("" = default), loading it if needed."""
        entry = self.registry.resolve(name)
        if self.loaded is not None and self.loaded.entry.path == entry.path:
            return self.loaded
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None
        try:
            self.loaded = LoadedModel(entry, self.choice)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(ErrorCode.INTERNAL, f"model {entry.name!r} failed to load: {exc}", "model") from exc
        return self.loaded

    def models(self) -> List[ModelEntry]:
        return self.registry.scan()

    # ------------------------------------------------------------------ jobs

    def run(self, req, hooks: Optional[JobHooks] = None) -> Result:
        hooks = hooks or JobHooks()
        validate_job(req, self.limits)
        kind = req.kind if isinstance(req, Generate) else req.TYPE
        runner = runner_for(kind)
        t0 = time.perf_counter()
        reset_peak_memory(self.choice)
        loaded = self.model(req.model)
        t_load = time.perf_counter() - t0
        with oom_guard(self.choice, req):
            if isinstance(req, Generate):
                concepts.activate(self, loaded, list(req.concepts), hooks, prompt=req.prompt)
            out = runner(self, loaded, req, hooks)
        result = build_result(out)
        result.job = req.job
        result.timings["model"] = round(t_load, 6)
        result.timings["total"] = round(time.perf_counter() - t0, 6)
        result.warnings.extend(hooks.warnings)
        result.info.setdefault("model", loaded.entry.name)
        result.info.setdefault("family", loaded.entry.family)
        result.info.setdefault("device", self.choice.describe())
        result.info.setdefault("torch_threads", torch.get_num_threads())  # benchmarks compare like with like
        result.info.setdefault("fast_path", loaded.fast.describe())
        peak = peak_memory(self.choice)
        if peak is not None:
            result.info.setdefault("peak_vram_bytes", peak)
        return result
