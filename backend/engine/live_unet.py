"""A faster copy of the UNet for live jobs, built in the background (``IMPASTO_LIVE_COMPILE``).

Why: a live job on the starter spends most of its time in four UNet calls of a small
network on a 16 x 16 latent, where PyTorch's per-operator overhead (Python, diffusers'
module code, hooks), not arithmetic, is the cost.  Two ways to cut it, one setting:

* ``trace`` (the default): ``torch.jit.trace`` records the UNet's operators once and runs
  them from C++; no compiler needed, built in 1.2-1.7 s on the starter.  The starter's UNet call
  measured 14.8 -> 9.3 ms at one thread (same process; docs/performance.md, "Live
  painting").  PyTorch marks TorchScript deprecated: where it is gone or fails, live jobs
  stay eager (and say so).
* ``1`` / ``inductor``: ``torch.compile`` (inductor; 16.7 -> 12.1 ms per call measured).
  Needs a C++ compiler (artists' Windows machines rarely have one) and 12 s with a warm
  cache, about a minute cold.  ``IMPASTO_COMPILE_BACKEND`` picks dynamo's backend (tests:
  ``eager``).
* ``0`` / ``off``: live jobs call the UNet as every other job does.

Either way a copy of the UNet stays in memory: refused above :data:`MAX_PARAMS` (real SD
models, whose calls are arithmetic anyway).  So that a stroke never waits for it:

* The first live job's first UNet call notes the call's shapes and starts a thread that
  copies the UNet (as it is then: its live adapters folded in and out of the module tree,
  ``adapters._strip``, or none at all) and traces or compiles the copy for those shapes,
  checking the copy's answers against the eager copy's (two timesteps) before use.  Jobs
  go on with the eager UNet meanwhile - slower for those moments: tracing is Python and
  shares the interpreter lock with the job.
* When ready, a live job's UNet calls with those shapes go through the copy.  Its weights
  are the pipeline UNet's: copied in place when the folded adapters change (traced and
  compiled graphs read the copy's parameters, so nothing is rebuilt).  A live job while a
  concept is *not* folded (the tree holds peft layers) stays eager.
* A call the copy was not built for (other shapes, another argument) runs eagerly: the
  signature check turns it away (a traced graph is only right for the shapes it saw), and
  a compiled one runs under ``torch.compiler.set_stance("fail_on_recompile")``, never
  recompiling inside a stroke.
* The result's ``info["live_unet"]`` says which ran: ``traced`` / ``compiled``,
  ``tracing`` / ``compiling``, or why not.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .forward_patch import forward_replaced

log = logging.getLogger("impasto.engine")

ENV = "IMPASTO_LIVE_COMPILE"
MAX_PARAMS = 300_000_000      # a compiled copy of a bigger UNet costs more memory than its calls save time


_COMPILE = ("1", "true", "yes", "on", "compile", "inductor")
_OFF = ("0", "false", "no", "off", "eager")


def mode() -> Optional[str]:
    """``"trace"`` (default), ``"compile"`` or None (off), from ``IMPASTO_LIVE_COMPILE``."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return None
    return "compile" if value in _COMPILE else "trace"


def enabled() -> bool:
    return mode() is not None


def _signature(sample, timestep, ehs, args, kwargs, threads: bool = True) -> Tuple:
    def desc(v):
        if isinstance(v, torch.Tensor):
            return ("T", tuple(v.shape), str(v.dtype))
        if isinstance(v, dict):
            return ("D", tuple(sorted((k, desc(x)) for k, x in v.items())))
        return ("V", v if isinstance(v, (bool, int, float, str, type(None))) else type(v).__name__)

    # the thread count too for a compiled graph: inductor's is guarded on it (a change would recompile)
    return (desc(sample), desc(timestep), desc(ehs), tuple(desc(a) for a in args),
            tuple(sorted((k, desc(v)) for k, v in kwargs.items())), torch.get_num_threads() if threads else None)


def _walk(v, leaf: Callable):
    """``v`` rebuilt with ``leaf`` applied to every value outside its dicts, tuples and lists.

    Dicts in key order: two calls equal by signature meet their tensors in the same order.
    """
    if isinstance(v, dict):
        return {k: _walk(v[k], leaf) for k in sorted(v)}
    if isinstance(v, (tuple, list)):
        return type(v)(_walk(x, leaf) for x in v)
    return leaf(v)


def _clone(v):
    return _walk(v, lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x)


