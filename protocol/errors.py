"""Errors as sentences an artist can act on, decided by error code - never by message text.

Every front end meets the same failures (daemon not running, restarted
mid-job, another protocol version, a bad value, an engine error); this is
the one mapping from :class:`~.messages.ErrorCode` to words.  What differs
per host - which menu holds the model list, which command reinstalls the
plug-in - comes in as a :class:`HostWords`, so Krita, GIMP, the canvas and
the CLI say the same thing in their own places.

:class:`PlanError` is the one "fix this before anything is sent" error (the
planner raises it, ``field`` names the knob).  A cancelled job is an event
(:class:`~.messages.Cancelled`) on the wire and :class:`~.client.JobCancelled`
only when a caller waits for a result; it is never an error sentence.

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .messages import ErrorCode


class PlanError(ValueError):
    """Something the artist can fix before anything is sent; ``field`` names the knob ("" when none)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field or ""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HostWords:
    """Where things are in one front end, for the sentences' "what to do" half."""

    install: str = "pip install -e . in the same environment as the daemon"   # how to update this client
    models: str = "pick another model"                                        # where the model list is
    start: str = "start it with `impasto serve`"                               # how to start the daemon
    concepts: str = "leave it out or train it first"                           # what to do with a concept
    # (request field, the control the artist set it with): "Set it with --cfg." after a field's error
    fields: Tuple[Tuple[str, str], ...] = ()


CLI = HostWords(models="see `impasto models`", concepts="drop it from --concept or train it first", fields=(
    ("cfg_scale", "--cfg"), ("steps", "--steps"), ("batch_size", "--batch"), ("seed", "--seed"),
    ("strength", "--strength"), ("mask_blur", "--mask-blur"), ("grow", "--grow"), ("padding", "--padding"),
    ("sampler", "--sampler"), ("width", "--size"), ("height", "--size"), ("fill", "--fill"), ("model", "--model"),
    ("concepts", "--concept"), ("negative_prompt", "--negative"), ("control", "--control")))


def where_to_set(field: str, host: HostWords = HostWords()) -> str:
    """`` Set it with --cfg.`` - the control of ``host`` that sets ``field`` ("" when it has none)."""
    words = dict(host.fields)
    base = field.split("[")[0].split(".")[0]
    word = words.get(field) or words.get(base)
    return f" Set it with {word}." if word else ""

#: request fields in an artist's words (``cfg_scale: 40 is outside 0..30`` -> ``CFG scale: ...``)
FIELD_WORDS = {
    "cfg_scale": "CFG scale", "steps": "steps", "batch_size": "batch size", "seed": "seed",
    "strength": "denoising strength", "mask_blur": "mask blur", "grow": "grow", "padding": "padding",
    "sampler": "sampler", "width": "canvas size", "height": "canvas size", "init_image": "picture",
    "init_image.width": "canvas size", "init_image.height": "canvas size", "fill": "fill",
    "model": "model", "mask": "selection", "prompt": "prompt",
}
_SIZE_FIELDS = ("width", "height", "init_image.width", "init_image.height")


def sentence(text: Optional[str]) -> str:
    """Capitalised, ending in a full stop ("" stays "")."""
    text = (text or "").strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def describe_field(message: str, field: str, host: HostWords = HostWords()) -> str:
    """A validation message with the field named in an artist's words (and the host's control for it)."""
    base = field.split("[")[0].split(".")[0] if field not in FIELD_WORDS else field
    word = "concept" if field.startswith("concepts") else FIELD_WORDS.get(field) or FIELD_WORDS.get(base)
    if field.startswith("control[") and "]" in field:   # control[1].strength -> control layer 2 strength
        index, _, knob = field[len("control["):].partition("]")
        word = f"control layer {int(index) + 1 if index.isdigit() else index}" + knob.replace(".", " ")
    if word and message.startswith(field + ":"):
        message = word + message[len(field):]
    if field in _SIZE_FIELDS and not host.fields:
        message += " - crop or scale the canvas down, or select a region to inpaint"
    return sentence(message) + where_to_set(field, host)


def describe_error(code: str, message: str, field: str = "", endpoint: str = "",
                   host: HostWords = HostWords()) -> str:
    """A daemon ``Error`` (or a client-side lost job) as one sentence, chosen by ``code``."""
    where = f" at {endpoint}" if endpoint else ""
    if code == ErrorCode.DAEMON_RESTARTED:
        return "The Impasto daemon restarted while working, so this job was lost. Run it again."
    if code == ErrorCode.CLIENT_CLOSED:
        return "The connection was closed; the job was lost."
    if code == ErrorCode.UNAVAILABLE:
        return (f"The Impasto daemon{where} stopped (or stopped answering) and the job was lost. "
                f"Check that it is still running ({host.start}).")
    if code == ErrorCode.VERSION_MISMATCH:
        return f"{sentence(message)} Update this client: {host.install}."
    if code == ErrorCode.UNKNOWN_MODEL:
        return f"{sentence(message)} {sentence(host.models)}"
    if code == ErrorCode.NO_MODEL:
        return f"{sentence(message)} Install a model (see `impasto models`)."
    if code == ErrorCode.UNKNOWN_CONCEPT:   # the sentence names the concept: no "concepts[0]:" before it
        if field and message.startswith(field + ":"):
            message = message[len(field) + 1:]
        return f"{sentence(message)} {sentence(host.concepts)}"
    if code in (ErrorCode.BAD_FIELD, ErrorCode.UNKNOWN_SAMPLER):
        return describe_field(message, field, host)
    if code == ErrorCode.OUT_OF_MEMORY:
        return (f"{sentence(message)} The daemon freed the memory and keeps running: try a smaller size, "
                f"a smaller batch or fewer concepts.")
    if code == ErrorCode.DUPLICATE_JOB:
        return "That job is already running."
    if code == ErrorCode.INTERNAL:
        return f"The daemon failed on this job: {sentence(message)} It keeps running; try other settings or a " \
               f"smaller picture."
    return sentence(message) or f"The daemon refused the job ({code})."


def describe_exception(exc: BaseException, endpoint: str = "", host: HostWords = HostWords()) -> str:
    """Anything raised while planning, talking to the daemon or reading the picture."""
    from .launcher import DaemonUnavailable  # here: errors.py itself needs no transport

    if isinstance(exc, (PlanError, DaemonUnavailable)):  # already says what was tried and what to do
        return sentence(exc.message)
    code = getattr(exc, "code", None)
    if isinstance(code, str) and hasattr(exc, "message"):
        return describe_error(code, getattr(exc, "message"), getattr(exc, "field", "") or "", endpoint, host)
    if isinstance(exc, TimeoutError):
        return f"The Impasto daemon{' at ' + endpoint if endpoint else ''} did not answer in time ({exc})."
    if isinstance(exc, MemoryError):
        return "Not enough memory to send this picture: select a smaller region or crop the canvas."
    return f"Something went wrong: {sentence(str(exc) or type(exc).__name__)}"
