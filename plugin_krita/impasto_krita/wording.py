"""Errors as sentences an artist can act on - the docker never shows a traceback.

Every failure the plugin can meet (daemon not running, killed mid-job, a
different protocol version, a bad value, an engine error) reaches the docker
through :func:`describe_failure` or :func:`describe_exception`.
"""
from __future__ import annotations

from typing import Optional

from .planning import PlanError, describe_field_error

START_HINT = "start it with `impasto serve`, or set the daemon command under Connection to start it automatically"


def describe_failure(code: str, message: str, field: str = "", endpoint: str = "") -> str:
    """A daemon ``Error`` (or a client-side ``JobFailed``) in the docker's words."""
    where = f" at {endpoint}" if endpoint else ""
    if code == "unavailable":
        if "restarted" in message:
            return ("The Impasto daemon restarted while working, so this job was lost. "
                    "Press Generate again.")
        if "shutting down" in message:
            return "The Impasto daemon was stopped while working; the job was lost."
        if "closed" in message:
            return "The connection was closed; the job was lost."
        return (f"The Impasto daemon{where} stopped answering and the job was lost. "
                f"Check that it is still running ({START_HINT}).")
    if code == "version_mismatch":
        return (f"{_sentence(message)} Install the plugin again with `impasto install-krita` from the same "
                "Impasto installation that runs the daemon.")
    if code == "unknown_model":
        return f"{_sentence(message)} Pick another model in the Model list (press ⟳ to refresh it)."
    if code == "no_model":
        return f"{_sentence(message)} Install a model (see `impasto models`) and press ⟳."
    if code == "unknown_concept":
        return f"{_sentence(message)} Untick it under Concepts or train it first."
    if code in ("bad_field", "unknown_sampler"):
        return describe_field_error(message, field)
    if code == "bad_message" and "not supported" in message:
        return f"This Impasto daemon cannot do that yet ({message}). Update Impasto."
    if code == "duplicate_job":
        return "That job is already running."
    if code == "internal":
        return f"The daemon failed on this job: {message}. It keeps running; try other settings or a smaller canvas."
    return _sentence(message) or f"The daemon refused the job ({code})."


def describe_exception(exc: BaseException, endpoint: str = "") -> str:
    """Anything raised while talking to the daemon or reading the canvas."""
    if isinstance(exc, PlanError):
        return _sentence(exc.message)
    code = getattr(exc, "code", None)
    if isinstance(code, str) and hasattr(exc, "message"):
        return describe_failure(code, getattr(exc, "message"), getattr(exc, "field", "") or "", endpoint)
    if isinstance(exc, TimeoutError):
        return f"The Impasto daemon{' at ' + endpoint if endpoint else ''} did not answer in time ({exc})."
    if isinstance(exc, MemoryError):
        return "Not enough memory to send this canvas: select a smaller region or crop the canvas."
    text = str(exc) or type(exc).__name__
    return f"Something went wrong: {_sentence(text)}"


def _sentence(text: Optional[str]) -> str:
    text = (text or "").strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
