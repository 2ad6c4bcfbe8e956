"""The typed request tree every Impasto client and the daemon share.

One module, plain dataclasses, standard library only: it is copied verbatim
into Krita's and GIMP's own Python.  A message is a dataclass whose class
attribute ``TYPE`` is its wire name; :mod:`.codec` turns it into ZeroMQ frames
(one JSON header + raw image frames) and back, checking every field's type.

Value ranges (steps, CFG, sizes, names) are checked by :func:`validate_job`
so clients can refuse bad input before sending and the daemon gives the same
typed error when they don't.

Over 500 lines on purpose: the whole request tree (every message type, error code,
limit and range check) is one module so the plug-ins vendor one file of truth; the
codec and the client core are separate modules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional, Tuple

# 2: no file paths on the wire (concept import/export carry the file's bytes), authenticated transport
PROTOCOL_VERSION = 2

SAMPLERS = ("euler", "euler_a", "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_karras", "lcm",
            # few-step models (SDXL-Lightning, SD/SDXL-Turbo, Hyper-SD, TCD LoRAs): trailing timesteps
            "euler_trailing", "euler_a_trailing", "ddim_trailing", "tcd")
FILL_MODES = ("original", "blur", "neutral", "noise")
PRIORITIES = ("back", "front")
TRAIN_METHODS = ("lora", "custom_diffusion")


class ErrorCode:
    """Machine-readable error codes carried by :class:`Error` events."""

    BAD_MESSAGE = "bad_message"          # undecodable header, unknown type, wrong frames
    BAD_FIELD = "bad_field"              # a field has the wrong type or an out-of-range value
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_SAMPLER = "unknown_sampler"
    UNKNOWN_CONCEPT = "unknown_concept"
    NO_MODEL = "no_model"                # nothing installed to run the job with
    DUPLICATE_JOB = "duplicate_job"
    NOT_FOUND = "not_found"              # cancel/rename of something that isn't there (or isn't yours)
    INTERNAL = "internal"                # the engine failed; the daemon keeps serving
    UNAVAILABLE = "unavailable"          # client side: daemon not answering
    DAEMON_RESTARTED = "daemon_restarted"  # client side: the daemon no longer knows a pending job
    CLIENT_CLOSED = "client_closed"      # client side: the client was closed with jobs pending
    OUT_OF_MEMORY = "out_of_memory"      # the device ran out of memory at this size; the daemon freed it
    UNAUTHORIZED = "unauthorized"        # client side: no credential to reach the daemon with
    QUEUE_FULL = "queue_full"            # a queue cap (field names which) is reached: retry later


class ProtocolError(Exception):
    """A typed protocol error: ``code`` for machines, ``message`` for people.

    ``field`` names the offending request field when there is one, so a client
    can highlight it in its form.
    """

    def __init__(self, code: str, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.message} [{self.code}]"


# --------------------------------------------------------------------------- images


@dataclass
class Image:
    """Raw 8-bit pixels travelling in their own frame (never base64, never files).

    ``format`` is ``"rgba8"`` (4 bytes a pixel, straight alpha) or ``"gray8"``
    (1 byte a pixel: masks, where soft values mean partial selection).
    """

    width: int
    height: int
    data: bytes
    format: str = "rgba8"

    CHANNELS: ClassVar[Dict[str, int]] = {"rgba8": 4, "gray8": 1}

    def expected_size(self) -> int:
        return self.width * self.height * self.CHANNELS[self.format]

    def check(self, name: str = "image") -> None:
        if self.format not in self.CHANNELS:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: unknown pixel format {self.format!r}", name)
        if self.width <= 0 or self.height <= 0:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: size {self.width}x{self.height} is not positive", name)
        if len(self.data) != self.expected_size():
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"{name}: {len(self.data)} bytes do not match {self.width}x{self.height} {self.format} "
                f"({self.expected_size()} bytes expected)",
                name,
            )


@dataclass
class Blob:
    """A file's bytes travelling in their own frame (concept import/export).

    Why: the daemon never opens a path a request names; a client reads or
    writes the artist's files itself and only bytes cross the wire.
    """

    data: bytes

    def check(self, name: str = "file", limit: Optional[int] = None) -> None:
        if limit is not None and len(self.data) > limit:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: {len(self.data)} bytes are over the cap of "
                                f"{limit} bytes", name)


@dataclass
class Patch:
    """The changed region of an edit: paste ``image`` (alpha = feathered mask) at (x, y)."""

    x: int
    y: int
    image: Image


# --------------------------------------------------------------------------- client -> daemon


@dataclass
class Hello:
    TYPE: ClassVar[str] = "hello"
    protocol: int = PROTOCOL_VERSION
    client: str = ""
    ref: str = ""


@dataclass
class Generate:
    """One image job: text-to-image, img2img (``init_image``) or edit (+ ``mask``).

    The job kind follows from which images are present, so a client fills in
    only what the artist gave it.  ``strength`` is the denoising strength
    (1.0 = repaint fully); it only matters when there is an init image.
    """

    TYPE: ClassVar[str] = "generate"
    job: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1                       # -1: the daemon picks one and reports it
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512                     # ignored when init_image is given (its size wins)
    height: int = 512
    batch_size: int = 1
    sampler: str = "euler_a"
    model: str = ""                      # "": the daemon's default model
    concepts: List[Tuple[str, float]] = field(default_factory=list)
    preview: bool = False
    priority: str = "back"
    # img2img and editing
    init_image: Optional[Image] = None
    strength: float = 0.75
    mask: Optional[Image] = None         # gray8, same size as init_image
    mask_blur: int = 4                   # feather, px
    grow: int = 0                        # px; negative shrinks the mask
    fill: str = "original"
    padding: int = 32                    # "only masked" context around the mask, px
    whole_picture: bool = False
    colour_match: bool = True            # shift the inpainted colours to meet the surroundings at the seam
    # live painting (docs/live.md): a repaint after a stroke.  The daemon keeps its prompt's text embeddings,
    # and a newer live job of the same client supersedes it (queued: cancelled; running: stopped) - newest wins
    live: bool = False

    @property
    def kind(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "img2img" if self.mask is None else "edit"


@dataclass
class Train:
    """Train a personal concept (LoRA / Custom Diffusion) from a few images."""

    TYPE: ClassVar[str] = "train"
    job: str = ""
    name: str = ""
    images: List[Image] = field(default_factory=list)
    captions: List[str] = field(default_factory=list)
    trigger: str = ""
    class_noun: str = ""
    method: str = "lora"
    # 0 = the model's own recommendation (its impasto.json "concept_training"),
    # else the SD1.5 values of TRAIN_FALLBACKS: the artist defaults need no tuning per model
    rank: int = 0
    steps: int = 0
    learning_rate: float = 0.0
    resolution: int = 0                  # 0: the model's native size
    prior_preservation: bool = True
    class_images: int = 20
    seed: int = 0
    model: str = ""
    sample_every: int = 100
    checkpoint_every: int = 50
    resume: bool = False
    preview: bool = True
    priority: str = "back"
    # also a LoRA on the text encoder (changes how every prompt is read); None: the model's recommendation, else off
    train_text_encoder: Optional[bool] = None
    trigger_embedding: bool = True       # learn the trigger word's own token embeddings (only where it is written)
    gradient_checkpointing: bool = False  # less GPU memory for ~30% more time per step


# What a Train request's 0s mean on a model that recommends nothing (diffusers' SD1.5 values).
TRAIN_FALLBACKS = {"rank": 8, "steps": 400, "learning_rate": 1e-4}


@dataclass
class Cancel:
    TYPE: ClassVar[str] = "cancel"
    job: str = ""


@dataclass
class StatusRequest:
    TYPE: ClassVar[str] = "status"
    ref: str = ""


@dataclass
class ListModels:
    TYPE: ClassVar[str] = "models"
    ref: str = ""


@dataclass
class ListConcepts:
    TYPE: ClassVar[str] = "concepts"
    ref: str = ""


@dataclass
class ConceptAction:
    """Rename, delete, import or export a concept in the daemon's library.

    No paths: ``import`` carries the LoRA file's bytes in ``file`` (and its
    bare ``filename`` for the record); ``export`` answers with the bytes in
    :attr:`Done.file` and the client writes them.
    """

    TYPE: ClassVar[str] = "concept_action"
    ref: str = ""
    action: str = ""                     # rename | delete | import | export
    name: str = ""
    new_name: str = ""
    trigger: str = ""
    file: Optional[Blob] = None          # import: the .safetensors file's bytes
    filename: str = ""                   # import: the file's own name (no folders), kept as "imported_from"


@dataclass
class Shutdown:
    TYPE: ClassVar[str] = "shutdown"
    ref: str = ""


# --------------------------------------------------------------------------- daemon -> client


@dataclass
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    protocol: int = PROTOCOL_VERSION
    daemon: str = ""
    device: str = ""
    ref: str = ""


@dataclass
class Accepted:
    TYPE: ClassVar[str] = "accepted"
    job: str = ""
    position: int = 0                    # 0: runs next (or now)


@dataclass
class Progress:
    TYPE: ClassVar[str] = "progress"
    job: str = ""
    step: int = 0
    total: int = 0
    preview: Optional[Image] = None
    loss: Optional[float] = None
    stage: str = ""                      # e.g. "denoise", "class images", "train"


@dataclass
class Result:
    TYPE: ClassVar[str] = "result"
    job: str = ""
    images: List[Image] = field(default_factory=list)
    seeds: List[int] = field(default_factory=list)
    patches: List[Patch] = field(default_factory=list)   # edits: the changed region of each image
    steps_run: int = 0
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)


@dataclass
class Error:
    TYPE: ClassVar[str] = "error"
    code: str = ErrorCode.INTERNAL
    message: str = ""
    field: str = ""
    job: str = ""
    ref: str = ""


@dataclass
class Cancelled:
    TYPE: ClassVar[str] = "cancelled"
    job: str = ""
    steps: Optional[int] = None          # steps (denoise or training) that actually ran; None: cancelled in the queue


@dataclass
class Status:
    TYPE: ClassVar[str] = "status_reply"
    ref: str = ""
    queue: int = 0
    running: str = ""                    # the running job's id when it is yours
    jobs: List[str] = field(default_factory=list)  # your queued + running job ids
    busy: bool = False
    device: str = ""
    model: str = ""                      # the loaded model ("" = none yet)
    default_model: str = ""
    version: str = ""


@dataclass
class Models:
    TYPE: ClassVar[str] = "models_reply"
    ref: str = ""
    models: List[Dict[str, object]] = field(default_factory=list)
    default: str = ""
    models_dir: str = ""


@dataclass
class Concepts:
    TYPE: ClassVar[str] = "concepts_reply"
    ref: str = ""
    concepts: List[Dict[str, object]] = field(default_factory=list)


@dataclass
class Done:
    """Acknowledges a control request that has no other answer (shutdown, concept actions)."""

    TYPE: ClassVar[str] = "done"
    ref: str = ""
    info: Dict[str, object] = field(default_factory=dict)
    file: Optional[Blob] = None          # export: the kohya .safetensors bytes


MESSAGE_TYPES = {
    cls.TYPE: cls
    for cls in (
        Hello, Generate, Train, Cancel, StatusRequest, ListModels, ListConcepts, ConceptAction, Shutdown,
        Welcome, Accepted, Progress, Result, Error, Cancelled, Status, Models, Concepts, Done,
    )
}
CLIENT_REQUESTS = (Hello, Generate, Train, Cancel, StatusRequest, ListModels, ListConcepts, ConceptAction, Shutdown)
JOB_REQUESTS = (Generate, Train)


# --------------------------------------------------------------------------- validation


@dataclass
class Limits:
    """Caps a daemon enforces; clients use the same defaults to check early."""

    max_pixels: int = 4096 * 4096
    max_side: int = 8192
    max_batch: int = 8
    max_steps: int = 200
    max_cfg: float = 30.0
    max_train_steps: int = 5000
    max_train_images: int = 100
    max_concept_bytes: int = 256 << 20          # an imported LoRA file (SD1.5 rank 128 is ~150 MB)
    max_queued_jobs_per_client: int = 32        # jobs one client may have waiting
    max_queued_image_bytes: int = 512 << 20     # image bytes held by all pending jobs together

    def max_frame_bytes(self) -> int:
        """The largest legal frame plus headroom: the daemon's ZMQ_MAXMSGSIZE (libzmq counts per frame)."""
        return max(self.max_pixels * 4, self.max_concept_bytes, 1 << 20) + (1 << 20)


