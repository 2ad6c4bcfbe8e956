"""Procedural scene domain of the starter model.

A scene is one flat shape in a foreground colour on a flat background colour,
captioned "a red circle on a blue background".  Everything is deterministic from
a seed.

* ``SHAPES`` are the training shapes; ``HELD_OUT_SHAPE`` ("star") never appears
  in the training data (a later issue teaches it as a LoRA concept), but
  ``render`` and the detector know it.
* ``COLORS`` maps colour names to saturated, unambiguous RGB values.
* 20% of the colour x shape x background combinations are held out of training
  (``eval_combos``); the rest are ``train_combos``.  The split is a fixed
  function of the combination (hash based), independent of any run.
* ``sample_batch`` draws training scenes; ~10% of their captions use the
  generic class noun ("a red shape on a blue background").
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle")
HELD_OUT_SHAPE = "star"
ALL_SHAPES: Tuple[str, ...] = SHAPES + (HELD_OUT_SHAPE,)
CLASS_NOUN = "shape"

COLORS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
COLOR_NAMES: Tuple[str, ...] = tuple(COLORS)

#: every word a caption of this domain can contain
DOMAIN_WORDS: Tuple[str, ...] = (
    ("a", "an", "on", "background", CLASS_NOUN) + ALL_SHAPES + COLOR_NAMES
)

HELD_OUT_FRACTION = 0.2
GENERIC_CAPTION_FRACTION = 0.1

# size of the shape: circumradius as a fraction of the image side
MIN_RADIUS = 0.22
MAX_RADIUS = 0.36
MAX_ROTATION_DEG = 15.0
_MARGIN = 0.06  # keep this fraction of the side as background border
_SUPERSAMPLE = 4

Combo = Tuple[str, str, str]  # (shape, fg, bg)

RngLike = Union[int, np.random.Generator, None]


def _rng(r: RngLike) -> np.random.Generator:
    if isinstance(r, np.random.Generator):
        return r
    return np.random.default_rng(0 if r is None else int(r))


# --------------------------------------------------------------------- captions
def caption(shape: str, fg: str, bg: str) -> str:
    """``caption("circle", "red", "blue") == "a red circle on a blue background"``."""
    return f"a {fg} {shape} on a {bg} background"


_CAPTION_RE = re.compile(
    r"^\s*(?:an?\s+)?(?P<fg>[a-z]+)\s+(?P<shape>[a-z]+)\s+on\s+(?:an?\s+)?(?P<bg>[a-z]+)\s+background\s*\.?\s*$"
)


def parse_caption(text: str) -> Tuple[str, str, str]:
    """Inverse of :func:`caption` -> (shape, fg, bg).  Raises ValueError."""
    m = _CAPTION_RE.match(text.strip().lower())
    if not m:
        raise ValueError(f"not a starter-domain caption: {text!r}")
    shape, fg, bg = m.group("shape"), m.group("fg"), m.group("bg")
    if fg not in COLORS or bg not in COLORS:
        raise ValueError(f"unknown colour in caption: {text!r}")
    if shape not in ALL_SHAPES and shape != CLASS_NOUN:
        raise ValueError(f"unknown shape in caption: {text!r}")
    return shape, fg, bg


# ------------------------------------------------------------------ combos/split
def all_combos(shapes: Sequence[str] = SHAPES) -> List[Combo]:
    return [
        (s, fg, bg)
        for s in shapes
        for fg in COLOR_NAMES
        for bg in COLOR_NAMES
        if fg != bg
    ]


def _combo_key(c: Combo) -> int:
    h = hashlib.sha256(("impasto-starter-split:%s|%s|%s" % c).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _split() -> Tuple[List[Combo], List[Combo]]:
    combos = all_combos(SHAPES)
    order = sorted(combos, key=_combo_key)
    n_eval = int(round(HELD_OUT_FRACTION * len(combos)))
    held = set()
    # greedy, deterministic: hold out a combo only if every pair of its
    # attributes (shape+fg, shape+bg, fg+bg) still occurs in training
    remaining = set(combos)
    for c in order:
        if len(held) >= n_eval:
            break
        rest = remaining - {c}
        s, fg, bg = c
        ok = (
            any(r[0] == s and r[1] == fg for r in rest)
            and any(r[0] == s and r[2] == bg for r in rest)
            and any(r[1] == fg and r[2] == bg for r in rest)
        )
        if ok:
            held.add(c)
            remaining = rest
    train = [c for c in combos if c not in held]
    ev = [c for c in combos if c in held]
    return train, ev


_TRAIN, _EVAL = _split()


def train_combos() -> List[Combo]:
    """Combinations the starter model is trained on (never contains a star)."""
    return list(_TRAIN)


def eval_combos() -> List[Combo]:
    """Held-out combinations (~20%), the evaluation prompts."""
    return list(_EVAL)


def star_combos() -> List[Combo]:
    return all_combos((HELD_OUT_SHAPE,))


# -------------------------------------------------------------------- rendering
def shape_polygon(shape: str, cx: float, cy: float, r: float, rot_deg: float) -> List[Tuple[float, float]]:
    """Vertices of a polygonal shape with circumradius ``r`` (image coords)."""
    if shape == "square":
        angles = [45 + 90 * k for k in range(4)]
        radii = [r] * 4
    elif shape == "triangle":
        angles = [-90 + 120 * k for k in range(3)]
        radii = [r] * 3
    elif shape == "star":
        angles = [-90 + 36 * k for k in range(10)]
        radii = [r if k % 2 == 0 else r * 0.45 for k in range(10)]
    else:
        raise ValueError(shape)
    out = []
    for a, rr in zip(angles, radii):
        t = math.radians(a + rot_deg)
        out.append((cx + rr * math.cos(t), cy + rr * math.sin(t)))
    return out


def sample_geometry(shape: str, rng: RngLike = None) -> Tuple[float, float, float, float]:
    """(cx, cy, r, rotation_deg) in unit-square coordinates."""
    g = _rng(rng)
    r = float(g.uniform(MIN_RADIUS, MAX_RADIUS))
    if shape == "square":  # square has the largest area: keep it in line
        r *= 0.9
    lo, hi = _MARGIN + r, 1.0 - _MARGIN - r
    cx = float(g.uniform(lo, hi))
    cy = float(g.uniform(lo, hi))
    rot = 0.0 if shape == "circle" else float(g.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    return cx, cy, r, rot


def render_geometry(shape: str, fg: str, bg: str, size: int, geom) -> Image.Image:
    cx, cy, r, rot = geom
    S = size * _SUPERSAMPLE
    img = Image.new("RGB", (S, S), COLORS[bg])
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([(cx - r) * S, (cy - r) * S, (cx + r) * S, (cy + r) * S], fill=COLORS[fg])
    else:
        d.polygon(shape_polygon(shape, cx * S, cy * S, r * S, rot), fill=COLORS[fg])
    return img.resize((size, size), Image.BOX)


def render(shape: str, fg: str, bg: str, size: int = 64, rng_or_seed: RngLike = None) -> Image.Image:
    """Render one scene as an RGB image; deterministic from the seed/generator."""
    if shape not in ALL_SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    if fg not in COLORS or bg not in COLORS:
        raise ValueError("unknown colour")
    if fg == bg:
        raise ValueError("foreground and background colour must differ")
    return render_geometry(shape, fg, bg, size, sample_geometry(shape, rng_or_seed))


# --------------------------------------------------------------------- batches
def sample_batch(
    n: int,
    size: int = 64,
    rng_or_seed: RngLike = None,
    combos: Optional[Sequence[Combo]] = None,
    generic_fraction: float = GENERIC_CAPTION_FRACTION,
    as_array: bool = False,
):
    """Draw ``n`` training scenes.

    Returns (images, captions, combos): images is a list of PIL images, or a
    uint8 array (n, size, size, 3) when ``as_array``; captions use the class
    noun "shape" with probability ``generic_fraction``.
    """
    g = _rng(rng_or_seed)
    pool = list(train_combos() if combos is None else combos)
    imgs, caps, used = [], [], []
    for _ in range(n):
        c = pool[int(g.integers(len(pool)))]
        s, fg, bg = c
        img = render_geometry(s, fg, bg, size, sample_geometry(s, g))
        noun = CLASS_NOUN if g.random() < generic_fraction else s
        imgs.append(np.asarray(img) if as_array else img)
        caps.append(caption(noun, fg, bg))
        used.append(c)
    if as_array:
        imgs = np.stack(imgs)
    return imgs, caps, used


def iter_eval_prompts(combos: Iterable[Combo]) -> List[str]:
    return [caption(*c) for c in combos]