class _Slot(int):
    """Where a tensor stood in a call's arguments."""


def _flatten(v, tensors: List[torch.Tensor]):
    """``v`` with every tensor replaced by its index in ``tensors`` (appended): a traced graph takes tensors only."""
    def slot(x):
        if isinstance(x, torch.Tensor):
            tensors.append(x)
            return _Slot(len(tensors) - 1)
        return x

    return _walk(v, slot)


def _fill(v, tensors):
    return _walk(v, lambda x: tensors[int(x)] if isinstance(x, _Slot) else x)


class _Traced(torch.nn.Module):
    """The UNet called with a fixed argument structure (tensors in, the sample tensor out): what gets traced."""

    def __init__(self, unet, structure):
        super().__init__()
        self.unet = unet
        self.structure = structure

    def forward(self, *tensors):
        args, kwargs = _fill(self.structure, tensors)
        out = self.unet(*args, **kwargs)
        self.returns = type(out)       # the UNet's own return type, rebuilt around the recording's tensor
        return out[0] if isinstance(out, tuple) else out.sample


def _quiet_tracer() -> None:
    """Silence TorchScript's deprecation notice and its tracer's shape notes (by name: nothing else).

    Filters, not ``catch_warnings``: that saves and restores the process's filter list and
    is not safe from a second thread.
    """
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


def _trace(twin, example) -> Callable:
    """``twin`` traced for calls like ``example`` and checked against it: a callable of the same call."""
    tensors: List[torch.Tensor] = []
    structure = _flatten(example, tensors)
    module = _Traced(twin, structure).eval()
    _quiet_tracer()
    with torch.no_grad():
        traced = torch.jit.trace(module, tuple(tensors), check_trace=False)
    ref_args, _ = example
    with torch.inference_mode():
        for k in range(2 if isinstance(ref_args[1], torch.Tensor) else 1):   # the call, then at another timestep
            if k == 1:
                t = tensors[1]
                tensors = list(tensors)
                tensors[1] = t // 2 if not t.is_floating_point() else t * 0.5
            want = module(*tensors)
            got = traced(*tensors)
            if got.shape != want.shape or (got - want).abs().max() > 1e-3 * max(1.0, float(want.abs().max())):
                raise RuntimeError("the traced UNet's answer differs from the UNet's")
    out_type = module.returns
    tuple_out = issubclass(out_type, tuple)

    def call(*args, **kwargs):
        found: List[torch.Tensor] = []
        _flatten((args, kwargs), found)
        sample = traced(*found)
        return (sample,) if tuple_out else out_type(sample=sample)

    return call


