"""The torch side of Impasto: models, pipelines, samplers, previews, concepts.

Never imports zmq or Qt: the daemon drives it through :class:`Engine` and
:class:`JobHooks`, and so can a script or a test.
"""
from .engine import Engine, JOB_RUNNERS  # noqa: F401
from .errors import Cancelled, EngineError  # noqa: F401
from .hooks import JobHooks  # noqa: F401