# fullmatch: "p1\n" or "p1 " is not the name "p1" (``$`` would let a trailing newline through)
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.\-+()]{0,62}[A-Za-z0-9_.\-+()])?")
_JOB_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
TRIGGER_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")


def _bad(field_name: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"{field_name}: {message}", field_name)


def check_name(value: str, field_name: str = "name") -> str:
    """Names of models and concepts become folder names: no separators, no ``..``."""
    if not isinstance(value, str) or not value:
        raise _bad(field_name, "must not be empty")
    if "/" in value or "\\" in value or ".." in value or "\x00" in value:
        raise _bad(field_name, f"{value!r} must not contain path separators or '..'")
    if not _NAME_RE.fullmatch(value):
        raise _bad(field_name, f"{value!r} may use letters, digits, space and _ . - + ( ) (1-64 characters, "
                               "no space at either end)")
    return value


def check_job_id(value: str) -> str:
    if not isinstance(value, str) or not _JOB_RE.fullmatch(value):
        raise _bad("job", f"{value!r} must be 1-64 characters of letters, digits and _ . : -")
    return value


def _check_range(name: str, value, lo, hi) -> None:
    if not (lo <= value <= hi):
        raise _bad(name, f"{value} is outside {lo}..{hi}")


def validate_job(msg, limits: Optional[Limits] = None) -> None:
    """Check a job request's values; raises :class:`ProtocolError` naming the field."""
    limits = limits or Limits()
    check_job_id(msg.job)
    if msg.priority not in PRIORITIES:
        raise _bad("priority", f"{msg.priority!r} is not one of {', '.join(PRIORITIES)}")
    if msg.model:
        check_name(msg.model, "model")
    if isinstance(msg, Generate):
        _validate_generate(msg, limits)
    elif isinstance(msg, Train):
        _validate_train(msg, limits)


