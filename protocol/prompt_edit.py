""""Edit prompt" on a result: the client side of Prompt-to-Prompt, once for every front end.

A Prompt-to-Prompt edit repaints a picture from its own seed and settings
with a changed prompt (the daemon keeps the layout: ``messages.PromptEdit``).
So the client needs the *original*: the prompt, seed, size and settings the
picture was painted with.  It comes from a staged or listed result (the
request that made it and the seed it reports: :func:`original_from_request`)
or from a saved picture's A1111 parameters (:func:`original_from_parameters`,
``impasto generate --p2p-from PICTURE``).  :func:`plan_prompt_edit` turns an
original and the artist's new prompt into a checked request, with the
protocol's refusals in an artist's words (:class:`PlanError`).

An edit of an edit is made from the first original: a saved edit carries its
original prompt (:func:`parameters_extra`), and the daemon can only rebuild
a layout from a prompt painted plainly at that seed.

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from .errors import PlanError
from .messages import Generate, Limits, PromptEdit, prompt_words
from .parameters import parse_parameters
from .planner import GENERATE, JobPlan, check, plan_job
from .settings import Settings

# A1111 "parameters" keys a saved edit carries (other readers show them as they are)
KEY_SOURCE = "P2P source prompt"
KEY_CROSS = "P2P cross replace"
KEY_SELF = "P2P self replace"
KEY_REWEIGHT = "P2P reweight"
KEY_LOCAL = "P2P local"

DEFAULT = PromptEdit()
#: the layout fraction of an edit that is not a colour change (the paper's own range, 0.2-0.6)
LAYOUT_DEFAULT = 0.4
#: ... and of an edit whose changed words are all colour words: the picture's layout held every step
LAYOUT_HELD = 1.0
#: colour names (and the shade words that go with them) an auto layout treats as "only the colour changes"
COLOUR_WORDS = frozenset("""
    red orange yellow green cyan blue purple violet magenta pink brown black white grey gray gold golden silver
    beige teal turquoise navy maroon crimson scarlet indigo lavender lime olive amber ivory tan khaki coral salmon
    peach mint aqua azure cerulean emerald ruby sapphire bronze copper charcoal chartreuse fuchsia mauve ochre
    rust sepia burgundy vermilion plum lilac cream