class LiveUNet:
    """One loaded model's traced or compiled live UNet (state machine: idle -> building -> ready | failed)."""

    def __init__(self, loaded, how: str = "trace"):
        self.loaded = loaded
        self.how = how                  # "trace" | "compile"
        self.state = "idle"
        self.why = ""
        self.signature: Optional[Tuple] = None
        self.compiled = None
        self.copy = None
        self.key: Any = "unsynced"
        self.compile_seconds: Optional[float] = None
        self.refused: set = set()
        self.thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ worker thread

    def _plain(self, unet) -> bool:
        """No peft layer in the tree: any concept is folded in and stripped out (``adapters._strip``)."""
        from impasto.backend.concepts import adapters

        return not adapters.tuner_layers(unet)

    def _start(self, unet, call, signature: Tuple) -> None:
        """Copy the UNet now (this thread), compile the copy for calls like ``call`` in another thread."""
        params = sum(p.numel() for p in unet.parameters())
        if params > MAX_PARAMS:
            self.state, self.why = "failed", f"UNet of {params / 1e6:.0f} M parameters: no compiled copy kept"
            return
        if not self._plain(unet):
            return    # a concept is on but not folded in: try again on a later live job
        twin = copy.deepcopy(unet)
        twin.__dict__.pop("forward", None)     # the copy of a patched instance: its own forward back
        twin.requires_grad_(False)
        self.copy, self.key = twin, self._fused_key()
        self.signature = signature      # before the thread starts: it may finish within this very job
        self.state = "building"
        backend = os.environ.get("IMPASTO_COMPILE_BACKEND", "inductor")
        example = _clone(call)

        def build():
            t0 = time.perf_counter()
            try:
                if self.how == "trace":
                    built = _trace(twin, example)
                else:
                    built = torch.compile(twin, backend=backend, fullgraph=False, dynamic=False)
                    args, kwargs = example
                    with torch.inference_mode():
                        built(*args, **kwargs)
            except Exception as exc:   # no compiler, no TorchScript, an unsupported op: live jobs stay eager
                with self._lock:
                    self.state, self.why = "failed", f"{self.doing_word} failed ({type(exc).__name__}: {exc})"[:300]
                    self.copy = None
                log.warning("live UNet: %s", self.why)
                return
            with self._lock:
                self.compiled, self.compile_seconds = built, time.perf_counter() - t0
                self.state = "ready"
            log.info("live UNet %s (%s) in %.1f s", self.done_word, "torchscript" if self.how == "trace" else backend,
                     self.compile_seconds)

        self.thread = threading.Thread(target=build, name=f"impasto-live-{self.how}", daemon=True)
        self.thread.start()

    @property
    def done_word(self) -> str:
        return "traced" if self.how == "trace" else "compiled"

    @property
    def doing_word(self) -> str:
        return "tracing" if self.how == "trace" else "compiling"

    def _fused_key(self):
        from impasto.backend.concepts import adapters

        fused = adapters.state_for(self.loaded).fused
        return tuple(sorted(fused.items())) if fused else None

    def _sync(self, unet) -> bool:
        """The copy's weights = the pipeline UNet's (copied when the folded adapters changed)."""
        key = self._fused_key()
        if key == self.key:
            return True
        if not self._plain(unet):
            return False
        mine, theirs = list(self.copy.named_parameters()), list(unet.named_parameters())
        if [n for n, _ in mine] != [n for n, _ in theirs]:
            self.state, self.why = "failed", "the UNet's layers changed since the copy was compiled"
            return False
        with torch.no_grad():
            for (_, p), (_, q) in zip(mine, theirs):
                p.copy_(q)
        self.key = key
        return True

    @contextlib.contextmanager
    def attached(self, pipe, info: Dict[str, object]):
        """Inside the block ``pipe``'s UNet calls go through the traced or compiled copy where they can."""
        unet = pipe.unet
        used = {"compiled": 0, "eager": 0, "waiting": 0}

        def make(inner):
            def forward(sample, timestep, encoder_hidden_states=None, *args, **kwargs):
                sig = _signature(sample, timestep, encoder_hidden_states, args, kwargs, self.how == "compile")
                with self._lock:
                    state = self.state
                if state == "idle":
                    self._start(unet, ((sample, timestep, encoder_hidden_states, *args), kwargs), sig)
                if self.state == "building":
                    used["waiting"] += 1
                elif state == "ready" and sig == self.signature and sig not in self.refused and self._sync(unet):
                    try:
                        stance = torch.compiler.set_stance("fail_on_recompile") if self.how == "compile" \
                            else contextlib.nullcontext()
                        with stance:
                            out = self.compiled(sample, timestep, encoder_hidden_states, *args, **kwargs)
                        used["compiled"] += 1
                        return out
                    except Exception as exc:   # would recompile, or the graph refuses: eager for this one
                        self.refused.add(sig)
                        log.info("live UNet: a call it was not compiled for runs eagerly (%s)", str(exc)[:200])
                used["eager"] += 1
                return inner(sample, timestep, encoder_hidden_states, *args, **kwargs)
            return forward

        try:
            with forward_replaced(unet, make):
                yield self
        finally:
            info["live_unet"] = self._report(used)

    def _report(self, used: Dict[str, int]) -> str:
        done = self.done_word
        if used["compiled"]:
            total = used["compiled"] + used["eager"]
            return done if used["compiled"] == total else f"{done} for {used['compiled']} of {total} calls"
        if used["waiting"]:
            return self.doing_word      # (it may have finished meanwhile)
        if self.state == "ready":
            return f"eager: {done} for other shapes or folded adapters"
        if self.state == "idle":
            return "eager: a concept is on without being folded in"
        if self.state == "failed":
            return f"eager: {self.why}"
        return self.state


def for_model(loaded) -> Optional[LiveUNet]:
    """The loaded model's live UNet for the setting (made on first use), else None."""
    how = mode()
    if how is None or getattr(getattr(loaded, "fast", None), "compile", False):
        return None     # off, or the whole UNet is compiled already (IMPASTO_COMPILE: concepts in its hot slot)
    built = loaded.__dict__.setdefault("_live_unets", {})      # one per setting: a switch back rebuilds nothing
    live = built.get(how)
    if live is None:
        live = built[how] = LiveUNet(loaded, how)
    loaded.__dict__["_live_unet"] = live
    return live
