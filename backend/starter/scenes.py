"""The richer procedural domain of the next starter: many shapes, sizes, places, counts.

A scene is one to three flat shapes on a flat background, 128 px native, e.g.

    a small red pentagon on the left and a big white oval at the top right on a blue background
    a green chevron on a black background                        (plain: no size, no place)

Why: a starter that knows three shapes in one sentence pattern has no general
idea of "a shape" for a new concept to lean on (issue 20).  This domain gives it
12 shape families, two named sizes, nine named places and object counts, while
the concept benchmark's families (``families.HELD_OUT_FAMILIES``) never appear.

The split is fixed before any training or tuning and is a pure function of the
names (hash based, like ``domain.py``):

* families: ``families.TRAIN_FAMILIES`` only; held-out families are rejected by
  every sampling function here (``check_scene``);
* 20 % of the (family, colour, background) triples are held out of training
  (``eval_triples``): the prompt-following measure uses them.

Everything is deterministic from a seed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from . import families as FAM
from .domain import COLOR_NAMES, COLORS, CLASS_NOUN

NATIVE_SIZE = 128
SIZES: Dict[str, Tuple[float, float]] = {"small": (0.09, 0.12), "big": (0.15, 0.19)}
#: size of an object in a plain caption (no size word): anywhere in this range
PLAIN_RADIUS = (0.16, 0.30)
PLACES: Tuple[str, ...] = (
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
)
_PLACE_PHRASE = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}
MAX_ROTATION_DEG = 15.0
HELD_OUT_FRACTION = 0.2
GENERIC_CAPTION_FRACTION = 0.1
#: probabilities of 1, 2, 3 objects; of a one-object scene being captioned plainly
COUNT_P = (0.5, 0.3, 0.2)
PLAIN_P = 0.4
_SUPERSAMPLE = 4

#: every word a caption of this domain can contain (held-out family names are not words here)
DOMAIN_WORDS: Tuple[str, ...] = (
    ("a", "an", "on", "at", "in", "the", "and", "background", CLASS_NOUN, "small", "big",
     "left", "right", "top", "bottom", "center") + FAM.TRAIN_FAMILIES + COLOR_NAMES
)

Triple = Tuple[str, str, str]  # (family, fg, bg)


@dataclass
class Obj:
    family: str
    fg: str
    size: Optional[str]  # None: plain caption
    place: Optional[str]
    cx: float
    cy: float
    r: float
    rot: float


@dataclass
class Scene:
    bg: str
    objects: List[Obj] = field(default_factory=list)

    def triples(self) -> List[Triple]:
        return [(o.family, o.fg, self.bg) for o in self.objects]


# ------------------------------------------------------------------ the split
def _key(t: Triple) -> int:
    return int.from_bytes(hashlib.sha256(("impasto-scenes-split:%s|%s|%s" % t).encode()).digest()[:8], "big")


def _split() -> Tuple[List[Triple], List[Triple]]:
    allt = [(f, fg, bg) for f in FAM.TRAIN_FAMILIES for fg in COLOR_NAMES for bg in COLOR_NAMES if fg != bg]
    n_eval = int(round(HELD_OUT_FRACTION * len(allt)))
    held, rest = set(), set(allt)
    for t in sorted(allt, key=_key):  # hold out only if every attribute pair stays in training
        if len(held) >= n_eval:
            break
        r2 = rest - {t}
        f, fg, bg = t
        if (any(x[0] == f and x[1] == fg for x in r2) and any(x[0] == f and x[2] == bg for x in r2)
                and any(x[1] == fg and x[2] == bg for x in r2)):
            held.add(t)
            rest = r2
    return [t for t in allt if t not in held], [t for t in allt if t in held]


_TRAIN, _EVAL = _split()
_TRAIN_SET = frozenset(_TRAIN)


def train_triples() -> List[Triple]:
    return list(_TRAIN)


def eval_triples() -> List[Triple]:
    """Held-out (family, colour, background) triples: never in a training scene."""
    return list(_EVAL)


def check_scene(scene: Scene, training: bool = True) -> None:
    """Raise ValueError if the scene breaks the split (held-out family, or triple when training)."""
    for o in scene.objects:
        if o.family not in FAM.TRAIN_FAMILIES:
            raise ValueError(f"held-out or unknown family in a starter scene: {o.family!r}")
        if training and (o.family, o.fg, scene.bg) not in _TRAIN_SET:
            raise ValueError(f"held-out triple in a training scene: {(o.family, o.fg, scene.bg)}")


# ------------------------------------------------------------------ captions
def object_phrase(o: Obj, noun: Optional[str] = None) -> str:
    words = ["a"]
    if o.size:
        words.append(o.size)
    words += [o.fg, noun or o.family]
    if o.place:
        words.append(_PLACE_PHRASE[o.place])
    return " ".join(words)


def caption(scene: Scene, generic: bool = False) -> str:
    """"a small red circle on the left and a big ... on a blue background"."""
    ph = [object_phrase(o, CLASS_NOUN if generic else None) for o in scene.objects]
    if len(ph) == 1:
        body = ph[0]
    else:
        body = ", ".join(ph[:-1]) + " and " + ph[-1]
    return f"{body} on a {scene.bg} background"


_PHRASE_PLACE = {v: k for k, v in _PLACE_PHRASE.items()}
_CAPTION = re.compile(r"^(?P<objs>.+) on an? (?P<bg>[a-z]+) background$")


def parse_caption(text: str) -> Scene:
    """The scene a caption of this domain asks for (no geometry: ``cx``, ``cy``, ``r``, ``rot`` are 0).

    The inverse of :func:`caption`, so a test or a judge can take a prompt as an artist typed it:
    ``judge_scene(img, parse_caption("a small red circle on the left on a blue background"))``.
    ValueError for a sentence outside the domain's pattern.
    """
    m = _CAPTION.match(" ".join(text.strip().lower().split()))
    if not m or m.group("bg") not in COLORS:
        raise ValueError(f"not a caption of the scenes domain: {text!r}")
    objs = []
    for phrase in re.split(r", | and ", m.group("objs")):
        words = phrase.split()
        if len(words) < 3 or words[0] not in ("a", "an"):
            raise ValueError(f"not an object phrase: {phrase!r}")
        words = words[1:]
        size = words.pop(0) if words[0] in SIZES else None
        if len(words) < 2 or words[0] not in COLORS:
            raise ValueError(f"not an object phrase: {phrase!r}")
        fg, family, rest = words[0], words[1], " ".join(words[2:])
        if rest and rest not in _PHRASE_PLACE:
            raise ValueError(f"unknown place in {phrase!r}")
        objs.append(Obj(family, fg, size, _PHRASE_PLACE.get(rest), 0.0, 0.0, 0.0, 0.0))
    return Scene(m.group("bg"), objs)


# ------------------------------------------------------------------ geometry
def place_of(cx: float, cy: float) -> str:
    col = min(2, int(cx * 3))
    row = min(2, int(cy * 3))
    return PLACES[row * 3 + col]


def _place_xy(place: str, r: float, g: np.random.Generator) -> Tuple[float, float]:
    i = PLACES.index(place)
    row, col = divmod(i, 3)
    cx = (col + 0.5) / 3 + g.uniform(-0.05, 0.05)
    cy = (row + 0.5) / 3 + g.uniform(-0.05, 0.05)
    lo, hi = r + 0.02, 1.0 - r - 0.02
    return float(np.clip(cx, lo, hi)), float(np.clip(cy, lo, hi))


def _rot(family: str, g: np.random.Generator) -> float:
    return 0.0 if family in FAM.NO_ROTATION else float(g.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))


def make_object(family: str, fg: str, size: Optional[str], place: Optional[str], g: np.random.Generator) -> Obj:
    if size is None:  # plain: any size, anywhere
        r = float(g.uniform(*PLAIN_RADIUS))
        cx, cy = (float(g.uniform(r + 0.04, 1 - r - 0.04)) for _ in range(2))
        return Obj(family, fg, None, None, cx, cy, r, _rot(family, g))
    r = float(g.uniform(*SIZES[size]))
    cx, cy = _place_xy(place, r, g)
    return Obj(family, fg, size, place_of(cx, cy), cx, cy, r, _rot(family, g))


def sample_scene(g: np.random.Generator, triples: Sequence[Triple] = None, n_objects: Optional[int] = None,
                 plain: Optional[bool] = None) -> Scene:
    """One random scene whose every (family, fg, bg) is in ``triples`` (default: training)."""
    pool = list(_TRAIN if triples is None else triples)
    n = n_objects or int(g.choice([1, 2, 3], p=COUNT_P))
    f0, fg0, bg = pool[int(g.integers(len(pool)))]
    if n == 1 and (plain if plain is not None else g.random() < PLAIN_P):
        return Scene(bg, [make_object(f0, fg0, None, None, g)])
    same_bg = [t for t in pool if t[2] == bg]
    objs: List[Obj] = []
    places = list(g.permutation(len(PLACES)))
    for k in range(n):
        f, fg, _ = (f0, fg0, bg) if k == 0 else same_bg[int(g.integers(len(same_bg)))]
        for _try in range(12):
            if not places:
                break
            pl = PLACES[places.pop()]
            o = make_object(f, fg, "small" if g.random() < 0.5 else "big", pl, g)
            if all((o.cx - p.cx) ** 2 + (o.cy - p.cy) ** 2 > (o.r + p.r + 0.03) ** 2 for p in objs) and \
                    o.place not in {p.place for p in objs}:
                objs.append(o)
                break
    return Scene(bg, objs)


def render(scene: Scene, size: int = NATIVE_SIZE) -> Image.Image:
    """RGB picture of the scene (4x supersampled, box-filtered)."""
    S = size * _SUPERSAMPLE
    bgc = COLORS[scene.bg]
    img = Image.new("RGB", (S, S), bgc)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        FAM.draw(d, o.family, o.cx * S, o.cy * S, o.r * S, o.rot, COLORS[o.fg], bgc)
    return img.resize((size, size), Image.BOX)


def sample_batch(n: int, size: int = NATIVE_SIZE, rng=None, triples: Sequence[Triple] = None,
                 generic_fraction: float = GENERIC_CAPTION_FRACTION, training: bool = True):
    """-> (uint8 array (n, size, size, 3), captions, generic captions, scenes).

    ``training=True`` (the default) enforces the split on every scene.
    """
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    imgs, caps, gcaps, scenes = [], [], [], []
    for _ in range(n):
        sc = sample_scene(g, triples)
        check_scene(sc, training=training)
        imgs.append(np.asarray(render(sc, size)))
        caps.append(caption(sc))
        gcaps.append(caption(sc, generic=True))
        scenes.append(sc)
    return np.stack(imgs), caps, gcaps, scenes
