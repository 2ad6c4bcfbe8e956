"""Route a module's calls through a wrapper for the length of a block: the named point where
per-job machinery joins the UNet (control units, :mod:`.control`; the compiled live UNet,
:mod:`.live_unet`) without changing the pipeline that calls it."""
from __future__ import annotations

import contextlib
from typing import Callable


@contextlib.contextmanager
def forward_replaced(module, make: Callable[[Callable], Callable]):
    """Inside the block ``module(...)`` calls ``make(inner)``, ``inner`` being the forward it had.

    Set on the instance (its class and every other instance untouched); on exit the
    instance's own ``forward`` attribute, if it had one, is put back, else removed.
    """
    had_own = "forward" in module.__dict__
    own = module.__dict__.get("forward")
    module.forward = make(module.forward)
    try:
        yield
    finally:
        if had_own:
            module.forward = own
        else:
            del module.forward
