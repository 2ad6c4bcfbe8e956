"""Driving the canvas without a screen: for the tests and the documentation screenshots.

``QT_QPA_PLATFORM=offscreen`` gives real widgets with no display.  What is
missing there is a person: these helpers move the mouse through real Qt
mouse events (so tools are exercised exactly as by hand), wait for the
daemon while keeping the event loop turning, and stand in for modal dialogs,
which would otherwise wait forever for a click.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, List, Optional, Tuple

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEvent, QEventLoop, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402


def application() -> QApplication:
    return QApplication.instance() or QApplication(["impasto-canvas-headless"])


def pump(seconds: float, until: Optional[Callable[[], bool]] = None) -> bool:
    """Run the event loop for up to ``seconds``; True as soon as ``until()`` is (None: just wait)."""
    app = application()
    deadline = time.monotonic() + seconds
    while True:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if until is not None and until():
            return True
        if time.monotonic() >= deadline:
            return until is None
        time.sleep(0.005)


def _send(widget: QWidget, kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton, buttons: Qt.MouseButton,
          modifiers: Qt.KeyboardModifier) -> None:
    global_pos = QPointF(widget.mapToGlobal(pos.toPoint()))
    event = QMouseEvent(kind, pos, global_pos, button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def drag(widget: QWidget, points: Iterable[Tuple[float, float]], button: Qt.MouseButton = Qt.MouseButton.LeftButton,
         modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    """Press at the first point, move through the others, release at the last (widget coordinates)."""
    pts: List[QPointF] = [QPointF(x, y) for x, y in points]
    nb = Qt.MouseButton.NoButton
    _send(widget, QEvent.Type.MouseButtonPress, pts[0], button, button, modifiers)
    for p in pts[1:]:
        _send(widget, QEvent.Type.MouseMove, p, nb, button, modifiers)
    _send(widget, QEvent.Type.MouseButtonRelease, pts[-1], button, nb, modifiers)


class DialogRecorder:
    """Replaces :mod:`impasto.desktop.dialogs` functions with recorders that answer at once."""

    def __init__(self, answers: Optional[dict] = None):
        self.calls: List[Tuple[str, tuple]] = []
        self.answers = dict(answers or {})
        self._saved: dict = {}

    def install(self) -> "DialogRecorder":
        from . import dialogs

        for name in ("show_error", "show_warning", "show_info", "confirm", "ask_save_changes", "ask_text",
                     "ask_canvas_size", "open_file", "open_files", "save_file", "open_folder", "pick_color"):
            self._saved[name] = getattr(dialogs, name)
            setattr(dialogs, name, self._recorder(name))
        return self

    def uninstall(self) -> None:
        from . import dialogs

        for name, fn in self._saved.items():
            setattr(dialogs, name, fn)
        self._saved.clear()

    def _recorder(self, name: str):
        def record(*args, **kwargs):
            self.calls.append((name, args[1:]))  # drop the parent widget
            return self.answers.get(name)
        return record

    def named(self, name: str) -> List[tuple]:
        return [args for n, args in self.calls if n == name]

    def __enter__(self) -> "DialogRecorder":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()
