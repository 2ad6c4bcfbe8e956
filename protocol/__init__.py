"""Impasto's wire protocol: typed messages, framing and the shared client.

Standard library only (pyzmq is an optional fast path): this package is copied
verbatim into Krita's and GIMP's own Python.  Import only relatively inside it.
"""
from .messages import *  # noqa: F401,F403
from .messages import PROTOCOL_VERSION, ErrorCode, Image, ProtocolError  # noqa: F401
from .client import Client, Job, JobCancelled, JobFailed, connect  # noqa: F401
from .transport import DEFAULT_ENDPOINT, default_endpoint  # noqa: F401
