"""Prompt following of a model of the richer scenes domain, judged strictly.

Prompts are built from the held-out (family, colour, background) triples of
``scenes.py`` (never in a training scene):

* ``one``: one object with a size and a place ("a small red pentagon on the left on a
  blue background"); judged per attribute: family (strict detector), colour,
  background, place (the 3x3 cell of the object's centre), size (small/big);
* ``plain``: "a red pentagon on a blue background" (family, colours);
* ``two``: two objects in different places, the first from a held-out triple; right
  when both are found with their family, colour and place, and nothing else big.

``judge_scene`` is checked on the generator's own pictures in
``tests/test_starter_scenes.py`` (the judge's ceiling, ~100 %).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np

from . import families as FAM
from . import judges as J
from . import scenes as SC

SIZE_SPLIT = (SC.SIZES["small"][1] + SC.SIZES["big"][0]) / 2  # circumradius between the two sizes


def _size_of(found: J.Found, family: str) -> str:
    r = found.radius / math.sqrt(FAM.unit_area(family) / math.pi)
    return "small" if r < SIZE_SPLIT else "big"


def judge_scene(img, scene: SC.Scene) -> Dict[str, bool]:
    """Attributes of ``scene`` found in ``img`` -> dict of bools (``all`` = every one)."""
    bg, objs = J.find_objects(img, min_fraction=0.002)
    res = {"bg": bg == scene.bg}
    fams, cols, places, sizes = [], [], [], []
    used = set()
    for o in scene.objects:
        # the object of the asked colour nearest to where it was asked (or the largest of that colour)
        cand = [(i, f) for i, f in enumerate(objs) if f.fg == o.fg and i not in used]
        if o.place is not None and cand:
            cand.sort(key=lambda t: (SC.place_of(t[1].cx, t[1].cy) != o.place, -t[1].radius))
        if not cand:
            fams.append(False), cols.append(False), places.append(False), sizes.append(False)
            continue
        i, f = cand[0]
        used.add(i)
        cols.append(True)
        if o.family == SC.CLASS_NOUN:  # "a red shape": any family a strict detector recognises
            fams.append(J.classify(f.canon) != "none")
        else:
            fams.append(J.decide(J.scores(f.canon), o.family))
        places.append(o.place is None or SC.place_of(f.cx, f.cy) == o.place)
        sizes.append(o.size is None or _size_of(f, o.family) == o.size)
    res.update({"family": all(fams), "colour": all(cols), "place": all(places), "size": all(sizes)})
    # no extra object: nothing else bigger than a third of the smallest asked one
    asked = [objs[i].radius for i in used]
    extra = [f for i, f in enumerate(objs) if i not in used and asked and f.radius > min(asked) / 3]
    res["count"] = not extra and len(used) == len(scene.objects)
    res["all"] = all(res.values())
    return res


def prompt_scenes(kind: str, n: int, seed: int = 0, split: str = "held_out") -> List[SC.Scene]:
    """``n`` evaluation scenes of a kind, each built on a held-out triple (cycled).

    ``split="train"``: on the *training* triples instead - what a setting (a CFG, a sampler) may be
    tuned on, so that the held-out figures stay held out.
    """
    g = np.random.default_rng(seed)
    ev = SC.eval_triples() if split == "held_out" else SC.train_triples()
    out = []
    for k in range(n):
        fam, fg, bg = ev[(k * 7 + seed) % len(ev)]
        if kind == "plain":
            out.append(SC.Scene(bg, [SC.make_object(fam, fg, None, None, g)]))
            continue
        o = SC.make_object(fam, fg, "small" if g.random() < 0.5 else "big", SC.PLACES[int(g.integers(9))], g)
        objs = [o]
        if kind == "two":
            for _ in range(20):
                tri = SC.train_triples()
                f2, c2, _ = [t for t in tri if t[2] == bg][int(g.integers(len([t for t in tri if t[2] == bg])))]
                o2 = SC.make_object(f2, c2, "small" if g.random() < 0.5 else "big", SC.PLACES[int(g.integers(9))], g)
                if o2.place != o.place and (o.cx - o2.cx) ** 2 + (o.cy - o2.cy) ** 2 > (o.r + o2.r + 0.03) ** 2:
                    objs.append(o2)
                    break
        out.append(SC.Scene(bg, objs))
    return out


def score(imgs: Sequence, scenes: Sequence[SC.Scene]) -> Dict[str, float]:
    tot: Dict[str, int] = {}
    for img, sc in zip(imgs, scenes):
        for k, v in judge_scene(img, sc).items():
            tot[k] = tot.get(k, 0) + int(v)
    return {k: round(v / max(1, len(scenes)), 4) for k, v in tot.items()}
