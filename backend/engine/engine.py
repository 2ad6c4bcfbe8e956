"""The engine facade: one request in, one :class:`Result` out.

The daemon's worker thread owns an :class:`Engine`; so can a test or a script
(no sockets involved).  It keeps one model resident, resolves the job kind and
hands over to the module that runs it.
"""
from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from impasto.protocol.messages import ErrorCode, Generate, Limits, Result, validate_job

from . import concepts, txt2img
from .device import DeviceChoice, pick_device
from .errors import EngineError
from .hooks import JobHooks
from .images import to_wire
from .models import ModelEntry, ModelRegistry
from .pipelines import LoadedModel

log = logging.getLogger("impasto.engine")

# Job kinds beyond txt2img register here (editing, training) so this file
# stays a dispatcher: kind -> callable(engine, loaded, request, hooks) -> Result
JOB_RUNNERS: Dict[str, Callable] = {}


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
        t0 = time.perf_counter()
        loaded = self.model(req.model)
        t_load = time.perf_counter() - t0
        if isinstance(req, Generate):
            kind = req.kind
        else:
            kind = req.TYPE
        if isinstance(req, Generate):
            concepts.activate(self, loaded, list(req.concepts), hooks, prompt=req.prompt)
            hooks.warnings.extend(prompt_notes(loaded, req))
        runner = JOB_RUNNERS.get(kind)
        if runner is None:
            if kind != "txt2img":
                raise EngineError(ErrorCode.BAD_MESSAGE, f"{kind} jobs are not supported by this daemon", "type")
            runner = run_txt2img
        result = runner(self, loaded, req, hooks)
        result.job = req.job
        result.timings["model"] = round(t_load, 6)
        result.timings["total"] = round(time.perf_counter() - t0, 6)
        result.warnings.extend(hooks.warnings)
        result.info.setdefault("model", loaded.entry.name)
        result.info.setdefault("device", self.choice.describe())
        return result


def prompt_notes(loaded: LoadedModel, req: Generate) -> List[str]:
    """"prompt cut at N tokens" when the text encoder cannot read the whole prompt (it drops the rest)."""
    tok = getattr(loaded.base, "tokenizer", None)
    notes = []
    if tok is None:
        return notes
    limit = int(getattr(tok, "model_max_length", 0) or 0)
    for what, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt)):
        if not text or limit <= 0:
            continue
        ids = tok(text, truncation=False).input_ids
        if len(ids) > limit:
            kept = tok.decode(ids[1:limit - 1]).split()
            tail = " ".join(kept[-3:])
            notes.append(f"{what} cut at {limit - 2} tokens (of {len(ids) - 2}): the model reads nothing "
                         f"after \"...{tail}\"")
    return notes


def job_seeds(req: Generate) -> List[int]:
    """Image i of a batch uses seed + i; -1 asks for a fresh random seed."""
    base = req.seed if req.seed >= 0 else secrets.randbelow(2**32)
    return [base + i for i in range(req.batch_size)]


def run_txt2img(engine: Engine, loaded: LoadedModel, req: Generate, hooks: JobHooks) -> Result:
    seeds = job_seeds(req)
    images, steps, timings = txt2img.run(loaded, req, seeds, hooks)
    return Result(images=[to_wire(im) for im in images], seeds=seeds, steps_run=steps,
                  timings={k: round(v, 6) for k, v in timings.items()})


# Feature modules register their runners in JOB_RUNNERS when imported.
from . import edit as _edit  # noqa: E402,F401  img2img and edit
from impasto.backend.concepts import train as _concept_train  # noqa: E402,F401  train
