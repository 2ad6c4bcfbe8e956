"""Errors as sentences in the docker - Krita's words for the client core's one mapping.

The sentences are chosen by error code in :mod:`impasto.protocol.errors`;
Krita only says where its things are (the Model list, the Connection
section, `impasto install-krita`).  The docker never shows a traceback.
"""
from __future__ import annotations

from ...protocol import errors

START_HINT = "start it with `impasto serve`, or set the daemon command under Connection to start it automatically"
KRITA = errors.HostWords(
    install="install the plugin again with `impasto install-krita` from the same Impasto installation that runs "
            "the daemon",
    models="pick another model in the Model list (press ⟳ to refresh it)",
    start=START_HINT,
    concepts="untick it under Concepts or train it first",
)


def describe_failure(code: str, message: str, field: str = "", endpoint: str = "") -> str:
    """A daemon ``Error`` (or a client-side lost job) in the docker's words."""
    return errors.describe_error(code, message, field, endpoint, KRITA)


def describe_exception(exc: BaseException, endpoint: str = "") -> str:
    """Anything raised while talking to the daemon or reading the canvas."""
    return errors.describe_exception(exc, endpoint, KRITA)
