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
            "euler_trailing", "euler_a_trailing", "ddim_trailing", "tcd",
            # LCM with DDIM's quadratic step selection (the starter's LCM-LoRA preset; engine/quadratic_lcm.py)
            "lcm_quadratic")
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
    # control layers (ControlNet / T2I-Adapter units), each with its own image at the job's picture size
    control: List["ControlUnit"] = field(default_factory=list)
    # Prompt-to-Prompt: repaint the picture of ``p2p.source_prompt`` at this seed with ``prompt`` instead
    p2p: Optional["PromptEdit"] = None
    # live painting (docs/live.md): a repaint after a stroke.  The daemon keeps its prompt's text embeddings,
    # and a newer live job of the same client supersedes it (queued: cancelled; running: stopped) - newest wins
    live: bool = False
    # decode (TAESD: and encode) with the model's fast autoencoder - its trained preview decoder or TAESD -
    # instead of the full VAE; None: on for live jobs (their result is the preview), off otherwise
    fast_vae: Optional[bool] = None

    @property
    def kind(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "img2img" if self.mask is None else "edit"


# what a control unit's image is turned into before the control model sees it ("raw": as it is)
CONTROL_TYPES = ("raw", "canny", "scribble", "softedge", "lineart", "depth", "pose")
MAX_CONTROL_UNITS = 4


@dataclass
class ControlUnit:
    """One control layer of a job: a picture steering the composition through a control model.

    ``type`` is the preprocessor the daemon runs on ``image`` (``raw``: the
    image already is the control map); ``model`` names a control model from
    the models folder ("": the one installed that fits the base model and the
    type).  ``strength`` scales the model's residuals (0: the unit is left
    out, bit-identical to no unit); ``start`` / ``end`` are the fractions of
    the schedule it acts on.  ``image`` is at the job's picture size (the
    window an "only masked" edit sends), any other size is resized with a
    warning when its aspect is close.
    """

    type: str = "raw"
    image: Optional[Image] = None
    model: str = ""
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass
class PromptEdit:
    """Prompt-to-Prompt (Hertz et al. 2022): edit a generated picture by editing its prompt.

    Rides on a text-to-image :class:`Generate` whose ``prompt`` is the new
    prompt and whose ``seed`` is the picture's seed.  The daemon paints the
    original (``source_prompt``) and the edit side by side from the same noise
    and, for the first ``cross_replace`` of the steps, the edit's words look
    at the places the original's words looked (its cross-attention maps), so
    the layout stays while the changed words change what is there;
    ``self_replace`` also copies the original's self-attention (how the
    picture's parts relate) for that first fraction (unset: every step when
    only colour words change - the picture in another colour - else 0.4).  ``reweight_word``
    (a word or phrase of the new prompt) has its attention multiplied by
    ``reweight`` in those steps: more or less of it, same layout.  ``local``
    (the paper's local editing) keeps everything but what the changed words
    look at exactly as the original painted it.
    """

    source_prompt: str = ""
    # fraction of the steps the original's word maps are injected; 1.0 (not the paper's 0.8): measured on the
    # starter, 0.8 kept the shape in 76.5 % of colour swaps and 1.0 in 100 % (docs/performance.md)
    cross_replace: float = 1.0
    # fraction of the steps the original's self-attention (its layout) is injected; None: auto - every step when
    # the edit only changes colour words, else 0.4 (prompt_edit.auto_layout; measured in docs/performance.md)
    self_replace: Optional[float] = None
    reweight_word: str = ""
    reweight: float = 1.0
    # the paper's local editing: the edit differs from the original only where the changed words look
    # (their attention maps as a mask); everything else stays the original's. False: the whole picture
    local: bool = True


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


SLIDER_MODES = ("text", "images")
SLIDER_WEIGHT_RANGE = (-3.0, 3.0)   # a slider concept's weight: dial the attribute down (-) or up (+)


@dataclass
class TrainSlider:
    """Train a Concept Slider: a LoRA used with a signed weight to dial one attribute down or up.

    ``mode`` "text" (the paper's text sliders, no pictures): at weight +1 the LoRA
    makes the model predict, for ``target``, what the frozen model predicts for it
    plus ``guidance`` x (prediction for ``positive`` - prediction for ``negative``);
    at -1 the opposite.  ``preserve`` phrases are appended to all three prompts in
    turn (what must not change: "circle on a white background", "old man"...).
    ``mode`` "images" (visual sliders): pairs of pictures that differ only in the
    attribute, ``images`` the low end (-1) and ``images_high`` the high end (+1),
    pair i in both lists; ``captions`` one per pair ([]: ``target``).
    0s mean the model's recommendation, as in :class:`Train`.
    """

    TYPE: ClassVar[str] = "train_slider"
    job: str = ""
    name: str = ""
    mode: str = "text"
    target: str = ""
    positive: str = ""
    negative: str = ""
    preserve: List[str] = field(default_factory=list)
    guidance: float = 0.0                # 0: SLIDER_FALLBACKS["guidance"]
    images: List[Image] = field(default_factory=list)        # images mode: the low end of each pair
    images_high: List[Image] = field(default_factory=list)   # images mode: the high end of each pair
    captions: List[str] = field(default_factory=list)
    base_pictures: int = 16              # text mode: pictures of the target the base model draws (cached)
    rank: int = 0
    steps: int = 0
    learning_rate: float = 0.0
    resolution: int = 0
    seed: int = 0
    model: str = ""
    sample_every: int = 100
    checkpoint_every: int = 50
    resume: bool = False
    preview: bool = True
    priority: str = "back"
    gradient_checkpointing: bool = False


# What a TrainSlider's 0s mean on a model that recommends nothing (the Concept Sliders paper's SD1.5 values).
SLIDER_FALLBACKS = {"rank": 4, "steps": 500, "learning_rate": 2e-4, "guidance": 1.0}


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
    # warnings raised since the last event (size changed, trigger word missing...), sent while the job runs;
    # the result repeats them all.  An event carrying only warnings has total 0 when no step was counted yet.
    # Left out of the header while empty (omit_empty), so clients installed before it still read progress.
    warnings: List[str] = field(default_factory=list, metadata={"omit_empty": True})


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
    controls: List[Dict[str, object]] = field(default_factory=list)   # control models (ControlNet, T2I-Adapter)


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
        Welcome, Accepted, Progress, Result, Error, Cancelled, Status, Models, Concepts, Done, TrainSlider,
    )
}
CLIENT_REQUESTS = (Hello, Generate, Train, Cancel, StatusRequest, ListModels, ListConcepts, ConceptAction, Shutdown,
                   TrainSlider)
