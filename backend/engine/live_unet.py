"""A compiled copy of the UNet for live jobs, built in the background (opt-in: ``IMPASTO_LIVE_COMPILE=1``).

Why: a live job on the starter spends most of its time in four UNet calls of a small
network on a 16 x 16 latent, where PyTorch's per-operator overhead, not arithmetic, is
the cost.  ``torch.compile`` (inductor) of the starter's UNet measured 16.7 -> 12.1 ms per
call at one thread (same process; see docs/performance.md, "Live painting").  It is an
opt-in daemon setting, not the default: inductor needs a C++ compiler (artists' Windows
machines rarely have one), compiling takes 12 s with a warm cache and about a minute
cold, and a copy of the UNet stays in memory (refused above :data:`MAX_PARAMS`).

How, so that a stroke never waits for a compiler:

* The first live job's first UNet call notes the call's shapes and starts a thread that
  copies the UNet (as it is then: its live adapters folded in and out of the module tree,
  ``adapters._strip``, or none at all) and compiles the copy for those shapes, running it
  once.  Jobs go on with the eager UNet meanwhile - slower for those seconds: tracing is
  Python and shares the interpreter lock with the job.
* When ready, a live job's UNet calls with those shapes go through the compiled copy.  Its
  weights are the pipeline UNet's: copied in place when the folded adapters change (the
  weights are graph inputs, so nothing recompiles).  A live job while a concept is *not*
  folded (the tree holds peft layers) stays eager.
* A call the graph was not built for (other shapes, another argument) would recompile
  inside the stroke: under ``torch.compiler.set_stance("fail_on_recompile")`` it raises
  instead and that call runs eagerly (logged once per shape).
* The result's ``info["live_unet"]`` says which ran: ``compiled``, ``compiling`` or why
  not.  ``IMPASTO_COMPILE_BACKEND`` picks the backend (tests: ``eager``).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple

import torch

from .forward_patch import forward_replaced

log = logging.getLogger("impasto.engine")

ENV = "IMPASTO_LIVE_COMPILE"
MAX_PARAMS = 300_000_000      # a compiled copy of a bigger UNet costs more memory than its calls save time


def enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _signature(sample, timestep, ehs, args, kwargs) -> Tuple:
    def desc(v):
        if isinstance(v, torch.Tensor):
            return ("T", tuple(v.shape), str(v.dtype))
        if isinstance(v, dict):
            return ("D", tuple(sorted((k, desc(x)) for k, x in v.items())))
        return ("V", v if isinstance(v, (bool, int, float, str, type(None))) else type(v).__name__)

    # the thread count too: inductor's graph is guarded on it (a change would recompile)
    return (desc(sample), desc(timestep), desc(ehs), tuple(desc(a) for a in args),
            tuple(sorted((k, desc(v)) for k, v in kwargs.items())), torch.get_num_threads())


def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, dict):
        return {k: _clone(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return type(v)(_clone(x) for x in v)
    return v


class LiveUNet:
    """One loaded model's compiled live UNet (state machine: idle -> compiling -> ready | failed)."""

    def __init__(self, loaded):
        self.loaded = loaded
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
        self.state = "compiling"
        backend = os.environ.get("IMPASTO_COMPILE_BACKEND", "inductor")
        example = _clone(call)

        def build():
            t0 = time.perf_counter()
            try:
                compiled = torch.compile(twin, backend=backend, fullgraph=False, dynamic=False)
                args, kwargs = example
                with torch.inference_mode():
                    compiled(*args, **kwargs)
            except Exception as exc:   # no compiler, an unsupported op: live jobs stay eager
                with self._lock:
                    self.state, self.why = "failed", f"compiling failed ({type(exc).__name__}: {exc})"[:300]
                    self.copy = None
                log.warning("live UNet: %s", self.why)
                return
            with self._lock:
                self.compiled, self.compile_seconds = compiled, time.perf_counter() - t0
                self.state = "ready"
            log.info("live UNet compiled (%s) in %.1f s", backend, self.compile_seconds)

        self.thread = threading.Thread(target=build, name="impasto-live-compile", daemon=True)
        self.thread.start()

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
        """Inside the block ``pipe``'s UNet calls go through the compiled copy where they can."""
        unet = pipe.unet
        used = {"compiled": 0, "eager": 0, "waiting": 0}

        def make(inner):
            def forward(sample, timestep, encoder_hidden_states=None, *args, **kwargs):
                sig = _signature(sample, timestep, encoder_hidden_states, args, kwargs)
                with self._lock:
                    state = self.state
                if state == "idle":
                    self._start(unet, ((sample, timestep, encoder_hidden_states, *args), kwargs), sig)
                if self.state == "compiling":
                    used["waiting"] += 1
                elif state == "ready" and sig == self.signature and sig not in self.refused and self._sync(unet):
                    try:
                        with torch.compiler.set_stance("fail_on_recompile"):
                            out = self.compiled(sample, timestep, encoder_hidden_states, *args, **kwargs)
                        used["compiled"] += 1
                        return out
                    except Exception as exc:   # would recompile (another shape or argument): eager for this one
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
        if used["compiled"]:
            total = used["compiled"] + used["eager"]
            return "compiled" if used["compiled"] == total else f"compiled for {used['compiled']} of {total} calls"
        if used["waiting"]:
            return "compiling"        # (it may have finished while this job's last calls ran)
        if self.state == "ready":
            return "eager: compiled for other shapes or folded adapters"
        if self.state == "idle":
            return "eager: a concept is on without being folded in"
        if self.state == "failed":
            return f"eager: {self.why}"
        return self.state


def for_model(loaded) -> Optional[LiveUNet]:
    """The loaded model's live UNet when the setting is on (made on first use), else None."""
    if not enabled() or getattr(getattr(loaded, "fast", None), "compile", False):
        return None     # off, or the whole UNet is compiled already (IMPASTO_COMPILE: concepts in its hot slot)
    live = loaded.__dict__.get("_live_unet")
    if live is None:
        live = loaded.__dict__["_live_unet"] = LiveUNet(loaded)
    return live