def _check_size(name_w: str, w: int, name_h: str, h: int, limits: Limits) -> None:
    for name, v in ((name_w, w), (name_h, h)):
        if v <= 0:
            raise _bad(name, f"{v} must be positive")
        if v > limits.max_side:
            raise _bad(name, f"{v} is over the maximum side of {limits.max_side} px")
    if w * h > limits.max_pixels:
        raise _bad(name_w, f"{w}x{h} is over the cap of {limits.max_pixels} pixels")


def _validate_generate(msg: Generate, limits: Limits) -> None:
    _check_range("steps", msg.steps, 1, limits.max_steps)
    _check_range("cfg_scale", msg.cfg_scale, 0.0, limits.max_cfg)
    _check_range("batch_size", msg.batch_size, 1, limits.max_batch)
    if msg.sampler not in SAMPLERS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_SAMPLER, f"sampler: {msg.sampler!r} is not one of {', '.join(SAMPLERS)}", "sampler"
        )
    if msg.seed < -1 or msg.seed >= 2**63:
        raise _bad("seed", f"{msg.seed} must be -1 (random) or 0..2^63-1")
    for i, pair in enumerate(msg.concepts):
        check_name(pair[0], f"concepts[{i}]")
        _check_range(f"concepts[{i}].weight", pair[1], -4.0, 4.0)
    if not isinstance(msg.live, bool):
        raise _bad("live", f"must be true or false, not {msg.live!r}")
    if msg.live and msg.init_image is None:
        raise _bad("live", "a live job repaints the canvas: it needs an init_image")
    if msg.live and msg.batch_size != 1:
        raise _bad("live", f"a live job paints one picture, not a batch of {msg.batch_size}")
    if msg.init_image is None:
        _check_size("width", msg.width, "height", msg.height, limits)
        if msg.mask is not None:
            raise _bad("mask", "a mask needs an init_image to edit")
        return
    msg.init_image.check("init_image")
    _check_size("init_image.width", msg.init_image.width, "init_image.height", msg.init_image.height, limits)
    _check_range("strength", msg.strength, 0.0, 1.0)
    if msg.mask is not None:
        msg.mask.check("mask")
        if msg.mask.format != "gray8":
            raise _bad("mask", f"must be gray8, not {msg.mask.format}")
        if (msg.mask.width, msg.mask.height) != (msg.init_image.width, msg.init_image.height):
            raise _bad(
                "mask",
                f"size {msg.mask.width}x{msg.mask.height} differs from the image's "
                f"{msg.init_image.width}x{msg.init_image.height}",
            )
    if msg.fill not in FILL_MODES:
        raise _bad("fill", f"{msg.fill!r} is not one of {', '.join(FILL_MODES)}")
    _check_range("mask_blur", msg.mask_blur, 0, 256)
    _check_range("grow", msg.grow, -256, 256)
    _check_range("padding", msg.padding, 0, 2048)
    if not isinstance(msg.colour_match, bool):
        raise _bad("colour_match", f"must be true or false, not {msg.colour_match!r}")


