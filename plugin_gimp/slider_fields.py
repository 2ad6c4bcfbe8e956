"""The GIMP dialog's Concept Sliders as its ``concepts`` text: a slider moved rewrites that field.

Why: GIMP's dialog is built from the procedure's arguments, and a script
passes ``concepts`` as text (``"mycat:0.8, size:-1.5"``); the slider box
(``slider_box.py``, GTK) must therefore only ever *edit that text*, so what an
artist dials is exactly what a script can pass.  Pure Python (no GIMP): which
concepts are sliders and how weights merge are the client core's
(``protocol/sliders.py``); parsing and writing the text are ``jobs.py``'s.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping

from ..protocol import sliders
from ..protocol.errors import PlanError
from .jobs import format_concepts, parse_concepts


def slider_weights(text: str, listing: Iterable[Mapping]) -> Dict[str, float]:
    """Each slider concept of the library at its weight in the field's text (0 when absent or unreadable)."""
    names = [s.name for s in sliders.slider_specs(listing)]
    try:
        pairs = parse_concepts(text)
    except PlanError:
        pairs = []
    _plain, weights = sliders.split(pairs, names)
    return {n: weights.get(n, 0.0) for n in names}


def with_slider(text: str, name: str, weight: float) -> str:
    """The field's text with slider ``name`` at ``weight`` (left out at 0); other entries kept in order.

    Text that does not parse is kept as it is (the dialog's OK reports it in words)."""
    try:
        pairs = parse_concepts(text)
    except PlanError:
        return text
    out: List = [(n, w) for n, w in pairs if n != name]
    weight = sliders.check_weight(name, round(float(weight), 2))
    if weight != 0:
        at = next((i for i, (n, _w) in enumerate(pairs) if n == name), len(out))
        out.insert(min(at, len(out)), (name, weight))
    return format_concepts(out)
