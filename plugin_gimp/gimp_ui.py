"""The interactive side: procedure dialogs and the progress window (GIMP + GTK 3, main thread only).

Dialogs are GIMP's own :class:`GimpUi.ProcedureDialog` built from the
procedures' arguments, so what an artist sets is exactly what a script
passes non-interactively, and GIMP remembers last values and offers
Reset.  While a job runs, :class:`ProgressWindow` shows the daemon's steps,
its live preview and a Cancel button; GIMP's own progress bar (status bar)
follows the same events through ``Gimp.progress_*``.
"""
from __future__ import annotations

import threading
from typing import Callable, List, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, Gimp, GimpUi, GLib, Gtk  # noqa: E402

from ..protocol.messages import Progress  # noqa: E402
from . import pixels  # noqa: E402

PREVIEW_SIDE = 256
_ui_ready = False


def init_ui() -> None:
    global _ui_ready
    if not _ui_ready:
        GimpUi.init("impasto")
        _ui_ready = True


def run_procedure_dialog(procedure, config, title: str, groups: List[List[str]],
                         info: Optional[Callable[[Callable[[str], None]], None]] = None) -> bool:
    """Show the procedure's dialog; True when the artist pressed OK.

    ``groups`` lists argument names: the first group directly, each other one in a box.  ``info``, when
    given, is started on a worker thread with a ``show(text)`` callback that
    fills a label under the fields (models and concepts the daemon offers),
    without blocking the dialog while the daemon is looked up.
    """
    init_ui()
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    ids: List[str] = []
    for i, names in enumerate(groups):
        if i == 0:
            ids.extend(names)
            continue
        box_id = f"impasto-box-{i}"
        dialog.fill_box(box_id, names)
        ids.append(box_id)
    label = None
    if info is not None:
        label = dialog.get_label("impasto-info", "Looking up the daemon's models and concepts …", False, False)
        ids.append("impasto-info")
    if "prompt" in ids:
        # A multi-line prompt box, framed under its own title (a text view has no label of its own).
        try:
            dialog.get_widget("prompt", Gtk.TextView.__gtype__)
            dialog.get_label("impasto-prompt-title", "_Prompt", False, True)
            dialog.fill_frame("impasto-prompt-frame", "impasto-prompt-title", False, "prompt")
            ids[ids.index("prompt")] = "impasto-prompt-frame"
        except Exception:  # an older GimpUi: the one-line entry is fine
            pass
    dialog.fill(ids)
    if info is not None and label is not None:
        def show(text: str) -> None:
            GLib.idle_add(_set_label, label, text)

        def show_sliders(listing) -> None:   # the library's Concept Sliders, as sliders (slider_box.py)
            from .slider_box import add_slider_box
            GLib.idle_add(lambda: False if closed else add_slider_box(dialog, config, listing))
        show.sliders = show_sliders
        threading.Thread(target=info, args=(show,), name="impasto-gimp-info", daemon=True).start()
    closed: List[bool] = []
    ok = dialog.run()
    closed.append(True)
    dialog.destroy()
    return bool(ok)


def _set_label(label, text: str) -> bool:
    try:
        label.set_text(text)
    except Exception:  # the dialog may be gone already
        pass
    return False


class ProgressWindow:
    """A small window: status text, progress bar, live preview, Cancel."""

    def __init__(self, title: str, on_cancel: Callable[[], None]):
        init_ui()
        self.dialog = GimpUi.Dialog(title=title, role="impasto-progress")
        self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.dialog.connect("response", lambda *_: self._cancel())
        self.dialog.connect("delete-event", lambda *_: (self._cancel(), True)[1])
        self._on_cancel = on_cancel
        self._cancelled = False
        box = self.dialog.get_content_area()
        box.set_spacing(8)
        box.set_border_width(12)
        self.label = Gtk.Label(label="Starting …", xalign=0.0)
        self.label.set_line_wrap(True)
        self.warnings = Gtk.Label(label="", xalign=0.0)   # the daemon's warnings, as they arrive
        self.warnings.set_line_wrap(True)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.preview = Gtk.Image()
        self.preview.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        for w in (self.label, self.warnings, self.bar, self.preview):
            box.pack_start(w, False, False, 0)
        self.dialog.show_all()

    def _cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.label.set_text("Cancelling …")
            self._on_cancel()

    def status(self, text: str) -> None:
        self.label.set_text(text)
        Gimp.progress_set_text(text)

    def warn(self, text: str) -> None:
        """A daemon warning: kept in the window and sent to GIMP's messages (which outlive the window)."""
        shown = self.warnings.get_text()
        self.warnings.set_text((shown + "\n" if shown else "") + f"⚠ {text}")
        Gimp.message(f"Impasto: {text}")

    def progress(self, ev: Progress) -> None:
        if ev.step == 1 and not self._cancelled:
            self.label.set_text("Painting …")
        total = max(ev.total, 1)
        fraction = min(max(ev.step / total, 0.0), 1.0)
        self.bar.set_fraction(fraction)
        self.bar.set_text(f"{ev.stage or 'step'} {ev.step}/{ev.total}")
        Gimp.progress_update(fraction)
        if ev.preview is not None and ev.preview.format == "rgba8":
            self._show_preview(ev.preview)

    def _show_preview(self, img) -> None:
        data = GLib.Bytes.new(img.data)
        pb = GdkPixbuf.Pixbuf.new_from_bytes(data, GdkPixbuf.Colorspace.RGB, True, 8, img.width, img.height,
                                             img.width * pixels.RGBA)
        scale = PREVIEW_SIDE / max(img.width, img.height)
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        self.preview.set_from_pixbuf(pb.scale_simple(w, h, GdkPixbuf.InterpType.BILINEAR))

    def close(self) -> None:
        self.dialog.destroy()


def run_main_loop_until(start: Callable[[Callable[[], None]], None]) -> None:
    """Run a GLib main loop until ``start``'s ``quit`` callback is called (GTK stays responsive)."""
    loop = GLib.MainLoop()
    start(loop.quit)
    loop.run()


def message(text: str) -> None:
    Gimp.message(text)
