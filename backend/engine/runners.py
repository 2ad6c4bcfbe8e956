"""The job kinds the engine runs, one registry, and the one place a :class:`Result` is built.

``JOB_RUNNERS[kind]`` is ``runner(engine, loaded, request, hooks) -> Output``.
Built-in kinds are named here as ``"module:function"`` strings and imported on
first use, so nothing here imports a runner (no import cycle between the
facade and the runners) and importing the registry costs nothing.  A feature
may add a kind by putting a callable (or such a string) in the dict.

Every runner returns the same :class:`Output` (RGBA arrays, patches, seeds,
steps, timings, info); :func:`build_result` turns it into the wire
:class:`Result` - once, for every kind.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple, Union

from impasto.protocol.messages import ErrorCode, Patch, Result

from .errors import EngineError

JOB_RUNNERS: Dict[str, Union[str, Callable]] = {
    "txt2img": "impasto.backend.engine.txt2img:run",
    "img2img": "impasto.backend.engine.img2img:run",
    "edit": "impasto.backend.engine.edit:run",
    "train": "impasto.backend.concepts.train:run_train",
    "train_slider": "impasto.backend.concepts.slider_train:run_train_slider",
}


@dataclass
class Output:
    """What every runner hands back: full pictures (HxWx4 uint8 RGBA arrays) and how they were made.

    ``patches`` (edits only) are ``(x, y, RGBA array)``: the changed region of
    each picture with the feathered mask as alpha.
    """

    images: List[Any]
    seeds: List[int]
    steps: int = 0
    patches: List[Tuple[int, int, Any]] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    info: Dict[str, object] = field(default_factory=dict)


def runner_for(kind: str) -> Callable:
    """The runner of job kind ``kind`` (imported on first use); a typed error for an unknown kind."""
    entry = JOB_RUNNERS.get(kind)
    if entry is None:
        raise EngineError(ErrorCode.BAD_MESSAGE, f"{kind} jobs are not supported by this daemon", "type")
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
        JOB_RUNNERS[kind] = entry
    return entry


def build_result(out: Output) -> Result:
    """The wire result of a runner's output (job id, model and warnings are added by the facade)."""
    from .images import array_to_wire

    return Result(
        images=[array_to_wire(a) for a in out.images], seeds=list(out.seeds), steps_run=int(out.steps),
        patches=[Patch(x=x, y=y, image=array_to_wire(p)) for x, y, p in out.patches],
        timings={k: round(float(v), 6) for k, v in out.timings.items()}, info=dict(out.info),
    )