JOB_REQUESTS = (Generate, Train, TrainSlider)


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
    elif isinstance(msg, TrainSlider):
        _validate_train_slider(msg, limits)


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
    _validate_control(msg, limits)
    if msg.p2p is not None:
        _validate_p2p(msg)
    if not isinstance(msg.live, bool):
        raise _bad("live", f"must be true or false, not {msg.live!r}")
    if msg.fast_vae is not None and not isinstance(msg.fast_vae, bool):
        raise _bad("fast_vae", f"must be true, false or null (live jobs only), not {msg.fast_vae!r}")
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


def _validate_control(msg: Generate, limits: Limits) -> None:
    """Each control unit: a known type, an image within the caps, strength 0..2, 0 <= start < end <= 1."""
    if len(msg.control) > MAX_CONTROL_UNITS:
        raise _bad("control", f"{len(msg.control)} control units: at most {MAX_CONTROL_UNITS}")
    if msg.control and getattr(msg, "p2p", None) is not None:
        raise _bad("control", "a Prompt-to-Prompt edit repaints its original picture as it was made: control "
                              "layers are not applied to it (leave them out)")
    for i, unit in enumerate(msg.control):
        name = f"control[{i}]"
        if unit.type not in CONTROL_TYPES:
            raise _bad(f"{name}.type", f"{unit.type!r} is not one of {', '.join(CONTROL_TYPES)}")
        if unit.image is None:
            raise _bad(f"{name}.image", "a control unit needs an image")
        unit.image.check(f"{name}.image")
        _check_size(f"{name}.image.width", unit.image.width, f"{name}.image.height", unit.image.height, limits)
        if unit.model:
            check_name(unit.model, f"{name}.model")
        _check_range(f"{name}.strength", unit.strength, 0.0, 2.0)
        _check_range(f"{name}.start", unit.start, 0.0, 1.0)
        _check_range(f"{name}.end", unit.end, 0.0, 1.0)
        if unit.start >= unit.end:
            raise _bad(f"{name}.end", f"the range {unit.start:g}..{unit.end:g} is empty: start must be before end")


# Prompt-to-Prompt: how far an edit may stray from the original prompt, and the re-weighting range
P2P_REWEIGHT_RANGE = (-3.0, 10.0)
_P2P_WEIGHT = re.compile(r":\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*\)")
_P2P_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def prompt_words(text: str) -> List[str]:
    """The words of a prompt, lower case, without A1111 weighting syntax (``(red:1.3)`` is ``red``)."""
    return _P2P_WORD.findall(_P2P_WEIGHT.sub(")", text.replace("BREAK", " ")).lower())


