"""GTK sliders for the GIMP dialog's Concept Sliders (-3..+3 each), under the procedure's fields.

Why a module of its own: ``gimp_ui.py`` only adds the box when the daemon's
concept listing arrives (a few lines); each slider edits the dialog's
``concepts`` text through ``slider_fields.py``, so scripts and the dialog stay
one interface.  Ranges, notches and labels come from ``protocol/sliders.py``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gtk  # noqa: E402

from ..protocol import sliders  # noqa: E402
from . import slider_fields  # noqa: E402


def add_slider_box(dialog, config, listing: Iterable[Mapping]) -> bool:
    """Pack one slider a slider concept into ``dialog`` (a GLib idle callback: returns False)."""
    specs = sliders.slider_specs(list(listing))
    if not specs:
        return False
    try:
        text = config.get_property("concepts") or ""
    except TypeError:   # a procedure without a concepts field: nothing to dial
        return False
    weights = slider_fields.slider_weights(text, listing)
    frame = Gtk.Frame(label="Sliders")
    grid = Gtk.Grid(column_spacing=6, row_spacing=2, margin=6)
    frame.add(grid)
    for row, spec in enumerate(specs):
        scale = Gtk.Scale.new_with_range(Gtk.Orientation.HORIZONTAL, spec.minimum, spec.maximum, sliders.STEP)
        scale.set_digits(2)
        scale.set_value(weights.get(spec.name, 0.0))
        scale.set_hexpand(True)
        scale.add_mark(0.0, Gtk.PositionType.BOTTOM, None)
        scale.set_tooltip_text(spec.tooltip)
        scale.connect("format-value", lambda _s, value: sliders.format_weight(value))
        scale.connect("value-changed", _moved, config, spec.name)
        for col, widget in enumerate((Gtk.Label(label=spec.name, xalign=0.0), Gtk.Label(label=spec.low), scale,
                                      Gtk.Label(label=spec.high))):
            grid.attach(widget, col, row, 1, 1)
    dialog.get_content_area().pack_start(frame, False, False, 0)
    frame.show_all()
    return False


def _moved(scale, config, name: str) -> None:
    weight = sliders.from_position(sliders.to_position(scale.get_value()))
    text = config.get_property("concepts") or ""
    config.set_property("concepts", slider_fields.with_slider(text, name, weight))