def _validate_train(msg: Train, limits: Limits) -> None:
    check_name(msg.name, "name")
    if not msg.trigger.strip():
        raise _bad("trigger", "a trigger word is required")
    if not TRIGGER_RE.fullmatch(msg.trigger.strip()):
        raise _bad("trigger", f"{msg.trigger!r} must be one word of letters, digits, _ or -")
    if msg.method not in TRAIN_METHODS:
        raise _bad("method", f"{msg.method!r} is not one of {', '.join(TRAIN_METHODS)}")
    if not msg.images:
        raise _bad("images", "no images: give 3-20 pictures of the concept")
    _check_range("images", len(msg.images), 1, limits.max_train_images)
    for i, img in enumerate(msg.images):
        img.check(f"images[{i}]")
    if msg.captions and len(msg.captions) != len(msg.images):
        raise _bad("captions", f"{len(msg.captions)} captions for {len(msg.images)} images")
    if msg.steps != 0:
        _check_range("steps", msg.steps, 1, limits.max_train_steps)
    if msg.rank != 0:
        _check_range("rank", msg.rank, 1, 128)
    if msg.learning_rate != 0:
        _check_range("learning_rate", msg.learning_rate, 1e-7, 1e-1)
    _check_range("class_images", msg.class_images, 0, 500)
    _check_range("resolution", msg.resolution, 0, 2048)
    _check_range("sample_every", msg.sample_every, 0, 100000)
    _check_range("checkpoint_every", msg.checkpoint_every, 0, 100000)
