"""One import for PyQt5 (Krita 5) and PyQt6 (Krita 6), so the plugin is one codebase.

The binding is the one Krita already loaded - importing the other would pull
a second Qt into Krita's process.  Outside Krita (tests, tools) it is
``$IMPASTO_QT`` (``5`` or ``6``) or whichever imports first.  Code using this
module writes enums fully scoped (``Qt.AlignmentFlag.AlignLeft``), which both
PyQt5 5.15 and PyQt6 accept, and takes ``QAction`` and ``exec`` from here.
"""
from __future__ import annotations

import os
import sys


def _pick() -> str:
    for name in ("PyQt6", "PyQt5"):
        if name + ".QtCore" in sys.modules:
            return name
    wanted = os.environ.get("IMPASTO_QT", "")
    order = ["PyQt6", "PyQt5"] if wanted == "6" else ["PyQt5", "PyQt6"]
    for name in order:
        try:
            __import__(name + ".QtCore")
            return name
        except ImportError:
            continue
    raise ImportError("neither PyQt5 nor PyQt6 is importable: the Krita plugin needs Krita's PyQt")


BINDING = _pick()

if BINDING == "PyQt6":
    from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
    from PyQt6.QtGui import QAction  # noqa: F401

    QT6 = True
else:
    from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401
    from PyQt5.QtWidgets import QAction  # noqa: F401

    QT6 = False

Qt = QtCore.Qt
Signal = QtCore.pyqtSignal
Slot = QtCore.pyqtSlot
QT_VERSION = QtCore.QT_VERSION_STR


def exec_(obj) -> int:
    """``exec()`` on PyQt6, ``exec_()`` on PyQt5 (dialogs, event loops)."""
    return obj.exec() if QT6 else obj.exec_()


def rgba_qimage(data: bytes, width: int, height: int) -> "QtGui.QImage":
    """A QImage that owns a copy of straight-alpha RGBA8 ``data``."""
    img = QtGui.QImage(bytes(data), width, height, width * 4, QtGui.QImage.Format.Format_RGBA8888)
    return img.copy()
