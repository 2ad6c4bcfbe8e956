"""Impasto's standalone canvas (PySide6): ``impasto-canvas``, see docs/canvas.md.

Importing the package applies :mod:`.qt_compat` first: with PySide6 6.12.0 on
Python 3.11 every other Qt call would slowly take ``None`` away from the
interpreter.  Without PySide6 installed the package still imports, so
``impasto-canvas`` can say what to install.
"""
try:
    from . import qt_compat  # noqa: F401
except ImportError:  # PySide6 missing: app.main() explains
    pass
