"""Which copy of the Impasto protocol package the plugin talks through.

Installed into Krita, the plugin carries its own copy (``impasto install-krita``
vendors ``protocol/`` as ``impasto_krita/vendor/impasto_protocol``): Krita's
Python knows nothing about the Impasto backend's environment, and a plugin
must keep working after the backend's virtualenv moves.  In the source tree
(tests, development) the installed ``impasto.protocol`` is used instead.
"""
from __future__ import annotations

try:
    from .vendor import impasto_protocol as protocol  # type: ignore[attr-defined]
    VENDORED = True
except ImportError:  # the source tree: no vendor folder
    try:
        from impasto import protocol  # type: ignore[no-redef]
    except ImportError as exc:  # a broken install: say what to do instead of a traceback
        raise ImportError(
            "the Impasto protocol package is missing from the Krita plugin: "
            "reinstall it with `impasto install-krita`"
        ) from exc
    VENDORED = False

from importlib import import_module

messages = import_module(protocol.__name__ + ".messages")
client = import_module(protocol.__name__ + ".client")

Client = client.Client
JobCancelled = client.JobCancelled
JobFailed = client.JobFailed
ProtocolError = messages.ProtocolError
ErrorCode = messages.ErrorCode
PROTOCOL_VERSION = messages.PROTOCOL_VERSION
SAMPLERS = messages.SAMPLERS
FILL_MODES = messages.FILL_MODES
Generate = messages.Generate
Image = messages.Image
Limits = messages.Limits
Progress = messages.Progress
Result = messages.Result
Error = messages.Error
Cancelled = messages.Cancelled
Accepted = messages.Accepted
validate_job = messages.validate_job
default_endpoint = import_module(protocol.__name__ + ".transport").default_endpoint

# the client core: one settings type, planner, region rule, error sentences and launcher for every front end
settings = import_module(protocol.__name__ + ".settings")
planner = import_module(protocol.__name__ + ".planner")
errors = import_module(protocol.__name__ + ".errors")
region = import_module(protocol.__name__ + ".region")
launcher = import_module(protocol.__name__ + ".launcher")
Settings = settings.Settings
PlanError = errors.PlanError
