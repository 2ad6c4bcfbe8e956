"""The engine facade: one request in, one :class:`Result` out.

The daemon's worker thread owns an :class:`Engine`; so can a test or a script
(no sockets involved).  It keeps one model resident, switches the job's
concepts on, looks the job kind up in :data:`.runners.JOB_RUNNERS` and builds
the result from the runner's :class:`.runners.Output` - the same straight
path for every kind, txt2img included.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional

import torch

from impasto.protocol.messages import ErrorCode, Generate, Limits, Result, validate_job

from . import concepts, control, gc_pauses
from .device import DeviceChoice, pick_device
from .errors import EngineError
from .gpu import oom_guard, peak_memory, reset_peak_memory
from .hooks import JobHooks
from .control_models import ControlStore
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
        self.controls = ControlStore(self.registry.models_dir)  # control models, resident once loaded
        self._stamp, self._loaded_as_default = None, False
        self.loads = 0     # models loaded so far: a live session must never reload (result.info["model_loads"])

    # ------------------------------------------------------------------ models

    def model(self, name: str) -> LoadedModel:
        """The resident model for ``name`` ("" = default), loading it if needed.

        The resident model answers without a folder rescan while nothing on
        disk changed (the models folder's and the model's own modification
        times): a scan reads every model's configs or header, milliseconds
        per job that the daemon's overhead should not pay.
        """
        if self.loaded is not None and self._stamp == self._disk_stamp(self.loaded.entry) and \
                name in (self.loaded.entry.name, "" if self._loaded_as_default else None):
            return self.loaded
        entry = self.registry.resolve(name)
        if self.loaded is not None and self.loaded.entry.path == entry.path:
            self._stamp, self._loaded_as_default = self._disk_stamp(entry), name == "" or self._loaded_as_default
            return self.loaded
        if self.loaded is not None:
            gc_pauses.release()          # the old model's objects: collectable again
            self.loaded.close()
            self.loaded = None
            gc_pauses.collect()
        try:
            self.loaded = LoadedModel(entry, self.choice, self.registry.models_dir)
            self.loads += 1
            gc_pauses.settle()           # no full collection walks the model's objects during a job
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(ErrorCode.INTERNAL, f"model {entry.name!r} failed to load: {exc}", "model") from exc
        self._stamp, self._loaded_as_default = self._disk_stamp(entry), name == ""
        return self.loaded

    def _disk_stamp(self, entry: ModelEntry):
        def mtime(path) -> int:
            try:
                return os.stat(path).st_mtime_ns
            except OSError:
                return -1

        return mtime(self.registry.models_dir), mtime(entry.path)

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
                concepts.activate(self, loaded, list(req.concepts), hooks, prompt=req.prompt,
                                  fuse=req.live)
                for note in prompt_notes(loaded, req):
                    hooks.warn(note)
                hooks.control = control.prepare(self, loaded, req, hooks)
            else:
                concepts.base_weights(loaded)
            out = runner(self, loaded, req, hooks)
            if hooks.control is not None:
                out.info["control"] = hooks.control.describe()
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
        result.info.setdefault("model_loads", self.loads)
        peak = peak_memory(self.choice)
        if peak is not None:
            result.info.setdefault("peak_vram_bytes", peak)
        return result


def prompt_notes(loaded: LoadedModel, req: Generate) -> List[str]:
    """Tell the artist when a prompt is longer than the text encoder's window.

    Nothing is cut any more (``prompts.py`` reads long prompts in chunks, as
    A1111 does), but a tiny encoder such as the starter's (22 tokens a chunk)
    reads a prompt split across chunks less well than one that fits, so the
    artist hears how it was read.
    """
    from . import prompts  # torch-side module; imported when a job runs

    tok = getattr(loaded.base, "tokenizer", None)
    notes: List[str] = []
    if tok is None:
        return notes
    for what, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt)):
        if not text or len(text) > prompts._max_chars(tok):
            continue  # empty, or so long that the runner refuses it with a typed error
        n = len(prompts.chunks(tok, text))
        if n > 1:
            notes.append(f"{what} longer than the text encoder's window: read in {n} chunks of "
                         f"{prompts.chunk_size(tok)} tokens (as A1111 does), nothing cut")
    return notes