""".split())
SHADE_WORDS = frozenset("light dark pale bright deep pastel neon vivid muted".split())
#: a dialog's layout box (0-1 in steps of 0.05) reads "auto" one step below 0 (Qt's special value text)
LAYOUT_BOX_AUTO = -0.05
LAYOUT_BOX_TIP = ("Layout held: the fraction of the steps the picture's own structure is copied. Auto: every step "
                  f"when only colour words change (the same picture in another colour), else {LAYOUT_DEFAULT:g}")


def layout_from_box(value: float) -> Optional[float]:
    """A layout box's value as the edit's ``self_replace`` (None: auto)."""
    return None if value < 0 else float(value)
#: the edit's fields in an artist's words (refusals name them so)
FIELD_WORDS = {"p2p.source_prompt": "original prompt", "p2p.cross_replace": "word-map injection",
               "p2p.self_replace": "layout injection", "p2p.reweight_word": "re-weighted word",
               "p2p.reweight": "re-weighting factor", "p2p.local": "local edit", "p2p": "prompt edit"}


@dataclass
class Original:
    """A painted picture as an edit needs it: its settings (the seed it was painted with) and size."""

    settings: Settings
    size: Tuple[int, int]
    note: str = ""          # what the artist should know (e.g. "this picture is itself an edit of ...")


def original_from_request(request: Generate, seed: int, size: Optional[Tuple[int, int]] = None) -> Original:
    """The original of a result: the request that painted it and the seed the daemon reports for it."""
    settings = Settings.from_request(request, seed=seed)
    settings.batch_size = 1
    note = ""
    if request.p2p is not None:   # an edit of an edit: from the same original
        settings.prompt = request.p2p.source_prompt
        note = f"this picture is an edit of \"{request.p2p.source_prompt}\": the new edit is made from that"
    return Original(settings, size or (request.width, request.height), note)


def original_from_settings(settings: Settings, seed: int, size: Tuple[int, int],
                           info: Optional[Dict[str, object]] = None) -> Original:
    """The original of a staged or listed result: the settings it was made with, its seed and size.

    ``info`` is the result's ``Result.info``: when the result is itself an
    edit (``info["p2p"]``) the new edit is made from its original.
    """
    s = replace(settings, concepts=[dict(c) for c in settings.concepts])
    s.seed, s.batch_size = int(seed), 1
    note = ""
    edit = (info or {}).get("p2p")
    source = edit.get("source_prompt") if isinstance(edit, dict) else None
    if isinstance(source, str) and source.strip():
        s.prompt = source
        note = f"this picture is an edit of \"{source}\": the new edit is made from that"
    return Original(s, (int(size[0]), int(size[1])), note)


def original_from_parameters(text: str, fallback_size: Optional[Tuple[int, int]] = None) -> Original:
    """The original of a saved picture (its A1111 ``parameters`` text); a :class:`PlanError` without a seed."""
    params = parse_parameters(text)
    settings = params.settings
    if settings.seed < 0:
        raise PlanError("the picture names no seed, so its layout cannot be rebuilt for a prompt edit", "seed")
    if not settings.prompt.strip():
        raise PlanError("the picture names no prompt to edit", "prompt")
    if params.denoising is not None:
        raise PlanError("the picture was painted over another picture (it names a denoising strength): only "
                        "text-to-image pictures can be edited by their prompt", "p2p")
    size = params.size or fallback_size
    if size is None:
        raise PlanError("the picture names no size", "width")
    note = ""
    source = params.values.get(KEY_SOURCE, "").strip()
    if source:
        note = f"this picture is an edit of \"{source}\": the new edit is made from that"
        settings.prompt = source
    settings.batch_size = 1
    return Original(settings, size, note)


def changed_words(source: str, target: str) -> Tuple[List[str], List[str]]:
    """(words of ``source`` that are gone, words of ``target`` that are new), by a word-level diff."""
    import difflib

    a, b = prompt_words(source), prompt_words(target)
    gone, new = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            gone += a[i1:i2]
            new += b[j1:j2]
    return gone, new


def auto_layout(source: str, target: str) -> float:
    """The layout fraction of an edit whose ``self_replace`` is unset.

    A colour change ("a red pentagon" -> "a blue pentagon": every changed word a colour or a
    shade word, at least one a colour) holds the picture's layout every step (:data:`LAYOUT_HELD`):
    the artist asked for the same picture in another colour.  Anything else - a new noun, a new
    object, a re-weighting - gets :data:`LAYOUT_DEFAULT`, which leaves an outline free to change.
    Measured on the starter (docs/performance.md "Prompt-to-Prompt"): colour swaps kept the
    shape's mask in 91.2 % of held-out cases with the layout held, 79.4 % at 0.4; chosen on the
    tuning split (``bench/p2p_edit.py --tune``), where held also beat 0.4.
    """
    gone, new = changed_words(source, target)
    changed = gone + new
    if changed and all(w in COLOUR_WORDS or w in SHADE_WORDS for w in changed) \
            and any(w in COLOUR_WORDS for w in changed):
        return LAYOUT_HELD
    return LAYOUT_DEFAULT


def layout_of(edit: PromptEdit, target: str) -> float:
    """The layout fraction ``edit`` runs with for the new prompt ``target`` (its own, or :func:`auto_layout`)."""
    if edit.self_replace is not None:
        return float(edit.self_replace)
    return auto_layout(edit.source_prompt, target)


def plan_prompt_edit(original: Original, new_prompt: str, cross_replace: float = DEFAULT.cross_replace,
                     self_replace: Optional[float] = DEFAULT.self_replace, reweight_word: str = "",
                     reweight: float = DEFAULT.reweight, limits: Optional[Limits] = None,
                     settings: Optional[Settings] = None, local: bool = DEFAULT.local) -> JobPlan:
    """The checked request that repaints ``original`` with ``new_prompt`` (or re-weights one of its words).

    ``settings`` (default: the original's) may change knobs other than the
    prompt and seed, which stay the original's: they are what the layout is
    rebuilt from.
    """
    if original.settings.seed < 0:
        raise PlanError("a prompt edit needs the seed the picture was painted with", "seed")
    base = replace(settings or original.settings, concepts=[dict(c) for c in (settings or original.settings).concepts])
    base.prompt = (new_prompt or "").strip() or original.settings.prompt
    base.seed = original.settings.seed
    base.batch_size = 1
    plan = plan_job(original.size, base, GENERATE, limits=limits)
    plan.request.p2p = PromptEdit(source_prompt=original.settings.prompt.strip(), cross_replace=float(cross_replace),
                                  self_replace=None if self_replace is None else float(self_replace),
                                  reweight_word=reweight_word.strip(),
                                  reweight=float(reweight), local=bool(local))
    try:
        check(plan.request, limits)
    except PlanError as exc:
        word = FIELD_WORDS.get(exc.field)
        message = exc.message
        if word and message.lower().startswith(exc.field.lower() + ":"):
            message = word[:1].upper() + word[1:] + message[len(exc.field):]
        raise PlanError(message, exc.field) from None
    w, h = original.size
    plan.label = f"Edit prompt ({w}×{h})"
    return plan


def parameters_extra(request: Generate) -> Dict[str, str]:
    """The A1111 key/values a saved edit carries, so it can be re-run and edited again ({} for other jobs)."""
    edit = request.p2p
    if edit is None:
        return {}
    out = {KEY_SOURCE: edit.source_prompt, KEY_CROSS: f"{edit.cross_replace:g}", KEY_SELF: f"{layout_of(edit, request.prompt):g}",
           KEY_LOCAL: "yes" if edit.local else "no"}
    if edit.reweight_word:
        out[KEY_REWEIGHT] = f"{edit.reweight_word}:{edit.reweight:g}"
    return out


def parse_reweight(text: str) -> Tuple[str, float]:
    """``"blue:2.5"`` -> ("blue", 2.5); a :class:`PlanError` when it is not WORD:FACTOR."""
    word, sep, factor = (text or "").rpartition(":")
    try:
        value = float(factor)
    except ValueError:
        value = None
    if not sep or not word.strip() or value is None:
        raise PlanError(f"re-weighting {text!r} must look like WORD:FACTOR, e.g. blue:2", "p2p.reweight_word")
    return word.strip(), value