def prompt_edit_changes(source: str, target: str) -> Tuple[int, int]:
    """(words of ``target`` that are new, words of ``source`` that are gone), by a word-level diff."""
    import difflib

    a, b = prompt_words(source), prompt_words(target)
    kept = sum(blk.size for blk in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return len(b) - kept, len(a) - kept


def p2p_max_changes(target: str) -> int:
    """At most half the new prompt's words (at least one) may differ: past that the original's
    attention maps no longer describe the new prompt and the "edit" is a different picture."""
    return max(1, len(prompt_words(target)) // 2)


def _validate_p2p(msg: Generate) -> None:
    edit = msg.p2p
    if not isinstance(edit, PromptEdit):
        raise _bad("p2p", f"must be a prompt edit object, not {type(edit).__name__}")
    if msg.init_image is not None:
        raise _bad("p2p", "Prompt-to-Prompt edits a text-to-image picture; a job with an init image cannot be one")
    if msg.seed < 0:
        raise _bad("seed", "Prompt-to-Prompt repaints a picture from its own seed: give the picture's seed, not -1")
    if not edit.source_prompt.strip():
        raise _bad("p2p.source_prompt", "the original picture's prompt is empty")
    if not prompt_words(msg.prompt):
        raise _bad("prompt", "the new prompt has no words")
    for name in ("cross_replace", "self_replace", "reweight"):
        value = getattr(edit, name)
        if name == "self_replace" and value is None:      # auto
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise _bad(f"p2p.{name}", f"must be a number, not {value!r}")
    _check_range("p2p.cross_replace", edit.cross_replace, 0.0, 1.0)
    if edit.self_replace is not None:
        _check_range("p2p.self_replace", edit.self_replace, 0.0, 1.0)
    _check_range("p2p.reweight", edit.reweight, *P2P_REWEIGHT_RANGE)
    if not isinstance(edit.local, bool):
        raise _bad("p2p.local", f"must be true or false, not {edit.local!r}")
    new, gone = prompt_edit_changes(edit.source_prompt, msg.prompt)
    limit = p2p_max_changes(msg.prompt)
    if max(new, gone) > limit:
        raise _bad("prompt", f"the edit changes {max(new, gone)} words of the original prompt; Prompt-to-Prompt "
                             f"keeps the picture's layout for edits of at most {limit} (half the prompt's words)")
    if edit.reweight_word.strip():
        word = prompt_words(edit.reweight_word)
        words = prompt_words(msg.prompt)
        if not word or not any(words[i:i + len(word)] == word for i in range(len(words))):
            raise _bad("p2p.reweight_word", f"{edit.reweight_word!r} is not a word of the new prompt")
    elif edit.reweight != 1.0:
        raise _bad("p2p.reweight_word", "a re-weighting factor needs the word to re-weight")
    if edit.source_prompt.strip() == msg.prompt.strip() and edit.reweight == 1.0:
        raise _bad("prompt", "the new prompt is the original and no word is re-weighted: there is nothing to edit")


def _check_training_knobs(msg, limits: Limits) -> None:
    """The knobs every training job has (concept and slider): 0 = the model's or the trainer's default."""
    if msg.steps != 0:
        _check_range("steps", msg.steps, 1, limits.max_train_steps)
    if msg.rank != 0:
        _check_range("rank", msg.rank, 1, 128)
    if msg.learning_rate != 0:
        _check_range("learning_rate", msg.learning_rate, 1e-7, 1e-1)
    _check_range("resolution", msg.resolution, 0, 2048)
    _check_range("sample_every", msg.sample_every, 0, 100000)
    _check_range("checkpoint_every", msg.checkpoint_every, 0, 100000)


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
    _check_training_knobs(msg, limits)
    _check_range("class_images", msg.class_images, 0, 500)


def check_slider_weight(value: float, field_name: str = "weight") -> float:
    """A slider concept's weight: -3..+3 (negative dials the attribute down)."""
    lo, hi = SLIDER_WEIGHT_RANGE
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (lo <= value <= hi):
        raise _bad(field_name, f"{value} is outside a slider's range {lo:+g}..{hi:+g}")
    return float(value)


def _validate_train_slider(msg: TrainSlider, limits: Limits) -> None:
    check_name(msg.name, "name")
    if msg.mode not in SLIDER_MODES:
        raise _bad("mode", f"{msg.mode!r} is not one of {', '.join(SLIDER_MODES)}")
    if msg.mode == "text":
        for name in ("target", "positive", "negative"):
            if not getattr(msg, name).strip():
                raise _bad(name, "a text slider needs a target prompt and the positive and negative attribute "
                                 "prompts (e.g. 'a person', 'a smiling person', 'a frowning person')")
        if msg.positive.strip() == msg.negative.strip():
            raise _bad("negative", "the positive and negative prompts are the same: nothing to slide between")
        if msg.images or msg.images_high:
            raise _bad("images", "a text slider takes no pictures (use mode 'images' for picture pairs)")
        _check_range("base_pictures", msg.base_pictures, 1, 500)
    else:
        if len(msg.images) < 2:
            raise _bad("images", "an image-pair slider needs at least 2 pairs of pictures")
        if len(msg.images_high) != len(msg.images):
            raise _bad("images_high", f"{len(msg.images_high)} high-end pictures for {len(msg.images)} low-end "
                                      "ones: give pairs")
        _check_range("images", len(msg.images), 2, limits.max_train_images)
        for name in ("images", "images_high"):
            for i, img in enumerate(getattr(msg, name)):
                img.check(f"{name}[{i}]")
        if msg.captions and len(msg.captions) != len(msg.images):
            raise _bad("captions", f"{len(msg.captions)} captions for {len(msg.images)} pairs")
    _check_range("preserve", len(msg.preserve), 0, 256)
    if msg.guidance != 0:
        _check_range("guidance", msg.guidance, 0.01, 20.0)
    _check_training_knobs(msg, limits)
